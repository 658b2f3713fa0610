"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def timed(fn: Callable[[], T], runs: int, warmup: int = 1) -> tuple[float, T]:
    """Median wall time of *runs* calls of *fn* after *warmup* untimed calls (first-call
    allocation and lazy initialisation), and the last call's result."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def median_seconds(fn: Callable[[], object], runs: int, warmup: int = 1) -> float:
    """Median wall time of *runs* calls of *fn* after *warmup* untimed calls."""
    return timed(fn, runs, warmup)[0]


def alternate_in_processes(contenders: Sequence[str], child_argv: Callable[[str], list[str]], rounds: int,
                           env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Run each contender *rounds* times, taking turns, each run in its own process
    (``child_argv(name)``: the command, which prints one JSON object on its last line with
    ``seconds``, ``peak_mb`` and ``detections``), so that drift of the machine spreads over all
    of them. Returns per contender the median seconds, the largest peak memory (MB) and the last
    run's detections."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    for turn in range(rounds):
        for name in contenders:
            print(f"round {turn + 1}/{rounds}: {name} ...", file=sys.stderr)
            proc = subprocess.run(child_argv(name), capture_output=True, text=True, check=True, env=dict(env))
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {name: {"seconds": statistics.median(r["seconds"] for r in rs),
                   "peak_mb": max(r["peak_mb"] for r in rs), "detections": rs[-1]["detections"]}
            for name, rs in runs.items()}


def print_against_eager(results: Mapping[str, Mapping[str, Any]], eager: str) -> None:
    """One line per contender of :func:`alternate_in_processes`' results: time, speed-up over
    *eager*, peak memory, detections (when the contender counts them); then INT8 against FP32."""
    base = results[eager]["seconds"]
    for name, r in results.items():
        dets = f"  {r['detections']:3d} detections" if r["detections"] is not None else ""
        print(f"  {name:18} {r['seconds'] * 1000:8.0f} ms  {base / r['seconds']:5.2f}x eager  "
              f"peak memory {r['peak_mb']:6.0f} MB{dets}")
    print(f"  int8 vs fp32: {results['edgeseg_fp32']['seconds'] / results['edgeseg_int8']['seconds']:.2f}x")
