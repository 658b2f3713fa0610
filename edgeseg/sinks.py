"""Where annotated frames go: an image file or a video file, always written atomically.

A video is written under a temporary name and renamed when it is closed; ``close`` is called on
end of stream, on error and on Ctrl-C alike, so the frames written so far are never lost.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import cv2
import numpy as np

from edgeseg.atomic import check_writable, temporary_sibling
from edgeseg.errors import OutputError
from edgeseg.sources import IMAGE_SUFFIXES

# Container suffix -> FourCC. mp4v plays everywhere OpenCV's bundled FFmpeg can write.
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}


class ImageSink:
    """Writes the one frame it gets to an image file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        if self.frames:
            raise OutputError(f"{self.path}: an image holds one frame; write videos to .mp4/.avi/.mkv")
        tmp = temporary_sibling(self.path)
        try:
            if not cv2.imwrite(str(tmp), frame):
                raise OutputError(f"{self.path}: OpenCV could not encode a {self.path.suffix} image")
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self.frames += 1

    def close(self) -> None:
        pass


class VideoSink:
    """Writes frames to a video file; opened on the first frame (its size sets the video's)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps
        self.frames = 0
        self._tmp: Path | None = None
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self._tmp = temporary_sibling(self.path)
            fourcc = cv2.VideoWriter.fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                self._tmp.unlink()
                raise OutputError(f"{self.path}: OpenCV cannot write {self.path.suffix} video here")
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


Sink = ImageSink | VideoSink


def open_sink(path: str | os.PathLike[str], fps: float = 25.0) -> Sink:
    """An image or video sink chosen by *path*'s suffix; checks it is writable first."""
    out = check_writable(path)
    suffix = out.suffix.lower()
    if suffix in VIDEO_CODECS:
        return VideoSink(out, fps)
    if suffix in IMAGE_SUFFIXES:
        return ImageSink(out)
    raise OutputError(
        f"{out}: unknown output type {suffix or '(no suffix)'!r}; use a video ({', '.join(VIDEO_CODECS)}) "
        f"or an image ({', '.join(IMAGE_SUFFIXES)})"
    )
