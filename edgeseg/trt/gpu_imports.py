"""Import TensorRT and cuda-python, or say exactly what to install."""

from __future__ import annotations

import platform
from pathlib import Path
from types import ModuleType
from typing import Any

from edgeseg.errors import BackendUnavailableError


def on_jetson() -> bool:
    """Whether this is an NVIDIA Jetson (JetPack's L4T release file on an aarch64 machine)."""
    return platform.machine() == "aarch64" and Path("/etc/nv_tegra_release").exists()


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module; :class:`BackendUnavailableError` naming the package to install."""
    try:
        import tensorrt

        # tensorrt-stubs alone leaves a folder that imports as an empty namespace package.
        if not hasattr(tensorrt, "Builder"):
            raise ImportError("only type stubs (tensorrt-stubs) are installed, not TensorRT")
    except ImportError as exc:
        hint = (
            "on a Jetson, TensorRT comes with JetPack: sudo apt install python3-libnvinfer "
            "(and create the venv with --system-site-packages)"
            if on_jetson()
            else "pip install 'edgeseg[trt]' (TensorRT 10.3 or newer and cuda-python)"
        )
        raise BackendUnavailableError(f"TensorRT's Python package is not installed ({exc}); {hint}") from exc
    return tensorrt


def import_cudart() -> Any:
    """``cuda.bindings.runtime`` (cuda-python 12.6+ / 13), or its older name ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError as exc:
            raise BackendUnavailableError(
                f"cuda-python is not installed ({exc}); pip install cuda-python (its major version must match "
                "the CUDA of your driver / JetPack, e.g. 'cuda-python>=12.6,<13' on JetPack 6)"
            ) from exc
    return runtime


def strongly_typed_flags(trt: Any) -> int:
    """``create_network`` flags for a strongly typed network on TensorRT 10.3 and 11.x alike.

    The flag's bit differs (``kSTRONGLY_TYPED`` is 1 on 10.3; on 11.x it is 0, deprecated and
    ignored, as every network is strongly typed there and bit 1 means something else), so it is
    read from the binding, never written as a number."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def tensorrt_major(trt: ModuleType) -> int:
    """Major version of the imported TensorRT (``10`` for 10.3.0)."""
    return int(str(trt.__version__).split(".")[0])


class CudaError(BackendUnavailableError):
    """A CUDA runtime call failed (no GPU, driver too old, out of memory...)."""


def check(result: Any, what: str) -> Any:
    """Unwrap a cuda-python call's ``(error, *values)`` tuple; :class:`CudaError` unless it succeeded."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        name = getattr(err, "name", str(err))
        hint = ""
        if "InsufficientDriver" in name or "NoDevice" in name:
            hint = "; is an NVIDIA GPU with its driver present? (nvidia-smi / tegrastats)"
        raise CudaError(f"CUDA {what} failed: {name}{hint}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def current_gpu(cudart: Any) -> tuple[str, str]:
    """(name, compute capability "major.minor") of the current CUDA device."""
    device = check(cudart.cudaGetDevice(), "cudaGetDevice")
    props = check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    return name, f"{props.major}.{props.minor}"
