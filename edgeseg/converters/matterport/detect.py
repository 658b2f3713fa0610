"""An eager PyTorch rebuild of matterport's ``MaskRCNN.detect()`` for one image.

The network is :class:`.network.MatterportNet` with the ``.h5`` weights loaded; each step between
its parts is a named function of :mod:`.conventions`. This is the reference that the exported
graph (``edgeseg compare``) and the benchmarks measure against; ``tests/test_matterport.py``
holds it to what matterport's own ``detect()`` returned (``../shared/matterport``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from edgeseg.converters.matterport import conventions as cv
from edgeseg.converters.matterport.config import MatterportConfig, read_config
from edgeseg.converters.matterport.h5weights import read_h5_weights
from edgeseg.converters.matterport.network import MatterportNet, build_network, load_keras_weights
from edgeseg.errors import ArgumentError, CheckpointMismatchError


@dataclass
class Detections:
    """What ``detect()`` returns for one image, plus its intermediates (names as in
    ``outputs_caseA.npz``). ``rois``: int32 [N, 4] (y1, x1, y2, x2) original pixels, y2/x2
    exclusive; ``class_ids`` int32 [N]; ``scores`` float32 [N]; ``masks`` bool [N, H, W];
    ``features``: P2-P5 [C, H/s, W/s] of the molded image, float32."""

    rois: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray
    masks: np.ndarray
    intermediates: dict[str, np.ndarray] = field(default_factory=dict)
    features: list[np.ndarray] = field(default_factory=list)


def refine_detections(rois: torch.Tensor, probs: torch.Tensor, deltas: torch.Tensor, window: np.ndarray,
                      cfg: MatterportConfig) -> torch.Tensor:
    """``refine_detections_graph``: each RoI keeps only its top class (argmax over all classes,
    background included; first index on ties), that class's deltas times BBOX_STD_DEV, clipped to
    the normalised *window*; background dropped; score ``>=`` DETECTION_MIN_CONFIDENCE when it is
    non-zero; NMS per class (IoU > DETECTION_NMS_THRESHOLD suppresses); the union by score
    descending cut to DETECTION_MAX_INSTANCES. Returns [n, 6] (y1, x1, y2, x2, class, score),
    normalised, n <= DETECTION_MAX_INSTANCES, not padded."""
    class_ids = torch.argmax(probs, dim=1)
    idx = torch.arange(probs.shape[0])
    scores = probs[idx, class_ids]
    std = torch.tensor(cfg["BBOX_STD_DEV"], dtype=torch.float32)
    refined = cv.clip_boxes(cv.apply_box_deltas(rois, deltas[idx, class_ids] * std), window.tolist())
    keep = class_ids > 0
    if cfg["DETECTION_MIN_CONFIDENCE"]:
        keep &= scores >= torch.tensor(cfg["DETECTION_MIN_CONFIDENCE"], dtype=torch.float32)
    keep_ix = torch.nonzero(keep).flatten()
    survivors: list[torch.Tensor] = []
    for c in torch.unique(class_ids[keep_ix]).tolist():
        ix = keep_ix[class_ids[keep_ix] == c]
        kept = cv.nms(refined[ix], scores[ix], cfg["DETECTION_MAX_INSTANCES"], cfg["DETECTION_NMS_THRESHOLD"])
        survivors.append(ix[kept])
    # tf.sets.intersection sorts the kept RoI indices; top_k then breaks score ties by that order
    final = torch.sort(torch.cat(survivors)).values if survivors else torch.zeros(0, dtype=torch.long)
    order = torch.sort(scores[final], descending=True, stable=True).indices[:cfg["DETECTION_MAX_INSTANCES"]]
    final = final[order]
    return torch.cat([refined[final], class_ids[final, None].to(torch.float32), scores[final, None]], dim=1)


class EagerMatterport:
    """matterport's inference model for one Config and ``.h5``: ``detect(rgb)`` as ``detect()``."""

    def __init__(self, net: MatterportNet, cfg: MatterportConfig) -> None:
        self.net, self.cfg = net, cfg
        d = cfg.image_shape[0]
        self.anchors = cv.pyramid_anchors(cfg["RPN_ANCHOR_SCALES"], cfg["RPN_ANCHOR_RATIOS"], cfg.backbone_shapes,
                                          cfg["BACKBONE_STRIDES"], cfg["RPN_ANCHOR_STRIDE"], (d, d))

    @torch.no_grad()
    def detect(self, image: np.ndarray) -> Detections:
        """One RGB uint8 [H, W, 3] image -> :class:`Detections` (as ``detect([image])[0]``)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ArgumentError(f"expected an RGB uint8 image [H, W, 3], got {image.dtype} {list(image.shape)}")
        cfg = self.cfg
        d = cfg.image_shape[0]
        molded, window, _ = cv.mold_image(image, cfg["IMAGE_MIN_DIM"], d, cfg["IMAGE_MIN_SCALE"], cfg["MEAN_PIXEL"])
        x = torch.from_numpy(molded).permute(2, 0, 1)[None]
        features = self.net.backbone_fpn(x)
        rpn = [self.net.rpn(f) for f in features]
        rpn_probs = torch.cat([p for p, _ in rpn])
        rpn_deltas = torch.cat([dl for _, dl in rpn])
        if rpn_probs.shape[0] != self.anchors.shape[0]:
            raise CheckpointMismatchError(f"the RPN gives {rpn_probs.shape[0]} anchors' outputs but the Config "
                                          f"makes {self.anchors.shape[0]} anchors; check BACKBONE_STRIDES")
        rpn_rois = self.proposals(rpn_probs, rpn_deltas)
        p2_p5 = [f[0] for f in features[:4]]
        area = float(d * d)
        probs, deltas = self.net.box_head(cv.pyramid_roi_align(p2_p5, rpn_rois, cfg["POOL_SIZE"], area))
        window_norm = cv.norm_boxes(np.asarray(window), (d, d))
        dets = refine_detections(rpn_rois, probs, deltas, window_norm, cfg)
        masks = self.net.mask_head(cv.pyramid_roi_align(p2_p5, dets[:, :4], cfg["MASK_POOL_SIZE"], area))
        class_ids = dets[:, 4].to(torch.long)
        det_masks = masks[torch.arange(len(dets)), class_ids].numpy()
        h, w = image.shape[:2]
        boxes = cv.unmold_boxes(dets[:, :4].numpy(), window, (d, d), (h, w))
        keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
        full = np.stack([cv.paste_mask(m, b, (h, w)) for m, b in zip(det_masks[keep], boxes[keep], strict=True)]) \
            if keep.any() else np.zeros((0, h, w), dtype=bool)
        inter = {"molded_image": molded, "window": np.asarray(window), "anchors_norm": self.anchors,
                 "rpn_class_probs": rpn_probs.numpy(), "rpn_bbox_deltas": rpn_deltas.numpy(),
                 "rpn_rois_norm": rpn_rois.numpy(), "mrcnn_class_probs": probs.numpy(),
                 "mrcnn_bbox_deltas": deltas.numpy(), "detections_raw_norm": dets.numpy(),
                 "mrcnn_mask_det": det_masks}
        return Detections(rois=boxes[keep], class_ids=dets[:, 4].numpy().astype(np.int32)[keep],
                          scores=dets[:, 5].numpy()[keep], masks=full, intermediates=inter,
                          features=[f.numpy() for f in p2_p5])

    def proposals(self, probs: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        """``ProposalLayer``: fg score, deltas times RPN_BBOX_STD_DEV, one top-k of PRE_NMS_LIMIT over
        all levels (ties: lower anchor first), deltas applied on normalised anchors, clipped to
        [0, 1], NMS (IoU > RPN_NMS_THRESHOLD suppresses) to POST_NMS_ROIS_INFERENCE, zero-padded."""
        cfg = self.cfg
        scores = probs[:, 1]
        deltas = deltas * torch.tensor(cfg["RPN_BBOX_STD_DEV"], dtype=torch.float32)
        k = min(cfg["PRE_NMS_LIMIT"], scores.shape[0])
        top = torch.sort(scores, descending=True, stable=True).indices[:k]
        boxes = cv.apply_box_deltas(torch.from_numpy(self.anchors)[top], deltas[top])
        boxes = cv.clip_boxes(boxes, [0.0, 0.0, 1.0, 1.0])
        keep = cv.nms(boxes, scores[top], cfg["POST_NMS_ROIS_INFERENCE"], cfg["RPN_NMS_THRESHOLD"])
        out = boxes.new_zeros((cfg["POST_NMS_ROIS_INFERENCE"], 4))
        out[:len(keep)] = boxes[keep]
        return out


def load_eager(weights: str | os.PathLike[str], config: str | os.PathLike[str] | MatterportConfig) -> EagerMatterport:
    """The eager model from a ``.h5`` and a Config (path as :func:`.config.read_config` reads it,
    or already read). The ResNet depth comes from the file; a Config that names the other one is
    refused."""
    cfg = config if isinstance(config, MatterportConfig) else read_config(config)
    w = read_h5_weights(weights)
    depth = w.resnet_depth
    if cfg["BACKBONE"] != f"resnet{depth}":
        raise CheckpointMismatchError(f"{os.path.basename(os.fspath(weights))} holds a ResNet-{depth} backbone but "
                                      f"{cfg.source} has BACKBONE = {cfg['BACKBONE']!r}; set BACKBONE = "
                                      f"\"resnet{depth}\" (matterport's default is resnet101)")
    net = build_network(cfg, depth)
    load_keras_weights(net, w)
    return EagerMatterport(net, cfg)
