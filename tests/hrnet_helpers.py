"""Shared by the HRNet tests: models with realistic random weights and the PyTorch reference
pipeline written the way the official HRNet code pre-processes images."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from converters.hrnet.export import build_hrnet
from converters.hrnet.model import HRNetV2

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def calibrated_hrnet(arch: str, num_classes: int, photos: list[np.ndarray], align_corners: bool = False,
                     seed: int = 0) -> HRNetV2:
    """Random weights (PyTorch's default init) with BatchNorm statistics measured on real photos,
    so activations and logits have the spread of a trained network rather than of an untrained one."""
    torch.manual_seed(seed)
    model = build_hrnet(arch, num_classes, align_corners=align_corners)
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
    """HRNet-Semantic-Segmentation's input transform: BGR->RGB, /255, minus mean, over std (float64
    then float32), as a [1, 3, H, W] tensor."""
    x = frame_bgr.astype(np.float64)[:, :, ::-1] / 255.0
    x = (x - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))[None]


def reference_outputs(model: HRNetV2, frame_bgr: np.ndarray, input_hw: tuple[int, int] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(1/4-res logits, frame-res logits, label map) from PyTorch eager."""
    h, w = frame_bgr.shape[:2]
    x = official_preprocess(frame_bgr)
    with torch.no_grad():
        if input_hw and input_hw != (h, w):
            x = F.interpolate(x, size=input_hw, mode="bilinear", align_corners=False)
        logits = model(x)
        up = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=model.align_corners)
    return logits.numpy(), up[0].numpy(), up[0].argmax(0).numpy().astype(np.uint8)
