"""What a model returns for one frame, in frame coordinates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SemanticResult:
    """Per-pixel classes of one frame.

    ``label_map`` is HxW uint8, one class id per pixel of the frame passed in (same height and
    width). ``classes`` and ``palette`` (RGB) come from the model's metadata.
    """

    label_map: np.ndarray
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]

    def class_areas(self) -> dict[str, int]:
        """Pixels per class name, for the classes present in the frame."""
        counts = np.bincount(self.label_map.ravel(), minlength=len(self.classes))
        return {self.classes[i]: int(n) for i, n in enumerate(counts[: len(self.classes)]) if n}
