"""Checking and fitting the frames users pass in."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgeseg.errors import FrameError


def validate_frame(frame: Any) -> np.ndarray:
    """Return *frame* as a C-contiguous HxWx3 uint8 array, or raise :class:`FrameError` saying
    what is wrong and how to convert it. Channels are taken to be BGR (OpenCV's order)."""
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"frame must be a numpy array (HxWx3 uint8 BGR), got {type(frame).__name__}")
    shape = tuple(frame.shape)
    if frame.ndim == 2 or (frame.ndim == 3 and shape[2] == 1):
        raise FrameError(
            f"frame has 1 channel (shape {shape}); models take 3-channel BGR: "
            "convert with cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)"
        )
    if frame.ndim == 3 and shape[2] == 4:
        raise FrameError(
            f"frame has 4 channels (shape {shape}); drop alpha with cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)"
        )
    if frame.ndim != 3 or shape[2] != 3:
        raise FrameError(f"frame must have shape HxWx3 (BGR), got shape {shape}")
    if frame.size == 0:
        raise FrameError(f"frame is empty (shape {shape}); check that the source delivered an image")
    if frame.dtype != np.uint8:
        raise FrameError(
            f"frame must be uint8 (0..255 BGR), got {frame.dtype}; "
            "convert with np.clip(frame, 0, 255).astype(np.uint8)"
        )
    return np.ascontiguousarray(frame)


def fit_frame(frame: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx3 frame to *size_hw* (height, width) in pixels; a no-op at that size.

    Shrinking averages pixel areas (no aliasing); enlarging is bilinear.
    """
    h, w = size_hw
    if frame.shape[:2] == (h, w):
        return frame
    shrink = frame.shape[0] >= h and frame.shape[1] >= w
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def map_labels_back(label_map: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize an HxW label map (or binary mask) to *size_hw* with nearest-neighbour sampling, so
    labels stay labels."""
    h, w = size_hw
    if label_map.shape[:2] == (h, w):
        return label_map
    return cv2.resize(label_map, (w, h), interpolation=cv2.INTER_NEAREST)
