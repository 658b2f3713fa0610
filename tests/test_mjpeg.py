"""The live MJPEG view (``-o http://HOST:PORT``), read by a real HTTP client."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest

from edgeseg.draw import draw_result
from edgeseg.errors import OutputError
from edgeseg.mjpeg import BOUNDARY, MjpegSink
from edgeseg.pipeline import Pipeline
from edgeseg.result import InstanceResult
from edgeseg.sinks import open_sink
from edgeseg.sources import IterableSource

# Debian's package (apt install chromium), or Google's build.
CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


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
    with pytest.raises(OutputError, match=r"ftp://x: unknown output scheme ftp://; outputs are files, folders/, "
                                          r"http://HOST:PORT"):
        open_sink("ftp://x")
    # (rtsp:// and udp:// outputs, with and without a GStreamer OpenCV: tests/test_gst_output.py)


def _one_object(hw: tuple[int, int]) -> InstanceResult:
    h, w = hw
    masks = np.zeros((1, h, w), np.uint8)
    cv2.ellipse(masks[0], (w // 2, h // 2), (w // 4, h // 4), 0, 0, 360, 1, -1)
    box = np.array([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]], np.float32)
    return InstanceResult(box, np.array([0.9], np.float32), np.array([1], np.int32), masks,
                          ("__background__", "thing"), ((0, 0, 0), (255, 40, 40)))


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt install chromium): the headless "
                                             "browser check of the live view needs one")
def test_headless_chromium_shows_the_overlay(tmp_path) -> None:
    """The pipeline's overlay, served live, screenshotted by a real browser: the page at / shows
    the MJPEG stream, and what it shows is the overlay, up to JPEG loss."""
    assert CHROMIUM is not None
    hw = (240, 320)
    frame = np.full((*hw, 3), 90, np.uint8)
    frame[:, : hw[1] // 2] = 30  # two halves, so a wrongly placed or scaled image shows
    result = _one_object(hw)
    expected = draw_result(frame, result)
    shot_taken = threading.Event()

    def frames():  # a live camera: frames until the screenshot is taken
        while not shot_taken.is_set():
            time.sleep(0.02)
            yield frame.copy()

    sink = MjpegSink("127.0.0.1", _free_port())
    pipe = Pipeline(IterableSource(frames()), lambda f: result, sink)
    runner = threading.Thread(target=pipe.run)
    runner.start()
    shot = tmp_path / "live.png"
    try:
        # The page puts the image at the top, centred: a 640x480 window shows it whole at 1:1.
        done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               "--window-size=640,480", f"--screenshot={shot}", "--timeout=5000", sink.url],
                              capture_output=True, text=True, timeout=120)
    finally:
        shot_taken.set()
        runner.join(timeout=10)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    assert not runner.is_alive() and pipe.summary.frames_out > 0
    page = cv2.imread(str(shot))
    assert page is not None and page.shape == (480, 640, 3)
    x0 = (640 - hw[1]) // 2
    shown = page[: hw[0], x0 : x0 + hw[1]].astype(np.int16)
    assert np.abs(shown - expected).mean() < 4.0  # the overlay, up to JPEG loss
    inside = result.masks[0].astype(bool)
    # ...and the overlay is really there: the object is tinted, not the bare frame
    assert np.abs(shown[inside] - frame[inside]).mean() > 20  # (JPEG loss alone: under 2)
    assert np.abs(page[300:, :].astype(np.int16) - 17).max() <= 2  # below it, the page's #111 background
