"""The graph tidying of every export (edgeseg.converters.onnx_cleanup): shape inference without the
weights gives what shape inference with them gives, and folding reads only what it folds."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

from edgeseg.converters.onnx_cleanup import _inferred_graph, fold_constants, tidy


def _graph() -> onnx.ModelProto:
    """A conv whose weights are large, shape arithmetic that must fold (Shape -> Gather -> Concat ->
    Reshape), a Reshape whose target is a small initializer, and a custom node whose output shape
    only the exporter's value_info knows."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((64, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(64, np.float32), "b")
    target = numpy_helper.from_array(np.array([1, 64, -1], np.int64), "target")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["y"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["y", "flat_shape"], ["flat"]),
        helper.make_node("Reshape", ["y", "target"], ["rows"]),
        helper.make_node("Mystery", ["rows"], ["custom"], domain="edgeseg"),
        helper.make_node("Relu", ["custom"], ["out2"]),
    ]
    consts = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
              numpy_helper.from_array(np.array([0], np.int64), "axes"),
              numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 20])],
        [helper.make_tensor_value_info("flat", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("out2", TensorProto.FLOAT, None)],
        [weight, bias, target, *consts],
        value_info=[helper.make_tensor_value_info("custom", TensorProto.FLOAT, [1, 64, 320])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgeseg", 1)])


def test_shape_inference_without_the_weights_gives_the_same_graph() -> None:
    model = _graph()
    assert _inferred_graph(model).value_info == shape_inference.infer_shapes(model).graph.value_info
    # the custom node's output keeps the exporter's shape, and what follows it is inferred from it
    inferred = _inferred_graph(model)
    assert inferred.output == shape_inference.infer_shapes(model).graph.output
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*inferred.value_info,
                                                                                    *inferred.output)}
    assert shapes["custom"] == [1, 64, 320] and shapes["out2"] == [1, 64, 320]


def test_tidy_folds_the_shape_arithmetic_and_keeps_the_weights() -> None:
    model = _graph()
    weight = numpy_helper.to_array(model.graph.initializer[0]).copy()
    assert fold_constants(model) == 4  # Shape, Gather, Unsqueeze, Concat
    assert [n.op_type for n in model.graph.node] == ["Conv", "Reshape", "Reshape", "Mystery", "Relu"]
    folded = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert folded["flat_shape"].tolist() == [1, -1]
    np.testing.assert_array_equal(folded["w"], weight)
    tidy(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    assert shapes["y"] == [1, 64, 16, 20] and shapes["rows"] == [1, 64, 320]
