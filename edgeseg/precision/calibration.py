"""Calibration frames for an INT8 file: the user's images, fitted to the model's frame size
exactly as at run time (:func:`edgeseg.frames.fit_frame`), and where their statistics are cached.

The graph takes the raw uint8 BGR frame (colour order, scaling, normalisation and resizing are
in the graph), so fitting the image to the frame size is the only step outside it, and
calibration sees what the model sees in ``edgeseg.load(...)(image)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeseg import ranges
from edgeseg.errors import ArgumentError, CacheError, EdgesegWarning
from edgeseg.frames import fit_frame
from edgeseg.sources import IMAGE_SUFFIXES

#: fewer images than this give a warning: activation ranges from a handful of frames miss
#: the tails the deployed model meets
MIN_IMAGES = 32
DEFAULT_COUNT = 128
NEEDS_IMAGES = ("--precision int8 needs calibration images: --calib-images FOLDER (a few hundred frames like the "
                "ones the model will see), or an existing --calib-cache FILE")


@dataclass(frozen=True)
class CalibrationSet:
    """Up to *count* images of *folder* (sorted by name), read as uint8 BGR frames of *frame_hw*
    (height, width) pixels."""

    folder: Path
    images: tuple[Path, ...]
    frame_hw: tuple[int, int]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str] | None, count: int,
                    frame_hw: tuple[int, int], warn: bool = True) -> CalibrationSet:
        """The set, or :class:`ArgumentError` for a missing, empty or non-folder path; a warning
        (:class:`edgeseg.errors.EdgesegWarning`, unless not *warn*) when it holds fewer than
        :data:`MIN_IMAGES`."""
        if folder is None:
            raise ArgumentError(NEEDS_IMAGES)
        ranges.check("calib_count", count, 1, integer=True)
        root = Path(folder)
        if not root.is_dir():
            raise ArgumentError(f"--calib-images {root}: not a folder; give a folder of representative images")
        images = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())[:count]
        if not images:
            raise ArgumentError(f"--calib-images {root}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
        if warn and len(images) < MIN_IMAGES:
            warnings.warn(EdgesegWarning(
                f"only {len(images)} calibration image(s) in {root}; {MIN_IMAGES} or more (ideally {DEFAULT_COUNT}+, "
                "from the deployment scene) give INT8 ranges that hold"), stacklevel=3)
        return cls(root, tuple(images), frame_hw)

    def frames(self) -> Iterator[np.ndarray]:
        """The frames, in order; :class:`ArgumentError` naming an image that does not decode."""
        for path in self.images:
            try:
                frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            except cv2.error:
                frame = None
            if frame is None:
                raise ArgumentError(f"calibration image {path}: cannot be decoded; remove it or convert it to PNG/JPEG")
            yield np.ascontiguousarray(fit_frame(frame, self.frame_hw))

    def fingerprint(self) -> list[list[object]]:
        """(name, bytes, mtime in ns) of every image: what the cached statistics were made from."""
        rows: list[list[object]] = []
        for p in self.images:
            st = p.stat()
            rows.append([p.name, st.st_size, st.st_mtime_ns])
        return rows


def cache_dir() -> Path:
    """Where calibration statistics are kept between runs: ``$EDGESEG_CACHE_DIR`` or
    ``$XDG_CACHE_HOME/edgeseg`` (``~/.cache/edgeseg``), then ``calibration/``."""
    root = os.environ.get("EDGESEG_CACHE_DIR")
    if root:
        return Path(root) / "calibration"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edgeseg" / "calibration"


def cache_key(model_bytes: bytes, method: str, images: CalibrationSet, quantized: list[str]) -> str:
    """A key that changes with anything the statistics depend on: the FP32 graph, the method,
    the images (names, sizes, times) and the frame size, the quantized nodes."""
    h = hashlib.sha256(model_bytes)
    h.update(json.dumps([method, list(images.frame_hw), images.fingerprint(), quantized]).encode())
    return h.hexdigest()[:24]


def statistics_problem(path: Path) -> str | None:
    """What is wrong with the calibration statistics file *path*, or None when it is one
    edgeseg wrote and can use: ONNX Runtime's calibration cache (``save_tensors_data``: JSON,
    ``"CLS": "TensorsData"``, a calibration method, and a finite range lowest <= highest for
    every tensor). Whether its tensors are this model's is checked when it is used
    (:func:`edgeseg.precision.int8.quantize`)."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorsData

    try:
        raw = json.loads(path.read_bytes())
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return "is not JSON (truncated or damaged)"
    if not isinstance(raw, dict) or raw.get("CLS") != "TensorsData":
        return "is not a calibration cache (not ONNX Runtime's TensorsData JSON)"
    try:
        data = TensorsData.from_dict(raw)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        return f"is damaged ({type(exc).__name__}: {exc})"
    if not isinstance(data.calibration_method, CalibrationMethod):
        return f"is damaged (unknown calibration method {raw.get('calibration_method')!r})"
    if not data.data:
        return "holds no statistics"
    for name, tensor in data.items():
        try:  # a range is two arrays (one value per tensor, or per channel)
            low, high = (np.asarray(v, np.float64).ravel() for v in tensor.range_value)
        except (AttributeError, TypeError, ValueError):
            return f"is damaged (tensor {name!r} has no range)"
        if low.size == 0 or low.shape != high.shape:
            return f"is damaged (tensor {name!r} has no range)"
        bad = ~(np.isfinite(low) & np.isfinite(high) & (low <= high))
        if bad.any():
            i = int(np.argmax(bad))
            return f"is damaged (tensor {name!r} has the range [{low[i]:g}, {high[i]:g}])"
    return None


def check_statistics(path: Path, can_recalibrate: bool) -> bool:
    """Whether the calibration statistics file *path* can be used. A damaged or foreign one is
    a warning and False when the images to calibrate again are at hand (*can_recalibrate*; the
    file is then rewritten), a :class:`CacheError` saying to delete it otherwise."""
    problem = statistics_problem(path)
    if problem is None:
        return True
    if not can_recalibrate:
        raise CacheError(f"calibration cache {path} {problem}; delete it, or give --calib-images FOLDER to "
                         "calibrate again and rewrite it")
    warnings.warn(EdgesegWarning(f"calibration cache {path} {problem}; calibrating again, it will be rewritten"),
                  stacklevel=3)
    return False
