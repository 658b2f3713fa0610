"""The TensorRT backend's lanes (one execution context and CUDA stream per concurrent caller),
on a fake TensorRT and CUDA runtime in host memory (tests/fake_tensorrt.py).

What runs here is edgeseg's own code: opening the engine file, binding buffers, copying in and
out, trimming rows, one lane per thread that runs at the same time as another, freeing it all.
The same paths on a real GPU are in tests/test_gpu.py (marked gpu).
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx
import pytest
from onnx import helper

import edgeseg
from edgeseg.engine_file import BuildInfo, write_engine
from edgeseg.errors import ModelFileError
from edgeseg.metadata import METADATA_KEY
from edgeseg.pipeline import Pipeline, run_streams, shared
from edgeseg.sinks import CallbackSink
from edgeseg.sources import IterableSource
from edgeseg.trt import plugin_library
from tests.conftest import ExportedHRNet, ExportedMaskRCNN
from tests.fake_tensorrt import SENTINEL, Compute, FakeCudart, FakeDataType, FakeEngine, fake_tensorrt

# Modules that bind `tensorrt` when imported: imported afresh against the fake, dropped after.
_BOUND = ("edgeseg.backends.tensorrt", "edgeseg.trt.trt_logger")

class FakeGpu(Protocol):
    def __call__(self, onnx_path: Path, compute: Compute, *, plugins: tuple[str, ...] = (), embedded: bool = False,
                 row_trim: bool = True, dtypes: dict[str, Any] | None = None
                 ) -> tuple[Path, FakeEngine, FakeCudart]: ...


@pytest.fixture()
def fake_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeGpu]:
    """Makes an engine file from an ONNX file's metadata and tensors, served by a fake runtime
    whose engine computes *compute*. *plugins*: the plugins the plan needs (a stand-in library
    provides them), *embedded*: the plan carries their library; *row_trim*: False drops the
    flag from the file's metadata; *dtypes*: tensor types that override the ONNX file's."""
    for name in _BOUND:
        monkeypatch.delitem(sys.modules, name, raising=False)
    # a plugin library that "loads" (the fake registry registers the engine's plugins)
    monkeypatch.setattr(plugin_library, "_loaded", {})
    monkeypatch.setattr(plugin_library, "find_library", lambda: tmp_path / plugin_library.LIBRARY_NAME)
    monkeypatch.setattr(plugin_library, "library_tensorrt_version", lambda path: 100300)

    def make(onnx_path: Path, compute: Compute, *, plugins: tuple[str, ...] = (), embedded: bool = False,
             row_trim: bool = True, dtypes: dict[str, Any] | None = None) -> tuple[Path, FakeEngine, FakeCudart]:
        graph = onnx.load(str(onnx_path), load_external_data=False)
        tensors: dict[str, tuple[tuple[int, ...], Any, bool]] = {}
        for values, is_input in ((graph.graph.input, True), (graph.graph.output, False)):
            for v in values:
                shape = tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
                dtype = np.dtype(helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type))
                tensors[v.name] = (shape, (dtypes or {}).get(v.name, dtype), is_input)
        cudart = FakeCudart()
        engine = FakeEngine(tensors, compute, cudart, plugins=plugins, embedded=embedded)
        cuda = types.ModuleType("cuda")
        bindings = types.ModuleType("cuda.bindings")
        bindings.runtime = cudart  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(engine))
        monkeypatch.setitem(sys.modules, "cuda", cuda)
        monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
        props = {p.key: p.value for p in graph.metadata_props}
        if not row_trim:  # a file written before the flag existed
            meta = json.loads(props[METADATA_KEY])
            meta["extra"].pop("row_trim")
            props[METADATA_KEY] = json.dumps(meta)
        build = BuildInfo(tensorrt_version="10.3.0", gpu_name="Fake GPU", compute_capability="8.7", precision="fp32",
                          plugins=plugins, extra={"plugins_embedded": embedded})
        return write_engine(tmp_path / f"{onnx_path.stem}.engine", b"PLAN", props, build), engine, cudart

    yield make
    for name in _BOUND:
        sys.modules.pop(name, None)


def _fill_from_frame(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every byte of the label map is the frame's first pixel value: a run that read another
    thread's input, or wrote into its output, shows."""
    frame = inputs["frame"]
    return {"label_map": np.full(frame.shape[:2], frame[0, 0, 0], np.uint8)}


def _frame(hrnet: ExportedHRNet, value: int) -> np.ndarray:
    return np.full((*hrnet.frame_hw, 3), value, np.uint8)


def test_threads_running_at_once_get_a_context_and_stream_each(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu) -> None:
    path, engine, cudart = fake_gpu(hrnet_small.path, _fill_from_frame)
    cudart.cudaSetDevice(1)  # the engine opened on the second GPU, from this thread
    backend = edgeseg.load(path).backend
    cudart.set_device_calls.clear()
    assert backend.name == "tensorrt" and backend.concurrent_runs
    assert len(engine.contexts) == 1  # the first lane, made when the file is opened
    n = 3
    engine.barrier = threading.Barrier(n, timeout=10)  # the runs must overlap, or this times out
    results: dict[int, list[int]] = {}

    def work(value: int) -> None:
        got = [int(np.unique(backend.run({"frame": _frame(hrnet_small, value)}, ["label_map"])["label_map"])[0])
               for _ in range(4)]
        results[value] = got

    threads = [threading.Thread(target=work, args=(10 * (i + 1),)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {10: [10] * 4, 20: [20] * 4, 30: [30] * 4}
    # every thread (whose current device would be 0) was pointed at the engine's device before
    # its lane was allocated and before each run
    assert {d for _, d in cudart.set_device_calls} == {1} and len({t for t, _ in cudart.set_device_calls}) == n
    assert cudart.alloc_devices == {1} and all(c.devices_used == {1} for c in engine.contexts)
    assert len(engine.contexts) == n == backend.lanes  # type: ignore[attr-defined]
    streams = [c.streams_used for c in engine.contexts]
    assert all(len(s) == 1 for s in streams) and len(set.union(*streams)) == n
    backend.close()
    assert cudart.memory == {} and cudart.streams == set() and cudart.events == set()  # all freed
    with pytest.raises(ModelFileError, match="closed"):
        backend.run({"frame": _frame(hrnet_small, 1)}, ["label_map"])


def test_one_thread_keeps_one_lane(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu) -> None:
    path, engine, _ = fake_gpu(hrnet_small.path, _fill_from_frame)
    model = edgeseg.load(path)
    for value in (3, 4, 5):
        assert int(model.semantic(_frame(hrnet_small, value)).label_map[0, 0]) == value
    assert len(engine.contexts) == 1 and model.backend.inner_timings() == [("engine on the GPU (CUDA events)", 0.0015)]


def test_streams_on_one_engine_keep_their_own_results(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu) -> None:
    path, engine, _ = fake_gpu(hrnet_small.path, _fill_from_frame)
    model = edgeseg.load(path)
    assert shared(model) is model  # no lock around an engine: each stream's thread gets a lane
    seen: dict[int, list[int]] = {0: [], 1: []}

    def collect(stream: int) -> CallbackSink:
        return CallbackSink(lambda r: seen[stream].append(int(r.result.label_map[0, 0])))

    pipelines = [Pipeline(IterableSource([_frame(hrnet_small, 40 + 10 * s + i) for i in range(6)]), model,
                          collect(s), draw=None, stream=s) for s in (0, 1)]
    outcomes = run_streams(pipelines)
    assert [o.error for o in outcomes] == [None, None]
    assert seen == {0: list(range(40, 46)), 1: list(range(50, 56))}
    assert 1 <= len(engine.contexts) <= 2


def test_instance_outputs_are_copied_back_only_for_the_detections(maskrcnn_cli: ExportedMaskRCNN,
                                                                   fake_gpu: FakeGpu) -> None:
    meta = edgeseg.load(maskrcnn_cli.path).metadata
    assert meta.instance is not None
    count_name, rows = meta.outputs["num_detections"], meta.instance.max_detections
    found = 3

    def detections(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for name, (shape, dtype, is_input) in engine.tensors.items():
            if not is_input:
                out[name] = np.full(shape, found if name == count_name else 1, dtype)
        return out

    path, engine, cudart = fake_gpu(maskrcnn_cli.path, detections)
    backend = edgeseg.load(path).backend
    frame = np.zeros((*maskrcnn_cli.frame_hw, 3), np.uint8)
    names = [n for n, (_, _, is_input) in engine.tensors.items() if not is_input]
    cudart.copies.clear()
    got = backend.run({"frame": frame}, names)
    for name in names:
        shape = engine.tensors[name][0]
        assert got[name].shape == shape, name  # the graph's K rows, as on ONNX Runtime
        if name != count_name and shape and shape[0] == rows:
            assert (got[name][:found] == 1).all() and (got[name][found:] == 0).all(), name
    per_run = sum(n for _, n in cudart.copies)
    frame_bytes = frame.nbytes
    full = sum(int(np.prod(s)) * d.itemsize for s, d, i in engine.tensors.values() if not i)
    assert per_run < frame_bytes + full / 10  # masks of 3 detections, not of all K slots



def _run_held(backend: Any, engine: FakeEngine, hrnet_small: ExportedHRNet
              ) -> tuple[threading.Thread, list[int], threading.Event]:
    """A worker thread whose run of *backend* is held inside the engine until the returned event
    is set; also the list its label (pixel 0, 0 of frame 7) is appended to."""
    engine.hold = release = threading.Event()
    got: list[int] = []
    worker = threading.Thread(target=lambda: got.append(int(
        backend.run({"frame": _frame(hrnet_small, 7)}, ["label_map"])["label_map"][0, 0])))
    worker.start()
    assert engine.running.wait(timeout=10)  # the worker's run is inside the engine
    return worker, got, release


def test_close_while_another_thread_runs_frees_that_lane_after_its_run(hrnet_small: ExportedHRNet,
                                                                       fake_gpu: FakeGpu) -> None:
    path, engine, cudart = fake_gpu(hrnet_small.path, _fill_from_frame)
    backend = edgeseg.load(path).backend
    worker, got, release = _run_held(backend, engine, hrnet_small)
    backend.close()
    assert cudart.memory != {}  # its lane is busy: not freed under it
    release.set()
    worker.join(timeout=10)
    assert got == [7]  # the run that was under way finished normally
    assert cudart.memory == {} and cudart.streams == set() and cudart.events == set()
    with pytest.raises(ModelFileError, match="the engine was closed; load the model again"):
        backend.run({"frame": _frame(hrnet_small, 1)}, ["label_map"])


# A lane allocates, in order: per tensor (input, output) device memory, then its pinned mirror;
# then two events. *ok* calls succeed before the failing one: each case fails with something
# already allocated.
@pytest.mark.parametrize(("failing", "ok"), [("cudaMalloc", 1), ("cudaMallocHost", 0), ("cudaEventCreate", 1)])
def test_a_lane_that_cannot_get_its_memory_frees_what_it_had(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu,
                                                            failing: str, ok: int) -> None:
    from edgeseg.trt.gpu_imports import CudaError

    path, engine, cudart = fake_gpu(hrnet_small.path, _fill_from_frame)
    backend = edgeseg.load(path).backend  # lane 1
    backend.run({"frame": _frame(hrnet_small, 3)}, ["label_map"])  # lane 1 pins its output mirror now
    before = (set(cudart.memory), set(cudart.streams), set(cudart.events))
    cudart.fail_call, cudart.fail_after = failing, cudart._calls.get(failing, 0) + ok  # lane 2 fails halfway
    engine.barrier = threading.Barrier(2, timeout=2)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            backend.run({"frame": _frame(hrnet_small, 3)}, ["label_map"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert any(isinstance(e, CudaError) and f"CUDA {failing}" in str(e) for e in errors), errors
    assert (set(cudart.memory), set(cudart.streams), set(cudart.events)) == before  # nothing leaked
    assert backend.lanes == 1  # type: ignore[attr-defined]


def test_engines_on_two_devices_in_one_thread_each_run_on_their_own(hrnet_small: ExportedHRNet,
                                                                    fake_gpu: FakeGpu) -> None:
    path, engine, cudart = fake_gpu(hrnet_small.path, _fill_from_frame)
    on_0 = edgeseg.load(path)
    cudart.cudaSetDevice(1)
    on_1 = edgeseg.load(path)
    contexts = {id(on_0): engine.contexts[0], id(on_1): engine.contexts[1]}
    for model in (on_0, on_1, on_0, on_1):
        model.semantic(_frame(hrnet_small, 2))
    assert contexts[id(on_0)].devices_used == {0} and contexts[id(on_1)].devices_used == {1}


def test_each_lane_captures_and_replays_its_own_cuda_graph(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu) -> None:
    path, engine, cudart = fake_gpu(hrnet_small.path, _fill_from_frame)
    backend = edgeseg.load(path, cuda_graph=True).backend
    n = 2
    engine.barrier = threading.Barrier(n, timeout=10)
    results: dict[int, list[int]] = {}

    def work(value: int) -> None:
        results[value] = [int(backend.run({"frame": _frame(hrnet_small, value)}, ["label_map"])["label_map"][0, 0])
                          for _ in range(3)]

    threads = [threading.Thread(target=work, args=(v,)) for v in (11, 22)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # run 1 plain (and captured), runs 2 and 3 replayed: each on the lane's own graph and stream
    assert results == {11: [11] * 3, 22: [22] * 3}
    assert len(cudart.graph_execs) == n and [g.launches for g in cudart.graph_execs] == [2, 2]
    assert len({g.graph.stream for g in cudart.graph_execs}) == n


def _pasting(engine_tensors: Callable[[], dict[str, tuple[tuple[int, ...], Any, bool]]], count_name: str,
             rows: int) -> Compute:
    """An instance engine that writes like PasteMasks: a frame whose first byte is v has v // 10
    detections, and only their rows of the per-detection outputs are written (with v)."""

    def compute(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        value = int(inputs["frame"][0, 0, 0])
        found = value // 10
        out = {}
        for name, (shape, dtype, is_input) in engine_tensors().items():
            if is_input:
                continue
            if name == count_name:
                out[name] = np.full(shape, found, dtype)
            elif shape and shape[0] == rows:
                out[name] = np.full((found, *shape[1:]), value, dtype)
            else:
                out[name] = np.full(shape, value, dtype)
        return out

    return compute


def test_rows_past_num_detections_are_trimmed_without_the_row_trim_flag(maskrcnn_cli: ExportedMaskRCNN,
                                                                        fake_gpu: FakeGpu) -> None:
    """A file whose metadata lacks row_trim: still only the detections' rows are copied back, and
    the rows past them are zero (as on ONNX Runtime), never the masks an earlier frame left in the
    reused buffers, nor memory nobody wrote."""
    meta = edgeseg.load(maskrcnn_cli.path).metadata
    assert meta.instance is not None
    count_name, rows = meta.outputs["num_detections"], meta.instance.max_detections
    path, engine, cudart = fake_gpu(maskrcnn_cli.path, _pasting(lambda: engine.tensors, count_name, rows),
                                    row_trim=False)
    model = edgeseg.load(path)
    assert model.metadata.instance is not None and not model.metadata.instance.row_trim
    names = [n for n, (_, _, is_input) in engine.tensors.items() if not is_input]
    frame = np.zeros((*maskrcnn_cli.frame_hw, 3), np.uint8)
    model.backend.run({"frame": frame + 53}, names)  # 5 detections
    cudart.copies.clear()
    got = model.backend.run({"frame": frame + 21}, names)  # 2 detections, in the same buffers
    assert int(got[count_name][0]) == 2
    for name in names:
        shape = engine.tensors[name][0]
        assert got[name].shape == shape, name  # the ONNX graph's shapes: what ONNX Runtime gives
        if name != count_name and shape[0] == rows:
            assert (got[name][:2] == 21).all() and (got[name][2:] == 0).all(), name
    full = sum(int(np.prod(s)) * d.itemsize for s, d, i in engine.tensors.values() if not i)
    assert sum(n for _, n in cudart.copies) < frame.nbytes + full / 10  # 2 detections' rows, not K
    result = model.instances(frame + 31)
    assert len(result) == 3 and result.masks.shape == (3, *maskrcnn_cli.frame_hw)


def test_pinned_buffers_are_allocated_once_per_lane(maskrcnn_cli: ExportedMaskRCNN, fake_gpu: FakeGpu) -> None:
    """More detections than any frame before must not free and reallocate pinned memory mid-run
    (cudaFreeHost synchronises the whole device, under every other lane)."""
    meta = edgeseg.load(maskrcnn_cli.path).metadata
    assert meta.instance is not None
    count_name, rows = meta.outputs["num_detections"], meta.instance.max_detections
    path, engine, cudart = fake_gpu(maskrcnn_cli.path, _pasting(lambda: engine.tensors, count_name, rows))
    backend = edgeseg.load(path).backend
    names = [n for n, (_, _, is_input) in engine.tensors.items() if not is_input]
    pinned = cudart._calls.get("cudaMallocHost", 0)
    assert pinned == len(engine.tensors)  # a mirror of every tensor, when the lane was made
    frame = np.zeros((*maskrcnn_cli.frame_hw, 3), np.uint8)
    for value in (12, 45, 99, 11, 99):  # 1, 4, 9, 1 and 9 detections
        got = backend.run({"frame": frame + value}, names)
        assert int(got[count_name][0]) == value // 10
    assert cudart._calls.get("cudaMallocHost", 0) == pinned and cudart._calls.get("cudaFreeHost", 0) == 0


def test_close_releases_the_engine_and_the_runtime(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu) -> None:
    path, _, cudart = fake_gpu(hrnet_small.path, _fill_from_frame)
    trt = sys.modules["tensorrt"]
    backend = edgeseg.load(path).backend
    backend.run({"frame": _frame(hrnet_small, 3)}, ["label_map"])
    assert len(trt.runtimes) == 1
    backend.close()
    gc.collect()
    assert backend._engine is None and backend._runtime is None  # type: ignore[attr-defined]
    assert len(trt.runtimes) == 0 and cudart.memory == {}
    backend.close()  # twice is harmless


def test_a_busy_lane_keeps_the_engine_until_its_run_ends(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu) -> None:
    path, engine, _ = fake_gpu(hrnet_small.path, _fill_from_frame)
    backend = edgeseg.load(path).backend
    worker, got, release = _run_held(backend, engine, hrnet_small)
    backend.close()
    assert backend._engine is engine  # type: ignore[attr-defined]  # its context still runs on it
    release.set()
    worker.join(timeout=10)
    assert got == [7] and backend._engine is None  # type: ignore[attr-defined]


def test_every_runtime_gets_the_one_process_logger(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu) -> None:
    path, _, _ = fake_gpu(hrnet_small.path, _fill_from_frame)
    first, second = edgeseg.load(path), edgeseg.load(path)
    first.semantic(_frame(hrnet_small, 1))
    second.semantic(_frame(hrnet_small, 2))
    trt = sys.modules["tensorrt"]
    from edgeseg.trt.trt_logger import LOGGER

    assert trt.loggers == [LOGGER]


def test_a_failed_run_names_its_own_error_while_another_lane_fails_too(hrnet_small: ExportedHRNet,
                                                                       fake_gpu: FakeGpu) -> None:
    """Two threads fail at once, each logging its error to the one logger before either reads
    it: each exception names the error of its own lane."""
    path, engine, _ = fake_gpu(hrnet_small.path, _fill_from_frame)
    backend = edgeseg.load(path).backend
    order = threading.Barrier(2, timeout=10)

    def fail(context: Any) -> bool:
        value = int(context._view("frame")[0, 0, 0])
        order.wait()  # both lanes inside execute_async_v3
        if value == 2:
            engine.log_error(context.logger, f"lane of frame {value}: illegal memory access")
        order.wait()  # the second error is logged only after the first
        if value == 1:
            engine.log_error(context.logger, f"lane of frame {value}: out of memory")
        order.wait()  # both logged before either thread raises
        return False

    engine.on_execute = fail
    errors: dict[int, str] = {}

    def work(value: int) -> None:
        try:
            backend.run({"frame": _frame(hrnet_small, value)}, ["label_map"])
        except ModelFileError as exc:
            errors[value] = str(exc)

    threads = [threading.Thread(target=work, args=(v,)) for v in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    name = path.name
    assert errors == {1: f"{name}: TensorRT failed to run the engine: lane of frame 1: out of memory",
                      2: f"{name}: TensorRT failed to run the engine: lane of frame 2: illegal memory access"}


def test_the_logger_keeps_a_bounded_number_of_errors(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path, engine, _ = fake_gpu(hrnet_small.path, _fill_from_frame)
    backend = edgeseg.load(path).backend
    from edgeseg.trt.trt_logger import KEPT_ERRORS, LOGGER

    count = iter(range(10**6))

    def fail(context: Any) -> bool:
        engine.log_error(context.logger, f"error {next(count)}")
        return False

    engine.on_execute = fail
    with caplog.at_level(logging.CRITICAL, logger="edgeseg.tensorrt"):
        for i in range(3 * KEPT_ERRORS):
            with pytest.raises(ModelFileError, match=f"error {i}$"):
                backend.run({"frame": _frame(hrnet_small, 1)}, ["label_map"])
    assert list(LOGGER.recent) == [f"error {i}" for i in range(2 * KEPT_ERRORS, 3 * KEPT_ERRORS)]


def test_contexts_are_created_one_at_a_time(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu) -> None:
    """Threads that need a lane at once create their execution contexts under the lanes' lock:
    TensorRT promises concurrent use of different contexts, not concurrent creation."""
    path, engine, _ = fake_gpu(hrnet_small.path, _fill_from_frame)
    backend = edgeseg.load(path).backend
    engine.creation_seconds = 0.05  # a window for two creations to overlap in
    n = 4
    engine.barrier = threading.Barrier(n, timeout=10)
    results: dict[int, int] = {}

    def work(value: int) -> None:
        results[value] = int(backend.run({"frame": _frame(hrnet_small, value)}, ["label_map"])["label_map"][0, 0])

    threads = [threading.Thread(target=work, args=(v,)) for v in range(1, n + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {v: v for v in range(1, n + 1)} and len(engine.contexts) == n
    assert engine.concurrent_creations == 0


def test_no_execution_context_is_a_typed_error_naming_tensorrts_reason(hrnet_small: ExportedHRNet,
                                                                       fake_gpu: FakeGpu) -> None:
    path, engine, cudart = fake_gpu(hrnet_small.path, _fill_from_frame)
    engine.fail_contexts = "IExecutionContext: out of device memory for activations"
    with pytest.raises(ModelFileError) as info:
        edgeseg.load(path)
    assert str(info.value) == (
        f"{path.name}: TensorRT could not create an execution context (IExecutionContext: out of device memory "
        "for activations); free GPU memory, run fewer streams or rebuild with a smaller --workspace")
    assert cudart.memory == {} and cudart.streams == set()


@pytest.mark.parametrize("failing", ["capture", "cudaStreamEndCapture", "cudaGraphInstantiate"])
def test_a_lane_whose_graph_capture_fails_runs_plainly(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu,
                                                       caplog: pytest.LogCaptureFixture, failing: str) -> None:
    path, engine, cudart = fake_gpu(hrnet_small.path, _fill_from_frame)
    if failing == "capture":
        engine.fail_capture = True
    else:
        cudart.fail_call = failing
    model = edgeseg.load(path, cuda_graph=True)
    with caplog.at_level(logging.WARNING):
        got = [int(model.semantic(_frame(hrnet_small, v)).label_map[0, 0]) for v in (4, 5, 6)]
    assert got == [4, 5, 6] and cudart.graph_execs == []
    warning = {"capture": "operation not permitted when stream is capturing",
               "cudaStreamEndCapture": "CUDA error 901",
               "cudaGraphInstantiate": "cannot be instantiated (CUDA error 2)"}[failing]
    assert any(warning in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_an_engine_with_a_type_numpy_lacks_is_a_typed_error(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu) -> None:
    path, _, _ = fake_gpu(hrnet_small.path, _fill_from_frame, dtypes={"label_map": FakeDataType("BF16")})
    with pytest.raises(ModelFileError) as info:
        edgeseg.load(path)
    assert str(info.value) == (
        f"{path.name}: tensor label_map is BF16, a type numpy lacks (edgeseg reads and writes graph inputs and "
        "outputs as numpy arrays); rebuild the engine from a model edgeseg converted: edgeseg build MODEL.onnx")


def test_plugins_are_registered_before_the_plan_is_deserialised(hrnet_small: ExportedHRNet,
                                                                fake_gpu: FakeGpu) -> None:
    ops = ("MultiLevelRoIAlign", "PasteMasks")
    path, _, _ = fake_gpu(hrnet_small.path, _fill_from_frame, plugins=ops)
    trt = sys.modules["tensorrt"]
    edgeseg.load(path)
    edgeseg.load(path)  # the library is loaded once a process: TensorRT refuses plugins registered already
    assert trt.registry.creators == set(ops) and len(trt.registry.libraries) == 1


def test_a_plan_that_carries_its_plugins_opens_without_the_library(hrnet_small: ExportedHRNet,
                                                                   fake_gpu: FakeGpu) -> None:
    path, _, _ = fake_gpu(hrnet_small.path, _fill_from_frame, plugins=("PasteMasks",), embedded=True)
    trt = sys.modules["tensorrt"]
    model = edgeseg.load(path)  # the runtime must allow the plan's host code
    assert trt.registry.libraries == []
    assert int(model.semantic(_frame(hrnet_small, 9)).label_map[0, 0]) == 9


def test_the_stand_in_is_as_strict_as_cuda_and_tensorrt(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu) -> None:
    """What the fake refuses, so that code relying on a forgiving stand-in fails here."""
    _, engine, cudart = fake_gpu(hrnet_small.path, _fill_from_frame)
    address = cudart.cudaMalloc(1000)[1]
    raw = (ctypes.c_uint8 * 1000).from_address(address)
    assert address % 256 == 0 and set(bytes(raw)) == {SENTINEL}  # not zeros
    context = engine.create_execution_context()
    assert context is not None
    assert not context.set_tensor_address("no such tensor", address)
    assert not context.set_tensor_address("frame", address + 16)
    assert context.set_tensor_address("frame", address)
    stream = cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)[1]
    start, end = cudart.cudaEventCreate()[1], cudart.cudaEventCreate()[1]
    cudart.cudaEventRecord(start, stream)
    cudart.cudaEventRecord(end, stream)
    assert int(cudart.cudaEventElapsedTime(start, end)[0]) == 600  # cudaErrorNotReady
    cudart.cudaStreamSynchronize(stream)
    assert cudart.cudaEventElapsedTime(start, end) == (0, 1.5)
    trt = sys.modules["tensorrt"]
    with pytest.raises(TypeError):
        trt.nptype(FakeDataType("FP8"))
    engine.plugins = ("PasteMasks",)
    runtime = trt.Runtime(object())
    engine.logger = types.SimpleNamespace(log=lambda severity, msg: None, Severity=types.SimpleNamespace(ERROR=1))
    runtime.logger = engine.logger
    assert runtime.deserialize_cuda_engine(b"PLAN") is None  # its plugin is not registered


def test_a_library_tensorrt_refuses_names_tensorrts_reason(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu,
                                                           tmp_path: Path) -> None:
    """The runtime is made (with edgeseg's logger) before the library is loaded, so the registry's
    error reaches the exception: here its plugins were registered by someone else already."""
    path, _, _ = fake_gpu(hrnet_small.path, _fill_from_frame, plugins=("PasteMasks",))
    trt = sys.modules["tensorrt"]
    trt.registry.creators.add("PasteMasks")
    with pytest.raises(plugin_library.PluginLibraryError) as info:
        edgeseg.load(path)
    assert str(info.value) == (f"TensorRT could not load {tmp_path / plugin_library.LIBRARY_NAME} (plugin creator "
                               f"PasteMasks is registered already); {plugin_library.BUILD_HINT}")


def test_a_capture_gets_its_threads_errors_only(hrnet_small: ExportedHRNet, fake_gpu: FakeGpu,
                                                caplog: pytest.LogCaptureFixture) -> None:
    fake_gpu(hrnet_small.path, _fill_from_frame)
    from edgeseg.trt.trt_logger import KEPT_ERRORS, LOGGER

    severity = sys.modules["tensorrt"].ILogger.Severity

    def elsewhere(level: Any, message: str) -> None:
        thread = threading.Thread(target=LOGGER.log, args=(level, message))
        thread.start()
        thread.join(timeout=10)

    with caplog.at_level(logging.INFO, logger="edgeseg.tensorrt"):
        with LOGGER.capture() as outer, LOGGER.capture() as inner:
            elsewhere(severity.ERROR, "another thread's error")
            for i in range(KEPT_ERRORS + 5):
                LOGGER.log(severity.ERROR, f"mine {i}")
        LOGGER.log(severity.INFO, "not forwarded")
        with LOGGER.capture(verbose=True):  # edgeseg build --verbose: TensorRT's own threads' info too
            elsewhere(severity.INFO, "from a builder thread")
    mine = [f"mine {i}" for i in range(5, KEPT_ERRORS + 5)]
    assert list(outer.errors) == list(inner.errors) == mine and inner.last_error() == mine[-1]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == ["from a builder thread"]


def test_threads_opening_plugin_engines_at_once_load_the_library_once(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """One stream per camera opens its engine at once: the library is loaded by one thread, the
    others wait and get its path (TensorRT refuses a second registration of the same plugins)."""
    for name in _BOUND:
        monkeypatch.delitem(sys.modules, name, raising=False)
    engine = FakeEngine({}, lambda inputs: {}, FakeCudart(), plugins=("PasteMasks", "MultiLevelRoIAlign"))
    trt = fake_tensorrt(engine)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(plugin_library, "_loaded", {})
    monkeypatch.setattr(plugin_library, "find_library", lambda: tmp_path / plugin_library.LIBRARY_NAME)
    monkeypatch.setattr(plugin_library, "library_tensorrt_version", lambda path: 100300)
    real_load = trt.get_plugin_registry().load_library
    calls = []

    def slow_load(path: str) -> object | None:
        calls.append(path)
        time.sleep(0.05)  # long enough for every thread to reach the check while the first loads
        return real_load(path)

    monkeypatch.setattr(trt, "get_plugin_registry", lambda: types.SimpleNamespace(load_library=slow_load))
    start = threading.Barrier(8)
    results: list[object] = []

    def open_engine() -> None:
        start.wait()
        try:
            results.append(plugin_library.load_plugins(trt))
        except Exception as exc:  # a refused second registration shows here
            results.append(exc)

    threads = [threading.Thread(target=open_engine) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results == [tmp_path / plugin_library.LIBRARY_NAME] * 8
    assert len(calls) == 1
