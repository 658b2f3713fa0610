"""edgeseg.ops.paste_masks (CPU build of PasteMasks) against torchvision's
paste_masks_in_image (mode "torchvision"), a grid_sample reference (mode "continuous") and
skimage's resize as matterport's unmold_mask calls it (mode "zoom"), with matterport's own pasted
masks from ../shared/matterport where that is present."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import paste_masks_in_image

from edgeseg import ops
from edgeseg.converters.maskrcnn import ops as graph_ops
from edgeseg.converters.matterport import conventions
from edgeseg.custom_ops import PASTE_MASKS, PASTE_MODES, packed_mask_width, unpack_mask_bytes
from tests.op_cases import FRAMES, random_boxes, zoom_boxes, zoom_masks, zoom_paste_cases

MATTERPORT = Path(__file__).resolve().parents[2] / "shared" / "matterport"

MIN_AGREEMENT = 0.9999


def torchvision_reference(masks: np.ndarray, boxes: np.ndarray, frame_hw: tuple[int, int], threshold: float):
    """paste_masks_in_image(...) > threshold, one mask at a time.

    torchvision raises for some boxes wholly outside the frame (its slice bounds go negative and
    wrap); those planes are expected empty, and the count is returned so the test can check them.
    """
    out = np.zeros((masks.shape[0], *frame_hw), dtype=np.uint8)
    raised = []
    for i in range(masks.shape[0]):
        try:
            pasted = paste_masks_in_image(
                torch.from_numpy(masks[i : i + 1, None]), torch.from_numpy(boxes[i : i + 1]), frame_hw
            )
        except RuntimeError:
            raised.append(i)
            continue
        out[i] = (pasted[0, 0] > threshold).numpy()
    return out, raised


def continuous_reference(
    masks: np.ndarray, boxes: np.ndarray, frame_hw: tuple[int, int], threshold: float, logits: bool = False
) -> np.ndarray:
    """Detectron2's _do_paste_mask semantics over the whole frame, written out:

    The box (x0, y0, x1, y1) is continuous (frame pixels, no rounding). Every frame pixel (x, y)
    is sampled at its centre (x + 0.5, y + 0.5), which maps to normalised mask coordinates
    gx = (x + 0.5 - x0) / (x1 - x0) * 2 - 1 and gy = (y + 0.5 - y0) / (y1 - y0) * 2 - 1
    (-1 and +1 are the box edges). The M x M mask (after a sigmoid when it holds logits) is read
    there with grid_sample(mode="bilinear", align_corners=False, padding_mode="zeros"), i.e.
    mask sample j is centred at box-relative position (j + 0.5) / M and samples beyond the mask
    are 0. The pixel is foreground iff the value is >= threshold.
    """
    fh, fw = frame_hw
    k = masks.shape[0]
    m = torch.from_numpy(masks)[:, None]
    if logits:
        m = torch.sigmoid(m)
    b = torch.from_numpy(boxes)
    xs = torch.arange(fw, dtype=torch.float32) + 0.5
    ys = torch.arange(fh, dtype=torch.float32) + 0.5
    gx = (xs[None, :] - b[:, 0:1]) / (b[:, 2:3] - b[:, 0:1]) * 2 - 1  # [K, W]
    gy = (ys[None, :] - b[:, 1:2]) / (b[:, 3:4] - b[:, 1:2]) * 2 - 1  # [K, H]
    grid = torch.stack([gx[:, None, :].expand(k, fh, fw), gy[:, :, None].expand(k, fh, fw)], dim=3)
    value = F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
    return (value >= threshold).numpy().astype(np.uint8)


def agreement(ours: np.ndarray, ref: np.ndarray) -> tuple[float, int, int]:
    assert ours.shape == ref.shape and ours.dtype == np.uint8
    mismatched = int((ours != ref).sum())
    total = max(int(ref.size), 1)
    return 1.0 - mismatched / total, mismatched, total


def test_torchvision_mode_matches_paste_masks_in_image():
    rng = np.random.default_rng(2024)
    mismatched = total = raised_total = 0
    for case in range(48):
        frame_hw = FRAMES[case % len(FRAMES)]
        k = int(rng.integers(0, 51)) if case % 8 else 0
        m = int(rng.choice([1, 2, 7, 14, 28]))
        masks = rng.random((k, m, m)).astype(np.float32)
        boxes = random_boxes(rng, k, frame_hw)
        ours = ops.paste_masks(masks, boxes, frame_hw, threads=2)
        ref, raised = torchvision_reference(masks, boxes, frame_hw, 0.5)
        assert ours.shape == (k, *frame_hw)
        if raised:  # only boxes wholly outside the frame make torchvision raise
            assert not ours[raised].any()
            raised_total += len(raised)
        _, bad, size = agreement(ours, ref)
        mismatched += bad
        total += size
    fraction = mismatched / total
    assert 1.0 - fraction >= MIN_AGREEMENT, f"mismatch fraction {fraction:.3g} ({mismatched} of {total} pixels)"
    print(f"torchvision mode: mismatch fraction {fraction:.3g} ({mismatched} of {total} pixels); "
          f"{raised_total} wholly-outside boxes made torchvision raise")


def test_torchvision_mode_other_thresholds():
    rng = np.random.default_rng(5)
    frame_hw = (90, 70)
    masks = rng.random((30, 14, 14)).astype(np.float32)
    boxes = random_boxes(rng, 30, frame_hw)
    for threshold in (0.0, 0.25, 0.9):
        ours = ops.paste_masks(masks, boxes, frame_hw, threshold=threshold)
        ref, _ = torchvision_reference(masks, boxes, frame_hw, threshold)
        ratio, bad, size = agreement(ours, ref)
        assert ratio >= MIN_AGREEMENT, f"threshold {threshold}: mismatch fraction {bad / size:.3g}"


def test_logits_equal_probabilities_with_sigmoid_first():
    rng = np.random.default_rng(8)
    frame_hw = (111, 97)
    logits = (rng.standard_normal((40, 28, 28)) * 4).astype(np.float32)
    probs = torch.sigmoid(torch.from_numpy(logits)).numpy()
    boxes = random_boxes(rng, 40, frame_hw)
    for mode in PASTE_MODES:
        from_logits = ops.paste_masks(logits, boxes, frame_hw, mode=mode, logits=True)
        from_probs = ops.paste_masks(probs, boxes, frame_hw, mode=mode)
        ratio, bad, size = agreement(from_logits, from_probs)
        assert ratio >= MIN_AGREEMENT, f"{mode}: mismatch fraction {bad / size:.3g}"
    ref, _ = torchvision_reference(probs, boxes, frame_hw, 0.5)
    ratio, bad, size = agreement(ops.paste_masks(logits, boxes, frame_hw, logits=True), ref)
    assert ratio >= MIN_AGREEMENT, f"logits vs torchvision: mismatch fraction {bad / size:.3g}"


def test_continuous_mode_matches_grid_sample_reference():
    rng = np.random.default_rng(77)
    mismatched = total = 0
    for case in range(36):
        frame_hw = FRAMES[case % len(FRAMES)]
        k = int(rng.integers(0, 51)) if case % 9 else 0
        m = int(rng.choice([1, 2, 7, 14, 28]))
        logits = bool(case % 2)
        masks = (rng.standard_normal((k, m, m)) * 3).astype(np.float32)
        if not logits:
            masks = torch.sigmoid(torch.from_numpy(masks)).numpy()
        boxes = random_boxes(rng, k, frame_hw)
        threshold = float(rng.choice([0.5, 0.5, 0.3, 0.8, 0.05]))
        ours = ops.paste_masks(masks, boxes, frame_hw, mode="continuous", threshold=threshold, logits=logits)
        ref = continuous_reference(masks, boxes, frame_hw, threshold, logits)
        _, bad, size = agreement(ours, ref)
        mismatched += bad
        total += size
    fraction = mismatched / total
    assert 1.0 - fraction >= MIN_AGREEMENT, f"mismatch fraction {fraction:.3g} ({mismatched} of {total} pixels)"
    print(f"continuous mode: mismatch fraction {fraction:.3g} ({mismatched} of {total} pixels)")


def test_per_pixel_function_equals_fast_path():
    """The CPU fast path hoists taps out of its loops; paste_pixel() (what the CUDA kernel calls
    per pixel) must give the same bytes."""
    rng = np.random.default_rng(3)
    frame_hw = (150, 170)
    masks = (rng.standard_normal((40, 28, 28)) * 3).astype(np.float32)
    boxes = random_boxes(rng, 40, frame_hw)
    for mode in PASTE_MODES:
        for logits in (False, True):
            fast = ops._paste_masks(masks, boxes, frame_hw, mode, 0.5, logits, 2, per_pixel=False)
            slow = ops._paste_masks(masks, boxes, frame_hw, mode, 0.5, logits, 2, per_pixel=True)
            assert np.array_equal(fast, slow)


def test_threshold_comparison_is_strict_for_torchvision_and_inclusive_for_continuous():
    masks = np.full((1, 2, 2), 0.5, dtype=np.float32)
    # torchvision: box (1, 1, 2.5, 2.5) grows to integer box [0, 3] = 4 = M + 2 pixels, so the
    # bordered mask is copied unscaled and pixels 1..2 hold exactly 0.5.
    box = np.array([[1, 1, 2.5, 2.5]], np.float32)
    ref, _ = torchvision_reference(masks, box, (4, 4), 0.5)
    assert not ref.any()
    assert not ops.paste_masks(masks, box, (4, 4), threshold=0.5).any()  # 0.5 > 0.5 is false
    assert ops.paste_masks(masks, box, (4, 4), threshold=0.4999)[0, 1:3, 1:3].all()
    # continuous: box (0, 0, 2, 2) in a 2 x 2 frame puts pixel centres on sample centres.
    box = np.array([[0, 0, 2, 2]], np.float32)
    assert ops.paste_masks(masks, box, (2, 2), mode="continuous", threshold=0.5).all()  # 0.5 >= 0.5
    assert continuous_reference(masks, box, (2, 2), 0.5).all()


def test_only_box_regions_are_foreground_in_large_frame():
    masks = np.ones((3, 28, 28), dtype=np.float32)
    boxes = np.array([[100, 200, 140, 260], [1000, 500, 1001, 501], [5000, 5000, 6000, 6000]], np.float32)
    frame_hw = (1080, 1920)
    for mode in ("torchvision", "continuous"):
        out = ops.paste_masks(masks, boxes, frame_hw, mode=mode)
        assert out.shape == (3, *frame_hw)
        ys, xs = np.nonzero(out[0])
        # The grown torchvision box reaches about one pixel beyond the box.
        assert xs.min() >= 99 and xs.max() <= 141 and ys.min() >= 199 and ys.max() <= 261
        assert out[1].sum() <= 9 and not out[2].any()  # a 1 x 1 box covers at most 3 x 3 pixels
    ref, _ = torchvision_reference(masks, boxes, frame_hw, 0.5)
    assert np.array_equal(ops.paste_masks(masks, boxes, frame_hw), ref)


def test_empty_k():
    for mode in PASTE_MODES:
        out = ops.paste_masks(np.zeros((0, 28, 28), np.float32), np.zeros((0, 4), np.float32), (13, 17), mode=mode)
        assert out.shape == (0, 13, 17) and out.dtype == np.uint8


MASKS = np.zeros((2, 28, 28), np.float32)
BOXES = np.zeros((2, 4), np.float32)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: ops.paste_masks(MASKS[0], BOXES, (10, 10)),
            "masks must have shape [K, M, M] with M >= 1; got shape (28, 28)",
        ),
        (
            lambda: ops.paste_masks(MASKS[:, :, :14], BOXES, (10, 10)),
            "masks must have shape [K, M, M] with M >= 1; got shape (2, 28, 14)",
        ),
        (
            lambda: ops.paste_masks(MASKS.astype(bool), BOXES, (10, 10)),
            "masks must be a float32 array (integer and float dtypes are converted); got dtype bool",
        ),
        (
            lambda: ops.paste_masks(MASKS, BOXES[:1], (10, 10)),
            "boxes must have shape [K, 4] (x0, y0, x1, y1) with K = 2 (one per mask); got shape (1, 4)",
        ),
        (
            lambda: ops.paste_masks(MASKS, BOXES.T, (10, 10)),
            "boxes must have shape [K, 4] (x0, y0, x1, y1) with K = 2 (one per mask); got shape (4, 2)",
        ),
        (
            lambda: ops.paste_masks(MASKS, BOXES.astype(np.complex64), (10, 10)),
            "boxes must be a float32 array (integer and float dtypes are converted); got dtype complex64",
        ),
        (
            lambda: ops.paste_masks(MASKS, BOXES, (10, 0)),
            "frame_hw must be (height, width) with positive ints; got (10, 0)",
        ),
        (
            lambda: ops.paste_masks(MASKS, BOXES, (10,)),
            "frame_hw must be (height, width) with positive ints; got (10,)",
        ),
        (
            lambda: ops.paste_masks(MASKS, BOXES, (10.0, 10)),  # type: ignore[arg-type]
            "frame_hw must be (height, width) with positive ints; got (10.0, 10)",
        ),
        (
            lambda: ops.paste_masks(MASKS, BOXES, (10, 10), mode="nearest"),
            "mode must be one of 'torchvision', 'continuous', 'zoom'; got 'nearest'",
        ),
        (
            lambda: ops.paste_masks(MASKS, BOXES, (10, 10), threshold=float("nan")),
            "threshold must be a finite float; got nan",
        ),
        (
            lambda: ops.paste_masks(MASKS, BOXES, (10, 10), threads=1.0),  # type: ignore[arg-type]
            "threads must be an int >= 0 (0 = OpenMP's default); got 1.0",
        ),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()


@pytest.mark.parametrize("frame_w", [600, 602, 1])
def test_custom_node_output_is_the_mask_bytes_packed_in_int32(frame_w: int) -> None:
    """The ONNX node's output (what the TensorRT plugin also writes): int32 words of four mask bytes,
    pasted at the width rounded up to 4; unpacked and cut to the frame, the frame-width paste."""
    from edgeseg.custom_ops import PASTE_MASKS, packed_mask_width, unpack_mask_bytes

    rng = np.random.default_rng(frame_w)
    masks = rng.random((5, 28, 28), dtype=np.float32)
    boxes = np.array([[0, 0, frame_w, 30], [frame_w - 1, 5, frame_w + 20, 25], [3, 3, 9, 9],
                      [-4, -4, 2, 2], [0.5, 1.5, frame_w * 0.7, 20]], np.float32)
    attrs = {**PASTE_MASKS.defaults, "height": 32, "width": packed_mask_width(frame_w)}
    (words,) = PASTE_MASKS.kernel(attrs, [masks, boxes], 1)
    assert words.dtype == np.int32 and words.shape == (5, 32, packed_mask_width(frame_w) // 4)
    expected = ops.paste_masks(masks, boxes, (32, frame_w))
    np.testing.assert_array_equal(unpack_mask_bytes(words, frame_w), expected)
    # uint8 outputs of files written before the packing pass through
    assert unpack_mask_bytes(expected, frame_w) is expected


def test_count_pastes_only_the_detected_rows() -> None:
    """PasteMasks' third input (num_detections): rows from it on are not pasted; count is clamped
    to [0, K] as the CUDA kernel clamps it. Through the custom node's kernel too."""
    from edgeseg.custom_ops import PASTE_MASKS, unpack_mask_bytes

    rng = np.random.default_rng(5)
    masks = rng.random((6, 28, 28), dtype=np.float32)
    boxes = np.array([[i * 8, 2, i * 8 + 20, 30] for i in range(6)], np.float32)
    every = ops.paste_masks(masks, boxes, (40, 64))
    assert all(plane.any() for plane in every)
    for count, live in ((3, 3), (0, 0), (-2, 0), (6, 6), (50, 6)):
        out = ops.paste_masks(masks, boxes, (40, 64), count=count)
        np.testing.assert_array_equal(out[:live], every[:live])
        assert not out[live:].any()
    attrs = {**PASTE_MASKS.defaults, "height": 40, "width": 64}
    (words,) = PASTE_MASKS.kernel(attrs, [masks, boxes, np.array([2], np.int32)], 1)
    np.testing.assert_array_equal(unpack_mask_bytes(words, 64)[:2], every[:2])
    assert not words[2:].any()
    with pytest.raises(ValueError, match=r"^count must be an int or None; got 2\.0$"):
        ops.paste_masks(masks, boxes, (40, 64), count=2.0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# mode "zoom" (matterport's utils.unmold_mask)


def skimage_zoom_reference(masks: np.ndarray, boxes: np.ndarray, frame_hw: tuple[int, int],
                           threshold: float = 0.5) -> np.ndarray:
    """matterport's unmold_mask per mask, at boxes (x0, y0, x1, y1) that may leave the frame:
    ``skimage.transform.resize(mask, (y1 - y0, x1 - x0), order=1, mode="constant",
    anti_aliasing=False) >= threshold`` (float32 masks stay float32), placed at (y0, x0) and
    cut to the frame; empty boxes paste nothing."""
    from skimage.transform import resize

    h, w = frame_hw
    out = np.zeros((len(masks), h, w), np.uint8)
    for i, (mask, box) in enumerate(zip(masks, boxes, strict=True)):
        x0, y0, x1, y1 = (int(v) for v in np.rint(box))
        if x1 <= x0 or y1 <= y0:
            continue
        zoomed = resize(mask, (y1 - y0, x1 - x0), order=1, mode="constant", anti_aliasing=False)
        assert zoomed.dtype == np.float32
        xb, xe, yb, ye = max(x0, 0), min(x1, w), max(y0, 0), min(y1, h)
        if xb < xe and yb < ye:
            out[i, yb:ye, xb:xe] = zoomed[yb - y0:ye - y0, xb - x0:xe - x0] >= threshold
    return out


def stand_in(masks: np.ndarray, boxes: np.ndarray, frame_hw: tuple[int, int], threshold: float = 0.5,
             count: int | None = None, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """The torch stand-in of the graph op (what tracing and eager graph tests run), unpacked."""
    h, w = frame_hw
    live = len(masks) if count is None else count
    words = graph_ops.paste_masks(torch.from_numpy(masks).to(dtype), torch.from_numpy(boxes),
                                  torch.tensor([live], dtype=torch.int32), height=h, width=packed_mask_width(w),
                                  threshold=threshold, mode=PASTE_MODES.index("zoom"))
    return unpack_mask_bytes(words.numpy(), w)


def test_zoom_mode_matches_skimage_resize() -> None:
    """Every pixel: up- and downsampling, 1-pixel, empty and partly or wholly outside boxes, masks
    all >= 0.5 and constant at the threshold, mask sides 1 to 28; the one-pixel function (the
    CUDA kernel's) and the torch stand-in give the same bytes."""
    pasted = 0
    for masks, boxes, frame_hw, threshold in zoom_paste_cases(np.random.default_rng(23)):
        want = skimage_zoom_reference(masks, boxes, frame_hw, threshold)
        got = ops.paste_masks(masks, boxes, frame_hw, mode="zoom", threshold=threshold)
        np.testing.assert_array_equal(got, want, err_msg=f"{frame_hw} threshold {threshold}")
        slow = ops._paste_masks(masks, boxes, frame_hw, "zoom", threshold, False, 2, per_pixel=True)
        np.testing.assert_array_equal(slow, want)
        np.testing.assert_array_equal(stand_in(masks, boxes, frame_hw, threshold), want)
        pasted += int(want.sum())
    assert pasted > 10_000  # the cases paste something


def test_zoom_mode_matches_matterport_conventions() -> None:
    """conventions.paste_mask (the eager rebuild's unmold_mask, boxes (y1, x1, y2, x2) inside the
    image) on a large frame: 28 x 28 upsampled to hundreds of pixels, and downsampled."""
    rng = np.random.default_rng(5)
    frame_hw = (300, 420)
    masks = zoom_masks(rng, 24, 28)
    x0, y0 = rng.integers(0, 400, 24), rng.integers(0, 280, 24)
    x1 = np.minimum(x0 + rng.integers(1, 300, 24), 420)
    y1 = np.minimum(y0 + rng.integers(1, 300, 24), 300)
    x1[::3] = np.minimum(x0[::3] + rng.integers(1, 20, 8), 420)  # fewer pixels than samples
    boxes = np.stack([x0, y0, x1, y1], 1).astype(np.float32)
    got = ops.paste_masks(masks, boxes, frame_hw, mode="zoom")
    for i in range(24):
        want = conventions.paste_mask(masks[i], (int(y0[i]), int(x0[i]), int(y1[i]), int(x1[i])), frame_hw)
        np.testing.assert_array_equal(got[i].astype(bool), want, err_msg=f"mask {i}")


def test_zoom_clip_to_the_mask_range_keeps_a_mask_above_threshold_whole() -> None:
    """All samples >= 0.5: the zero border pulls the box's edge pixels below 0.5 (0.6 becomes
    0.6 * 0.75 * 0.75 = 0.3375 at a corner when the box is twice the mask), skimage's clip to the
    mask's own minimum brings them back, so the whole box is foreground."""
    from skimage.transform import resize

    masks = np.full((1, 28, 28), 0.6, np.float32)
    masks[0, 10:20, 10:20] = 0.9
    box = np.array([[5, 7, 61, 63]], np.float32)  # 56 x 56 = twice the mask
    unclipped = resize(masks[0], (56, 56), order=1, mode="constant", anti_aliasing=False, clip=False)
    assert unclipped[0, 0] == np.float32(0.6 * 0.75 * 0.75) and (unclipped < 0.5).sum() > 100
    out = ops.paste_masks(masks, box, (70, 80), mode="zoom")
    assert int(out.sum()) == 56 * 56 and out[0, 7:63, 5:61].all()
    np.testing.assert_array_equal(stand_in(masks, box, (70, 80)), out)


def test_zoom_threshold_is_inclusive_and_boxes_are_rounded() -> None:
    """``>= threshold``: a constant 0.5 mask pastes its whole box at 0.5, nothing at 0.5 + 1 ulp.
    Box edges are rounded half to even (rintf), like matterport's integer boxes."""
    masks = np.full((1, 28, 28), 0.5, np.float32)
    box = np.array([[2, 3, 10, 9]], np.float32)
    assert int(ops.paste_masks(masks, box, (16, 16), mode="zoom").sum()) == 8 * 6
    above = float(np.nextafter(np.float32(0.5), np.float32(1)))
    assert not ops.paste_masks(masks, box, (16, 16), mode="zoom", threshold=above).any()
    rounded = ops.paste_masks(masks, np.array([[1.5, 2.5, 10.4, 8.6]], np.float32), (16, 16), mode="zoom")
    even = ops.paste_masks(masks, np.array([[2, 2, 10, 9]], np.float32), (16, 16), mode="zoom")
    np.testing.assert_array_equal(rounded, even)


def test_zoom_fp16_masks_are_widened() -> None:
    """FP16 masks (an FP16 graph) give what their float32 widening gives: through ops.paste_masks,
    the ONNX Runtime kernel of the custom node and the torch stand-in."""
    rng = np.random.default_rng(16)
    frame_hw = (97, 131)
    half = zoom_masks(rng, 12, 28).astype(np.float16)
    boxes = zoom_boxes(rng, 12, frame_hw)
    want = skimage_zoom_reference(half.astype(np.float32), boxes, frame_hw)
    assert want.any()
    np.testing.assert_array_equal(ops.paste_masks(half, boxes, frame_hw, mode="zoom"), want)
    attrs = {**PASTE_MASKS.defaults, "height": 97, "width": packed_mask_width(131), "mode": PASTE_MODES.index("zoom")}
    (words,) = PASTE_MASKS.kernel(attrs, [half, boxes, np.array([12], np.int32)], 1)
    np.testing.assert_array_equal(unpack_mask_bytes(words, 131), want)
    np.testing.assert_array_equal(stand_in(half.astype(np.float32), boxes, frame_hw, dtype=torch.float16), want)


def test_zoom_pastes_only_the_first_count_masks() -> None:
    rng = np.random.default_rng(9)
    frame_hw = (64, 80)
    masks = zoom_masks(rng, 8, 28)
    boxes = np.array([[i * 9, 3, i * 9 + 30, 40] for i in range(8)], np.float32)
    every = ops.paste_masks(masks, boxes, frame_hw, mode="zoom")
    assert all(plane.any() for plane in every)
    for count in (0, 3, 8):
        want = every.copy()
        want[count:] = 0
        np.testing.assert_array_equal(ops.paste_masks(masks, boxes, frame_hw, mode="zoom", count=count), want)
        np.testing.assert_array_equal(stand_in(masks, boxes, frame_hw, count=count), want)


@pytest.mark.skipif(not (MATTERPORT / "outputs_caseA.npz").is_file(),
                    reason=f"matterport reference data not found at {MATTERPORT} (a plain clone has no ../shared)")
def test_zoom_reproduces_matterports_pasted_masks_of_case_a() -> None:
    """matterport's detect() on case A: its sigmoid masks (mrcnn_mask_det) pasted at its rois
    ((y1, x1, y2, x2) image pixels, exclusive ends) give its 100 masks, every pixel."""
    ref = np.load(MATTERPORT / "outputs_caseA.npz")
    n, h, w = (int(v) for v in ref["masks_shape"])
    want = np.unpackbits(ref["masks_packbits"], axis=-1)[..., :w]
    boxes = ref["rois"].astype(np.float32)[:, [1, 0, 3, 2]]
    got = ops.paste_masks(ref["mrcnn_mask_det"], boxes, (h, w), mode="zoom")
    assert n == 100 and got.shape == want.shape
    differ = [i for i in range(n) if not np.array_equal(got[i], want[i])]
    assert not differ, f"{len(differ)} of {n} masks differ: {differ}"
    np.testing.assert_array_equal(stand_in(ref["mrcnn_mask_det"], boxes, (h, w)), want)


def test_zoom_non_finite_and_absurd_boxes() -> None:
    """NaN / infinite boxes paste nothing; edges beyond +-2^29 are clamped there (sizes stay ints),
    in the CPU build and the torch stand-in alike."""
    masks = np.full((4, 28, 28), 0.7, np.float32)
    boxes = np.array([[np.nan, 0, 10, 10], [0, 0, np.inf, 10], [-1e12, -1e12, 1e12, 1e12], [-3e9, 5, 40, 30]],
                     np.float32)
    out = ops.paste_masks(masks, boxes, (40, 52), mode="zoom")
    assert not out[:2].any() and out[2].all()  # a constant mask clips to itself everywhere
    assert int(out[3].sum()) == 40 * 25 and out[3, 5:30, :40].all()
    np.testing.assert_array_equal(stand_in(masks, boxes, (40, 52)), out)


@pytest.mark.parametrize(("mode", "message"), [
    (3, "PasteMasks: mode must be one of 0, 1, 2, got 3"),
    (-1, "PasteMasks: mode must be one of 0, 1, 2, got -1"),
])
def test_hand_edited_mode_out_of_range_is_a_typed_error(mode: int, message: str) -> None:
    """A node edited by hand with a mode out of range: the CPU backend's kernel gives the node
    check's ValueError, not an IndexError from PASTE_MODES (mode -1 would even pick "zoom")."""
    from edgeseg.custom_ops import PASTE_MASKS

    masks = np.full((1, 28, 28), 0.9, np.float32)
    boxes = np.array([[2, 2, 20, 20]], np.float32)
    attrs = {**PASTE_MASKS.node_attributes(height=32, width=32), "mode": mode}
    with pytest.raises(ValueError) as err:
        PASTE_MASKS.kernel(attrs, [masks, boxes], 1)
    assert str(err.value) == message


# zoom_taps.h and mode 2's PasteBox compiled for the host: for (M, size, index) per line, the
# box's zoom factor, zoom_tap_at with it (what the kernel and CPU build call per pixel) and
# zoom_tap (one division per call, what ZoomLinear calls), as exact hex doubles.
ZOOM_TAPS_CPP = r"""
#include <cstdio>
#include "paste_masks/paste_masks_math.h"
int main() {
  int m, size, i;
  while (std::scanf("%d %d %d", &m, &size, &i) == 3) {
    const float box[4] = {3.0f, 5.0f, 3.0f + size, 5.0f + 2 * size};
    const edgeseg::paste_masks::PasteBox p = edgeseg::paste_masks::make_paste_box(box, m, 4096, 4096, 2);
    const edgeseg::ZoomTap at = edgeseg::paste_masks::zoom_axis_tap(p, 0, 3 + i);
    const edgeseg::ZoomTap tap = edgeseg::zoom_tap(i, m, size);
    std::printf("%a %a %d %a %a %d %a %a\n", p.zoom_x, p.zoom_y, at.lo, at.w_lo, at.w_hi, tap.lo, tap.w_lo,
                tap.w_hi);
  }
  return 0;
}
"""


def test_zoom_factor_once_per_box_is_scipy_bit_for_bit(tmp_path: Path) -> None:
    """PasteBox's zoom factors (one double division per box) and zoom_tap_at give scipy's
    coordinate (i + 0.5) * (M / size) - 0.5 in double to the last bit, as zoom_tap does."""
    import shutil
    import subprocess

    if shutil.which("g++") is None:
        pytest.skip("g++ not found")
    root = Path(__file__).resolve().parents[1]
    src, exe = tmp_path / "taps.cpp", tmp_path / "taps"
    src.write_text(ZOOM_TAPS_CPP)
    proc = subprocess.run(["g++", "-std=c++17", "-O1", "-ffp-contract=off", f"-I{root / 'plugins'}", str(src), "-o",
                           str(exe)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    rng = np.random.default_rng(3)
    cases = [(m, size, int(i)) for m in (28, 14, 7) for size in (1, 3, 28, 29, 97, 1000)
             for i in {0, size - 1, *rng.integers(0, size, 4).tolist()}]
    run = subprocess.run([str(exe)], input="".join(f"{m} {s} {i}\n" for m, s, i in cases), capture_output=True,
                         text=True, check=True)
    lines = run.stdout.splitlines()
    assert len(lines) == len(cases)
    for (m, size, i), line in zip(cases, lines, strict=True):
        zx, zy, lo, w_lo, w_hi, tap_lo, tap_w_lo, tap_w_hi = line.split()
        zoom = np.float64(m) / np.float64(size)
        u = (np.float64(i) + 0.5) * zoom - 0.5
        t = u - np.floor(u)
        assert float.fromhex(zx) == zoom and float.fromhex(zy) == np.float64(m) / np.float64(2 * size)
        assert (int(lo), float.fromhex(w_lo), float.fromhex(w_hi)) == (int(np.floor(u)), 1.0 - t, t)
        assert (int(tap_lo), float.fromhex(tap_w_lo), float.fromhex(tap_w_hi)) == (int(np.floor(u)), 1.0 - t, t)


def test_zoom_skips_nan_samples_in_the_clip_range_like_skimage() -> None:
    """NaN samples do not count for the clip range (skimage's nanmin / nanmax), wherever they
    lie: inside, at sample (0, 0) (which once seeded the range, and a NaN there unclipped the whole
    mask), at the last sample, and an all-NaN mask (nothing pasted). The pixels that read a NaN
    are background (NaN >= 0.5 is false). The CPU build, the one-pixel function (the CUDA
    kernel's) and the torch stand-in all equal skimage, every pixel."""
    rng = np.random.default_rng(9)
    masks = np.full((6, 28, 28), 0.6, np.float32)  # clipped to 0.6, the box is whole but for the NaNs
    masks[0, 5, 5] = np.nan
    masks[1, 0, 0] = np.nan
    masks[2, 27, 27] = np.nan
    masks[3] = np.nan
    masks[4] = rng.random((28, 28), dtype=np.float32)
    masks[4][rng.random((28, 28)) < 0.05] = np.nan
    masks[4, 0, 0] = np.nan
    masks[5, 0, 0] = np.nan
    masks[5, 1:, 1:] = 0.4  # below threshold: the clip's max (0.6, from row / column 0) matters
    boxes = np.array([[0, 0, 56, 56], [3, 2, 59, 58], [1, 1, 15, 20], [0, 0, 40, 40], [4, 6, 90, 70],
                      [2, 2, 30, 30]], np.float32)
    frame_hw = (72, 96)
    want = skimage_zoom_reference(masks, boxes, frame_hw)
    assert want[3].sum() == 0 and want[1].sum() > 56 * 56 - 16  # (0, 0)'s NaN reaches only its 4 x 4 pixels
    got = ops.paste_masks(masks, boxes, frame_hw, mode="zoom")
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ops._paste_masks(masks, boxes, frame_hw, "zoom", 0.5, False, 2, per_pixel=True),
                                  want)
    np.testing.assert_array_equal(stand_in(masks, boxes, frame_hw), want)
