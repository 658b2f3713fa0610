"""Inference backends, picked from the model file's type."""

from __future__ import annotations

import os
from pathlib import Path

from edgeseg.backends.base import Backend, TensorSpec
from edgeseg.errors import ModelFileError

# File suffix -> backend.
SUFFIXES = {".onnx": "onnxruntime", ".engine": "tensorrt"}


def open_backend(path: str | os.PathLike[str], threads: int | None = None, cuda_graph: bool = False) -> Backend:
    """Open *path* with the backend its suffix calls for.

    Raises :class:`ModelFileError` for a missing file or an unknown type.
    """
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: no such model file; convert one with `edgeseg convert`")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a folder, not a model file")
    kind = SUFFIXES.get(p.suffix.lower())
    if kind is None:
        raise ModelFileError(
            f"{p.name}: unknown model file type {p.suffix or '(no suffix)'!r}; edgeseg loads .onnx files written "
            "by `edgeseg convert` and .engine files written by `edgeseg build`"
        )
    if kind == "tensorrt":
        from edgeseg.engine_file import read_header
        from edgeseg.trt.gpu_imports import import_tensorrt

        read_header(p)  # a file that is not an edgeseg engine fails here, before TensorRT is needed
        import_tensorrt()
        from edgeseg.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(p, cuda_graph=cuda_graph)
    from edgeseg.backends.ort import OnnxRuntimeBackend

    return OnnxRuntimeBackend(p, threads=threads)


__all__ = ["SUFFIXES", "Backend", "TensorSpec", "open_backend"]
