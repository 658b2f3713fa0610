"""The torchvision Mask R-CNN architectures edgeseg builds from a name, as data.

Each builder makes the module exactly as torchvision builds it for its published weights
(``maskrcnn_resnet50_fpn``: ResNet-50 with frozen BatchNorm; ``..._v2``: BatchNorm throughout,
two-conv RPN head, conv box head), with random weights and any number of classes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, RPNHead, _default_anchorgen
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.ops import misc as misc_nn_ops

from edgeseg.errors import UnknownArchError

#: COCO's 91 category slots as torchvision numbers them (index = label; "N/A" slots unused).
COCO_CATEGORIES = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
    "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A", "dining table", "N/A", "N/A", "toilet",
    "N/A", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "N/A", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)


def resnet50_fpn(num_classes: int) -> MaskRCNN:
    backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d), 3)
    return MaskRCNN(backbone, num_classes=num_classes)


def resnet50_fpn_v2(num_classes: int) -> MaskRCNN:
    backbone = _resnet_fpn_extractor(resnet50(weights=None), 3, norm_layer=nn.BatchNorm2d)
    anchors = _default_anchorgen()
    return MaskRCNN(
        backbone,
        num_classes=num_classes,
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0], conv_depth=2),
        box_head=FastRCNNConvFCHead((backbone.out_channels, 7, 7), [256] * 4, [1024], norm_layer=nn.BatchNorm2d),
        mask_head=MaskRCNNHeads(backbone.out_channels, [256] * 4, 1, norm_layer=nn.BatchNorm2d),
    )


ARCHS: dict[str, Callable[[int], MaskRCNN]] = {
    "resnet50_fpn": resnet50_fpn,
    "resnet50_fpn_v2": resnet50_fpn_v2,
}

#: the checkpoint key whose first dimension is the class count
CLASS_KEY = "roi_heads.box_predictor.cls_score.weight"


def arch_key(name: str) -> str:
    """The ARCHS key *name* stands for (``maskrcnn_`` prefix and dashes allowed);
    :class:`UnknownArchError` listing the known names otherwise."""
    key = name.lower().replace("-", "_").removeprefix("maskrcnn_")
    if key not in ARCHS:
        raise UnknownArchError(f"unknown Mask R-CNN arch {name!r}; choose one of: {', '.join(ARCHS)}")
    return key


def build_arch(name: str, num_classes: int) -> MaskRCNN:
    """An untrained torchvision Mask R-CNN of architecture *name* in eval mode, with seeded
    (reproducible) random weights."""
    key = arch_key(name)
    torch.manual_seed(0)
    return ARCHS[key](num_classes).eval()
