"""The TensorRT backend's lanes (one execution context and CUDA stream per concurrent caller),
on a fake TensorRT and CUDA runtime in host memory (tests/fake_tensorrt.py).

What runs here is edgeseg's own code: opening the engine file, binding buffers, copying in and
out, trimming rows, one lane per thread that runs at the same time as another, freeing it all.
The same paths on a real GPU are in tests/test_gpu.py (marked gpu).
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import edgeseg
from edgeseg.engine_file import BuildInfo, write_engine
from edgeseg.errors import ModelFileError
from edgeseg.pipeline import Pipeline, run_streams, shared
from edgeseg.sinks import CallbackSink
from edgeseg.sources import IterableSource
from tests.conftest import ExportedHRNet, ExportedMaskRCNN
from tests.fake_tensorrt import Compute, FakeCudart, FakeEngine, fake_tensorrt

# Modules that bind `tensorrt` when imported: imported afresh against the fake, dropped after.
_BOUND = ("edgeseg.backends.tensorrt", "edgeseg.trt.trt_logger")

FakeGpu = Callable[[Path, Compute], tuple[Path, FakeEngine, FakeCudart]]


@pytest.fixture()
def fake_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeGpu]:
    """Makes an engine file from an ONNX file's metadata and tensors, served by a fake runtime
    whose engine computes *compute*."""
    for name in _BOUND:
        monkeypatch.delitem(sys.modules, name, raising=False)

    def make(onnx_path: Path, compute: Compute) -> tuple[Path, FakeEngine, FakeCudart]:
        graph = onnx.load(str(onnx_path), load_external_data=False)
        tensors = {}
        for values, is_input in ((graph.graph.input, True), (graph.graph.output, False)):
            for v in values:
                shape = tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
                dtype = np.dtype(helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type))
                tensors[v.name] = (shape, dtype, is_input)
        cudart = FakeCudart()
        engine = FakeEngine(tensors, compute, cudart)
        cuda = types.ModuleType("cuda")
        bindings = types.ModuleType("cuda.bindings")
        bindings.runtime = cudart  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(engine))
        monkeypatch.setitem(sys.modules, "cuda", cuda)
        monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
        props = {p.key: p.value for p in graph.metadata_props}
        build = BuildInfo(tensorrt_version="10.3.0", gpu_name="Fake GPU", compute_capability="8.7", precision="fp32")
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
        if name != count_name and shape and shape[0] == rows:
            assert got[name].shape == (found, *shape[1:]), name
        else:
            assert got[name].shape == shape, name
    per_run = sum(n for _, n in cudart.copies)
    frame_bytes = frame.nbytes
    full = sum(int(np.prod(s)) * d.itemsize for s, d, i in engine.tensors.values() if not i)
    assert per_run < frame_bytes + full / 10  # masks of 3 detections, not of all K slots



def test_close_while_another_thread_runs_frees_that_lane_after_its_run(hrnet_small: ExportedHRNet,
                                                                       fake_gpu: FakeGpu) -> None:
    path, engine, cudart = fake_gpu(hrnet_small.path, _fill_from_frame)
    backend = edgeseg.load(path).backend
    engine.hold = threading.Event()
    got: list[int] = []
    worker = threading.Thread(target=lambda: got.append(int(
        backend.run({"frame": _frame(hrnet_small, 7)}, ["label_map"])["label_map"][0, 0])))
    worker.start()
    assert engine.running.wait(timeout=10)  # the worker's run is inside the engine
    backend.close()
    assert cudart.memory != {}  # its lane is busy: not freed under it
    engine.hold.set()
    worker.join(timeout=10)
    assert got == [7]  # the run that was under way finished normally
    assert cudart.memory == {} and cudart.streams == set() and cudart.events == set()
    with pytest.raises(ModelFileError, match="the engine was closed; load the model again"):
        backend.run({"frame": _frame(hrnet_small, 1)}, ["label_map"])


# A lane allocates, in order: per tensor (input, output) device memory, then for the input its
# pinned mirror; then two events. *ok* calls succeed before the failing one: each case fails
# with something already allocated.
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
