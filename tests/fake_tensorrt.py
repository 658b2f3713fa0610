"""A stand-in for TensorRT's Python API and cuda-python's runtime, in host memory.

Enough of both for :mod:`edgeseg.backends.tensorrt` to open an engine file and run it: "device"
and "pinned" memory are ctypes buffers addressed by their real addresses, copies are memmoves,
streams and events are counters, and an execution context computes its outputs with a Python
function of its inputs, read from and written to the addresses the backend bound. What it checks
is the backend's own bookkeeping (lanes, bindings, copies, row trimming), not TensorRT.

It is as strict as the real APIs where edgeseg depends on them, so that code which works only
because a stand-in forgives fails here: memory comes back filled with :data:`SENTINEL`, not
zeros (neither cudaMalloc nor cudaMallocHost clears it), 256-byte aligned; ``set_tensor_address``
refuses unknown names and unaligned addresses; ``cudaEventElapsedTime`` answers not-ready until
the event's stream was synchronised; an engine refuses concurrent context creation (counted),
execution contexts, ``execute_async_v3`` and graph capture fail on demand, logging their error
to the runtime's logger from the calling thread; ``nptype`` raises for types numpy lacks; a
runtime refuses a plan whose plugins are not registered (or, for a plan that carries them, whose
host code it was not allowed to run), and the plugin registry refuses plugins registered already.
"""

from __future__ import annotations

import ctypes
import enum
import itertools
import threading
import time
import types
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

Compute = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]

#: the byte fresh "device" and "pinned" memory holds (real allocations hold whatever was there)
SENTINEL = 0xA5
#: cudaMalloc's alignment, and what TensorRT requires of a tensor address
ALIGNMENT = 256


class _Ok(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidResourceHandle = 400
    cudaErrorNotReady = 600
    cudaErrorStreamCaptureInvalidated = 901


_OK = _Ok.cudaSuccess
_OUT_OF_MEMORY = _Ok.cudaErrorMemoryAllocation


class FakeDataType:
    """A TensorRT DataType numpy has no type for (BF16, FP8, INT4...)."""

    def __init__(self, name: str) -> None:
        self.name = name


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
        #: name of a call that fails (cudaErrorMemoryAllocation; cudaStreamEndCapture with
        #: cudaErrorStreamCaptureInvalidated) from its *fail_after*-th call on
        self.fail_call, self.fail_after = "", 0
        self._calls: dict[str, int] = {}
        self._event_stream: dict[int, int] = {}  # event -> stream it was last recorded on
        self._pending: set[int] = set()  # recorded events whose stream was not synchronised since

    def _failing(self, name: str) -> bool:
        with self._lock:
            self._calls[name] = self._calls.get(name, 0) + 1
            return name == self.fail_call and self._calls[name] > self.fail_after

    def _alloc(self, nbytes: int) -> tuple[_Ok, int]:
        buffer = (ctypes.c_uint8 * (nbytes + ALIGNMENT))()
        address = -ctypes.addressof(buffer) % ALIGNMENT + ctypes.addressof(buffer)
        ctypes.memset(address, SENTINEL, nbytes)
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

    def cudaFreeHost(self, address: int) -> tuple[_Ok]:
        self._failing("cudaFreeHost")  # counted: a real one synchronises the whole device
        return self.cudaFree(address)

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
        with self._lock:
            self._pending -= {e for e in self._pending if self._event_stream[e] == stream}
        return (_OK,)

    def cudaEventCreate(self) -> tuple[Any, int]:
        if self._failing("cudaEventCreate"):
            return _OUT_OF_MEMORY, 0
        event = next(self._ids)
        with self._lock:
            self.events.add(event)
        return _OK, event

    def cudaEventRecord(self, event: int, stream: int) -> tuple[_Ok]:
        assert stream in self.streams and event in self.events
        with self._lock:
            self._event_stream[event] = stream
            self._pending.add(event)
        return (_OK,)

    def cudaEventElapsedTime(self, start: int, end: int) -> tuple[_Ok, float]:
        with self._lock:
            if start not in self._event_stream or end not in self._event_stream:
                return _Ok.cudaErrorInvalidResourceHandle, 0.0
            if {start, end} & self._pending:  # not complete: its stream was not synchronised since
                return _Ok.cudaErrorNotReady, 0.0
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
        if self._failing("cudaStreamEndCapture"):
            return _Ok.cudaErrorStreamCaptureInvalidated, None
        return _OK, types.SimpleNamespace(stream=stream, work=work)

    def cudaGraphInstantiate(self, graph: Any, flags: int) -> tuple[Any, Any]:
        if self._failing("cudaGraphInstantiate"):
            return _OUT_OF_MEMORY, None
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
            self._event_stream.pop(event, None)
            self._pending.discard(event)
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
    def __init__(self, engine: FakeEngine, logger: Any) -> None:
        self.engine = engine
        self.logger = logger
        self.addresses: dict[str, int] = {}
        self.streams_used: set[int] = set()
        self.devices_used: set[int] = set()  # the thread's current device at each run

    def set_tensor_address(self, name: str, address: int) -> bool:
        # IExecutionContext::setTensorAddress: false for a name that is no I/O tensor; "the
        # pointer must have at least 256-byte alignment"
        if name not in self.engine.tensors or int(address) % ALIGNMENT:
            return False
        self.addresses[name] = int(address)
        return True

    def _view(self, name: str) -> np.ndarray:
        shape, dtype, _ = self.engine.tensors[name]
        nbytes = int(np.prod(shape)) * dtype.itemsize
        raw = (ctypes.c_uint8 * nbytes).from_address(self.addresses[name])
        return np.ctypeslib.as_array(raw).view(dtype).reshape(shape)

    def execute_async_v3(self, stream: int) -> bool:
        engine = self.engine
        self.streams_used.add(stream)
        self.devices_used.add(engine.cudart.cudaGetDevice()[1])
        unbound = [name for name in engine.tensors if name not in self.addresses]
        if unbound:
            engine.log_error(self.logger, f"IExecutionContext::enqueueV3: tensor {unbound[0]} has no address")
            return False
        if engine.on_execute is not None and not engine.on_execute(self):
            return False
        captured = engine.cudart.capturing.get(stream)
        if captured is not None:
            if engine.fail_capture:
                engine.log_error(self.logger, "enqueueV3: operation not permitted when stream is capturing")
                return False
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
            # fewer rows than the tensor: the rest is not written (PasteMasks past num_detections)
            view = self._view(name)
            if value.ndim and view.ndim and value.shape[0] < view.shape[0]:
                view[:value.shape[0]] = value
            else:
                view[...] = value


class FakeEngine:
    def __init__(self, tensors: dict[str, tuple[tuple[int, ...], Any, bool]], compute: Compute,
                 cudart: FakeCudart, plugins: tuple[str, ...] = (), embedded: bool = False) -> None:
        self.tensors = tensors  # name -> (shape, dtype (np.dtype or FakeDataType), is_input)
        self.cudart = cudart
        self.compute = compute
        self.plugins = plugins  # plugin creators the plan refers to
        self.embedded = embedded  # whether the plan carries their library
        self.contexts: list[FakeContext] = []
        #: set by a test: create_execution_context logs this error and returns None
        self.fail_contexts = ""
        #: set by a test: a capture fails (execute_async_v3 refuses to run while capturing)
        self.fail_capture = False
        #: set by a test: called by every execute_async_v3; False fails the call
        self.on_execute: Callable[[FakeContext], bool] | None = None
        #: context creations that overlapped another (TensorRT does not promise they may)
        self.concurrent_creations = 0
        self.creation_seconds = 0.0  # how long a creation takes (to widen the window)
        self._creating = 0
        self._create_lock = threading.Lock()
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

    def log_error(self, logger: Any, message: str) -> None:
        logger.log(logger.Severity.ERROR, message)

    def create_execution_context(self) -> FakeContext | None:
        with self._create_lock:
            self._creating += 1
            self.concurrent_creations += self._creating > 1
        try:
            time.sleep(self.creation_seconds)
            if self.fail_contexts:
                self.log_error(self.logger, self.fail_contexts)
                return None
            context = FakeContext(self, self.logger)
            self.contexts.append(context)
            return context
        finally:
            with self._create_lock:
                self._creating -= 1

    #: the logger of the runtime that deserialised the engine (set by it)
    logger: Any = None


def fake_tensorrt(engine: FakeEngine, version: str = "10.3.0") -> types.ModuleType:
    """A ``tensorrt`` module whose Runtime deserialises every plan into *engine*. ``loggers``:
    every logger given to a Runtime (TensorRT keeps one per process); ``runtimes``: the Runtime
    objects still alive; ``registry``: the plugin registry (``creators``: names registered)."""
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

    loggers: list[Any] = []
    runtimes: weakref.WeakSet[Any] = weakref.WeakSet()
    registry = types.SimpleNamespace(creators=set(), libraries=[])

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.engine_host_code_allowed = False
            self.logger = logger
            if all(logger is not seen for seen in loggers):
                loggers.append(logger)
            runtimes.add(self)

        def deserialize_cuda_engine(self, plan: bytes) -> FakeEngine | None:
            missing = [p for p in engine.plugins if p not in registry.creators]
            if engine.embedded and not self.engine_host_code_allowed:
                engine.log_error(self.logger, "IRuntime::deserializeCudaEngine: the plan contains host code "
                                              "and engine host code is not allowed")
                return None
            if missing and not engine.embedded:
                engine.log_error(self.logger, f"getPluginCreator could not find plugin: {missing[0]} version: 1")
                return None
            engine.logger = self.logger
            return engine

    def load_library(path: str) -> object | None:
        again = [p for p in engine.plugins if p in registry.creators]
        if again:
            if loggers:
                engine.log_error(loggers[0], f"plugin creator {again[0]} is registered already")
            return None
        registry.creators.update(engine.plugins)
        registry.libraries.append(path)
        return object()

    def nptype(dtype: Any) -> Any:
        if isinstance(dtype, np.dtype):
            return dtype.type
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    trt.loggers = loggers  # type: ignore[attr-defined]
    trt.runtimes = runtimes  # type: ignore[attr-defined]
    trt.registry = registry  # type: ignore[attr-defined]
    trt.get_plugin_registry = lambda: types.SimpleNamespace(load_library=load_library)  # type: ignore[attr-defined]

    trt.__version__ = version  # type: ignore[attr-defined]
    trt.Builder = object  # type: ignore[attr-defined]
    trt.ILogger = ILogger  # type: ignore[attr-defined]
    trt.Runtime = Runtime  # type: ignore[attr-defined]
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")  # type: ignore[attr-defined]
    trt.nptype = nptype  # type: ignore[attr-defined]
    return trt
