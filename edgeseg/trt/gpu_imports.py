"""Import TensorRT and cuda-python, or say exactly what to install."""

from __future__ import annotations

import platform
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgeseg.errors import BackendUnavailableError, ModelFileError


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


#: The cuda-python for each CUDA major version of the driver: a cuda-python (cuda-bindings) of
#: major N needs a driver for CUDA N (13.x refuses a CUDA 12 driver: JetPack 6, most desktop
#: drivers of 2025). setup.py's extras trt-cu12 / trt-cu13 hold the same pins.
CUDA_PYTHON_PINS = {12: "cuda-python>=12.6,<13", 13: "cuda-python>=13,<14"}


def import_cudart() -> Any:
    """``cuda.bindings.runtime`` (cuda-python 12.6+ / 13), or its older name ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError as exc:
            raise BackendUnavailableError(
                f"cuda-python is not installed ({exc}); pip install '{CUDA_PYTHON_PINS[12]}' on JetPack 6 or a "
                f"CUDA 12 driver, '{CUDA_PYTHON_PINS[13]}' on JetPack 7 or a CUDA 13 driver (nvidia-smi shows it)"
            ) from exc
    return runtime


def strongly_typed_flags(trt: Any) -> int:
    """``create_network`` flags for a strongly typed network on TensorRT 10.3 and 11.x alike.

    The flag's bit differs (``kSTRONGLY_TYPED`` is 1 on 10.3; on 11.x it is 0, deprecated and
    ignored, as every network is strongly typed there and bit 1 means something else), so it is
    read from the binding, never written as a number."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def numpy_dtype(trt: Any, dtype: Any, where: str, fix: str) -> np.dtype:
    """The numpy dtype of TensorRT DataType *dtype*; :class:`ModelFileError` naming *where* (the
    file and tensor) and *fix* for the types numpy lacks (BF16, FP8, FP4, INT4), on which
    ``trt.nptype`` raises a bare TypeError."""
    try:
        return np.dtype(trt.nptype(dtype))
    except TypeError:
        name = str(getattr(dtype, "name", dtype)).upper()
        raise ModelFileError(f"{where} is {name}, a type numpy lacks (edgeseg reads and writes graph inputs and "
                             f"outputs as numpy arrays); {fix}") from None


def tensorrt_major(trt: ModuleType) -> int:
    """Major version of the imported TensorRT (``10`` for 10.3.0)."""
    return int(str(trt.__version__).split(".")[0])


class CudaError(BackendUnavailableError):
    """A CUDA runtime call failed (no GPU, driver too old, out of memory...)."""


def _cuda_version(version: int) -> str:
    """``"12.6"`` for CUDA's 12060."""
    return f"{version // 1000}.{version % 1000 // 10}"


def driver_problem(cudart: Any) -> tuple[str, str] | None:
    """Why CUDA calls fail with cudaErrorInsufficientDriver, as (reason, fix): no driver at all
    (``cudaDriverGetVersion`` gives 0), or a driver for an older CUDA major than these bindings
    (cuda-python 13 on a CUDA 12 driver); None when neither is the case."""
    try:  # (not through check(), which asks this on cudaErrorInsufficientDriver)
        (err_driver, driver), (err_bindings, bindings) = cudart.cudaDriverGetVersion(), cudart.cudaRuntimeGetVersion()
        if int(err_driver) or int(err_bindings):
            return None
        driver, bindings = int(driver), int(bindings)
    except (AttributeError, TypeError, ValueError):  # bindings without these calls
        return None
    if driver == 0:
        return ("no NVIDIA driver found",
                "on a GPU machine, nvidia-smi (tegrastats on a Jetson) must list the GPU")
    if driver // 1000 < bindings // 1000:
        pin = CUDA_PYTHON_PINS.get(driver // 1000)
        fix = (f"pip install '{pin}' (the cuda-python of the driver's CUDA)" if pin else
               "update the NVIDIA driver (JetPack 6 or newer on a Jetson): edgeseg needs CUDA 12.6 or newer")
        return (f"driver too old for these bindings: the driver is for CUDA {_cuda_version(driver)}, the installed "
                f"cuda-python for CUDA {_cuda_version(bindings)}", fix)
    return None


def check(result: Any, what: str) -> Any:
    """Unwrap a cuda-python call's ``(error, *values)`` tuple; :class:`CudaError` unless it succeeded."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        name = getattr(err, "name", str(err))
        hint = ""
        if "InsufficientDriver" in name:
            problem = driver_problem(import_cudart())
            hint = (f"; {problem[0]}: {problem[1]}" if problem else
                    "; is an NVIDIA GPU with its driver present? (nvidia-smi / tegrastats)")
        elif "NoDevice" in name:
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
