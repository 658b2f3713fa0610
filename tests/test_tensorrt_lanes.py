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
        engine = FakeEngine(tensors, compute)
        cudart = FakeCudart()
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
    # each new thread (whose current device would be 0) was pointed at the engine's device once,
    # before its lane was allocated
    assert sorted(d for _, d in cudart.set_device_calls) == [1] * n
    assert len({t for t, _ in cudart.set_device_calls}) == n and cudart.alloc_devices == {1}
    assert len(engine.contexts) == n == backend.lanes  # type: ignore[attr-defined]
    streams = [c.streams_used for c in engine.contexts]
    assert all(len(s) == 1 for s in streams) and len(set.union(*streams)) == n
    backend.close()
    assert cudart.memory == {} and cudart.streams == set()  # every buffer and stream freed
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

