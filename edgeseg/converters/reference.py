"""edgeseg's reference models: a light Mask R-CNN and an HRNetV2-W18-Small-v1 trained on the
generated scenes (``edgeseg.scenes``), their shipped weights, and PyTorch predictors.

The weights live in ``edgeseg/data/weights/`` as fp16 ``state_dict`` files (``weights_only``
loadable); ``samples/train_reference.py`` made them and ``edgeseg/data/weights/README.md``
records how. A *predictor* is a callable frame -> result with the same contract as an
``edgeseg.Model`` (HxWx3 uint8 BGR in, :class:`~edgeseg.result.InstanceResult` or
:class:`~edgeseg.result.SemanticResult` in frame coordinates out), so
:mod:`edgeseg.evaluation` scores the PyTorch model and the converted one the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection import MaskRCNN

import edgeseg
from edgeseg.classes import ClassSet
from edgeseg.converters.checkpoint import load_strict, read_state_dict
from edgeseg.converters.hrnet.export import build_hrnet, export_hrnet
from edgeseg.converters.hrnet.model import HRNetV2
from edgeseg.converters.maskrcnn.archs import build_arch
from edgeseg.converters.maskrcnn.export import export_maskrcnn
from edgeseg.converters.maskrcnn.graph import GraphOptions
from edgeseg.converters.parity import torchvision_reference
from edgeseg.metadata import Preprocessing
from edgeseg.progress import Steps
from edgeseg.result import InstanceResult, SemanticResult
from edgeseg.scenes import CLASS_NAMES

#: where the shipped weights are (package data of edgeseg)
WEIGHTS_DIR = Path(edgeseg.__file__).resolve().parent / "data" / "weights"

#: label id -> name for both reference models (0 = background)
SCENE_CLASSES = ("background", *CLASS_NAMES)
#: their colours (RGB): black background, then bright hues far apart, so that a blended label map
#: stays readable over the saturated objects
SCENE_PALETTE = ((0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48))


@dataclass(frozen=True)
class Reference:
    """A shipped model: architecture name, weights file (in :data:`WEIGHTS_DIR`), and the frame
    size (height, width) it was trained and evaluated at."""

    arch: str
    weights: str
    frame_hw: tuple[int, int]


MASKRCNN = Reference("resnet18_fpn_lite", "scenes_maskrcnn_lite.pt", (256, 256))
HRNET = Reference("w18_small_v1", "scenes_hrnet_w18s1.pt", (256, 256))


def scene_classes() -> ClassSet:
    """Names and colours of the reference models' classes (stored in their ONNX metadata)."""
    return ClassSet(SCENE_CLASSES, SCENE_PALETTE)


def _weights_path(ref: Reference, weights: str | os.PathLike[str] | None) -> Path:
    return Path(weights) if weights is not None else WEIGHTS_DIR / ref.weights


def _load_fp32(model: torch.nn.Module, path: Path, what: str) -> None:
    sd = {k: v.float() if v.is_floating_point() else v for k, v in read_state_dict(path).items()}
    load_strict(model, sd, what, None)


def reference_maskrcnn(weights: str | os.PathLike[str] | None = None) -> MaskRCNN:
    """The light Mask R-CNN with the shipped weights (or *weights*), fp32, eval mode."""
    model = build_arch(MASKRCNN.arch, len(SCENE_CLASSES))
    _load_fp32(model, _weights_path(MASKRCNN, weights), f"maskrcnn {MASKRCNN.arch} with {len(SCENE_CLASSES)} classes")
    return model.eval()


def reference_hrnet(weights: str | os.PathLike[str] | None = None) -> HRNetV2:
    """HRNetV2-W18-Small-v1 with the shipped weights (or *weights*), fp32, eval mode."""
    model = build_hrnet(HRNET.arch, len(SCENE_CLASSES))
    _load_fp32(model, _weights_path(HRNET, weights), f"hrnet {HRNET.arch} with {len(SCENE_CLASSES)} classes")
    return model.eval()


def normalise(frames: torch.Tensor, pre: Preprocessing | None = None) -> torch.Tensor:
    """N x H x W x 3 uint8 BGR -> N x 3 x H x W float, as the exported HRNet graph does it."""
    pre = pre or Preprocessing()
    order = [2, 1, 0] if pre.channel_order == "rgb" else [0, 1, 2]
    x = frames.permute(0, 3, 1, 2).float()[:, order]
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    return (x * pre.scale - mean) / std


def maskrcnn_predictor(model: MaskRCNN, classes: ClassSet | None = None,
                       mask_threshold: float = 0.5) -> Callable[[np.ndarray], InstanceResult]:
    """frame -> InstanceResult with torchvision eager inference (masks pasted by torchvision)."""
    cs = classes or scene_classes()
    model = model.eval()

    def predict(frame: np.ndarray) -> InstanceResult:
        out = torchvision_reference(model, frame, mask_threshold)
        return InstanceResult(
            boxes=out["boxes"].astype(np.float32),
            scores=out["scores"].astype(np.float32),
            labels=out["labels"].astype(np.int32),
            masks=out["masks"].astype(np.uint8),
            classes=cs.names,
            palette=cs.palette,
        )

    return predict


def hrnet_predictor(model: HRNetV2, classes: ClassSet | None = None,
                    pre: Preprocessing | None = None) -> Callable[[np.ndarray], SemanticResult]:
    """frame -> SemanticResult in eager PyTorch, the steps of the exported graph at frame size:
    normalise, HRNet, bilinear upsampling of the logits to the frame, argmax."""
    cs = classes or scene_classes()
    model = model.eval()

    def predict(frame: np.ndarray) -> SemanticResult:
        with torch.no_grad():
            logits = model(normalise(torch.from_numpy(frame)[None], pre))
            up = F.interpolate(logits, size=frame.shape[:2], mode="bilinear", align_corners=model.align_corners)
        return SemanticResult(up.argmax(1)[0].to(torch.uint8).numpy(), cs.names, cs.palette)

    return predict


def export_reference_models(maskrcnn_path: Path, hrnet_path: Path, frame_hw: tuple[int, int], steps: Steps,
                            score_thresh: float) -> None:
    """Export both shipped models for uint8 BGR frames of *frame_hw* (height, width) pixels
    (``edgeseg demo``). The Mask R-CNN keeps detections scoring above *score_thresh*."""
    with steps.step(f"converting the Mask R-CNN ({MASKRCNN.arch}) to {maskrcnn_path}"):
        export_maskrcnn(reference_maskrcnn(), maskrcnn_path, frame_hw, GraphOptions(score_thresh=score_thresh),
                        classes=scene_classes(), arch=f"maskrcnn_{MASKRCNN.arch}")
    # HRNet runs at the scale it was trained at (objects the same size in pixels): the frame's
    # short side brought to the training size, the long side to a multiple of 32.
    short = HRNET.frame_hw[0]
    scale = short / min(frame_hw)
    input_hw = (short, max(32, round(frame_hw[1] * scale / 32) * 32)) if frame_hw[0] <= frame_hw[1] else (
        max(32, round(frame_hw[0] * scale / 32) * 32), short)
    with steps.step(f"converting the HRNetV2 ({HRNET.arch}) to {hrnet_path}"):
        export_hrnet(reference_hrnet(), hrnet_path, frame_hw, input_hw=input_hw, classes=scene_classes())
