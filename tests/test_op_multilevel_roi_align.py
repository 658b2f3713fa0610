"""edgeseg.ops.roi_align / multilevel_roi_align (CPU build of MultiLevelRoIAlign) against
torchvision.ops.roi_align and torchvision.ops.MultiScaleRoIAlign; its crop_and_resize sampling and
matterport level rule against edgeseg.converters.matterport.conventions (bit for bit), and the
torch stand-in the converters export against the CPU build."""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import roi_align as tv_roi_align

from edgeseg import ops
from edgeseg.converters.maskrcnn import ops as torch_ops
from edgeseg.converters.matterport import conventions
from edgeseg.custom_ops import LEVEL_RULES, MULTILEVEL_ROI_ALIGN, ROI_SAMPLINGS
from edgeseg.errors import BackendUnavailableError
from tests.op_cases import (
    EDGE_ROIS,
    EXACT_HALF_BOXES,
    MATTERPORT_AREA,
    OUTPUT_SIZES,
    SCALES,
    boundary_rois,
    crop_and_resize_cases,
    matterport_boundary_boxes,
    pyramid,
    random_norm_boxes,
    random_roi_align_cases,
    random_rois,
    yx_to_rois,
)

TOL = 1e-4


def test_roi_align_matches_torchvision_on_random_cases():
    rng = np.random.default_rng(1234)
    worst = 0.0
    cases = 0
    for features, rois, out_hw, scale, sampling_ratio, aligned in random_roi_align_cases(rng):
        c = features.shape[1]
        ours = ops.roi_align(features, rois, out_hw, scale, sampling_ratio, aligned, threads=2)
        ref = tv_roi_align(
            torch.from_numpy(features), torch.from_numpy(rois), out_hw, scale, sampling_ratio, aligned
        ).numpy()
        assert ours.shape == ref.shape == (rois.shape[0], c, *out_hw)
        assert ours.dtype == np.float32
        err = float(np.abs(ours - ref).max())
        worst = max(worst, err)
        assert err <= TOL, (
            f"max abs error {err:.3g} for scale={scale} output={out_hw} "
            f"sampling_ratio={sampling_ratio} aligned={aligned}"
        )
        cases += 1
    assert cases == len(SCALES) * len(OUTPUT_SIZES) * 6
    print(f"roi_align: {cases} random cases, max abs error vs torchvision {worst:.3g}")


def test_roi_align_edge_boxes():
    rng = np.random.default_rng(7)
    features = rng.standard_normal((2, 3, 9, 13)).astype(np.float32)
    rois = EDGE_ROIS
    for sampling_ratio in (-1, 0, 1, 2):
        for aligned in (False, True):
            ours = ops.roi_align(features, rois, 7, 0.25, sampling_ratio, aligned)
            ref = tv_roi_align(torch.from_numpy(features), torch.from_numpy(rois), 7, 0.25, sampling_ratio, aligned)
            assert float(np.abs(ours - ref.numpy()).max()) <= TOL


def test_roi_align_adaptive_grid_of_rois_far_larger_than_the_map():
    """sampling_ratio <= 0 gives a RoI ceil(roi_size / output_size) samples per bin and axis, so a
    huge RoI would cost billions of samples (a GPU hang); only the samples that land on the map
    are visited, which changes no result: torchvision's for large RoIs (both CPU paths: tap
    tables up to 4096 samples an axis, element by element beyond), zeros for infinite ones."""
    rng = np.random.default_rng(11)
    features = rng.standard_normal((1, 3, 9, 13)).astype(np.float32)
    rois = np.array([[0, -2000, -1500, 3000, 2500],  # 179 x 143 samples per bin: tap tables
                     [0, -9000, -9000, 9000, 9000],  # 643 x 643: element by element
                     [0, -9000, 20, 9000, 30]], dtype=np.float32)
    for aligned in (False, True):
        ours = ops.roi_align(features, rois, 7, 0.25, 0, aligned)
        ref = tv_roi_align(torch.from_numpy(features), torch.from_numpy(rois), 7, 0.25, 0, aligned).numpy()
        assert float(np.abs(ours - ref).max()) <= TOL
    inf = np.float32(np.inf)
    degenerate = np.array([[0, -inf, -inf, inf, inf], [0, 0, 0, 1e30, 1e30], [0, 0, 0, inf, 5], [0, np.nan, 0, 4, 4]],
                          dtype=np.float32)
    out = ops.roi_align(features, degenerate, 7, 0.25, 0, False)
    assert np.isfinite(out).all() and not out.any()


def test_roi_align_empty_rois_and_threads():
    features = np.ones((2, 4, 8, 8), dtype=np.float32)
    out = ops.roi_align(features, np.zeros((0, 5), np.float32), (7, 5), 0.5)
    assert out.shape == (0, 4, 7, 5) and out.dtype == np.float32
    rois = random_rois(np.random.default_rng(3), 9, 2, 16, 16)
    one = ops.roi_align(features, rois, 7, 0.5, threads=1)
    assert np.array_equal(one, ops.roi_align(features, rois, 7, 0.5, threads=2))
    assert np.array_equal(one, ops.roi_align(features, rois, 7, 0.5, threads=0))


def test_roi_align_converts_dtype_and_layout():
    rng = np.random.default_rng(5)
    features = rng.standard_normal((1, 6, 10, 12))
    rois = np.array([[0, 1, 2, 30, 25]])
    ref = ops.roi_align(features.astype(np.float32), rois.astype(np.float32), 7, 0.5)
    as_f64 = ops.roi_align(features, rois, 7, 0.5)  # float64 / int64 inputs are converted
    strided = ops.roi_align(np.asfortranarray(features.astype(np.float32)), rois, 7, 0.5)
    assert np.array_equal(ref, as_f64) and np.array_equal(ref, strided)


# ----------------------------------------------------------------------------------------------
# Multi-level


def multiscale_reference(features, rois, output_size, sampling_ratio, image_hw, canonical=(224, 4)):
    """torchvision.ops.MultiScaleRoIAlign; it infers the scales from the feature and image sizes."""
    names = [f"p{i}" for i in range(len(features))]
    pool = MultiScaleRoIAlign(
        names, output_size, sampling_ratio, canonical_scale=canonical[0], canonical_level=canonical[1]
    )
    x = OrderedDict((name, torch.from_numpy(f)) for name, f in zip(names, features, strict=True))
    n = features[0].shape[0]
    boxes = [torch.from_numpy(rois[rois[:, 0] == i, 1:]) for i in range(n)]
    out = pool(x, boxes, [image_hw] * n).numpy()
    return out, list(pool.scales), pool


def sorted_by_image(rois: np.ndarray) -> np.ndarray:
    # MultiScaleRoIAlign takes one box list per image and concatenates them in image order.
    return rois[np.argsort(rois[:, 0], kind="stable")]


def test_multilevel_matches_multiscale_roialign():
    rng = np.random.default_rng(42)
    worst = 0.0
    configs = [
        ([4, 8, 16, 32], (256, 320)),
        ([4, 8, 16, 32], (301, 417)),  # odd image size: feature sizes rounded up
        ([8, 16, 32], (512, 384)),  # three levels, k_min = 3
        ([16], (200, 300)),  # a single level is plain roi_align
    ]
    for strides, image_hw in configs:
        for output_size in (7, 14, (5, 3)):
            for sampling_ratio in (-1, 0, 2):
                features = pyramid(rng, 2, int(rng.integers(1, 5)), image_hw, strides)
                # A wide range of box sizes so every level is used.
                rois = random_rois(rng, 30, 2, image_hw[1], image_hw[0])
                big = rng.uniform(100, 500, size=(6, 2)).astype(np.float32)
                rois[:6, 3:5] = rois[:6, 1:3] + big
                rois = sorted_by_image(rois)
                ref, scales, _ = multiscale_reference(features, rois, output_size, sampling_ratio, image_hw)
                assert scales == [1 / s for s in strides]
                ours = ops.multilevel_roi_align(features, rois, output_size, scales, sampling_ratio, threads=2)
                assert ours.shape == ref.shape
                err = float(np.abs(ours - ref).max())
                worst = max(worst, err)
                assert err <= TOL, f"max abs error {err:.3g} for strides {strides}, output {output_size}"
    print(f"multilevel_roi_align: max abs error vs MultiScaleRoIAlign {worst:.3g}")


def test_level_assignment_near_boundaries_matches_level_mapper():
    rois = boundary_rois()
    rng = np.random.default_rng(9)
    image_hw = (1024, 1024)
    features = pyramid(rng, 1, 2, image_hw, [4, 8, 16, 32])
    ref, scales, pool = multiscale_reference(features, rois, 7, 2, image_hw)
    expected = pool.map_levels([torch.from_numpy(rois[:, 1:])]).numpy()
    levels = ops.roi_levels(rois, scales)
    # torchvision's int64 cast of a NaN level is not a level index; ours says -1.
    valid = (expected >= 0) & (expected < 4)
    assert np.array_equal(levels[valid], expected[valid])
    assert np.all(levels[~valid] == -1) and int((~valid).sum()) == 1
    assert len(set(levels[valid].tolist())) == 4  # the boxes really span all levels
    ours = ops.multilevel_roi_align(features, rois, 7, scales, 2)
    assert float(np.abs(ours - ref).max()) <= TOL
    assert not ours[-1].any()


def test_level_assignment_custom_canonical():
    rng = np.random.default_rng(11)
    image_hw = (640, 640)
    features = pyramid(rng, 1, 3, image_hw, [4, 8, 16, 32])
    rois = boundary_rois()
    for canonical in ((112, 3), (300, 5)):
        ref, scales, pool = multiscale_reference(features, rois, 7, -1, image_hw, canonical)
        expected = pool.map_levels([torch.from_numpy(rois[:, 1:])]).numpy()
        valid = (expected >= 0) & (expected < 4)
        levels = ops.roi_levels(rois, scales, canonical_scale=canonical[0], canonical_level=canonical[1])
        assert np.array_equal(levels[valid], expected[valid])
        ours = ops.multilevel_roi_align(
            features, rois, 7, scales, -1, canonical_scale=canonical[0], canonical_level=canonical[1]
        )
        assert float(np.abs(ours - ref).max()) <= TOL


def test_multilevel_aligned_matches_per_level_roi_align():
    """MultiScaleRoIAlign has no `aligned`; compose the reference from torchvision's level rule
    and torchvision.ops.roi_align(aligned=True) on each level."""
    rng = np.random.default_rng(21)
    image_hw = (320, 256)
    strides = [4, 8, 16, 32]
    features = pyramid(rng, 2, 3, image_hw, strides)
    rois = sorted_by_image(random_rois(rng, 40, 2, image_hw[1], image_hw[0]))
    rois[:8, 3:5] = rois[:8, 1:3] + rng.uniform(150, 400, size=(8, 2)).astype(np.float32)
    _, scales, pool = multiscale_reference(features, rois, 7, -1, image_hw)
    levels = pool.map_levels([torch.from_numpy(rois[:, 1:])]).numpy()
    ref = np.zeros((rois.shape[0], 3, 7, 7), np.float32)
    for level, (f, s) in enumerate(zip(features, scales, strict=True)):
        idx = np.flatnonzero(levels == level)
        ref[idx] = tv_roi_align(torch.from_numpy(f), torch.from_numpy(rois[idx]), 7, s, -1, True).numpy()
    ours = ops.multilevel_roi_align(features, rois, 7, scales, -1, aligned=True)
    assert float(np.abs(ours - ref).max()) <= TOL


def test_multilevel_empty_rois():
    features = pyramid(np.random.default_rng(0), 2, 4, (64, 64), [4, 8, 16, 32])
    out = ops.multilevel_roi_align(features, np.zeros((0, 5), np.float32), (7, 7), [1 / 4, 1 / 8, 1 / 16, 1 / 32])
    assert out.shape == (0, 4, 7, 7)
    assert ops.roi_levels(np.zeros((0, 5), np.float32), [0.25, 0.125]).shape == (0,)


# ----------------------------------------------------------------------------------------------
# Bad input


FEATS = np.zeros((2, 3, 8, 8), np.float32)
ROIS = np.array([[0, 1, 1, 5, 5]], np.float32)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ops.roi_align(FEATS[0], ROIS, 7, 0.5), "features must have shape [N, C, H, W]; got shape (3, 8, 8)"),
        (
            lambda: ops.roi_align(FEATS.astype(np.complex64), ROIS, 7, 0.5),
            "features must be a float32 array (integer and float dtypes are converted); got dtype complex64",
        ),
        (
            lambda: ops.roi_align(FEATS, ROIS[:, :4], 7, 0.5),
            "rois must have shape [R, 5] (batch index, x0, y0, x1, y1); got shape (1, 4)",
        ),
        (
            lambda: ops.roi_align(FEATS, ROIS[0], 7, 0.5),
            "rois must have shape [R, 5] (batch index, x0, y0, x1, y1); got shape (5,)",
        ),
        (
            lambda: ops.roi_align(FEATS, np.array([[2, 1, 1, 5, 5]]), 7, 0.5),
            "rois[:, 0] must be batch indices in [0, 2) (the features' N); got 2.0 in row 0",
        ),
        (
            lambda: ops.roi_align(FEATS, ROIS, (7, 0), 0.5),
            "output_size must be positive; got (7, 0)",
        ),
        (
            lambda: ops.roi_align(FEATS, ROIS, 7.0, 0.5),  # type: ignore[arg-type]
            "output_size must be an int or (height, width) ints; got 7.0",
        ),
        (
            lambda: ops.roi_align(FEATS, ROIS, 7, 0.0),
            "spatial_scale must be positive and finite; got 0.0",
        ),
        (
            lambda: ops.roi_align(FEATS, ROIS, 7, 0.5, threads=-1),
            "threads must be an int >= 0 (0 = OpenMP's default); got -1",
        ),
        (
            lambda: ops.roi_align(FEATS, ROIS, 7, 0.5, sampling_ratio=1.5),  # type: ignore[arg-type]
            "sampling_ratio must be an int; got 1.5",
        ),
        (
            lambda: ops.multilevel_roi_align([FEATS, FEATS[:, :2]], ROIS, 7, [0.25, 0.125]),
            "features_list[1] has shape (2, 2, 8, 8), but every level must have the N and C of features_list[0] (2, 3)",
        ),
        (
            lambda: ops.multilevel_roi_align([FEATS, FEATS[0]], ROIS, 7, [0.25, 0.125]),
            "features_list[1] must have shape [N, C, H, W]; got shape (3, 8, 8)",
        ),
        (
            lambda: ops.multilevel_roi_align([FEATS, FEATS], ROIS, 7, [0.25]),
            "spatial_scales must have one entry per feature level (2); got 1",
        ),
        (
            lambda: ops.multilevel_roi_align([], ROIS, 7, []),
            "features_list must hold at least one [N, C, H, W] array; got an empty list",
        ),
        (
            lambda: ops.multilevel_roi_align(FEATS, ROIS, 7, [0.25]),  # type: ignore[arg-type]
            "features_list must be a list of [N, C, H, W] arrays, one per level",
        ),
        (
            lambda: ops.multilevel_roi_align([FEATS, FEATS], ROIS, 7, [0.25, 0.125], canonical_scale=0),
            "canonical_scale must be positive and finite; got 0",
        ),
        (
            lambda: ops.multilevel_roi_align([FEATS, FEATS], ROIS, 7, [0.25, 0.125], sampling="bilinear"),
            "sampling must be one of 'roi_align', 'crop_and_resize' (or its index); got 'bilinear'",
        ),
        (
            lambda: ops.multilevel_roi_align([FEATS, FEATS], ROIS, 7, [0.25, 0.125], sampling=2),
            "sampling must be one of 'roi_align', 'crop_and_resize' (or its index); got 2",
        ),
        (
            lambda: ops.multilevel_roi_align([FEATS, FEATS], ROIS, 7, [0.25, 0.125], level_rule=2),
            "image_area must be > 0 with level_rule 2 (matterport): the molded image's height * width in pixels; "
            "got 0.0",
        ),
        (
            lambda: ops.roi_levels(ROIS, [0.25, 0.125], level_rule=2, image_area=-1.0),
            "image_area must be a finite number >= 0; got -1.0",
        ),
        (
            lambda: ops.roi_levels(ROIS, [0.25, 0.125], level_rule=3),
            "level_rule must be 0 (torchvision), 1 (detectron) or 2 (matterport); got 3",
        ),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()


def test_missing_library_raises_backend_unavailable(monkeypatch):
    monkeypatch.setattr(ops, "_lib", None)
    monkeypatch.setattr(ops, "_candidates", lambda: [])
    with pytest.raises(BackendUnavailableError, match=re.escape("pip install -e .")):
        ops.roi_align(FEATS, ROIS, 7, 0.5)


# ----------------------------------------------------------------------------------------------
# sampling 1 (tf.image.crop_and_resize) and level_rule 2 (matterport's PyramidROIAlign)

P2_P5 = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "matterport"


def crop(features: list[np.ndarray], rois: np.ndarray, out_hw: tuple[int, int], threads: int = 2,
         image_area: float = MATTERPORT_AREA) -> np.ndarray:
    """The CPU build with matterport's attributes."""
    return ops.multilevel_roi_align(features, rois, out_hw, P2_P5[:len(features)], level_rule=2,
                                    sampling="crop_and_resize", image_area=image_area, threads=threads)


def conventions_pyramid(features: list[np.ndarray], boxes: np.ndarray, batch: np.ndarray, size: int,
                        image_area: float = MATTERPORT_AREA) -> np.ndarray:
    """conventions.pyramid_roi_align (one image, [C, H, W] levels, (y1, x1, y2, x2) boxes) per image."""
    out = np.zeros((len(boxes), features[0].shape[1], size, size), np.float32)
    for b in range(features[0].shape[0]):
        ix = np.flatnonzero(batch == b)
        out[ix] = conventions.pyramid_roi_align([torch.from_numpy(f[b]) for f in features],
                                                torch.from_numpy(boxes[ix]), size, image_area).numpy()
    return out


def tf_crop_and_resize(plane: np.ndarray, box: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """TF's CropAndResizePerBox for one [H, W] plane and normalised (y1, x1, y2, x2) box, restated
    in numpy float32 scalars (any output size; the n == 1 centre in double as TF's 0.5 literal)."""
    f32 = np.float32
    hf, wf = plane.shape

    def coord(a0: np.float32, a1: np.float32, size: int, n: int, i: int) -> np.float32:
        if n > 1:
            step = (a1 - a0) * f32(size - 1) / f32(n - 1)
            return f32(a0 * f32(size - 1) + f32(i) * step)
        return f32(0.5 * float(f32(a0 + a1)) * float(size - 1))

    y1, x1, y2, x2 = (f32(v) for v in box)
    out = np.zeros(out_hw, np.float32)
    for i in range(out_hw[0]):
        y = coord(y1, y2, hf, out_hw[0], i)
        if not (0 <= y <= hf - 1):
            continue
        for j in range(out_hw[1]):
            x = coord(x1, x2, wf, out_hw[1], j)
            if not (0 <= x <= wf - 1):
                continue
            t, b, left, right = math.floor(y), math.ceil(y), math.floor(x), math.ceil(x)
            ly, lx = f32(y - f32(t)), f32(x - f32(left))
            top = plane[t, left] + (plane[t, right] - plane[t, left]) * lx
            bottom = plane[b, left] + (plane[b, right] - plane[b, left]) * lx
            out[i, j] = top + (bottom - top) * ly
    return out


def test_crop_and_resize_is_conventions_bit_for_bit():
    """One level (no level rule at work): every box kind, inside, straddling and wholly outside
    the map, on maps down to 1 pixel a side, equals conventions.crop_and_resize exactly."""
    rng = np.random.default_rng(23)
    rows = 0
    for hw in ((9, 13), (32, 32), (1, 7), (6, 1), (1, 1)):
        features = rng.standard_normal((2, 3, *hw)).astype(np.float32)
        boxes = random_norm_boxes(rng, 150)
        batch = rng.integers(0, 2, len(boxes))
        for size in (7, 14, 2, 3):
            ours = ops.multilevel_roi_align([features], yx_to_rois(boxes, batch), size, [0.25],
                                            sampling="crop_and_resize", level_rule=2, image_area=MATTERPORT_AREA)
            for b in range(2):
                ix = np.flatnonzero(batch == b)
                ref = conventions.crop_and_resize(torch.from_numpy(features[b]), torch.from_numpy(boxes[ix]), size)
                np.testing.assert_array_equal(ours[ix], ref.numpy())
            rows += len(boxes)
    assert rows == 5 * 4 * 150


def test_crop_and_resize_samples_the_box_corners():
    """Corner-aligned: the first and last samples sit on the box edges; outside the map 0."""
    plane = np.arange(5 * 9, dtype=np.float32).reshape(1, 1, 5, 9)  # f(y, x) = 9y + x
    rois = np.array([[0, 0, 0, 1, 1], [0, 0.25, 0.5, 0.75, 1.0], [0, -0.5, 0, 1, 1]], np.float32)
    out = ops.multilevel_roi_align([plane], rois, (3, 5), [1.0], sampling=1, level_rule=2, image_area=MATTERPORT_AREA)
    np.testing.assert_array_equal(out[0, 0], [[0, 2, 4, 6, 8], [18, 20, 22, 24, 26], [36, 38, 40, 42, 44]])
    # y from 2 to 4, x from 2 to 6: bilinear of a linear map is exact
    np.testing.assert_array_equal(out[1, 0], [[20, 21, 22, 23, 24], [29, 30, 31, 32, 33], [38, 39, 40, 41, 42]])
    # x from -4 to 8: the samples at x = -4 and -1 are off the map
    np.testing.assert_array_equal(out[2, 0, 0], [0, 0, 2, 5, 8])


def test_crop_and_resize_of_any_output_size_is_tf():
    """Non-square outputs and outputs one cell wide or high (TF's centre branch, in double), which
    conventions (square, > 1) does not cover, against TF's loop restated in numpy scalars."""
    rng = np.random.default_rng(5)
    features = rng.standard_normal((1, 2, 11, 7)).astype(np.float32)
    boxes = random_norm_boxes(rng, 40)
    for out_hw in ((1, 1), (1, 4), (5, 1), (3, 2), (2, 9)):
        ours = ops.multilevel_roi_align([features], yx_to_rois(boxes), out_hw, [0.25], sampling=1, level_rule=2,
                                        image_area=MATTERPORT_AREA)
        for r, box in enumerate(boxes):
            for c in range(2):
                np.testing.assert_array_equal(ours[r, c], tf_crop_and_resize(features[0, c], box, out_hw))


def test_crop_and_resize_of_fp16_features_through_the_op():
    """An fp16 file: the CPU kernel adaptor reads half features exactly as float and rounds the
    output to nearest, as the plugin's half kernel does."""
    rng = np.random.default_rng(8)
    features = pyramid(rng, 2, 3, (64, 64), [4, 8, 16, 32])
    half = [f.astype(np.float16) for f in features]
    boxes = np.concatenate([random_norm_boxes(rng, 80), matterport_boundary_boxes()])
    batch = rng.integers(0, 2, len(boxes))
    attrs = MULTILEVEL_ROI_ALIGN.node_attributes(output_height=14, output_width=14, sampling=1, level_rule=2,
                                                 image_area=MATTERPORT_AREA)
    (out,) = MULTILEVEL_ROI_ALIGN.kernel(attrs, [yx_to_rois(boxes, batch), *half], 2)
    assert out.dtype == np.float16
    ref = conventions_pyramid([h.astype(np.float32) for h in half], boxes, batch, 14)
    np.testing.assert_array_equal(out, ref.astype(np.float16))


def test_matterport_pyramid_is_conventions_bit_for_bit():
    """Four levels, matterport's level rule and crop_and_resize, two images, the boxes at the
    level boundaries: conventions.pyramid_roi_align exactly, for both head sizes and threads."""
    rng = np.random.default_rng(2)
    features = pyramid(rng, 2, 4, (512, 512), [4, 8, 16, 32])
    boxes = np.concatenate([random_norm_boxes(rng, 400), matterport_boundary_boxes()])
    batch = rng.integers(0, 2, len(boxes))
    levels = conventions.roi_levels(torch.from_numpy(boxes), MATTERPORT_AREA).numpy()
    assert set(levels.tolist()) == {2, 3, 4, 5}
    for size in (7, 14):
        ref = conventions_pyramid(features, boxes, batch, size)
        np.testing.assert_array_equal(crop(features, yx_to_rois(boxes, batch), (size, size), threads=2), ref)
        np.testing.assert_array_equal(crop(features, yx_to_rois(boxes, batch), (size, size), threads=1), ref)


def test_matterport_levels_are_conventions():
    """roi_levels with level_rule 2 = conventions.roi_levels (the level, 2..5, minus 2) on random
    boxes, on the level boundaries, for several image areas; halves round to even (an exact
    -1.5 term gives level 2, not 3); zero, empty, negative-area and NaN boxes go to level 2."""
    rng = np.random.default_rng(4)
    boxes = np.concatenate([random_norm_boxes(rng, 5000), matterport_boundary_boxes()])
    for area in (MATTERPORT_AREA, 1024.0 * 1024.0, 640.0 * 800.0, 64.0 * 64.0):
        ours = ops.roi_levels(yx_to_rois(boxes), P2_P5, level_rule=2, image_area=area)
        ref = conventions.roi_levels(torch.from_numpy(boxes), area).numpy()
        np.testing.assert_array_equal(ours + 2, ref)
    # the exact halves: the term is -1.5 to the last bit (as conventions computes it) ...
    h = torch.from_numpy(EXACT_HALF_BOXES[:, 2])
    w = torch.from_numpy(EXACT_HALF_BOXES[:, 3])
    term = torch.log(torch.sqrt(h * w) / (224.0 / torch.sqrt(torch.tensor(MATTERPORT_AREA)))) / math.log(2.0)
    assert term.tolist() == [-1.5] * len(EXACT_HALF_BOXES)
    # ... rounds to -2 (level 2), and a box a little wider rounds to -1 (level 3)
    wider = EXACT_HALF_BOXES.copy()
    wider[:, 3] = np.nextafter(wider[:, 3], np.float32(1)) * np.float32(1 + 1e-6)
    assert ops.roi_levels(yx_to_rois(EXACT_HALF_BOXES), P2_P5, level_rule=2, image_area=MATTERPORT_AREA).tolist() \
        == [0, 0, 0]
    assert ops.roi_levels(yx_to_rois(wider), P2_P5, level_rule=2, image_area=MATTERPORT_AREA).tolist() == [1, 1, 1]
    odd = np.array([[0, 0, 0, 0, 0], [0, 0.2, 0.2, 0.2, 0.9], [0, 0.5, 0.5, 0.4, 0.7], [0, np.nan, 0, 0.5, 0.5],
                    [0, 0, 0, np.inf, np.inf], [0, 0, 0, 1e-30, 1e-30]], np.float32)
    assert ops.roi_levels(odd, P2_P5, level_rule=2, image_area=MATTERPORT_AREA).tolist() == [0, 0, 0, 0, 3, 0]
    # canonical_scale, canonical_level and the scales are the op's: a 3-level pyramid from 1/8
    lv = ops.roi_levels(yx_to_rois(boxes), [1 / 8, 1 / 16, 1 / 32], canonical_scale=112.0, canonical_level=3,
                        level_rule=2, image_area=MATTERPORT_AREA)
    t = torch.from_numpy(boxes)
    side = torch.sqrt((t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1]))
    term = torch.log(side / (torch.tensor(112.0) / torch.sqrt(torch.tensor(MATTERPORT_AREA)))) / math.log(2.0)
    k = torch.where(side > 0, 3 + torch.round(term.nan_to_num(-1e9)).clamp(-100, 100), torch.tensor(3.0))
    np.testing.assert_array_equal(lv, (k.clamp(3, 5) - 3).to(torch.int64).numpy())


def test_matterport_pyramid_on_case_a_boxes():
    """matterport's own RPN RoIs and detections of case A (../shared/matterport), pooled from
    random P2-P5 of its shapes (64 channels, 128..16 pixels): the levels and the pooled values
    equal conventions'."""
    if not (SHARED / "outputs_caseA.npz").is_file():
        pytest.skip(f"matterport reference data not found at {SHARED} (a plain clone has no ../shared)")
    ref = np.load(SHARED / "outputs_caseA.npz")
    area = float(ref["image_meta"][4] * ref["image_meta"][5])
    assert area == MATTERPORT_AREA
    rng = np.random.default_rng(0)
    features = [rng.standard_normal((1, 64, 512 // s, 512 // s)).astype(np.float32) for s in (4, 8, 16, 32)]
    for boxes, size in ((ref["rpn_rois_norm"], 7), (ref["detections_raw_norm"][:, :4].copy(), 14)):
        boxes = np.ascontiguousarray(boxes, dtype=np.float32)
        levels = ops.roi_levels(yx_to_rois(boxes), P2_P5, level_rule=2, image_area=area)
        np.testing.assert_array_equal(levels + 2, conventions.roi_levels(torch.from_numpy(boxes), area).numpy())
        assert len(set(levels.tolist())) >= 2
        np.testing.assert_array_equal(crop(features, yx_to_rois(boxes), (size, size)),
                                      conventions_pyramid(features, boxes, np.zeros(len(boxes)), size))


def test_torch_stand_in_is_the_cpu_build():
    """The converters' eager stand-in of the op (what the exported graph is checked against
    before ONNX exists) gives the CPU build's floats for crop_and_resize, any output size."""
    rng = np.random.default_rng(12)
    for features, rois, out_hw in crop_and_resize_cases(rng)[::3]:
        ours = ops.multilevel_roi_align(features, rois, out_hw, P2_P5, level_rule=2, sampling=1,
                                        image_area=MATTERPORT_AREA)
        stand_in = torch_ops.multilevel_roi_align(
            torch.from_numpy(rois), [torch.from_numpy(f) for f in features], output_height=out_hw[0],
            output_width=out_hw[1], level_rule=2, sampling=1, image_area=MATTERPORT_AREA)
        np.testing.assert_array_equal(stand_in.numpy(), ours)


PAIRING_WHY = ("plugin libraries from before sampling 1 drop the attribute unread and would run RoIAlign on the "
               "normalised rois without an error; they refuse level_rule 2, so the pairing makes them fail instead")


@pytest.mark.parametrize("rule", [0, 1])
def test_crop_and_resize_is_refused_without_the_matterport_rule(rule: int):
    """sampling 1 only with level_rule 2 (an old plugin library drops sampling but refuses
    level_rule 2): the API, the node check (converters' stand-in) and the CPU backend's kernel
    of a hand-edited node all refuse another pairing, naming both attributes and why."""
    feats = pyramid(np.random.default_rng(1), 1, 2, (32, 32), [4, 8])
    rois = np.array([[0, 0.1, 0.1, 0.5, 0.6]], np.float32)
    with pytest.raises(ValueError) as err:
        ops.multilevel_roi_align(feats, rois, 7, [0.25, 0.125], level_rule=rule, sampling="crop_and_resize",
                                 image_area=MATTERPORT_AREA)
    assert str(err.value) == (f"sampling 'crop_and_resize' (1) requires level_rule 2 (matterport); got level_rule "
                              f"{rule}: {PAIRING_WHY}")
    node = (f"MultiLevelRoIAlign: sampling 1 (crop_and_resize) requires level_rule 2 (matterport), got level_rule "
            f"{rule}: {PAIRING_WHY}")
    with pytest.raises(ValueError) as err:
        torch_ops.multilevel_roi_align(torch.from_numpy(rois), [torch.from_numpy(f) for f in feats],
                                       spatial_scales=[0.25, 0.125], level_rule=rule, sampling=1)
    assert str(err.value) == node
    hand_edited = {"spatial_scales": [0.25, 0.125], "level_rule": rule, "sampling": 1, "plugin_version": "1"}
    with pytest.raises(ValueError) as err:
        MULTILEVEL_ROI_ALIGN.kernel(hand_edited, [rois, *feats], 1)
    assert str(err.value) == node
    # level_rule 2 with the default sampling stays allowed (old libraries refuse it anyway)
    assert MULTILEVEL_ROI_ALIGN.node_attributes(level_rule=2, image_area=4096.0)["level_rule"] == 2


@pytest.mark.parametrize(("edit", "message"), [
    ({"sampling": 5}, "sampling must be one of 0, 1, got 5"),
    ({"sampling": -1}, "sampling must be one of 0, 1, got -1"),
    ({"level_rule": 7}, "level_rule must be one of 0, 1, 2, got 7"),
    ({"aligned": 2}, "aligned must be one of 0, 1, got 2"),
    ({"output_height": 0}, "output_height must be >= 1, got 0"),
])
def test_hand_edited_node_out_of_range_is_a_typed_error(edit: dict, message: str):
    """A node edited by hand with a value out of its range: the CPU backend's kernel gives the
    node check's ValueError (not an IndexError from the names tables)."""
    feats = pyramid(np.random.default_rng(1), 1, 2, (32, 32), [4, 8])
    rois = np.array([[0, 1, 1, 20, 24]], np.float32)
    attrs = {**MULTILEVEL_ROI_ALIGN.node_attributes(spatial_scales=[0.25, 0.125]), **edit}
    with pytest.raises(ValueError) as err:
        MULTILEVEL_ROI_ALIGN.kernel(attrs, [rois, *feats], 1)
    assert str(err.value) == f"MultiLevelRoIAlign: {message}"


def test_torch_stand_in_levels_are_the_cpu_build():
    rng = np.random.default_rng(12)
    boxes = np.concatenate([random_norm_boxes(rng, 3000), matterport_boundary_boxes()])
    rois = yx_to_rois(boxes)
    for area in (MATTERPORT_AREA, 1024.0 * 1024.0):
        stand_in = torch_ops._level_of(torch.from_numpy(rois), P2_P5, 224.0, 4, 2, area)
        np.testing.assert_array_equal(stand_in.numpy(), ops.roi_levels(rois, P2_P5, level_rule=2, image_area=area))


def test_optional_attributes_are_written_only_when_set():
    """sampling and image_area at their defaults are not written to the node (graphs that do not
    use them stay byte-identical, and older plugin libraries still load them); the CPU kernel
    adaptor takes a node without them as the defaults."""
    import onnx

    from edgeseg.converters.onnx_export import trace_to_onnx

    class Pool(torch.nn.Module):
        def __init__(self, **attrs: object) -> None:
            super().__init__()
            self.attrs = attrs

        def forward(self, rois: torch.Tensor, p2: torch.Tensor, p3: torch.Tensor) -> torch.Tensor:
            return torch_ops.multilevel_roi_align(rois, [p2, p3], spatial_scales=[0.25, 0.125], **self.attrs)

    rng = np.random.default_rng(0)
    p2, p3 = (torch.from_numpy(f) for f in pyramid(rng, 1, 2, (64, 64), [4, 8]))
    rois = torch.tensor([[0, 0.1, 0.2, 0.6, 0.9]])
    names = {}
    for key, attrs in (("default", {}), ("matterport", {"sampling": 1, "level_rule": 2, "image_area": 4096.0})):
        model = trace_to_onnx(Pool(**attrs), (rois, p2, p3), ["rois", "p2", "p3"], ["pooled"])
        (node,) = [n for n in model.graph.node if n.op_type == "MultiLevelRoIAlign"]
        names[key] = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert "sampling" not in names["default"] and "image_area" not in names["default"]
    assert names["default"]["level_rule"] == 0
    assert (names["matterport"]["sampling"], names["matterport"]["level_rule"]) == (1, 2)
    assert names["matterport"]["image_area"] == 4096.0
    written = {k: v.decode() if isinstance(v, bytes) else v for k, v in names["default"].items()}
    (out,) = MULTILEVEL_ROI_ALIGN.kernel(written, [rois.numpy(), p2.numpy(), p3.numpy()], 1)
    np.testing.assert_array_equal(out, ops.multilevel_roi_align([p2.numpy(), p3.numpy()], rois.numpy(), 7,
                                                                [0.25, 0.125], 2))


def test_sampling_and_level_rule_names():
    path = Path(__file__).resolve().parents[1] / "plugins" / "multilevel_roi_align" / "op.json"
    spec = {a["name"]: a for a in json.loads(path.read_text())["attributes"]}
    assert tuple(spec["sampling"]["names"]) == ROI_SAMPLINGS == ("roi_align", "crop_and_resize")
    assert tuple(spec["level_rule"]["names"]) == LEVEL_RULES == ("torchvision", "detectron", "matterport")
    rois = np.array([[0, 0.1, 0.1, 0.5, 0.6]], np.float32)
    feats = pyramid(np.random.default_rng(1), 1, 2, (32, 32), [4, 8])
    np.testing.assert_array_equal(ops.multilevel_roi_align(feats, rois, 7, [0.25, 0.125], sampling=1, level_rule=2,
                                                           image_area=MATTERPORT_AREA),
                                  ops.multilevel_roi_align(feats, rois, 7, [0.25, 0.125], sampling="crop_and_resize",
                                                           level_rule=2, image_area=MATTERPORT_AREA))


def test_torch_stand_in_refuses_the_matterport_rule_without_image_area():
    feats = [torch.zeros((1, 1, 8, 8)), torch.zeros((1, 1, 4, 4))]
    with pytest.raises(ValueError) as err:
        torch_ops.multilevel_roi_align(torch.zeros((1, 5)), feats, spatial_scales=[0.25, 0.125], level_rule=2)
    assert str(err.value) == ("MultiLevelRoIAlign: image_area must be > 0 with level_rule 2 (matterport): the molded "
                              "image's height * width in pixels; got 0.0")


# The CUDA kernel's element path (roi_level, then crop_and_resize_element or roi_align_element,
# as pooled_element in roi_align_kernel.cu) compiled for the host: the CPU build arranges the same
# math differently (tap tables, channel blocks), so this pins the kernel's functions to it on a
# machine without a GPU.
ELEMENTS_CPP = r"""
#include <stdio.h>
#include <vector>
#include "multilevel_roi_align/roi_align_math.h"
namespace ra = edgeseg::roi_align;
int main(int argc, char** argv) {
  FILE* in = fopen(argv[1], "rb");
  int32_t hdr[9];
  float fhdr[2];
  if (!in || fread(hdr, 4, 9, in) != 9 || fread(fhdr, 4, 2, in) != 2) return 2;
  const int L = hdr[0], N = hdr[1], C = hdr[2], R = hdr[3], oh = hdr[4], ow = hdr[5];
  std::vector<int32_t> H(L), W(L);
  std::vector<float> scales(L), rois(5 * R);
  if (fread(H.data(), 4, L, in) != (size_t)L || fread(W.data(), 4, L, in) != (size_t)L ||
      fread(scales.data(), 4, L, in) != (size_t)L || fread(rois.data(), 4, 5 * R, in) != (size_t)(5 * R)) return 2;
  std::vector<std::vector<float>> f(L);
  for (int l = 0; l < L; ++l) {
    f[l].resize((size_t)N * C * H[l] * W[l]);
    if (fread(f[l].data(), 4, f[l].size(), in) != f[l].size()) return 2;
  }
  const int k_min = ra::level_exponent(scales[0]), k_max = ra::level_exponent(scales[L - 1]);
  std::vector<float> out((size_t)R * C * oh * ow);
  size_t i = 0;
  for (int r = 0; r < R; ++r) {
    const float* roi = &rois[5 * r];
    const int level = ra::roi_level(roi, L, k_min, k_max, fhdr[0], hdr[8], hdr[6], fhdr[1]);
    for (int c = 0; c < C; ++c)
      for (int y = 0; y < oh; ++y)
        for (int x = 0; x < ow; ++x, ++i) {
          if (level < 0) { out[i] = 0.0f; continue; }
          out[i] = hdr[7] == ra::kSamplingCropAndResize
              ? ra::crop_and_resize_element(f[level].data(), N, C, H[level], W[level], roi, oh, ow, c, y, x)
              : ra::roi_align_element(f[level].data(), N, C, H[level], W[level], roi, scales[level], oh, ow, 2,
                                      false, c, y, x);
        }
  }
  FILE* o = fopen(argv[2], "wb");
  return (o && fwrite(out.data(), 4, out.size(), o) == out.size() && fclose(o) == 0) ? 0 : 2;
}
"""


def test_kernel_element_path_is_the_cpu_build(tmp_path: Path):
    import shutil
    import subprocess

    if shutil.which("g++") is None:
        pytest.skip("g++ not found")
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "elements.cpp"
    src.write_text(ELEMENTS_CPP)
    exe = tmp_path / "elements"
    proc = subprocess.run(["g++", "-std=c++17", "-O1", "-ffp-contract=off", f"-I{root / 'plugins'}", str(src), "-o",
                           str(exe)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    rng = np.random.default_rng(31)
    for k, (features, rois, out_hw) in enumerate(crop_and_resize_cases(rng)[::2]):
        for rule, sampling, r in ((2, 1, rois), (0, 0, rois * np.array([1, 300, 300, 300, 300], np.float32))):
            n, c = features[0].shape[:2]
            path = tmp_path / f"in{k}_{rule}.bin"
            with path.open("wb") as f:
                np.array([len(features), n, c, len(r), *out_hw, rule, sampling, 4], np.int32).tofile(f)
                np.array([224.0, MATTERPORT_AREA], np.float32).tofile(f)
                np.array([x.shape[2] for x in features], np.int32).tofile(f)
                np.array([x.shape[3] for x in features], np.int32).tofile(f)
                np.array(P2_P5, np.float32).tofile(f)
                r.astype(np.float32).tofile(f)
                for x in features:
                    x.tofile(f)
            out = tmp_path / "out.bin"
            run = subprocess.run([str(exe), str(path), str(out)], capture_output=True, text=True, check=False)
            assert run.returncode == 0, run.stderr
            got = np.fromfile(out, np.float32).reshape(len(r), c, *out_hw)
            want = ops.multilevel_roi_align(features, r, out_hw, P2_P5, 2, level_rule=rule, sampling=sampling,
                                            image_area=MATTERPORT_AREA)
            np.testing.assert_array_equal(got, want)
