"""INT8 calibration from a folder of images, through the model's own preprocessing.

edgeseg graphs take the raw uint8 BGR frame (colour conversion, scaling and normalisation are in
the graph), so the only step outside it is fitting each image to the model's frame size, exactly
as :meth:`edgeseg.Model.__call__` does. Batches are single frames.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tensorrt as trt

from edgeseg.atomic import atomic_output
from edgeseg.errors import ArgumentError
from edgeseg.frames import fit_frame
from edgeseg.sources import IMAGE_SUFFIXES
from edgeseg.trt.gpu_imports import check


def calibration_images(folder: Path, limit: int) -> list[Path]:
    """Up to *limit* image files of *folder*, sorted; :class:`ArgumentError` if there are none."""
    if not folder.is_dir():
        raise ArgumentError(f"--calib-images {folder}: not a folder; give a folder of representative images")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not images:
        raise ArgumentError(f"--calib-images {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    return images


class FolderCalibrator(trt.IInt8EntropyCalibrator2):
    """Feeds the frames of a folder to TensorRT's entropy calibrator; reads and writes a cache file."""

    def __init__(self, cudart: Any, input_name: str, frame_hw: tuple[int, int], images: list[Path],
                 cache: Path | None) -> None:
        trt.IInt8EntropyCalibrator2.__init__(self)
        self.cudart = cudart
        self.input_name = input_name
        self.frame_hw = frame_hw
        self.cache = cache
        self.nbytes = frame_hw[0] * frame_hw[1] * 3
        self.device = check(cudart.cudaMalloc(self.nbytes), "cudaMalloc")
        self._frames: Iterator[np.ndarray] = (self._load(p) for p in images)
        self.used = 0

    def _load(self, path: Path) -> np.ndarray:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise ArgumentError(f"{path}: cannot decode this calibration image")
        return np.ascontiguousarray(fit_frame(frame, self.frame_hw))

    def get_batch_size(self) -> int:
        return 1

    def get_batch(self, names: list[str]) -> list[int] | None:  # type: ignore[override]
        frame = next(self._frames, None)
        if frame is None:
            return None
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(self.cudart.cudaMemcpy(self.device, frame.ctypes.data_as(ctypes.c_void_p).value, self.nbytes, kind),
              "cudaMemcpy")
        self.used += 1
        return [int(self.device)]

    def read_calibration_cache(self) -> bytes | None:
        if self.cache is not None and self.cache.is_file():
            return self.cache.read_bytes()
        return None

    def write_calibration_cache(self, cache: Any) -> None:
        if self.cache is not None:
            with atomic_output(self.cache) as tmp:
                tmp.write_bytes(bytes(cache))

    def free(self) -> None:
        self.cudart.cudaFree(self.device)
