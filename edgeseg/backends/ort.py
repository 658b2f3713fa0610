"""ONNX Runtime backend: runs an edgeseg ONNX file on the CPU."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg import ranges
from edgeseg.backends.base import Backend, TensorSpec
from edgeseg.backends.int8_cpu import activations_to_uint8, fold_quantized_relu, has_int8_activations
from edgeseg.backends.split_graph import RowTrim, SplitGraph
from edgeseg.custom_ops import custom_ops_in
from edgeseg.errors import BackendUnavailableError, ModelFileError


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError(
            "onnxruntime is not installed: `pip install onnxruntime` to run .onnx models"
        ) from exc
    return onnxruntime


#: machine names of x86-64 CPUs (platform.machine(), lower case)
X86 = ("x86_64", "amd64")


class OnnxRuntimeBackend(Backend):
    """One ONNX Runtime inference session.

    *threads* is the number of intra-op threads (``None``: ONNX Runtime's default, one per
    core). Graph optimisations are all on; ops run sequentially, which is fastest for one frame.
    """

    name = "onnxruntime"
    concurrent_runs = True  # an InferenceSession's run() is thread-safe; the CPU kernels are pure

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, trim_rows: bool = True) -> None:
        ort = _import_ort()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        if threads is not None:
            opts.intra_op_num_threads = ranges.check("threads", threads, 1, integer=True)
        opts.log_severity_level = 3
        # Idle ONNX Runtime threads would spin and steal the cores from our CPU kernels (which
        # run between segments) and from the caller's own threads.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        name = Path(path).name

        def make_session(model: str | bytes) -> Any:  # a file path or serialized ONNX
            try:
                return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # ORT raises its own untyped errors for unreadable graphs
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ModelFileError(f"{name}: ONNX Runtime cannot load it ({first})") from exc

        proto = _read_onnx(Path(path))
        self._metadata = {p.key: p.value for p in proto.metadata_props}
        meta = self._parse_metadata(name)
        source: str | bytes = str(path)
        if has_int8_activations(proto.graph):
            # the same quantization in the form ONNX Runtime's int8 kernels run fastest
            # (edgeseg/backends/int8_cpu.py): u8 x s8 on x86, Relu as an integer max
            if platform.machine().lower() in X86:
                proto = activations_to_uint8(proto)
            proto = fold_quantized_relu(proto)
            source = proto.SerializeToString()
        self._split: SplitGraph | None = None
        self.custom_ops = custom_ops_in(proto.graph)
        if self.custom_ops:
            rows = RowTrim.for_model(meta) if trim_rows else None
            self._split = SplitGraph(proto, make_session, threads=threads or 0, rows=rows)
        else:
            self._session = make_session(source)
        self._inputs = [_proto_spec(v) for v in proto.graph.input]
        self._outputs = [_proto_spec(v) for v in proto.graph.output]

    def inner_timings(self) -> list[tuple[str, float]]:
        return list(self._split.last_timings) if self._split is not None else []

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        if self._split is not None:
            return self._split.run(feeds, outputs)
        values = self._session.run(list(outputs), dict(feeds))
        return dict(zip(outputs, values, strict=True))


def _read_onnx(path: Path) -> Any:
    import onnx

    try:
        return onnx.load(str(path), load_external_data=True)
    except Exception as exc:  # protobuf's DecodeError and friends: the file is not ONNX
        raise ModelFileError(f"{path.name}: ONNX Runtime cannot load it (not a valid ONNX file: {exc})") from exc


def _proto_spec(value: Any) -> TensorSpec:
    from onnx import helper

    t = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
    return TensorSpec(value.name, shape, np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)))
