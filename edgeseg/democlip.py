"""A demo video made from the photos scikit-image ships, so the demo needs no download.

Each photo is shown with a slow pan and zoom (so consecutive frames differ like a moving camera),
and cut to the next one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edgeseg.errors import BackendUnavailableError, OutputError
from edgeseg.sinks import VideoSink, open_sink

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")


def demo_photos() -> list[np.ndarray]:
    """The scikit-image photos used by demos and tests, as BGR uint8 arrays."""
    try:
        from skimage import data
    except ImportError as exc:
        raise BackendUnavailableError("the demo clip needs scikit-image: pip install 'edgeseg[demo]'") from exc
    return [np.ascontiguousarray(getattr(data, name)()[:, :, ::-1]) for name in PHOTOS]


def pan_zoom(photo: np.ndarray, size_hw: tuple[int, int], frames: int) -> Iterator[np.ndarray]:
    """*frames* frames of *size_hw* (height, width) moving across *photo* while zooming in by 15%."""
    h, w = size_hw
    ph, pw = photo.shape[:2]
    cover = max(h / ph, w / pw)  # scale at which the photo just covers the frame
    for k in range(frames):
        t = k / max(frames - 1, 1)
        zoom = cover * (1.0 + 0.15 * t)
        crop_h, crop_w = h / zoom, w / zoom
        y0 = (ph - crop_h) * (0.3 + 0.4 * t)
        x0 = (pw - crop_w) * (0.2 + 0.6 * t)
        # Affine map from the photo crop to the frame: one resampling, sub-pixel motion.
        m = np.array([[zoom, 0.0, -x0 * zoom], [0.0, zoom, -y0 * zoom]], dtype=np.float64)
        yield cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def make_demo_clip(
    path: str | os.PathLike[str], size_hw: tuple[int, int] = (512, 1024), seconds_per_photo: float = 1.5,
    fps: float = 15.0,
) -> Path:
    """Write the demo clip to *path* (mp4/avi/mkv) atomically; returns the path."""
    sink = open_sink(path, fps=fps)
    if not isinstance(sink, VideoSink):
        raise OutputError(f"{path}: the demo clip is a video; name it .mp4")
    try:
        for photo in demo_photos():
            for frame in pan_zoom(photo, size_hw, max(2, round(seconds_per_photo * fps))):
                sink.write(frame)
    finally:
        sink.close()
    return sink.path
