"""Matching a converter's detections to those a reference code base recorded, shared by the
parity tests of the Mask R-CNN families (detectron2, maskrcnn-benchmark, Detectron)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseg.converters.parity import box_iou


def unpack_reference_masks(ref: dict[str, np.ndarray]) -> np.ndarray:
    """The recorded masks [N, H, W] bool from their packed bits (``masks_packed``, ``masks_shape``)."""
    return np.unpackbits(ref["masks_packed"], axis=-1, count=int(ref["masks_shape"][2])).astype(bool)


def match_by_class(got: Any, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                   masks: np.ndarray) -> dict[str, float]:
    """Each reference detection (boxes x0, y0, x1, y1 in frame pixels; edgeseg labels) matched to
    an unused detection of *got* (an InstanceResult) of its label with the highest box IoU; every
    reference detection must find one. Two empty masks count as IoU 0 (nothing to agree on)."""
    used: set[int] = set()
    box_ious, mask_ious, score_diffs = [], [], []
    for i in range(len(boxes)):
        same = [j for j in np.flatnonzero(got.labels == labels[i]) if j not in used]
        assert same, f"reference detection {i} (label {labels[i]}) has no unmatched detection of its label"
        ious = box_iou(boxes[i:i + 1], got.boxes[same])
        j = same[int(ious.argmax())]
        used.add(int(j))
        box_ious.append(float(ious.max()))
        score_diffs.append(abs(float(got.scores[j]) - float(scores[i])))
        a, b = masks[i], got.masks[j].astype(bool)
        mask_ious.append(float((a & b).sum() / max((a | b).sum(), 1)))
    return {"min_box_iou": min(box_ious), "max_score_diff": max(score_diffs),
            "mean_mask_iou": float(np.mean(mask_ious)), "min_mask_iou": min(mask_ious)}
