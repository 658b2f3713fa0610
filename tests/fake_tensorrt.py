"""A stand-in for TensorRT's Python API and cuda-python's runtime, in host memory.

Enough of both for :mod:`edgeseg.backends.tensorrt` to open an engine file and run it: "device"
and "pinned" memory are ctypes buffers addressed by their real addresses, copies are memmoves,
streams and events are counters, and an execution context computes its outputs with a Python
function of its inputs, read from and written to the addresses the backend bound. What it checks
is the backend's own bookkeeping (lanes, bindings, copies, row trimming), not TensorRT.
"""

from __future__ import annotations

import ctypes
import enum
import itertools
import threading
import types
from collections.abc import Callable
from typing import Any

import numpy as np

Compute = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class _Ok(enum.IntEnum):
    cudaSuccess = 0


_OK = _Ok.cudaSuccess


class FakeCudart:
    """cuda.bindings.runtime: every call returns ``(error, *values)`` like cuda-python."""

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class cudaStreamCaptureMode(enum.IntEnum):
        cudaStreamCaptureModeThreadLocal = 1

    def __init__(self) -> None:
        self.memory: dict[int, Any] = {}  # address -> ctypes buffer, kept alive until freed
        self.streams: set[int] = set()
        self.copies: list[tuple[int, int]] = []  # (stream, bytes)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._current = threading.local()
        self.set_device_calls: list[tuple[int, int]] = []  # (thread, device)
        self.alloc_devices: set[int] = set()  # the current device of every allocation

    def _alloc(self, nbytes: int) -> tuple[_Ok, int]:
        buffer = ctypes.create_string_buffer(nbytes)
        address = ctypes.addressof(buffer)
        with self._lock:
            self.memory[address] = buffer
            self.alloc_devices.add(getattr(self._current, "device", 0))
        return _OK, address

    def cudaMalloc(self, nbytes: int) -> tuple[_Ok, int]:
        return self._alloc(nbytes)

    def cudaMallocHost(self, nbytes: int) -> tuple[_Ok, int]:
        return self._alloc(nbytes)

    def cudaFree(self, address: int) -> tuple[_Ok]:
        with self._lock:
            del self.memory[int(address)]
        return (_OK,)

    cudaFreeHost = cudaFree

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: Any, stream: int) -> tuple[_Ok]:
        assert stream in self.streams, "a copy on a stream that does not exist"
        ctypes.memmove(int(dst), int(src), nbytes)
        with self._lock:
            self.copies.append((stream, nbytes))
        return (_OK,)

    def cudaStreamCreate(self) -> tuple[_Ok, int]:
        stream = next(self._ids)
        with self._lock:
            self.streams.add(stream)
        return _OK, stream

    def cudaStreamDestroy(self, stream: int) -> tuple[_Ok]:
        with self._lock:
            self.streams.remove(stream)
        return (_OK,)

    def cudaStreamSynchronize(self, stream: int) -> tuple[_Ok]:
        return (_OK,)

    def cudaEventCreate(self) -> tuple[_Ok, int]:
        return _OK, next(self._ids)

    def cudaEventRecord(self, event: int, stream: int) -> tuple[_Ok]:
        return (_OK,)

    def cudaEventElapsedTime(self, start: int, end: int) -> tuple[_Ok, float]:
        return _OK, 1.5

    def cudaEventDestroy(self, event: int) -> tuple[_Ok]:
        return (_OK,)

    def cudaGetDevice(self) -> tuple[_Ok, int]:
        return _OK, getattr(self._current, "device", 0)  # per thread, as in CUDA

    def cudaSetDevice(self, device: int) -> tuple[_Ok]:
        self._current.device = device
        with self._lock:
            self.set_device_calls.append((threading.get_ident(), device))
        return (_OK,)

    def cudaGetDeviceProperties(self, device: int) -> tuple[_Ok, Any]:
        return _OK, types.SimpleNamespace(name=b"Fake GPU", major=8, minor=7)


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.streams_used: set[int] = set()

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def _view(self, name: str) -> np.ndarray:
        shape, dtype, _ = self.engine.tensors[name]
        nbytes = int(np.prod(shape)) * dtype.itemsize
        raw = (ctypes.c_uint8 * nbytes).from_address(self.addresses[name])
        return np.ctypeslib.as_array(raw).view(dtype).reshape(shape)

    def execute_async_v3(self, stream: int) -> bool:
        self.streams_used.add(stream)
        engine = self.engine
        inputs = {n: self._view(n).copy() for n, (_, _, is_input) in engine.tensors.items() if is_input}
        if engine.barrier is not None:
            engine.barrier.wait()  # every thread must be inside a run at once: no lock serialises them
        for name, value in engine.compute(inputs).items():
            self._view(name)[...] = value
        return True


class FakeEngine:
    def __init__(self, tensors: dict[str, tuple[tuple[int, ...], np.dtype, bool]], compute: Compute) -> None:
        self.tensors = tensors  # name -> (shape, dtype, is_input)
        self.compute = compute
        self.contexts: list[FakeContext] = []
        self.barrier: threading.Barrier | None = None

    @property
    def num_io_tensors(self) -> int:
        return len(self.tensors)

    def get_tensor_name(self, i: int) -> str:
        return list(self.tensors)[i]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name][0]

    def get_tensor_dtype(self, name: str) -> np.dtype:
        return self.tensors[name][1]

    def get_tensor_mode(self, name: str) -> str:
        return "INPUT" if self.tensors[name][2] else "OUTPUT"

    def create_execution_context(self) -> FakeContext:
        context = FakeContext(self)
        self.contexts.append(context)
        return context


def fake_tensorrt(engine: FakeEngine, version: str = "10.3.0") -> types.ModuleType:
    """A ``tensorrt`` module whose Runtime deserialises every plan into *engine*."""
    trt = types.ModuleType("tensorrt")

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3

    class ILogger:
        def __init__(self) -> None:
            pass

    ILogger.Severity = Severity  # type: ignore[attr-defined]

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, plan: bytes) -> FakeEngine:
            return engine

    trt.__version__ = version  # type: ignore[attr-defined]
    trt.Builder = object  # type: ignore[attr-defined]
    trt.ILogger = ILogger  # type: ignore[attr-defined]
    trt.Runtime = Runtime  # type: ignore[attr-defined]
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")  # type: ignore[attr-defined]
    trt.nptype = lambda dtype: dtype  # type: ignore[attr-defined]
    return trt
