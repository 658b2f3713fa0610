"""Drawing: the vectorised overlay gives the same pixels as the plain per-mask algorithm; the HUD.
(Speed is measured in benchmarks/draw_speed.py, never asserted.)"""

from __future__ import annotations

import cv2
import numpy as np

from edgeseg.draw import (
    colorize,
    draw_hud,
    draw_instances,
    draw_result,
    draw_semantic,
    hud_lines,
    label_counts,
    mask_region,
    palette_lut,
)
from edgeseg.result import InstanceResult, SemanticResult

CLASSES = ("__background__", "person", "car", "dog")
PALETTE = ((0, 0, 0), (220, 20, 60), (0, 0, 142), (250, 170, 30))


def instances(hw: tuple[int, int] = (120, 160)) -> InstanceResult:
    h, w = hw
    boxes = np.array([[10, 10, 90, 80], [50, 40, 150, 110], [0, 60, 40, 120]], np.float32)
    masks = np.zeros((3, h, w), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        cv2.ellipse(masks[k], ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2, (y1 - y0) // 2), 0, 0, 360, 1, -1)
    return InstanceResult(boxes, np.array([0.9, 0.8, 0.4], np.float32), np.array([1, 2, 3], np.int32), masks,
                          CLASSES, PALETTE)


def reference_instances(frame: np.ndarray, result: InstanceResult, alpha: float) -> np.ndarray:
    """Masks over whole frames, one at a time, lowest score first; then the boxes."""
    colours = palette_lut(result.palette)[result.labels]
    order = np.argsort(result.scores, kind="stable")
    layer = np.zeros_like(frame)
    painted = np.zeros(frame.shape[:2], bool)
    for i in order:
        m = result.masks[i].astype(bool)
        layer[m] = colours[i]
        painted |= m
    out = frame.copy()
    blended = (frame.astype(np.float64) * (1 - alpha) + layer.astype(np.float64) * alpha)
    out[painted] = blended[painted].round().astype(np.uint8)
    for i in order:
        x0, y0, x1, y1 = (round(float(v)) for v in result.boxes[i])
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), tuple(int(c) for c in colours[i]), 1)
    return out


def test_instances_match_the_per_mask_reference() -> None:
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    result = instances()
    for alpha in (0.5, 0.3):
        got = draw_instances(frame, result, alpha=alpha, labels=False).astype(int)
        want = reference_instances(frame, result, alpha).astype(int)
        assert np.abs(got - want).max() <= 1  # the frame and colour terms are rounded separately


def test_highest_score_on_top_and_frame_untouched() -> None:
    frame = np.full((120, 160, 3), 100, np.uint8)
    result = instances()
    out = draw_instances(frame, result, alpha=1.0, labels=False)
    # (60, 70) lies in the person (0.9) and the car (0.8) masks: the person wins.
    assert tuple(out[60, 70]) == tuple(palette_lut(PALETTE)[1])
    assert (frame == 100).all()


def test_labels_are_drawn_and_empty_results_copy_the_frame() -> None:
    frame = np.full((120, 160, 3), 100, np.uint8)
    result = instances()
    assert not np.array_equal(draw_result(frame, result), draw_instances(frame, result, labels=False))
    empty = InstanceResult(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32),
                           np.zeros((0, 120, 160), np.uint8), CLASSES, PALETTE)
    out = draw_result(frame, empty)
    assert np.array_equal(out, frame) and out is not frame


def test_mask_region_holds_a_grown_box_inside_the_frame() -> None:
    # grown by 10 % of the size + 2 px: 12 px left and right, 7 px up and down, clipped at 0
    assert mask_region(np.array([10, 20, 110, 70]), (100, 200)) == (0, 13, 122, 77)
    assert mask_region(np.array([-50, -50, 500, 500]), (100, 200)) == (0, 0, 200, 100)
    assert mask_region(np.array([np.nan, 0, 1, 1]), (100, 200)) == (0, 0, 200, 100)
    assert mask_region(np.array([300, 300, 400, 400]), (100, 200)) == (200, 100, 200, 100)  # outside: empty


def test_semantic_overlay() -> None:
    frame = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    label_map = np.zeros((60, 80), np.uint8)
    label_map[20:, :40] = 2
    label_map[50:, 40:] = 3
    result = SemanticResult(label_map, CLASSES, PALETTE)
    colours = palette_lut(PALETTE)[label_map]
    assert np.array_equal(colorize(label_map, PALETTE), colours)
    assert np.array_equal(draw_semantic(frame, result, legend=False), cv2.addWeighted(frame, 0.5, colours, 0.5, 0))
    with_legend = draw_semantic(frame, result)
    assert not np.array_equal(with_legend[:20, :40], draw_semantic(frame, result, legend=False)[:20, :40])
    assert list(label_counts(label_map)[:4]) == [1600 + 1200, 0, 1600, 400]


def test_hud() -> None:
    assert hud_lines(29.97, 84.4, 3) == ["30.0 FPS", "latency 84 ms", "dropped 3"]
    assert hud_lines(None, 12.0, None) == ["latency 12 ms"]
    image = np.full((200, 300, 3), 200, np.uint8)
    draw_hud(image, hud_lines(30.0, 10.0, 0))
    assert (image[:, :150] == 200).all() and (image[:40, 150:] != 200).any()
    draw_hud(image[:5, :5], ["a very long line that does not fit"])  # clipped, no error
