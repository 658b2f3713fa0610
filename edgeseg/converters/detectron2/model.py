"""A detectron2 GeneralizedRCNN (ResNet-FPN, StandardROIHeads, mask head) rebuilt as a torchvision
``MaskRCNN`` with detectron2's weights, so edgeseg's Mask R-CNN graph can run it.

The backbone is detectron2's own layout (stride in the 1x1 conv with ``STRIDE_IN_1X1``, groups
and widths from the config, FrozenBN or BN folded at inference; the conv and its ``.norm`` keep
detectron2's key names); the FPN, RPN head, box head and mask head are torchvision modules of
the same shapes, with detectron2's tensors renamed into them. Two layouts are converted, exactly:
``cls_score`` has the background at the last index in detectron2 and at index 0 in torchvision
(rows moved), and detectron2's ``bbox_pred`` / mask ``predictor`` have no background slot
(a zero slot inserted; class-agnostic ones repeated per class). detectron2 class k is edgeseg
label k + 1. What torchvision does differently at inference is the graph's
:class:`~edgeseg.converters.maskrcnn.graph.Conventions`.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, RPNHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from edgeseg.converters.checkpoint import StateDict, load_strict
from edgeseg.converters.detectron2.config import Detectron2Config
from edgeseg.converters.maskrcnn.graph import Conventions
from edgeseg.converters.maskrcnn.strategies import (
    ALIGNED_ROI_ALIGN,
    CENTRED_ANCHORS,
    DETECTRON2_RESIZE,
    LEGACY_ROI_ALIGN,
    PixelInput,
)
from edgeseg.errors import ArgumentError

#: bottleneck blocks per stage (res2..res5) for each MODEL.RESNETS.DEPTH
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def conventions(cfg: Detectron2Config) -> Conventions:
    """What detectron2's inference does differently from torchvision's, for this config."""
    return Conventions(
        # detectron2 normalises 0..255 values
        pixels=PixelInput("detectron2", bgr=cfg["INPUT.FORMAT"] == "BGR", divisor=1.0),
        resize=DETECTRON2_RESIZE,
        anchors=CENTRED_ANCHORS,
        roi_align=ALIGNED_ROI_ALIGN if cfg["MODEL.ROI_BOX_HEAD.POOLER_TYPE"] == "ROIAlignV2" else LEGACY_ROI_ALIGN,
        rpn_min_size=float(cfg["MODEL.PROPOSAL_GENERATOR.MIN_SIZE"]),
        box_min_size=None,  # no small-box filter after the box head
        strict_min_size=True,  # Boxes.nonempty(threshold): side > threshold
        rpn_setting_names=("MODEL.RPN.PRE_NMS_TOPK_TEST", "MODEL.RPN.POST_NMS_TOPK_TEST"),
    )


class ConvNorm(nn.Conv2d):
    """detectron2's Conv2d with its norm as a child (keys ``conv.weight``, ``conv.norm.*``);
    *eps*: the frozen norm's epsilon (maskrcnn-benchmark's FrozenBatchNorm2d has none)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, groups: int = 1,
                 eps: float = 1e-5) -> None:
        super().__init__(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False)
        self.norm = FrozenBatchNorm2d(cout, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(super().forward(x))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, bottleneck: int, cout: int, stride: int, groups: int, stride_in_1x1: bool,
                 eps: float = 1e-5) -> None:
        super().__init__()
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.shortcut = ConvNorm(cin, cout, 1, stride=stride, eps=eps) if cin != cout else None
        self.conv1 = ConvNorm(cin, bottleneck, 1, stride=s1, eps=eps)
        self.conv2 = ConvNorm(bottleneck, bottleneck, 3, stride=s3, padding=1, groups=groups, eps=eps)
        self.conv3 = ConvNorm(bottleneck, cout, 1, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.conv1(x))
        out = torch.relu(self.conv2(out))
        out = self.conv3(out)
        return torch.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


class Stem(nn.Module):
    def __init__(self, cout: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.conv1 = ConvNorm(3, cout, 7, stride=2, padding=3, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.max_pool2d(torch.relu(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class ResNet(nn.Module):
    """detectron2's ResNet (bottlenecks) with children stem, res2..res5 (maskrcnn-benchmark's and
    Detectron's too, with their names mapped onto these and ``eps`` 0)."""

    def __init__(self, blocks_per_stage: tuple[int, ...], groups: int, width_per_group: int, stem_out: int,
                 res2_out: int, stride_in_1x1: bool, eps: float = 1e-5) -> None:
        super().__init__()
        bottleneck = groups * width_per_group
        cout = res2_out
        cin = stem_out
        self.stem = Stem(cin, eps)
        self.out_channels: list[int] = []
        for i, n in enumerate(blocks_per_stage):
            stride = 1 if i == 0 else 2
            blocks = []
            for b in range(n):
                blocks.append(Bottleneck(cin, bottleneck, cout, stride if b == 0 else 1, groups, stride_in_1x1, eps))
                cin = cout
            self.add_module(f"res{i + 2}", nn.Sequential(*blocks))
            self.out_channels.append(cout)
            bottleneck, cout = bottleneck * 2, cout * 2


def build(cfg: Detectron2Config) -> MaskRCNN:
    """The torchvision ``MaskRCNN`` of *cfg*, seeded random weights, eval mode (background at
    label 0)."""
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(0)
        return _build(cfg)


def _resnet(cfg: Detectron2Config) -> ResNet:
    depth = int(cfg["MODEL.RESNETS.DEPTH"])
    if depth not in BLOCKS:
        raise ArgumentError(f"{cfg.source}: MODEL.RESNETS.DEPTH = {depth} is not supported: bottleneck ResNets "
                            f"of depth {', '.join(map(str, BLOCKS))}")
    return ResNet(BLOCKS[depth], int(cfg["MODEL.RESNETS.NUM_GROUPS"]), int(cfg["MODEL.RESNETS.WIDTH_PER_GROUP"]),
                  int(cfg["MODEL.RESNETS.STEM_OUT_CHANNELS"]), int(cfg["MODEL.RESNETS.RES2_OUT_CHANNELS"]),
                  bool(cfg["MODEL.RESNETS.STRIDE_IN_1X1"]))


def _build(cfg: Detectron2Config) -> MaskRCNN:
    body = _resnet(cfg)
    fpn_channels = int(cfg["MODEL.FPN.OUT_CHANNELS"])
    backbone = BackboneWithFPN(body, {f"res{i}": str(i - 2) for i in range(2, 6)}, body.out_channels,
                               fpn_channels, extra_blocks=LastLevelMaxPool())
    sizes = tuple((int(s[0]),) for s in cfg["MODEL.ANCHOR_GENERATOR.SIZES"])
    ratios = tuple(float(r) for r in cfg["MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS"][0])
    if float(cfg["MODEL.ANCHOR_GENERATOR.OFFSET"]) != 0.0:
        raise ArgumentError(f"{cfg.source}: MODEL.ANCHOR_GENERATOR.OFFSET != 0 is not supported")
    anchors = AnchorGenerator(sizes, (ratios,) * len(sizes))
    k = cfg.num_classes
    res = int(cfg["MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION"])
    box_head = FastRCNNConvFCHead((fpn_channels, res, res),
                                  [int(cfg["MODEL.ROI_BOX_HEAD.CONV_DIM"])] * int(cfg["MODEL.ROI_BOX_HEAD.NUM_CONV"]),
                                  [int(cfg["MODEL.ROI_BOX_HEAD.FC_DIM"])] * int(cfg["MODEL.ROI_BOX_HEAD.NUM_FC"]),
                                  norm_layer=None)
    box_out = int(cfg["MODEL.ROI_BOX_HEAD.FC_DIM"]) if int(cfg["MODEL.ROI_BOX_HEAD.NUM_FC"]) else \
        int(cfg["MODEL.ROI_BOX_HEAD.CONV_DIM"]) * res * res
    mask_dim = int(cfg["MODEL.ROI_MASK_HEAD.CONV_DIM"])
    mask_convs = int(cfg["MODEL.ROI_MASK_HEAD.NUM_CONV"])
    mask_res = int(cfg["MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION"])
    names = ["0", "1", "2", "3"]
    model = MaskRCNN(
        backbone, num_classes=None,
        rpn_anchor_generator=anchors, rpn_head=RPNHead(fpn_channels, len(ratios)),
        box_roi_pool=MultiScaleRoIAlign(names, res, int(cfg["MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO"])),
        box_head=box_head, box_predictor=FastRCNNPredictor(box_out, k + 1),
        mask_roi_pool=MultiScaleRoIAlign(names, mask_res, int(cfg["MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO"])),
        mask_head=MaskRCNNHeads(fpn_channels, [mask_dim] * mask_convs, 1),
        mask_predictor=MaskRCNNPredictor(mask_dim if mask_convs else fpn_channels, mask_dim, k + 1),
        min_size=int(cfg["INPUT.MIN_SIZE_TEST"]), max_size=int(cfg["INPUT.MAX_SIZE_TEST"]),
        image_mean=[float(v) for v in cfg["MODEL.PIXEL_MEAN"]], image_std=[float(v) for v in cfg["MODEL.PIXEL_STD"]],
        rpn_pre_nms_top_n_test=int(cfg["MODEL.RPN.PRE_NMS_TOPK_TEST"]),
        rpn_post_nms_top_n_test=int(cfg["MODEL.RPN.POST_NMS_TOPK_TEST"]),
        rpn_nms_thresh=float(cfg["MODEL.RPN.NMS_THRESH"]),
        box_score_thresh=float(cfg["MODEL.ROI_HEADS.SCORE_THRESH_TEST"]),
        box_nms_thresh=float(cfg["MODEL.ROI_HEADS.NMS_THRESH_TEST"]),
        box_detections_per_img=int(cfg["TEST.DETECTIONS_PER_IMAGE"]),
        bbox_reg_weights=tuple(float(w) for w in cfg["MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS"]),
    )
    if [float(w) for w in cfg["MODEL.RPN.BBOX_REG_WEIGHTS"]] != [1.0, 1.0, 1.0, 1.0]:
        from torchvision.models.detection._utils import BoxCoder

        model.rpn.box_coder = BoxCoder(tuple(float(w) for w in cfg["MODEL.RPN.BBOX_REG_WEIGHTS"]))
    return model.eval()


def convert_state_dict(sd: StateDict, cfg: Detectron2Config) -> StateDict:
    """detectron2's tensors under the torchvision model's names (see the module docstring); keys
    edgeseg does not know stay as they are, so the strict load names them."""
    k = cfg.num_classes
    n_conv = int(cfg["MODEL.ROI_BOX_HEAD.NUM_CONV"])
    out: StateDict = {}
    for key, value in sd.items():
        name = key
        if key.startswith("backbone.bottom_up."):
            name = "backbone.body." + key[len("backbone.bottom_up."):]
        elif m := re.fullmatch(r"backbone\.fpn_(lateral|output)([2-5])\.(weight|bias)", key):
            kind = "inner_blocks" if m[1] == "lateral" else "layer_blocks"
            name = f"backbone.fpn.{kind}.{int(m[2]) - 2}.0.{m[3]}"
        elif key.startswith("proposal_generator.rpn_head."):
            rest = key[len("proposal_generator.rpn_head."):]
            rest = rest.replace("objectness_logits", "cls_logits").replace("anchor_deltas", "bbox_pred")
            name = "rpn.head." + (rest.replace("conv.", "conv.0.0.", 1) if rest.startswith("conv.") else rest)
        elif m := re.fullmatch(r"roi_heads\.box_head\.conv(\d+)\.(weight|bias)", key):
            name = f"roi_heads.box_head.{int(m[1]) - 1}.0.{m[2]}"
        elif m := re.fullmatch(r"roi_heads\.box_head\.fc(\d+)\.(weight|bias)", key):
            name = f"roi_heads.box_head.{n_conv + 1 + 2 * (int(m[1]) - 1)}.{m[2]}"
        elif key.startswith("roi_heads.box_predictor.cls_score."):
            name = "roi_heads.box_predictor.cls_score." + key.rsplit(".", 1)[1]
            value = torch.cat([value[k:], value[:k]])  # background: last -> first
        elif key.startswith("roi_heads.box_predictor.bbox_pred."):
            name = "roi_heads.box_predictor.bbox_pred." + key.rsplit(".", 1)[1]
            if value.shape[0] == 4:  # class-agnostic regression: the same deltas for every class
                value = value.repeat(k + 1, *([1] * (value.dim() - 1)))
            else:
                value = torch.cat([torch.zeros_like(value[:4]), value])
        elif m := re.fullmatch(r"roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)", key):
            name = f"roi_heads.mask_head.{int(m[1]) - 1}.0.{m[2]}"
        elif key.startswith("roi_heads.mask_head.deconv."):
            name = "roi_heads.mask_predictor.conv5_mask." + key.rsplit(".", 1)[1]
        elif key.startswith("roi_heads.mask_head.predictor."):
            name = "roi_heads.mask_predictor.mask_fcn_logits." + key.rsplit(".", 1)[1]
            if value.shape[0] == 1:  # class-agnostic mask
                value = value.repeat(k + 1, *([1] * (value.dim() - 1)))
            else:
                value = torch.cat([torch.zeros_like(value[:1]), value])
        out[name] = value
    return out


def load(cfg: Detectron2Config, sd: StateDict | None) -> MaskRCNN:
    """The model of *cfg* with detectron2's weights *sd* loaded strictly (random when None);
    :class:`~edgeseg.errors.CheckpointMismatchError` names the first keys and shapes that do
    not fit the config."""
    model = build(cfg)
    if sd is not None:
        state = OrderedDict(convert_state_dict(sd, cfg))
        load_strict(model, dict(state), f"the detectron2 model of {cfg.source}")
    return model
