"""On a device with an NVIDIA GPU, TensorRT 10.3+, cuda-python and the plugin library built
(README: Running on a Jetson): ``pytest -m gpu``. Skipped elsewhere, with the reason.

- the TensorRT plugins give the CPU build's numbers on random inputs (FP32);
- HRNet engines: FP32 label maps agree with ONNX Runtime on >= 99.99 % of the pixels; threads on
  one engine (several streams) each get their own context and the results they would get alone;
- Mask R-CNN engines of the FP32, FP16 and INT8 files (``--precision``; TensorRT builds each as
  a strongly typed network, 10.3 and 11.x alike): mean mask IoU against ONNX Runtime running the
  same file >= 0.99, 0.97 and 0.90;
- issue 24: an --embed-plugins engine (version-compatible) opens in a fresh process that reaches
  no library file, and in one that loaded the library first; lanes made by eight threads at
  once; no pinned allocation during runs; close() gives the device memory back; one logger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgeseg
from edgeseg.result import InstanceResult
from tests.conftest import ExportedHRNet, ExportedMaskRCNN, fit

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


def _build(onnx_path: Path, out: Path, **options: Any) -> Path:
    from edgeseg.trt.build import BuildOptions, build_engine

    return build_engine(onnx_path, out, BuildOptions(**options), quiet=True)


def test_hrnet_fp32_engine_matches_onnxruntime(hrnet_small: ExportedHRNet, engines: Path,
                                               photos: list[np.ndarray]) -> None:
    engine = _build(hrnet_small.path, engines / "hrnet.engine")
    cpu, gpu = edgeseg.load(hrnet_small.path), edgeseg.load(engine)
    assert gpu.backend.name == "tensorrt"
    for photo in photos:
        frame = fit(photo, hrnet_small.frame_hw)
        agree = np.mean(cpu.semantic(frame).label_map == gpu.semantic(frame).label_map)
        assert agree >= 0.9999, agree


def test_threads_on_one_engine_overlap_and_keep_their_results(hrnet_small: ExportedHRNet, engines: Path,
                                                               photos: list[np.ndarray]) -> None:
    """Several streams on one engine: each thread gets its own execution context and CUDA stream,
    and gets exactly what it would alone."""
    import threading

    engine = engines / "hrnet.engine"
    if not engine.exists():
        _build(hrnet_small.path, engine)
    model = edgeseg.load(engine)
    frames = [fit(p, hrnet_small.frame_hw) for p in photos[:4]]
    alone = [model.semantic(f).label_map for f in frames]
    got: dict[int, list[np.ndarray]] = {}

    def work(i: int) -> None:
        got[i] = [model.semantic(frames[i]).label_map for _ in range(20)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(frames))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(got) == list(range(len(frames)))
    for i, maps in got.items():
        assert all(np.array_equal(m, alone[i]) for m in maps), i
    assert 1 <= model.backend.lanes <= len(frames)  # type: ignore[attr-defined]  # (overlap: benchmarks/streams.py)


def test_bench_reports_the_engines_gpu_time(hrnet_small: ExportedHRNet, engines: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import edgeseg.cli as cli

    engine = engines / "hrnet.engine"
    if not engine.exists():
        _build(hrnet_small.path, engine)
    assert cli.main(["bench", str(engine), "--runs", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == "tensorrt"
    (gpu,) = [s for s in report["inner"] if s["name"] == "engine on the GPU (CUDA events)"]
    inference = next(s for s in report["stages"] if s["name"] == "inference")
    assert 0 < gpu["mean_ms"] <= inference["mean_ms"]


def mean_matched_mask_iou(ref: InstanceResult, got: InstanceResult, top: int = 20) -> float:
    """Mean over ref's top detections of the best mask IoU among got's detections of the same
    class (near-tied scores may order the two lists differently)."""
    ious = []
    for i in range(min(top, len(ref))):
        same = np.flatnonzero(got.labels == ref.labels[i])
        best = 0.0
        for j in same:
            inter = np.logical_and(ref.masks[i], got.masks[j]).sum()
            union = np.logical_or(ref.masks[i], got.masks[j]).sum()
            best = max(best, 1.0 if union == 0 else inter / union)
        ious.append(best)
    return float(np.mean(ious)) if ious else 1.0


def _at_precision(src: Path, precision: str, photos: list[np.ndarray], work: Path) -> Path:
    """*src* (an FP32 Mask R-CNN file) at *precision*; INT8 calibrated on the photos."""
    import warnings

    import cv2

    from edgeseg.converters.api import FAMILIES
    from edgeseg.precision.convert import Calibration, apply_precision

    if precision == "fp32":
        return src
    images = work / "calib"
    images.mkdir(exist_ok=True)
    for i, photo in enumerate(photos):
        cv2.imwrite(str(images / f"{i}.png"), photo)
    out = work / f"maskrcnn_{precision}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few calibration images: fine for a parity check
        apply_precision(src, out, precision, FAMILIES["maskrcnn"].precision_rules,
                        Calibration(images=images, cache=work / "calib.json") if precision == "int8" else None)
    return out


@pytest.mark.parametrize(("precision", "floor"), [("fp32", 0.99), ("fp16", 0.97), ("int8", 0.90)])
def test_maskrcnn_engine_masks_match_onnxruntime(maskrcnn_cli: ExportedMaskRCNN, engines: Path,
                                                 photos: list[np.ndarray], precision: str, floor: float) -> None:
    model = _at_precision(maskrcnn_cli.path, precision, photos, engines)
    engine = _build(model, engines / f"maskrcnn-{precision}.engine")
    cpu, gpu = edgeseg.load(model), edgeseg.load(engine)
    assert gpu.metadata.precision == precision
    for photo in photos[:3]:
        frame = fit(photo, maskrcnn_cli.frame_hw)
        assert mean_matched_mask_iou(cpu.instances(frame), gpu.instances(frame)) >= floor


def _plugin_engine(engines: Path, name: str, op: str, fields: dict[str, np.ndarray],
                   inputs: list[np.ndarray]) -> Any:
    """An engine holding one plugin layer, opened with the TensorRT backend."""
    import tensorrt as trt

    from edgeseg.backends.tensorrt import TensorRTBackend
    from edgeseg.engine_file import BuildInfo, write_engine
    from edgeseg.trt.gpu_imports import current_gpu, import_cudart, strongly_typed_flags
    from edgeseg.trt.plugin_library import load_plugins
    from edgeseg.trt.trt_logger import LOGGER

    load_plugins(trt)
    builder = trt.Builder(LOGGER)
    network = builder.create_network(strongly_typed_flags(trt))
    types = {np.dtype(np.float32): trt.float32, np.dtype(np.int32): trt.int32}
    tensors = [network.add_input(f"in{i}", types[a.dtype], trt.Dims(list(a.shape))) for i, a in enumerate(inputs)]
    creator = trt.get_plugin_registry().get_creator(op, "1", "edgeseg")
    kinds = {np.dtype(np.int32): trt.PluginFieldType.INT32, np.dtype(np.float32): trt.PluginFieldType.FLOAT32}
    # The stubs type PluginField's name as trt.FallbackString, which a str converts to at run time.
    fc = trt.PluginFieldCollection([trt.PluginField(k, v, kinds[v.dtype])  # type: ignore[call-overload]
                                    for k, v in fields.items()])
    plugin = creator.create_plugin(op, fc, trt.TensorRTPhase.BUILD)
    layer = network.add_plugin_v3(tensors, [], plugin)
    layer.get_output(0).name = "out"
    network.mark_output(layer.get_output(0))
    with LOGGER.capture() as errors:
        plan = builder.build_serialized_network(network, builder.create_builder_config())
    assert plan is not None, errors.last_error()
    gpu = current_gpu(import_cudart())
    path = write_engine(engines / name, memoryview(plan), {},
                        BuildInfo(trt.__version__, gpu[0], gpu[1], "fp32", plugins=(op,)))
    return TensorRTBackend(path)


def test_plugin_kernels_match_the_cpu_build(engines: Path) -> None:
    from edgeseg import ops

    rng = np.random.default_rng(0)
    levels = [rng.standard_normal((1, 8, 64 >> k, 96 >> k), dtype=np.float32) for k in range(4)]
    xy = rng.uniform(0, 380, (50, 2)).astype(np.float32)
    wh = rng.uniform(1, 200, (50, 2)).astype(np.float32)
    rois = np.concatenate([np.zeros((50, 1), np.float32), xy, xy + wh], axis=1)
    scales = np.array([0.25, 0.125, 0.0625, 0.03125], np.float32)
    backend = _plugin_engine(engines, "roi.engine", "MultiLevelRoIAlign",
                             {"output_height": np.array([7], np.int32), "output_width": np.array([7], np.int32),
                              "spatial_scales": scales, "sampling_ratio": np.array([2], np.int32)},
                             [rois, *levels])
    got = backend.run({f"in{i}": a for i, a in enumerate([rois, *levels])}, ["out"])["out"]
    want = ops.multilevel_roi_align(levels, rois, (7, 7), [float(s) for s in scales], sampling_ratio=2)
    np.testing.assert_array_equal(got, want)  # --fmad=false: same floats as the CPU build

    masks = rng.random((20, 28, 28), dtype=np.float32)
    boxes = np.concatenate([xy[:20], xy[:20] + wh[:20]], axis=1)
    count = np.array([13], np.int32)  # rows from num_detections on are not pasted (nor compared)
    backend = _plugin_engine(engines, "paste.engine", "PasteMasks",
                             {"height": np.array([400], np.int32), "width": np.array([600], np.int32)},
                             [masks, boxes, count])
    words = backend.run({"in0": masks, "in1": boxes, "in2": count}, ["out"])["out"]
    np.testing.assert_array_equal(words.view(np.uint8)[:13], ops.paste_masks(masks, boxes, (400, 600))[:13])


# Issue 24: what only a GPU decides. Each test names the item it confirms.

_RUN_IN_A_FRESH_PROCESS = """
import json, sys
import numpy as np
import edgeseg
from edgeseg.trt import plugin_library

engine, frames, out, preload = sys.argv[1:5]
if preload == "1":  # the library in this process's registry before the engine that carries it is opened
    import tensorrt as trt
    plugin_library.load_plugins(trt)
model = edgeseg.load(engine)
results = [model.instances(frame) for frame in np.load(frames)["frames"]]
arrays = {}
for i, r in enumerate(results):
    arrays[f"labels{i}"], arrays[f"masks{i}"] = r.labels, r.masks
np.savez(out, **arrays)
print(json.dumps({"loaded": [str(p) for p in plugin_library.loaded()]}))
"""


def _fresh_process(script: str, *args: str, env: dict[str, str]) -> str:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    full_env = {**os.environ, "PYTHONPATH": str(root), **env}
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=root, env=full_env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def embedded_engine(maskrcnn_cli: ExportedMaskRCNN, engines: Path) -> Path:
    """A Mask R-CNN engine built with --embed-plugins in a process of its own, from a copy of the
    plugin library that is deleted afterwards: nothing but the engine carries the library."""
    import shutil

    from edgeseg.trt.plugin_library import ENV_VAR, find_library

    copy = engines / "copy" / "libedgeseg_trt_plugins.so"
    copy.parent.mkdir(exist_ok=True)
    shutil.copy2(find_library(), copy)
    out = engines / "maskrcnn-embedded.engine"
    _fresh_process("import sys, edgeseg.cli as cli; sys.exit(cli.main(sys.argv[1:]))", "build", str(maskrcnn_cli.path),
                   "-o", str(out), "--embed-plugins", "-q", env={ENV_VAR: str(copy)})
    shutil.rmtree(copy.parent)
    return out


def _compare_with_onnxruntime(maskrcnn_cli: ExportedMaskRCNN, engine: Path, photos: list[np.ndarray], work: Path,
                              preload: bool, env: dict[str, str]) -> list[str]:
    """Run *engine* in a fresh process on three photos; assert its masks match ONNX Runtime's;
    return the plugin libraries edgeseg loaded there."""
    import json

    frames = np.stack([fit(p, maskrcnn_cli.frame_hw) for p in photos[:3]])
    np.savez(work / "frames.npz", frames=frames)
    out = work / f"results-{int(preload)}.npz"
    report = _fresh_process(_RUN_IN_A_FRESH_PROCESS, str(engine), str(work / "frames.npz"), str(out),
                            "1" if preload else "0", env=env)
    got = np.load(out)
    cpu = edgeseg.load(maskrcnn_cli.path)
    for i, frame in enumerate(frames):
        labels, masks = got[f"labels{i}"], got[f"masks{i}"]
        there = InstanceResult(boxes=np.zeros((len(labels), 4), np.float32), scores=np.zeros(len(labels), np.float32),
                               labels=labels, masks=masks, classes=(), palette=())
        assert mean_matched_mask_iou(cpu.instances(frame), there) >= 0.99, i
    return list(json.loads(report.strip().splitlines()[-1])["loaded"])


def test_embedded_plugins_open_in_a_fresh_process_with_no_library(maskrcnn_cli: ExportedMaskRCNN, engines: Path,
                                                                  embedded_engine: Path,
                                                                  photos: list[np.ndarray]) -> None:
    """Item 6: --embed-plugins builds a version-compatible engine that carries the library; a
    process that cannot reach any library file opens and runs it."""
    from edgeseg.engine_file import read_header
    from edgeseg.trt.plugin_library import ENV_VAR

    assert read_header(embedded_engine).build.extra["plugins_embedded"] is True
    loaded = _compare_with_onnxruntime(maskrcnn_cli, embedded_engine, photos, engines, preload=False,
                                       env={ENV_VAR: str(engines / "no-such-library.so")})
    assert loaded == []  # edgeseg never looked for the library


def test_embedded_plugins_open_after_the_library_was_loaded(maskrcnn_cli: ExportedMaskRCNN, engines: Path,
                                                           embedded_engine: Path, photos: list[np.ndarray]) -> None:
    """Item 6: a process that registered the plugins already (it built an engine, or opened one
    without embedded plugins) opens an engine carrying the same library: TensorRT's loadLibrary
    refuses plugins registered already, so this decides whether the embedded copy conflicts.
    If it fails, the backend's error names the cause (EngineMismatchError, 'open it in a process
    of its own')."""
    from edgeseg.trt.plugin_library import find_library

    loaded = _compare_with_onnxruntime(maskrcnn_cli, embedded_engine, photos, engines, preload=True, env={})
    assert loaded == [str(find_library())]


def test_many_threads_creating_lanes_at_once(hrnet_small: ExportedHRNet, engines: Path,
                                             photos: list[np.ndarray]) -> None:
    """Item 7: eight threads that all need a lane at the same moment; their execution contexts
    are created one at a time (under the lanes' lock) and each thread gets its own results."""
    import threading

    engine = engines / "hrnet.engine"
    if not engine.exists():
        _build(hrnet_small.path, engine)
    frames = [fit(photos[i % len(photos)], hrnet_small.frame_hw) for i in range(8)]
    for _ in range(3):  # fresh engines: every lane but the first is made under contention
        model = edgeseg.load(engine)
        alone = [model.semantic(f).label_map for f in frames]
        start = threading.Barrier(len(frames), timeout=60)
        got: dict[int, list[np.ndarray]] = {}

        def work(i: int, model: Any = model, start: threading.Barrier = start,
                 got: dict[int, list[np.ndarray]] = got) -> None:
            start.wait()
            got[i] = [model.semantic(frames[i]).label_map for _ in range(5)]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(frames))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sorted(got) == list(range(len(frames)))
        assert all(np.array_equal(m, alone[i]) for i, maps in got.items() for m in maps)
        model.backend.close()


def test_instance_runs_pin_nothing_and_return_ort_shapes(maskrcnn_cli: ExportedMaskRCNN, engines: Path,
                                                         photos: list[np.ndarray],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Items 4 and 8: on the real runtime, runs with changing detection counts allocate no pinned
    memory (the mirrors were sized when the lane was made), and raw outputs have ONNX Runtime's
    shapes, zero past num_detections (never an earlier frame's masks; with --score-thresh 0 most
    frames fill all K rows, so the zeroing itself is tested on the stand-in runtime)."""
    from edgeseg.trt.gpu_imports import import_cudart

    engine = engines / "maskrcnn-fp32.engine"
    if not engine.exists():
        _build(maskrcnn_cli.path, engine)
    model = edgeseg.load(engine)
    cudart = import_cudart()
    calls = {"cudaMallocHost": 0, "cudaFreeHost": 0}
    for name in calls:
        real = getattr(cudart, name)

        def counting(*args: Any, real: Any = real, name: str = name) -> Any:
            calls[name] += 1
            return real(*args)

        monkeypatch.setattr(cudart, name, counting)
    ort = edgeseg.load(maskrcnn_cli.path)
    names = [o.name for o in ort.backend.outputs]
    count_name = model.metadata.outputs["num_detections"]
    blank = np.zeros((*maskrcnn_cli.frame_hw, 3), np.uint8)  # few detections, then a photo's many
    for frame in (blank, fit(photos[0], maskrcnn_cli.frame_hw), blank):
        got = model.run_outputs(frame, names)
        n = int(got[count_name].reshape(-1)[0])
        for spec in ort.backend.outputs:
            assert got[spec.name].shape == tuple(spec.shape), spec.name
            if spec.name != count_name and got[spec.name].shape[0] == model.metadata.instance.max_detections:  # type: ignore[union-attr]
                assert not got[spec.name][n:].any(), spec.name
    assert calls == {"cudaMallocHost": 0, "cudaFreeHost": 0}


def test_close_gives_the_engines_device_memory_back(hrnet_small: ExportedHRNet, engines: Path) -> None:
    """Item 3: after close() the engine's weights and the lanes' memory are free again, without
    waiting for garbage collection."""
    from edgeseg.trt.gpu_imports import check, import_cudart

    engine = engines / "hrnet.engine"
    if not engine.exists():
        _build(hrnet_small.path, engine)
    cudart = import_cudart()
    frame = np.zeros((*hrnet_small.frame_hw, 3), np.uint8)
    warm = edgeseg.load(engine)  # what stays for the process (kernels CUDA loads lazily) is loaded now
    warm.semantic(frame)
    warm.backend.close()
    before = check(cudart.cudaMemGetInfo(), "cudaMemGetInfo")[0]
    model = edgeseg.load(engine)
    model.semantic(frame)
    opened = check(cudart.cudaMemGetInfo(), "cudaMemGetInfo")[0]
    model.backend.close()  # the model object stays referenced: no garbage collection frees it
    closed = check(cudart.cudaMemGetInfo(), "cudaMemGetInfo")[0]
    assert before - opened > 0 and before - closed < (before - opened) / 4, (before, opened, closed)
    assert model.backend._engine is None  # type: ignore[attr-defined]


def test_every_runtime_and_builder_shares_the_process_logger(hrnet_small: ExportedHRNet, engines: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """Item 2: TensorRT warns when a builder or runtime gets a logger other than the first one
    (its global logger); edgeseg gives every one LOGGER, so no such warning appears."""
    import logging

    import tensorrt as trt

    from edgeseg.trt.trt_logger import LOGGER

    engine = engines / "hrnet.engine"
    if not engine.exists():
        _build(hrnet_small.path, engine)
    with caplog.at_level(logging.WARNING, logger="edgeseg.tensorrt"):
        models = [edgeseg.load(engine) for _ in range(2)]
        trt.Builder(LOGGER)
        for model in models:
            model.semantic(np.zeros((*hrnet_small.frame_hw, 3), np.uint8))
            model.backend.close()
    assert not [r.getMessage() for r in caplog.records if "logger" in r.getMessage().lower()]
