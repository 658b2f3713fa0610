"""Multi-object tracking scores of a tracker's IDs against ground-truth identities: ID switches,
MOTA (CLEAR MOT) and IDF1, matching objects by box IoU >= 0.5, computed by py-motmetrics (the
field's reference implementation; ``pip install 'edgeseg[mot]'``).

edgeseg only turns each frame into motmetrics' distance matrix (``1 - IoU``, no match below
the IoU threshold), with its own IoU: motmetrics 1.4's ``iou_matrix`` calls ``np.asfarray``,
which NumPy 2 removed. motmetrics' conventions: a ground-truth object keeps its previous
hypothesis while they still overlap enough, the rest are assigned by the Hungarian method; an
ID switch is a ground-truth object matched to another hypothesis than the last time it was
matched; ``MOTA = 1 - (misses + false positives + switches) / ground-truth objects``; IDF1
matches whole trajectories once and is ``2 IDTP / (2 IDTP + IDFP + IDFN)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeseg.errors import BackendUnavailableError
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


_METRICS = ("num_objects", "num_switches", "num_misses", "num_false_positives", "mota", "idf1")


def mot_scores(frames: Sequence[FrameTruth]) -> MotScores:
    """The scores of a whole clip, one :class:`FrameTruth` per frame in order."""
    try:
        import motmetrics
    except ImportError as exc:
        raise BackendUnavailableError(f"scoring a tracker needs py-motmetrics ({exc}); "
                                      "pip install 'edgeseg[mot]'") from exc
    acc = motmetrics.MOTAccumulator(auto_id=True)
    for f in frames:
        iou = box_iou_matrix(np.asarray(f.boxes, np.float64).reshape(-1, 4),
                             np.asarray(f.track_boxes, np.float64).reshape(-1, 4))
        acc.update([int(i) for i in f.ids], [int(i) for i in f.track_ids], np.where(iou >= IOU, 1.0 - iou, np.nan))
    row = motmetrics.metrics.create().compute(acc, metrics=list(_METRICS), name="clip").iloc[0]
    objects = int(row["num_objects"])
    return MotScores(len(frames), objects, int(row["num_switches"]), int(row["num_misses"]),
                     int(row["num_false_positives"]), float(row["mota"]) if objects else 1.0, float(row["idf1"]))
