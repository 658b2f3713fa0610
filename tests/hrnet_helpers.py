"""Shared by the HRNet tests: models with realistic random weights and the PyTorch reference
pipeline written the way the official HRNet code pre-processes images."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from edgeseg.converters.hrnet.export import build_hrnet
from edgeseg.converters.hrnet.model import HRNetV2
from edgeseg.converters.parity import hrnet_preprocess, hrnet_reference


def calibrated_hrnet(arch: str, num_classes: int, photos: list[np.ndarray], align_corners: bool = False
                     ) -> HRNetV2:
    """Random weights (PyTorch's default init, seeded) with BatchNorm statistics measured on real
    photos, so activations and logits have the spread of a trained network rather than of an
    untrained one. The BatchNorm draws continue the seeded stream the weights came from."""
    model = build_hrnet(arch, num_classes, align_corners=align_corners)
    torch.manual_seed(0)
    HRNetV2(model.spec, num_classes, align_corners=align_corners)  # the same draws as build_hrnet's
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batches
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)
    model.train()
    with torch.no_grad():
        for photo in photos:
            model(official_preprocess(cv2.resize(photo, (256, 256))))
    return model.eval()


def official_preprocess(frame_bgr: np.ndarray) -> torch.Tensor:
    """HRNet-Semantic-Segmentation's input transform (edgeseg.converters.parity.hrnet_preprocess)."""
    return hrnet_preprocess(frame_bgr)


def reference_outputs(model: HRNetV2, frame_bgr: np.ndarray, input_hw: tuple[int, int] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(1/4-res logits, frame-res logits, label map) from PyTorch eager."""
    return hrnet_reference(model, frame_bgr, input_hw, model.align_corners)
