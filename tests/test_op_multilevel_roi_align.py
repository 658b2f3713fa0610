"""edgeseg.ops.roi_align / multilevel_roi_align (CPU build of MultiLevelRoIAlign) against
torchvision.ops.roi_align and torchvision.ops.MultiScaleRoIAlign."""

from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import roi_align as tv_roi_align

from edgeseg import ops
from edgeseg.errors import BackendUnavailableError
from tests.op_cases import (
    EDGE_ROIS,
    OUTPUT_SIZES,
    SCALES,
    boundary_rois,
    pyramid,
    random_roi_align_cases,
    random_rois,
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
