"""``edgeseg build --timing-cache FILE``: the file checked before the build, and a cache TensorRT
refuses rebuilt rather than fatal.

TensorRT's timing cache is opaque bytes that only TensorRT can validate (it refuses a damaged
one, or one from another TensorRT version or GPU, when it is set on the builder config). A
refused cache only costs build time, so the build goes on with an empty one, says so on one
warning line, and writes the new cache over the old file when it is done. This module needs no
TensorRT: the builder config is whatever ``create_timing_cache``/``set_timing_cache`` has.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeseg.atomic import check_writable
from edgeseg.errors import CacheError, ConversionError, EdgesegWarning


def read_timing_cache(path: Path | None) -> bytes:
    """The bytes of the timing cache *path* (b"" when None, absent or empty), checked before the
    build starts: :class:`CacheError` for a folder, :class:`~edgeseg.errors.OutputError` where
    the cache cannot be written after the build (a missing folder)."""
    if path is None:
        return b""
    if path.is_dir():
        raise CacheError(f"--timing-cache {path}: it is a folder; give a file name such as {path / 'timing.cache'}")
    check_writable(path)
    if not path.is_file():
        return b""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CacheError(f"--timing-cache {path}: cannot be read ({exc.strerror or exc}); fix its permissions or "
                         "delete it") from exc


def use_timing_cache(config: Any, data: bytes, path: Path | None, last_error: Callable[[], str]) -> None:
    """Give the builder *config* the timing cache made from *data* (the file *path*'s bytes). A
    cache TensorRT refuses is an :class:`EdgesegWarning` and an empty cache instead (written
    over *path* after the build); :class:`ConversionError` if not even an empty one can be set."""
    if data:
        try:
            cache = config.create_timing_cache(data)
            ok = cache is not None and config.set_timing_cache(cache, ignore_mismatch=False)
        except (RuntimeError, TypeError, ValueError):
            ok = False
        if ok:
            return
        reason = last_error() or "damaged, or written by another TensorRT version or GPU"
        warnings.warn(EdgesegWarning(f"--timing-cache {path}: TensorRT cannot use it ({reason}); building without "
                                     "it, it will be rewritten"), stacklevel=2)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise ConversionError(f"TensorRT could not set up a timing cache: {last_error() or 'no reason'}")
