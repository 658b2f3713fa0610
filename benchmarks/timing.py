"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

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
