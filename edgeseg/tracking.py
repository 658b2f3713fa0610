"""Stable object IDs across frames for instance models (``edgeseg run --track``).

ByteTrack's association (Zhang et al., 2022) on edgeseg's detections, with SciPy's
``linear_sum_assignment`` (the Hungarian method) as the solver. Each frame, the tracks'
predicted boxes are matched by box IoU to the detections scoring at least ``high``, then the
tracks left over to the detections between ``low`` and ``high`` (the low-score round that keeps
occluded objects). Matching is class-agnostic by default (a detector that hesitates between two
classes for one object would otherwise switch its ID); ``per_class`` restricts it to a track's
class. Where two detections overlap a track almost equally, the mask IoU with the track's last
mask decides. Unmatched detections scoring at least ``new_track`` start tracks with new IDs,
unless they overlap a detection already tracked in the frame by ``duplicate_iou`` (the same
object detected twice); tracks unmatched for more than ``max_misses`` frames end. A track's box
is predicted by constant velocity (smoothed): ByteTrack's Kalman filter reduced to what boxes
of a fixed-rate camera need. IDs are positive integers, never reused in a run.

SciPy's solver is the maintained part, the association rules above are the small rest. They are
kept because on edgeseg's generated clips the ByteTrack of Roboflow's maintained ``trackers``
package, fed the same detections, switches IDs 2 to 5 times as often
(``benchmarks/tracking.py --against-trackers``; README). The defaults were chosen on two
generated clips (``benchmarks/tracking.py``, seeds 0 and 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeseg import ranges
from edgeseg.errors import BackendUnavailableError
from edgeseg.result import InstanceResult


@dataclass(frozen=True)
class TrackerConfig:
    """``high``/``low``: the two score levels (0..1); ``match_iou``/``low_match_iou``: the least
    box IoU that associates in each round; ``max_misses``: frames a lost track survives;
    ``tie``: box IoUs within this of each other count as a tie that the mask IoU breaks;
    ``new_track``: the least score that starts a track; ``duplicate_iou``: see the module
    docstring; ``per_class``: associate only detections of a track's class."""

    high: float = 0.5
    low: float = 0.1
    match_iou: float = 0.3
    low_match_iou: float = 0.5
    max_misses: int = 30
    tie: float = 0.05
    new_track: float = 0.8
    duplicate_iou: float = 0.5
    per_class: bool = False

    def __post_init__(self) -> None:
        ranges.check("low", self.low, 0.0, 1.0)
        ranges.check("high", self.high, self.low, 1.0)
        ranges.check("new_track", self.new_track, self.high, 1.0)
        ranges.check("max_misses", self.max_misses, 0, integer=True)


@dataclass
class _Track:
    id: int
    label: int
    box: np.ndarray  # x0, y0, x1, y1 at the last match
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float64))
    misses: int = 0
    mask: np.ndarray | None = None  # bool, cropped to ``mask_box``
    mask_box: tuple[int, int, int, int] = (0, 0, 0, 0)

    def predicted(self) -> np.ndarray:
        return self.box + self.velocity * (self.misses + 1)


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of *a* [N, 4] with every box of *b* [M, 4] (x0, y0, x1, y1) -> [N, M]."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return np.asarray(inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9))


def _crop(mask: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    h, w = mask.shape
    x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
    x1, y1 = min(int(np.ceil(box[2])), w), min(int(np.ceil(box[3])), h)
    return mask[y0:y1, x0:x1].astype(bool), (x0, y0, x1, y1)


def _mask_iou(track: _Track, mask: np.ndarray, box: np.ndarray) -> float:
    if track.mask is None:
        return 0.0
    cropped, (x0, y0, x1, y1) = _crop(mask, box)
    tx0, ty0, tx1, ty1 = track.mask_box
    ux0, uy0, ux1, uy1 = min(x0, tx0), min(y0, ty0), max(x1, tx1), max(y1, ty1)
    a = np.zeros((uy1 - uy0, ux1 - ux0), bool)
    b = np.zeros_like(a)
    a[y0 - uy0:y1 - uy0, x0 - ux0:x1 - ux0] = cropped
    b[ty0 - uy0:ty1 - uy0, tx0 - ux0:tx1 - ux0] = track.mask
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


class ByteTracker:
    """Gives each detection of successive :class:`InstanceResult` s a track ID (see the module
    docstring). Frames must come in order, one tracker per stream."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: list[_Track] = []
        self._next_id = 1

    def update(self, result: InstanceResult) -> InstanceResult:
        """*result* with ``track_ids`` (int32 [N], parallel to ``boxes``; 0 for a detection below
        ``low``, which neither starts nor continues a track)."""
        try:
            from scipy.optimize import linear_sum_assignment
        except ImportError as exc:
            raise BackendUnavailableError("tracking needs SciPy: pip install 'edgeseg[track]'") from exc

        c = self.config
        n = len(result)
        boxes = np.asarray(result.boxes, np.float64).reshape(n, 4)
        scores = np.asarray(result.scores, np.float64)
        labels = np.asarray(result.labels)
        ids = np.zeros(n, np.int32)
        free_tracks = list(range(len(self.tracks)))
        rounds = ((scores >= c.high, c.match_iou), ((scores >= c.low) & (scores < c.high), c.low_match_iou))
        for tier, least in rounds:
            dets = np.flatnonzero(tier & (ids == 0))
            if not len(dets) or not free_tracks:
                continue
            predicted = np.stack([self.tracks[t].predicted() for t in free_tracks])
            iou = box_iou_matrix(predicted, boxes[dets])
            if c.per_class:
                same_class = np.array([[self.tracks[t].label == labels[d] for d in dets] for t in free_tracks])
                iou = np.where(same_class, iou, 0.0)
            cost = 1.0 - iou
            # mask IoU breaks near-ties (two detections overlapping one track about equally)
            for r in range(len(free_tracks)):
                row = iou[r]
                close = np.flatnonzero((row >= least) & (row >= row.max() - c.tie))
                if len(close) > 1:
                    track = self.tracks[free_tracks[r]]
                    for k in close:
                        cost[r, k] -= c.tie * _mask_iou(track, result.masks[dets[k]], boxes[dets[k]])
            rows, cols = linear_sum_assignment(cost)
            matched = set()
            for r, k in zip(rows, cols, strict=True):
                if iou[r, k] < least:
                    continue
                track = self.tracks[free_tracks[r]]
                self._continue(track, boxes[dets[k]], result.masks[dets[k]])
                track.label = int(labels[dets[k]])
                ids[dets[k]] = track.id
                matched.add(free_tracks[r])
            free_tracks = [t for t in free_tracks if t not in matched]
        for t in free_tracks:
            self.tracks[t].misses += 1
        for d in np.flatnonzero((scores >= c.new_track) & (ids == 0)):  # highest score first
            taken = np.flatnonzero(ids > 0)
            if len(taken) and box_iou_matrix(boxes[d:d + 1], boxes[taken]).max() >= c.duplicate_iou:
                continue
            mask, mask_box = _crop(result.masks[d], boxes[d])
            self.tracks.append(_Track(self._next_id, int(labels[d]), boxes[d].copy(), mask=mask,
                                      mask_box=mask_box))
            ids[d] = self._next_id
            self._next_id += 1
        self.tracks = [t for t in self.tracks if t.misses <= c.max_misses]
        return dataclasses.replace(result, track_ids=ids)

    @staticmethod
    def _continue(track: _Track, box: np.ndarray, mask: np.ndarray) -> None:
        step = (box - track.box) / (track.misses + 1)
        track.velocity = 0.5 * track.velocity + 0.5 * step
        track.box = box.copy()
        track.misses = 0
        track.mask, track.mask_box = _crop(mask, box)


class Tracked:
    """A model whose instance results carry track IDs: ``Tracked(edgeseg.load(path))(frame)``.
    Semantic results pass through unchanged (they have no instances)."""

    def __init__(self, model: Callable[[np.ndarray], Any], config: TrackerConfig | None = None) -> None:
        self.model = model
        self.tracker = ByteTracker(config)

    def __call__(self, frame: np.ndarray) -> Any:
        result = self.model(frame)
        return self.tracker.update(result) if isinstance(result, InstanceResult) else result

    def __getattr__(self, name: str) -> Any:  # metadata, backend, ... of the wrapped model
        return getattr(self.model, name)
