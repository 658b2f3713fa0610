"""Throughput of the threaded pipeline against running its stages one after another.

    python -m benchmarks.pipeline_overlap [--frames 100] [--kind sleep|busy]

Four fake stages of known cost per frame: capture (a source), inference (the model), drawing and
writing (a sink). ``sleep`` stages wait (like a GPU or a camera: no CPU used), ``busy`` stages
spin in numpy/OpenCV (real CPU work, which releases the GIL but competes for the 2 cores).
Prints frames per second of the sequential loop, of the pipeline, and the pipeline's ratio to
the ideal: 1 / slowest stage (the best any overlap can do; the target is >= 0.9), and for busy
stages no more than cores / total CPU time per frame.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np

from edgeseg.pipeline import run_pipeline
from edgeseg.sinks import CallbackSink, FrameRecord
from edgeseg.sources import IterableSource

FRAME = np.zeros((720, 1280, 3), np.uint8)


def blur_rate() -> float:
    """Blurs of a 180x320 tile per second on one core (calibrates the busy stages)."""
    img = FRAME[:180, :320]
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.3:
        cv2.GaussianBlur(img, (5, 5), 0)
        n += 1
    return n / (time.perf_counter() - start)


def cost(seconds: float, kind: str, rate: float) -> Callable[[], None]:
    """A stage of *seconds*: sleeping, or a fixed number of OpenCV blurs that take that long on
    an idle core (real CPU work; OpenCV releases the GIL while it runs)."""
    if kind == "sleep":
        return lambda: time.sleep(seconds)
    count = max(1, round(seconds * rate))
    img = FRAME[:180, :320]

    def busy() -> None:
        for _ in range(count):
            cv2.GaussianBlur(img, (5, 5), 0)
    return busy


def measure(costs: dict[str, float], frames: int, kind: str, rate: float) -> tuple[float, float]:
    capture, infer, draw_, write = (cost(costs[k], kind, rate) for k in ("capture", "infer", "draw", "write"))

    def source() -> Iterator[np.ndarray]:
        for _ in range(frames):
            capture()
            yield FRAME

    def model(frame: np.ndarray) -> int:
        infer()
        return 0

    def draw(frame: np.ndarray, result: Any) -> np.ndarray:
        draw_()
        return frame

    def sink(record: FrameRecord) -> None:
        write()

    start = time.perf_counter()
    for frame in source():
        sink(FrameRecord(0, 0.0, frame, None, draw(frame, model(frame))))
    sequential = frames / (time.perf_counter() - start)
    summary = run_pipeline(IterableSource(source()), model, CallbackSink(sink), draw=draw)
    return sequential, summary.fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--kind", choices=["sleep", "busy", "both"], default="both")
    args = parser.parse_args()
    cases = {
        "equal 20 ms stages": {"capture": 0.02, "infer": 0.02, "draw": 0.02, "write": 0.02},
        "inference-bound 40 ms": {"capture": 0.005, "infer": 0.04, "draw": 0.01, "write": 0.01},
        "capture-bound 30 ms (camera)": {"capture": 0.03, "infer": 0.02, "draw": 0.005, "write": 0.005},
    }
    kinds = ["sleep", "busy"] if args.kind == "both" else [args.kind]
    cv2.setNumThreads(1)  # one core per busy stage, so the CPU limit below is exact
    rate = blur_rate()
    cores = os.cpu_count() or 1
    print(f"{'stages':30} {'kind':5} {'sequential':>11} {'pipeline':>9} {'ideal':>6} {'ratio':>6}  speed-up")
    for kind in kinds:
        for name, costs in cases.items():
            sequential, pipelined = measure(costs, args.frames, kind, rate)
            ideal = 1.0 / max(costs.values())
            if kind == "busy":
                # CPU work shares the cores: no schedule beats cores / total work per frame.
                ideal = min(ideal, cores / sum(costs.values()))
            print(f"{name:30} {kind:5} {sequential:7.1f} FPS {pipelined:5.1f} FPS {ideal:6.1f} "
                  f"{pipelined / ideal:6.2f}  x{pipelined / sequential:.2f}")
    print(f"ideal: 1 / slowest stage; for busy stages at most {cores} cores / total CPU time per frame")


if __name__ == "__main__":
    main()
