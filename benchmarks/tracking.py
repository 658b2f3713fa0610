"""Tracking on a generated clip whose identities are known: the reference Mask R-CNN (shipped
weights) with ``edgeseg.tracking`` on ``edgeseg.scenes.scene_clip``, scored by ``edgeseg.mot``
(ID switches, MOTA, IDF1; box IoU >= 0.5).

    python benchmarks/tracking.py                    # 300 frames at 256x256, seed 0
    python benchmarks/tracking.py --frames 600 --seed 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--score-thresh", type=float, default=0.3)
    args = p.parse_args(argv)

    import edgeseg
    from edgeseg.converters.maskrcnn.export import export_maskrcnn
    from edgeseg.converters.maskrcnn.graph import GraphOptions
    from edgeseg.converters.reference import MASKRCNN, reference_maskrcnn, scene_classes
    from edgeseg.mot import FrameTruth, mot_scores
    from edgeseg.scenes import SceneSpec, scene_clip
    from edgeseg.tracking import Tracked

    hw = MASKRCNN.frame_hw
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mrcnn.onnx"
        export_maskrcnn(reference_maskrcnn(), path, hw, GraphOptions(score_thresh=args.score_thresh),
                        classes=scene_classes(), arch=f"maskrcnn_{MASKRCNN.arch}")
        model = Tracked(edgeseg.load(path))
        frames = []
        start = time.perf_counter()
        for scene in scene_clip(SceneSpec(size=hw), args.seed, args.frames):
            result = model(scene.image)
            keep = result.track_ids > 0
            frames.append(FrameTruth(scene.ids, scene.boxes, result.track_ids[keep],
                                     np.asarray(result.boxes)[keep]))
        took = time.perf_counter() - start
    scores = mot_scores(frames)
    print(f"reference Mask R-CNN + edgeseg.tracking on scene_clip(seed {args.seed}) at {hw[0]}x{hw[1]}, "
          f"score threshold {args.score_thresh}, {took / args.frames * 1000:.0f} ms/frame")
    print("  " + scores.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
