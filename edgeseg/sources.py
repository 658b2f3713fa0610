"""Where frames come from: an image file or a video file (cameras and streams come later).

A source is iterable over HxWx3 uint8 BGR frames and knows its frame rate and length when the
file says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edgeseg.errors import SourceError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


class ImageSource:
    """One image file, one frame."""

    fps = 1.0

    def __init__(self, path: Path) -> None:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise SourceError(f"{path}: cannot decode this image; is it a valid {path.suffix} file?")
        self.path = path
        self.frame: np.ndarray = frame
        self.frame_count = 1

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.frame

    def close(self) -> None:
        pass


class VideoFileSource:
    """Frames of a video file in order, decoded by OpenCV."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise SourceError(f"{path}: OpenCV cannot open this video; check the file and its codec")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            ok, frame = self._cap.read()
            if not ok:
                return
            yield frame

    def close(self) -> None:
        self._cap.release()


Source = ImageSource | VideoFileSource


def open_source(uri: str | os.PathLike[str]) -> Source:
    """Open an image or video file named by *uri*; :class:`SourceError` if it cannot be read."""
    path = Path(uri)
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return ImageSource(path)
    if suffix in VIDEO_SUFFIXES:
        return VideoFileSource(path)
    raise SourceError(
        f"{path}: unknown source type {suffix or '(no suffix)'!r}; give an image "
        f"({', '.join(IMAGE_SUFFIXES)}) or a video ({', '.join(VIDEO_SUFFIXES)})"
    )
