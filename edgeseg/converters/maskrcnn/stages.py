"""The stages of the Mask R-CNN graph, one strategy record per stage and family.

``graph.FrameToDetections`` is one skeleton::

    frame -> preprocess -> network.features -> network.rpn (rows) -> proposals
          -> box RoI pooling -> network.box_head -> refinement
          -> mask RoI pooling -> network.mask_head -> mask channel -> boxes to the frame -> paste

The network is reached only through its adapter (``graph.Network``); every step between its
parts is a stage record named here and chosen by the family's ``Conventions``. A record holds
only data (its name and the numbers that are not the network's); ``setup`` computes what depends
on the frame size once and keeps it on the graph module (buffers there, so the exported
initialisers and node names do not depend on which record runs), ``run`` is the step itself.

The torchvision-family records (torchvision, detectron2, maskrcnn-benchmark, Detectron) wrap a
torchvision ``MaskRCNN`` (``graph.TorchvisionNetwork``) and read the family's finer decisions
(resize rule, anchors, box coder, NMS form) from ``strategies.py`` through the same
``Conventions``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.ops.poolers import MultiScaleRoIAlign, _setup_scales

from edgeseg.converters.maskrcnn.ops import multiclass_nms, zoom_linear
from edgeseg.converters.maskrcnn.strategies import TORCHVISION_ANCHORS, AnchorGenerator
from edgeseg.converters.matterport import conventions as mcv
from edgeseg.converters.matterport import graph_steps as steps
from edgeseg.converters.matterport.config import MatterportConfig
from edgeseg.errors import ConversionError

if TYPE_CHECKING:
    from edgeseg.converters.maskrcnn.graph import FrameToDetections

REMOVED = -1.0  # score given to elements the reference implementation would drop
SELECTABLE = -0.5  # NonMaxSuppression's score floor: every real score is above it, REMOVED below

#: (what, size) of a TopK or a NonMaxSuppression the stage builds, for TensorRT's limits
Limit = tuple[str, int]


def torchvision_model(g: FrameToDetections) -> MaskRCNN:
    """The torchvision ``MaskRCNN`` behind *g*'s network (the torchvision-family stages read its
    settings)."""
    model = getattr(g.network, "model", None)
    if not isinstance(model, MaskRCNN):
        raise ConversionError(f"this stage reads a torchvision MaskRCNN's settings; the network is "
                              f"{type(model).__name__}: choose the stages of its own family in its Conventions")
    return model


def scatter_top(score: Tensor, chosen: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Back to a fixed size after NMS: the chosen elements keep their score, the rest get
    REMOVED; then the top *k* (scores, indices), in descending score."""
    kept = torch.full_like(score, REMOVED).scatter(0, chosen, score.gather(0, chosen))
    top, order = kept.topk(k)
    return top, order


def large_enough(g: FrameToDetections, boxes: Tensor, size: float) -> Tensor:
    """Boxes whose sides (in the family's box coder) are at least / more than *size*."""
    w, h = g.conventions.box_coder.sides(boxes)
    if g.conventions.strict_min_size:
        return (w > size) & (h > size)
    return (w >= size) & (h >= size)


# ---------------------------------------------------------------------------------------------
# preprocess: uint8 BGR frame [H, W, 3] -> network input [1, 3, Hp, Wp]


@dataclass(frozen=True)
class NormaliseResizePad:
    """torchvision-family input: channel order and scale (``Conventions.pixels``), mean and std
    of the model's transform, the resize (``Conventions.resize``: interpolation of the
    normalised image, or Pillow's bilinear on the uint8 one first), zero padding to a multiple of
    the transform's ``size_divisible``."""

    name: str = "normalise-resize-pad"

    def setup(self, g: FrameToDetections) -> None:
        t = torchvision_model(g).transform
        resize = g.conventions.resize
        g.resized_hw = resize.output_hw(g.frame_hw, int(t.min_size[-1]), int(t.max_size))
        g.pillow = None
        if resize.pillow and g.resized_hw != g.frame_hw:
            from edgeseg.converters.detectron2.resize import PillowBilinear, pillow_pass_order

            g.pillow = PillowBilinear(g.frame_hw, g.resized_hw, pillow_pass_order(g.frame_hw, g.resized_hw))
        d = int(t.size_divisible)
        g.padded_hw = (math.ceil(g.resized_hw[0] / d) * d, math.ceil(g.resized_hw[1] / d) * d)
        g.window = (0, 0, *g.resized_hw)
        g.register_buffer("mean", torch.tensor(t.image_mean, dtype=torch.float32).view(1, 3, 1, 1))
        g.register_buffer("std", torch.tensor(t.image_std, dtype=torch.float32).view(1, 3, 1, 1))

    def run(self, g: FrameToDetections, frame: Tensor) -> Tensor:
        # Cast first: TensorRT's ONNX parser refuses UINT8 tensors between nodes.
        x = frame.to(torch.float32).permute(2, 0, 1).unsqueeze(0)
        pixels, resize = g.conventions.pixels, g.conventions.resize
        if not pixels.bgr:
            x = x.flip(1)
        if resize.pillow:
            # Pillow's resize of the uint8 image, then the normalisation
            if g.pillow is not None:
                x = g.pillow(x)
            x = (pixels.scale(x) - g.mean) / g.std
        else:
            x = (pixels.scale(x) - g.mean) / g.std
            x = F.interpolate(x, size=g.resized_hw, mode="bilinear", align_corners=False)
        pad_h = g.padded_hw[0] - g.resized_hw[0]
        pad_w = g.padded_hw[1] - g.resized_hw[1]
        return F.pad(x, (0, pad_w, 0, pad_h))


# ---------------------------------------------------------------------------------------------
# proposals: RPN rows (objectness [N], deltas [N, 4]) -> proposals [P, 4], real [P]


def _fixed_stride_anchors(g: FrameToDetections, gen: Any, strategy: AnchorGenerator,
                          grids: list[torch.Size]) -> Tensor:
    """Anchors on grids of fixed strides: 4, 8, 16, 32, 64 pixels for P2..P6, each level half
    the one before (detectron2's feature strides, maskrcnn-benchmark's and Detectron's
    ANCHOR_STRIDE). torchvision instead divides the padded size by each grid, which differs
    from the stride where a grid's size was rounded up: P6, max-pooled from an odd P5
    (416 / 7 = 59 instead of 64)."""
    finest = g.padded_hw[0] // int(grids[0][0])
    if finest * int(grids[0][0]) != g.padded_hw[0] or finest * int(grids[0][1]) != g.padded_hw[1]:
        raise ConversionError(f"the finest feature map {tuple(grids[0])} does not divide the padded input "
                              f"{g.padded_hw}")
    strides = [finest << level for level in range(len(grids))]
    gen.cell_anchors = [strategy.cell_anchors(tuple(s), tuple(a), stride)
                        for s, a, stride in zip(gen.sizes, gen.aspect_ratios, strides, strict=True)]
    per_level = gen.grid_anchors(grids, [[torch.tensor(s), torch.tensor(s)] for s in strides])
    return torch.cat(per_level)


@dataclass(frozen=True)
class PerLevelProposals:
    """torchvision-family proposals: a top-k per FPN level of the objectness logits, decoded
    against constant anchors (``Conventions.anchors``, ``box_coder``), clipped, small boxes and
    low sigmoid scores out, NonMaxSuppression per level (``Conventions.nms``; at most
    ``rpn_post_nms_per_level`` a level when set), the top ``post_nms_top_n`` of the image."""

    name: str = "per-level-top-k"

    def setup(self, g: FrameToDetections, features: dict[str, Tensor]) -> None:
        model = torchvision_model(g)
        rpn, conventions = model.rpn, g.conventions
        g.rpn_coder = rpn.box_coder
        with torch.no_grad():
            images = ImageList(torch.zeros((1, 3, *g.padded_hw)), [g.resized_hw])
            gen = rpn.anchor_generator
            if conventions.anchors != TORCHVISION_ANCHORS:
                anchors = _fixed_stride_anchors(g, gen, conventions.anchors, [f.shape[-2:] for f in features.values()])
            else:
                anchors = gen(images, list(features.values()))[0]
        g.register_buffer("anchors", anchors)
        per_level = [int(f.shape[-2] * f.shape[-1]) * rpn.anchor_generator.num_anchors_per_location()[0]
                     for f in features.values()]
        g.level_sizes = per_level
        g.pre_nms = [min(int(rpn._pre_nms_top_n["testing"]), n) for n in per_level]
        # how many a level keeps after its NMS (NonMaxSuppression's max per class)
        cap = conventions.rpn_post_nms_per_level
        g.level_keep = [min(cap, k) for k in g.pre_nms] if cap is not None else None
        g.proposals = min(int(rpn._post_nms_top_n["testing"]), sum(g.level_keep or g.pre_nms))
        g.rpn_nms = conventions.nms.threshold(float(rpn.nms_thresh))
        g.rpn_min_size = float(rpn.min_size if conventions.rpn_min_size is None else conventions.rpn_min_size)
        g.rpn_score_thresh = float(rpn.score_thresh)
        levels = torch.cat([torch.full((k,), i, dtype=torch.int64) for i, k in enumerate(g.pre_nms)])
        g.register_buffer("level_mask", levels[None, :] == torch.arange(len(per_level))[:, None])

    def limits(self, g: FrameToDetections) -> tuple[list[Limit], list[Limit]]:
        pre, post = g.conventions.rpn_setting_names
        topks = [(f"the RPN's per-level top-k of level {i} ({pre})", k) for i, k in enumerate(g.pre_nms)]
        topks.append((f"the proposals kept ({post})", g.proposals))
        return topks, [(f"the RPN's NonMaxSuppression ({pre} per level)", sum(g.pre_nms))]

    def run(self, g: FrameToDetections, objectness: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
        picks = []
        start = 0
        for n, k in zip(g.level_sizes, g.pre_nms, strict=True):
            picks.append(objectness[start : start + n].topk(k)[1] + start)
            start += n
        idx = torch.cat(picks)
        coder = g.conventions.box_coder
        boxes = coder.decode(g.rpn_coder.weights, g.rpn_coder.bbox_xform_clip, deltas[idx], g.anchors[idx])
        boxes = coder.clip(boxes, g.resized_hw)
        prob = torch.sigmoid(objectness[idx])
        keep = large_enough(g, boxes, g.rpn_min_size) & (prob >= g.rpn_score_thresh)
        score = torch.where(keep, prob, torch.full_like(prob, REMOVED))
        removed = torch.full_like(score, REMOVED)[None, :]
        per_level = torch.where(g.level_mask, score[None, :], removed)
        per_level_max = max(g.level_keep) if g.level_keep is not None else g.proposals
        chosen = multiclass_nms(g.conventions.nms.boxes(boxes), per_level, per_level_max, g.rpn_nms,
                                SELECTABLE)[:, 2]
        top, order = scatter_top(score, chosen, g.proposals)
        return boxes[order], top > SELECTABLE


# ---------------------------------------------------------------------------------------------
# RoI pooling: which levels and the MultiLevelRoIAlign attributes


def _level_scales(g: FrameToDetections, pooler: MultiScaleRoIAlign, feats: dict[str, Tensor]) -> list[float]:
    """The spatial scale of each level *pooler* reads, as torchvision infers it (any number
    of levels, any names, any strides)."""
    levels = [feats[n] for n in pooler.featmap_names]
    scales, _ = _setup_scales(levels, [g.resized_hw], int(pooler.canonical_scale), int(pooler.canonical_level))
    return [float(x) for x in scales]


def _roi_attrs(g: FrameToDetections, pooler: MultiScaleRoIAlign, scales: list[float]) -> dict[str, object]:
    size = pooler.output_size
    oh, ow = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return {
        "output_height": oh,
        "output_width": ow,
        "spatial_scales": scales,
        "sampling_ratio": int(pooler.sampling_ratio),
        "canonical_scale": float(pooler.canonical_scale),
        "canonical_level": int(pooler.canonical_level),
        **g.conventions.roi_align.op_attributes(),
        **g.conventions.levels.op_attributes(),
    }


@dataclass(frozen=True)
class PoolerLevels:
    """torchvision-family pooling: the levels and sizes of the model's ``box_roi_pool`` and
    ``mask_roi_pool``, sampling and level rule from ``Conventions.roi_align`` / ``levels``."""

    name: str = "torchvision-poolers"

    def setup(self, g: FrameToDetections, features: dict[str, Tensor]) -> None:
        heads = torchvision_model(g).roi_heads
        names = list(features.keys())
        g.box_levels = [names.index(n) for n in heads.box_roi_pool.featmap_names]
        g.mask_levels = [names.index(n) for n in heads.mask_roi_pool.featmap_names]
        box_scales = _level_scales(g, heads.box_roi_pool, features)
        mask_scales = _level_scales(g, heads.mask_roi_pool, features)
        g.box_roi = _roi_attrs(g, heads.box_roi_pool, box_scales)
        g.mask_roi = _roi_attrs(g, heads.mask_roi_pool, mask_scales)


# ---------------------------------------------------------------------------------------------
# refinement: box head outputs -> detections (boxes in the network's image, scores, labels, valid)


@dataclass(frozen=True)
class ClassSpecificRefinement:
    """torchvision-family refinement: every class's box decoded and clipped, softmax scores,
    score (and size) thresholds, the top ``max_candidates``, NonMaxSuppression per class, the
    top K."""

    name: str = "class-specific-nms"

    def setup(self, g: FrameToDetections) -> None:
        model = torchvision_model(g)
        heads, opts = model.roi_heads, g.options
        g.box_coder = heads.box_coder
        num_classes = int(heads.box_predictor.cls_score.out_features)
        g.num_classes = num_classes
        g.score_thresh = float(heads.score_thresh if opts.score_thresh is None else opts.score_thresh)
        g.box_nms = g.conventions.nms.threshold(float(heads.nms_thresh))
        g.candidates = min(opts.max_candidates, g.proposals * (num_classes - 1))
        g.detections = min(int(heads.detections_per_img if opts.detections is None else opts.detections),
                           g.candidates)
        g.register_buffer("candidate_labels", torch.arange(1, num_classes, dtype=torch.int32).repeat(g.proposals))
        g.register_buffer("class_ids", torch.arange(1, num_classes, dtype=torch.int32)[:, None])

    def limits(self, g: FrameToDetections) -> tuple[list[Limit], list[Limit]]:
        topks = [("the candidates of the final NMS (--max-candidates)", g.candidates),
                 ("the detections (--max-detections)", g.detections)]
        return topks, [("the final NonMaxSuppression (--max-candidates)", g.candidates)]

    def run(self, g: FrameToDetections, proposals: Tensor, real: Tensor, class_logits: Tensor,
            regression: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        p = proposals.shape[0]
        coder = g.conventions.box_coder
        boxes = coder.decode(g.box_coder.weights, g.box_coder.bbox_xform_clip, regression, proposals)
        boxes = coder.clip(boxes.reshape(p, g.num_classes, 4), g.resized_hw)[:, 1:].reshape(-1, 4)
        scores = F.softmax(class_logits, -1)[:, 1:]
        keep = real[:, None] & (scores > g.score_thresh)
        keep = keep.reshape(-1)
        if g.conventions.box_min_size is not None:
            keep = keep & large_enough(g, boxes, g.conventions.box_min_size)
        scores = torch.where(keep, scores.reshape(-1), torch.full_like(boxes[:, 0], REMOVED))
        cand_scores, cand = scores.topk(g.candidates)
        cand_boxes = boxes[cand]
        cand_labels = g.candidate_labels[cand]
        per_class = torch.where(g.class_ids == cand_labels[None, :], cand_scores[None, :],
                                torch.full_like(cand_scores, REMOVED)[None, :])
        chosen = multiclass_nms(g.conventions.nms.boxes(cand_boxes), per_class, g.detections, g.box_nms,
                                SELECTABLE)[:, 2]
        top, order = scatter_top(cand_scores, chosen, g.detections)
        valid = top > SELECTABLE
        det_boxes = cand_boxes[order] * valid[:, None].to(torch.float32)
        det_labels = torch.where(valid, cand_labels[order], torch.zeros_like(cand_labels[order]))
        det_scores = torch.where(valid, top, torch.zeros_like(top))
        return det_boxes, det_scores, det_labels, valid


# ---------------------------------------------------------------------------------------------
# mask channel: mask head output [K, classes, M, M] -> each detection's class [K, M, M]


@dataclass(frozen=True)
class MaskChannel:
    """Each detection's own class channel, as probabilities (0 for non-detections); ``sigmoid``:
    the head gives logits (torchvision), else probabilities (matterport)."""

    name: str
    sigmoid: bool

    def run(self, g: FrameToDetections, masks: Tensor, labels: Tensor, valid: Tensor) -> Tensor:
        _, _, mh, mw = masks.shape
        # Broadcast, not expand to a fixed [K, ...]: the CPU backend runs this branch on only the
        # rows that hold detections, so no shape here may name K.
        index = labels.to(torch.int64).view(-1, 1, 1, 1) + torch.zeros((1, 1, mh, mw), dtype=torch.int64)
        chosen = masks.gather(1, index)[:, 0]
        if self.sigmoid:
            chosen = torch.sigmoid(chosen)
        return chosen * valid[:, None, None].to(torch.float32)


LOGIT_MASKS = MaskChannel("logits", sigmoid=True)
PROBABILITY_MASKS = MaskChannel("probabilities", sigmoid=False)


# ---------------------------------------------------------------------------------------------
# boxes to the frame: -> (num_detections [1], frame boxes, scores, labels, masks)


@dataclass(frozen=True)
class ScaleToFrame:
    """torchvision-family: boxes times (frame / resized) per axis in float32
    (``transform.resize_boxes``); the detections stay where they are."""

    name: str = "scale"

    def setup(self, g: FrameToDetections) -> None:
        rh = torch.tensor(g.frame_hw[0], dtype=torch.float32) / torch.tensor(g.resized_hw[0], dtype=torch.float32)
        rw = torch.tensor(g.frame_hw[1], dtype=torch.float32) / torch.tensor(g.resized_hw[1], dtype=torch.float32)
        g.register_buffer("to_frame", torch.stack([rw, rh, rw, rh]))

    def run(self, g: FrameToDetections, boxes: Tensor, scores: Tensor, labels: Tensor, masks: Tensor,
            valid: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        frame_boxes = boxes * g.to_frame
        num = valid.to(torch.int32).sum().to(torch.int32).reshape(1)  # sum() widens to int64
        return num, frame_boxes, scores, labels, masks


# ---------------------------------------------------------------------------------------------
# matterport (Keras Mask R-CNN): every box inside the graph x-first and normalised as matterport
# normalises (0 and 1 the centres of the first and last pixel of the molded image); the steps
# are edgeseg.converters.matterport.graph_steps, each bit for bit its detect() counterpart


@dataclass(frozen=True)
class ZoomMold:
    """matterport's ``mold_image`` in "square" mode: BGR to RGB, skimage's linear zoom of the
    frame to ``scaled_size`` (exact, in double: the ZoomLinear op), truncated, at the window of a
    zero ``IMAGE_MAX_DIM`` square, minus ``MEAN_PIXEL`` in double, as float32."""

    min_dim: int
    max_dim: int
    min_scale: float
    mean: tuple[float, float, float]
    name: str = "matterport-square-zoom"

    def setup(self, g: FrameToDetections) -> None:
        h, w = g.frame_hw
        scale = mcv.square_scale(h, w, self.min_dim, self.max_dim, self.min_scale)
        g.resized_hw = mcv.scaled_size(h, w, scale)
        g.padded_hw = (self.max_dim, self.max_dim)
        top, left = (self.max_dim - g.resized_hw[0]) // 2, (self.max_dim - g.resized_hw[1]) // 2
        g.window = (top, left, top + g.resized_hw[0], left + g.resized_hw[1])

    def run(self, g: FrameToDetections, frame: Tensor) -> Tensor:
        # Cast first (TensorRT's parser refuses UINT8 between nodes); matterport takes RGB.
        rgb = frame.to(torch.float32).flip(2)
        value_range = torch.stack([rgb.amin(), rgb.amax()])
        top, left, _, _ = g.window
        molded = zoom_linear(rgb, value_range, height=g.resized_hw[0], width=g.resized_hw[1],
                             canvas_height=g.padded_hw[0], canvas_width=g.padded_hw[1], top=top, left=left,
                             mean=list(self.mean))
        return molded.unsqueeze(0)


@dataclass(frozen=True)
class OneTopKProposals:
    """matterport's ``ProposalLayer``: the fg probability of the two-class softmax; deltas times
    ``RPN_BBOX_STD_DEV`` applied to every normalised anchor (no half-cell offset), clipped to
    [0, 1]; one top-k of ``PRE_NMS_LIMIT`` over all levels, greedy NMS (IoU > threshold
    suppresses) to ``POST_NMS_ROIS_INFERENCE``, in rounds within TensorRT's limits
    (``graph_steps.select_proposals``)."""

    cfg: MatterportConfig = field(compare=False)
    name: str = "matterport-one-top-k"

    def setup(self, g: FrameToDetections, features: dict[str, Tensor]) -> None:
        g.register_buffer("anchors", steps.anchors_xy(self.cfg))
        g.level_sizes = [int(f.shape[-2] * f.shape[-1]) * len(self.cfg["RPN_ANCHOR_RATIOS"]) for f in features.values()]
        if sum(g.level_sizes) != g.anchors.shape[0]:
            raise ConversionError(f"the RPN gives {sum(g.level_sizes)} anchors' outputs but the Config makes "
                                  f"{g.anchors.shape[0]} anchors; check BACKBONE_STRIDES")
        g.proposals = int(self.cfg["POST_NMS_ROIS_INFERENCE"])

    def limits(self, g: FrameToDetections) -> tuple[list[Limit], list[Limit]]:
        return [("the proposals kept (POST_NMS_ROIS_INFERENCE)", g.proposals)], []

    def run(self, g: FrameToDetections, objectness: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
        std = torch.tensor([self.cfg["RPN_BBOX_STD_DEV"][i] for i in steps.XY], dtype=torch.float32)
        boxes = steps.apply_box_deltas_xy(g.anchors, deltas[:, list(steps.XY)] * std)
        boxes = steps.clip_xy(boxes, (0.0, 0.0, 1.0, 1.0))
        return steps.select_proposals(objectness, boxes, int(self.cfg["PRE_NMS_LIMIT"]), g.proposals,
                                      float(self.cfg["RPN_NMS_THRESHOLD"]))


@dataclass(frozen=True)
class CropAndResizeLevels:
    """matterport's ``PyramidROIAlign``: P2-P5, ``tf.image.crop_and_resize`` sampling on the
    normalised boxes, the level rule with the molded image's area (``Conventions.roi_align`` /
    ``levels`` give the op's attributes), ``POOL_SIZE`` / ``MASK_POOL_SIZE`` cells."""

    pool_size: int
    mask_pool_size: int
    strides: tuple[int, ...]
    name: str = "matterport-pyramid-roi-align"

    def _attrs(self, g: FrameToDetections, size: int) -> dict[str, object]:
        return {
            "output_height": size,
            "output_width": size,
            "spatial_scales": [1.0 / s for s in self.strides[:4]],
            "canonical_scale": 224.0,
            "canonical_level": 4,
            "image_area": float(g.padded_hw[0] * g.padded_hw[1]),
            **g.conventions.roi_align.op_attributes(),
            **g.conventions.levels.op_attributes(),
        }

    def setup(self, g: FrameToDetections, features: dict[str, Tensor]) -> None:
        g.box_levels = g.mask_levels = [0, 1, 2, 3]
        g.box_roi = self._attrs(g, self.pool_size)
        g.mask_roi = self._attrs(g, self.mask_pool_size)


@dataclass(frozen=True)
class TopClassRefinement:
    """matterport's ``refine_detections_graph``: each RoI's argmax class only (background
    included), its deltas times ``BBOX_STD_DEV``, clipped to the normalised window, ``>=``
    ``DETECTION_MIN_CONFIDENCE``, per-class NMS, the top ``DETECTION_MAX_INSTANCES``
    (``graph_steps.refine_top_class``). GraphOptions' ``score_thresh`` / ``detections`` override
    the Config's when set."""

    cfg: MatterportConfig = field(compare=False)
    name: str = "matterport-top-class"

    def setup(self, g: FrameToDetections) -> None:
        opts = g.options
        g.num_classes = int(self.cfg["NUM_CLASSES"])
        g.score_thresh = float(self.cfg["DETECTION_MIN_CONFIDENCE"] if opts.score_thresh is None
                               else opts.score_thresh)
        g.detections = int(self.cfg["DETECTION_MAX_INSTANCES"] if opts.detections is None else opts.detections)
        g.box_nms = float(self.cfg["DETECTION_NMS_THRESHOLD"])
        g.candidates = g.proposals

    def limits(self, g: FrameToDetections) -> tuple[list[Limit], list[Limit]]:
        return ([("the detections (DETECTION_MAX_INSTANCES)", g.detections)],
                [("the detection layer's NonMaxSuppression (POST_NMS_ROIS_INFERENCE)", g.proposals)])

    def run(self, g: FrameToDetections, proposals: Tensor, real: Tensor, class_scores: Tensor,
            deltas: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        std = [self.cfg["BBOX_STD_DEV"][i] for i in steps.XY]
        # every row, the zero-padded proposals too: matterport's DetectionLayer does not tell
        # them apart (a padded row that scores as a class is a detection there as well)
        every = torch.ones_like(real)
        return steps.refine_top_class(proposals, every, class_scores, deltas[:, :, list(steps.XY)], std,
                                      steps.window_xy(g.window, g.padded_hw), g.score_thresh, g.box_nms,
                                      g.detections)


@dataclass(frozen=True)
class UnmoldCompact:
    """matterport's ``unmold_detections``: boxes out of the window, scaled to the frame and
    rounded half to even (exactly, ``graph_steps.unmold_boxes_xy``: integer-valued x0, y0, x1, y1
    frame pixels, ends exclusive), then the empty ones dropped keeping the order
    (``keep_nonempty``): the count and the rows of boxes, scores, labels and masks shift."""

    name: str = "matterport-unmold"

    def setup(self, g: FrameToDetections) -> None:
        pass

    def run(self, g: FrameToDetections, boxes: Tensor, scores: Tensor, labels: Tensor, masks: Tensor,
            valid: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        frame_boxes = steps.unmold_boxes_xy(boxes, g.window, g.padded_hw, g.frame_hw)
        order, kept, count = steps.keep_nonempty(frame_boxes, valid)

        def rows(x: Tensor) -> Tensor:
            picked = x[order]
            return torch.where(kept.reshape(-1, *([1] * (x.dim() - 1))), picked, torch.zeros_like(picked))

        return count, rows(frame_boxes), rows(scores), rows(labels), rows(masks)


NORMALISE_RESIZE_PAD = NormaliseResizePad()
PER_LEVEL_PROPOSALS = PerLevelProposals()
TORCHVISION_POOLERS = PoolerLevels()
CLASS_SPECIFIC_REFINEMENT = ClassSpecificRefinement()
SCALE_TO_FRAME = ScaleToFrame()


# ---------------------------------------------------------------------------------------------
# what the skeleton asks of a stage record (each family's records have these methods)


class PreprocessStage(Protocol):
    @property
    def name(self) -> str: ...

    def setup(self, g: FrameToDetections) -> None: ...

    def run(self, g: FrameToDetections, frame: Tensor) -> Tensor: ...


class ProposalStage(Protocol):
    @property
    def name(self) -> str: ...

    def setup(self, g: FrameToDetections, features: dict[str, Tensor]) -> None: ...

    def limits(self, g: FrameToDetections) -> tuple[list[Limit], list[Limit]]: ...

    def run(self, g: FrameToDetections, objectness: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]: ...


class PoolingStage(Protocol):
    @property
    def name(self) -> str: ...

    def setup(self, g: FrameToDetections, features: dict[str, Tensor]) -> None: ...


class RefinementStage(Protocol):
    @property
    def name(self) -> str: ...

    def setup(self, g: FrameToDetections) -> None: ...

    def limits(self, g: FrameToDetections) -> tuple[list[Limit], list[Limit]]: ...

    def run(self, g: FrameToDetections, proposals: Tensor, real: Tensor, class_scores: Tensor,
            deltas: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]: ...


class MaskStage(Protocol):
    @property
    def name(self) -> str: ...

    def run(self, g: FrameToDetections, masks: Tensor, labels: Tensor, valid: Tensor) -> Tensor: ...


class FrameStage(Protocol):
    @property
    def name(self) -> str: ...

    def setup(self, g: FrameToDetections) -> None: ...

    def run(self, g: FrameToDetections, boxes: Tensor, scores: Tensor, labels: Tensor, masks: Tensor,
            valid: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]: ...
