"""Multi-object tracking scores of a tracker's IDs against ground-truth identities: ID switches,
MOTA (CLEAR MOT) and IDF1, matching objects by box IoU >= 0.5.

The conventions are motmetrics' (py-motmetrics, the field's reference implementation), which
could not be installed here: per frame, a ground-truth object keeps its previous hypothesis if
they still overlap enough, the rest are assigned by the Hungarian method (SciPy); an ID switch
is a ground-truth object matched to another hypothesis than the last time it was matched;
``MOTA = 1 - (misses + false positives + switches) / ground-truth objects``. IDF1 matches whole
trajectories once (Hungarian on the frames two trajectories are matched in) and is
``2 IDTP / (2 IDTP + IDFP + IDFN)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeseg.tracking import box_iou_matrix

IOU = 0.5


@dataclass(frozen=True)
class FrameTruth:
    """One frame: ground-truth ``ids`` [N] and ``boxes`` [N, 4]; hypotheses ``track_ids`` [M] and
    ``track_boxes`` [M, 4] (x0, y0, x1, y1 pixels)."""

    ids: np.ndarray
    boxes: np.ndarray
    track_ids: np.ndarray
    track_boxes: np.ndarray


@dataclass(frozen=True)
class MotScores:
    frames: int
    objects: int
    switches: int
    misses: int
    false_positives: int
    mota: float
    idf1: float

    def line(self) -> str:
        per100 = 100.0 * self.switches / max(self.frames, 1)
        return (f"{self.frames} frames, {self.objects} object instances: ID switches {self.switches} "
                f"({per100:.2f} per 100 frames), MOTA {self.mota:.4f}, IDF1 {self.idf1:.4f}, "
                f"misses {self.misses}, false positives {self.false_positives}")


def mot_scores(frames: Sequence[FrameTruth]) -> MotScores:
    from scipy.optimize import linear_sum_assignment

    last: dict[int, int] = {}  # ground-truth id -> hypothesis it was last matched to
    switches = misses = fps = objects = 0
    pair_frames: dict[tuple[int, int], int] = {}
    gt_len: dict[int, int] = {}
    hyp_len: dict[int, int] = {}
    for f in frames:
        gt, hyp = list(map(int, f.ids)), list(map(int, f.track_ids))
        objects += len(gt)
        for g in gt:
            gt_len[g] = gt_len.get(g, 0) + 1
        for h in hyp:
            hyp_len[h] = hyp_len.get(h, 0) + 1
        iou = box_iou_matrix(np.asarray(f.boxes, np.float64).reshape(-1, 4),
                             np.asarray(f.track_boxes, np.float64).reshape(-1, 4))
        for i, g in enumerate(gt):  # IDF1 counts every overlapping pair
            for j, h in enumerate(hyp):
                if iou[i, j] >= IOU:
                    pair_frames[(g, h)] = pair_frames.get((g, h), 0) + 1
        matched: dict[int, int] = {}
        for i, g in enumerate(gt):  # keep last frame's correspondences that still hold
            if g in last and last[g] in hyp:
                j = hyp.index(last[g])
                if iou[i, j] >= IOU and j not in matched.values():
                    matched[i] = j
        rest_g = [i for i in range(len(gt)) if i not in matched]
        rest_h = [j for j in range(len(hyp)) if j not in matched.values()]
        if rest_g and rest_h:
            sub = iou[np.ix_(rest_g, rest_h)]
            rows, cols = linear_sum_assignment(1.0 - sub)
            for r, c in zip(rows, cols, strict=True):
                if sub[r, c] >= IOU:
                    matched[rest_g[r]] = rest_h[c]
        for i, j in matched.items():
            g, h = gt[i], hyp[j]
            if g in last and last[g] != h:
                switches += 1
            last[g] = h
        misses += len(gt) - len(matched)
        fps += len(hyp) - len(matched)
    mota = 1.0 - (misses + fps + switches) / objects if objects else 1.0
    gts, hyps = sorted(gt_len), sorted(hyp_len)
    idtp = 0
    if gts and hyps:
        gain = np.array([[pair_frames.get((g, h), 0) for h in hyps] for g in gts], np.float64)
        rows, cols = linear_sum_assignment(-gain)
        idtp = int(gain[rows, cols].sum())
    idfn = sum(gt_len.values()) - idtp
    idfp = sum(hyp_len.values()) - idtp
    idf1 = 2 * idtp / (2 * idtp + idfp + idfn) if (idtp + idfp + idfn) else 1.0
    return MotScores(len(frames), objects, switches, misses, fps, mota, idf1)
