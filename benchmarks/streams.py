"""Several file streams through one model: aggregate FPS for N = 1, 2, 4 (``edgeseg run M
--source A --source B ...``; one ONNX Runtime session shared by the streams' inference threads).

    python benchmarks/streams.py                  # the reference Mask R-CNN at 256x256, 60-frame clips
    python benchmarks/streams.py --frames 120 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per run (default: all cores)")
    args = p.parse_args(argv)

    import edgeseg
    from edgeseg.converters.maskrcnn.export import export_maskrcnn
    from edgeseg.converters.maskrcnn.graph import GraphOptions
    from edgeseg.converters.reference import MASKRCNN, reference_maskrcnn, scene_classes
    from edgeseg.pipeline import Pipeline, run_streams, shared
    from edgeseg.scenes import make_scene_clip
    from edgeseg.sinks import CallbackSink
    from edgeseg.sources import open_source

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        export_maskrcnn(reference_maskrcnn(), path, MASKRCNN.frame_hw, GraphOptions(score_thresh=0.3),
                        classes=scene_classes(), arch=f"maskrcnn_{MASKRCNN.arch}")
        clips = [make_scene_clip(Path(tmp) / f"clip{i}.mp4", frames=args.frames, size=MASKRCNN.frame_hw, seed=i)
                 for i in range(4)]
        model = shared(edgeseg.load(path, threads=args.threads))
        rates = {}
        for n in (1, 2, 4):
            pipes = [Pipeline(open_source(str(c)), model, CallbackSink(lambda r: None, needs_image=False),
                              draw=None, stream=i) for i, c in enumerate(clips[:n])]
            start = time.perf_counter()
            outcomes = run_streams(pipes)
            took = time.perf_counter() - start
            frames = sum(o.summary.frames_out for o in outcomes)
            rates[n] = frames / took
            print(f"  N = {n}: {frames} frames in {took:.1f} s, aggregate {rates[n]:.1f} FPS "
                  f"({rates[n] / rates[1]:.2f}x N = 1)")
    print(f"reference Mask R-CNN 256x256, {os.cpu_count()} cores, ONNX Runtime threads "
          f"{args.threads or 'default'}, one session for all streams")
    return 0


if __name__ == "__main__":
    sys.exit(main())
