"""The ``.engine`` file edgeseg writes: a TensorRT plan with the model's metadata in front of it.

A bare TensorRT plan cannot carry user metadata, and a plan is only usable with the TensorRT
version and GPU it was built for. So ``edgeseg build`` writes::

    b"EDGESEG-TRT\\x00"       12 bytes, magic
    header length           u32 little-endian
    header                  UTF-8 JSON: {"format_version": 1,             this layout (absent: 1, older engines)
                                         "metadata": {key: value, ...}   the ONNX file's metadata_props
                                         "build": {...}}                   TensorRT version, GPU, precision, plugins
    plan                    the serialised TensorRT engine, to the end of the file

Reading the header needs neither TensorRT nor a GPU (``edgeseg info``); :func:`plan_bytes` gives
the bare plan for tools that want one (trtexec, Triton).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.atomic import atomic_output
from edgeseg.errors import ModelFileError

MAGIC = b"EDGESEG-TRT\x00"
HEADER_FORMAT = 1  # the header's layout; engines written before it was recorded have none (read as 1)
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class EngineTensor:
    """An engine input or output, as `edgeseg build` lists it in the header."""

    role: str  # "input" or "output"
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name, e.g. "uint8"


@dataclass(frozen=True)
class BuildInfo:
    """How and where an engine was built."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # e.g. "8.7" (Jetson Orin)
    precision: str  # "fp32", "fp16", "int8" or "fp16+int8"
    plugins: tuple[str, ...] = ()  # custom ops served by edgeseg's plugin library
    fp32_layers: tuple[str, ...] = ()  # layer-name patterns pinned to FP32
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tensors(self) -> list[EngineTensor]:
        """The engine's inputs and outputs (``extra["tensors"]``); empty for engines built before
        edgeseg recorded them."""
        return [EngineTensor(str(role), str(name), tuple(int(d) for d in shape), str(dtype))
                for role, name, shape, dtype in self.extra.get("tensors", [])]

    def graph_capturable(self, instance: bool) -> bool:
        """Whether the engine can run as a captured CUDA graph: not when its graph has
        data-dependent shapes (NonMaxSuppression's selection, which TensorRT sizes on the host
        between kernels). ``edgeseg build`` records them (``extra["data_dependent_shapes"]``);
        engines built before that are judged by their kind: every *instance* model has NMS."""
        recorded = self.extra.get("data_dependent_shapes")
        if recorded is not None and not isinstance(recorded, list):
            raise TypeError(f"data_dependent_shapes: expected a list, got {recorded!r}")
        return not (bool(recorded) if recorded is not None else instance)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "precision": self.precision,
            "plugins": list(self.plugins),
            "fp32_layers": list(self.fp32_layers),
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildInfo:
        """The build section of a header; TypeError or ValueError where a field has the wrong type."""
        return cls(
            tensorrt_version=str(data["tensorrt_version"]),
            gpu_name=str(data["gpu_name"]),
            compute_capability=str(data["compute_capability"]),
            precision=str(data["precision"]),
            plugins=_names(data.get("plugins", []), "plugins"),
            fp32_layers=_names(data.get("fp32_layers", []), "fp32_layers"),
            extra=dict(data.get("extra", {})),
        )


def _names(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{field}: expected a list of names, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class EngineHeader:
    """What precedes the plan: the model's metadata (key/value, as in the ONNX file) and build info."""

    metadata: dict[str, str]
    build: BuildInfo
    plan_offset: int  # bytes from the start of the file to the plan


def write_engine(path: str | os.PathLike[str], plan: bytes | memoryview, metadata: dict[str, str],
                 build: BuildInfo) -> Path:
    """Write *plan* with its header to *path* atomically (temporary name, then rename)."""
    header = json.dumps({"format_version": HEADER_FORMAT, "metadata": metadata, "build": build.to_dict()},
                        sort_keys=True).encode()
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        f.write(MAGIC)
        f.write(_LENGTH.pack(len(header)))
        f.write(header)
        f.write(plan)
    return Path(path)


def read_header(path: str | os.PathLike[str]) -> EngineHeader:
    """The header of an edgeseg engine file; :class:`ModelFileError` if *path* is not one."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            start = f.read(len(MAGIC) + _LENGTH.size)
            if start[: len(MAGIC)] != MAGIC:
                raise ModelFileError(
                    f"{p.name}: not an engine written by `edgeseg build` (a bare TensorRT plan carries no "
                    "model metadata); build it from the ONNX file with `edgeseg build MODEL.onnx -o MODEL.engine`"
                )
            if len(start) < len(MAGIC) + _LENGTH.size:
                raise ModelFileError(f"{p.name}: truncated engine file; build it again with `edgeseg build`")
            (length,) = _LENGTH.unpack(start[len(MAGIC):])
            raw = f.read(length)
    except OSError as exc:
        raise ModelFileError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    if len(raw) != length:
        raise ModelFileError(f"{p.name}: truncated engine file; build it again with `edgeseg build`")
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        version = data.get("format_version", 1)
        if isinstance(version, int) and not isinstance(version, bool) and version > HEADER_FORMAT:
            raise ModelFileError(f"{p.name}: engine header format {version} is newer than this edgeseg reads; "
                                 "upgrade edgeseg, or build the engine again with this one (`edgeseg build`)")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"format_version {version!r}")
        metadata = {str(k): str(v) for k, v in data["metadata"].items()}
        build = BuildInfo.from_dict(data["build"])
        _ = build.tensors, build.graph_capturable(False)  # the parts read later, parsed now
    except ModelFileError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{p.name}: damaged engine header ({exc}); build it again with `edgeseg build`") from exc
    return EngineHeader(metadata, build, len(MAGIC) + _LENGTH.size + length)


def plan_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bare TensorRT plan inside an edgeseg engine file."""
    header = read_header(path)
    with open(path, "rb") as f:
        f.seek(header.plan_offset)
        plan = f.read()
    if not plan:
        raise ModelFileError(f"{Path(path).name}: the engine file holds no TensorRT plan; build it again")
    return plan
