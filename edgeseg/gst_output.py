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
encoded by the hardware encoder (``nvv4l2h264enc``), elsewhere by x264 (``x264enc``, from
gstreamer1.0-plugins-ugly).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import cv2
import numpy as np

from edgeseg.errors import OutputError
from edgeseg.sinks import Sink
from edgeseg.sources import gstreamer_available
from edgeseg.trt.gpu_imports import on_jetson

SCHEMES = ("udp", "rtsp")


@dataclass(frozen=True)
class Encoder:
    """An H.264 encoder as a pipeline fragment from BGR frames to a parsed H.264 stream, and the
    Debian/JetPack package that provides it (named when the pipeline does not open)."""

    name: str
    fragment: str
    package: str


#: ``jetson``: the NVENC block through NVMM memory; ``x264``: software, tuned for latency (no
#: B-frames, a key frame every second at 30 FPS so a viewer that joins late starts quickly).
ENCODERS = {
    "jetson": Encoder("jetson",
                      "videoconvert ! video/x-raw,format=BGRx ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! "
                      "nvv4l2h264enc insert-sps-pps=true idrinterval=30 ! h264parse",
                      "nvidia-l4t-gstreamer (JetPack)"),
    "x264": Encoder("x264",
                    "videoconvert ! video/x-raw,format=I420 ! "
                    "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse",
                    "gstreamer1.0-plugins-ugly (x264enc) and gstreamer1.0-plugins-bad (h264parse)"),
}


def default_encoder() -> Encoder:
    """The hardware encoder on a Jetson, x264 elsewhere."""
    return ENCODERS["jetson" if on_jetson() else "x264"]


def output_pipeline(uri: str, encoder: Encoder | None = None) -> str:
    """The GStreamer pipeline (``appsrc ! ... ! sink``) that sends frames to *uri*
    (``udp://HOST:PORT`` or ``rtsp://SERVER[:PORT]/PATH``); :class:`OutputError` for a URI that
    lacks what it needs."""
    enc = encoder or default_encoder()
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    head = f"appsrc is-live=true do-timestamp=true format=time ! {enc.fragment}"
    if scheme == "udp":
        if not parts.hostname or parts.port is None:
            raise OutputError(f"{uri}: give the receiver's address and port, e.g. -o udp://192.168.1.20:5000")
        return (f"{head} ! rtph264pay config-interval=1 pt=96 ! "
                f"udpsink host={parts.hostname} port={parts.port} sync=false async=false")
    if scheme == "rtsp":
        if not parts.hostname or parts.path in ("", "/"):
            raise OutputError(f"{uri}: give the RTSP server and a stream path, e.g. -o rtsp://localhost:8554/robot")
        port = f":{parts.port}" if parts.port else ""
        return f"{head} ! rtspclientsink location=rtsp://{parts.hostname}{port}{parts.path} protocols=tcp"
    raise OutputError(f"{uri}: GStreamer output takes {' or '.join(s + '://' for s in SCHEMES)}")


class GstStreamSink(Sink):
    """Sends the drawn frames to a ``udp://`` or ``rtsp://`` URI (see the module docstring).

    The pipeline is checked when the sink is made (the URI, OpenCV's GStreamer) and opened on the
    first frame, whose size sets the stream's; later frames of another size are resized to it.
    """

    def __init__(self, uri: str, fps: float, encoder: Encoder | None = None) -> None:
        self.uri = uri
        self.fps = fps
        self.encoder = encoder or default_encoder()
        self.pipeline = output_pipeline(uri, self.encoder)
        if not gstreamer_available():
            raise OutputError(
                f"{uri}: {urlsplit(uri).scheme}:// output goes through GStreamer and needs OpenCV built with it, "
                "which this OpenCV is not (edgeseg doctor: opencv); on a Jetson use JetPack's OpenCV, or use "
                "-o http://HOST:PORT for a live view in a browser")
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._size = (0, 0)

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            h, w = image.shape[:2]
            self._size = (w, h)
            writer = cv2.VideoWriter(self.pipeline, cv2.CAP_GSTREAMER, 0, float(self.fps), (w, h), True)
            if not writer.isOpened():
                server = " and that an RTSP server is listening there" if self.uri.lower().startswith("rtsp") else ""
                raise OutputError(
                    f"{self.uri}: GStreamer could not open the output pipeline; check that its elements are "
                    f"installed ({self.encoder.package}; rtspclientsink: gstreamer1.0-rtsp){server} "
                    f"(pipeline: {self.pipeline})")
            self._writer = writer
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(image))
        self.frames += 1

    def close(self) -> None:
        """Send end-of-stream and stop the pipeline."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
