"""Find edgeseg's TensorRT plugin library and load it into TensorRT's plugin registry.

The library (``libedgeseg_trt_plugins.so``, built from ``plugins/`` with CMake on the device)
serves the custom ops MultiLevelRoIAlign and PasteMasks of the Mask R-CNN graphs. It is looked
for, in order, at ``$EDGESEG_PLUGIN_LIBRARY`` and in ``edgeseg/lib/`` (where ``cmake --install``
puts it). It must be built against the same TensorRT major version it is loaded into.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path
from types import ModuleType

from edgeseg.errors import BackendUnavailableError, EngineMismatchError
from edgeseg.trt.gpu_imports import tensorrt_major

LIBRARY_NAME = "libedgeseg_trt_plugins.so"
ENV_VAR = "EDGESEG_PLUGIN_LIBRARY"
#: what the library exports so that edgeseg can check it before TensorRT loads it
VERSION_SYMBOL = "edgesegPluginTensorRTVersion"
PACKAGE_LIB = Path(__file__).resolve().parents[1] / "lib"

BUILD_HINT = (
    "build it on this machine: cmake -S plugins -B build/plugins && cmake --build build/plugins -j "
    "&& cmake --install build/plugins (README: Running on a Jetson)"
)

_loaded: dict[str, Path] = {}
# One load at a time: TensorRT's registry refuses plugins already registered, so two threads opening
# engines at once (one per camera) must not both load the library.
_loading = threading.Lock()


class PluginLibraryError(BackendUnavailableError):
    """The plugin library is missing or cannot be loaded."""


def find_library() -> Path:
    """Path of the plugin library; :class:`PluginLibraryError` saying how to build it."""
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env)
        if not path.is_file():
            raise PluginLibraryError(f"{ENV_VAR}={env}: no such file; unset it or {BUILD_HINT}")
        return path
    path = PACKAGE_LIB / LIBRARY_NAME
    if path.is_file():
        return path
    raise PluginLibraryError(
        f"edgeseg's TensorRT plugin library {LIBRARY_NAME} was not found (looked at ${ENV_VAR} and {PACKAGE_LIB}); "
        f"Mask R-CNN models need it: {BUILD_HINT}"
    )


def library_tensorrt_version(path: Path) -> int:
    """TensorRT version of the headers *path* was built with (major * 10000 + minor * 100 + patch)."""
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise PluginLibraryError(f"{path}: cannot be loaded ({exc}); {BUILD_HINT}") from exc
    try:
        fn = getattr(lib, VERSION_SYMBOL)
    except AttributeError:  # not edgeseg's library, or one built before the symbol existed
        raise PluginLibraryError(
            f"{path} is not edgeseg's plugin library, or an old build of it (it has no {VERSION_SYMBOL}); "
            f"{BUILD_HINT}") from None
    fn.restype = ctypes.c_int32
    return int(fn())


def major_minor(version: int) -> str:
    """``"10.3"`` for :func:`library_tensorrt_version`'s 100300."""
    return f"{version // 10000}.{version // 100 % 100}"


def loaded() -> list[Path]:
    """The plugin libraries :func:`load_plugins` loaded into this process's TensorRT."""
    return list(_loaded.values())


def load_plugins(trt: ModuleType) -> Path:
    """Load the plugin library into TensorRT's registry once per process; return its path.

    :class:`EngineMismatchError` when it was built for another TensorRT major version.
    """
    path = find_library()
    with _loading:
        return _load_once(trt, path)


def _load_once(trt: ModuleType, path: Path) -> Path:
    key = str(path.resolve())
    if key in _loaded:
        return _loaded[key]
    built = library_tensorrt_version(path)
    running = tensorrt_major(trt)
    if built // 10000 != running:
        raise EngineMismatchError(
            f"{path} was built against TensorRT {major_minor(built)} headers but TensorRT "
            f"{trt.__version__} is running; {BUILD_HINT}"
        )
    from edgeseg.trt.trt_logger import LOGGER  # (imports tensorrt: only once a caller has it)

    # The registry logs to TensorRT's process logger: edgeseg's, once a builder or runtime was
    # made with it (callers make theirs first).
    with LOGGER.capture() as errors:
        handle = trt.get_plugin_registry().load_library(str(path))
    if handle is None:
        reason = errors.last_error() or "see the TensorRT log above"
        raise PluginLibraryError(f"TensorRT could not load {path} ({reason}); {BUILD_HINT}")
    _loaded[key] = path
    return path
