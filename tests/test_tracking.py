"""Stable object IDs across frames (edgeseg.tracking), on detections whose identities are known."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from edgeseg.pipeline import run_pipeline
from edgeseg.result import InstanceResult
from edgeseg.sinks import JsonlSink
from edgeseg.tracking import ByteTracker, Tracked, TrackerConfig

HW = (120, 200)
CLASSES = ("__background__", "circle", "square")
PALETTE = ((0, 0, 0), (255, 0, 0), (0, 255, 0))


def frame_of(objects: Sequence[tuple[int, int, float, float, float]]) -> tuple[InstanceResult, list[int]]:
    """Detections of (identity, label, x, y, score): 20x20 boxes with their masks, shuffled so
    that detection order says nothing about identity."""
    rng = np.random.default_rng(len(objects))
    order = rng.permutation(len(objects))
    boxes, masks = [], []
    for k in order:
        _, _, x, y, _ = objects[k]
        boxes.append([x, y, x + 20, y + 20])
        m = np.zeros(HW, np.uint8)
        m[int(y):int(y) + 20, int(x):int(x) + 20] = 1
        masks.append(m)
    return InstanceResult(np.array(boxes, np.float32).reshape(-1, 4),
                          np.array([objects[k][4] for k in order], np.float32),
                          np.array([objects[k][1] for k in order], np.int32),
                          np.array(masks, np.uint8).reshape(-1, *HW), CLASSES, PALETTE), [objects[k][0] for k in order]


def test_ids_survive_motion_a_short_miss_low_scores_and_crossing() -> None:
    tracker = ByteTracker(TrackerConfig(max_misses=5))
    seen: dict[int, set[int]] = {}
    for t in range(40):
        objects = [(1, 1, 10 + 3 * t, 20, 0.9),                       # moving right
                   (2, 2, 150 - 3 * t, 22, 0.3 if t % 5 == 4 else 0.8),  # moving left, sometimes a low score
                   (3, 1, 90, 80, 0.95)]                               # still
        if 12 <= t < 15:
            objects = objects[:2]  # object 3 occluded for 3 frames
        result, identities = frame_of(objects)
        tracked = tracker.update(result)
        assert tracked.track_ids is not None and len(tracked.track_ids) == len(result)
        for identity, tid in zip(identities, tracked.track_ids, strict=True):
            seen.setdefault(identity, set()).add(int(tid))
    # objects 1 and 2 cross (different classes, boxes overlapping around t = 23): no ID switch
    assert all(len(ids) == 1 and 0 not in ids for ids in seen.values()), seen
    assert len({next(iter(ids)) for ids in seen.values()}) == 3


def test_a_new_object_gets_a_new_id_and_a_long_gone_one_is_not_revived() -> None:
    tracker = ByteTracker(TrackerConfig(max_misses=2))
    first = tracker.update(frame_of([(1, 1, 10, 10, 0.9)])[0]).track_ids
    for _ in range(4):
        tracker.update(frame_of([])[0])
    again = tracker.update(frame_of([(1, 1, 10, 10, 0.9), (2, 2, 100, 60, 0.9)])[0]).track_ids
    assert first is not None and again is not None
    assert list(first) == [1] and sorted(again.tolist()) == [2, 3]


def test_low_scores_neither_start_tracks_nor_get_ids() -> None:
    tracked = ByteTracker().update(frame_of([(1, 1, 10, 10, 0.2), (2, 1, 100, 60, 0.05)])[0])
    assert tracked.track_ids is not None and tracked.track_ids.tolist() == [0, 0]


def test_track_ids_reach_the_json_lines(tmp_path: Path) -> None:
    frames = [np.zeros((*HW, 3), np.uint8) for _ in range(5)]
    step = iter(range(5))

    def model(frame: np.ndarray) -> InstanceResult:
        t = next(step)
        return frame_of([(1, 1, 10 + 5 * t, 10, 0.9), (2, 2, 150 - 5 * t, 70, 0.9)])[0]

    out = tmp_path / "r.jsonl"
    run_pipeline(frames, Tracked(model), JsonlSink(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(len(d["track_ids"]) == len(d["boxes"]) == 2 for d in lines)
    by_label = [{lab: tid for lab, tid in zip(d["labels"], d["track_ids"], strict=True)} for d in lines]
    assert all(b == by_label[0] for b in by_label) and sorted(by_label[0].values()) == [1, 2]


def test_mot_scores_count_switches_misses_and_false_positives() -> None:
    from edgeseg.mot import FrameTruth, mot_scores

    a, b = np.array([0, 0, 20, 20.0]), np.array([50, 0, 70, 20.0])
    frames = []
    for t in range(10):
        hyp = [7, 8] if t < 5 else [8, 7]  # the tracker swaps the two IDs at t = 5
        boxes = np.stack([a, b])
        extra = t == 9  # one false positive
        frames.append(FrameTruth(np.array([1, 2]), boxes, np.array(hyp + ([9] if extra else [])),
                                 np.concatenate([boxes, [[100, 100, 120, 120]]]) if extra else boxes))
    frames.append(FrameTruth(np.array([1, 2]), np.stack([a, b]), np.array([8]), np.stack([a])))  # object 2 missed
    s = mot_scores(frames)
    assert (s.switches, s.misses, s.false_positives, s.objects) == (2, 1, 1, 22)
    assert s.mota == pytest.approx(1 - (1 + 1 + 2) / 22)
    assert 0.4 < s.idf1 < 0.7
