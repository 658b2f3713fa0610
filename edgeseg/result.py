"""What a model returns for one frame, in frame coordinates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Capture:
    """When the frame of a result arrived, set by the video pipeline (``edgeseg.pipeline``):
    ``time`` wall-clock seconds since the epoch (``time.time()``, for matching other sensors'
    stamps), ``monotonic`` seconds of ``time.monotonic()`` (for intervals; immune to clock
    steps), both taken when the source returned the frame; ``latency_ms`` milliseconds from then
    until the model's result was ready."""

    time: float
    monotonic: float
    latency_ms: float


@dataclass(frozen=True)
class SemanticResult:
    """Per-pixel classes of one frame.

    ``label_map`` is HxW uint8, one class id per pixel of the frame passed in (same height and
    width). ``classes`` and ``palette`` (RGB) come from the model's metadata. ``capture``: when
    the frame arrived (:class:`Capture`; None outside the pipeline).
    """

    label_map: np.ndarray
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    capture: Capture | None = None

    def class_areas(self) -> dict[str, int]:
        """Pixels per class name, for the classes present in the frame."""
        counts = np.bincount(self.label_map.ravel(), minlength=len(self.classes))
        return {self.classes[i]: int(n) for i, n in enumerate(counts[: len(self.classes)]) if n}


@dataclass(frozen=True)
class InstanceResult:
    """Detected objects of one frame, highest score first, in the coordinates of the frame passed in.

    ``boxes`` float32 [N, 4]: x0, y0, x1, y1 in pixels, continuous coordinates (pixel (i, j)
    covers [j, j+1) x [i, i+1), so x1 - x0 is the box width). ``scores`` float32 [N] in 0..1.
    ``labels`` int32 [N]: class ids, index into ``classes`` (0 is the background and never
    appears). ``masks`` uint8 [N, H, W]: 1 where the object is, at frame resolution.
    ``capture``: when the frame arrived (:class:`Capture`; None outside the pipeline).
    ``track_ids``: int32 [N], the stable object ID of each detection across frames
    (:mod:`edgeseg.tracking`; None when not tracked, 0 for a detection no track holds).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    capture: Capture | None = None
    track_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def class_names(self) -> list[str]:
        return [self.classes[int(i)] for i in self.labels]
