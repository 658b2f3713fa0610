"""detectron2 config + checkpoint -> the edgeseg Mask R-CNN graph (``edgeseg convert detectron2``)."""

from __future__ import annotations

import os
from pathlib import Path

from edgeseg.classes import ClassSet, generated_palette, read_class_file
from edgeseg.converters.detectron2 import model as d2model
from edgeseg.converters.detectron2.checkpoint import read_detectron2_weights
from edgeseg.converters.detectron2.config import Detectron2Config, read_config
from edgeseg.converters.maskrcnn.export import export_maskrcnn
from edgeseg.converters.maskrcnn.graph import GraphOptions
from edgeseg.errors import ArgumentError
from edgeseg.metadata import ModelMetadata
from edgeseg.progress import Steps


def arch_name(cfg: Detectron2Config) -> str:
    groups = int(cfg["MODEL.RESNETS.NUM_GROUPS"])
    x = f"_x{groups}x{int(cfg['MODEL.RESNETS.WIDTH_PER_GROUP'])}d" if groups > 1 else ""
    return f"detectron2_r{int(cfg['MODEL.RESNETS.DEPTH'])}{x}_fpn"


def build_detectron2(config: str | os.PathLike[str], weights: str | os.PathLike[str] | None,
                     allow_pickle: bool = False) -> tuple[Detectron2Config, object]:
    """(the checked config, the torchvision ``MaskRCNN`` with detectron2's weights; random when
    *weights* is None)."""
    cfg = read_config(config)
    sd = read_detectron2_weights(weights, allow_pickle) if weights is not None else None
    return cfg, d2model.load(cfg, sd)


def detectron2_classes(spec: str | None, num_classes: int) -> ClassSet:
    """Label 0 is the background; detectron2 class k is label k + 1, named by *spec* (a file of
    the K names, or K + 1 with the background first) or ``class_k``."""
    if spec is None:
        names: tuple[str, ...] = ("__background__", *(f"class_{i}" for i in range(num_classes)))
    else:
        listed = read_class_file(Path(spec))
        names = ("__background__", *listed) if len(listed) == num_classes else listed
        if len(names) != num_classes + 1:
            raise ArgumentError(f"--classes {spec} lists {len(listed)} names but the config has {num_classes} classes "
                                "(MODEL.ROI_HEADS.NUM_CLASSES); make them agree")
    return ClassSet(names, generated_palette(num_classes + 1))


def graph_options(cfg: Detectron2Config, score_thresh: float | None = None, detections: int | None = None,
                  max_candidates: int = 3000, mask_threshold: float = 0.5) -> GraphOptions:
    """detectron2's settings (or the overrides), its continuous paste."""
    return GraphOptions(score_thresh=float(cfg["MODEL.ROI_HEADS.SCORE_THRESH_TEST"]) if score_thresh is None
                        else score_thresh,
                        detections=int(cfg["TEST.DETECTIONS_PER_IMAGE"]) if detections is None else detections,
                        max_candidates=max_candidates, paste="continuous", mask_threshold=mask_threshold)


def export_detectron2(cfg: Detectron2Config, model: object, output: str | os.PathLike[str], frame_hw: tuple[int, int],
                      options: GraphOptions, classes: ClassSet, steps: Steps | None = None) -> ModelMetadata:
    """Write the frame -> detections graph of a detectron2 model (see ``model.py`` and the
    graph's ``Conventions`` for how detectron2's inference is reproduced)."""
    from torchvision.models.detection import MaskRCNN

    assert isinstance(model, MaskRCNN)
    return export_maskrcnn(model, output, frame_hw, options, classes, arch=arch_name(cfg), steps=steps,
                           conventions=d2model.conventions(cfg))
