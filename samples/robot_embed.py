"""A fixed-rate control loop that acts on the newest segmentation without ever waiting for one.

    python samples/robot_embed.py MODEL.onnx|MODEL.engine [--source 0|csi://0|clip.mp4] [--rate 20]
                                  [--seconds N] [--max-age 0.5] [--min-score 0.5] [--threads N]

Inference runs in a background thread at whatever pace the model allows (an edgeseg Pipeline whose
callback sink stores each result in a small lock-protected ``LatestResult``). The control loop
ticks at --rate Hz in the main thread, takes the newest result without blocking and prints per
tick the age of that result (camera capture to now) and the nearest object: for instance models
the detection lowest in the image (on flat ground, the closest to a forward-looking camera), for
semantic models the class covering most of the bottom third of the frame; with its centre in
pixels. A result older than --max-age seconds is not acted on. A video file stands in for a camera:
it is played at its own frame rate, over and over.

Stop with Ctrl-C or SIGTERM (what systemd, `docker stop` and ros2 launch send): the current tick
ends, the pipeline stops, the summary is printed and the exit code is 0. --seconds N stops after
N seconds.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import numpy as np

import edgeseg
from edgeseg.pipeline import Pipeline
from edgeseg.sinks import CallbackSink, FrameRecord
from edgeseg.sources import IterableSource, Source, open_source

PROG = "robot_embed"


@dataclass(frozen=True)
class Target:
    """What the controller steers by: a class name and a centre in frame pixels (x right, y down)."""

    name: str
    x: float
    y: float
    score: float | None  # detection score; None for a semantic region


@dataclass(frozen=True)
class Observation:
    """One processed frame, reduced to what the control loop needs."""

    frame_index: int
    captured: float  # time.perf_counter() when the camera delivered the frame
    target: Target | None


class LatestResult:
    """The newest observation, written by the inference thread and read by the control loop.

    Only the newest value is kept: a controller wants the freshest view of the world, not a queue
    of stale ones. The lock makes ``put`` and ``get`` safe from any thread (also on free-threaded
    Python) and is held for a few instructions only, so the control loop never really waits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Observation | None = None

    def put(self, value: Observation) -> None:
        with self._lock:
            self._value = value

    def get(self) -> Observation | None:
        """The newest observation, None before the first."""
        with self._lock:
            return self._value


def nearest_target(result: Any, min_score: float) -> Target | None:
    """The object a ground robot would meet first, or None."""
    if isinstance(result, edgeseg.InstanceResult):
        keep = np.flatnonzero(result.scores >= min_score)
        if keep.size == 0:
            return None
        # On a flat floor the object whose box reaches lowest in the image is the closest one.
        i = int(keep[np.argmax(result.boxes[keep, 3])])
        x0, y0, x1, y1 = (float(v) for v in result.boxes[i])
        return Target(result.classes[int(result.labels[i])], (x0 + x1) / 2, (y0 + y1) / 2, float(result.scores[i]))
    if isinstance(result, edgeseg.SemanticResult):
        # The bottom third of the frame is the ground right in front of the robot.
        top = result.label_map.shape[0] * 2 // 3
        band = result.label_map[top:]
        cls = int(np.argmax(np.bincount(band.ravel())))
        ys, xs = np.nonzero(band == cls)
        name = result.classes[cls] if cls < len(result.classes) else str(cls)
        # +0.5: the centre of pixel (i, j) is at (j + 0.5, i + 0.5), as for boxes.
        return Target(name, float(xs.mean()) + 0.5, float(ys.mean()) + top + 0.5, None)
    return None


def play_in_real_time(path: str, fps: float) -> Iterator[np.ndarray]:
    """The frames of a video file at its own frame rate, over and over: a stand-in for a camera."""
    period = 1.0 / fps
    due = time.perf_counter()
    while True:
        delivered = False
        with open_source(path) as video:
            for frame in video:
                time.sleep(max(0.0, due - time.perf_counter()))
                due += period
                delivered = True
                yield frame
        if not delivered:  # an empty file would loop forever
            return


def open_camera(uri: str) -> Source:
    """Open *uri*; a file is wrapped to behave like a camera (live: its own pace, stale frames dropped)."""
    source = open_source(uri)
    if source.live:
        return source
    fps = source.fps
    source.close()
    return IterableSource(play_in_real_time(uri, fps), live=True, fps=fps, uri=uri)


@dataclass
class LoopStats:
    """What the control loop did, for the summary line."""

    ticks: int = 0
    late: int = 0  # ticks that started after the next one was due (the tick's work overran)
    used: int = 0  # ticks that acted on a fresh enough result
    ages: tuple[float, ...] = ()
    elapsed: float = 0.0
    last_tick: float = 0.0  # seconds from the first tick to the last
    reason: str = "stopped"

    @property
    def rate(self) -> float:
        """Ticks per second actually achieved."""
        return (self.ticks - 1) / self.last_tick if self.ticks > 1 and self.last_tick > 0 else 0.0


def control_loop(latest: LatestResult, rate: float, max_age: float, seconds: float | None,
                 stop: threading.Event, inference: threading.Thread) -> LoopStats:
    """Tick at *rate* Hz until *stop* is set, *seconds* have passed or inference has ended."""
    period = 1.0 / rate
    stats = LoopStats()
    ages: list[float] = []
    start = time.perf_counter()
    due = start
    while not stop.is_set():
        now = time.perf_counter()
        if seconds is not None and now - start >= seconds:
            stats.reason = f"{seconds:g} s done"
            break
        if not inference.is_alive():
            stats.reason = "inference ended"
            break
        observation = latest.get()  # never waits for inference
        line = f"tick {stats.ticks:4d}  t={now - start:6.3f} s  "
        if observation is None:
            line += "no result yet"
        else:
            age = now - observation.captured
            line += f"result age {age * 1e3:4.0f} ms (frame {observation.frame_index})  "
            if age > max_age:
                # Acting on an old view of the world is worse than not acting: hold still.
                line += "too old: holding"
            else:
                stats.used += 1
                ages.append(age)
                t = observation.target
                if t is None:
                    line += "nothing ahead"
                else:
                    score = f" {t.score:.2f}" if t.score is not None else ""
                    line += f"nearest: {t.name}{score} at ({t.x:.0f}, {t.y:.0f})"
        print(line, flush=True)  # flush: a supervisor reading the log sees every tick as it happens
        stats.ticks += 1
        stats.last_tick = now - start
        due += period
        delay = due - time.perf_counter()
        if delay < 0:
            # Overran: start again from now instead of firing the missed ticks in a burst.
            stats.late += 1
            due = time.perf_counter()
            delay = 0.0
        stop.wait(delay)  # returns at once when a signal handler sets *stop*
    stats.elapsed = time.perf_counter() - start
    stats.ages = tuple(ages)
    return stats


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="A fixed-rate control loop using the newest result.")
    p.add_argument("model", help=".onnx from `edgeseg convert` or .engine from `edgeseg build`")
    p.add_argument("--source", default="0", help="camera index, /dev/videoN, csi://N, a stream or a video file")
    p.add_argument("--rate", type=float, default=20.0, help="control loop rate in Hz (default 20)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds (default: run until stopped)")
    p.add_argument("--max-age", type=float, default=0.5, help="ignore results older than this, in s (default 0.5)")
    p.add_argument("--min-score", type=float, default=0.5, help="instance models: ignore weaker detections")
    p.add_argument("--threads", type=int, help="CPU threads for ONNX Runtime (default: all cores)")
    args = p.parse_args(argv)
    if args.rate <= 0:
        p.error(f"--rate must be positive, got {args.rate}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model = edgeseg.load(args.model, threads=args.threads)
        source = open_camera(args.source)
    except edgeseg.EdgesegError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1

    latest = LatestResult()

    def on_result(record: FrameRecord) -> None:
        # Runs in the pipeline's thread: reduce the result to a target here, once per frame, so
        # each tick of the control loop costs nothing but a lock and a print.
        captured = time.perf_counter() - record.latency
        latest.put(Observation(record.index, captured, nearest_target(record.result, args.min_score)))

    # draw=None and a sink that needs no image: the pipeline only captures and infers. A live
    # source keeps only its newest frame, so inference never works on a stale one.
    pipeline = Pipeline(source, model, CallbackSink(on_result, needs_image=False), draw=None)
    failure: list[BaseException] = []

    def run_inference() -> None:
        try:
            pipeline.run()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    inference = threading.Thread(target=run_inference, name="inference", daemon=True)

    # Ctrl-C (SIGINT) and SIGTERM only set an event: the loop finishes its tick and everything is
    # shut down in order, instead of an exception landing somewhere in the middle of a tick.
    stop = threading.Event()
    stopped_by: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped_by.append(signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    inference.start()
    try:
        stats = control_loop(latest, args.rate, args.max_age, args.seconds, stop, inference)
    finally:
        pipeline.stop()  # capture stops; the frame in flight finishes
        inference.join(timeout=5.0)
        for s, handler in previous.items():
            signal.signal(s, handler)

    why = f"stopped by {stopped_by[0]}" if stopped_by else stats.reason
    ages = f", age mean {np.mean(stats.ages) * 1e3:.0f} ms, max {max(stats.ages) * 1e3:.0f} ms" if stats.ages else ""
    print(f"{why}: {stats.ticks} ticks in {stats.elapsed:.2f} s ({stats.rate:.1f} Hz), {stats.late} late; "
          f"{stats.used} acted on a result{ages}")
    print(f"inference: {pipeline.summary.describe()}")
    if failure and not isinstance(failure[0], KeyboardInterrupt):
        print(f"{PROG}: error: {failure[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
