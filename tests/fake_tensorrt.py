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
    cudaErrorMemoryAllocation = 2


_OK = _Ok.cudaSuccess
_OUT_OF_MEMORY = _Ok.cudaErrorMemoryAllocation


class FakeCudart:
    """cuda.bindings.runtime: every call returns ``(error, *values)`` like cuda-python."""

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class cudaStreamCaptureMode(enum.IntEnum):
        cudaStreamCaptureModeThreadLocal = 1

    cudaStreamNonBlocking = 1

    def __init__(self) -> None:
        self.memory: dict[int, Any] = {}  # address -> ctypes buffer, kept alive until freed
        self.streams: set[int] = set()
        self.copies: list[tuple[int, int]] = []  # (stream, bytes)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._current = threading.local()
        self.set_device_calls: list[tuple[int, int]] = []  # (thread, device)
        self.alloc_devices: set[int] = set()  # the current device of every allocation
        self.events: set[int] = set()  # created and not yet destroyed
        self.capturing: dict[int, list[Any]] = {}  # stream -> contexts enqueued during its capture
        self.graph_execs: list[Any] = []
        #: name of a call that fails (cudaErrorMemoryAllocation) from its *fail_after*-th call on
        self.fail_call, self.fail_after = "", 0
        self._calls: dict[str, int] = {}

    def _failing(self, name: str) -> bool:
        with self._lock:
            self._calls[name] = self._calls.get(name, 0) + 1
            return name == self.fail_call and self._calls[name] > self.fail_after

    def _alloc(self, nbytes: int) -> tuple[_Ok, int]:
        buffer = ctypes.create_string_buffer(nbytes)
        address = ctypes.addressof(buffer)
        with self._lock:
            self.memory[address] = buffer
            self.alloc_devices.add(getattr(self._current, "device", 0))
        return _OK, address

    def cudaMalloc(self, nbytes: int) -> tuple[Any, int]:
        return (_OUT_OF_MEMORY, 0) if self._failing("cudaMalloc") else self._alloc(nbytes)

    def cudaMallocHost(self, nbytes: int) -> tuple[Any, int]:
        return (_OUT_OF_MEMORY, 0) if self._failing("cudaMallocHost") else self._alloc(nbytes)

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

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[_Ok, int]:
        assert flags == self.cudaStreamNonBlocking
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

    def cudaEventCreate(self) -> tuple[Any, int]:
        if self._failing("cudaEventCreate"):
            return _OUT_OF_MEMORY, 0
        event = next(self._ids)
        with self._lock:
            self.events.add(event)
        return _OK, event

    def cudaEventRecord(self, event: int, stream: int) -> tuple[_Ok]:
        return (_OK,)

    def cudaEventElapsedTime(self, start: int, end: int) -> tuple[_Ok, float]:
        return _OK, 1.5

    # CUDA graphs: a capture records which context ran on the stream instead of running it; a
    # launch runs that context again, reading and writing the addresses it was bound to.

    def cudaStreamBeginCapture(self, stream: int, mode: Any) -> tuple[_Ok]:
        assert mode == self.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        with self._lock:
            self.capturing[stream] = []
        return (_OK,)

    def cudaStreamEndCapture(self, stream: int) -> tuple[_Ok, Any]:
        with self._lock:
            work = self.capturing.pop(stream)
        return _OK, types.SimpleNamespace(stream=stream, work=work)

    def cudaGraphInstantiate(self, graph: Any, flags: int) -> tuple[_Ok, Any]:
        graph_exec = types.SimpleNamespace(graph=graph, launches=0)
        with self._lock:
            self.graph_execs.append(graph_exec)
        return _OK, graph_exec

    def cudaGraphLaunch(self, graph_exec: Any, stream: int) -> tuple[_Ok]:
        assert stream == graph_exec.graph.stream, "a graph launched on another lane's stream"
        graph_exec.launches += 1
        for context in graph_exec.graph.work:
            context.compute()
        return (_OK,)

    def cudaGraphExecDestroy(self, graph_exec: Any) -> tuple[_Ok]:
        return (_OK,)

    def cudaGraphDestroy(self, graph: Any) -> tuple[_Ok]:
        return (_OK,)

    def cudaEventDestroy(self, event: int) -> tuple[_Ok]:
        with self._lock:
            self.events.remove(event)
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
        self.devices_used: set[int] = set()  # the thread's current device at each run

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
        self.devices_used.add(self.engine.cudart.cudaGetDevice()[1])
        captured = self.engine.cudart.capturing.get(stream)
        if captured is not None:
            captured.append(self)
            return True
        self.compute()
        return True

    def compute(self) -> None:
        engine = self.engine
        inputs = {n: self._view(n).copy() for n, (_, _, is_input) in engine.tensors.items() if is_input}
        if engine.barrier is not None:
            engine.barrier.wait()  # every thread must be inside a run at once: no lock serialises them
        if engine.hold is not None:
            engine.running.set()
            engine.hold.wait(timeout=10)
        for name, value in engine.compute(inputs).items():
            self._view(name)[...] = value


class FakeEngine:
    def __init__(self, tensors: dict[str, tuple[tuple[int, ...], np.dtype, bool]], compute: Compute,
                 cudart: FakeCudart) -> None:
        self.tensors = tensors  # name -> (shape, dtype, is_input)
        self.cudart = cudart
        self.compute = compute
        self.contexts: list[FakeContext] = []
        self.barrier: threading.Barrier | None = None
        #: set by a test: execute_async_v3 waits on it (a run held busy while the test acts)
        self.hold: threading.Event | None = None
        self.running = threading.Event()

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
