"""The FP16 file: a mixed-precision graph, FP16 in the network layers, FP32 everywhere else.

Which nodes compute in FP16 comes from the family's :class:`~edgeseg.precision.rules.PrecisionRules`.
Every tensor keeps one type: FP16 where an FP16 node makes it, FP32 elsewhere; a Cast sits on
each edge between the two regions (one per tensor, shared by all its readers), so the FP32 parts
(box decoding, NMS, RoI coordinates, thresholds) never see a value rounded to FP16. Weights read
only by FP16 nodes are stored as FP16 (half the file). Graph inputs and outputs keep their types.

edgeseg's custom nodes inside the FP16 region take FP16 features and FP32 coordinates (the
combinations the plugins declare: ``CustomOp.coordinate_inputs`` stay FP32), and give FP16. An
op that is FP32-only (``CustomOp.fp32_only``: ZoomLinear, whose double arithmetic is truncated)
never joins the FP16 region, whatever the rules name: its inputs and output stay FP32.

Why not ONNX Runtime's ``float16.convert_float_to_float16`` (onnxconverter-common's): it types
every float tensor FP16 and wraps each FP32-kept node in Casts, so tensors passed between two
FP32 nodes go through FP16 (458 Casts in the Mask R-CNN graph, box coordinates rounded to FP16).
NVIDIA ModelOpt's AutoCast does this properly but is not installable here; this pass is the
small part of it edgeseg needs, and tests check its result (types per region, parity).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from edgeseg.custom_ops import CUSTOM_OPS, DOMAIN

#: standard-op inputs that are float by the ONNX spec whatever the data type (Resize's roi, scales)
FP32_INPUTS: dict[str, tuple[int, ...]] = {"Resize": (1, 2)}

FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT / FLOAT16
FP16_MAX = 65504.0


def _fp32_input(node: Any, index: int) -> bool:
    """Whether input *index* of an FP16 node stays FP32 (coordinates, Resize's scales)."""
    if node.domain == DOMAIN:
        op = CUSTOM_OPS.get(node.op_type)
        return op is None or index in op.coordinate_inputs
    return index in FP32_INPUTS.get(node.op_type, ())


def _fp32_only(node: Any) -> bool:
    """Whether *node* is a custom op that computes in FP32 only (inputs and output)."""
    op = CUSTOM_OPS.get(node.op_type) if node.domain == DOMAIN else None
    return op is not None and op.fp32_only


def to_fp16(model: Any, reduced: Iterable[str]) -> Any:
    """A copy of the FP32 ONNX *model* whose nodes named in *reduced* compute in FP16."""
    from onnx import helper, numpy_helper

    out = type(model)()
    out.CopyFrom(model)
    graph = out.graph
    fp16_nodes = set(reduced) - {n.name for n in graph.node if _fp32_only(n)}
    values = {v.name: v for v in (*graph.value_info, *graph.input, *graph.output)}
    initializers = {t.name: t for t in graph.initializer}
    graph_outputs = {o.name for o in graph.output}

    def elem_type(name: str) -> int:
        if name in initializers:
            return int(initializers[name].data_type)
        value = values.get(name)
        if value is None:
            raise ValueError(f"tensor {name!r} has no type information; re-convert the model")
        return int(value.type.tensor_type.elem_type)

    # Which FP32 tensors become FP16 (made by an FP16 node), and which initializers FP16 nodes read.
    half: set[str] = set()
    fp16_reads: dict[str, int] = {}  # initializer -> FP16 readers
    fp32_reads: dict[str, int] = {}
    for node in graph.node:
        in_fp16 = node.name in fp16_nodes
        if in_fp16:
            half.update(o for o in node.output if o and elem_type(o) == FLOAT)
        for i, name in enumerate(node.input):
            if name in initializers and initializers[name].data_type == FLOAT:
                reads = fp16_reads if in_fp16 and not _fp32_input(node, i) else fp32_reads
                reads[name] = reads.get(name, 0) + 1

    # Weights: converted in place when only FP16 nodes read them, else an FP16 copy beside them.
    renamed_weights: dict[str, str] = {}
    for name in fp16_reads:
        array = np.clip(numpy_helper.to_array(initializers[name]), -FP16_MAX, FP16_MAX).astype(np.float16)
        if name in fp32_reads:
            renamed_weights[name] = f"{name}__fp16"
            graph.initializer.append(numpy_helper.from_array(array, renamed_weights[name]))
        else:
            initializers[name].CopyFrom(numpy_helper.from_array(array, name))

    casts: dict[tuple[str, int], str] = {}
    new_nodes: list[Any] = []
    new_values: list[Any] = []

    def cast(name: str, to: int) -> str:
        """The name of *name* cast to *to*, adding the Cast node once, before its first reader."""
        key = (name, to)
        if key not in casts:
            suffix = "fp16" if to == FLOAT16 else "fp32"
            casts[key] = f"{name}__{suffix}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], name=f"{name}__cast_{suffix}", to=to))
            shape = values[name].type.tensor_type.shape if name in values else None
            vi = helper.make_tensor_value_info(casts[key], to, None)
            if shape is not None:
                vi.type.tensor_type.shape.CopyFrom(shape)
            new_values.append(vi)
        return casts[key]

    # Graph outputs made in FP16: the node writes an inner tensor, a Cast gives the output.
    inner_outputs = {name: f"{name}__fp16" for name in half if name in graph_outputs}
    tail: list[Any] = []
    for node in graph.node:
        in_fp16 = node.name in fp16_nodes
        for i, name in enumerate(node.input):
            if not name or (elem_type(name) != FLOAT and name not in half):
                continue
            source = inner_outputs.get(name, name)
            wants_half = in_fp16 and not _fp32_input(node, i)
            if name in initializers:
                if wants_half:
                    node.input[i] = renamed_weights.get(name, name)
                continue
            if wants_half and name not in half:
                node.input[i] = cast(source, FLOAT16)
            elif not wants_half and name in half:
                node.input[i] = cast(source, FLOAT)
            else:
                node.input[i] = source
        if in_fp16 and node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == FLOAT:
                    attr.i = FLOAT16
        for j, name in enumerate(node.output):
            if name in inner_outputs:
                node.output[j] = inner_outputs[name]
                tail.append(helper.make_node("Cast", [inner_outputs[name]], [name], name=f"{name}__cast_fp32",
                                             to=FLOAT))
        new_nodes.append(node)

    for name in half:
        if name in inner_outputs:
            vi = type(values[name])()
            vi.CopyFrom(values[name])
            vi.name = inner_outputs[name]
            vi.type.tensor_type.elem_type = FLOAT16
            new_values.append(vi)
        elif name in values:
            values[name].type.tensor_type.elem_type = FLOAT16
    del graph.node[:]
    graph.node.extend(new_nodes + tail)
    graph.value_info.extend(new_values)
    return out


def fp16_tensors(model: Any) -> set[str]:
    """Names of the FP16 tensors of *model* (value infos and initializers): for tests and info."""
    graph = model.graph
    return {v.name for v in (*graph.value_info, *graph.input, *graph.output)
            if v.type.tensor_type.elem_type == FLOAT16} | {t.name for t in graph.initializer
                                                           if t.data_type == FLOAT16}
