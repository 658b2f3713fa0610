"""Running a graph with edgeseg's custom nodes on ONNX Runtime.

ONNX Runtime cannot run ``edgeseg.MultiLevelRoIAlign`` or ``edgeseg.PasteMasks``, and no
package here ships the C headers its custom-op API needs. So the graph is cut at the custom nodes:
the standard nodes run as ONNX Runtime sessions (segments), the custom nodes run with the CPU
build of the plugin math (``edgeseg.ops``) on the numpy arrays the segments return, without
copies. Each node gets a *stage*: the number of custom nodes on its longest path from the inputs.
Stage ``s`` runs as: the segment of the standard nodes of stage ``s``, then the custom nodes of
stage ``s``. A tensor is dropped as soon as no later step needs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.custom_ops import CUSTOM_OPS, DOMAIN
from edgeseg.errors import ModelFileError
from edgeseg.metadata import ModelMetadata


@dataclass
class Segment:
    session: Any  # onnxruntime.InferenceSession
    inputs: list[str]
    outputs: list[str]
    nodes: int

    @property
    def label(self) -> str:
        return f"onnxruntime segment ({self.nodes} nodes)"


@dataclass
class CustomStep:
    op_type: str
    attrs: dict[str, Any]
    inputs: list[str]
    outputs: list[str]

    @property
    def label(self) -> str:
        return f"{self.op_type} (edgeseg cpu kernel)"


Step = Segment | CustomStep


@dataclass(frozen=True)
class RowTrim:
    """Instance graphs compute K rows (detection slots) after NMS, of which only the first
    ``count`` hold detections. On the CPU the steps after ``count`` is known run on those rows
    alone (at least one), and graph outputs are padded back to ``rows`` rows with zeros, so the
    caller sees the graph's shapes. Every cross-step tensor with ``rows`` rows after that point
    must be per-detection, which the converter guarantees."""

    count: str
    rows: int

    @classmethod
    def for_model(cls, meta: ModelMetadata | None) -> RowTrim | None:
        """The trimming an instance model allows (its metadata's ``row_trim``); None otherwise."""
        if meta is None or meta.instance is None or not meta.instance.row_trim:
            return None
        return cls(meta.outputs["num_detections"], meta.instance.max_detections)


def _attribute_values(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: _decode(helper.get_attribute_value(a)) for a in node.attribute}


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def stages(graph: Any) -> list[int]:
    """The stage of every node of *graph* (see the module docstring), in node order.

    Nodes that read only initializers and constants (Constant, Identity of a weight, shape
    arithmetic on constants) get -1: they are copied into every segment that needs them instead
    of being passed between segments."""
    constant = {t.name for t in graph.initializer}
    produced_at: dict[str, int] = {}
    result = []
    for node in graph.node:
        if node.domain in ("", "ai.onnx") and all(name in constant for name in node.input if name):
            result.append(-1)
            constant.update(node.output)
            continue
        stage = max((produced_at.get(name, 0) for name in node.input if name), default=0)
        result.append(stage)
        after = stage + 1 if node.domain == DOMAIN else stage
        for name in node.output:
            produced_at[name] = after
    return result


def _with_constants(nodes: list[Any], constants: list[Any]) -> list[Any]:
    """*nodes* preceded by the constant nodes they need, directly or through each other."""
    by_output = {out: n for n in constants for out in n.output}
    needed: dict[int, Any] = {}
    pending = [name for n in nodes for name in n.input]
    while pending:
        node = by_output.get(pending.pop())
        if node is not None and id(node) not in needed:
            needed[id(node)] = node
            pending.extend(node.input)
    return [n for n in constants if id(n) in needed] + nodes


class SplitGraph:
    """An ONNX model with custom nodes, run as ONNX Runtime segments plus CPU kernels.

    *make_session* turns serialized ONNX bytes into an ONNX Runtime session; *threads* is
    passed to the custom kernels.
    """

    def __init__(self, model: Any, make_session: Callable[[bytes], Any], threads: int = 0,
                 rows: RowTrim | None = None) -> None:
        from onnx import shape_inference

        if not model.graph.value_info:
            # Converters write every tensor's type; infer it for graphs made elsewhere.
            model = shape_inference.infer_shapes(model)
        graph = model.graph
        self.threads = threads
        self.input_names = [i.name for i in graph.input]
        self.output_names = [o.name for o in graph.output]
        types = {v.name: v for v in (*graph.value_info, *graph.input, *graph.output)}
        initializers = {t.name: t for t in graph.initializer}
        node_stages = stages(graph)
        constants = [n for n, s in zip(graph.node, node_stages, strict=True) if s < 0]
        custom_reads = {name for n in graph.node if n.domain == DOMAIN for name in n.input}
        if any(out in custom_reads for n in constants for out in n.output):
            raise ModelFileError("a custom node reads a constant tensor; re-convert the model")

        self.rows = rows
        self.steps: list[Step] = []
        #: index of the step after which the detection count is known (row trimming starts)
        self._count_step: int | None = None
        for stage in range(max(node_stages, default=0) + 1):
            standard = [n for n, s in zip(graph.node, node_stages, strict=True) if s == stage and n.domain != DOMAIN]
            if standard:
                nodes = _with_constants(standard, constants)
                copied = len(nodes) - len(standard)
                dynamic = self._count_step is not None
                self.steps.append(self._segment(model, nodes, initializers, types, make_session, copied, dynamic))
                if rows is not None and rows.count in self.steps[-1].outputs:
                    self._count_step = len(self.steps) - 1
            for node, s in zip(graph.node, node_stages, strict=True):
                if s == stage and node.domain == DOMAIN:
                    if node.op_type not in CUSTOM_OPS:
                        raise ModelFileError(
                            f"custom op {DOMAIN}.{node.op_type} is unknown to this edgeseg; upgrade edgeseg"
                        )
                    self.steps.append(CustomStep(node.op_type, _attribute_values(node), list(node.input),
                                                 list(node.output)))
        self._last_use = self._last_uses()
        #: (step label, seconds) of the last run, in order: the per-stage profile tools print
        self.last_timings: list[tuple[str, float]] = []

    def _segment(
        self,
        model: Any,
        nodes: list[Any],
        initializers: Mapping[str, Any],
        types: Mapping[str, Any],
        make_session: Callable[[bytes], Any],
        copied: int,
        dynamic: bool = False,
    ) -> Segment:
        """A session for *nodes*, whose first *copied* are constant nodes copied in. *dynamic*:
        inputs and outputs with ``rows.rows`` rows take any number of rows (see RowTrim)."""
        from onnx import helper

        graph = model.graph
        produced_set = {name for n in nodes for name in n.output if name}
        produced = [name for n in nodes[copied:] for name in n.output if name]
        consumed = [name for n in nodes for name in n.input if name]
        inputs = list(dict.fromkeys(n for n in consumed if n not in produced_set and n not in initializers))
        # Outputs: produced here and read by a node outside this segment or by the caller.
        members = {id(n) for n in nodes}
        needed = set(self.output_names) | {name for n in graph.node if id(n) not in members for name in n.input}
        outputs = [name for name in produced if name in needed]

        def info(name: str) -> Any:
            if name not in types:
                raise ModelFileError(f"tensor {name!r} has no type information; re-convert the model")
            value = types[name]
            dims = value.type.tensor_type.shape.dim
            if dynamic and self.rows is not None and dims and dims[0].dim_value == self.rows.rows:
                value = type(value)()
                value.CopyFrom(types[name])
                value.type.tensor_type.shape.dim[0].dim_param = "detections"
            return value

        sub = helper.make_graph(
            nodes,
            "segment",
            [info(n) for n in inputs],
            [info(n) for n in outputs],
            [initializers[n] for n in dict.fromkeys(consumed) if n in initializers],
        )
        opsets = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
        sub_model = helper.make_model(sub, opset_imports=opsets, ir_version=model.ir_version)
        return Segment(make_session(sub_model.SerializeToString()), inputs, outputs, len(nodes) - copied)

    def _last_uses(self) -> dict[str, int]:
        last: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            for name in step.inputs:
                last[name] = i
        return last

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run every step; return the requested graph outputs."""
        env: dict[str, np.ndarray] = dict(feeds)
        keep = set(outputs)
        timings = []
        live_rows: int | None = None
        trimmed: set[str] = set()  # outputs computed on the live rows only
        for i, step in enumerate(self.steps):
            start = time.perf_counter()
            args = [env[name] for name in step.inputs]
            if live_rows is not None and self.rows is not None:
                args = [a[:live_rows] if a.ndim and a.shape[0] == self.rows.rows else a for a in args]
            if isinstance(step, Segment):
                values = step.session.run(step.outputs, dict(zip(step.inputs, args, strict=True)))
            else:
                values = CUSTOM_OPS[step.op_type].kernel(step.attrs, args, self.threads)
            env.update(zip(step.outputs, values, strict=True))
            if live_rows is not None:
                trimmed.update(step.outputs)
            if i == self._count_step and self.rows is not None:
                # At least one row: zero-row batches are not something every ONNX Runtime op takes.
                live_rows = max(1, int(env[self.rows.count].reshape(-1)[0]))
            for name in step.inputs:
                if self._last_use.get(name) == i and name not in keep:
                    env.pop(name, None)
            timings.append((step.label, time.perf_counter() - start))
        self.last_timings = timings
        result = {name: env[name] for name in outputs}
        if live_rows is not None:
            result = {name: self._pad_rows(value) if name in trimmed else value for name, value in result.items()}
        return result

    def _pad_rows(self, value: np.ndarray) -> np.ndarray:
        """A trimmed output back at the graph's ``rows`` rows; the extra rows are zero."""
        assert self.rows is not None
        if value.ndim == 0 or value.shape[0] >= self.rows.rows:
            return value
        padded = np.zeros((self.rows.rows, *value.shape[1:]), dtype=value.dtype)
        padded[: value.shape[0]] = value
        return padded
