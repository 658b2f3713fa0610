"""The CUDA kernels of the plugins on a GPU, without TensorRT, against the CPU build.

Marked ``cuda`` (``pytest -m cuda``; ``tools/device_check.sh`` runs them): the launchers the TensorRT
plugins call, built by nvcc into a test-only library (tests/cuda_kernels.py) for the local GPU and
driven with PyTorch CUDA tensors, over the cases the CPU tests use (tests/op_cases.py). The CPU
build is itself tested against torchvision, so this pins the GPU to torchvision as well.

Bounds:
- RoIAlign FP32: max abs error <= 1e-5 (nvcc's --fmad=false gives the CPU build's floats; 0 is
  expected). FP16 features: the kernel reads half features exactly and accumulates in float as the
  CPU build does on the same half-rounded features, then rounds the output to nearest half, as
  numpy's float16 cast does, so the bound there is also one that 0 meets: <= 1e-5 after rounding.
- crop_and_resize sampling with matterport's level rule: FP32 and FP16 0 difference except for
  RoIs whose level term lies within 1e-5 of a half, where the device logf may differ from the
  host's by an ulp and pick the neighbouring level (skipped there, counted).
- PasteMasks: 0 differing pixels, FP32 and FP16 masks (FP16 against the CPU build on the same
  half-rounded masks), at exact thresholds too. With ``logits`` the device expf may differ from the
  host's by one ulp, so pixels whose value sits within an ulp of the threshold may flip: counted,
  and at most 1e-5 of the pixels.
- ZoomLinear: bit-identical to the CPU build (double arithmetic, --fmad=false, the same function).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from edgeseg import ops
from edgeseg.custom_ops import PASTE_MODES
from tests.op_cases import (
    EDGE_ROIS,
    FRAMES,
    MATTERPORT_AREA,
    ZOOM_CASES,
    boundary_rois,
    crop_and_resize_cases,
    pyramid,
    random_boxes,
    random_frame,
    random_roi_align_cases,
    random_rois,
    zoom_boxes,
    zoom_masks,
    zoom_paste_cases,
)

pytestmark = pytest.mark.cuda

ROI_TOL = 1e-5
LOGITS_FLIPS = 1e-5


def cuda_missing() -> str | None:
    """Why the CUDA kernel tests cannot run here, or None."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return f"no CUDA device visible to PyTorch {torch.__version__}"
    from tests.test_cuda_compile import find_cuda_tool

    if find_cuda_tool("nvcc") is None:
        return "nvcc not found: install the CUDA toolkit"
    return None


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> Any:
    reason = cuda_missing()
    if reason and os.environ.get("EDGESEG_REQUIRE_CUDA"):  # tools/device_check.sh: a skip would hide a failure
        pytest.fail(f"EDGESEG_REQUIRE_CUDA is set but the CUDA kernel tests cannot run: {reason}")
    if reason:
        pytest.skip(f"needs a CUDA GPU (no TensorRT needed): {reason}")
    import torch

    from tests.cuda_kernels import Kernels, build_library

    major, minor = torch.cuda.get_device_capability()
    return Kernels(build_library(tmp_path_factory.mktemp("kernels"), major * 10 + minor))


def gpu(a: np.ndarray, dtype: Any = None) -> Any:
    import torch

    t = torch.from_numpy(np.ascontiguousarray(a)).cuda()
    return t if dtype is None else t.to(dtype)


def half_round(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float16).astype(np.float32)


def roi_cases(rng: np.random.Generator) -> list[tuple[Any, ...]]:
    """(features, rois, output size, scale, sampling ratio, aligned) as the CPU random test draws them."""
    cases: list[tuple[Any, ...]] = list(random_roi_align_cases(rng))
    features = rng.standard_normal((2, 3, 9, 13)).astype(np.float32)
    for sampling_ratio in (-1, 0, 1, 2):
        for aligned in (False, True):
            cases.append((features, EDGE_ROIS, (7, 7), 0.25, sampling_ratio, aligned))
    far = np.array([[0, -2000, -1500, 3000, 2500], [0, -9000, -9000, 9000, 9000], [0, 0, 0, np.inf, 5]], np.float32)
    cases.append((features[:1], far, (7, 7), 0.25, 0, False))
    return cases


def test_roi_align_matches_the_cpu_build(kernels: Any) -> None:
    import torch

    worst = {"fp32": 0.0, "fp16": 0.0}
    for features, rois, out_hw, scale, ratio, aligned in roi_cases(np.random.default_rng(1234)):
        want = ops.roi_align(features, rois, out_hw, scale, ratio, aligned)
        got = kernels.roi_align([gpu(features)], gpu(rois), out_hw, [scale], ratio, aligned).cpu().numpy()
        worst["fp32"] = max(worst["fp32"], float(np.abs(got - want).max(initial=0.0)))
        want16 = ops.roi_align(half_round(features), rois, out_hw, scale, ratio, aligned).astype(np.float16)
        got16 = kernels.roi_align([gpu(features, torch.float16)], gpu(rois), out_hw, [scale], ratio, aligned)
        diff = np.abs(got16.cpu().numpy().astype(np.float32) - want16.astype(np.float32))
        worst["fp16"] = max(worst["fp16"], float(diff.max(initial=0.0)))
    print(f"RoIAlign max abs error vs the CPU build: {worst}")
    assert worst["fp32"] <= ROI_TOL and worst["fp16"] <= ROI_TOL, worst


def test_multilevel_roi_align_matches_the_cpu_build(kernels: Any) -> None:
    """Four FPN levels, RoIs on and around the level boundaries (of both level rules), both
    alignments, FP32 and FP16."""
    import torch

    rng = np.random.default_rng(9)
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    for image_hw, rois in (((1024, 1024), boundary_rois()), ((320, 256), random_rois(rng, 200, 2, 256, 320))):
        features = pyramid(rng, 2, 3, image_hw, [4, 8, 16, 32])
        for ratio, aligned, out_hw, rule in ((2, False, (7, 7), 0), (0, True, (14, 14), 0), (-1, False, (5, 3), 0),
                                             (2, False, (7, 7), 1), (2, False, (14, 14), 1)):
            # rule 1: the same sides in the +1 convention too (its boundaries are one pixel lower)
            r = rois if rule == 0 else np.concatenate([rois, rois - np.array([0, 0, 0, 1, 1], np.float32)])
            want = ops.multilevel_roi_align(features, r, out_hw, scales, ratio, aligned, level_rule=rule)
            got = kernels.roi_align([gpu(f) for f in features], gpu(r), out_hw, scales, ratio, aligned,
                                    level_rule=rule)
            assert float(np.abs(got.cpu().numpy() - want).max()) <= ROI_TOL
            want16 = ops.multilevel_roi_align([half_round(f) for f in features], r, out_hw, scales, ratio,
                                              aligned, level_rule=rule).astype(np.float16)
            got16 = kernels.roi_align([gpu(f, torch.float16) for f in features], gpu(r), out_hw, scales,
                                      ratio, aligned, level_rule=rule)
            assert float(np.abs(got16.cpu().numpy().astype(np.float32) - want16.astype(np.float32)).max()) <= ROI_TOL


def near_matterport_half(rois: np.ndarray, area: float) -> np.ndarray:
    """Rows whose matterport level term (float64) is within 1e-5 of a half: the device logf may
    round them to the other level."""
    with np.errstate(all="ignore"):
        side = np.sqrt((rois[:, 4].astype(np.float64) - rois[:, 2]) * (rois[:, 3].astype(np.float64) - rois[:, 1]))
        term = np.log2(side / (224.0 / np.sqrt(area)))
        return np.abs(np.abs(term - np.floor(term)) - 0.5) < 1e-5


def test_crop_and_resize_matches_the_cpu_build(kernels: Any) -> None:
    """sampling 1 (tf.image.crop_and_resize) with level_rule 2 (matterport) over the CPU tests'
    cases: random, boundary and outside boxes, 1-cell outputs, 1-pixel maps, FP32 and FP16."""
    import torch

    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    skipped = 0
    for features, rois, out_hw in crop_and_resize_cases(np.random.default_rng(77)):
        keep = ~near_matterport_half(rois, MATTERPORT_AREA)
        skipped += int((~keep).sum())
        args = {"level_rule": 2, "sampling": 1, "image_area": MATTERPORT_AREA}
        want = ops.multilevel_roi_align(features, rois, out_hw, scales, **args)  # type: ignore[arg-type]
        got = kernels.roi_align([gpu(f) for f in features], gpu(rois), out_hw, scales, **args).cpu().numpy()
        np.testing.assert_array_equal(got[keep], want[keep])
        want16 = ops.multilevel_roi_align([half_round(f) for f in features], rois, out_hw, scales,
                                          **args).astype(np.float16)  # type: ignore[arg-type]
        got16 = kernels.roi_align([gpu(f, torch.float16) for f in features], gpu(rois), out_hw, scales, **args)
        np.testing.assert_array_equal(got16.cpu().numpy()[keep], want16[keep])
    print(f"crop_and_resize: {skipped} RoIs within 1e-5 of a level boundary not compared")


def test_roi_align_of_no_rois_launches_nothing(kernels: Any) -> None:
    features = np.ones((1, 4, 8, 8), np.float32)
    out = kernels.roi_align([gpu(features)], gpu(np.zeros((0, 5), np.float32)), (7, 7), [0.5])
    assert tuple(out.shape) == (0, 4, 7, 7)


def paste_cases(rng: np.random.Generator) -> list[tuple[Any, ...]]:
    """(masks, boxes, frame, mode, threshold) over the CPU tests' frames, boxes and thresholds."""
    cases = []
    for frame_hw in FRAMES:
        for mode in ("torchvision", "continuous"):
            for threshold in (0.5, 0.0, 0.3, 0.95):
                k, m = int(rng.integers(1, 9)), int(rng.choice([1, 2, 14, 28]))
                masks = rng.random((k, m, m), dtype=np.float32)
                cases.append((masks, random_boxes(rng, k, frame_hw), frame_hw, mode, threshold))
    # values exactly at the threshold: > for torchvision, >= for continuous
    exact = np.full((3, 28, 28), 0.5, np.float32)
    exact[:, ::3] = 0.25
    exact_boxes = np.array([[3, 4, 60, 50], [10.5, 0.5, 40.25, 30.75], [-5, -5, 20, 20]], np.float32)
    for mode in PASTE_MODES:
        cases.append((exact, exact_boxes, (64, 64), mode, 0.5))
    masks = rng.random((100, 28, 28), dtype=np.float32)
    cases.append((masks, random_boxes(rng, 100, (1080, 1920)), (1080, 1920), "torchvision", 0.5))
    # mode 2 (matterport): integer boxes, masks all >= 0.5 (the clip), constant at the threshold
    for masks, boxes, frame_hw, threshold in zoom_paste_cases(rng):
        cases.append((masks, boxes, frame_hw, "zoom", threshold))
    cases.append((zoom_masks(rng, 100, 28), zoom_boxes(rng, 100, (1080, 1920)), (1080, 1920), "zoom", 0.5))
    return cases


def test_paste_masks_matches_the_cpu_build(kernels: Any) -> None:
    import torch

    for masks, boxes, frame_hw, mode, threshold in paste_cases(np.random.default_rng(7)):
        want = ops.paste_masks(masks, boxes, frame_hw, mode, threshold)
        got = kernels.paste_masks(gpu(masks), gpu(boxes), frame_hw, mode, threshold).cpu().numpy()
        assert int((got != want).sum()) == 0, (frame_hw, mode, threshold)
        want16 = ops.paste_masks(half_round(masks), boxes, frame_hw, mode, threshold)
        got16 = kernels.paste_masks(gpu(masks, torch.float16), gpu(boxes), frame_hw, mode, threshold)
        assert int((got16.cpu().numpy() != want16).sum()) == 0, (frame_hw, mode, threshold, "fp16")


def test_paste_masks_with_logits_flips_only_pixels_at_the_threshold(kernels: Any) -> None:
    rng = np.random.default_rng(3)
    flipped = total = 0
    for masks, boxes, frame_hw, mode, threshold in paste_cases(rng):
        logits = (masks - 0.5) * 12
        want = ops.paste_masks(logits, boxes, frame_hw, mode, threshold, logits=True)
        got = kernels.paste_masks(gpu(logits), gpu(boxes), frame_hw, mode, threshold, logits=True).cpu().numpy()
        flipped += int((got != want).sum())
        total += want.size
    print(f"PasteMasks with logits: {flipped} of {total} pixels differ from the CPU build")
    assert flipped <= LOGITS_FLIPS * total


def test_paste_masks_writes_only_the_first_count_planes(kernels: Any) -> None:
    """The count input (num_detections) is read on the device: planes from it on keep whatever the
    buffer held (a sentinel here), and the count is clamped to [0, K]."""
    import torch

    rng = np.random.default_rng(5)
    masks = rng.random((7, 28, 28), dtype=np.float32)
    boxes = np.array([[i * 8, 2, i * 8 + 20, 30] for i in range(7)], np.float32)
    every = ops.paste_masks(masks, boxes, (40, 64))
    for count, live in ((3, 3), (0, 0), (-1, 0), (7, 7), (99, 7)):
        out = torch.full((7, 40, 64), 0xAB, dtype=torch.uint8, device="cuda")
        kernels.paste_masks(gpu(masks), gpu(boxes), (40, 64), count=gpu(np.array([count], np.int32)), out=out)
        host = out.cpu().numpy()
        np.testing.assert_array_equal(host[:live], every[:live])
        assert (host[live:] == 0xAB).all(), count


def test_zoom_linear_matches_the_cpu_build_bit_for_bit(kernels: Any) -> None:
    rng = np.random.default_rng(23)
    for rows, cols, channels, height, width, canvas_h, canvas_w, top, left in ZOOM_CASES:
        image = random_frame(rng, rows, cols, channels)
        value_range = np.array([image.min(), image.max()], np.float32)
        attrs: dict[str, Any] = {"height": height, "width": width, "canvas_height": canvas_h, "canvas_width": canvas_w,
                 "top": top, "left": left, "mean": [123.7, 116.8, 103.9, 0.5][:channels] if channels > 1 else [77.7]}
        want = ops.zoom_linear(image, value_range, **attrs)
        got = kernels.zoom_linear(gpu(image), gpu(value_range), **attrs).cpu().numpy()
        assert got.shape == want.shape
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (rows, cols, channels, height, width)


def test_sanitizer_smoke(kernels: Any) -> None:
    """A few small launches of each kernel: what tools/device_check.sh runs under compute-sanitizer's
    memcheck and racecheck (the full cases are too slow there)."""
    import torch

    rng = np.random.default_rng(1)
    features = pyramid(rng, 1, 4, (64, 96), [4, 8, 16, 32])
    rois = random_rois(rng, 40, 1, 96, 64)
    for dtype in (torch.float32, torch.float16):
        for ratio in (2, 0):
            kernels.roi_align([gpu(f, dtype) for f in features], gpu(rois), (7, 7), [1 / 4, 1 / 8, 1 / 16, 1 / 32],
                              ratio)
        masks = rng.random((6, 28, 28), dtype=np.float32)
        for frame_hw in ((37, 53), (64, 96)):
            out = kernels.paste_masks(gpu(masks, dtype), gpu(random_boxes(rng, 6, frame_hw)), frame_hw,
                                      count=gpu(np.array([4], np.int32)))
            assert tuple(out.shape) == (6, *frame_hw)
    image = random_frame(rng, 37, 53, 3)
    molded = kernels.zoom_linear(gpu(image), gpu(np.array([image.min(), image.max()], np.float32)), 60, 80, 64, 96,
                                 2, 16, [1.0, 2.0, 3.0])
    assert tuple(molded.shape) == (3, 64, 96)

