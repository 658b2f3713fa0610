"""Time drawing one frame: instance results (masks, boxes, labels) and a semantic label map.

    python -m benchmarks.draw_speed [--frame 720x1280] [--instances 20] [--runs 50]

Synthetic results shaped like Mask R-CNN's (elliptical masks inside their boxes, frame-size
masks, COCO-like labels); prints the median milliseconds per frame, wall and this thread's CPU
time (OpenCV limited to one thread, as in the pipeline where the model uses the other cores).
The target is <= 5 ms for 20 instances at 720p.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np

from benchmarks.timing import median_seconds
from edgeseg.draw import draw_hud, draw_result, hud_lines
from edgeseg.result import InstanceResult, SemanticResult


def synthetic_instances(hw: tuple[int, int], n: int, seed: int = 0) -> InstanceResult:
    """*n* objects with elliptical masks filling boxes of 5-40 % of the frame's size."""
    rng = np.random.default_rng(seed)
    h, w = hw
    boxes = np.zeros((n, 4), np.float32)
    masks = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        bw, bh = rng.uniform(0.05, 0.4) * w, rng.uniform(0.05, 0.4) * h
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        boxes[i] = (x0, y0, x0 + bw, y0 + bh)
        centre = (round(x0 + bw / 2), round(y0 + bh / 2))
        cv2.ellipse(masks[i], centre, (round(bw / 2), round(bh / 2)), 0, 0, 360, 1, -1)
    classes = tuple(f"class{i}" for i in range(91))
    palette = tuple(tuple(int(v) for v in rng.integers(0, 255, 3)) for _ in range(91))
    scores = np.sort(rng.uniform(0.3, 1.0, n).astype(np.float32))[::-1].copy()
    labels = rng.integers(1, 91, n).astype(np.int32)
    return InstanceResult(boxes, scores, labels, masks, classes, palette)  # type: ignore[arg-type]


def cpu_ms(fn: Callable[[], object], runs: int) -> float:
    """Median CPU time of this thread per call, in ms: what the drawing costs when other
    processes share the cores (wall time then includes waiting for a core)."""
    fn()
    times = []
    for _ in range(runs):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return statistics.median(times) * 1e3


def report(name: str, fn: Callable[[], object], runs: int) -> None:
    wall = median_seconds(fn, runs, warmup=3) * 1e3
    print(f"{name}: {wall:.2f} ms/frame wall, {cpu_ms(fn, runs):.2f} ms CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frame", default="720x1280", help="HEIGHTxWIDTH")
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    h, w = (int(v) for v in args.frame.lower().split("x"))
    cv2.setNumThreads(1)  # the pipeline's other stages use the other cores
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    inst = synthetic_instances((h, w), args.instances)
    area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in inst.boxes) / (h * w)
    report(f"instances: {args.instances} at {h}x{w} (boxes cover {area:.1f} frames)",
           lambda: draw_result(frame, inst), args.runs)

    classes = tuple(f"class{i}" for i in range(19))
    palette = tuple(tuple(int(v) for v in rng.integers(0, 255, 3)) for _ in range(19))
    label_map = cv2.resize(rng.integers(0, 19, (h // 32, w // 32), dtype=np.uint8), (w, h),
                           interpolation=cv2.INTER_NEAREST)
    sem = SemanticResult(label_map, classes, palette)  # type: ignore[arg-type]
    report(f"semantic: 19 classes at {h}x{w}, with legend", lambda: draw_result(frame, sem), args.runs)

    image = frame.copy()
    report("HUD", lambda: draw_hud(image, hud_lines(29.97, 84.0, 3)), args.runs)


if __name__ == "__main__":
    main()
