"""matterport's inference as the Mask R-CNN graph skeleton: a :class:`Conventions` record of
matterport's stages (``edgeseg.converters.maskrcnn.stages``) and :class:`MatterportNetwork`, the
adapter through which the skeleton runs :class:`.network.MatterportNet`.

:func:`build_graph` gives the torch module that the converter traces to ONNX (and that runs
eagerly, with the torch stand-ins of the custom ops, as the parity tests do): uint8 BGR frame
[H, W, 3] -> (num_detections, boxes, scores, labels, masks) exactly as the other families'
graphs, K = ``DETECTION_MAX_INSTANCES``, labels matterport's class ids (0 background), boxes
x0, y0, x1, y1 frame pixels with exclusive ends (integers, as ``detect()`` rounds them).

Node-name scopes of the exported graph (for precision rules): ``/backbone/...`` (ResNet and FPN),
``/rpn/...`` (``rpn_conv``, ``rpn_class``, ``rpn_bbox`` and the two-class ``Softmax``),
``/box_head/...`` (``class_conv1``/``class_bn1``/``class_conv2``/``class_bn2``, ``class_logits``
and its ``Softmax``, ``bbox_fc``), ``/mask_head/...`` (``mask_convs``, ``mask_bns``,
``mask_deconv``, ``mask_logits`` and the ``Sigmoid``); the steps between them are unscoped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor, nn

from edgeseg.converters.maskrcnn.graph import Conventions, FrameToDetections, GraphOptions, NetworkAdapter
from edgeseg.converters.maskrcnn.stages import (
    PROBABILITY_MASKS,
    CropAndResizeLevels,
    OneTopKProposals,
    TopClassRefinement,
    UnmoldCompact,
    ZoomMold,
)
from edgeseg.converters.maskrcnn.strategies import CROP_AND_RESIZE, MATTERPORT_LEVELS, PixelInput
from edgeseg.converters.matterport.config import MatterportConfig
from edgeseg.converters.matterport.network import MatterportNet
from edgeseg.errors import ConversionError

#: the network takes RGB values 0..255 minus MEAN_PIXEL (no std), as the metadata says it
PIXELS = PixelInput("matterport", bgr=False, divisor=1.0)


class _Part(nn.Module):
    """One part of a :class:`MatterportNet` as a module of its own, so its layers are called under
    the scope the part is registered as: the network method *method* run on this module, which
    holds the layers it reads under the same names (``net``'s own objects: no copy)."""

    def __init__(self, net: MatterportNet, method: Callable[..., Any], layers: tuple[str, ...]) -> None:
        super().__init__()
        for name in layers:
            self.add_module(name, getattr(net, name))
        self.num_classes = net.num_classes
        self._method = method

    def forward(self, *args: Tensor) -> Any:
        return self._method(cast(MatterportNet, self), *args)


class _RPN(_Part):
    """matterport's shared RPN run on every level in one call, so all its nodes (each level's
    conv, padding, activation and two-class softmax) are named under the one scope ``/rpn``."""

    def forward(self, *levels: Tensor) -> tuple[Tensor, Tensor]:
        rows = [self._method(cast(MatterportNet, self), f) for f in levels]
        return torch.cat([p for p, _ in rows]), torch.cat([d for _, d in rows])


class MatterportNetwork:
    """:class:`MatterportNet` as the graph's ``Network``: scopes ``backbone`` (molded image ->
    P2..P6), ``rpn`` (one level -> two-class probabilities and raw deltas), ``box_head``
    (probabilities [R, K], raw deltas [R, K, 4] y-first) and ``mask_head`` (sigmoid masks
    [R, K, 28, 28]). ``rpn`` gives the fg probability [N] of every anchor (the softmax over the two
    logits, as ``MatterportNet.rpn`` computes it) and the raw deltas [N, 4] (dy, dx, log dh,
    log dw), levels P2..P6 in the anchors' order."""

    def __init__(self, net: MatterportNet) -> None:
        self.model = net.eval()
        self.scopes: dict[str, nn.Module] = {
            "backbone": _Part(net, MatterportNet.backbone_fpn, ("conv1", "bn_conv1", "stages", "lateral", "smooth")),
            "rpn": _RPN(net, MatterportNet.rpn, ("rpn_conv", "rpn_class", "rpn_bbox")),
            "box_head": _Part(net, MatterportNet.box_head, ("class_conv1", "class_bn1", "class_conv2", "class_bn2",
                                                            "class_logits", "bbox_fc")),
            "mask_head": _Part(net, MatterportNet.mask_head, ("mask_convs", "mask_bns", "mask_deconv",
                                                              "mask_logits")),
        }

    def probe(self, image_hw: tuple[int, int]) -> dict[str, Tensor]:
        levels = self.features(torch.zeros((1, 3, *image_hw)))
        return {f"P{k + 2}": f for k, f in enumerate(levels)}

    def features(self, image: Tensor) -> list[Tensor]:
        levels: list[Tensor] = self.scopes["backbone"](image)
        return levels

    def rpn(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        probs, deltas = self.scopes["rpn"](*features)
        return probs[:, 1], deltas

    def box_head(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        probs, deltas = self.scopes["box_head"](pooled)
        return probs, deltas

    def mask_head(self, pooled: Tensor) -> Tensor:
        masks: Tensor = self.scopes["mask_head"](pooled)
        return masks


def _adapt(model: nn.Module) -> MatterportNetwork:
    if not isinstance(model, MatterportNet):
        raise ConversionError(f"matterport's graph runs a MatterportNet, not {type(model).__name__}")
    return MatterportNetwork(model)


MATTERPORT_NETWORK = NetworkAdapter("matterport", _adapt)


def conventions(cfg: MatterportConfig) -> Conventions:
    """matterport's ``detect()`` for *cfg* as the skeleton's stages (docs/matterport.md section 3)."""
    mean = tuple(float(m) for m in cfg["MEAN_PIXEL"])
    return Conventions(
        pixels=PIXELS,
        roi_align=CROP_AND_RESIZE,
        levels=MATTERPORT_LEVELS,
        rpn_setting_names=("PRE_NMS_LIMIT", "POST_NMS_ROIS_INFERENCE"),
        network=MATTERPORT_NETWORK,
        preprocess=ZoomMold(int(cfg["IMAGE_MIN_DIM"]), int(cfg["IMAGE_MAX_DIM"]), float(cfg["IMAGE_MIN_SCALE"]),
                            (mean[0], mean[1], mean[2])),
        proposer=OneTopKProposals(cfg),
        pooling=CropAndResizeLevels(int(cfg["POOL_SIZE"]), int(cfg["MASK_POOL_SIZE"]),
                                    tuple(int(s) for s in cfg["BACKBONE_STRIDES"])),
        refinement=TopClassRefinement(cfg),
        mask_channel=PROBABILITY_MASKS,
        to_frame=UnmoldCompact(),
    )


def graph_options(cfg: MatterportConfig) -> GraphOptions:
    """matterport's own choices: masks pasted by the zoom of ``unmold_mask``, ``>= 0.5``."""
    return GraphOptions(paste="zoom", mask_threshold=0.5)


def build_graph(net: MatterportNet, cfg: MatterportConfig, frame_hw: tuple[int, int],
                options: GraphOptions | None = None) -> nn.Module:
    """The frame -> detections module of *net* (weights loaded) for frames of *frame_hw*
    (height, width): forward(uint8 BGR [H, W, 3]) -> (num_detections int32 [1], boxes [K, 4],
    scores [K], labels int32 [K], masks int32 [K, H, ceil(W / 4)] packed bytes),
    K = ``DETECTION_MAX_INSTANCES``. *options*: None for :func:`graph_options`."""
    return FrameToDetections(net, frame_hw, options or graph_options(cfg), conventions(cfg)).eval()
