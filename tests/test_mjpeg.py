"""The live MJPEG view (``-o http://HOST:PORT``), read by a real HTTP client."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest

from edgeseg.errors import OutputError
from edgeseg.mjpeg import BOUNDARY, MjpegSink
from edgeseg.sinks import open_sink


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_jpegs(url: str, count: int) -> list[np.ndarray]:
    """The first *count* JPEG parts of a multipart stream, decoded."""
    frames: list[np.ndarray] = []
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        while len(frames) < count:
            line = resp.readline()
            if line.startswith(b"Content-Length:"):
                n = int(line.split(b":")[1])
                resp.readline()  # blank line
                image = cv2.imdecode(np.frombuffer(resp.read(n), np.uint8), cv2.IMREAD_COLOR)
                assert image is not None
                frames.append(np.asarray(image))
    return frames


def test_page_and_stream_with_two_viewers_one_of_them_stuck() -> None:
    port = _free_port()
    sink = open_sink(f"http://127.0.0.1:{port}")
    assert isinstance(sink, MjpegSink)
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        assert '<img src="/stream"' in page
        stuck = urllib.request.urlopen(f"http://127.0.0.1:{port}/stream", timeout=5)  # connected, never read
        got: list[np.ndarray] = []
        reader = threading.Thread(target=lambda: got.extend(_read_jpegs(f"http://127.0.0.1:{port}/stream", 3)))
        reader.start()
        frame = np.zeros((48, 64, 3), np.uint8)
        start = time.perf_counter()
        for i in range(200):  # the writer is never held up by the stuck viewer
            frame[:] = (i * 7) % 256
            sink.write(frame)
            time.sleep(0.005)
        assert time.perf_counter() - start < 5.0
        reader.join(timeout=10)
        assert len(got) == 3 and all(f.shape == (48, 64, 3) for f in got)
        assert len(sink.viewers) >= 1  # the stuck viewer is still connected; it cost the writer nothing
        stuck.close()
    finally:
        sink.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def test_a_port_in_use_and_unknown_schemes_are_clear_errors() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OutputError, match=rf"http://127.0.0.1:{port}: cannot serve the live view there .*the "
                                              r"port may be in use: choose another"):
            open_sink(f"http://127.0.0.1:{port}")
    with pytest.raises(OutputError, match=r"ftp://x: unknown output scheme ftp://; outputs are files, folders/, or "
                                          r"http://HOST:PORT"):
        open_sink("ftp://x")
    with pytest.raises(OutputError, match=r"rtsp://host/live: rtsp:// output .*use -o http://HOST:PORT"):
        open_sink("rtsp://host/live")
