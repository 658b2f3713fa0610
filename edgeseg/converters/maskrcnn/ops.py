"""PyTorch stand-ins for the graph's special nodes.

Each is an autograd Function whose ``forward`` computes the op in eager PyTorch (with
torchvision's own kernels, so the export wrapper can be checked against torchvision before any
ONNX is written) and whose ``symbolic`` emits the ONNX node:

- :func:`multilevel_roi_align` -> custom node ``edgeseg.MultiLevelRoIAlign`` (its
  ``crop_and_resize`` sampling and ``matterport`` level rule computed in torch as
  ``edgeseg.converters.matterport.conventions`` does, in the same float32 order)
- :func:`paste_masks` -> custom node ``edgeseg.PasteMasks``
- :func:`zoom_linear` -> custom node ``edgeseg.ZoomLinear`` (its forward is float64 torch, not
  torchvision: the reference is skimage's resize, ``conventions.zoom_linear`` of matterport)
- :func:`multiclass_nms` -> standard ``NonMaxSuppression`` with a class axis
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor

from edgeseg.custom_ops import (
    DOMAIN,
    LEVEL_RULES,
    MASK_BYTES_PER_WORD,
    MULTILEVEL_ROI_ALIGN,
    PASTE_MASKS,
    PASTE_MODES,
    ROI_SAMPLINGS,
    ZOOM_LINEAR,
    CustomOp,
    zoom_means,
)

_KIND_SUFFIX = {"int": "i", "float": "f", "floats": "f"}  # the exporter's attribute-type suffixes


def _onnx_attributes(op: CustomOp, attrs: dict[str, Any]) -> dict[str, Any]:
    """The node's attributes as ``g.op`` keywords, typed from the op's description
    (``edgeseg.custom_ops``), plugin identity included; an optional attribute only when it is
    not at its default."""
    kwargs = {f"{a.name}_{_KIND_SUFFIX[a.type]}": list(attrs[a.name]) if a.type == "floats" else attrs[a.name]
              for a in op.attributes if not (a.optional and attrs[a.name] == a.default)}
    kwargs["plugin_version_s"] = attrs["plugin_version"]
    kwargs["plugin_namespace_s"] = attrs["plugin_namespace"]
    return kwargs


def _level_of(rois: Tensor, scales: list[float], canonical_scale: float, canonical_level: int,
              level_rule: int = 0, image_area: float = 0.0) -> Tensor:
    """torchvision's LevelMapper (level_rule 0), Detectron's (1: +1 sides, epsilon inside the
    log) or matterport's (2: ``PyramidROIAlign``, sides in the rois' units, normalised for
    matterport), in the same float32 arithmetic."""
    k_min = int(-torch.log2(torch.tensor(scales[0], dtype=torch.float32)).item())
    k_max = int(-torch.log2(torch.tensor(scales[-1], dtype=torch.float32)).item())
    eps = torch.tensor(1e-6, dtype=rois.dtype)
    if LEVEL_RULES[level_rule] == "matterport":
        lvl = _matterport_level(rois, canonical_scale, canonical_level, image_area, k_min)
    elif LEVEL_RULES[level_rule] == "detectron":
        area = (rois[:, 3] - rois[:, 1] + 1) * (rois[:, 4] - rois[:, 2] + 1)
        lvl = torch.floor(canonical_level + torch.log2(torch.sqrt(area) / canonical_scale + eps))
    else:
        area = (rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2])
        lvl = torch.floor(canonical_level + torch.log2(torch.sqrt(area) / canonical_scale) + eps)
    return (torch.clamp(lvl, min=k_min, max=k_max).to(torch.int64) - k_min).to(torch.int64)


def _matterport_level(rois: Tensor, canonical_scale: float, canonical_level: int, image_area: float,
                      k_min: int) -> Tensor:
    """``canonical_level + round(log(sqrt(h * w) / (canonical_scale / sqrt(image_area))) / log(2))``
    (TF's ``log2_graph`` and ``tf.round``, halves to even), float32 as ``conventions.roi_levels``;
    a box with no positive area (a zero-padded row: log(0) = -inf, which TF casts to INT_MIN) or
    a NaN term gets *k_min*. Unclamped levels, as float."""
    f32 = torch.float32
    h = rois[:, 4] - rois[:, 2]
    w = rois[:, 3] - rois[:, 1]
    area = h * w
    d = torch.tensor(canonical_scale, dtype=f32) / torch.sqrt(torch.tensor(image_area, dtype=f32))
    term = torch.log(torch.sqrt(area) / d) / torch.log(torch.tensor(2.0, dtype=f32))
    # far beyond any level; keeps the conversion of +-inf defined (it is clamped to a level anyway)
    lvl = canonical_level + torch.round(term).clamp(-1e6, 1e6)
    return torch.where((area > 0) & ~torch.isnan(term), lvl, torch.full_like(lvl, float(k_min)))


def _crop_axis(a0: Tensor, a1: Tensor, size: int, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """tf.image.crop_and_resize's samples along one axis of *size* feature pixels for boxes from
    *a0* to *a1* (normalised: 0 and 1 the centres of the first and last pixel): per box and
    output index, (inside, lower pixel, upper pixel, weight of the upper one). TF's float32
    order: ``a0 * (size - 1) + i * ((a1 - a0) * (size - 1) / (n - 1))``; for n == 1 the centre,
    ``0.5 * (a0 + a1) * (size - 1)`` in double (TF's double literal) rounded to float."""
    if n > 1:
        step = (a1 - a0) * float(size - 1) / float(n - 1)
        i = torch.arange(n, dtype=torch.float32)
        v = a0[:, None] * float(size - 1) + i[None, :] * step[:, None]
    else:
        v = (0.5 * (a0 + a1).to(torch.float64) * float(size - 1)).to(torch.float32)[:, None]
    inside = (v >= 0) & (v <= size - 1)
    low = torch.floor(v)
    lo = low.clamp(0, size - 1).nan_to_num(0).to(torch.int64)
    hi = torch.ceil(v).clamp(0, size - 1).nan_to_num(0).to(torch.int64)
    return inside, lo, hi, v - low


def _crop_and_resize(features: Tensor, rois: Tensor, size: tuple[int, int]) -> Tensor:
    """``tf.image.crop_and_resize(..., method='bilinear', extrapolation_value=0)`` of *features*
    [N, C, H, W] at rois [R, 5] (batch index, x0, y0, x1, y1 normalised): [R, C, n, m], one
    corner-aligned bilinear sample per cell, 0 off the map; TF's CPU float32 order
    ``top = tl + (tr - tl) * lx``, ``bottom`` the same, ``top + (bottom - top) * ly``."""
    fh, fw = features.shape[2], features.shape[3]
    y_in, top, bottom, ly = _crop_axis(rois[:, 2], rois[:, 4], fh, size[0])
    x_in, left, right, lx = _crop_axis(rois[:, 1], rois[:, 3], fw, size[1])
    batch = rois[:, 0].to(torch.int64)

    def at(yi: Tensor, xi: Tensor) -> Tensor:  # -> [R, C, n, m]
        return features[batch[:, None, None], :, yi[:, :, None], xi[:, None, :]].permute(0, 3, 1, 2)

    lx4 = lx[:, None, None, :]
    t = at(top, left) + (at(top, right) - at(top, left)) * lx4
    b = at(bottom, left) + (at(bottom, right) - at(bottom, left)) * lx4
    out = t + (b - t) * ly[:, None, :, None]
    inside = (y_in[:, :, None] & x_in[:, None, :])[:, None]
    return torch.where(inside, out, torch.zeros_like(out))


class _MultiLevelRoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, attrs: dict[str, Any], shape: list[int], rois: Tensor, *features: Tensor) -> Tensor:
        scales = list(attrs["spatial_scales"])
        size = (attrs["output_height"], attrs["output_width"])
        levels = _level_of(rois, scales, attrs["canonical_scale"], attrs["canonical_level"], attrs["level_rule"],
                           attrs["image_area"])
        crop = ROI_SAMPLINGS[attrs["sampling"]] == "crop_and_resize"
        out = rois.new_zeros((rois.shape[0], features[0].shape[1], *size))
        for k, (feat, scale) in enumerate(zip(features, scales, strict=True)):
            idx = torch.where(levels == k)[0]
            if crop:
                out[idx] = _crop_and_resize(feat.to(torch.float32), rois[idx], size).to(out.dtype)
            else:
                out[idx] = torchvision.ops.roi_align(
                    feat, rois[idx], size, scale, attrs["sampling_ratio"], bool(attrs["aligned"])
                )
        return out

    @staticmethod
    def symbolic(g: Any, attrs: dict[str, Any], shape: list[int], rois: Any, *features: Any) -> Any:
        out = g.op(f"{DOMAIN}::{MULTILEVEL_ROI_ALIGN.op_type}", rois, *features,
                   **_onnx_attributes(MULTILEVEL_ROI_ALIGN, attrs))
        # Custom ops have no ONNX shape inference: state the (static) output shape here.
        out.setType(features[0].type().with_sizes(shape))
        return out


def multilevel_roi_align(rois: Tensor, features: list[Tensor], **attrs: Any) -> Tensor:
    """RoIAlign of each RoI on the FPN level its size selects (torchvision's MultiScaleRoIAlign),
    or with ``sampling=1`` tf.image.crop_and_resize on normalised rois (matterport's
    PyramidROIAlign with ``level_rule=2``); attributes as ``plugins/multilevel_roi_align/op.json``."""
    full = MULTILEVEL_ROI_ALIGN.node_attributes(**attrs)  # refuses sampling 1 without level_rule 2
    shape = [int(rois.shape[0]), int(features[0].shape[1]), full["output_height"], full["output_width"]]
    out: Tensor = _MultiLevelRoIAlign.apply(full, shape, rois, *features)
    return out


#: Box edges of PasteMasks mode 2 are clamped to +-2^29 before they become ints, as the op does,
#: so that a box's size stays an int (only absurd boxes are affected).
_ZOOM_EDGE_LIMIT = float(1 << 29)


def _zoom_taps(n_in: int, n_out: int, first: int = 0, stop: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """scipy's grid-mode zoom taps (plugins/common/zoom_taps.h, ``zoom_tap``) of output indices
    [first, stop) (default all *n_out*) of an axis of *n_in* samples zoomed to *n_out*: the lower
    sample's index in the zero-bordered axis (sample index + 1: the border is 0 and n_in + 1), its
    weight and the upper one's; float64, scipy's order."""
    zoom = n_in / n_out  # a double division, as scipy's
    u = (torch.arange(first, n_out if stop is None else stop, dtype=torch.float64) + 0.5) * zoom - 0.5
    lower = torch.floor(u)
    t = u - lower
    # never outside the border for an output index in range; the clamp only keeps indexing safe
    return (lower.long() + 1).clamp(0, n_in), 1.0 - t, t


def _zoomed(bordered: Tensor, rows: tuple[Tensor, Tensor, Tensor], cols: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """The zoomed values of a zero-bordered [n + 2, m + 2, ...] float64 tensor at the taps of
    :func:`_zoom_taps`: each tap (sample * row weight) * column weight, summed top-left,
    top-right, bottom-left, bottom-right (zoom_taps.h's ``zoom_value``); trailing axes (channels)
    ride along."""
    r, wy0, wy1 = rows
    c, wx0, wx1 = cols
    extra = (1,) * (bordered.dim() - 2)

    def tap(ri: Tensor, ci: Tensor, wy: Tensor, wx: Tensor) -> Tensor:
        return bordered[ri[:, None], ci[None, :]] * wy.view(-1, 1, *extra) * wx.view(1, -1, *extra)

    value = tap(r, c, wy0, wx0) + tap(r, c + 1, wy0, wx1)
    value = value + tap(r + 1, c, wy1, wx0)
    return value + tap(r + 1, c + 1, wy1, wx1)


def _paste_zoom(probs: Tensor, boxes: Tensor, h: int, w: int, threshold: float) -> Tensor:
    """PasteMasks mode 2 (matterport's ``utils.unmold_mask``): each M x M mask zoomed to its
    rounded box (x0, y0, x1, y1 frame pixels, exclusive ends) with skimage's zero-bordered
    linear zoom in float64, clipped to the mask's own [min, max], ``>= threshold`` in float32."""
    out = torch.zeros((probs.shape[0], h, w), dtype=torch.uint8)
    m = int(probs.shape[1])
    thr = torch.tensor(threshold, dtype=torch.float32)
    edges = torch.round(boxes.to(torch.float32).clamp(-_ZOOM_EDGE_LIMIT, _ZOOM_EDGE_LIMIT))  # rintf: halves to even
    for k in range(probs.shape[0]):
        if not bool(torch.isfinite(boxes[k]).all()):
            continue
        x0, y0, x1, y1 = (int(v) for v in edges[k].tolist())
        xb, xe, yb, ye = max(x0, 0), min(x1, w), max(y0, 0), min(y1, h)
        if x1 <= x0 or y1 <= y0 or xe <= xb or ye <= yb:
            continue
        mask = probs[k].to(torch.float64)
        bordered = torch.zeros((m + 2, m + 2), dtype=torch.float64)
        bordered[1:-1, 1:-1] = mask
        value = _zoomed(bordered, _zoom_taps(m, y1 - y0, yb - y0, ye - y0), _zoom_taps(m, x1 - x0, xb - x0, xe - x0))
        # skimage clips to nanmin / nanmax: NaN samples do not count (the op seeds +-inf too)
        known = mask[~mask.isnan()]
        lo, hi = (float(known.min()), float(known.max())) if known.numel() else (math.inf, -math.inf)
        value = value.clamp(lo, hi)
        out[k, yb:ye, xb:xe] = (value.to(torch.float32) >= thr).to(torch.uint8)
    return out


def _paste_eager(masks: Tensor, boxes: Tensor, attrs: dict[str, Any]) -> Tensor:
    h, w = attrs["height"], attrs["width"]
    if PASTE_MODES[attrs["mode"]] == "zoom":  # FP16 masks widened to float first, as the op does
        wide = masks.to(torch.float32)
        return _paste_zoom(torch.sigmoid(wide) if attrs["logits"] else wide, boxes, h, w, float(attrs["threshold"]))
    probs = torch.sigmoid(masks) if attrs["logits"] else masks
    if PASTE_MODES[attrs["mode"]] == "torchvision":
        from torchvision.models.detection.roi_heads import paste_masks_in_image

        pasted = paste_masks_in_image(probs[:, None], boxes, (h, w), padding=1)[:, 0]
        return (pasted > attrs["threshold"]).to(torch.uint8)
    # continuous: sample each pixel centre from the mask, zero outside it
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    x0, y0, x1, y1 = boxes.unbind(1)
    gx = (xs[None, :] - x0[:, None]) / (x1 - x0)[:, None] * 2 - 1
    gy = (ys[None, :] - y0[:, None]) / (y1 - y0)[:, None] * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(-1, h, -1), gy[:, :, None].expand(-1, -1, w)], dim=3)
    sampled = F.grid_sample(probs[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (sampled[:, 0] >= attrs["threshold"]).to(torch.uint8)


def _pack_bytes(planes: Tensor) -> Tensor:
    """uint8 [K, H, W] -> int32 [K, H, W / 4] holding the same bytes (little-endian, as a numpy
    ``.view(np.int32)`` on every platform edgeseg targets); arithmetic, since tracing cannot
    record a dtype view."""
    k, h, w = planes.shape
    quads = planes.reshape(k, h, w // MASK_BYTES_PER_WORD, MASK_BYTES_PER_WORD).to(torch.int32)
    shifts = torch.tensor([0, 8, 16, 24], dtype=torch.int32)
    return (quads << shifts).sum(dim=3, dtype=torch.int32)


class _PasteMasks(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, attrs: dict[str, Any], rows: int, masks: Tensor, boxes: Tensor, count: Tensor) -> Tensor:
        planes = torch.zeros((rows, attrs["height"], attrs["width"]), dtype=torch.uint8)
        live = min(max(int(count.reshape(-1)[0]), 0), rows)
        if live:
            planes[:live] = _paste_eager(masks[:live], boxes[:live], attrs)
        return _pack_bytes(planes)

    @staticmethod
    def symbolic(g: Any, attrs: dict[str, Any], rows: int, masks: Any, boxes: Any, count: Any) -> Any:
        out = g.op(f"{DOMAIN}::{PASTE_MASKS.op_type}", masks, boxes, count, **_onnx_attributes(PASTE_MASKS, attrs))
        words = attrs["width"] // MASK_BYTES_PER_WORD
        out.setType(masks.type().with_dtype(torch.int32).with_sizes([rows, attrs["height"], words]))
        return out


def paste_masks(masks: Tensor, boxes: Tensor, count: Tensor, **attrs: Any) -> Tensor:
    """Paste the first *count* (int32 [1]) of K masks [K, M, M] into binary frame-size masks at
    *boxes* [K, 4] (frame pixels, float32).

    Returns the op's output: the bytes of uint8 planes [K, height, width] as int32 [K, height,
    width / 4] (``width`` must be a multiple of 4; see ``edgeseg.custom_ops.MASK_BYTES_PER_WORD``).
    Rows from *count* on are zero here; the op itself does not write them.
    """
    full = PASTE_MASKS.node_attributes(**attrs)  # refuses a width that is not a multiple of 4
    out: Tensor = _PasteMasks.apply(full, int(masks.shape[0]), masks, boxes, count)
    return out


def _zoom_eager(image: Tensor, value_range: Tensor, attrs: dict[str, Any], channels: int) -> Tensor:
    """ZoomLinear in float64 torch, operation for operation as zoom_linear_math.h."""
    x = image.to(torch.float64)
    rows, cols = x.shape[0], x.shape[1]
    padded = torch.zeros((rows + 2, cols + 2, channels), dtype=torch.float64)  # samples outside are 0
    padded[1:-1, 1:-1] = x
    v = _zoomed(padded, _zoom_taps(rows, attrs["height"]), _zoom_taps(cols, attrs["width"]))
    lo, hi = value_range[0].to(torch.float64), value_range[1].to(torch.float64)
    v = torch.trunc(torch.minimum(torch.maximum(v, lo), hi))
    canvas = torch.zeros((channels, attrs["canvas_height"], attrs["canvas_width"]), dtype=torch.float64)
    top, left = attrs["top"], attrs["left"]
    canvas[:, top:top + attrs["height"], left:left + attrs["width"]] = v.permute(2, 0, 1)
    # a Python float minus a float64 tensor: a double subtraction, then one rounding to float32
    return torch.stack([canvas[c] - m for c, m in enumerate(zoom_means(attrs["mean"], channels))]).to(torch.float32)


class _ZoomLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, attrs: dict[str, Any], channels: int, image: Tensor, value_range: Tensor) -> Tensor:
        return _zoom_eager(image, value_range, attrs, channels)

    @staticmethod
    def symbolic(g: Any, attrs: dict[str, Any], channels: int, image: Any, value_range: Any) -> Any:
        out = g.op(f"{DOMAIN}::{ZOOM_LINEAR.op_type}", image, value_range, **_onnx_attributes(ZOOM_LINEAR, attrs))
        out.setType(image.type().with_dtype(torch.float32).with_sizes(
            [channels, attrs["canvas_height"], attrs["canvas_width"]]))
        return out


def zoom_linear(image: Tensor, value_range: Tensor, **attrs: Any) -> Tensor:
    """matterport's molded input: skimage's linear zoom (``resize(order=1, mode='constant',
    anti_aliasing=False, preserve_range=True)``) of *image* float32 [H, W, C] (integer pixel
    values) to ``height`` x ``width`` in float64, clipped to *value_range* float32 [2] (the
    image's (min, max) over all channels), truncated to an integer (``astype(uint8)``), placed at
    (``top``, ``left``) of a zero ``canvas_height`` x ``canvas_width`` canvas, minus ``mean`` in
    float64, cast to float32. Returns [C, canvas_height, canvas_width] float32. ``mean`` is
    subtracted as the op reads its float32 attribute (``custom_ops.attribute_decimal``: 123.7
    exactly), so this equals the plugin and the CPU build bit for bit. ValueError for attributes
    out of range, a window outside the canvas, or a ``mean`` of neither 1 nor C values.
    """
    full = ZOOM_LINEAR.node_attributes(**attrs)
    if image.dim() != 3:
        raise ValueError(f"ZoomLinear: image must be [H, W, C]; got shape {list(image.shape)}")
    channels = int(image.shape[2])
    zoom_means(full["mean"], channels)
    out: Tensor = _ZoomLinear.apply(full, channels, image, value_range)
    return out


class _MultiClassNMS(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, boxes: Tensor, scores: Tensor, max_per_class: int, iou: float, score_min: float) -> Tensor:
        rows = []
        for c in range(scores.shape[0]):
            idx = torch.where(scores[c] > score_min)[0]
            keep = torchvision.ops.nms(boxes[idx], scores[c, idx], iou)[:max_per_class]
            sel = idx[keep]
            rows.append(torch.stack([torch.zeros_like(sel), torch.full_like(sel, c), sel], dim=1))
        return torch.cat(rows, 0) if rows else torch.zeros((0, 3), dtype=torch.int64)

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, max_per_class: int, iou: float, score_min: float) -> Any:
        const = g.op
        return g.op(
            "NonMaxSuppression",
            g.op("Unsqueeze", boxes, const("Constant", value_t=torch.tensor([0], dtype=torch.int64))),
            g.op("Unsqueeze", scores, const("Constant", value_t=torch.tensor([0], dtype=torch.int64))),
            const("Constant", value_t=torch.tensor([max_per_class], dtype=torch.int64)),
            const("Constant", value_t=torch.tensor([iou], dtype=torch.float32)),
            const("Constant", value_t=torch.tensor([score_min], dtype=torch.float32)),
            center_point_box_i=0,
        )


def multiclass_nms(boxes: Tensor, scores: Tensor, max_per_class: int, iou: float, score_min: float) -> Tensor:
    """Per-class NMS: *boxes* [N, 4] (x0, y0, x1, y1), *scores* [C, N]; boxes scoring
    <= *score_min* in a class take no part in it. Returns [S, 3] int64 rows (0, class, box index),
    each class's rows in descending score; at most *max_per_class* a class. A box suppresses
    another of its class when their IoU exceeds *iou*. Only this output's length depends on data."""
    out: Tensor = _MultiClassNMS.apply(boxes, scores, max_per_class, iou, score_min)
    return out
