"""Mask R-CNN inference, rewritten as one static graph from a raw frame to detections.

One skeleton for every family (:class:`FrameToDetections`); each step between the network's
parts is a stage record (``stages.py``) and each finer decision a strategy (``strategies.py``),
chosen by the family's :class:`Conventions`; the network is reached through an adapter
(:class:`Network`: ``features``, ``rpn``, ``box_head``, ``mask_head``):

    frame uint8 [H, W, 3] BGR
      -> preprocess (Conventions.preprocess)                          -> network input [1, 3, Hp, Wp]
      -> network.features -> feature levels; network.rpn -> objectness [N], deltas [N, 4]
      -> proposals (Conventions.proposer)                             -> proposals [P, 4], real [P]
      -> MultiLevelRoIAlign (Conventions.pooling: levels, sizes, sampling, level rule)
      -> network.box_head -> refinement (Conventions.refinement)      -> K detections, in the network input
      -> MultiLevelRoIAlign -> network.mask_head -> each detection's class (Conventions.mask_channel)
      -> boxes to the frame, and any compaction (Conventions.to_frame)
      -> PasteMasks at frame size, thresholded (GraphOptions.paste: the op's mode)
    outputs: num_detections int32 [1], boxes float [K, 4] (x0, y0, x1, y1 frame pixels),
             scores float [K], labels int32 [K],
             masks int32 [K, H, ceil(W / 4)]: the bytes of uint8 planes [K, H, W] (1 = foreground),
             four per word, since TensorRT plugins cannot output uint8 (edgeseg.custom_ops)
    (rows at and after num_detections: zero in boxes, scores and labels; not written in masks,
    which PasteMasks pastes for the first num_detections rows only)

The torchvision family (torchvision, detectron2, maskrcnn-benchmark, Detectron: all rebuilt as a
torchvision ``MaskRCNN``) reproduces every step of torchvision's eval-mode ``MaskRCNN.forward``
with fixed shapes. Where torchvision removes elements (small boxes, low scores, NMS losers), the
graph instead gives them the score -1, which takes them out of every later NonMaxSuppression and
TopK; the only data-dependent shape is NonMaxSuppression's selection, which is scattered back into
a fixed-length score vector and reduced to a fixed top-K at once. matterport's network and stages
are in ``edgeseg.converters.matterport.model``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import concat_box_prediction_layers

from edgeseg.converters.maskrcnn.ops import multilevel_roi_align, paste_masks
from edgeseg.converters.maskrcnn.stages import (
    CLASS_SPECIFIC_REFINEMENT,
    LOGIT_MASKS,
    NORMALISE_RESIZE_PAD,
    PER_LEVEL_PROPOSALS,
    REMOVED,
    SCALE_TO_FRAME,
    SELECTABLE,
    TORCHVISION_POOLERS,
    FrameStage,
    MaskStage,
    PoolingStage,
    PreprocessStage,
    ProposalStage,
    RefinementStage,
)
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

__all__ = ["OUTPUT_NAMES", "REMOVED", "SELECTABLE", "TORCHVISION", "Conventions", "FrameToDetections",
           "GraphOptions", "Network", "NetworkAdapter", "TorchvisionNetwork", "resized_hw"]

OUTPUT_NAMES = ("num_detections", "boxes", "scores", "labels", "masks")


@dataclass(frozen=True)
class GraphOptions:
    """Export-time choices. ``score_thresh``/``detections`` override the module's own
    ``box_score_thresh``/``box_detections_per_img`` when set. ``max_candidates`` bounds the
    class-specific boxes that enter the final NMS (the highest-scoring ones; torchvision keeps
    all above the score threshold: the two differ only if more than this many pass it and the
    ones past the bound would have reached the top K). ``paste`` is PasteMasks' mode
    (``PASTE_MODES``): ``torchvision`` (paste_masks_in_image: the box grown and truncated to
    integer pixels, ``> mask_threshold``), ``continuous`` (detectron2's _do_paste_mask on the
    continuous box, ``>=``) or ``zoom`` (matterport's unmold_mask: box edges rounded to integers,
    exclusive ends, skimage's linear zoom in float64 clipped to the mask's own range, ``>=``);
    ``mask_threshold`` binarises pasted masks."""

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


class Network(Protocol):
    """The network a Mask R-CNN graph runs, reached only through these calls (one adapter per
    network implementation; the steps between them are the stages of ``stages.py``).

    ``scopes``: the modules the calls run, registered on the graph under these names so that the
    exported nodes are named ``/<scope>/...`` (the exporter names nodes by the chain of modules
    *called*; the precision rules select layers by these names). ``model``: what the adapter
    wraps (the stages of its family read its settings)."""

    @property
    def model(self) -> nn.Module: ...

    @property
    def scopes(self) -> Mapping[str, nn.Module]: ...

    def probe(self, image_hw: tuple[int, int]) -> dict[str, Tensor]:
        """The feature levels of a zero image of *image_hw*, by name (their shapes and names are
        what the stages set up from)."""
        ...

    def features(self, image: Tensor) -> list[Tensor]:
        """Network input [1, 3, H, W] -> feature levels, finest first."""
        ...

    def rpn(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """-> (objectness [N], box deltas [N, 4]) of every anchor, in the anchors' order, as the
        network gives them (the proposal stage knows the form)."""
        ...

    def box_head(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        """Pooled RoIs -> (class scores [R, K], box deltas [R, 4K] or [R, K, 4])."""
        ...

    def mask_head(self, pooled: Tensor) -> Tensor:
        """Pooled RoIs -> per-class masks [R, K, M, M]."""
        ...


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


class TorchvisionNetwork:
    """A torchvision ``MaskRCNN`` (any backbone; detectron2, maskrcnn-benchmark and Detectron
    models are rebuilt as one) as the graph's :class:`Network`. Scopes named as torchvision names
    them: ``/backbone/...``, ``/rpn/head/...``, ``/roi_heads/box_head/...``,
    ``/roi_heads/mask_head/...``; objectness is the RPN's logit, class scores are logits."""

    def __init__(self, model: MaskRCNN) -> None:
        self.model = model.eval()
        self.scopes: dict[str, nn.Module] = {"backbone": model.backbone, "rpn": _RPNHead(model.rpn.head),
                       "roi_heads": _RoIHeads(model.roi_heads)}

    def probe(self, image_hw: tuple[int, int]) -> dict[str, Tensor]:
        return dict(self.scopes["backbone"](torch.zeros((1, 3, *image_hw))))

    def features(self, image: Tensor) -> list[Tensor]:
        return list(self.scopes["backbone"](image).values())

    def rpn(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        objectness, deltas = self.scopes["rpn"](features)
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        return objectness.reshape(-1), deltas

    def box_head(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        class_logits, regression = self.scopes["roi_heads"](pooled, "box")
        return class_logits, regression

    def mask_head(self, pooled: Tensor) -> Tensor:
        (logits,) = self.scopes["roi_heads"](pooled, "mask")
        return logits


@dataclass(frozen=True)
class NetworkAdapter:
    """Which :class:`Network` adapter wraps the model a family's converter builds."""

    name: str
    adapt: Callable[[nn.Module], Network]


def _torchvision_network(model: nn.Module) -> Network:
    if not isinstance(model, MaskRCNN):
        raise ConversionError(f"the torchvision-family graph wraps a torchvision MaskRCNN, not {type(model).__name__}")
    return TorchvisionNetwork(model)


TORCHVISION_NETWORK = NetworkAdapter("torchvision", _torchvision_network)


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
    per-image proposal count (named in the errors about TensorRT's limits).

    ``network``: the adapter that makes the family's model a :class:`Network`; ``preprocess`` ...
    ``to_frame``: the stage records (``stages.py``) the skeleton runs, in its order. The
    torchvision-family stages read the strategies and numbers above; another family's stages
    carry their own numbers (matterport's: its Config's)."""

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
    # the stages (stages.py) and the network adapter
    network: NetworkAdapter = TORCHVISION_NETWORK
    preprocess: PreprocessStage = NORMALISE_RESIZE_PAD
    proposer: ProposalStage = PER_LEVEL_PROPOSALS
    pooling: PoolingStage = TORCHVISION_POOLERS
    refinement: RefinementStage = CLASS_SPECIFIC_REFINEMENT
    mask_channel: MaskStage = LOGIT_MASKS
    to_frame: FrameStage = SCALE_TO_FRAME


TORCHVISION = Conventions()


def resized_hw(frame_hw: tuple[int, int], min_size: int, max_size: int) -> tuple[int, int]:
    """The size GeneralizedRCNNTransform resizes a frame to (same float arithmetic)."""
    return TORCHVISION_RESIZE.output_hw(frame_hw, min_size, max_size)


class FrameToDetections(nn.Module):
    """The static graph described above: one skeleton of stages, each a record of
    ``Conventions`` (``stages.py``), around the network its adapter (``Conventions.network``)
    makes of *model* (a torchvision ``MaskRCNN`` for the torchvision family).

    What the stages compute once for the frame size is kept here: ``resized_hw`` (the image in the
    frame, in network input pixels), ``padded_hw`` (the network input), the proposal and detection
    counts, the RoI pooling attributes (``box_levels``/``box_roi``, ``mask_levels``/``mask_roi``),
    buffers (anchors...)."""

    # set up by the stages (stages.py), read by them at run time
    mean: Tensor
    std: Tensor
    anchors: Tensor
    level_mask: Tensor
    candidate_labels: Tensor
    class_ids: Tensor
    to_frame: Tensor
    rpn_coder: Any
    box_coder: Any
    level_sizes: list[int]
    pre_nms: list[int]
    level_keep: list[int] | None
    rpn_nms: float
    rpn_min_size: float
    rpn_score_thresh: float
    num_classes: int
    score_thresh: float
    box_nms: float
    candidates: int
    window: tuple[int, int, int, int]

    def __init__(self, model: nn.Module, frame_hw: tuple[int, int], options: GraphOptions | None = None,
                 conventions: Conventions = TORCHVISION) -> None:
        super().__init__()
        self.options = opts = options or GraphOptions()
        self.conventions = c = conventions
        self.network = c.network.adapt(model)
        # Called through modules registered under the adapter's scope names, so the exported
        # nodes are /backbone/..., /rpn/head/..., /roi_heads/box_head/... and layer patterns
        # such as '*roi_heads*' select what they say.
        for name, module in self.network.scopes.items():
            self.add_module(name, module)
        self.frame_hw = frame_hw
        self.resized_hw = frame_hw
        self.padded_hw = frame_hw
        self.window = (0, 0, *frame_hw)  # (y1, x1, y2, x2) of the frame's image in the network input
        self.pillow: nn.Module | None = None
        self.proposals = 0
        self.detections = 0
        self.box_levels: list[int] = []
        self.mask_levels: list[int] = []
        self.box_roi: dict[str, object] = {}
        self.mask_roi: dict[str, object] = {}

        # Everything that depends only on the frame size is computed once, here.
        c.preprocess.setup(self)
        with torch.no_grad():
            features = self.network.probe(self.padded_hw)
        c.proposer.setup(self, features)
        c.pooling.setup(self, features)
        c.refinement.setup(self)
        c.to_frame.setup(self)
        self.paste_mode = PASTE_MODES.index(opts.paste)
        self.mask_threshold = float(opts.mask_threshold)
        self._check_tensorrt_limits()

    def _check_tensorrt_limits(self) -> None:
        """Refuse, before anything is exported, a configuration whose TopK or NonMaxSuppression
        TensorRT cannot build (edgeseg.lint: the limits and where they come from)."""
        rpn_topks, rpn_nms = self.conventions.proposer.limits(self)
        box_topks, box_nms = self.conventions.refinement.limits(self)
        for what, k in rpn_topks + box_topks:
            if k > TOPK_MAX_K:
                raise ArgumentError(f"{what} is {k}: TensorRT's TopK takes at most {TOPK_MAX_K}; lower it")
        for what, n in rpn_nms + box_nms:
            if n > NMS_MAX_CANDIDATES:
                raise ArgumentError(f"{what} would consider {n} boxes: TensorRT's NonMaxSuppression considers at "
                                    f"most {NMS_MAX_CANDIDATES} per image; lower it")

    def preprocess(self, frame: Tensor) -> Tensor:
        """uint8 frame [H, W, 3] BGR -> network input [1, 3, *padded_hw]."""
        return self.conventions.preprocess.run(self, frame)

    def propose(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """RPN: proposals [P, 4] (the family's box coordinates in the network input) and whether
        each one is real."""
        objectness, deltas = self.network.rpn(features)
        return self.conventions.proposer.run(self, objectness, deltas)

    @staticmethod
    def pool(features: list[Tensor], boxes: Tensor, levels: list[int], attrs: dict[str, object]) -> Tensor:
        """MultiLevelRoIAlign of *boxes* [R, 4] (x-first) on the feature *levels*."""
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
        return multilevel_roi_align(rois, [features[i] for i in levels], **attrs)

    def detect(self, features: list[Tensor], proposals: Tensor, real: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Box head to final detections: boxes [K, 4] (network input coordinates), scores, labels,
        and which rows are detections."""
        class_scores, deltas = self.network.box_head(self.pool(features, proposals, self.box_levels, self.box_roi))
        return self.conventions.refinement.run(self, proposals, real, class_scores, deltas)

    def segment(self, features: list[Tensor], boxes: Tensor, labels: Tensor, valid: Tensor) -> Tensor:
        """Mask head: each detection's class mask [K, M, M], probabilities (0 for non-detections)."""
        masks = self.network.mask_head(self.pool(features, boxes, self.mask_levels, self.mask_roi))
        return self.conventions.mask_channel.run(self, masks, labels, valid)

    def forward(self, frame: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        features = self.network.features(self.preprocess(frame))
        proposals, real = self.propose(features)
        boxes, scores, labels, valid = self.detect(features, proposals, real)
        probs = self.segment(features, boxes, labels, valid)
        num, frame_boxes, scores, labels, probs = self.conventions.to_frame.run(self, boxes, scores, labels, probs,
                                                                                 valid)
        # The plugin's output is int32 words of four mask bytes, so the planes are pasted a few
        # columns wider than the frame when its width is not a multiple of 4; readers cut them off.
        # It pastes only the first num rows: a frame-size plane per unused slot (K = 100 at 1080p:
        # 200 MB of writes) would cost more than everything else the op does.
        masks = paste_masks(probs, frame_boxes, num, height=self.frame_hw[0],
                            width=packed_mask_width(self.frame_hw[1]),
                            threshold=self.mask_threshold, mode=self.paste_mode, logits=0)
        return num, frame_boxes, scores, labels, masks
