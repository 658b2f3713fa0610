"""Where frames come from: cameras, streams, video files, images, folders of images.

:func:`open_source` picks the source from a URI-like string::

    "0", "1"                 camera by index (V4L2 on Linux)             live
    "/dev/video0"            V4L2 device                                  live
    "rtsp://...", "http(s)://..."  network stream through FFmpeg         live (see below)
    "rtmp://...", "udp://:5000"  likewise (udp:// and tcp:// may leave the host out to listen)
    "csi://0"                Jetson CSI camera through GStreamer          live
    "v4l2src ! ... ! appsink"  any GStreamer pipeline (contains "!")      live unless it reads a file
    "clip.mp4"               video file                                   file
    "photo.png"              one image                                    file
    "frames/", "shots/*.jpg" folder or glob of images, in natural order   file

Every source yields HxWx3 uint8 BGR frames. *Live* sources (cameras, streams) deliver frames at
their own pace and a pipeline may drop stale ones; files are read as fast as they are consumed and
never lose a frame. ``fps`` is what the source reports (frames per second), ``fps_known`` says
whether it reported anything; ``frame_count`` is the number of frames when a file says so.

``read()`` mirrors ``cv2.VideoCapture.read``: ``(False, None)`` when no frame came (end of a file;
for a live source a failed read, e.g. an unplugged camera, which :meth:`Source.reopen` may cure);
``(True, frame)`` otherwise, where *frame* can still be unusable (an image file that does not
decode gives ``(True, None)``): the pipeline counts and skips those.
"""

from __future__ import annotations

import glob
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Sized
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg import ranges, uris
from edgeseg.errors import SourceError, SourceUriError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
STREAM_SCHEMES = tuple(s + "://" for s in uris.STREAM_SOURCE_SCHEMES)

# When a source reports no frame rate (image folders, some streams), timestamps and output videos
# assume this many frames per second.
DEFAULT_FPS = 25.0

# Jetson CSI defaults: a 720p30 mode every Argus sensor driver offers.
CSI_DEFAULT_SIZE = (1280, 720)
CSI_DEFAULT_FPS = 30


def gstreamer_available() -> bool:
    """Whether this OpenCV was built with GStreamer (``cv2.getBuildInformation()``)."""
    match = re.search(r"GStreamer:\s*(\S+)", cv2.getBuildInformation())
    return bool(match and match.group(1).upper().startswith("YES"))


def _no_gstreamer(what: str) -> SourceError:
    return SourceError(
        f"{what} needs OpenCV built with GStreamer, and the OpenCV here ({cv2.__version__}, "
        f"{os.path.dirname(cv2.__file__)}) was built without it (cv2.getBuildInformation() shows GStreamer: NO); "
        "on a Jetson use JetPack's OpenCV: `pip uninstall opencv-python opencv-python-headless` in a venv made "
        "with --system-site-packages, or build OpenCV with -D WITH_GSTREAMER=ON"
    )


def csi_pipeline(sensor_id: int, width: int | None = None, height: int | None = None, fps: float | None = None) -> str:
    """The GStreamer pipeline for Jetson CSI camera *sensor_id*: Argus capture in NVMM memory,
    converted to BGR by the VIC (``nvvidconv``), newest frame only at the appsink."""
    w, h = width or CSI_DEFAULT_SIZE[0], height or CSI_DEFAULT_SIZE[1]
    rate = round(fps) if fps else CSI_DEFAULT_FPS
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width=(int){w}, height=(int){h}, framerate=(fraction){rate}/1, "
        "format=(string)NV12 ! "
        "nvvidconv ! video/x-raw, format=(string)BGRx ! videoconvert ! video/x-raw, format=(string)BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


class Source:
    """Base of every source: iterable over frames, ``read()``, ``close()``, a context manager.

    Attributes: ``uri`` (what was opened), ``live``, ``fps`` (frames per second; DEFAULT_FPS
    when unknown), ``fps_known``, ``frame_count`` (None when unknown or endless).
    """

    uri: str = ""
    live: bool = False
    fps: float = DEFAULT_FPS
    fps_known: bool = False
    frame_count: int | None = None

    def read(self) -> tuple[bool, np.ndarray | None]:
        raise NotImplementedError

    def reopen(self) -> None:
        """Open the source again after a failed read (a camera or stream that went away);
        :class:`SourceError` if it cannot be."""
        raise SourceError(f"{self.uri}: this source cannot be reopened")

    def close(self) -> None:
        pass

    def __iter__(self) -> Iterator[np.ndarray]:
        """Frames until the first failed read (for a live source: until it stops delivering)."""
        while True:
            ok, frame = self.read()
            if not ok:
                return
            if frame is not None:
                yield frame

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "live" if self.live else "file"
        count = f", {self.frame_count} frames" if self.frame_count else ""
        return f"<{type(self).__name__} {self.uri!r} {kind}, {self.fps:g} FPS{count}>"


def _resize(frame: np.ndarray, width: int | None, height: int | None) -> np.ndarray:
    """Resize to width x height pixels; with only one given, keep the aspect ratio."""
    if width is None and height is None:
        return frame
    h, w = frame.shape[:2]
    if width is None:
        width = max(1, round(w * (height or h) / h))
    if height is None:
        height = max(1, round(h * width / w))
    if (w, h) == (width, height):
        return frame
    shrink = width <= w and height <= h
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class ImageSource(Source):
    """One image file, one frame."""

    def __init__(self, path: Path, width: int | None = None, height: int | None = None,
                 fps: float | None = None) -> None:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise SourceError(f"{path}: cannot decode this image; is it a valid {path.suffix} file?")
        self.uri = str(path)
        self.path = path
        self.frame: np.ndarray = _resize(frame, width, height)
        self.frame_count = 1
        self.fps = float(fps) if fps else 1.0
        self.fps_known = fps is not None
        self._done = False

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self._done:
            return False, None
        self._done = True
        return True, self.frame


def _no_images(uri: str) -> SourceError:
    return SourceError(f"{uri}: no images found ({', '.join(IMAGE_SUFFIXES)}); check the folder or pattern")


def _images(paths: Iterable[Path]) -> Iterator[Path]:
    return (p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _natural_key(path: Path) -> list[Any]:
    """frame2.png before frame10.png."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class ImageFolderSource(Source):
    """Image files (a folder's images or a glob's matches) in natural name order, one frame each.

    An image that does not decode is delivered as ``(True, None)`` so the pipeline skips and
    counts it; frames may differ in size unless *width*/*height* are given.
    """

    def __init__(self, paths: list[Path], uri: str, width: int | None = None, height: int | None = None,
                 fps: float | None = None) -> None:
        if not paths:
            raise _no_images(uri)
        self.uri = uri
        self.paths = sorted(paths, key=_natural_key)
        self.frame_count = len(self.paths)
        self.fps = float(fps) if fps else DEFAULT_FPS
        self.fps_known = fps is not None
        self._size = (width, height)
        self._next = 0

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self._next >= len(self.paths):
            return False, None
        path = self.paths[self._next]
        self._next += 1
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        return True, None if frame is None else _resize(frame, *self._size)


class CaptureSource(Source):
    """Frames from ``cv2.VideoCapture``: video files, cameras, streams, GStreamer pipelines.

    *target* and *api* are what ``cv2.VideoCapture`` takes. For live sources *width*, *height*
    and *fps* are requested from the device with ``cap.set`` (the driver may pick the nearest mode;
    ``size`` and ``fps`` then hold what it chose); for files frames are resized in software and
    *fps* overrides the file's rate. ``read`` and ``close`` may be called from different threads.
    """

    def __init__(self, target: int | str, uri: str, live: bool, api: int = cv2.CAP_ANY, width: int | None = None,
                 height: int | None = None, fps: float | None = None, hint: str = "") -> None:
        self.uri = uri
        self.live = live
        self._target = target
        self._api = api
        self._request = (width, height, fps)
        self._hint = hint
        self._lock = threading.Lock()
        self._cap: cv2.VideoCapture | None = self._open()
        reported = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        # Some drivers and streams report nonsense rates (0, 1000, 90000): only trust 1..240.
        self.fps_known = 1.0 <= reported <= 240.0
        self.fps = reported if self.fps_known else (float(fps) if fps else DEFAULT_FPS)
        if fps and not live:
            self.fps, self.fps_known = float(fps), True
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 and not live else None
        self.size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self._target, self._api)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.uri}: OpenCV cannot open this source; {self._hint}")
        width, height, fps = self._request
        if self.live:
            # Ask for one buffered frame: a deep driver queue only adds latency (not every backend obeys).
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            if height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps:
                cap.set(cv2.CAP_PROP_FPS, fps)
        return cap

    def read(self) -> tuple[bool, np.ndarray | None]:
        with self._lock:
            if self._cap is None:
                return False, None
            ok, frame = self._cap.read()
        if not ok:
            return False, None
        if not self.live and frame is not None:
            frame = _resize(frame, self._request[0], self._request[1])
        return True, frame

    def reopen(self) -> None:
        with self._lock:
            if self._cap is not None:
                self._cap.release()
            self._cap = None
            self._cap = self._open()

    def close(self) -> None:
        # The lock makes close wait for a read in progress on another thread: releasing the
        # capture under a running read crashes some backends.
        with self._lock:
            if self._cap is not None:
                self._cap.release()
                self._cap = None


class VideoFileSource(CaptureSource):
    """Frames of a video file in order, decoded by OpenCV (FFmpeg)."""

    def __init__(self, path: Path, width: int | None = None, height: int | None = None,
                 fps: float | None = None) -> None:
        self.path = path
        super().__init__(str(path), str(path), live=False, api=cv2.CAP_FFMPEG, width=width, height=height, fps=fps,
                         hint="check the file and its codec (`ffprobe FILE`)")


class IterableSource(Source):
    """Frames from any Python iterable (a generator, a list, frames from your own camera API).

    Every item is delivered as ``(True, item)``, so a ``None`` or malformed item is a corrupt
    frame to the pipeline; the end of the iterable ends the stream. *live* says whether the items
    arrive at their own pace (then a pipeline keeps only the newest).
    """

    def __init__(self, frames: Iterable[Any], live: bool = False, fps: float | None = None,
                 frame_count: int | None = None, uri: str = "<iterable>") -> None:
        self.uri = uri
        self.live = live
        self.fps = float(fps) if fps else DEFAULT_FPS
        self.fps_known = fps is not None
        if frame_count is None and not live and isinstance(frames, Sized):
            frame_count = len(frames)
        self.frame_count = frame_count
        self._it = iter(frames)

    def read(self) -> tuple[bool, np.ndarray | None]:
        try:
            return True, next(self._it)
        except StopIteration:
            return False, None

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if callable(close):
            close()


def _camera_hint(what: str) -> str:
    if sys.platform.startswith("linux"):
        return (f"is {what} connected and not in use by another program? "
                "List cameras with `ls /dev/video*` or `v4l2-ctl --list-devices`")
    return f"is {what} connected and not in use by another program?"


def _gstreamer_is_file(pipeline: str) -> bool:
    return bool(re.search(r"\bfilesrc\b|uri=file:", pipeline))


SOURCE_FORMS = ("a camera (0, /dev/video0, csi://0), a video, an image, a folder or glob of images, a stream "
                f"({', '.join(s + '://' for s in uris.STREAM_SOURCE_SCHEMES)}) or a GStreamer pipeline (... ! appsink)")


def check_source(uri: str | os.PathLike[str] | int) -> str:
    """The kind of source *uri* names, checked without opening anything: ``camera`` (an index),
    ``v4l2`` (/dev/videoN), ``csi``, ``stream``, ``gstreamer``, ``glob``, ``folder``, ``image`` or
    ``video``. A malformed URI (unknown scheme, bad port, missing host, empty) or a file of an
    unknown type is a :class:`SourceUriError` (a usage error); a file or camera device that is not
    there, or a folder or glob without images, a :class:`SourceError`."""
    text = str(uri)
    if isinstance(uri, int) or (text.isascii() and text.isdigit()):
        return "camera"
    if not text.strip():
        raise SourceUriError(f"empty source: give {SOURCE_FORMS}")
    if text.startswith("/dev/video"):
        if not os.path.exists(text):
            raise SourceError(f"{text}: no such camera device; {_camera_hint('the camera')}")
        return "v4l2"
    scheme = uris.scheme_of(text)
    if scheme == "csi":
        uris.csi_source(text)
        return "csi"
    if scheme in uris.STREAM_SOURCE_SCHEMES:
        uris.stream_source(text)
        return "stream"
    if "!" in text:
        if not re.search(r"\bappsink\b", text.rsplit("!", 1)[-1]):
            raise SourceUriError(f"{text}: a GStreamer pipeline source ends in appsink, where OpenCV takes the "
                                 "frames, e.g. ... ! videoconvert ! video/x-raw,format=BGR ! appsink")
        return "gstreamer"
    if scheme is not None:
        raise SourceUriError(f"{text}: unknown source scheme {scheme}://; give {SOURCE_FORMS}")
    path = Path(text)
    if any(c in text for c in "*?[") and not path.exists():
        if next(_images(Path(p) for p in glob.iglob(text, recursive=True)), None) is None:
            raise _no_images(text)
        return "glob"
    if path.is_dir():
        if next(_images(path.iterdir()), None) is None:
            raise _no_images(text)
        return "folder"
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise SourceUriError(
        f"{path}: unknown source type {suffix or '(no suffix)'!r}; give an image "
        f"({', '.join(IMAGE_SUFFIXES)}), a video ({', '.join(VIDEO_SUFFIXES)}), a folder of images, "
        "a camera (0, /dev/video0, csi://0) or a stream (rtsp://...)"
    )


def open_source(uri: str | os.PathLike[str] | int, *, width: int | None = None, height: int | None = None,
                fps: float | None = None) -> Source:
    """Open the source named by *uri* (see the module docstring for the forms).

    *width* x *height* (pixels) and *fps* (frames per second) are requested from cameras and
    streams with ``cap.set`` (the device may choose the nearest mode it has); files are resized
    in software, and *fps* overrides the rate of files and image folders (timestamps and output
    videos follow it). *uri* is checked by :func:`check_source` first. Raises
    :class:`SourceError` naming the problem and the fix.
    """
    for name, value in (("width", width), ("height", height)):
        if value is not None:
            ranges.check(name, value, 1, integer=True)
    if fps is not None:
        ranges.check("fps", fps, 0, low_open=True)
    kind = check_source(uri)
    text = str(uri)
    if kind == "camera":
        index = int(text)
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        return CaptureSource(index, text, live=True, api=api, width=width, height=height, fps=fps,
                             hint=_camera_hint(f"camera {index}"))
    if kind == "v4l2":
        return CaptureSource(text, text, live=True, api=cv2.CAP_V4L2, width=width, height=height, fps=fps,
                             hint=_camera_hint(text) + f"; check you may read it (`ls -l {text}`, group video)")
    if kind == "csi":
        if not gstreamer_available():
            raise _no_gstreamer(text)
        return CaptureSource(csi_pipeline(uris.csi_source(text), width, height, fps), text, live=True,
                             api=cv2.CAP_GSTREAMER,
                             hint="is the CSI camera connected and nvargus-daemon running "
                                  "(`sudo systemctl restart nvargus-daemon`)?")
    if kind == "stream":
        source = CaptureSource(text, text, live=True, api=cv2.CAP_FFMPEG, width=width, height=height, fps=fps,
                               hint="check the address, the network and that the server is streaming "
                                    "(try `ffprobe URL`)")
        if text.lower().startswith(("http://", "https://")) and source._cap is not None:
            # An HTTP URL can be a plain video file; one with a known length is read as a file.
            count = int(source._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            if count > 0:
                source.live, source.frame_count = False, count
        return source
    if kind == "gstreamer":
        if not gstreamer_available():
            raise _no_gstreamer("a GStreamer pipeline source")
        return CaptureSource(text, text, live=not _gstreamer_is_file(text), api=cv2.CAP_GSTREAMER, width=width,
                             height=height, fps=fps,
                             hint="check the pipeline with `gst-launch-1.0` (ending in fakesink) and that it "
                                  "ends in `appsink` delivering BGR (`videoconvert ! video/x-raw,format=BGR`)")
    path = Path(text)
    if kind == "glob":
        return ImageFolderSource(list(_images(Path(p) for p in glob.iglob(text, recursive=True))), text, width,
                                 height, fps)
    if kind == "folder":
        return ImageFolderSource(list(_images(path.iterdir())), text, width, height, fps)
    if kind == "image":
        return ImageSource(path, width, height, fps)
    return VideoFileSource(path, width, height, fps)
