"""What TensorRT's ONNX parser will refuse in a graph, found without TensorRT.

Each rule is one fact read from TensorRT's ONNX parser (onnx-tensorrt ``ModelImporter.cpp``,
``onnxOpImporters.cpp``, ``onnxOpCheckers.cpp``, ``importerUtils.cpp``; branch 10.1-GA, nearest
to TensorRT 10.3, and the 11.0 submodule) or from ``NvInfer.h`` (10.3, 11.1); :data:`RULES` names
its source. :func:`lint_model` checks every node of a graph against them and returns one
:class:`Violation` per problem, naming the node, its op and the rule.

The converters also use the limits here (:data:`TOPK_MAX_K`, :data:`NMS_MAX_CANDIDATES`) to refuse
a configuration before exporting it, so the numbers live in this one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.errors import ModelFileError

#: Largest K of a TopK layer (ITopKLayer; TensorRT 10.3 and 11.x).
TOPK_MAX_K = 3840
#: Candidate boxes per batch item TensorRT's NonMaxSuppression (INMSLayer) considers; on SM 5.3
#: and 6.2 (Jetson Nano, TX2, which TensorRT 10 no longer supports) it is 2000.
NMS_MAX_CANDIDATES = 5000

#: Ops whose output shape depends on the data. TensorRT sizes such a tensor on the host between
#: kernels, so an engine with one cannot be captured as a CUDA graph.
DATA_DEPENDENT_OPS = ("NonMaxSuppression", "NonZero")

#: Default-domain opsets TensorRT 10.x parses (11.x parses these too).
OPSETS = (9, 20)

# ONNX ops TensorRT's parser imports (onnx-tensorrt docs/operators.md, 10.1-GA and main: the "Y"
# rows); any other standard op is refused.
_SUPPORTED = """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil
    Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements
    GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
    GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf
    IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
    MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot
    Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
    ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round
    ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax
    Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
    Unsqueeze Upsample Where Xor
"""
SUPPORTED_OPS = frozenset(_SUPPORTED.split())

#: Inputs the parser needs as initializers (or Constant outputs), by op: (input index, what it is).
INITIALIZER_INPUTS = {
    "TopK": ((1, "K"),),
    "Slice": ((3, "axes"),),
    "Pad": ((3, "axes"),),
    "CumSum": ((1, "axis"),),
    "NonMaxSuppression": ((2, "max_output_boxes_per_class"), (3, "iou_threshold"), (4, "score_threshold")),
}

_INT32 = (-(2**31), 2**31 - 1)
_RESIZE_MODES = ("nearest", "linear", "cubic")
_RESIZE_COORDINATES = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")


@dataclass(frozen=True)
class Rule:
    """One thing the parser refuses: a short name, what it says, where it was read."""

    name: str
    text: str
    source: str


@dataclass(frozen=True)
class Violation:
    """A node that breaks a rule."""

    node: str
    op: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op}): {self.rule}: {self.detail}"


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("uint8-internal", "UINT8 only as a graph input or output: no node may output UINT8 inside the graph",
             "importerUtils.cpp (\"TensorRT does not support UINT8 types for intermediate tensors\")"),
        Rule("uint8-input-cast", "a UINT8 graph input must go straight into a Cast",
             "importerUtils.cpp (UINT8 is cast to float at the network boundary)"),
        Rule("topk-k", f"TopK: K <= {TOPK_MAX_K}, on one of the last four axes, sorted = 1",
             "onnxOpImporters.cpp (TopK), NvInfer.h ITopKLayer"),
        Rule("nms-candidates", f"NonMaxSuppression considers at most {NMS_MAX_CANDIDATES} boxes per image",
             "NvInfer.h INMSLayer (2000 on SM 5.3/6.2)"),
        Rule("resize", "Resize: mode nearest/linear/cubic; coordinate mode half_pixel, pytorch_half_pixel, "
             "tf_half_pixel_for_nn, asymmetric or align_corners; antialias = 0; no BOOL/UINT8 input",
             "onnxOpImporters.cpp (Resize)"),
        Rule("argmax-uint8", "ArgMax/ArgMin (a TopK with k = 1) take no UINT8 input", "onnxOpImporters.cpp"),
        Rule("scatternd-reduction", "ScatterND: reduction none only", "onnxOpImporters.cpp (ScatterND)"),
        Rule("custom-op", "a custom node's op_type must not be a built-in ONNX op name (those go to the "
             "built-in importer whatever the domain) and it needs string attributes plugin_version and "
             "plugin_namespace (the plugin creator's)", "ModelImporter.cpp, onnxOpImporters.cpp (fallback plugin)"),
        Rule("int32-attribute", "integer attributes must fit in int32 (the parser narrows them)",
             "onnxOpImporters.cpp (plugin fields), importerUtils.cpp"),
        Rule("supported-op", "only ops on the parser's supported list", "onnx-tensorrt docs/operators.md"),
        Rule("initializer-input", "TopK's K, Slice's and Pad's axes, CumSum's axis and NonMaxSuppression's "
             "limits must be constants", "onnx-tensorrt docs/operators.md, onnxOpImporters.cpp"),
        Rule("opset", f"default-domain opset {OPSETS[0]}..{OPSETS[1]}", "onnx-tensorrt docs/operators.md"),
        Rule("qdq", "Quantize/DequantizeLinear: scale a constant > 0; zero point absent or a constant INT8 "
             "zero (symmetric; UINT8 is refused); DequantizeLinear of INT8 only (no INT32 bias); "
             "per-channel scales on constant weights only",
             "onnxOpImporters.cpp (QuantizeLinear/DequantizeLinear), NvInfer.h IDequantizeLayer"),
        Rule("plugin-types", "edgeseg plugins: RoIs, boxes FP32; features / masks FP32 or FP16, one type; "
             "FP32-only plugins (ZoomLinear) FP32 in and out",
             "plugins/*/ supportsFormatCombination (edgeseg.custom_ops.CustomOp.coordinate_inputs)"),
    )
}


class _Graph:
    """What the rules need to know about a graph: tensor types and shapes, constants, consumers."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper, shape_inference

        if not model.graph.value_info:
            model = shape_inference.infer_shapes(model)
        graph = model.graph
        self.graph = graph
        self.outputs = {o.name for o in graph.output}
        self.inputs = {i.name for i in graph.input}
        self.types: dict[str, int] = {}
        self.shapes: dict[str, tuple[int | None, ...]] = {}
        for value in (*graph.input, *graph.value_info, *graph.output):
            t = value.type.tensor_type
            self.types[value.name] = t.elem_type
            if t.HasField("shape"):
                self.shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        self.constants: dict[str, Any] = {}
        for init in graph.initializer:
            self.constants[init.name] = numpy_helper.to_array(init)
            self.types[init.name] = init.data_type
            self.shapes[init.name] = tuple(init.dims)
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                for attr in node.attribute:
                    if attr.name == "value":
                        self.constants[node.output[0]] = numpy_helper.to_array(attr.t)
                        self.types[node.output[0]] = attr.t.data_type


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _uint8() -> int:
    from onnx import TensorProto

    return int(TensorProto.UINT8)


def _check_uint8_internal(g: _Graph, node: Any, attrs: dict[str, Any]) -> Iterator[str]:
    for name in node.output:
        if name and name not in g.outputs and g.types.get(name) == _uint8():
            yield f"output {name!r} is UINT8 inside the graph; Cast to UINT8 only where the graph ends"


def _check_uint8_input(g: _Graph, node: Any, attrs: dict[str, Any]) -> Iterator[str]:
    if node.op_type == "Cast" and node.domain in ("", "ai.onnx"):
        return
    for name in node.input:
        if name in g.inputs and g.types.get(name) == _uint8():
            yield f"reads the UINT8 input {name!r}; Cast it to float first"


def _check_supported(g: _Graph, node: Any, attrs: dict[str, Any]) -> Iterator[str]:
    if node.op_type not in SUPPORTED_OPS:
        yield f"{node.op_type} is not an op TensorRT's ONNX parser imports"


def _check_initializers(g: _Graph, node: Any, attrs: dict[str, Any]) -> Iterator[str]:
    for index, what in INITIALIZER_INPUTS.get(node.op_type, ()):
        if index < len(node.input) and node.input[index] and node.input[index] not in g.constants:
            yield f"input {index} ({what}) is computed, not a constant"


def _check_topk(g: _Graph, node: Any, attrs: dict[str, Any]) -> Iterator[str]:
    k = g.constants.get(node.input[1]) if len(node.input) > 1 else None
    if k is not None and int(k.reshape(-1)[0]) > TOPK_MAX_K:
        yield f"K = {int(k.reshape(-1)[0])} > {TOPK_MAX_K}"
    rank = len(g.shapes.get(node.input[0], ()))
    axis = int(attrs.get("axis", -1))
    if rank and not -4 <= (axis - rank if axis >= 0 else axis) <= -1:
        yield f"axis {axis} of a rank-{rank} input is not one of the last four"
    if int(attrs.get("sorted", 1)) != 1:
        yield "sorted = 0"


def _check_nms(g: _Graph, node: Any, attrs: dict[str, Any]) -> Iterator[str]:
    shape = g.shapes.get(node.input[0], ())
    if len(shape) == 3 and shape[1] is not None and shape[1] > NMS_MAX_CANDIDATES:
        yield f"{shape[1]} candidate boxes per image > {NMS_MAX_CANDIDATES}"


def _check_resize(g: _Graph, node: Any, attrs: dict[str, Any]) -> Iterator[str]:
    mode = attrs.get("mode", b"nearest").decode()
    if mode not in _RESIZE_MODES:
        yield f"mode {mode!r}"
    coords = attrs.get("coordinate_transformation_mode", b"half_pixel").decode()
    if coords not in _RESIZE_COORDINATES:
        yield f"coordinate_transformation_mode {coords!r}"
    if int(attrs.get("antialias", 0)) != 0:
        yield "antialias = 1"
    from onnx import TensorProto

    if g.types.get(node.input[0]) in (TensorProto.UINT8, TensorProto.BOOL):
        yield "UINT8/BOOL input"


def _check_argmax(g: _Graph, node: Any, attrs: dict[str, Any]) -> Iterator[str]:
    if g.types.get(node.input[0]) == _uint8():
        yield "UINT8 input; Cast it to float first"


def _check_scatternd(g: _Graph, node: Any, attrs: dict[str, Any]) -> Iterator[str]:
    reduction = attrs.get("reduction", b"none").decode()
    if reduction != "none":
        yield f"reduction {reduction!r}"


def _check_custom(g: _Graph, node: Any, attrs: dict[str, Any]) -> Iterator[str]:
    from onnx import defs

    if defs.has(node.op_type):
        yield f"op_type {node.op_type!r} is a built-in ONNX op: the parser would import it as that, not as a plugin"
    for field in ("plugin_version", "plugin_namespace"):
        if not isinstance(attrs.get(field), bytes):
            yield f"no string attribute {field}"


def _check_int32(g: _Graph, node: Any, attrs: dict[str, Any]) -> Iterator[str]:
    for name, value in attrs.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, int) and not _INT32[0] <= v <= _INT32[1] for v in values):
            yield f"attribute {name} does not fit in int32"


def _check_qdq(g: _Graph, node: Any, attrs: dict[str, Any]) -> Iterator[str]:
    import numpy as np
    from onnx import TensorProto

    scale = g.constants.get(node.input[1]) if len(node.input) > 1 else None
    if scale is None:
        yield "the scale is computed, not a constant"
    elif not np.all(scale > 0):
        yield "a scale is <= 0"
    zero = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if zero is not None:
        if zero not in g.constants:
            yield "the zero point is computed, not a constant"
        elif g.types.get(zero) == TensorProto.UINT8:
            yield "UINT8 zero point: quantize symmetrically to INT8"
        elif np.any(g.constants[zero] != 0):
            yield "non-zero zero point: TensorRT quantizes symmetrically only"
    if node.op_type == "DequantizeLinear":
        kind = g.types.get(node.input[0])
        if kind == TensorProto.INT32:
            yield "INT32 input (a quantized bias): keep biases in float"
        elif kind == TensorProto.UINT8:
            yield "UINT8 input: quantize symmetrically to INT8"
    if scale is not None and scale.size > 1 and node.input[0] not in g.constants:
        yield "per-channel scale on an activation: per-channel is for constant weights"


def _check_plugin_types(g: _Graph, node: Any, attrs: dict[str, Any]) -> Iterator[str]:
    from onnx import TensorProto

    from edgeseg.custom_ops import CUSTOM_OPS

    op = CUSTOM_OPS.get(node.op_type)
    if op is None:
        return
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16)
    data = set()
    for i, name in enumerate(node.input):
        kind = g.types.get(name)
        if kind not in floats:
            continue
        if i in op.coordinate_inputs:
            if kind != TensorProto.FLOAT:
                yield f"input {i} ({name!r}) holds coordinates and must be FP32"
        else:
            data.add(kind)
    if len(data) > 1:
        yield "its feature inputs mix FP32 and FP16"
    if op.fp32_only:
        for j, name in enumerate(node.output):
            if g.types.get(name) == TensorProto.FLOAT16:
                yield f"output {j} ({name!r}) is FP16: {node.op_type} computes in FP32 only"


_Check = Callable[[_Graph, Any, dict[str, Any]], Iterator[str]]

# (rule, which nodes it applies to, check); "*" = every node, "standard" = every node of the ONNX
# domain, "custom" = nodes of another domain, else an op_type.
_CHECKS: tuple[tuple[str, str, _Check], ...] = (
    ("supported-op", "standard", _check_supported),
    ("initializer-input", "standard", _check_initializers),
    ("uint8-input-cast", "*", _check_uint8_input),
    ("uint8-internal", "*", _check_uint8_internal),
    ("topk-k", "TopK", _check_topk),
    ("nms-candidates", "NonMaxSuppression", _check_nms),
    ("resize", "Resize", _check_resize),
    ("argmax-uint8", "ArgMax", _check_argmax),
    ("argmax-uint8", "ArgMin", _check_argmax),
    ("scatternd-reduction", "ScatterND", _check_scatternd),
    ("custom-op", "custom", _check_custom),
    ("int32-attribute", "*", _check_int32),
    ("qdq", "QuantizeLinear", _check_qdq),
    ("qdq", "DequantizeLinear", _check_qdq),
    ("plugin-types", "custom", _check_plugin_types),
)


def lint_model(model: Any) -> list[Violation]:
    """Every violation of :data:`RULES` in an ONNX ``ModelProto``, in node order."""
    g = _Graph(model)
    found: list[Violation] = []
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not OPSETS[0] <= opset.version <= OPSETS[1]:
            found.append(Violation("(model)", "opset_import", "opset",
                                   f"opset {opset.version}; export with an opset in {OPSETS[0]}..{OPSETS[1]}"))
    for node in g.graph.node:
        custom = node.domain not in ("", "ai.onnx")
        attrs = _attrs(node)
        for rule, applies, check in _CHECKS:
            if (applies == "*" or (applies == "custom" and custom)
                    or (not custom and applies in ("standard", node.op_type))):
                found.extend(Violation(node.name or node.op_type, node.op_type, rule, detail)
                             for detail in check(g, node, attrs))
    return found


def data_dependent_ops(graph: Any) -> tuple[str, ...]:
    """The :data:`DATA_DEPENDENT_OPS` an ONNX ``GraphProto`` uses, sorted."""
    return tuple(sorted({n.op_type for n in graph.node if n.op_type in DATA_DEPENDENT_OPS}))


def lint_file(path: str | os.PathLike[str]) -> list[Violation]:
    """:func:`lint_model` of an ONNX file; :class:`ModelFileError` when it cannot be read."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such ONNX file")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ModelFileError(f"{p.name}: not a readable ONNX file ({exc})") from exc
    return lint_model(model)
