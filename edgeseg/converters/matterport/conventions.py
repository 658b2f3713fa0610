"""matterport's inference conventions, one small function each (read in ``mrcnn/model.py``,
``mrcnn/utils.py`` at master ``3deaec5``; ``../shared/matterport/README.md`` lists each with its
source). They are the eager reference that the graph is compared against, so each keeps
matterport's dtype and order of operations where a rounding or truncation depends on it.

Coordinates: boxes are (y1, x1, y2, x2) as in matterport. "Normalised" boxes use matterport's
``norm_boxes``: ``(b - [0, 0, 1, 1]) / [H-1, W-1, H-1, W-1]``, so a pixel box with exclusive ends
maps to a box whose y2/x2 is the last pixel's index over size - 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------
# input: resize, pad, mean


def square_scale(h: int, w: int, min_dim: int, max_dim: int, min_scale: float = 0) -> float:
    """``utils.resize_image`` "square" scale: only enlarges to reach *min_dim* on the short side,
    then caps the long side at *max_dim* (tested with Python's round, halves to even)."""
    scale = max(1.0, min_dim / min(h, w)) if min_dim else 1.0
    if min_scale and scale < min_scale:
        scale = float(min_scale)
    if round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)
    return scale


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """``(round(h * scale), round(w * scale))`` with Python's round (halves to even)."""
    return round(h * scale), round(w * scale)


def _zoom_taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per output index: the lower input index and the two linear weights of
    ``scipy.ndimage.zoom(grid_mode=True)``: sample ``(i + 0.5) * n_in / n_out - 0.5``, float64,
    computed in scipy's order."""
    zoom = n_in / n_out
    cc = (torch.arange(n_out, dtype=torch.float64) + 0.5) * zoom - 0.5
    start = torch.floor(cc)
    t = cc - start
    return start.long(), 1.0 - t, t


def zoom_linear(image: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """skimage's ``resize(order=1, mode='constant', cval=0, anti_aliasing=False, clip=True)``
    over the first two axes of a float64 [H, W] or [H, W, C] tensor: scipy's grid-mode linear
    zoom (half-pixel centres) where neighbours outside the image are 0, so borders are pulled
    towards 0 on upsampling; then clipped to the input's range widened to 0 where 0 is reached.
    The four taps are summed as scipy sums them, so the float64 result is bit-identical."""
    x = image.to(torch.float64)
    h, w = x.shape[0], x.shape[1]
    y0, wy0, wy1 = _zoom_taps(h, out_h)
    x0, wx0, wx1 = _zoom_taps(w, out_w)
    padded = torch.zeros((h + 2, w + 2, *x.shape[2:]), dtype=torch.float64)
    padded[1:-1, 1:-1] = x
    yi0, yi1 = (y0 + 1).clamp(0, h + 1), (y0 + 2).clamp(0, h + 1)
    xi0, xi1 = (x0 + 1).clamp(0, w + 1), (x0 + 2).clamp(0, w + 1)
    extra = (None,) * (x.ndim - 2)

    def tap(yi: torch.Tensor, xi: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor) -> torch.Tensor:
        return padded[yi[:, None], xi[None, :]] * wy[(slice(None), None, *extra)] * wx[(None, slice(None), *extra)]

    out = tap(yi0, xi0, wy0, wx0) + tap(yi0, xi1, wy0, wx1)
    out = out + tap(yi1, xi0, wy1, wx0)
    out = out + tap(yi1, xi1, wy1, wx1)
    lo, hi = float(x.min()), float(x.max())
    # skimage widens the clip range to cval (0) only when 0 lies outside the input range and
    # inside the output's
    if (lo > 0.0 or hi < 0.0) and float(out.min()) <= 0.0 <= float(out.max()):
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    return out.clamp(lo, hi)


def mold_image(image: np.ndarray, min_dim: int, max_dim: int, min_scale: float,
               mean_pixel: Sequence[float]) -> tuple[np.ndarray, tuple[int, int, int, int], float]:
    """``MaskRCNN.mold_inputs`` for one RGB uint8 [H, W, 3] image in "square" mode: the zoom
    (float64), zero padding to [max_dim, max_dim] with the odd row/column at the bottom/right,
    ``astype(uint8)`` (truncation), then ``- MEAN_PIXEL`` in float64 cast to float32 (what Keras
    feeds). Returns (molded float32 [D, D, 3], window (y1, x1, y2, x2) molded pixels, scale)."""
    h, w = image.shape[:2]
    scale = square_scale(h, w, min_dim, max_dim, min_scale)
    img = image
    if scale != 1:
        nh, nw = scaled_size(h, w, scale)
        img = zoom_linear(torch.from_numpy(np.ascontiguousarray(image)), nh, nw).numpy()
    nh, nw = img.shape[:2]
    top, left = (max_dim - nh) // 2, (max_dim - nw) // 2
    padded = np.zeros((max_dim, max_dim, img.shape[2]), dtype=img.dtype)
    padded[top:top + nh, left:left + nw] = img
    molded = (padded.astype(np.uint8).astype(np.float32) - np.asarray(mean_pixel, dtype=np.float64)).astype(np.float32)
    return molded, (top, left, top + nh, left + nw), scale


def norm_boxes(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``utils.norm_boxes``: pixel boxes (exclusive y2/x2) -> normalised float32, computed in float64."""
    h, w = shape
    return ((np.asarray(boxes) - np.array([0, 0, 1, 1])) / np.array([h - 1, w - 1, h - 1, w - 1])).astype(np.float32)


def denorm_boxes(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``utils.denorm_boxes``: normalised float32 -> int32 pixels, ``np.around`` (halves to even)
    of the float64 product, + 1 on y2/x2."""
    h, w = shape
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    return np.around(np.multiply(boxes, scale) + np.array([0, 0, 1, 1])).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# anchors and boxes


def level_anchors(scale: float, ratios: Sequence[float], shape: tuple[int, int], feature_stride: int,
                  anchor_stride: int) -> np.ndarray:
    """``utils.generate_anchors`` for one level: pixel boxes (y1, x1, y2, x2), float64, centred on
    ``(y * feature_stride, x * feature_stride)`` with no half-cell offset; ratio = width/height.
    Row order: y, then x, then ratio."""
    r = np.asarray(ratios, dtype=np.float64)
    heights, widths = scale / np.sqrt(r), scale * np.sqrt(r)
    ys = np.arange(0, shape[0], anchor_stride) * feature_stride
    xs = np.arange(0, shape[1], anchor_stride) * feature_stride
    cy = np.broadcast_to(ys[:, None, None], (len(ys), len(xs), len(r))).reshape(-1)
    cx = np.broadcast_to(xs[None, :, None], (len(ys), len(xs), len(r))).reshape(-1)
    hh = np.broadcast_to(heights[None, None, :], (len(ys), len(xs), len(r))).reshape(-1)
    ww = np.broadcast_to(widths[None, None, :], (len(ys), len(xs), len(r))).reshape(-1)
    return np.stack([cy - 0.5 * hh, cx - 0.5 * ww, cy + 0.5 * hh, cx + 0.5 * ww], axis=1)


def pyramid_anchors(scales: Sequence[float], ratios: Sequence[float], shapes: Sequence[tuple[int, int]],
                    strides: Sequence[int], anchor_stride: int, image_hw: tuple[int, int]) -> np.ndarray:
    """``MaskRCNN.get_anchors``: every level's anchors (P2 first), normalised, float32."""
    a = np.concatenate([level_anchors(s, ratios, sh, st, anchor_stride)
                        for s, sh, st in zip(scales, shapes, strides, strict=True)])
    return norm_boxes(a, image_hw)


def apply_box_deltas(boxes: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """``apply_box_deltas_graph`` in float32: (dy, dx, log dh, log dw) on (y1, x1, y2, x2), no +1;
    the new y2 is y1 + height (not centre + height/2)."""
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    cy = boxes[:, 0] + 0.5 * height
    cx = boxes[:, 1] + 0.5 * width
    cy = cy + deltas[:, 0] * height
    cx = cx + deltas[:, 1] * width
    height = height * torch.exp(deltas[:, 2])
    width = width * torch.exp(deltas[:, 3])
    y1 = cy - 0.5 * height
    x1 = cx - 0.5 * width
    return torch.stack([y1, x1, y1 + height, x1 + width], dim=1)


def clip_boxes(boxes: torch.Tensor, window: Sequence[float]) -> torch.Tensor:
    """``clip_boxes_graph``: each coordinate into the window (y1, x1, y2, x2), min then max."""
    wy1, wx1, wy2, wx2 = (torch.tensor(v, dtype=boxes.dtype) for v in window)
    y1 = torch.maximum(torch.minimum(boxes[:, 0], wy2), wy1)
    x1 = torch.maximum(torch.minimum(boxes[:, 1], wx2), wx1)
    y2 = torch.maximum(torch.minimum(boxes[:, 2], wy2), wy1)
    x2 = torch.maximum(torch.minimum(boxes[:, 3], wx2), wx1)
    return torch.stack([y1, x1, y2, x2], dim=1)


def tf_iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """TensorFlow's NMS IoU (``non_max_suppression_op.cc``) of one box against many, float32:
    corners sorted per box, IoU 0 when either area is <= 0."""
    def corners(b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (torch.minimum(b[..., 0], b[..., 2]), torch.minimum(b[..., 1], b[..., 3]),
                torch.maximum(b[..., 0], b[..., 2]), torch.maximum(b[..., 1], b[..., 3]))

    ay1, ax1, ay2, ax2 = corners(box)
    by1, bx1, by2, bx2 = corners(boxes)
    area_a = (ay2 - ay1) * (ax2 - ax1)
    area_b = (by2 - by1) * (bx2 - bx1)
    ih = torch.clamp(torch.minimum(ay2, by2) - torch.maximum(ay1, by1), min=0.0)
    iw = torch.clamp(torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1), min=0.0)
    inter = ih * iw
    iou = inter / (area_a + area_b - inter)
    return torch.where((area_a <= 0) | (area_b <= 0), torch.zeros_like(iou), iou)


def nms(boxes: torch.Tensor, scores: torch.Tensor, max_out: int, threshold: float) -> torch.Tensor:
    """``tf.image.non_max_suppression``: greedy over scores descending (ties: lower index first),
    a box is suppressed when its IoU with a kept box is > *threshold*; at most *max_out* kept.
    Returns the kept indices in selection order."""
    order = torch.sort(scores, descending=True, stable=True).indices
    kept: list[int] = []
    kept_boxes = boxes.new_zeros((0, 4))
    for i in order.tolist():
        if len(kept) >= max_out:
            break
        if kept and bool((tf_iou(boxes[i], kept_boxes) > threshold).any()):
            continue
        kept.append(i)
        kept_boxes = torch.cat([kept_boxes, boxes[i:i + 1]])
    return torch.tensor(kept, dtype=torch.long)


# ---------------------------------------------------------------------------------------------
# RoI pooling


def roi_levels(boxes: torch.Tensor, image_area: float) -> torch.Tensor:
    """``PyramidROIAlign``'s level rule, float32: ``min(5, max(2, 4 + round(log2(sqrt(h*w) /
    (224 / sqrt(area))))))`` on normalised sides h, w, with round halves to even; *image_area*
    is the molded H*W in pixels. A zero box (log2(0) = -inf) lands on level 2."""
    h = boxes[:, 2] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 1]
    area = torch.tensor(image_area, dtype=torch.float32)
    term = torch.log(torch.sqrt(h * w) / (224.0 / torch.sqrt(area))) / math.log(2.0)
    term = torch.nan_to_num(term, nan=float("-inf"))
    return torch.clamp(4 + torch.round(term).clamp(-100, 100).to(torch.int64), 2, 5)


def crop_and_resize(feature: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``tf.image.crop_and_resize(feature, boxes, size, 'bilinear', extrapolation_value=0)`` for
    one image, float32: [C, H, W] and normalised (y1, x1, y2, x2) -> [R, C, size, size]. Sample j
    lies at ``y1*(H-1) + j*((y2-y1)*(H-1)/(size-1))`` (corner-aligned: the first and last
    samples on the box edges), one bilinear sample per cell; a sample outside [0, H-1] is 0."""
    fh, fw = feature.shape[1], feature.shape[2]
    j = torch.arange(size, dtype=torch.float32)

    def coords(a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
        step = (b - a) * (n - 1) / (size - 1)
        return a[:, None] * (n - 1) + j[None, :] * step[:, None]

    ys = coords(boxes[:, 0], boxes[:, 2], fh)
    xs = coords(boxes[:, 1], boxes[:, 3], fw)
    y_ok = (ys >= 0) & (ys <= fh - 1)
    x_ok = (xs >= 0) & (xs <= fw - 1)
    top = torch.floor(ys).clamp(0, fh - 1).long()
    bottom = torch.ceil(ys).clamp(0, fh - 1).long()
    left = torch.floor(xs).clamp(0, fw - 1).long()
    right = torch.ceil(xs).clamp(0, fw - 1).long()
    y_lerp = (ys - torch.floor(ys))[:, None, :, None]
    x_lerp = (xs - torch.floor(xs))[:, None, None, :]

    def at(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:  # -> [R, C, size, size]
        return feature[:, yi[:, :, None], xi[:, None, :]].permute(1, 0, 2, 3)

    tl, tr, bl, br = at(top, left), at(top, right), at(bottom, left), at(bottom, right)
    t = tl + (tr - tl) * x_lerp
    b = bl + (br - bl) * x_lerp
    out = t + (b - t) * y_lerp
    ok = (y_ok[:, :, None] & x_ok[:, None, :])[:, None]
    return torch.where(ok, out, torch.zeros_like(out))


def pyramid_roi_align(features: Sequence[torch.Tensor], boxes: torch.Tensor, size: int,
                      image_area: float) -> torch.Tensor:
    """``PyramidROIAlign``: each normalised box pooled on its level (P2-P5) by
    :func:`crop_and_resize`, results in the boxes' order. *features*: [C, H, W] per level."""
    levels = roi_levels(boxes, image_area)
    out = boxes.new_zeros((boxes.shape[0], features[0].shape[0], size, size))
    for level in range(2, 6):
        ix = torch.nonzero(levels == level).flatten()
        if len(ix):
            out[ix] = crop_and_resize(features[level - 2], boxes[ix], size)
    return out


# ---------------------------------------------------------------------------------------------
# detections back to the image


def unmold_boxes(boxes: np.ndarray, window: tuple[int, int, int, int], molded_hw: tuple[int, int],
                 image_hw: tuple[int, int]) -> np.ndarray:
    """``unmold_detections``'s box step: normalised float32 boxes in the molded image -> int32
    pixel boxes of the original image (exclusive y2/x2), in matterport's float32 / float64 mix."""
    wy1, wx1, wy2, wx2 = norm_boxes(np.asarray(window), molded_hw)
    shift = np.array([wy1, wx1, wy1, wx1])
    wh, ww = wy2 - wy1, wx2 - wx1
    scale = np.array([wh, ww, wh, ww])
    return denorm_boxes(np.divide(np.asarray(boxes, dtype=np.float32) - shift, scale), image_hw)


def paste_mask(mask: np.ndarray, box: Sequence[int], image_hw: tuple[int, int]) -> np.ndarray:
    """``utils.unmold_mask``: a float32 [28, 28] sigmoid mask zoomed to the box's size by
    :func:`zoom_linear` (zero-bordered linear zoom, the result stored as float32), ``>= 0.5``,
    pasted at [y1:y2, x1:x2] of a zero bool [H, W]."""
    y1, x1, y2, x2 = (int(v) for v in box)
    out = np.zeros(image_hw, dtype=bool)
    zoomed = zoom_linear(torch.from_numpy(np.asarray(mask, dtype=np.float32)), y2 - y1, x2 - x1)
    out[y1:y2, x1:x2] = zoomed.to(torch.float32).numpy() >= 0.5
    return out
