"""Where Mask R-CNN implementations differ at inference, one small named strategy per decision.

The Mask R-CNN graph (``graph.py``) has one skeleton; a family (torchvision, detectron2,
maskrcnn-benchmark, matterport) is a :class:`~edgeseg.converters.maskrcnn.graph.Conventions`
record that picks one stage record of each step (``stages.py``: preprocess, proposals, pooling,
refinement, mask channel, boxes to the frame) and one strategy of each kind below, which the
torchvision family's stages read (matterport's stages read only the RoI sampling and level rule).
Each strategy is a frozen record with a name (what it is in error messages and metadata) and the
few methods the graph calls; each is tested on its own (``tests/test_maskrcnn_strategies.py``).
A new family adds records, never a branch in the graph. The mask paste is the one decision made
elsewhere: a PasteMasks mode by name (``GraphOptions.paste``, ``edgeseg.custom_ops.PASTE_MODES``),
which each family's graph options set and ``--paste`` may override for torchvision models.

Coordinates are image pixels, boxes ``(x1, y1, x2, y2)``. Two pixel conventions exist: the
*continuous* one (torchvision, detectron2: a box's width is ``x2 - x1``) and the *inclusive* or
"+1" one of Detectron and maskrcnn-benchmark (``x2`` is the last pixel column inside the box:
width ``x2 - x1 + 1``), written ``offset = 1`` below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from edgeseg.custom_ops import LEVEL_RULES, ROI_SAMPLINGS

# ---------------------------------------------------------------------------------------------
# Pixel input


@dataclass(frozen=True)
class PixelInput:
    """How uint8 frame values become the network's input before mean and std: ``bgr``: the
    network takes BGR (else RGB); the value is ``x / divisor`` (a division, as torchvision's
    ``/ 255``: a multiplication by 1/255 rounds differently)."""

    name: str
    bgr: bool
    divisor: float

    def scale(self, x: Tensor) -> Tensor:
        """*x*: float32 pixel values 0..255 -> the values the mean is subtracted from."""
        return x / self.divisor

    @property
    def effective_scale(self) -> float:
        """The factor applied to a pixel value (for metadata: runtimes outside the graph)."""
        return 1.0 / self.divisor


TORCHVISION_PIXELS = PixelInput("torchvision", bgr=False, divisor=255.0)


# ---------------------------------------------------------------------------------------------
# Test-time resize


def _floor_rule(frame_hw: tuple[int, int], min_size: int, max_size: int) -> tuple[int, int]:
    # GeneralizedRCNNTransform: one scale, floor of each scaled side
    h, w = frame_hw
    scale = min(min_size / min(h, w), max_size / max(h, w))
    return math.floor(h * scale), math.floor(w * scale)


def _round_half_up_rule(frame_hw: tuple[int, int], min_size: int, max_size: int) -> tuple[int, int]:
    # detectron2's ResizeShortestEdge.get_output_shape
    from edgeseg.converters.detectron2.resize import resized_hw

    return resized_hw(frame_hw, min_size, max_size)


def _short_side_rule(frame_hw: tuple[int, int], min_size: int, max_size: int) -> tuple[int, int]:
    """maskrcnn-benchmark's ``Resize.get_size`` (``data/transforms/transforms.py``): the short side
    becomes *min_size*, lowered to ``round(max_size * short / long)`` (Python's round: half to
    even) when the long side would pass *max_size*; the long side is truncated, not rounded; a
    frame whose short side already has that size is not resized."""
    h, w = frame_hw
    size = min_size
    short, long = float(min(h, w)), float(max(h, w))
    if long / short * size > max_size:
        size = round(max_size * short / long)
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


_SIZE_RULES = {"floor": _floor_rule, "round_half_up": _round_half_up_rule, "short_side": _short_side_rule}


@dataclass(frozen=True)
class Resize:
    """The test-time resize: ``rule`` computes the resized size (``floor``: torchvision,
    ``round_half_up``: detectron2, ``short_side``: maskrcnn-benchmark/Detectron); ``pillow``: the
    uint8 image is resized by Pillow's bilinear filter before normalising (detectron2,
    maskrcnn-benchmark), else the normalised float image by ``F.interpolate`` (torchvision)."""

    name: str
    rule: str
    pillow: bool

    def __post_init__(self) -> None:
        if self.rule not in _SIZE_RULES:
            raise ValueError(f"resize rule {self.rule!r}: one of {', '.join(_SIZE_RULES)}")

    def output_hw(self, frame_hw: tuple[int, int], min_size: int, max_size: int) -> tuple[int, int]:
        """(height, width) the frame is resized to."""
        return _SIZE_RULES[self.rule](frame_hw, min_size, max_size)

    @property
    def metadata_name(self) -> str:
        return "pillow-bilinear" if self.pillow else "bilinear"


TORCHVISION_RESIZE = Resize("torchvision", "floor", pillow=False)
DETECTRON2_RESIZE = Resize("detectron2", "round_half_up", pillow=True)
MASKRCNN_BENCHMARK_RESIZE = Resize("maskrcnn-benchmark", "short_side", pillow=True)


# ---------------------------------------------------------------------------------------------
# Anchors


@dataclass(frozen=True)
class AnchorGenerator:
    """The cell anchors of one FPN level (the anchors of the feature pixel at the origin; the
    grid adds ``stride * (x, y)``), in the order of the RPN head's channels (ratio-major).

    ``torchvision``: centred on 0, ``w = size / sqrt(ratio)``, ``h = size * sqrt(ratio)``, rounded;
    ``centred``: the same unrounded (detectron2's DefaultAnchorGenerator, offset 0);
    ``detectron``: Detectron's legacy anchors (maskrcnn-benchmark too): from the window
    ``(0, 0, stride - 1, stride - 1)`` in the +1 convention, widths ``round(sqrt(area / ratio))``
    (NumPy's half-to-even), heights ``round(width * ratio)``, then scaled by ``size / stride``."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in ("torchvision", "centred", "detectron"):
            raise ValueError(f"anchor generator {self.name!r}: torchvision, centred or detectron")

    def cell_anchors(self, sizes: tuple[float, ...], ratios: tuple[float, ...], stride: int) -> Tensor:
        """[len(ratios) * len(sizes), 4] float32."""
        if self.name == "detectron":
            return _detectron_cell_anchors(sizes, ratios, stride)
        scales = torch.as_tensor(sizes, dtype=torch.float32)
        r = torch.as_tensor(ratios, dtype=torch.float32)
        h_ratios = torch.sqrt(r)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).view(-1)
        hs = (h_ratios[:, None] * scales[None, :]).view(-1)
        base = torch.stack([-ws, -hs, ws, hs], dim=1) / 2
        return base.round() if self.name == "torchvision" else base


def _detectron_cell_anchors(sizes: tuple[float, ...], ratios: tuple[float, ...], stride: int) -> Tensor:
    """Detectron's ``generate_anchors`` (maskrcnn-benchmark ``anchor_generator.py``), in float64
    as NumPy computes it, then float32."""

    def whctrs(a: np.ndarray) -> tuple[float, float, float, float]:
        w, h = a[2] - a[0] + 1, a[3] - a[1] + 1
        return w, h, a[0] + 0.5 * (w - 1), a[1] + 0.5 * (h - 1)

    def mk(ws: np.ndarray, hs: np.ndarray, cx: float, cy: float) -> np.ndarray:
        ws, hs = ws[:, None], hs[:, None]
        return np.hstack((cx - 0.5 * (ws - 1), cy - 0.5 * (hs - 1), cx + 0.5 * (ws - 1), cy + 0.5 * (hs - 1)))

    window = np.array([0.0, 0.0, stride - 1.0, stride - 1.0])
    w, h, cx, cy = whctrs(window)
    size_ratios = (w * h) / np.asarray(ratios, dtype=np.float64)
    ws = np.round(np.sqrt(size_ratios))
    hs = np.round(ws * np.asarray(ratios, dtype=np.float64))
    by_ratio = mk(ws, hs, cx, cy)
    scales = np.asarray(sizes, dtype=np.float64) / stride
    rows = []
    for a in by_ratio:
        aw, ah, acx, acy = whctrs(a)
        rows.append(mk(aw * scales, ah * scales, acx, acy))
    return torch.from_numpy(np.vstack(rows)).to(torch.float32)


TORCHVISION_ANCHORS = AnchorGenerator("torchvision")
CENTRED_ANCHORS = AnchorGenerator("centred")
DETECTRON_ANCHORS = AnchorGenerator("detectron")


# ---------------------------------------------------------------------------------------------
# Box coder


@dataclass(frozen=True)
class BoxCoder:
    """Box decoding, clipping and box sides in one pixel convention.

    ``offset`` 0: torchvision's ``BoxCoder.decode_single`` and ``clip_boxes_to_image`` (x in
    ``[0, w]``); ``offset`` 1: Detectron/maskrcnn-benchmark (``box_coder.py``): width
    ``x2 - x1 + 1``, centre ``x1 + 0.5 * width``, decoded ``x2 = centre + 0.5 * w - 1``, clipped to
    ``[0, w - 1]`` (``BoxList.clip_to_image``). Both clamp dw, dh at ``log(1000 / 16)``."""

    name: str
    offset: int

    def __post_init__(self) -> None:
        if self.offset not in (0, 1):
            raise ValueError(f"box coder offset {self.offset}: 0 or 1")

    def decode(self, weights: tuple[float, float, float, float], clamp: float, deltas: Tensor,
               boxes: Tensor) -> Tensor:
        """*deltas* [N, 4k] against *boxes* [N, 4] -> [N, 4k] boxes."""
        off = float(self.offset)
        widths = boxes[:, 2] - boxes[:, 0] + off if self.offset else boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1] + off if self.offset else boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights
        wx, wy, ww, wh = weights
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = torch.clamp(deltas[:, 2::4] / ww, max=clamp)
        dh = torch.clamp(deltas[:, 3::4] / wh, max=clamp)
        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]
        if self.offset:
            x1 = pred_ctr_x - 0.5 * pred_w
            y1 = pred_ctr_y - 0.5 * pred_h
            x2 = pred_ctr_x + 0.5 * pred_w - off
            y2 = pred_ctr_y + 0.5 * pred_h - off
        else:  # torchvision's op order (c_to_c = 0.5 * size, subtracted and added)
            half_w = torch.tensor(0.5, dtype=pred_ctr_x.dtype) * pred_w
            half_h = torch.tensor(0.5, dtype=pred_ctr_y.dtype) * pred_h
            x1, y1, x2, y2 = pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h
        return torch.stack((x1, y1, x2, y2), dim=2).flatten(1)

    def clip(self, boxes: Tensor, hw: tuple[int, int]) -> Tensor:
        """*boxes* [..., 4] clamped into an image of *hw* (the unpadded resized size)."""
        h, w = float(hw[0] - self.offset), float(hw[1] - self.offset)
        x = boxes[..., 0::2].clamp(min=0, max=w)
        y = boxes[..., 1::2].clamp(min=0, max=h)
        return torch.stack((x, y), dim=-1).reshape(boxes.shape)

    def sides(self, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """(widths, heights) of *boxes* [N, 4] in this convention."""
        if self.offset:
            return boxes[:, 2] - boxes[:, 0] + float(self.offset), boxes[:, 3] - boxes[:, 1] + float(self.offset)
        return boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]


CONTINUOUS_BOXES = BoxCoder("continuous", 0)
INCLUSIVE_BOXES = BoxCoder("inclusive (+1)", 1)


# ---------------------------------------------------------------------------------------------
# NMS


@dataclass(frozen=True)
class NmsForm:
    """How a family's NMS is put to ONNX's ``NonMaxSuppression`` (which suppresses when IoU with
    plain areas is *greater than* the threshold).

    ``offset`` 1: Detectron's +1 areas and intersections; the same IoU is the plain IoU of the
    boxes with their max corners moved by +1, which is what NonMaxSuppression is given.
    ``inclusive``: suppression at ``IoU >= t`` (Detectron's ``nms_cpu``); with float32 IoUs that
    is ``IoU > t'`` for ``t'`` the float32 just below ``t``. Exact on integer boxes (ties
    included); on other boxes the float32 rounding of ``x2 + 1`` may move an IoU by an ulp."""

    name: str
    offset: int
    inclusive: bool

    def boxes(self, boxes: Tensor) -> Tensor:
        """The boxes NonMaxSuppression sees."""
        if not self.offset:
            return boxes
        shift = torch.tensor([0.0, 0.0, float(self.offset), float(self.offset)], dtype=boxes.dtype)
        return boxes + shift

    def threshold(self, iou: float) -> float:
        """NonMaxSuppression's ``iou_threshold`` for this family's threshold *iou*."""
        t = np.float32(iou)
        return float(np.nextafter(t, np.float32(-np.inf))) if self.inclusive else float(t)


TORCHVISION_NMS = NmsForm("torchvision", offset=0, inclusive=False)
DETECTRON_NMS = NmsForm("detectron", offset=1, inclusive=True)


# ---------------------------------------------------------------------------------------------
# RoIAlign and FPN level mapping (attributes of the MultiLevelRoIAlign op)


@dataclass(frozen=True)
class RoIAlignSampling:
    """How RoIAlign samples a box: ``aligned`` shifts by half a feature pixel and keeps RoIs under
    one feature pixel as they are (detectron2's ROIAlignV2); legacy otherwise (torchvision,
    Detectron, maskrcnn-benchmark). The sampling ratio is the model's pooler's. ``sampling``: the
    op's ``sampling`` (``ROI_SAMPLINGS``): RoIAlign's averaged bins on pixel boxes, or
    ``tf.image.crop_and_resize``'s one corner-aligned sample per cell on normalised boxes
    (matterport)."""

    name: str
    aligned: bool
    sampling: str = ROI_SAMPLINGS[0]

    def __post_init__(self) -> None:
        if self.sampling not in ROI_SAMPLINGS:
            raise ValueError(f"RoI sampling {self.sampling!r}: MultiLevelRoIAlign has {', '.join(ROI_SAMPLINGS)}")

    def op_attributes(self) -> dict[str, int]:
        """MultiLevelRoIAlign's attributes for this sampling."""
        return {"aligned": int(self.aligned), "sampling": ROI_SAMPLINGS.index(self.sampling)}


LEGACY_ROI_ALIGN = RoIAlignSampling("legacy", aligned=False)
ALIGNED_ROI_ALIGN = RoIAlignSampling("aligned", aligned=True)
CROP_AND_RESIZE = RoIAlignSampling("crop_and_resize", aligned=False, sampling="crop_and_resize")


@dataclass(frozen=True)
class LevelMapper:
    """Which FPN level a RoI is pooled from: MultiLevelRoIAlign's ``level_rule`` (its
    ``op.json``). ``torchvision``: ``floor(L + log2(sqrt(w * h) / S) + 1e-6)`` (detectron2 too);
    ``detectron``: ``floor(L + log2(sqrt((w + 1) * (h + 1)) / S + 1e-6))`` (maskrcnn-benchmark's
    ``LevelMapper``, the +1 area and the epsilon inside the log); ``matterport``:
    ``L + round_half_even(log(sqrt(h * w) / (S / sqrt(image_area))) / log(2))`` on normalised
    sides (``PyramidROIAlign``; the op's ``image_area``); clamped to the levels there are."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in LEVEL_RULES:
            raise ValueError(f"level rule {self.name!r}: MultiLevelRoIAlign has {', '.join(LEVEL_RULES)}")

    @property
    def rule(self) -> int:
        """The op's ``level_rule`` value (a new rule is a new entry of ``LEVEL_RULES`` in the op)."""
        return LEVEL_RULES.index(self.name)

    def op_attributes(self) -> dict[str, int]:
        """MultiLevelRoIAlign's attributes for this rule."""
        return {"level_rule": self.rule}


TORCHVISION_LEVELS = LevelMapper("torchvision")
DETECTRON_LEVELS = LevelMapper("detectron")
MATTERPORT_LEVELS = LevelMapper("matterport")
