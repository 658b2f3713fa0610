"""A maskrcnn-benchmark GeneralizedRCNN (ResNet/ResNeXt-FPN, MLP box head, FPN mask head)
rebuilt as a torchvision ``MaskRCNN`` with its weights, so edgeseg's Mask R-CNN graph runs it.

The body is detectron2's rebuilt ResNet (``edgeseg.converters.detectron2.model.ResNet``, the same
MSRA layout: stride in the 1x1 conv with ``STRIDE_IN_1X1``) with FrozenBatchNorm without epsilon
(maskrcnn-benchmark ``layers/batch_norm.py``: ``weight * running_var.rsqrt()``); the FPN, RPN
head, box head (``fc6``/``fc7``) and mask head are torchvision modules of the same shapes and
the same arithmetic, with maskrcnn-benchmark's tensors renamed into them (no re-layout: both put
the background at class 0 and have a background slot in ``bbox_pred`` and the mask logits).
maskrcnn-benchmark class k is edgeseg label k. What maskrcnn-benchmark does differently at
inference is :func:`conventions`.
"""

from __future__ import annotations

import re

import torch
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, RPNHead, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from edgeseg.converters.checkpoint import StateDict, load_strict
from edgeseg.converters.detectron2.model import ResNet
from edgeseg.converters.maskrcnn.graph import Conventions
from edgeseg.converters.maskrcnn.strategies import (
    DETECTRON_ANCHORS,
    DETECTRON_LEVELS,
    DETECTRON_NMS,
    INCLUSIVE_BOXES,
    LEGACY_ROI_ALIGN,
    MASKRCNN_BENCHMARK_RESIZE,
    PixelInput,
)
from edgeseg.converters.maskrcnn_benchmark.config import MaskrcnnBenchmarkConfig
from edgeseg.errors import CheckpointMismatchError

#: maskrcnn-benchmark's demo transform is ToTensor (x / 255) then x * 255 on BGR, in float32; for
#: every uint8 value that round trip gives x back exactly (tests/test_maskrcnn_strategies.py
#: checks all 256), so the graph feeds the pixel values as they are
PIXELS = PixelInput("maskrcnn-benchmark", bgr=True, divisor=1.0)


def conventions(cfg: MaskrcnnBenchmarkConfig) -> Conventions:
    """What maskrcnn-benchmark's inference does differently from torchvision's (the shared
    case's README lists each with its source line)."""
    return Conventions(
        pixels=PIXELS,
        resize=MASKRCNN_BENCHMARK_RESIZE,
        anchors=DETECTRON_ANCHORS,
        box_coder=INCLUSIVE_BOXES,
        nms=DETECTRON_NMS,
        roi_align=LEGACY_ROI_ALIGN,
        levels=DETECTRON_LEVELS,
        # remove_small_boxes(min_size) on +1 sides, >=; no filter after the box head
        rpn_min_size=float(cfg["MODEL.RPN.MIN_SIZE"]),
        box_min_size=None,
        strict_min_size=False,
        rpn_post_nms_per_level=int(cfg["MODEL.RPN.POST_NMS_TOP_N_TEST"]),
        rpn_setting_names=(cfg.name_of("MODEL.RPN.PRE_NMS_TOP_N_TEST"),
                           cfg.name_of("MODEL.RPN.FPN_POST_NMS_TOP_N_TEST")),
    )


def build(cfg: MaskrcnnBenchmarkConfig) -> MaskRCNN:
    """The torchvision ``MaskRCNN`` of *cfg*, seeded random weights, eval mode."""
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(0)
        return _build(cfg)


def _build(cfg: MaskrcnnBenchmarkConfig) -> MaskRCNN:
    body = ResNet(cfg.blocks, int(cfg["MODEL.RESNETS.NUM_GROUPS"]), int(cfg["MODEL.RESNETS.WIDTH_PER_GROUP"]),
                  int(cfg["MODEL.RESNETS.STEM_OUT_CHANNELS"]), int(cfg["MODEL.RESNETS.RES2_OUT_CHANNELS"]),
                  bool(cfg["MODEL.RESNETS.STRIDE_IN_1X1"]), eps=0.0)
    fpn = int(cfg["MODEL.RESNETS.BACKBONE_OUT_CHANNELS"])
    backbone = BackboneWithFPN(body, {f"res{i}": str(i - 2) for i in range(2, 6)}, body.out_channels, fpn,
                               extra_blocks=LastLevelMaxPool())
    sizes = tuple((int(s),) for s in cfg["MODEL.RPN.ANCHOR_SIZES"])
    ratios = tuple(float(r) for r in cfg["MODEL.RPN.ASPECT_RATIOS"])
    res = int(cfg["MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION"])
    mlp = int(cfg["MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM"])
    mask_layers = [int(c) for c in cfg["MODEL.ROI_MASK_HEAD.CONV_LAYERS"]]
    k = cfg.num_classes
    names = ["0", "1", "2", "3"]
    model = MaskRCNN(
        backbone, num_classes=None,
        rpn_anchor_generator=AnchorGenerator(sizes, (ratios,) * len(sizes)),
        rpn_head=RPNHead(fpn, len(ratios)),
        box_roi_pool=MultiScaleRoIAlign(names, res, int(cfg["MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO"])),
        box_head=TwoMLPHead(fpn * res * res, mlp), box_predictor=FastRCNNPredictor(mlp, k),
        mask_roi_pool=MultiScaleRoIAlign(names, int(cfg["MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION"]),
                                         int(cfg["MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO"])),
        mask_head=MaskRCNNHeads(fpn, mask_layers, int(cfg["MODEL.ROI_MASK_HEAD.DILATION"])),
        mask_predictor=MaskRCNNPredictor(mask_layers[-1], mask_layers[-1], k),
        min_size=int(cfg["INPUT.MIN_SIZE_TEST"]), max_size=int(cfg["INPUT.MAX_SIZE_TEST"]),
        image_mean=[float(v) for v in cfg["INPUT.PIXEL_MEAN"]], image_std=[float(v) for v in cfg["INPUT.PIXEL_STD"]],
        rpn_pre_nms_top_n_test=int(cfg["MODEL.RPN.PRE_NMS_TOP_N_TEST"]),
        rpn_post_nms_top_n_test=int(cfg["MODEL.RPN.FPN_POST_NMS_TOP_N_TEST"]),
        rpn_nms_thresh=float(cfg["MODEL.RPN.NMS_THRESH"]),
        box_score_thresh=float(cfg["MODEL.ROI_HEADS.SCORE_THRESH"]),
        box_nms_thresh=float(cfg["MODEL.ROI_HEADS.NMS"]),
        box_detections_per_img=int(cfg["MODEL.ROI_HEADS.DETECTIONS_PER_IMG"]),
        bbox_reg_weights=tuple(float(w) for w in cfg["MODEL.ROI_HEADS.BBOX_REG_WEIGHTS"]),
    )
    model.transform.size_divisible = max(int(cfg["DATALOADER.SIZE_DIVISIBILITY"]), 1)
    return model.eval()


def _body_key(rest: str) -> str:
    if m := re.fullmatch(r"stem\.bn1\.(.+)", rest):
        return f"stem.conv1.norm.{m[1]}"
    if m := re.fullmatch(r"layer(\d)\.(\d+)\.bn(\d)\.(.+)", rest):
        return f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}"
    if m := re.fullmatch(r"layer(\d)\.(\d+)\.conv(\d)\.(.+)", rest):
        return f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.{m[4]}"
    if m := re.fullmatch(r"layer(\d)\.(\d+)\.downsample\.0\.(.+)", rest):
        return f"res{int(m[1]) + 1}.{m[2]}.shortcut.{m[3]}"
    if m := re.fullmatch(r"layer(\d)\.(\d+)\.downsample\.1\.(.+)", rest):
        return f"res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}"
    return rest


def convert_state_dict(sd: StateDict, cfg: MaskrcnnBenchmarkConfig) -> StateDict:
    """maskrcnn-benchmark's tensors under the torchvision model's names, float32. The anchor
    buffers are checked against the anchors edgeseg generates (Detectron's legacy anchors) and
    dropped; keys edgeseg does not know stay as they are, so the strict load names them."""
    out: StateDict = {}
    strides = [int(s) for s in cfg["MODEL.RPN.ANCHOR_STRIDE"]]
    ratios = tuple(float(r) for r in cfg["MODEL.RPN.ASPECT_RATIOS"])
    for key, value in sd.items():
        value = value.float() if value.is_floating_point() else value
        name = key
        if m := re.fullmatch(r"rpn\.anchor_generator\.cell_anchors\.(\d)", key):
            level = int(m[1])
            size = float(cfg["MODEL.RPN.ANCHOR_SIZES"][level]) if level < len(strides) else 0.0
            mine = DETECTRON_ANCHORS.cell_anchors((size,), ratios, strides[level]) if level < len(strides) else None
            if mine is None or tuple(value.shape) != tuple(mine.shape) or not torch.equal(value, mine):
                raise CheckpointMismatchError(
                    f"{key}: the checkpoint's anchors {value.tolist()} are not Detectron's anchors of "
                    f"MODEL.RPN.ANCHOR_SIZES / ASPECT_RATIOS / ANCHOR_STRIDE in {cfg.source}; check the config")
            continue
        if key.startswith("backbone.body."):
            name = "backbone.body." + _body_key(key[len("backbone.body."):])
        elif m := re.fullmatch(r"backbone\.fpn\.fpn_(inner|layer)([1-4])\.(weight|bias)", key):
            kind = "inner_blocks" if m[1] == "inner" else "layer_blocks"
            name = f"backbone.fpn.{kind}.{int(m[2]) - 1}.0.{m[3]}"
        elif m := re.fullmatch(r"rpn\.head\.conv\.(weight|bias)", key):
            name = f"rpn.head.conv.0.0.{m[1]}"
        elif m := re.fullmatch(r"roi_heads\.box\.feature_extractor\.(fc[67])\.(weight|bias)", key):
            name = f"roi_heads.box_head.{m[1]}.{m[2]}"
        elif m := re.fullmatch(r"roi_heads\.box\.predictor\.(cls_score|bbox_pred)\.(weight|bias)", key):
            name = f"roi_heads.box_predictor.{m[1]}.{m[2]}"
        elif m := re.fullmatch(r"roi_heads\.mask\.feature_extractor\.mask_fcn(\d+)\.(weight|bias)", key):
            name = f"roi_heads.mask_head.{int(m[1]) - 1}.0.{m[2]}"
        elif m := re.fullmatch(r"roi_heads\.mask\.predictor\.(conv5_mask|mask_fcn_logits)\.(weight|bias)", key):
            name = f"roi_heads.mask_predictor.{m[1]}.{m[2]}"
        out[name] = value
    return out


def load(cfg: MaskrcnnBenchmarkConfig, sd: StateDict | None) -> MaskRCNN:
    """The model of *cfg* with maskrcnn-benchmark's weights *sd* loaded strictly (random when
    None); :class:`~edgeseg.errors.CheckpointMismatchError` names the first keys and shapes that
    do not fit the config."""
    model = build(cfg)
    if sd is not None:
        load_strict(model, convert_state_dict(sd, cfg), f"the maskrcnn-benchmark model of {cfg.source}")
    return model
