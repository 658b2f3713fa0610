"""A live view for headless robots: ``-o http://HOST:PORT`` serves the overlay as an MJPEG
stream (``/stream``) with a small HTML page at ``/`` that any browser shows.

Each viewer gets its own queue of one frame: the newest JPEG replaces one the viewer has not
taken yet, so a slow or stuck viewer only misses frames; it never slows inference or the other
outputs. The frame is JPEG-encoded once per frame, only while someone watches. The server runs in
daemon threads and stops with the run (``close``).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

from edgeseg import uris
from edgeseg.errors import OutputError
from edgeseg.sinks import Sink

BOUNDARY = "edgeseg-frame"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>edgeseg</title>
<style>body{margin:0;background:#111}img{max-width:100%;display:block;margin:auto}</style>
</head><body><img src="/stream" alt="edgeseg live view"></body></html>
"""


class _Viewer:
    """One connected viewer: the newest frame it has not sent yet."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.closed = False

    def offer(self, jpeg: bytes) -> None:
        with self.cond:
            self.jpeg = jpeg
            self.cond.notify()

    def take(self, timeout: float) -> bytes | None:
        with self.cond:
            self.cond.wait_for(lambda: self.jpeg is not None or self.closed, timeout)
            jpeg, self.jpeg = self.jpeg, None
            return jpeg


class MjpegSink(Sink):
    """An MJPEG server on *host*:*port* (see the module docstring); ``url`` says where."""

    def __init__(self, host: str, port: int, quality: int = 80) -> None:
        self.quality = quality
        self._closed = False
        self.frames = 0
        self.viewers: list[_Viewer] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # no per-request lines on the run's terminal

            def do_GET(self) -> None:
                if self.path in ("/", "/index.html"):
                    body = PAGE.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path == "/stream":
                    sink._serve(self)
                else:
                    self.send_error(404, "the live view is at / and /stream")

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise OutputError(f"http://{host}:{port}: cannot serve the live view there ({exc.strerror or exc}); "
                              "the port may be in use: choose another, e.g. -o http://0.0.0.0:8091") from exc
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, name="edgeseg-mjpeg", daemon=True)
        self._thread.start()

    @classmethod
    def from_uri(cls, uri: str) -> MjpegSink:
        """The view ``-o http://[HOST][:PORT]`` asks for (:func:`edgeseg.uris.http_output`)."""
        return cls(*uris.http_output(uri))

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        viewer = _Viewer()
        with self._lock:
            self.viewers.append(viewer)
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            handler.send_header("Cache-Control", "no-cache")
            handler.end_headers()
            while not viewer.closed:
                jpeg = viewer.take(timeout=0.5)
                if jpeg is None:
                    continue
                handler.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                    .encode() + jpeg + b"\r\n")
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the viewer went away
        finally:
            with self._lock:
                if viewer in self.viewers:
                    self.viewers.remove(viewer)

    def write(self, image: np.ndarray) -> None:
        with self._lock:
            viewers = list(self.viewers)
        if viewers:
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if ok:
                jpeg = buf.tobytes()
                for viewer in viewers:
                    viewer.offer(jpeg)
        self.frames += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            viewers, self.viewers = list(self.viewers), []
        for viewer in viewers:
            with viewer.cond:
                viewer.closed = True
                viewer.cond.notify()
        self.server.shutdown()
        self.server.server_close()
