"""PyTorch stand-ins for the graph's special nodes.

Each is an autograd Function whose ``forward`` computes the op in eager PyTorch (with
torchvision's own kernels, so the export wrapper can be checked against torchvision before any
ONNX is written) and whose ``symbolic`` emits the ONNX node:

- :func:`multilevel_roi_align` -> custom node ``edgeseg.MultiLevelRoIAlign``
- :func:`paste_masks` -> custom node ``edgeseg.PasteMasks``
- :func:`multiclass_nms` -> standard ``NonMaxSuppression`` with a class axis
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor

from edgeseg.custom_ops import (
    DOMAIN,
    MASK_BYTES_PER_WORD,
    MULTILEVEL_ROI_ALIGN,
    PASTE_MASKS,
    PASTE_MODES,
    CustomOp,
)

_KIND_SUFFIX = {"int": "i", "float": "f", "floats": "f"}  # the exporter's attribute-type suffixes


def _onnx_attributes(op: CustomOp, attrs: dict[str, Any]) -> dict[str, Any]:
    """The node's attributes as ``g.op`` keywords, typed from the op's description
    (``edgeseg.custom_ops``), plugin identity included."""
    kwargs = {f"{a.name}_{_KIND_SUFFIX[a.type]}": list(attrs[a.name]) if a.type == "floats" else attrs[a.name]
              for a in op.attributes}
    kwargs["plugin_version_s"] = attrs["plugin_version"]
    kwargs["plugin_namespace_s"] = attrs["plugin_namespace"]
    return kwargs


def _level_of(rois: Tensor, scales: list[float], canonical_scale: float, canonical_level: int,
              level_rule: int = 0) -> Tensor:
    """torchvision's LevelMapper (level_rule 0) or Detectron's (1: +1 sides, epsilon inside the
    log), in the same float32 arithmetic."""
    k_min = int(-torch.log2(torch.tensor(scales[0], dtype=torch.float32)).item())
    k_max = int(-torch.log2(torch.tensor(scales[-1], dtype=torch.float32)).item())
    eps = torch.tensor(1e-6, dtype=rois.dtype)
    if level_rule == 1:
        area = (rois[:, 3] - rois[:, 1] + 1) * (rois[:, 4] - rois[:, 2] + 1)
        lvl = torch.floor(canonical_level + torch.log2(torch.sqrt(area) / canonical_scale + eps))
    else:
        area = (rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2])
        lvl = torch.floor(canonical_level + torch.log2(torch.sqrt(area) / canonical_scale) + eps)
    return (torch.clamp(lvl, min=k_min, max=k_max).to(torch.int64) - k_min).to(torch.int64)


class _MultiLevelRoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, attrs: dict[str, Any], shape: list[int], rois: Tensor, *features: Tensor) -> Tensor:
        scales = list(attrs["spatial_scales"])
        size = (attrs["output_height"], attrs["output_width"])
        levels = _level_of(rois, scales, attrs["canonical_scale"], attrs["canonical_level"], attrs["level_rule"])
        out = rois.new_zeros((rois.shape[0], features[0].shape[1], *size))
        for k, (feat, scale) in enumerate(zip(features, scales, strict=True)):
            idx = torch.where(levels == k)[0]
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
    """RoIAlign of each RoI on the FPN level its size selects (torchvision's MultiScaleRoIAlign)."""
    full = MULTILEVEL_ROI_ALIGN.node_attributes(**attrs)
    shape = [int(rois.shape[0]), int(features[0].shape[1]), full["output_height"], full["output_width"]]
    out: Tensor = _MultiLevelRoIAlign.apply(full, shape, rois, *features)
    return out


#: Box edges of PasteMasks mode 2 are clamped to +-2^29 before they become ints, as the op does,
#: so that a box's size stays an int (only absurd boxes are affected).
_ZOOM_EDGE_LIMIT = float(1 << 29)


def _zoom_axis(first: int, stop: int, start: int, size: int, mask_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """scipy's grid-mode zoom taps (plugins/common/zoom_taps.h) of frame indices [first, stop)
    of a box edge *start* and *size* pixels: lower bordered-mask index (sample index + 1, so the
    zero border is index 0 and M + 1), its weight and the upper one's; float64, scipy's order."""
    zoom = mask_size / size  # double division, like zoom_tap
    u = (torch.arange(first - start, stop - start, dtype=torch.float64) + 0.5) * zoom - 0.5
    lower = torch.floor(u)
    t = u - lower
    return lower.long() + 1, 1.0 - t, t


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
        rows, wy0, wy1 = _zoom_axis(yb, ye, y0, y1 - y0, m)
        cols, wx0, wx1 = _zoom_axis(xb, xe, x0, x1 - x0, m)

        def tap(r: Tensor, c: Tensor, wy: Tensor, wx: Tensor, b: Tensor = bordered) -> Tensor:
            return b[r[:, None], c[None, :]] * wy[:, None] * wx[None, :]

        value = tap(rows, cols, wy0, wx0) + tap(rows, cols + 1, wy0, wx1)
        value = value + tap(rows + 1, cols, wy1, wx0)
        value = value + tap(rows + 1, cols + 1, wy1, wx1)
        value = value.clamp(float(mask.min()), float(mask.max()))
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
