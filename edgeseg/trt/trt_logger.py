"""The process's one TensorRT logger, which keeps errors so that failures can name their cause.

TensorRT takes one logger per process: the first one given to a builder, runtime or refitter
is also the one its global code (the plugin registry, version-compatible engines' lean runtime)
logs to, and a later, different one only draws a warning. So every builder, parser and runtime
edgeseg makes gets :data:`LOGGER`. Several threads use it at once (a lane per camera stream, a
build), so an error is attributed to the work that caused it by thread: code that wants the
errors of one call runs it inside :meth:`CapturingLogger.capture`, which collects what TensorRT
logs from that thread meanwhile. Everything kept is bounded.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import tensorrt as trt

log = logging.getLogger("edgeseg.tensorrt")

#: errors kept per capture, and of the whole process (the newest)
KEPT_ERRORS = 16


class Capture:
    """The TensorRT errors logged from one thread while a :meth:`CapturingLogger.capture` block ran."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.errors: deque[str] = deque(maxlen=KEPT_ERRORS)

    def last_error(self) -> str:
        """The newest error, or ``""``."""
        return self.errors[-1] if self.errors else ""


class CapturingLogger(trt.ILogger):
    """Forwards TensorRT's messages to Python logging (warnings and up; info too while a verbose
    capture is open anywhere, as TensorRT may log them from its own threads) and hands errors to
    the captures open in the thread that logged them."""

    def __init__(self) -> None:
        trt.ILogger.__init__(self)
        self._local = threading.local()
        self._lock = threading.Lock()
        #: the newest errors of every thread (for diagnostics; not attributed)
        self.recent: deque[str] = deque(maxlen=KEPT_ERRORS)
        self._verbose = 0  # verbose captures open

    def _scopes(self) -> list[Capture]:
        scopes: list[Capture] | None = getattr(self._local, "scopes", None)
        if scopes is None:
            scopes = self._local.scopes = []
        return scopes

    def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
        scopes = self._scopes()
        if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
            with self._lock:
                self.recent.append(msg)
            for scope in scopes:
                scope.errors.append(msg)
            log.error(msg)
        elif severity == trt.ILogger.Severity.WARNING:
            log.warning(msg)
        elif self._verbose:
            log.info(msg)

    @contextmanager
    def capture(self, verbose: bool = False) -> Iterator[Capture]:
        """Collect the errors TensorRT logs from this thread inside the block (nested blocks
        each get them); *verbose*: forward TensorRT's info messages while it runs."""
        scope = Capture(verbose)
        scopes = self._scopes()
        scopes.append(scope)
        with self._lock:
            self._verbose += verbose
        try:
            yield scope
        finally:
            scopes.remove(scope)
            with self._lock:
                self._verbose -= verbose


#: the logger of every TensorRT object edgeseg makes
LOGGER = CapturingLogger()
