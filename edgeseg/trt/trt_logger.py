"""A TensorRT logger that keeps errors, so failures can name their cause in one line."""

from __future__ import annotations

import logging

import tensorrt as trt

log = logging.getLogger("edgeseg.tensorrt")


class CapturingLogger(trt.ILogger):
    """Forwards TensorRT's messages to Python logging (warnings and up by default) and keeps
    the errors for exception messages."""

    def __init__(self, verbose: bool = False) -> None:
        trt.ILogger.__init__(self)
        self.errors: list[str] = []
        self.verbose = verbose

    def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
        if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
            self.errors.append(msg)
            log.error(msg)
        elif severity == trt.ILogger.Severity.WARNING:
            log.warning(msg)
        elif self.verbose:
            log.info(msg)

    def last_error(self) -> str:
        return self.errors[-1] if self.errors else ""
