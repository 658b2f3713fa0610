"""Inference backends, picked from the model file's type."""

from __future__ import annotations

import os
from pathlib import Path

from edgeseg.backends.base import Backend, TensorSpec
from edgeseg.errors import ModelFileError

# File suffix -> backend. TensorRT engines join this table with the TensorRT backend.
SUFFIXES = {".onnx": "onnxruntime"}


def open_backend(path: str | os.PathLike[str], threads: int | None = None) -> Backend:
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
        known = ", ".join(sorted(SUFFIXES))
        raise ModelFileError(
            f"{p.name}: unknown model file type {p.suffix or '(no suffix)'!r}; edgeseg loads {known} "
            "files written by `edgeseg convert`"
        )
    from edgeseg.backends.ort import OnnxRuntimeBackend

    return OnnxRuntimeBackend(p, threads=threads)


__all__ = ["SUFFIXES", "Backend", "TensorSpec", "open_backend"]
