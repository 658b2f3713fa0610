"""The torchvision Mask R-CNN architectures edgeseg builds from a name, as data.

Each builder makes the module exactly as torchvision builds it for its published weights
(``maskrcnn_resnet50_fpn``: ResNet-50 with frozen BatchNorm; ``..._v2``: BatchNorm throughout,
two-conv RPN head, conv box head), with random weights and any number of classes.

``resnet18_fpn_lite`` is edgeseg's own small Mask R-CNN (about 3.9M parameters with 6 classes),
made of torchvision's building blocks only, for small frames (256..512 pixels) on edge devices:
ResNet-18 (BatchNorm, layers 1-3; layer 4 is not built), a 64-channel FPN on strides 4, 8, 16
plus the max-pooled stride-32 level, one anchor size per level (16..128 px, three aspect ratios),
RoIAlign on the three convolutional levels, a 256-wide two-layer box head and a 4 x 64-channel
mask head. Images are resized to a 256-pixel short side (at most 512 long). The reference weights
in ``edgeseg/data/weights/`` (trained on ``edgeseg.scenes``) use it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import (
    FastRCNNConvFCHead,
    FastRCNNPredictor,
    RPNHead,
    TwoMLPHead,
    _default_anchorgen,
)
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

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


#: resnet18_fpn_lite: width of the FPN levels and of the mask head; anchor size of each level
LITE_CHANNELS = 64
LITE_ANCHOR_SIZES = ((16,), (32,), (64,), (128,))


def resnet18_fpn_lite(num_classes: int) -> MaskRCNN:
    trunk = resnet18(weights=None, norm_layer=nn.BatchNorm2d)
    backbone = BackboneWithFPN(
        trunk,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2"},
        in_channels_list=[64, 128, 256],
        out_channels=LITE_CHANNELS,
        extra_blocks=LastLevelMaxPool(),
    )
    anchors = AnchorGenerator(LITE_ANCHOR_SIZES, ((0.5, 1.0, 2.0),) * len(LITE_ANCHOR_SIZES))
    levels = ["0", "1", "2"]
    return MaskRCNN(
        backbone,
        min_size=256,
        max_size=512,
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(LITE_CHANNELS, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_train=1000,
        rpn_post_nms_top_n_train=500,
        rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_test=300,
        box_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(LITE_CHANNELS * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, num_classes),
        box_batch_size_per_image=128,
        mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(LITE_CHANNELS, [LITE_CHANNELS] * 4, 1),
        mask_predictor=MaskRCNNPredictor(LITE_CHANNELS, LITE_CHANNELS, num_classes),
    )


ARCHS: dict[str, Callable[[int], MaskRCNN]] = {
    "resnet50_fpn": resnet50_fpn,
    "resnet50_fpn_v2": resnet50_fpn_v2,
    "resnet18_fpn_lite": resnet18_fpn_lite,
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
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(0)
        return ARCHS[key](num_classes).eval()
