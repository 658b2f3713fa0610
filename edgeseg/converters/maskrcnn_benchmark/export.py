"""maskrcnn-benchmark or Detectron config + checkpoint -> the edgeseg Mask R-CNN graph
(``edgeseg convert maskrcnn-benchmark`` / ``edgeseg convert detectron``).

Both take one path: a Detectron config is translated into the maskrcnn-benchmark settings of the
same model and its blobs renamed into maskrcnn-benchmark's parameters (what maskrcnn-benchmark's
own Caffe2 loader does), then the model is rebuilt as a torchvision ``MaskRCNN`` (``model.py``)
and exported with maskrcnn-benchmark's inference conventions (``model.conventions``).
"""

from __future__ import annotations

import os
from pathlib import Path

from torchvision.models.detection import MaskRCNN

from edgeseg.classes import ClassSet
from edgeseg.converters.maskrcnn.export import export_maskrcnn, maskrcnn_classes
from edgeseg.converters.maskrcnn.graph import GraphOptions
from edgeseg.converters.maskrcnn_benchmark import model as mrbmodel
from edgeseg.converters.maskrcnn_benchmark.checkpoint import read_weights
from edgeseg.converters.maskrcnn_benchmark.config import MaskrcnnBenchmarkConfig, read_config
from edgeseg.converters.maskrcnn_benchmark.detectron_config import read_detectron_config, to_benchmark
from edgeseg.errors import ArgumentError
from edgeseg.metadata import ModelMetadata
from edgeseg.progress import Steps

#: family name -> the arch label prefix its files carry (``edgeseg compare`` reads it back)
ARCH_PREFIX = {"maskrcnn-benchmark": "mrb", "detectron": "detectron"}


def arch_name(family: str, cfg: MaskrcnnBenchmarkConfig) -> str:
    body = str(cfg["MODEL.BACKBONE.CONV_BODY"]).split("-")[1]
    groups = int(cfg["MODEL.RESNETS.NUM_GROUPS"])
    x = f"_x{groups}x{int(cfg['MODEL.RESNETS.WIDTH_PER_GROUP'])}d" if groups > 1 else ""
    return f"{ARCH_PREFIX[family]}_r{body}{x}_fpn"


def read(family: str, config: str | os.PathLike[str] | None, weights: str | os.PathLike[str] | None,
         trust: bool = False) -> tuple[MaskrcnnBenchmarkConfig, MaskRCNN]:
    """(the checked config as maskrcnn-benchmark settings, the torchvision ``MaskRCNN`` with the
    checkpoint's weights; seeded random when *weights* is None)."""
    if family not in ARCH_PREFIX:
        raise ArgumentError(f"unknown family {family!r}: {', '.join(ARCH_PREFIX)}")
    if not config:
        raise ArgumentError(f"{family} needs its config: --config C.yaml (the YAML the model was trained with)")
    sd = read_weights(weights, trust) if weights is not None else None
    if family == "detectron":
        if weights is not None and Path(weights).suffix.lower() != ".pkl":
            raise ArgumentError(f"--weights {Path(weights).name}: a Detectron checkpoint is a .pkl of Caffe2 blobs")
        cfg = to_benchmark(read_detectron_config(config), sd)
    else:
        cfg = read_config(config)
    return cfg, mrbmodel.load(cfg, sd)


def graph_options(cfg: MaskrcnnBenchmarkConfig, score_thresh: float | None = None, detections: int | None = None,
                  max_candidates: int = 3000, mask_threshold: float | None = None) -> GraphOptions:
    """The config's settings (or the overrides) and maskrcnn-benchmark's paste (torchvision's
    integer-box paste, strict ``>``)."""
    return GraphOptions(score_thresh=float(cfg["MODEL.ROI_HEADS.SCORE_THRESH"]) if score_thresh is None
                        else score_thresh,
                        detections=int(cfg["MODEL.ROI_HEADS.DETECTIONS_PER_IMG"]) if detections is None else detections,
                        max_candidates=max_candidates, paste="torchvision",
                        mask_threshold=cfg.mask_threshold if mask_threshold is None else mask_threshold)


def classes(spec: str | None, num_classes: int) -> ClassSet:
    """Label 0 is the background; class k is label k (as in maskrcnn-benchmark and Detectron)."""
    return maskrcnn_classes(spec, num_classes)


def export(family: str, cfg: MaskrcnnBenchmarkConfig, model: object, output: str | os.PathLike[str],
           frame_hw: tuple[int, int], options: GraphOptions, class_set: ClassSet,
           steps: Steps | None = None) -> ModelMetadata:
    """Write the frame -> detections graph (see ``model.conventions`` for how the inference is
    reproduced)."""
    assert isinstance(model, MaskRCNN)
    return export_maskrcnn(model, output, frame_hw, options, class_set, arch=arch_name(family, cfg), steps=steps,
                           conventions=mrbmodel.conventions(cfg))
