"""Several file streams through one model: aggregate FPS for N = 1, 2, 4 (``edgeseg run M
--source A --source B ...``). On the CPU one ONNX Runtime session serves the streams' inference
threads; on an engine each stream's thread gets its own execution context and CUDA stream.

    python benchmarks/streams.py                  # the reference Mask R-CNN at 256x256, 60-frame clips
    python benchmarks/streams.py --frames 120 --threads 1
    python benchmarks/streams.py --model maskrcnn.engine   # any model file (on a GPU: an engine)

Rounds alternate the order of N (this VM drifts by tens of percent); the medians are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COUNTS = (1, 2, 4)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per run (default: all cores)")
    p.add_argument("--model", type=Path, default=None,
                   help="a model file (.onnx or .engine); default: the reference Mask R-CNN, converted here")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)

    import edgeseg
    from edgeseg.pipeline import Pipeline, run_streams, shared
    from edgeseg.scenes import make_scene_clip
    from edgeseg.sinks import CallbackSink
    from edgeseg.sources import open_source

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            from edgeseg.converters.maskrcnn.export import export_maskrcnn
            from edgeseg.converters.maskrcnn.graph import GraphOptions
            from edgeseg.converters.reference import MASKRCNN, reference_maskrcnn, scene_classes

            path = Path(tmp) / "m.onnx"
            export_maskrcnn(reference_maskrcnn(), path, MASKRCNN.frame_hw, GraphOptions(score_thresh=0.3),
                            classes=scene_classes(), arch=f"maskrcnn_{MASKRCNN.arch}")
        loaded = edgeseg.load(path, threads=args.threads)
        clips = [make_scene_clip(Path(tmp) / f"clip{i}.mp4", frames=args.frames, size=loaded.frame_hw, seed=i)
                 for i in range(max(COUNTS))]
        model = shared(loaded)
        rates: dict[int, list[float]] = {n: [] for n in COUNTS}
        for r in range(args.rounds):
            for n in COUNTS if r % 2 == 0 else COUNTS[::-1]:
                pipes = [Pipeline(open_source(str(c)), model, CallbackSink(lambda r: None, needs_image=False),
                                  draw=None, stream=i) for i, c in enumerate(clips[:n])]
                start = time.perf_counter()
                outcomes = run_streams(pipes)
                took = time.perf_counter() - start
                frames = sum(o.summary.frames_out for o in outcomes)
                rates[n].append(frames / took)
                print(f"  round {r + 1}, N = {n}: {frames} frames in {took:.1f} s, aggregate {frames / took:.1f} FPS")
        median = {n: statistics.median(v) for n, v in rates.items()}
        lanes = getattr(loaded.backend, "lanes", None)
    print(f"{path.name if args.model else 'reference Mask R-CNN'} {loaded.frame_hw[0]}x{loaded.frame_hw[1]} on "
          f"{loaded.backend.name}, {os.cpu_count()} cores, ONNX Runtime threads {args.threads or 'default'}"
          + (f", {lanes} execution contexts" if lanes is not None else ", one session for all streams"))
    for n in COUNTS:
        print(f"N = {n}: median aggregate {median[n]:.1f} FPS ({median[n] / median[1]:.2f}x N = 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
