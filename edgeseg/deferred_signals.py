"""Hold Ctrl-C and SIGTERM back while a step that must not be cut in half runs.

The pipeline's writer hands each frame to the sinks and then counts it. A KeyboardInterrupt raised
between the two (Python delivers signals between any two bytecodes of the main thread) leaves a
video with one frame more than the summary says was written. While :meth:`DeferredSignals.held`
is active, a SIGINT or SIGTERM is only noted; its handler runs as soon as the step is over, so
the interrupt still arrives, one frame later at most, and the counts are always what was written.
The same signal again while one is held is acted on at once: pressing Ctrl-C twice forces.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Handler = Callable[[int, FrameType | None], Any]


class DeferredSignals:
    """Context manager for a whole run; :meth:`held` marks each step that must finish whole.

    Only Python-level handlers are wrapped (Python's default Ctrl-C handler, the CLI's SIGTERM
    handler, a user's own), and only in the main thread, the one signals reach; anywhere else,
    and for signals left to the OS (``SIG_DFL``/``SIG_IGN``), it does nothing.
    """

    def __init__(self) -> None:
        self._previous: dict[int, Handler] = {}
        self._holding = False
        self._pending: list[tuple[int, FrameType | None]] = []

    def __enter__(self) -> DeferredSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                previous = signal.getsignal(sig)
                if callable(previous):
                    self._previous[sig] = previous
                    signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._holding and all(s != signum for s, _ in self._pending):
            self._pending.append((signum, frame))
            return
        self._previous[signum](signum, frame)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Run the block with signals noted, not acted on; then run their handlers (which may
        raise KeyboardInterrupt). If the block raised, its error is what ends the step and the
        signals noted meanwhile are dropped (they would only replace that error)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            pending, self._pending = self._pending, []
        for signum, frame in pending:
            self._previous[signum](signum, frame)
