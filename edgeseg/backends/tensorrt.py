"""TensorRT backend: runs an engine written by ``edgeseg build`` on the GPU.

Device memory is allocated when the engine is opened, per lane: an execution context, a CUDA
stream, one device buffer per graph input and output, and a pinned host mirror of each, all
sized once from the engine's shapes (a mirror that grew during a run would be freed and
reallocated there, and freeing pinned memory synchronises the whole device under every other
lane). A second lane is made the first time two threads run the engine at once (several camera
streams on one model), so their runs overlap on the GPU. A run copies the inputs in, enqueues the
engine (``execute_async_v3``, or a captured CUDA graph where the engine has no data-dependent
shapes), and copies back only what the caller asked for; for instance models only the rows that
hold detections (``num_detections`` is read first), whatever the file's metadata says about row
trimming: PasteMasks never writes the rows past it, whose memory still holds an earlier frame's
masks. Results are copied out of the pinned buffers, so they stay valid after the next run, and
have the graph's K rows, zero past ``num_detections``, as on ONNX Runtime.

Import this module only after :func:`edgeseg.trt.gpu_imports.import_tensorrt` succeeded
(``edgeseg.backends.open_backend`` does).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorrt as trt

from edgeseg.backends.base import Backend, TensorSpec
from edgeseg.engine_file import BuildInfo, plan_bytes, read_header
from edgeseg.errors import EngineMismatchError, FrameError, ModelFileError
from edgeseg.trt import plugin_library
from edgeseg.trt.gpu_imports import check, current_gpu, import_cudart, numpy_dtype
from edgeseg.trt.plugin_library import load_plugins
from edgeseg.trt.trt_logger import LOGGER

log = logging.getLogger(__name__)


def check_engine_fits(build: BuildInfo, gpu: tuple[str, str], path: Path) -> None:
    """:class:`EngineMismatchError` when the engine was built by another TensorRT or for another GPU."""
    rebuild = f"rebuild it on this machine: edgeseg build MODEL.onnx -o {path.name}"
    if build.tensorrt_version != trt.__version__:
        raise EngineMismatchError(
            f"{path.name} was built by TensorRT {build.tensorrt_version}, this is TensorRT {trt.__version__}; {rebuild}"
        )
    if build.compute_capability != gpu[1]:
        raise EngineMismatchError(
            f"{path.name} was built for {build.gpu_name} (compute capability {build.compute_capability}), "
            f"this GPU is {gpu[0]} ({gpu[1]}); {rebuild}"
        )


class _Buffer:
    """One graph tensor: device memory for all of it and a pinned host mirror of the same size,
    both allocated once, when the lane is made. (An instance model's mask output pins its K
    frame-size planes, 200 MB at 1080p with K = 100, as much as its device buffer: a mirror sized
    to the detections would grow mid-run, and freeing pinned memory synchronises the device.)"""

    def __init__(self, cudart: Any, spec: TensorSpec) -> None:
        self.spec = spec
        self.shape = tuple(int(d) for d in spec.shape)
        self.nbytes = max(int(np.prod(self.shape)) * spec.dtype.itemsize, 1)
        self.device = check(cudart.cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes})")
        try:
            self.host_ptr = check(cudart.cudaMallocHost(self.nbytes), f"cudaMallocHost({self.nbytes})")
        except BaseException:
            cudart.cudaFree(self.device)  # not yet anyone's to free
            raise
        raw = np.ctypeslib.as_array(ctypes.cast(int(self.host_ptr), ctypes.POINTER(ctypes.c_uint8)),
                                    (self.nbytes,))
        self._host = raw[:int(np.prod(self.shape)) * spec.dtype.itemsize].view(spec.dtype).reshape(self.shape)

    def host(self, rows: int | None = None) -> np.ndarray:
        """The pinned mirror of the whole tensor, or of its first *rows* rows."""
        return self._host if rows is None else self._host[:rows]

    def free(self, cudart: Any) -> None:
        cudart.cudaFree(self.device)
        cudart.cudaFreeHost(self.host_ptr)


class _Lane:
    """What one thread needs to run the engine while other threads run it too: an execution
    context (its own activation memory; the weights stay shared in the engine), a CUDA stream,
    device buffers with pinned mirrors, two timing events and, once captured, a CUDA graph. Lanes
    never share memory, so runs on different lanes overlap on the GPU."""

    def __init__(self, backend: TensorRTBackend, use_graph: bool) -> None:
        self._backend = backend
        self._cudart = cudart = backend._cudart
        self._buffers: dict[str, _Buffer] = {}
        self._stream: Any = None
        self._events: list[Any] = []
        self._graph: Any = None
        self._graph_exec: Any = None
        self._use_graph = use_graph
        #: GPU time of this lane's last engine execution, milliseconds
        self.last_gpu_ms = 0.0
        self._context: Any = backend._create_context()
        name = backend.path.name
        try:
            # Non-blocking: legacy default-stream work elsewhere in the process (another library)
            # neither waits for this lane nor breaks a CUDA graph capture on it.
            self._stream = check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking),
                                 "cudaStreamCreateWithFlags")
            for spec in (*backend._inputs, *backend._outputs):
                self._buffers[spec.name] = buffer = _Buffer(cudart, spec)
                if not self._context.set_tensor_address(spec.name, int(buffer.device)):
                    raise ModelFileError(f"{name}: TensorRT refused the address of tensor {spec.name}")
            # CUDA events around the engine's work: its GPU time, without the copies (edgeseg bench).
            for _ in range(2):
                self._events.append(check(cudart.cudaEventCreate(), "cudaEventCreate"))
        except BaseException:
            self.close()
            raise

    def _copy(self, dst: Any, src: Any, nbytes: int, kind: Any) -> None:
        check(self._cudart.cudaMemcpyAsync(dst, src, nbytes, kind, self._stream), "cudaMemcpyAsync")

    def _enqueue(self) -> None:
        if self._graph_exec is not None:
            check(self._cudart.cudaGraphLaunch(self._graph_exec, self._stream), "cudaGraphLaunch")
            return
        with LOGGER.capture() as errors:
            ok = self._context.execute_async_v3(int(self._stream))
        if not ok:
            raise ModelFileError(f"{self._backend.path.name}: TensorRT failed to run the engine: "
                                 f"{errors.last_error() or 'no reason given'}")
        if self._use_graph:
            self._capture_graph()

    def _capture_graph(self) -> None:
        """After a first plain run (TensorRT allocates lazily), capture one run as a CUDA graph;
        if TensorRT refuses anyway, run plainly from then on."""
        self._use_graph = False
        cudart = self._cudart
        name = self._backend.path.name
        # Thread-local capture: another lane's thread may be enqueueing on its own stream meanwhile.
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(cudart.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
        with LOGGER.capture() as errors:
            ok = self._context.execute_async_v3(int(self._stream))
        err, graph = cudart.cudaStreamEndCapture(self._stream)
        if graph is not None and int(err) == 0:
            self._graph = graph
        if not ok or int(err) != 0:
            log.warning("%s: not captured as a CUDA graph (%s); running it plainly", name,
                        errors.last_error() or f"CUDA error {int(err)}")
            self._free_graph()
            return
        err, graph_exec = cudart.cudaGraphInstantiate(graph, 0)
        if int(err) != 0:
            log.warning("%s: the captured CUDA graph cannot be instantiated (CUDA error %d); running it plainly",
                        name, int(err))
            self._free_graph()
            return
        self._graph_exec = graph_exec

    def _free_graph(self) -> None:
        if self._graph_exec is not None:
            self._cudart.cudaGraphExecDestroy(self._graph_exec)
            self._graph_exec = None
        if self._graph is not None:
            self._cudart.cudaGraphDestroy(self._graph)
            self._graph = None

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        cudart = self._cudart
        backend = self._backend
        unknown = [name for name in outputs if name not in self._buffers]
        if unknown:
            raise FrameError(f"{backend.path.name} has no output {unknown[0]!r}")
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for spec in backend._inputs:
            value = feeds.get(spec.name)
            if value is None:
                raise FrameError(f"input {spec.name!r} missing")
            buffer = self._buffers[spec.name]
            if value.shape != buffer.shape or value.dtype != spec.dtype:
                raise FrameError(f"input {spec.name}: expected {spec.dtype} {buffer.shape}, "
                                 f"got {value.dtype} {value.shape}")
            np.copyto(buffer.host(), value)
            self._copy(buffer.device, buffer.host_ptr, buffer.nbytes, h2d)
        check(cudart.cudaEventRecord(self._events[0], self._stream), "cudaEventRecord")
        self._enqueue()
        check(cudart.cudaEventRecord(self._events[1], self._stream), "cudaEventRecord")
        rows = None
        count_name, max_rows = backend._count_name, backend._rows
        if count_name:
            count = self._buffers[count_name]
            self._copy(count.host_ptr, count.device, count.nbytes, d2h)
            check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
            rows = max(0, min(int(count.host().reshape(-1)[0]), max_rows))
        # (buffer, the rows of it to copy back: None for all): rows past num_detections are not
        # copied (PasteMasks does not even write them)
        wanted: list[tuple[_Buffer, int | None]] = []
        for name in outputs:
            buffer = self._buffers[name]
            # (num_detections itself is never trimmed, even where K is 1 and its one row would match)
            per_row = (rows is not None and name != count_name and len(buffer.shape) > 0
                       and buffer.shape[0] == max_rows)
            wanted.append((buffer, rows if per_row else None))
        for buffer, part in wanted:
            nbytes = buffer.host(part).nbytes
            if nbytes:
                self._copy(buffer.host_ptr, buffer.device, nbytes, d2h)
        check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        self.last_gpu_ms = float(check(cudart.cudaEventElapsedTime(*self._events), "cudaEventElapsedTime"))
        # copies, as the pinned buffers are reused by the next run
        return {buffer.spec.name: _copy_rows(buffer, part) for buffer, part in wanted}

    def close(self) -> None:
        self._free_graph()
        for buffer in self._buffers.values():
            buffer.free(self._cudart)
        self._buffers.clear()
        for event in self._events:
            self._cudart.cudaEventDestroy(event)
        self._events = []
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self._backend._release_context(self)


def _copy_rows(buffer: _Buffer, rows: int | None) -> np.ndarray:
    """The host mirror's first *rows* rows (all for None) in a new array of the tensor's full
    shape, zero past them: what ONNX Runtime gives for the rows past num_detections. (np.zeros
    takes pages the OS zeroes when first touched, so the rows never written cost nothing.)"""
    if rows is None:
        return buffer.host().copy()
    out = np.zeros(buffer.shape, buffer.spec.dtype)
    out[:rows] = buffer.host(rows)
    return out


class TensorRTBackend(Backend):
    """Runs one edgeseg engine file on the current CUDA device.

    Thread-safe: each thread that calls :meth:`run` at the same time as another gets a lane of
    its own (:class:`_Lane`: execution context, CUDA stream, buffers), made when first needed and
    reused afterwards, so N camera streams on one engine overlap on the GPU while the weights are
    loaded once. Each lane costs the engine's activation memory (what TensorRT reports as the
    engine's device memory size) plus its input and output buffers and their pinned mirrors.
    :meth:`close` releases the lanes, then the engine (its weights) and the runtime.
    """

    name = "tensorrt"
    concurrent_runs = True

    def __init__(self, path: Path, cuda_graph: bool = False) -> None:
        self.path = path
        header = read_header(path)
        self._metadata = header.metadata
        self._parse_metadata(path.name)
        self.build_info = header.build
        self.custom_ops = header.build.plugins
        self._cudart = cudart = import_cudart()
        check_engine_fits(header.build, current_gpu(cudart), path)
        # The device the engine lives on. A thread's current device is its own (device 0 in a new
        # thread) and other code (another engine, PyTorch) may change it, so every run sets it.
        self._device = check(cudart.cudaGetDevice(), "cudaGetDevice")
        embedded = bool(header.build.extra.get("plugins_embedded"))
        self._runtime: Any = trt.Runtime(LOGGER)  # first: TensorRT's process logger is then edgeseg's
        if self.custom_ops and not embedded:
            load_plugins(trt)  # before deserialising: the engine refers to the plugins by name
        if embedded:
            # the plan carries the plugin library and TensorRT's lean runtime (a version-compatible
            # engine, edgeseg build --embed-plugins), host code written by us
            self._runtime.engine_host_code_allowed = True
        with LOGGER.capture() as errors:
            engine = self._runtime.deserialize_cuda_engine(plan_bytes(path))
        if engine is None:
            self._runtime = None
            hint = "rebuild it on this machine with `edgeseg build`"
            if embedded and plugin_library.loaded():
                hint = ("it carries the plugin library, which this process had loaded already (for a build or "
                        "another engine): open it in a process of its own, or rebuild it without --embed-plugins")
            reason = errors.last_error() or "no reason"
            raise EngineMismatchError(f"{path.name}: TensorRT could not deserialise the engine ({reason}); {hint}")
        self._engine: Any = engine
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dims = engine.get_tensor_shape(name)
            shape = tuple(int(dims[k]) for k in range(len(dims)))
            if any(d < 0 for d in shape):
                raise ModelFileError(f"{path.name}: tensor {name} has a dynamic shape {shape}; edgeseg needs static")
            dtype = numpy_dtype(trt, engine.get_tensor_dtype(name), f"{path.name}: tensor {name}",
                                "rebuild the engine from a model edgeseg converted: edgeseg build MODEL.onnx")
            spec = TensorSpec(name, shape, dtype)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self._inputs if is_input else self._outputs).append(spec)
        names = {spec.name for spec in (*self._inputs, *self._outputs)}
        # Instance models: outputs with K rows are copied back only up to num_detections, always:
        # the count is the engine's own output, and rows past it hold stale memory (the file's
        # row_trim flag is about the CPU backend's freedom to skip computing them).
        instance = self.model_metadata.instance if self.model_metadata is not None else None
        count = self.model_metadata.outputs.get("num_detections", "") if self.model_metadata is not None else ""
        self._count_name, self._rows = (count, instance.max_detections) if instance and count in names else ("", -1)
        self._use_graph = cuda_graph and header.build.graph_capturable(instance=instance is not None)
        if cuda_graph and not self._use_graph:
            log.info("%s: no CUDA graph: the engine has data-dependent shapes (NonMaxSuppression), which "
                     "TensorRT resolves on the host; running it plainly", path.name)
        # Guards the lanes, and every execution context's creation and release: TensorRT
        # promises concurrent use of different contexts, not their concurrent creation.
        self._lanes_lock = threading.Lock()
        self._lanes: list[_Lane] = []
        self._contexts = 0  # contexts alive; the engine is released after the last
        self._closed = False
        # The first lane now: a file that cannot get its memory fails when opened, not on frame 1.
        self._idle: list[_Lane] = [self._new_lane()]
        #: GPU time of the last run's engine execution (of the lane that finished last), milliseconds
        self.last_gpu_ms = 0.0

    def _create_context(self) -> Any:
        """A new execution context of the engine; :class:`ModelFileError` when TensorRT has none."""
        with self._lanes_lock:
            if self._engine is None:
                raise self._closed_error()
            with LOGGER.capture() as errors:
                context = self._engine.create_execution_context()
            if context is not None:
                self._contexts += 1
        if context is None:
            raise ModelFileError(
                f"{self.path.name}: TensorRT could not create an execution context "
                f"({errors.last_error() or 'out of GPU memory?'}); free GPU memory, run fewer streams "
                "or rebuild with a smaller --workspace"
            )
        return context

    def _release_context(self, lane: _Lane) -> None:
        """Drop *lane*'s context (after its CUDA resources); after the last one of a closed
        backend, the engine and then the runtime: a context must not outlive its engine."""
        with self._lanes_lock:
            if lane._context is None:
                return
            lane._context = None
            self._contexts -= 1
            self._release_engine_if_done()

    def _release_engine_if_done(self) -> None:
        # (under _lanes_lock)
        if self._closed and self._contexts == 0:
            self._engine = None
            self._runtime = None

    def _new_lane(self) -> _Lane:
        lane = _Lane(self, self._use_graph)  # outside the lock: it allocates on the GPU
        with self._lanes_lock:
            closed = self._closed
            if not closed:
                self._lanes.append(lane)
        if closed:
            lane.close()
            raise self._closed_error()
        return lane

    def _closed_error(self) -> ModelFileError:
        return ModelFileError(f"{self.path.name}: the engine was closed; load the model again")

    @property
    def lanes(self) -> int:
        """How many execution contexts this engine holds: the most threads that ran it at once."""
        return len(self._lanes)

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        check(self._cudart.cudaSetDevice(self._device), f"cudaSetDevice({self._device})")
        with self._lanes_lock:
            if self._closed:
                raise self._closed_error()
            lane = self._idle.pop() if self._idle else None
        if lane is None:  # every lane is busy in another thread: this thread gets its own
            lane = self._new_lane()
        try:
            result = lane.run(feeds, outputs)
            self.last_gpu_ms = lane.last_gpu_ms
            return result
        finally:
            with self._lanes_lock:
                closed = self._closed
                if not closed:
                    self._idle.append(lane)
            if closed:  # close() ran meanwhile and left this busy lane to its thread
                lane.close()

    def inner_timings(self) -> list[tuple[str, float]]:
        return [("engine on the GPU (CUDA events)", self.last_gpu_ms / 1000.0)]

    def close(self) -> None:
        """Free the idle lanes now, then the engine and the runtime (the weights' device memory);
        a lane still running in another thread is freed by that thread when its run ends, and
        the engine after it. Runs after this raise :class:`ModelFileError`."""
        with self._lanes_lock:
            idle, self._lanes, self._idle, self._closed = self._idle, [], [], True
        # the lanes' memory and the engine are freed on their device
        check(self._cudart.cudaSetDevice(self._device), f"cudaSetDevice({self._device})")
        for lane in idle:
            lane.close()
        with self._lanes_lock:
            self._release_engine_if_done()  # no lane at all (closed twice, or every lane failed)
