"""Where processed frames go: a window, a video, an image or a folder of images, a JSON Lines file of
results, a Python callback, or several at once.

Every file is written under a temporary name and moved into place by ``close``; ``close`` is
called on end of stream, on error and on Ctrl-C alike (the pipeline guarantees it), so the frames
written so far are never lost and a half-written file never carries the final name.

A sink receives one :class:`FrameRecord` per frame through :meth:`Sink.emit`. Sinks that show or
store pictures also keep ``write(image)`` for plain loops (``sink.write(draw_result(frame, r))``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from edgeseg import rle, uris
from edgeseg.atomic import check_writable, temporary_sibling, write_failed
from edgeseg.errors import OutputError, OutputUriError
from edgeseg.result import InstanceResult, SemanticResult
from edgeseg.sources import IMAGE_SUFFIXES

# Container suffix -> FourCC. mp4v (MPEG-4 Part 2) is what OpenCV's bundled FFmpeg can write into
# MP4/MKV everywhere (no H.264 encoder ships with the opencv-python wheels); AVI gets Motion JPEG,
# which every player reads.
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class FrameRecord:
    """One processed frame, as the pipeline hands it to the sinks.

    ``index``: frame number in the source, from 0 (gaps are frames a live source dropped or
    corrupt frames skipped). ``timestamp``: seconds; for files the position in the video
    (index / fps), for live sources the time since the stream started. ``frame``: the source frame,
    HxWx3 uint8 BGR. ``result``: what the model returned. ``image``: the drawn overlay (HxWx3 uint8
    BGR; the frame itself when nothing was drawn). ``latency``: seconds from capture until drawn.
    """

    index: int
    timestamp: float
    frame: np.ndarray
    result: Any = None
    image: np.ndarray | None = None
    latency: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Sink:
    """Base of every sink.

    ``emit(record)`` takes one frame, ``close()`` finalises (idempotent), ``frames`` counts what
    was emitted, ``path`` is the output path (None for windows and callbacks), ``needs_image``
    says whether the sink uses the drawn image (the pipeline skips drawing when none does), and
    ``stop_requested`` becomes True when the user asks to stop (a window's q/Esc key).
    """

    path: Path | None = None
    needs_image: bool = True
    frames: int = 0

    @property
    def stop_requested(self) -> bool:
        return False

    @property
    def paths(self) -> list[Path]:
        """Files this sink writes (empty for windows and callbacks)."""
        return [self.path] if self.path is not None else []

    def emit(self, record: FrameRecord) -> None:
        self.write(record.image if record.image is not None else record.frame)

    def write(self, image: np.ndarray) -> None:
        raise OutputError(f"{type(self).__name__} stores results, not images; pass it FrameRecords with emit()")

    def close(self) -> None:
        pass

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageSink(Sink):
    """Writes the one frame it gets to an image file (atomically)."""

    path: Path

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        if self.frames:
            raise OutputError(f"{self.path}: an image holds one frame; write videos to .mp4/.avi/.mkv "
                              "or frames to a folder (-o frames/)")
        _write_image_atomically(self.path, frame)
        self.frames += 1


def _write_image_atomically(path: Path, image: np.ndarray) -> None:
    tmp = temporary_sibling(path)
    try:
        if not cv2.imwrite(str(tmp), image):
            raise OutputError(f"{path}: OpenCV could not encode a {path.suffix} image")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class VideoSink(Sink):
    """Writes frames to a video file; opened on the first frame, whose size sets the video's
    (later frames of another size are resized to it: a video has one frame size).

    The file is written under a temporary name and renamed by :meth:`close`, which also finalises
    the container (so an interrupted run leaves a playable file holding every frame written).
    """

    path: Path

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps
        self.frames = 0
        self._tmp: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] = (0, 0)

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self._tmp = temporary_sibling(self.path)
            fourcc = cv2.VideoWriter.fourcc(*VIDEO_CODECS.get(self.path.suffix.lower(), "mp4v"))
            h, w = frame.shape[:2]
            self._size = (w, h)
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                self._writer = None
                self._tmp.unlink()
                self._tmp = None
                raise OutputError(f"{self.path}: OpenCV cannot write {self.path.suffix} video here; "
                                  "try .mp4 or .avi")
        if (frame.shape[1], frame.shape[0]) != self._size:
            # VideoWriter silently drops frames of another size; keep them, resized.
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finalise the file and move it into place (nothing is written for zero frames)."""
        if self._writer is None or self._tmp is None:
            return
        self._writer.release()
        self._writer = None
        os.replace(self._tmp, self.path)
        self._tmp = None


class ImageFolderSink(Sink):
    """One PNG per frame, ``frame_000000.png`` (the source's frame index), in a folder that appears
    whole: frames go to a hidden temporary folder beside it, renamed to *path* by :meth:`close`
    (also after an error or Ctrl-C, holding the frames written so far).

    *path* must not exist, or be an empty folder.
    """

    path: Path

    def __init__(self, path: Path, suffix: str = ".png") -> None:
        self.path = path
        self.suffix = suffix
        self.frames = 0
        self._tmp: Path | None = None

    def write(self, image: np.ndarray, index: int | None = None) -> None:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent))
        name = self._tmp / f"frame_{self.frames if index is None else index:06d}{self.suffix}"
        if not cv2.imwrite(str(name), image):
            raise OutputError(f"{self.path}: OpenCV could not encode a {self.suffix} image")
        self.frames += 1

    def emit(self, record: FrameRecord) -> None:
        self.write(record.image if record.image is not None else record.frame, record.index)

    def close(self) -> None:
        if self._tmp is None:
            return
        tmp, self._tmp = self._tmp, None
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()
        try:
            os.replace(tmp, self.path)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot move the finished frames into place ({exc.strerror}); "
                              f"they are in {tmp}") from exc


def headless_reason() -> str | None:
    """Why no window can be opened here, or None when one probably can.

    Checks the display on Linux (X11 ``DISPLAY`` or ``WAYLAND_DISPLAY``) and whether this OpenCV
    has a GUI backend (``opencv-python-headless`` has none: ``GUI: NONE`` in its build
    information). Other failures surface from ``cv2.imshow`` as :class:`OutputError` too.
    """
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "this machine has no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    gui = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if gui and gui.group(1).upper() == "NONE":
        return "this OpenCV has no GUI support (opencv-python-headless?)"
    return None


WINDOW_FIX = ("watch it in a browser instead (-o http://0.0.0.0:8090, a live view for headless machines), write "
              "a video (-o out.mp4), or run where a display is available (`ssh -X`, set DISPLAY, install "
              "opencv-python instead of opencv-python-headless)")


class WindowSink(Sink):
    """Shows each frame in a window (``cv2.imshow``); q or Esc, or closing the window, asks the
    pipeline to stop. Raises :class:`OutputError` at construction on a headless machine."""

    path = None

    def __init__(self, title: str = "edgeseg") -> None:
        reason = headless_reason()
        if reason:
            raise OutputError(f"--show cannot open a window: {reason}; {WINDOW_FIX}")
        self.title = title
        self.frames = 0
        self._stop = False
        self._opened = False

    @property
    def stop_requested(self) -> bool:
        return self._stop

    def write(self, image: np.ndarray) -> None:
        try:
            if not self._opened:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
                self._opened = True
            cv2.imshow(self.title, image)
            key = cv2.waitKey(1) & 0xFF
            visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE)
        except cv2.error as exc:
            raise OutputError(f"--show cannot draw the window ({exc.err or exc}); {WINDOW_FIX}") from exc
        self.frames += 1
        if key in (ord("q"), 27) or visible < 1:
            self._stop = True

    def close(self) -> None:
        if self._opened:
            self._opened = False
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)


def capture_json(result: Any) -> dict[str, Any]:
    """``capture_time`` (wall clock, s), ``capture_monotonic`` (s) and ``latency_ms`` of a result
    the pipeline stamped (:class:`edgeseg.result.Capture`); empty otherwise."""
    capture = getattr(result, "capture", None)
    if capture is None:
        return {}
    return {"capture_time": round(float(capture.time), 6), "capture_monotonic": round(float(capture.monotonic), 6),
            "latency_ms": round(float(capture.latency_ms), 3)}


def result_to_json(result: Any) -> dict[str, Any]:
    """The JSON form of a model result (see :class:`JsonlSink`)."""
    if isinstance(result, InstanceResult):
        n = len(result)
        return {
            "kind": "instance",
            "boxes": np.round(np.asarray(result.boxes, np.float64).reshape(n, 4), 2).tolist(),
            "scores": np.round(np.asarray(result.scores, np.float64), 4).tolist(),
            "labels": [int(v) for v in result.labels],
            "classes": result.class_names,
            "masks": [rle.encode(m) for m in result.masks[:n]],
            **({"track_ids": [int(v) for v in result.track_ids[:n]]} if result.track_ids is not None else {}),
        }
    if isinstance(result, SemanticResult):
        h, w = result.label_map.shape[:2]
        return {"kind": "semantic", "size": [int(h), int(w)], "areas": result.class_areas()}
    if result is None:
        return {"kind": "none"}
    raise OutputError(f"the JSON Lines sink writes edgeseg results, got a {type(result).__name__}; "
                      "give a model that returns InstanceResult or SemanticResult, or use a callback sink")


class JsonlSink(Sink):
    """One JSON object per line and frame, written atomically (temporary name, renamed on close).

    Every line has ``frame`` (index in the source) and ``time`` (seconds, see
    :class:`FrameRecord`), and ``stream`` (the source's index) when a run has several sources;
    results from the pipeline add ``capture_time`` (wall-clock seconds
    since the epoch when the frame arrived), ``capture_monotonic`` (``time.monotonic()`` then)
    and ``latency_ms`` (capture to result). Instance results add ``kind: "instance"``, ``boxes`` ([x0, y0, x1, y1]
    in frame pixels, continuous coordinates), ``scores``, ``labels`` (class ids), ``classes``
    (names) and ``masks`` (COCO compressed RLE ``{"size": [h, w], "counts": str}``, decodable with
    ``pycocotools.mask.decode`` or :func:`edgeseg.rle.decode`), and ``track_ids`` (parallel to
    ``boxes``) when tracked. Semantic results add
    ``kind: "semantic"``, ``size`` [h, w] and ``areas`` (pixels per class present, by name).
    """

    needs_image = False
    path: Path

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames = 0
        self._tmp: Path | None = None
        self._file: IO[str] | None = None

    def emit(self, record: FrameRecord) -> None:
        line = {**({"stream": int(record.extra["stream"])} if "stream" in record.extra else {}),
                "frame": int(record.index), "time": round(float(record.timestamp), 6),
                **capture_json(record.result), **result_to_json(record.result)}
        try:
            if self._file is None:
                self._tmp = temporary_sibling(self.path)
                self._file = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 - kept open across frames
            self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        except OSError as exc:
            self._discard()
            raise write_failed(self.path, exc) from exc
        self.frames += 1

    def _discard(self) -> None:
        """A failed write: the lines so far cannot be trusted to be whole; remove them."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
        self._file, self._tmp = None, None

    def close(self) -> None:
        if self._file is None or self._tmp is None:
            return
        try:
            self._file.close()  # flushes: a full disk shows here
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self._discard()
            raise write_failed(self.path, exc) from exc
        self._file, self._tmp = None, None


class CallbackSink(Sink):
    """Calls ``fn(record)`` for every frame (the Python API's way to get results out of a pipeline).

    *needs_image*: whether the callback uses ``record.image`` (when no sink does, the pipeline
    does not draw).
    """

    def __init__(self, fn: Callable[[FrameRecord], None], needs_image: bool = True) -> None:
        self.fn = fn
        self.needs_image = needs_image
        self.frames = 0

    def emit(self, record: FrameRecord) -> None:
        self.fn(record)
        self.frames += 1

    def write(self, image: np.ndarray) -> None:
        self.emit(FrameRecord(self.frames, 0.0, image, None, image))


class MultiSink(Sink):
    """Fans every frame out to several sinks; ``close`` closes them all even if some fail (the
    first failure is raised afterwards)."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self.frames = 0
        self.needs_image = any(s.needs_image for s in self.sinks)
        self.path = next((s.path for s in self.sinks if s.path is not None), None)

    @property
    def paths(self) -> list[Path]:
        return [p for s in self.sinks for p in s.paths]

    @property
    def stop_requested(self) -> bool:
        return any(s.stop_requested for s in self.sinks)

    def emit(self, record: FrameRecord) -> None:
        for s in self.sinks:
            s.emit(record)
        self.frames += 1

    def write(self, image: np.ndarray) -> None:
        for s in self.sinks:
            s.write(image)
        self.frames += 1

    def close(self) -> None:
        first: BaseException | None = None
        for s in self.sinks:
            try:
                s.close()
            except BaseException as exc:  # close the others before raising (Ctrl-C included)
                first = first or exc
        if first is not None:
            raise first


def _is_folder_target(path: str | os.PathLike[str]) -> bool:
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def open_folder_sink(path: str | os.PathLike[str]) -> ImageFolderSink:
    """An :class:`ImageFolderSink`, checked before any work: the folder must be new or empty and
    its parent writable."""
    text = os.fspath(path)
    if not text.endswith(("/", os.sep)):
        text += "/"
    check_output(text)
    return ImageFolderSink(Path(text.rstrip("/" + os.sep) or "."))


#: every form of output, for help texts and errors
OUTPUT_FORMS = (f"a video ({', '.join(VIDEO_CODECS)}), an image ({', '.join(IMAGE_SUFFIXES)}), a folder for PNG "
                f"frames (end the name with /), JSON lines of results (.jsonl), {uris.OUTPUT_SCHEME_LIST}")


def check_output(path: str | os.PathLike[str]) -> str:
    """The kind of output *path* names, checked without opening or writing anything (a probe file
    is made and removed to test the folder): ``http``, ``udp``, ``rtsp`` (their addresses
    checked by :mod:`edgeseg.uris`), ``folder``, ``video``, ``image`` or ``jsonl``.
    A malformed URI (unknown scheme, bad port, missing host or path) or an unknown file type is
    an :class:`~edgeseg.errors.OutputUriError` (a usage error); a file that cannot be written
    there, an :class:`OutputError`."""
    text = os.fspath(path)
    if not text.strip():
        raise OutputUriError(f"empty output: give {OUTPUT_FORMS}")
    if "://" in text:
        return uris.output(text)
    if _is_folder_target(path):
        out = Path(text.rstrip("/" + os.sep) or ".")
        if out.exists() and not out.is_dir():
            raise OutputError(f"cannot write frames to {out}: it is a file; give a folder name ending in /")
        if out.is_dir() and any(out.iterdir()):
            raise OutputError(f"cannot write frames to {out}: the folder is not empty; remove it or name a new folder")
        check_writable(out.parent / ".edgeseg-frames-probe")
        return "folder"
    out = check_writable(path)
    suffix = out.suffix.lower()
    if suffix in VIDEO_CODECS:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    raise OutputUriError(
        f"{out}: unknown output type {suffix or '(no suffix)'!r}; use a video ({', '.join(VIDEO_CODECS)}), "
        f"an image ({', '.join(IMAGE_SUFFIXES)}), a folder for PNG frames (end the name with /) or .jsonl"
    )


def open_sink(path: str | os.PathLike[str], fps: float = 25.0) -> Sink:
    """A sink chosen by *path*: a video (.mp4/.m4v/.mov/.mkv/.avi, *fps* frames per second), an
    image (.png/.jpg/...), a folder of PNG frames (a path ending in ``/`` or an existing empty
    folder), a JSON Lines file of results (.jsonl), a live MJPEG view (``http://HOST:PORT``,
    :mod:`edgeseg.mjpeg`) or H.264 through GStreamer (``udp://HOST:PORT``,
    ``rtsp://SERVER[:PORT]/PATH``, :mod:`edgeseg.gst_output`). Checked by :func:`check_output` first."""
    kind = check_output(path)
    text = os.fspath(path)
    if kind == "http":
        from edgeseg.mjpeg import MjpegSink

        return MjpegSink.from_uri(text)
    if kind in uris.GSTREAMER_OUTPUT_SCHEMES:
        from edgeseg.gst_output import GstStreamSink

        return GstStreamSink(text, fps)
    if kind == "folder":
        return ImageFolderSink(Path(text.rstrip("/" + os.sep) or "."))
    out = Path(text)
    if kind == "video":
        return VideoSink(out, fps)
    if kind == "image":
        return ImageSink(out)
    return JsonlSink(out)


def check_outputs(outputs: Sequence[str | os.PathLike[str]] = (),
                  jsonl: str | os.PathLike[str] | None = None) -> None:
    """Every output of one run checked without opening any (:func:`check_output`; *jsonl*, the
    ``--json`` file, may have any name), and none named twice: two outputs that are one file
    or folder (``-o r.jsonl --json r.jsonl``, ``frames/`` and ``frames``) or one port of the
    live view would lose one of them; an :class:`~edgeseg.errors.OutputUriError` says which."""
    seen: dict[tuple[str, str], str] = {}
    named = [(os.fspath(o), False) for o in outputs] + ([(os.fspath(jsonl), True)] if jsonl is not None else [])
    for text, is_json in named:
        kind = "file" if is_json else check_output(text)
        if is_json:
            check_writable(text)
        if kind == "http":
            key = ("http port", str(uris.http_output(text)[1]))
        elif kind in uris.GSTREAMER_OUTPUT_SCHEMES:
            key = (kind, text)
        else:
            key = ("file", os.path.abspath(text.rstrip("/" + os.sep) or "."))
        if key in seen:
            raise OutputUriError(f"{text}: the same output as {seen[key]}; give each output its own name"
                                 + (" and port" if kind == "http" else ""))
        seen[key] = text


def open_sinks(outputs: Sequence[str | os.PathLike[str]] = (), *, show: bool = False,
               jsonl: str | os.PathLike[str] | None = None, fps: float = 25.0,
               callbacks: Sequence[Callable[[FrameRecord], None]] = (), title: str = "edgeseg") -> MultiSink:
    """Every sink a run asked for, checked before any work starts: *outputs* (see
    :func:`open_sink`), a window when *show*, a JSON Lines file *jsonl*, and *callbacks*.
    Raises :class:`OutputError` if any cannot be opened (those opened so far are closed); all
    of them are checked (:func:`check_outputs`) before the first opens."""
    check_outputs(outputs, jsonl)
    sinks: list[Sink] = []
    try:
        if show:
            sinks.append(WindowSink(title))
        sinks.extend(open_sink(p, fps=fps) for p in outputs)
        if jsonl is not None:
            sinks.append(JsonlSink(check_writable(jsonl)))
        sinks.extend(CallbackSink(fn) for fn in callbacks)
    except BaseException:
        MultiSink(sinks).close()
        raise
    if not sinks:
        raise OutputError("nothing to write: give -o OUT (video, image or folder/), --json FILE.jsonl or --show")
    return MultiSink(sinks)

