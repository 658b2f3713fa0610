"""Network video out through GStreamer: ``-o udp://HOST:PORT`` and ``-o rtsp://SERVER:PORT/PATH``.

Both send the overlay as H.264. ``udp://`` sends RTP packets to HOST:PORT (a multicast address
works too); a viewer needs the stream's description, e.g. ``gst-launch-1.0 udpsrc port=PORT
caps="application/x-rtp,media=video,encoding-name=H264,payload=96" ! rtph264depay ! avdec_h264 !
autovideosink``. ``rtsp://`` publishes the stream to an RTSP server that is already listening
(MediaMTX, or any server that accepts RECORD), which then serves it to any player (VLC, ffplay,
a robot's other nodes); edgeseg does not host the RTSP server itself.

The frames reach GStreamer through OpenCV: ``cv2.VideoWriter`` with ``CAP_GSTREAMER`` feeds an
``appsrc`` at the head of the pipeline. That needs an OpenCV built with GStreamer (JetPack's is;
pip's wheels are not), and is refused by name where it is missing. On a Jetson the frames are
encoded by the hardware encoder (``nvv4l2h264enc``) where the module has one, elsewhere by x264
(``x264enc``, from gstreamer1.0-plugins-ugly).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass

import cv2
import numpy as np

from edgeseg import uris
from edgeseg.errors import OutputError, OutputUriError
from edgeseg.sinks import Sink
from edgeseg.sources import gstreamer_available
from edgeseg.trt.gpu_imports import on_jetson

SCHEMES = uris.GSTREAMER_OUTPUT_SCHEMES


@dataclass(frozen=True)
class Encoder:
    """An H.264 encoder as a pipeline fragment from BGR frames to a parsed H.264 stream (with
    ``{keyint}``, the frames between key frames), and the Debian/JetPack package that provides it
    (named when no pipeline opens)."""

    name: str
    fragment: str
    package: str
    elements: tuple[str, ...]  # the GStreamer elements it needs (edgeseg doctor looks for them)


#: ``jetson``: the NVENC block through NVMM memory; ``x264``: software, tuned for latency (no
#: B-frames). Both send a key frame every second, so a viewer that joins late starts quickly.
ENCODERS = {
    "jetson": Encoder("jetson",
                      "videoconvert ! video/x-raw,format=BGRx ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! "
                      "nvv4l2h264enc insert-sps-pps=true idrinterval={keyint} ! h264parse",
                      "nvidia-l4t-gstreamer (JetPack)", ("nvvidconv", "nvv4l2h264enc", "h264parse")),
    "x264": Encoder("x264",
                    "videoconvert ! video/x-raw,format=I420 ! "
                    "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={keyint} ! h264parse",
                    "gstreamer1.0-plugins-ugly (x264enc) and gstreamer1.0-plugins-bad (h264parse)",
                    ("x264enc", "h264parse")),
}

RTSP_PORT = uris.RTSP_PORT
#: what each scheme needs after the encoder, with the package that has it
SENDERS = {"udp": (("rtph264pay", "udpsink"), "gstreamer1.0-plugins-good"),
           "rtsp": (("rtspclientsink",), "gstreamer1.0-rtsp")}


def encoders() -> list[Encoder]:
    """The encoders to try, best first: on a Jetson its NVENC block, then x264 (an Orin Nano has
    no NVENC); elsewhere x264."""
    return [ENCODERS["jetson"], ENCODERS["x264"]] if on_jetson() else [ENCODERS["x264"]]


def has_element(name: str) -> bool | None:
    """Whether GStreamer has element *name* (``gst-inspect-1.0 --exists``); None when that tool
    is not installed, so nothing can be said."""
    tool = shutil.which("gst-inspect-1.0")
    if tool is None:
        return None
    return subprocess.run([tool, "--exists", name], capture_output=True, timeout=30).returncode == 0


def output_pipeline(uri: str, encoder: Encoder, fps: float = 30.0) -> str:
    """The GStreamer pipeline (``appsrc ! ... ! sink``) that sends frames at *fps* to *uri*
    (``udp://HOST:PORT`` or ``rtsp://[USER:PASSWORD@]SERVER[:PORT]/PATH[?QUERY]``, IPv6 hosts in
    brackets, checked by :mod:`edgeseg.uris`); :class:`OutputError` for a URI that lacks what it needs."""
    scheme = uris.scheme_of(uri)
    head = (f"appsrc is-live=true do-timestamp=true format=time ! "
            f"{encoder.fragment.format(keyint=max(1, round(fps)))}")
    if scheme == "udp":
        a = uris.udp_output(uri)
        return (f"{head} ! rtph264pay config-interval=1 pt=96 ! "
                f'udpsink host="{a.host}" port={a.port} sync=false async=false')
    if scheme == "rtsp":
        uris.rtsp_output(uri)
        # The URI as given: credentials, query and an IPv6 host's brackets are rtspclientsink's to read.
        return f'{head} ! rtspclientsink location="{uri}" protocols=tcp'
    raise OutputUriError(f"{uri}: GStreamer output takes {' or '.join(s + '://' for s in SCHEMES)}")


def check_rtsp_server(uri: str, timeout: float = 3.0) -> None:
    """:class:`OutputError` unless something accepts TCP connections at the URI's server. Needed
    because OpenCV opens an ``rtspclientsink`` pipeline even when no server answers, and then
    drops every frame with only a log line."""
    a = uris.rtsp_output(uri)
    host, port = a.host, a.port or RTSP_PORT
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise OutputError(f"{uri}: no RTSP server answers at {host}:{port} ({exc.strerror or exc}); start one that "
                          "accepts published streams (e.g. MediaMTX) or correct the address") from exc


class GstStreamSink(Sink):
    """Sends the drawn frames to a ``udp://`` or ``rtsp://`` URI (see the module docstring).

    Checked when the sink is made: the URI, OpenCV's GStreamer, and for ``rtsp://`` that the
    server answers. The pipeline opens on the first frame, whose size sets the stream's (later
    frames of another size are resized to it), with the first encoder of :func:`encoders` that
    GStreamer has. Once running, a receiver or server that goes away is not noticed: OpenCV's
    writer reports no errors.
    """

    def __init__(self, uri: str, fps: float, candidates: list[Encoder] | None = None) -> None:
        self.uri = uri
        self.fps = fps
        self.candidates = candidates or encoders()
        self.pipelines = [output_pipeline(uri, enc, fps) for enc in self.candidates]
        if not gstreamer_available():
            raise OutputError(
                f"{uri}: {uris.scheme_of(uri)}:// output goes through GStreamer and needs OpenCV built with it, "
                "which this OpenCV is not (edgeseg doctor: opencv); on a Jetson use JetPack's OpenCV, or use "
                "-o http://HOST:PORT for a live view in a browser")
        if uris.scheme_of(uri) == "rtsp":
            check_rtsp_server(uri)
        self.frames = 0
        self.encoder: Encoder | None = None  # the one that opened
        self._writer: cv2.VideoWriter | None = None
        self._size = (0, 0)

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        for enc, pipeline in zip(self.candidates, self.pipelines, strict=True):
            writer = cv2.VideoWriter(pipeline, cv2.CAP_GSTREAMER, 0, float(self.fps), size, True)
            if writer.isOpened():
                self.encoder = enc
                return writer
        packages = "; ".join(enc.package for enc in self.candidates)
        raise OutputError(
            f"{self.uri}: GStreamer could not open the output pipeline; check that its elements are installed "
            f"({packages}; rtspclientsink: gstreamer1.0-rtsp) (pipeline: {self.pipelines[-1]})")

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            h, w = image.shape[:2]
            self._size = (w, h)
            self._writer = self._open(self._size)
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(image))
        self.frames += 1

    def close(self) -> None:
        """Send end-of-stream and stop the pipeline."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
