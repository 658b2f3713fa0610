"""maskrcnn-benchmark or Detectron config + checkpoint -> the edgeseg Mask R-CNN graph
(``edgeseg convert maskrcnn-benchmark`` / ``edgeseg convert detectron``).

Both take one path: a Detectron config is translated into the maskrcnn-benchmark settings of the
same model and its blobs renamed into maskrcnn-benchmark's parameters (what maskrcnn-benchmark's
own Caffe2 loader does), then the model is rebuilt as a torchvision ``MaskRCNN`` (``model.py``)
and exported with maskrcnn-benchmark's inference conventions (``model.conventions``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torchvision.models.detection import MaskRCNN

from edgeseg.classes import ClassSet
from edgeseg.converters.checkpoint import StateDict
from edgeseg.converters.maskrcnn.export import export_maskrcnn, maskrcnn_classes
from edgeseg.converters.maskrcnn.graph import GraphOptions
from edgeseg.converters.maskrcnn_benchmark import model as mrbmodel
from edgeseg.converters.maskrcnn_benchmark.checkpoint import read_weights
from edgeseg.converters.maskrcnn_benchmark.config import MaskrcnnBenchmarkConfig, read_config
from edgeseg.converters.maskrcnn_benchmark.detectron_config import read_detectron_config, to_benchmark
from edgeseg.errors import ArgumentError
from edgeseg.metadata import ModelMetadata
from edgeseg.progress import Steps


@dataclass(frozen=True)
class Source:
    """What differs between the two families here: the arch label prefix of their files (``edgeseg
    compare`` reads it back), how their YAML becomes maskrcnn-benchmark settings (given the
    checkpoint, which holds what a Detectron YAML cannot say), and the checkpoint kinds they take."""

    arch_prefix: str
    read_config: Callable[[str | os.PathLike[str], StateDict | None], MaskrcnnBenchmarkConfig]
    #: accepted checkpoint suffixes and what to say otherwise; None: any
    weights: tuple[tuple[str, ...], str] | None = None


SOURCES = {
    "maskrcnn-benchmark": Source("mrb", lambda path, sd: read_config(path)),
    "detectron": Source("detectron", lambda path, sd: to_benchmark(read_detectron_config(path), sd),
                        ((".pkl",), "a Detectron checkpoint is a .pkl of Caffe2 blobs")),
}


def arch_name(family: str, cfg: MaskrcnnBenchmarkConfig) -> str:
    body = str(cfg["MODEL.BACKBONE.CONV_BODY"]).split("-")[1]
    groups = int(cfg["MODEL.RESNETS.NUM_GROUPS"])
    x = f"_x{groups}x{int(cfg['MODEL.RESNETS.WIDTH_PER_GROUP'])}d" if groups > 1 else ""
    return f"{SOURCES[family].arch_prefix}_r{body}{x}_fpn"


def read(family: str, config: str | os.PathLike[str] | None, weights: str | os.PathLike[str] | None,
         trust: bool = False) -> tuple[MaskrcnnBenchmarkConfig, MaskRCNN]:
    """(the checked config as maskrcnn-benchmark settings, the torchvision ``MaskRCNN`` with the
    checkpoint's weights; seeded random when *weights* is None)."""
    source = SOURCES.get(family)
    if source is None:
        raise ArgumentError(f"unknown family {family!r}: {', '.join(SOURCES)}")
    if not config:
        raise ArgumentError(f"{family} needs its config: --config C.yaml (the YAML the model was trained with)")
    if source.weights is not None and weights is not None and Path(weights).suffix.lower() not in source.weights[0]:
        raise ArgumentError(f"--weights {Path(weights).name}: {source.weights[1]}")
    sd = read_weights(weights, trust) if weights is not None else None
    cfg = source.read_config(config, sd)
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
