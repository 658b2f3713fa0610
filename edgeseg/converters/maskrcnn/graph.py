"""torchvision Mask R-CNN inference, rewritten as one static graph from a raw frame to detections.

For a fixed frame size every step of torchvision's eval-mode ``MaskRCNN.forward`` is reproduced
with fixed shapes. Where torchvision removes elements (small boxes, low scores, NMS losers), the
graph instead gives them the score -1, which takes them out of every later NonMaxSuppression and
TopK; the only data-dependent shape is NonMaxSuppression's selection, which is scattered back into
a fixed-length score vector and reduced to a fixed top-K at once.

    frame uint8 [H, W, 3] BGR
      -> RGB, /255, normalise, resize (min_size/max_size), zero-pad to a multiple of 32
      -> backbone + FPN
      -> RPN head; per level top-k (pre_nms_top_n); decode against constant anchors; clip;
         small boxes out; NonMaxSuppression per level; top post_nms_top_n      -> proposals [P, 4]
      -> MultiLevelRoIAlign 7x7 -> box head -> class scores, per-class boxes; clip; score and
         size thresholds; top ``max_candidates``; NonMaxSuppression per class; top K detections
      -> MultiLevelRoIAlign 14x14 -> mask head -> the detected class's mask, sigmoid
      -> boxes scaled to the frame -> PasteMasks at frame size, thresholded
    outputs: num_detections int32 [1], boxes float [K, 4] (x0, y0, x1, y1 frame pixels),
             scores float [K], labels int32 [K],
             masks int32 [K, H, ceil(W / 4)]: the bytes of uint8 planes [K, H, W] (1 = foreground),
             four per word, since TensorRT plugins cannot output uint8 (edgeseg.custom_ops)
    (rows at and after num_detections: zero in boxes, scores and labels; not written in masks,
    which PasteMasks pastes for the first num_detections rows only)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator as GridAnchors
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops.poolers import MultiScaleRoIAlign, _setup_scales

from edgeseg.converters.maskrcnn.ops import multiclass_nms, multilevel_roi_align, paste_masks
from edgeseg.converters.maskrcnn.strategies import (
    CONTINUOUS_BOXES,
    LEGACY_ROI_ALIGN,
    TORCHVISION_ANCHORS,
    TORCHVISION_LEVELS,
    TORCHVISION_NMS,
    TORCHVISION_PIXELS,
    TORCHVISION_RESIZE,
    AnchorGenerator,
    BoxCoder,
    LevelMapper,
    NmsForm,
    PixelInput,
    Resize,
    RoIAlignSampling,
)
from edgeseg.custom_ops import PASTE_MODES, packed_mask_width
from edgeseg.errors import ArgumentError, ConversionError
from edgeseg.lint import NMS_MAX_CANDIDATES, TOPK_MAX_K

REMOVED = -1.0  # score given to elements torchvision would drop
SELECTABLE = -0.5  # NonMaxSuppression's score floor: every real score is above it, REMOVED below

OUTPUT_NAMES = ("num_detections", "boxes", "scores", "labels", "masks")


@dataclass(frozen=True)
class GraphOptions:
    """Export-time choices. ``score_thresh``/``detections`` override the module's own
    ``box_score_thresh``/``box_detections_per_img`` when set. ``max_candidates`` bounds the
    class-specific boxes that enter the final NMS (the highest-scoring ones; torchvision keeps
    all above the score threshold: the two differ only if more than this many pass it and the
    ones past the bound would have reached the top K). ``paste`` is ``torchvision`` or
    ``continuous``; ``mask_threshold`` binarises pasted masks."""

    score_thresh: float | None = None
    detections: int | None = None
    max_candidates: int = 3000
    paste: str = "torchvision"
    mask_threshold: float = 0.5

    def __post_init__(self) -> None:
        # Typed errors for Python callers and the CLI alike (the CLI's flags have these names).
        if self.score_thresh is not None and not 0.0 <= self.score_thresh < 1.0:
            raise ArgumentError(f"--score-thresh {self.score_thresh}: must be in [0, 1)")
        if self.detections is not None and not 1 <= self.detections <= TOPK_MAX_K:
            raise ArgumentError(f"--max-detections {self.detections}: must be 1..{TOPK_MAX_K} (TensorRT's TopK limit)")
        if not 1 <= self.max_candidates <= TOPK_MAX_K:
            raise ArgumentError(f"--max-candidates {self.max_candidates}: must be 1..{TOPK_MAX_K} "
                                "(TensorRT's TopK limit)")
        if self.paste not in PASTE_MODES:
            raise ArgumentError(f"--paste {self.paste!r}: must be one of {', '.join(PASTE_MODES)}")
        if not 0.0 <= self.mask_threshold <= 1.0:
            raise ArgumentError(f"--mask-threshold {self.mask_threshold}: must be in [0, 1]")


@dataclass(frozen=True)
class Conventions:
    """Where a Mask R-CNN implementation's inference differs from torchvision's, as data: one
    named strategy of each kind (``strategies.py``) plus a few numbers. Defaults: torchvision's
    eval-mode ``MaskRCNN``.

    ``rpn_min_size``/``box_min_size`` and ``strict_min_size``: boxes whose sides (in the box
    coder's convention) are smaller are dropped (``>`` when strict, else ``>=``; None: no filter;
    ``rpn_min_size`` None: the module's own ``rpn.min_size``); ``rpn_post_nms_per_level``: at most
    this many proposals per FPN level survive the RPN's NMS before the per-image top-N
    (Detectron, maskrcnn-benchmark; None: no per-level cap, torchvision and detectron2);
    ``rpn_setting_names``: what the family calls its RPN's per-level pre-NMS top-N and its
    per-image proposal count (named in the errors about TensorRT's limits)."""

    pixels: PixelInput = TORCHVISION_PIXELS
    resize: Resize = TORCHVISION_RESIZE
    anchors: AnchorGenerator = TORCHVISION_ANCHORS
    box_coder: BoxCoder = CONTINUOUS_BOXES
    nms: NmsForm = TORCHVISION_NMS
    roi_align: RoIAlignSampling = LEGACY_ROI_ALIGN
    levels: LevelMapper = TORCHVISION_LEVELS
    rpn_min_size: float | None = None
    box_min_size: float | None = 1e-2
    strict_min_size: bool = False
    rpn_post_nms_per_level: int | None = None
    rpn_setting_names: tuple[str, str] = ("rpn.pre_nms_top_n_test", "rpn.post_nms_top_n_test")


TORCHVISION = Conventions()


def resized_hw(frame_hw: tuple[int, int], min_size: int, max_size: int) -> tuple[int, int]:
    """The size GeneralizedRCNNTransform resizes a frame to (same float arithmetic)."""
    return TORCHVISION_RESIZE.output_hw(frame_hw, min_size, max_size)


def _roi_attrs(pooler: MultiScaleRoIAlign, scales: list[float], conventions: Conventions) -> dict[str, object]:
    size = pooler.output_size
    oh, ow = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return {
        "output_height": oh,
        "output_width": ow,
        "spatial_scales": scales,
        "sampling_ratio": int(pooler.sampling_ratio),
        "canonical_scale": float(pooler.canonical_scale),
        "canonical_level": int(pooler.canonical_level),
        **conventions.roi_align.op_attributes(),
        **conventions.levels.op_attributes(),
    }


class _RPNHead(nn.Module):
    """torchvision's RPN head under the scope ``rpn`` (its ``head`` attribute, as in MaskRCNN)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        objectness, deltas = self.head(features)
        return objectness, deltas


class _RoIHeads(nn.Module):
    """The box and mask heads of torchvision's RoIHeads, under the scope ``roi_heads``."""

    def __init__(self, heads: RoIHeads) -> None:
        super().__init__()
        self.box_head = heads.box_head
        self.box_predictor = heads.box_predictor
        self.mask_head = heads.mask_head
        self.mask_predictor = heads.mask_predictor

    def forward(self, pooled: Tensor, branch: str) -> tuple[Tensor, ...]:
        """``"box"``: (class logits, box regression) of pooled RoIs; ``"mask"``: (mask logits,)."""
        if branch == "box":
            return tuple(self.box_predictor(self.box_head(pooled)))
        return (self.mask_predictor(self.mask_head(pooled)),)


class FrameToDetections(nn.Module):
    """Wraps a torchvision ``MaskRCNN`` (any backbone) as the static graph described above."""

    def __init__(self, model: MaskRCNN, frame_hw: tuple[int, int], options: GraphOptions | None = None,
                 conventions: Conventions = TORCHVISION) -> None:
        super().__init__()
        opts = options or GraphOptions()
        self.conventions = conventions
        model = model.eval()
        t, rpn, heads = model.transform, model.rpn, model.roi_heads
        # Called through modules named as torchvision names them, so the exported nodes are
        # /backbone/..., /rpn/head/..., /roi_heads/box_head/..., /roi_heads/mask_head/... and layer
        # patterns such as '*roi_heads*' select what they say (the exporter names nodes by the
        # chain of modules *called*, so a plain attribute path would not do).
        self.backbone = model.backbone
        self.rpn = _RPNHead(rpn.head)
        self.roi_heads = _RoIHeads(heads)
        self.rpn_coder = rpn.box_coder
        self.box_coder = heads.box_coder

        self.frame_hw = frame_hw
        self.resized_hw = conventions.resize.output_hw(frame_hw, int(t.min_size[-1]), int(t.max_size))
        self.pillow: nn.Module | None = None
        if conventions.resize.pillow and self.resized_hw != frame_hw:
            from edgeseg.converters.detectron2.resize import PillowBilinear, pillow_pass_order

            self.pillow = PillowBilinear(frame_hw, self.resized_hw, pillow_pass_order(frame_hw, self.resized_hw))
        d = int(t.size_divisible)
        self.padded_hw = (math.ceil(self.resized_hw[0] / d) * d, math.ceil(self.resized_hw[1] / d) * d)
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(t.image_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(t.image_std, dtype=torch.float32).view(1, 3, 1, 1))

        # Everything that depends only on the frame size is computed once, here.
        with torch.no_grad():
            feats = self.backbone(torch.zeros((1, 3, *self.padded_hw)))
            images = ImageList(torch.zeros((1, 3, *self.padded_hw)), [self.resized_hw])
            gen = rpn.anchor_generator
            if conventions.anchors != TORCHVISION_ANCHORS:
                anchors = self._fixed_stride_anchors(gen, conventions.anchors, [f.shape[-2:] for f in feats.values()])
            else:
                anchors = gen(images, list(feats.values()))[0]
        self.anchors: Tensor
        self.register_buffer("anchors", anchors)
        per_level = [int(f.shape[-2] * f.shape[-1]) * rpn.anchor_generator.num_anchors_per_location()[0]
                     for f in feats.values()]
        self.level_sizes = per_level
        self.pre_nms = [min(int(rpn._pre_nms_top_n["testing"]), n) for n in per_level]
        # how many a level keeps after its NMS (NonMaxSuppression's max per class)
        cap = conventions.rpn_post_nms_per_level
        self.level_keep = [min(cap, k) for k in self.pre_nms] if cap is not None else None
        self.proposals = min(int(rpn._post_nms_top_n["testing"]), sum(self.level_keep or self.pre_nms))
        self.rpn_nms = conventions.nms.threshold(float(rpn.nms_thresh))
        self.rpn_min_size = float(rpn.min_size if conventions.rpn_min_size is None else conventions.rpn_min_size)
        self.rpn_score_thresh = float(rpn.score_thresh)
        levels = torch.cat([torch.full((k,), i, dtype=torch.int64) for i, k in enumerate(self.pre_nms)])
        self.level_mask: Tensor
        self.register_buffer("level_mask", levels[None, :] == torch.arange(len(per_level))[:, None])

        self.box_features = list(heads.box_roi_pool.featmap_names)
        self.mask_features = list(heads.mask_roi_pool.featmap_names)
        names = list(feats.keys())
        self.box_levels = [names.index(n) for n in self.box_features]
        self.mask_levels = [names.index(n) for n in self.mask_features]
        box_scales = self._level_scales(heads.box_roi_pool, feats)
        mask_scales = self._level_scales(heads.mask_roi_pool, feats)
        self.box_roi = _roi_attrs(heads.box_roi_pool, box_scales, conventions)
        self.mask_roi = _roi_attrs(heads.mask_roi_pool, mask_scales, conventions)

        num_classes = int(heads.box_predictor.cls_score.out_features)
        self.num_classes = num_classes
        self.score_thresh = float(heads.score_thresh if opts.score_thresh is None else opts.score_thresh)
        self.box_nms = conventions.nms.threshold(float(heads.nms_thresh))
        self.candidates = min(opts.max_candidates, self.proposals * (num_classes - 1))
        self.detections = min(int(heads.detections_per_img if opts.detections is None else opts.detections),
                              self.candidates)
        self.candidate_labels: Tensor
        self.register_buffer(
            "candidate_labels", torch.arange(1, num_classes, dtype=torch.int32).repeat(self.proposals)
        )
        self.class_ids: Tensor
        self.register_buffer("class_ids", torch.arange(1, num_classes, dtype=torch.int32)[:, None])
        # torchvision.models.detection.transform.resize_boxes, in float32
        rh = torch.tensor(frame_hw[0], dtype=torch.float32) / torch.tensor(self.resized_hw[0], dtype=torch.float32)
        rw = torch.tensor(frame_hw[1], dtype=torch.float32) / torch.tensor(self.resized_hw[1], dtype=torch.float32)
        self.to_frame: Tensor
        self.register_buffer("to_frame", torch.stack([rw, rh, rw, rh]))
        self.paste_mode = PASTE_MODES.index(opts.paste)
        self.mask_threshold = float(opts.mask_threshold)
        self._check_tensorrt_limits()


    def _fixed_stride_anchors(self, gen: GridAnchors, strategy: AnchorGenerator, grids: list[torch.Size]) -> Tensor:
        """Anchors on grids of fixed strides: 4, 8, 16, 32, 64 pixels for P2..P6, each level half
        the one before (detectron2's feature strides, maskrcnn-benchmark's and Detectron's
        ANCHOR_STRIDE). torchvision instead divides the padded size by each grid, which differs
        from the stride where a grid's size was rounded up: P6, max-pooled from an odd P5
        (416 / 7 = 59 instead of 64)."""
        finest = self.padded_hw[0] // int(grids[0][0])
        if finest * int(grids[0][0]) != self.padded_hw[0] or finest * int(grids[0][1]) != self.padded_hw[1]:
            raise ConversionError(f"the finest feature map {tuple(grids[0])} does not divide the padded input "
                                  f"{self.padded_hw}")
        strides = [finest << level for level in range(len(grids))]
        gen.cell_anchors = [strategy.cell_anchors(tuple(s), tuple(a), stride)
                            for s, a, stride in zip(gen.sizes, gen.aspect_ratios, strides, strict=True)]
        per_level = gen.grid_anchors(grids, [[torch.tensor(s), torch.tensor(s)] for s in strides])
        return torch.cat(per_level)
    def _check_tensorrt_limits(self) -> None:
        """Refuse, before anything is exported, a configuration whose TopK or NonMaxSuppression
        TensorRT cannot build (edgeseg.lint: the limits and where they come from)."""
        pre, post = self.conventions.rpn_setting_names
        topks = [(f"the RPN's per-level top-k of level {i} ({pre})", k) for i, k in enumerate(self.pre_nms)]
        topks += [(f"the proposals kept ({post})", self.proposals),
                  ("the candidates of the final NMS (--max-candidates)", self.candidates),
                  ("the detections (--max-detections)", self.detections)]
        for what, k in topks:
            if k > TOPK_MAX_K:
                raise ArgumentError(f"{what} is {k}: TensorRT's TopK takes at most {TOPK_MAX_K}; lower it")
        nms = [(f"the RPN's NonMaxSuppression ({pre} per level)", sum(self.pre_nms)),
               ("the final NonMaxSuppression (--max-candidates)", self.candidates)]
        for what, n in nms:
            if n > NMS_MAX_CANDIDATES:
                raise ArgumentError(f"{what} would consider {n} boxes: TensorRT's NonMaxSuppression considers at "
                                    f"most {NMS_MAX_CANDIDATES} per image; lower it")

    def _level_scales(self, pooler: MultiScaleRoIAlign, feats: dict[str, Tensor]) -> list[float]:
        """The spatial scale of each level *pooler* reads, as torchvision infers it (any number
        of levels, any names, any strides)."""
        levels = [feats[n] for n in pooler.featmap_names]
        scales, _ = _setup_scales(levels, [self.resized_hw], int(pooler.canonical_scale), int(pooler.canonical_level))
        return [float(x) for x in scales]

    def preprocess(self, frame: Tensor) -> Tensor:
        # Cast first: TensorRT's ONNX parser refuses UINT8 tensors between nodes.
        x = frame.to(torch.float32).permute(2, 0, 1).unsqueeze(0)
        pixels, resize = self.conventions.pixels, self.conventions.resize
        if not pixels.bgr:
            x = x.flip(1)
        if resize.pillow:
            # Pillow's resize of the uint8 image, then the normalisation
            if self.pillow is not None:
                x = self.pillow(x)
            x = (pixels.scale(x) - self.mean) / self.std
        else:
            x = (pixels.scale(x) - self.mean) / self.std
            x = F.interpolate(x, size=self.resized_hw, mode="bilinear", align_corners=False)
        pad_h = self.padded_hw[0] - self.resized_hw[0]
        pad_w = self.padded_hw[1] - self.resized_hw[1]
        return F.pad(x, (0, pad_w, 0, pad_h))

    def propose(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """RPN: proposals [P, 4] in resized-image pixels and whether each one is real."""
        objectness, deltas = self.rpn(features)
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        objectness = objectness.reshape(-1)
        picks = []
        start = 0
        for n, k in zip(self.level_sizes, self.pre_nms, strict=True):
            picks.append(objectness[start : start + n].topk(k)[1] + start)
            start += n
        idx = torch.cat(picks)
        coder = self.conventions.box_coder
        boxes = coder.decode(self.rpn_coder.weights, self.rpn_coder.bbox_xform_clip, deltas[idx], self.anchors[idx])
        boxes = coder.clip(boxes, self.resized_hw)
        prob = torch.sigmoid(objectness[idx])
        keep = self._large_enough(boxes, self.rpn_min_size) & (prob >= self.rpn_score_thresh)
        score = torch.where(keep, prob, torch.full_like(prob, REMOVED))
        removed = torch.full_like(score, REMOVED)[None, :]
        per_level = torch.where(self.level_mask, score[None, :], removed)
        per_level_max = max(self.level_keep) if self.level_keep is not None else self.proposals
        chosen = multiclass_nms(self.conventions.nms.boxes(boxes), per_level, per_level_max, self.rpn_nms,
                                SELECTABLE)[:, 2]
        top, order = self._scatter_top(score, chosen, self.proposals)
        return boxes[order], top > SELECTABLE

    def _large_enough(self, boxes: Tensor, size: float) -> Tensor:
        w, h = self.conventions.box_coder.sides(boxes)
        if self.conventions.strict_min_size:
            return (w > size) & (h > size)
        return (w >= size) & (h >= size)

    @staticmethod
    def _scatter_top(score: Tensor, chosen: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Back to a fixed size after NMS: the chosen elements keep their score, the rest get
        REMOVED; then the top *k* (scores, indices), in descending score."""
        kept = torch.full_like(score, REMOVED).scatter(0, chosen, score.gather(0, chosen))
        top, order = kept.topk(k)
        return top, order

    def detect(self, features: list[Tensor], proposals: Tensor, real: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Box head to final detections: boxes [K, 4] (resized-image pixels), scores, labels,
        and which rows are detections."""
        p = proposals.shape[0]
        rois = torch.cat([torch.zeros_like(proposals[:, :1]), proposals], dim=1)
        pooled = multilevel_roi_align(rois, [features[i] for i in self.box_levels], **self.box_roi)
        class_logits, regression = self.roi_heads(pooled, "box")
        coder = self.conventions.box_coder
        boxes = coder.decode(self.box_coder.weights, self.box_coder.bbox_xform_clip, regression, proposals)
        boxes = coder.clip(boxes.reshape(p, self.num_classes, 4), self.resized_hw)[:, 1:].reshape(-1, 4)
        scores = F.softmax(class_logits, -1)[:, 1:]
        keep = real[:, None] & (scores > self.score_thresh)
        keep = keep.reshape(-1)
        if self.conventions.box_min_size is not None:
            keep = keep & self._large_enough(boxes, self.conventions.box_min_size)
        scores = torch.where(keep, scores.reshape(-1), torch.full_like(boxes[:, 0], REMOVED))
        cand_scores, cand = scores.topk(self.candidates)
        cand_boxes = boxes[cand]
        cand_labels = self.candidate_labels[cand]
        per_class = torch.where(self.class_ids == cand_labels[None, :], cand_scores[None, :],
                                torch.full_like(cand_scores, REMOVED)[None, :])
        chosen = multiclass_nms(self.conventions.nms.boxes(cand_boxes), per_class, self.detections, self.box_nms,
                                SELECTABLE)[:, 2]
        top, order = self._scatter_top(cand_scores, chosen, self.detections)
        valid = top > SELECTABLE
        det_boxes = cand_boxes[order] * valid[:, None].to(torch.float32)
        det_labels = torch.where(valid, cand_labels[order], torch.zeros_like(cand_labels[order]))
        det_scores = torch.where(valid, top, torch.zeros_like(top))
        return det_boxes, det_scores, det_labels, valid

    def segment(self, features: list[Tensor], boxes: Tensor, labels: Tensor, valid: Tensor) -> Tensor:
        """Mask head: each detection's class mask [K, M, M], probabilities (0 for non-detections)."""
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
        pooled = multilevel_roi_align(rois, [features[i] for i in self.mask_levels], **self.mask_roi)
        (logits,) = self.roi_heads(pooled, "mask")
        _, _, mh, mw = logits.shape
        # Broadcast, not expand to a fixed [K, ...]: the CPU backend runs this branch on only the
        # rows that hold detections, so no shape here may name K.
        index = labels.to(torch.int64).view(-1, 1, 1, 1) + torch.zeros((1, 1, mh, mw), dtype=torch.int64)
        chosen = logits.gather(1, index)[:, 0]
        return torch.sigmoid(chosen) * valid[:, None, None].to(torch.float32)

    def forward(self, frame: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        features = list(self.backbone(self.preprocess(frame)).values())
        proposals, real = self.propose(features)
        boxes, scores, labels, valid = self.detect(features, proposals, real)
        probs = self.segment(features, boxes, labels, valid)
        frame_boxes = boxes * self.to_frame
        num = valid.to(torch.int32).sum().to(torch.int32).reshape(1)  # sum() widens to int64
        # The plugin's output is int32 words of four mask bytes, so the planes are pasted a few
        # columns wider than the frame when its width is not a multiple of 4; readers cut them off.
        # It pastes only the first num rows: a frame-size plane per unused slot (K = 100 at 1080p:
        # 200 MB of writes) would cost more than everything else the op does.
        masks = paste_masks(probs, frame_boxes, num, height=self.frame_hw[0],
                            width=packed_mask_width(self.frame_hw[1]),
                            threshold=self.mask_threshold, mode=self.paste_mode, logits=0)
        return num, frame_boxes, scores, labels, masks
