"""Drawing results over frames (vectorised; OpenCV BGR images)."""

from __future__ import annotations

import cv2
import numpy as np

from edgeseg.result import InstanceResult, SemanticResult


def palette_lut(palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """A 256x3 uint8 BGR lookup table from an RGB palette; unused ids are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    if palette:
        lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)[:, ::-1]
    return lut


def colorize(label_map: np.ndarray, palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """HxW class ids -> HxWx3 BGR colours."""
    return palette_lut(palette)[label_map]


def draw_semantic(
    frame: np.ndarray, result: SemanticResult, alpha: float = 0.5, legend: bool = True, max_legend: int = 12
) -> np.ndarray:
    """Return a copy of *frame* with the label map blended in at *alpha* (0: frame only,
    1: colours only) and, optionally, a legend of the classes present, largest first."""
    colours = colorize(result.label_map, result.palette)
    out = cv2.addWeighted(frame, 1.0 - alpha, colours, alpha, 0.0)
    if legend:
        areas = result.class_areas()
        names = sorted(areas, key=lambda n: -areas[n])[:max_legend]
        ids = [result.classes.index(n) for n in names]
        draw_legend(out, names, [tuple(int(c) for c in palette_lut(result.palette)[i]) for i in ids])
    return out


def draw_legend(image: np.ndarray, names: list[str], colours_bgr: list[tuple[int, ...]]) -> None:
    """Colour swatches and names in the top-left corner, on a darkened panel (in place)."""
    if not names:
        return
    scale = max(0.4, min(image.shape[:2]) / 900)
    row = int(22 * scale / 0.5)
    width = int(max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for n in names) + row * 1.6)
    height = row * len(names) + row // 3
    h, w = min(height, image.shape[0]), min(width, image.shape[1])
    panel = image[:h, :w]
    panel[:] = (panel.astype(np.uint16) * 2 // 5).astype(np.uint8)
    for k, (name, colour) in enumerate(zip(names, colours_bgr, strict=True)):
        y = row * k + row // 3
        cv2.rectangle(image, (row // 3, y), (row // 3 + row * 2 // 3, y + row * 2 // 3), colour, -1)
        cv2.putText(
            image, name, (row + row // 3, y + row * 2 // 3 - 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
            (255, 255, 255), 1, cv2.LINE_AA,
        )


def draw_instances(frame: np.ndarray, result: InstanceResult, alpha: float = 0.5, labels: bool = True) -> np.ndarray:
    """Return a copy of *frame* with each object's mask blended in its class colour at *alpha*,
    its box, and ``name score`` above the box. Lower scores are drawn first, so the most confident
    object ends on top."""
    out = frame.copy()
    if len(result) == 0:
        return out
    lut = palette_lut(result.palette)
    colours = lut[np.asarray(result.labels, dtype=np.int64) % 256]
    order = np.argsort(result.scores, kind="stable")
    # One blend for all masks: the colour of the top-most object at each pixel.
    painted = np.zeros(frame.shape[:2], dtype=bool)
    layer = np.zeros_like(frame)
    for i in order:
        m = result.masks[i].astype(bool)
        layer[m] = colours[i]
        painted |= m
    blended = cv2.addWeighted(frame, 1.0 - alpha, layer, alpha, 0.0)
    out[painted] = blended[painted]
    thickness = max(1, round(min(frame.shape[:2]) / 400))
    scale = max(0.4, min(frame.shape[:2]) / 1200)
    for i in order:
        x0, y0, x1, y1 = (round(float(v)) for v in result.boxes[i])
        colour = tuple(int(c) for c in colours[i])
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, thickness)
        if labels:
            text = f"{result.classes[int(result.labels[i])]} {float(result.scores[i]):.2f}"
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            ty = max(y0, th + base)
            cv2.rectangle(out, (x0, ty - th - base), (x0 + tw, ty), colour, -1)
            cv2.putText(out, text, (x0, ty - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def draw_result(frame: np.ndarray, result: SemanticResult | InstanceResult, alpha: float = 0.5,
                legend: bool = True) -> np.ndarray:
    """Draw either kind of result (see :func:`draw_semantic`, :func:`draw_instances`)."""
    if isinstance(result, InstanceResult):
        return draw_instances(frame, result, alpha=alpha, labels=legend)
    return draw_semantic(frame, result, alpha=alpha, legend=legend)
