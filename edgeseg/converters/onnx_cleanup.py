"""Tidying an exported ONNX graph before it is written.

The TorchScript exporter leaves shape arithmetic in the graph (Shape -> Gather -> Concat -> the
``sizes`` of a Resize, ...) even when every shape is fixed, and now and then a node nothing reads.
For a frame of fixed size all of that is constant: folding it gives TensorRT and ONNX Runtime a
graph whose every shape is known (tests check it), and makes it smaller and easier to read.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

MAX_FOLDED_ELEMENTS = 1 << 20  # do not bake large tensors into the file


def remove_dead_nodes(model: onnx.ModelProto) -> int:
    """Drop nodes (and initializers) that no graph output depends on; returns how many nodes."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    removed = len(graph.node) - len(kept)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    used = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(used)
    return removed


# Initializers that can decide a shape (Reshape targets, Resize sizes, Slice bounds...) are small or
# integer; the network's weights are neither and only their type and shape matter to shape
# inference. Handing it the weights as typed inputs instead gives the same shapes without
# serialising hundreds of megabytes (W48 HRNet, Mask R-CNN) on every round of folding.
_SHAPE_DECIDING_ELEMENTS = 1024
_WEIGHT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                           onnx.TensorProto.BFLOAT16})


def _numel(tensor: onnx.TensorProto) -> int:
    return int(np.prod(tensor.dims, dtype=np.int64))


def _inferred_graph(model: onnx.ModelProto) -> onnx.GraphProto:
    """``shape_inference.infer_shapes(model).graph`` with large float initializers passed as typed
    graph inputs instead of data: the same shapes and value_info, without copying the weights."""
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    graph = light.graph
    graph.name = model.graph.name
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    graph.value_info.extend(model.graph.value_info)  # the exporter's shapes (custom nodes' outputs)
    for tensor in model.graph.initializer:
        if tensor.data_type in _WEIGHT_TYPES and _numel(tensor) > _SHAPE_DECIDING_ELEMENTS:
            graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
        else:
            graph.initializer.append(tensor)
    return shape_inference.infer_shapes(light).graph


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    inferred = _inferred_graph(model)
    shapes = {}
    for v in (*inferred.input, *inferred.value_info, *inferred.output):
        t = v.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[v.name] = tuple(d.dim_value for d in t.shape.dim)
    return shapes


def _evaluate(node: onnx.NodeProto, values: Mapping[str, np.ndarray], opsets: list[onnx.OperatorSetIdProto]
              ) -> list[np.ndarray]:
    names = [n for n in node.input if n]
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(values[n].dtype), values[n].shape)
              for n in names]
    outputs = [helper.make_empty_tensor_value_info(o) for o in node.output]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    evaluator = ReferenceEvaluator(helper.make_model(graph, opset_imports=opsets))
    return [np.asarray(v) for v in evaluator.run(None, {n: values[n] for n in names})]


class _LazyValues(dict[str, np.ndarray]):
    """Initializer values as arrays, each converted the first time it is asked for."""

    def __init__(self, initializers: Mapping[str, onnx.TensorProto]) -> None:
        super().__init__()
        self._initializers = initializers

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or name in self._initializers

    def __missing__(self, name: str) -> np.ndarray:
        value = numpy_helper.to_array(self._initializers[name])
        self[name] = value
        return value


def fold_constants(model: onnx.ModelProto) -> int:
    """Replace every standard node whose result does not depend on the graph inputs (including
    ``Shape`` of a tensor whose shape is fixed) by an initializer; returns how many were folded."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    opsets = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    folded_total = 0
    # Values are read from an initializer only when a node that could be folded needs them (the
    # weights feed nodes that also read the frame, and are never converted).
    initializers = {t.name: t for t in graph.initializer}
    values = _LazyValues(initializers)
    while True:
        shapes = _static_shapes(model)
        kept, new_inits, folded = [], [], 0
        for node in graph.node:
            standard = node.domain in ("", "ai.onnx")
            result: list[np.ndarray] | None = None
            if standard and node.op_type == "Shape" and node.input[0] in shapes:
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                shape = shapes[node.input[0]][attrs.get("start", 0) : attrs.get("end")]
                result = [np.array(shape, dtype=np.int64)]
            elif standard and all(n in values for n in node.input if n) and not node.op_type.startswith("Random"):
                result = _evaluate(node, values, opsets)
            if result is None or any(r.size > MAX_FOLDED_ELEMENTS for r in result) or \
                    any(o in outputs for o in node.output):
                kept.append(node)
                continue
            for name, value in zip(node.output, result, strict=True):
                values[name] = value
                tensor = numpy_helper.from_array(value, name)
                initializers[name] = tensor
                new_inits.append(tensor)
            folded += 1
        if not folded:
            return folded_total
        folded_total += folded
        del graph.node[:]
        graph.node.extend(kept)
        graph.initializer.extend(new_inits)
        remove_dead_nodes(model)


def set_static_shapes(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Write the known static shapes of graph inputs/outputs (the exporter names some dims
    symbolically even when they are fixed)."""
    for value in (*model.graph.input, *model.graph.output):
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for size in shapes[value.name]:
                dims.add().dim_value = int(size)


def tidy(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]] | None = None) -> None:
    """Static input/output shapes, constants folded, dead nodes removed, and the value_info of
    every tensor filled in by shape inference (tools and the CPU backend read it)."""
    if shapes:
        set_static_shapes(model, shapes)
    remove_dead_nodes(model)
    fold_constants(model)
    inferred = _inferred_graph(model)
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.value_info)
