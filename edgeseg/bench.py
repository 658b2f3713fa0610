"""``edgeseg bench``: per-stage latency of a model on this machine.

A frame goes through four stages, timed separately with a wall clock: *preprocess* (check the
frame, fit it to the model's frame size), *inference* (the backend: ONNX Runtime on the CPU, the
TensorRT engine on the GPU, copies included), *postprocess* (decode the raw outputs into a result
in frame coordinates) and *draw* (the overlay ``edgeseg run`` writes). The backend's own breakdown
of inference is averaged alongside (graph segments and custom ops on the CPU; the engine's GPU
time from CUDA events on TensorRT). Times are milliseconds; FPS is 1000 / mean total.
"""

from __future__ import annotations

import resource
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg import draw, ranges
from edgeseg.model import Model

STAGES = ("preprocess", "inference", "postprocess", "draw")


@dataclass(frozen=True)
class StageStats:
    """Latency of one stage over the timed runs, milliseconds."""

    name: str
    mean_ms: float
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, name: str, seconds: Sequence[float]) -> StageStats:
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        return cls(name, float(ms.mean()), float(np.percentile(ms, 50)), float(np.percentile(ms, 99)))


@dataclass(frozen=True)
class BenchReport:
    """What ``edgeseg bench`` measured."""

    model: str
    backend: str
    kind: str
    arch: str
    frame_hw: tuple[int, int]
    runs: int
    warmup: int
    stages: list[StageStats]
    total: StageStats
    inner: list[StageStats] = field(default_factory=list)
    peak_memory_mb: float = 0.0

    @property
    def fps(self) -> float:
        return 1000.0 / self.total.mean_ms if self.total.mean_ms > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fps"] = self.fps
        return data

    def table(self) -> str:
        """The report as text for people."""
        h, w = self.frame_hw
        lines = [
            f"{self.model}: {self.kind} {self.arch} on {self.backend}, frame {h}x{w}, "
            f"{self.runs} runs after {self.warmup} warm-up",
            f"{'stage':<34}{'mean':>9}{'p50':>9}{'p99':>9}  (ms)",
        ]
        for s in (*self.stages, self.total):
            lines.append(f"{s.name:<34}{s.mean_ms:9.1f}{s.p50_ms:9.1f}{s.p99_ms:9.1f}")
        if self.inner:
            lines.append("inference breakdown:")
            lines += [f"  {s.name[:32]:<32}{s.mean_ms:9.1f}{s.p50_ms:9.1f}{s.p99_ms:9.1f}" for s in self.inner]
        lines.append(f"FPS {self.fps:.1f} (1 / mean total); peak memory {self.peak_memory_mb:.0f} MB")
        return "\n".join(lines)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def bench(model: Model, frames: Sequence[np.ndarray], runs: int = 30, warmup: int = 3,
          with_draw: bool = True) -> BenchReport:
    """Time *runs* calls of *model* on *frames* (cycled) after *warmup* untimed ones."""
    ranges.check("runs", runs, 1, integer=True)
    ranges.check("warmup", warmup, 0, integer=True)
    times: dict[str, list[float]] = defaultdict(list)
    inner: dict[str, list[float]] = defaultdict(list)
    for i in range(warmup + runs):
        frame = frames[i % len(frames)]
        t0 = time.perf_counter()
        fitted = model.preprocess(frame)
        t1 = time.perf_counter()
        outputs = model.infer(fitted)
        t2 = time.perf_counter()
        result = model.decode(outputs, (frame.shape[0], frame.shape[1]))
        t3 = time.perf_counter()
        if with_draw:
            draw.draw_result(frame, result)
        t4 = time.perf_counter()
        if i < warmup:
            continue
        for name, seconds in zip((*STAGES, "total"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
            times[name].append(seconds)
        per_part: dict[str, float] = defaultdict(float)
        for part, seconds in model.backend.inner_timings():
            per_part[part] += seconds
        for part, seconds in per_part.items():
            inner[part].append(seconds)
    stages = [StageStats.of(name, times[name]) for name in STAGES if with_draw or name != "draw"]
    m = model.metadata
    return BenchReport(
        model=Path(model.path).name, backend=model.backend.name, kind=m.kind, arch=m.arch, frame_hw=m.frame_hw,
        runs=runs, warmup=warmup, stages=stages, total=StageStats.of("total", times["total"]),
        inner=[StageStats.of(name, values) for name, values in inner.items()], peak_memory_mb=peak_memory_mb(),
    )


def bench_frames(source: str | None, count: int, frame_hw: tuple[int, int]) -> list[np.ndarray]:
    """Frames to time: up to *count* from *source* (any ``edgeseg run`` source), else scikit-image's
    photos, else a generated gradient (content matters for instance models: say which was used)."""
    if source is not None:
        from edgeseg.sources import open_source

        src = open_source(source)
        frames: list[np.ndarray] = []
        try:
            for frame in src:
                frames.append(frame)
                if len(frames) >= count:
                    break
        finally:
            src.close()
        if not frames:
            from edgeseg.errors import SourceError

            raise SourceError(f"{source}: no frames")
        return frames
    try:
        from edgeseg.democlip import demo_photos

        return demo_photos()
    except ImportError:
        h, w = frame_hw
        ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
        return [np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8)]
