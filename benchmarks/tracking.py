"""Tracking on a generated clip whose identities are known: the reference Mask R-CNN (shipped
weights) with ``edgeseg.tracking`` on ``edgeseg.scenes.scene_clip``, scored by py-motmetrics
through ``edgeseg.mot`` (ID switches, MOTA, IDF1; box IoU >= 0.5).

    python benchmarks/tracking.py                    # 300 frames at 256x256, seed 0
    python benchmarks/tracking.py --frames 600 --seed 3
    python benchmarks/tracking.py --against-trackers # also Roboflow's `trackers` (pip install trackers)

``--against-trackers`` feeds the same detections to the ByteTrack of Roboflow's maintained
``trackers`` package, with its defaults and with edgeseg's score levels, so the association
rules of ``edgeseg.tracking`` are judged against an established implementation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# A contender: a fresh tracker per clip, as a function from a frame's result to its
# (track IDs, track boxes), detections no track holds left out.
Contender = Callable[[], Callable[[Any], tuple[np.ndarray, np.ndarray]]]


def _edgeseg() -> Callable[[Any], tuple[np.ndarray, np.ndarray]]:
    from edgeseg.tracking import ByteTracker

    tracker = ByteTracker()

    def step(result: Any) -> tuple[np.ndarray, np.ndarray]:
        ids = tracker.update(result).track_ids
        assert ids is not None
        return ids[ids > 0], np.asarray(result.boxes)[ids > 0]

    return step


def _roboflow(**options: Any) -> Contender:
    def make() -> Callable[[Any], tuple[np.ndarray, np.ndarray]]:
        import supervision as sv
        from trackers import ByteTrackTracker

        tracker = ByteTrackTracker(**options)

        def step(result: Any) -> tuple[np.ndarray, np.ndarray]:
            detections = sv.Detections(xyxy=np.asarray(result.boxes, np.float32).reshape(-1, 4),
                                       confidence=np.asarray(result.scores, np.float32),
                                       class_id=np.asarray(result.labels, int))
            out = tracker.update(detections)
            ids = np.asarray(out.tracker_id if out.tracker_id is not None else np.zeros(len(out)), int)
            return ids[ids > 0], np.asarray(out.xyxy)[ids > 0]

        return step

    return make


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--score-thresh", type=float, default=0.3)
    p.add_argument("--against-trackers", action="store_true",
                   help="also score Roboflow's trackers.ByteTrackTracker on the same detections")
    args = p.parse_args(argv)

    import edgeseg
    from edgeseg.converters.maskrcnn.export import export_maskrcnn
    from edgeseg.converters.maskrcnn.graph import GraphOptions
    from edgeseg.converters.reference import MASKRCNN, reference_maskrcnn, scene_classes
    from edgeseg.mot import FrameTruth, mot_scores
    from edgeseg.scenes import SceneSpec, scene_clip
    from edgeseg.tracking import TrackerConfig

    contenders: dict[str, Contender] = {"edgeseg.tracking": _edgeseg}
    if args.against_trackers:
        ours = TrackerConfig()
        contenders["trackers ByteTrack, its defaults"] = _roboflow(frame_rate=25.0)
        contenders["trackers ByteTrack, edgeseg's score levels"] = _roboflow(
            frame_rate=25.0, high_conf_det_threshold=ours.high, track_activation_threshold=ours.new_track,
            lost_track_buffer=ours.max_misses, minimum_consecutive_frames=1)

    hw = MASKRCNN.frame_hw
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mrcnn.onnx"
        export_maskrcnn(reference_maskrcnn(), path, hw, GraphOptions(score_thresh=args.score_thresh),
                        classes=scene_classes(), arch=f"maskrcnn_{MASKRCNN.arch}")
        model = edgeseg.load(path)
        start = time.perf_counter()
        clip = [(scene, model.instances(scene.image)) for scene in scene_clip(SceneSpec(size=hw), args.seed,
                                                                               args.frames)]
        took = time.perf_counter() - start
    print(f"reference Mask R-CNN on scene_clip(seed {args.seed}) at {hw[0]}x{hw[1]}, score threshold "
          f"{args.score_thresh}, {took / args.frames * 1000:.0f} ms/frame; the same detections to each tracker:")
    for name, make in contenders.items():
        step = make()
        frames = []
        start = time.perf_counter()
        for scene, result in clip:
            track_ids, track_boxes = step(result)
            frames.append(FrameTruth(scene.ids, scene.boxes, track_ids, track_boxes))
        per_frame = (time.perf_counter() - start) / args.frames * 1000
        print(f"  {name} ({per_frame:.2f} ms/frame): {mot_scores(frames).line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
