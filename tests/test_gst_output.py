"""``-o udp://`` and ``-o rtsp://``: H.264 through GStreamer (edgeseg/gst_output.py).

The pipelines and the errors are tested everywhere. Sending for real needs an OpenCV built with
GStreamer, which pip's wheels are not: where the venv's OpenCV lacks it, the end-to-end test looks
for another Python whose OpenCV has it (Debian's python3-opencv under /usr/bin/python3), runs
edgeseg's sink there, and receives with gst-launch-1.0 (UDP) or a small RTSP server
(tests/rtsp_record_server.py); it is skipped, saying what is missing, where neither exists.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.errors import OutputError
from edgeseg.gst_output import ENCODERS, output_pipeline
from edgeseg.sinks import open_sink
from edgeseg.sources import gstreamer_available

ROOT = Path(__file__).resolve().parents[1]
X264 = ENCODERS["x264"]


def test_each_scheme_has_its_pipeline() -> None:
    udp = output_pipeline("udp://192.168.1.20:5000", X264, fps=25)
    assert udp.startswith("appsrc is-live=true do-timestamp=true format=time ! videoconvert ! ")
    assert "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! h264parse" in udp  # a key frame a second
    assert udp.endswith('! rtph264pay config-interval=1 pt=96 ! udpsink host="192.168.1.20" port=5000 sync=false '
                        "async=false")
    # the RTSP URI goes through whole: credentials, query, an IPv6 host in brackets
    for uri in ("rtsp://mediamtx:8554/robot/front", "rtsp://user:pw@[::1]:8554/robot?token=abc"):
        assert output_pipeline(uri, X264).endswith(f'! h264parse ! rtspclientsink location="{uri}" protocols=tcp')
    jetson = output_pipeline("udp://10.0.0.2:5000", ENCODERS["jetson"], fps=30)
    assert "nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc insert-sps-pps=true idrinterval=30" \
        in jetson


def test_a_jetson_tries_nvenc_first_then_x264(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeseg.gst_output as gst

    monkeypatch.setattr(gst, "on_jetson", lambda: True)
    assert [e.name for e in gst.encoders()] == ["jetson", "x264"]  # an Orin Nano has no NVENC
    monkeypatch.setattr(gst, "on_jetson", lambda: False)
    assert [e.name for e in gst.encoders()] == ["x264"]


@pytest.mark.parametrize(("uri", "message"), [
    ("udp://10.0.0.2", r"udp://10.0.0.2: give the receiver's address and port, e.g. -o udp://192.168.1.20:5000"),
    ("rtsp://server:8554", r"rtsp://server:8554: give the RTSP server and a stream path, e.g. "
                           r"-o rtsp://localhost:8554/robot"),
    ("udp://10.0.0.2:http", r"udp://10.0.0.2:http: the port must be a number from 1 to 65535"),
    ("udp://10.0.0.2:70000", r"udp://10.0.0.2:70000: the port must be a number from 1 to 65535"),
    ("rtsp://server:0/x", r"rtsp://server:0/x: the port must be a number from 1 to 65535"),
    ('rtsp://server/a"b', r'rtsp://server/a"b: an output URI cannot contain a double quote'),
])
def test_an_incomplete_uri_says_what_it_lacks(uri: str, message: str) -> None:
    with pytest.raises(OutputError, match=message):
        output_pipeline(uri, X264)


def test_an_rtsp_server_that_does_not_answer_is_named() -> None:
    from edgeseg.gst_output import check_rtsp_server

    port = _free_port(socket.SOCK_STREAM)  # nothing listens there
    with pytest.raises(OutputError, match=rf"rtsp://127.0.0.1:{port}/robot: no RTSP server answers at "
                                          rf"127.0.0.1:{port} \(.*\); start one that accepts published streams"):
        check_rtsp_server(f"rtsp://127.0.0.1:{port}/robot")


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer; this tests the error without it")
def test_without_gstreamer_in_opencv_the_error_names_it() -> None:
    for uri in ("udp://127.0.0.1:5000", "rtsp://localhost:8554/robot"):
        with pytest.raises(OutputError, match=r"output goes through GStreamer and needs OpenCV built with it, which "
                                              r"this OpenCV is not .*or use -o http://HOST:PORT"):
            open_sink(uri)


def _python_with_gstreamer_opencv() -> str | None:
    for python in (sys.executable, "/usr/bin/python3"):
        if not Path(python).exists():
            continue
        probe = subprocess.run([python, "-c", "import cv2, re; "
                                "print(re.search(r'GStreamer:\\s*(\\S+)', cv2.getBuildInformation()).group(1))"],
                               capture_output=True, text=True, timeout=60)
        if probe.returncode == 0 and probe.stdout.strip() == "YES":
            return python
    return None


SENDER = """
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from edgeseg.gst_output import GstStreamSink
sink = GstStreamSink(sys.argv[2], 30)
image = np.load(sys.argv[3])
for _ in range(int(sys.argv[4])):
    sink.write(image)
    time.sleep(1 / 30)
sink.close()
print(sink.frames)
"""

RECEIVE_UDP = ("udpsrc port={port} caps=application/x-rtp,media=video,encoding-name=H264,payload=96 ! "
               "rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! pngenc snapshot=true ! filesink location={out}")


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def gst_python() -> str:
    if shutil.which("gst-launch-1.0") is None:
        pytest.skip("no GStreamer here (apt install gstreamer1.0-tools gstreamer1.0-plugins-good "
                    "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav)")
    python = _python_with_gstreamer_opencv()
    if python is None:
        pytest.skip("no Python here has an OpenCV built with GStreamer (Debian: apt install python3-opencv)")
    return python


def _send(python: str, uri: str, tmp_path: Path, frames: int = 120) -> np.ndarray:
    image = np.zeros((240, 320, 3), np.uint8)
    image[:, 160:] = (0, 0, 255)
    image[60:180, 40:120] = (255, 255, 0)
    np.save(tmp_path / "image.npy", image)
    sent = subprocess.run([python, "-c", SENDER, str(ROOT), uri, str(tmp_path / "image.npy"), str(frames)],
                          capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0 and sent.stdout.strip() == str(frames), sent.stderr[-2000:]
    return image


def _wait_for_png(path: Path, seconds: float) -> np.ndarray | None:
    """The image once the receiver has written it whole (filesink creates the file first)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = cv2.imread(str(path)) if path.exists() else None
        if got is not None:
            return np.asarray(got)
        time.sleep(0.2)
    return None


def _received(path: Path, sent: np.ndarray) -> None:
    got = _wait_for_png(path, 10.0)
    assert got is not None and got.shape == sent.shape
    assert np.abs(got.astype(np.int16) - sent).mean() < 4.0  # the frame, up to H.264 loss


def test_udp_output_reaches_a_receiver(gst_python: str, tmp_path: Path) -> None:
    port, out = _free_port(), tmp_path / "udp.png"
    receiver = subprocess.Popen(["gst-launch-1.0", "-q", *RECEIVE_UDP.format(port=port, out=out).split()],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.0)  # the receiver binds its port (UDP: a frame sent before is only lost; 120 are sent)
        sent = _send(gst_python, f"udp://127.0.0.1:{port}", tmp_path)
        _received(out, sent)
        assert receiver.wait(timeout=20) == 0  # pngenc snapshot=true: it ends after the first frame
    finally:
        receiver.kill()
        receiver.wait()


def test_rtsp_output_is_published_to_a_server(gst_python: str, tmp_path: Path) -> None:
    has_server = subprocess.run([gst_python, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                                 "from gi.repository import GstRtspServer"], capture_output=True, timeout=60)
    if has_server.returncode != 0:
        pytest.skip("no RTSP server to publish to (Debian: apt install python3-gi gir1.2-gst-rtsp-server-1.0)")
    port, out = _free_port(socket.SOCK_STREAM), tmp_path / "rtsp.png"
    server = subprocess.Popen([gst_python, str(ROOT / "tests" / "rtsp_record_server.py"), str(port), str(out), "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the server is up when it accepts a connection
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        sent = _send(gst_python, f"rtsp://127.0.0.1:{port}/robot", tmp_path)
        _received(out, sent)
    finally:
        server.kill()
        server.wait()
