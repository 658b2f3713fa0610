"""Progress lines for long work (export, engine build, video files)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TextIO


class Steps:
    """Numbered steps printed as ``[2/4] exporting ONNX ... 3.1 s``. Silent when *quiet*."""

    def __init__(self, total: int, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.quiet = quiet

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        self.done += 1
        if not self.quiet:
            print(f"[{self.done}/{self.total}] {text} ...", end="", file=self.stream, flush=True)
        start = time.perf_counter()
        ok = False
        try:
            yield
            ok = True
        finally:
            if not self.quiet:
                status = f"{time.perf_counter() - start:.1f} s" if ok else "failed"
                print(f" {status}", file=self.stream, flush=True)


class FrameProgress:
    """A one-line frame counter with throughput for video files: redrawn in place on a
    terminal, a line every 10% otherwise (logs stay short)."""

    def __init__(self, total: int | None, stream: TextIO | None = None, quiet: bool = False,
                 label: str = "frame") -> None:
        self.total = total
        self.label = label
        self.count = 0
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1
        self._tty = self.stream.isatty()

    @property
    def fps(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.count / elapsed if elapsed > 0 else 0.0

    def update(self, n: int = 1) -> None:
        self.count += n
        if self.quiet:
            return
        of = f"/{self.total}" if self.total else ""
        line = f"{self.label} {self.count}{of}  {self.fps:.1f} FPS"
        now = time.perf_counter()
        if self._tty:
            if now - self._last_draw >= 0.25:
                print(f"\r{line}", end="", file=self.stream, flush=True)
                self._last_draw = now
        elif self.total:
            decile = self.count * 10 // self.total
            if decile != self._last_decile:
                print(line, file=self.stream, flush=True)
                self._last_decile = decile

    def finish(self) -> None:
        if self._tty and not self.quiet:
            print(file=self.stream, flush=True)
