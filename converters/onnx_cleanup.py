"""Tidying an exported ONNX graph before it is written."""

from __future__ import annotations

from collections.abc import Mapping

import onnx
from onnx import shape_inference


def remove_dead_nodes(model: onnx.ModelProto) -> int:
    """Drop nodes (and initializers) that no graph output depends on; returns how many nodes.

    The TorchScript exporter leaves some behind (e.g. a Loop built for a Python list that is
    never read); TensorRT would still have to parse them."""
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


def set_static_shapes(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Write the known static shapes of graph inputs/outputs (the exporter names some dims
    symbolically even when they are fixed), then re-run shape inference over the graph."""
    for value in (*model.graph.input, *model.graph.output):
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for size in shapes[value.name]:
                dims.add().dim_value = int(size)
    inferred = shape_inference.infer_shapes(model)
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)
