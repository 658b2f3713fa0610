"""INT8 Q/DQ graphs on the CPU: the same quantization, re-encoded for ONNX Runtime's fast kernels.

Two rewrites the ONNX Runtime backend applies when it loads an INT8 file, both exact in value:
:func:`activations_to_uint8` (x86 only) and :func:`fold_quantized_relu`.

edgeseg's INT8 files use signed, symmetric activations (zero point 0), the one form TensorRT
accepts. ONNX Runtime's x86 int8 kernels are fast for unsigned activations with signed weights
(the VNNI instruction multiplies u8 by s8) and much slower for s8 x s8. Storing an activation
as ``q + 128`` with zero point 128 is the same quantization: ``clamp(round(x / s), -128, 127) + 128
= clamp(round(x / s) + 128, 0, 255)`` and ``(q_u8 - 128) * s = q_s8 * s``: the same scales, the same
grid, the same values after every DequantizeLinear; only the byte stored in between changes.
Weights (constants) keep int8. (Outputs may still differ in the last bits, because ONNX Runtime
fuses the uint8 form into QLinearConv, which requantizes in integer arithmetic, where for s8 x s8
it falls back to dequantize + float Conv; TensorRT fuses as the former does.) ARM CPUs take s8 x s8
well, so the backend re-encodes on x86 only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Q_OPS = ("QuantizeLinear", "DequantizeLinear")


def has_int8_activations(graph: Any) -> bool:
    """Whether *graph* quantizes an activation (not only weights) to int8."""
    constants = {t.name for t in graph.initializer}
    return any(n.op_type == "QuantizeLinear" and n.input[0] not in constants for n in graph.node)


def activations_to_uint8(model: Any) -> Any:
    """A copy of *model* whose int8 activation Q/DQ pairs use uint8 with zero point 128 (exact)."""
    from onnx import TensorProto, numpy_helper

    out = type(model)()
    out.CopyFrom(model)
    graph = out.graph
    initializers = {t.name: t for t in graph.initializer}
    weights = {n.output[0] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] in initializers}
    weights |= {t.name for t in graph.initializer if t.data_type == TensorProto.INT8}
    shifted: dict[str, str] = {}
    for node in graph.node:
        if node.op_type not in Q_OPS or len(node.input) < 3 or not node.input[2]:
            continue
        quantized = node.output[0] if node.op_type == "QuantizeLinear" else node.input[0]
        zero = node.input[2]
        if quantized in weights or zero not in initializers or initializers[zero].data_type != TensorProto.INT8:
            continue
        if zero not in shifted:
            values = numpy_helper.to_array(initializers[zero]).astype(np.int16) + 128
            shifted[zero] = f"{zero}__u8"
            graph.initializer.append(numpy_helper.from_array(values.astype(np.uint8), shifted[zero]))
        node.input[2] = shifted[zero]
    for value in graph.value_info:
        if value.type.tensor_type.elem_type == TensorProto.INT8 and value.name not in weights:
            value.type.tensor_type.elem_type = TensorProto.UINT8
    return out


def fold_quantized_relu(model: Any) -> Any:
    """A copy of *model* where ``DequantizeLinear -> Relu -> QuantizeLinear`` with one scale and
    zero point on both sides (ONNX Runtime's quantizer gives a Relu's input its output's range)
    becomes ``Max(q, zero_point)`` on the quantized values: the same numbers, since
    ``Q(max((q - z) * s, 0)) = max(q, z)`` for an integer ``q``, without a float round trip of
    the tensor. (TensorRT fuses the pattern into the convolution before it.)"""
    from collections import defaultdict

    from onnx import helper, numpy_helper

    out = type(model)()
    out.CopyFrom(model)
    graph = out.graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for n in graph.node:
        for name in n.input:
            consumers[name].append(n)

    def same(a: str, b: str) -> bool:
        return a in values and b in values and values[a].dtype == values[b].dtype and \
            values[a].size == 1 and np.array_equal(values[a], values[b])

    drop: set[int] = set()
    replace: dict[int, Any] = {}
    for relu in graph.node:
        if relu.op_type != "Relu":
            continue
        dq = producers.get(relu.input[0])
        after = consumers[relu.output[0]]
        if dq is None or dq.op_type != "DequantizeLinear" or len(consumers[dq.output[0]]) != 1 or len(after) != 1:
            continue
        q = after[0]
        if q.op_type != "QuantizeLinear" or len(dq.input) < 3 or len(q.input) < 3 or q.output[0] in {
                o.name for o in graph.output}:
            continue
        if not (same(dq.input[1], q.input[1]) and same(dq.input[2], q.input[2])):
            continue
        drop.update((id(dq), id(relu)))
        replace[id(q)] = helper.make_node("Max", [dq.input[0], dq.input[2]], [q.output[0]], name=f"{relu.name}__int8")
    nodes = [replace.get(id(n), n) for n in graph.node if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(nodes)
    return out
