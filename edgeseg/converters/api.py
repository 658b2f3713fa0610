"""One entry point for converting: :func:`export` (``edgeseg convert`` is a thin layer over it).

    from edgeseg.converters.api import export
    export("hrnet", "hrnet.onnx", arch="w18_small_v2", weights="hrnet.pth", classes="cityscapes",
           frame_hw=(512, 1024))
    export("maskrcnn", "maskrcnn.engine", arch="resnet50_fpn", weights="maskrcnn.pth", classes="coco",
           frame_hw=(720, 1280), format="engine", score_thresh=0.3)   # ONNX beside it, then TensorRT

Every check the command line makes (weights or random weights, frame sizes, thresholds, counts,
TensorRT's TopK / NMS limits, class lists) happens here or below, so Python callers get the same
typed errors (:class:`edgeseg.ArgumentError` and friends) and messages.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.atomic import check_writable
from edgeseg.classes import DATASET_CLASSES, ClassSet, resolve_classes
from edgeseg.converters.hrnet import export as hrnet
from edgeseg.converters.maskrcnn import export as maskrcnn
from edgeseg.converters.maskrcnn.archs import COCO_CATEGORIES, arch_key
from edgeseg.converters.maskrcnn.graph import GraphOptions
from edgeseg.converters.matterport import export as matterport
from edgeseg.errors import ArgumentError
from edgeseg.metadata import ModelMetadata
from edgeseg.precision.convert import Calibration, apply_precision, check_precision
from edgeseg.precision.rules import PrecisionRules
from edgeseg.progress import Steps

FORMATS = ("onnx", "engine")


@dataclass(frozen=True)
class Family:
    """What differs between the model families; :func:`export` is the same for all."""

    name: str
    #: normalised arch name (UnknownArchError for an unknown one)
    arch: Callable[[str], str]
    #: (arch, num_classes or None, weights or None, allow_pickle, options) -> model in eval mode
    build: Callable[[str, int | None, Path | None, bool, dict[str, Any]], Any]
    #: (--classes value, whether there are weights) -> the class count it implies, or None
    count_from_classes: Callable[[str, bool], int | None]
    #: (--classes value or None, the model's class count) -> names and palette
    classes: Callable[[str | None, int], ClassSet]
    num_classes: Callable[[Any], int]
    #: (model, output, frame_hw, classes, arch label, steps, options) -> the file's metadata
    write: Callable[[Any, Path, tuple[int, int], ClassSet, str, Steps, dict[str, Any]], ModelMetadata]
    #: options this family takes, beyond the common ones
    options: tuple[str, ...]
    #: which layers an fp16 / int8 file computes in reduced precision
    precision_rules: PrecisionRules
    #: refuses bad option values (typed errors) before any long work
    check_options: Callable[[dict[str, Any]], object] = lambda options: None
    #: the rules of one built model, where they differ by model (HRNet with or without OCR)
    rules_for: Callable[[Any], PrecisionRules] | None = None
    #: the --classes value the options imply when none is given (a config's data set)
    default_classes: Callable[[dict[str, Any]], str | None] = lambda options: None


def _hrnet_arch(name: str) -> str:
    return hrnet.get_arch(name).name if name else ""  # "": the architecture is the config's


def _hrnet_config(options: dict[str, Any]) -> Any:
    """The official experiment config of ``options["config"]`` (None without one), checked
    against the flags it replaces."""
    if not options.get("config"):
        return None
    from edgeseg.converters.hrnet.config import read_hrnet_config

    if options.get("align_corners"):
        raise ArgumentError("--align-corners and --config exclude each other: the config's MODEL.ALIGN_CORNERS "
                            "decides")
    return read_hrnet_config(options["config"])


def _hrnet_build(arch: str, n: int | None, weights: Path | None, pickle: bool, options: dict[str, Any]) -> Any:
    cfg = _hrnet_config(options)
    if cfg is None:
        if not arch:
            raise ArgumentError("hrnet needs --arch NAME (w18_small_v2, ...) or --config experiment.yaml (the "
                                "official experiment file the checkpoint was trained with)")
        return hrnet.build_hrnet(arch, n, weights, bool(options.get("align_corners")), pickle)
    if arch:
        raise ArgumentError("--arch and --config exclude each other: the config's MODEL.EXTRA stages are the arch")
    return hrnet.build_hrnet_from_config(cfg, weights, n, pickle)


def _hrnet_classes(options: dict[str, Any]) -> str | None:
    """A config's DATASET.DATASET as a class set, where edgeseg has it with the config's class count."""
    cfg = _hrnet_config(options)
    name = DATASET_CLASSES.get(cfg.dataset.lower()) if cfg is not None else None
    return name if name is not None and len(resolve_classes(name, None).names) == cfg.num_classes else None


HRNET = Family(
    name="hrnet",
    arch=_hrnet_arch,
    build=_hrnet_build,
    count_from_classes=lambda spec, weighted: len(resolve_classes(spec, None).names),
    classes=lambda spec, n: resolve_classes(spec, n),
    num_classes=lambda model: int(model.num_classes),
    write=lambda model, out, hw, classes, arch, steps, o: hrnet.export_hrnet(model, out, hw, o.get("input_hw"),
                                                                             classes, steps=steps),
    options=("input_hw", "align_corners", "config"),
    precision_rules=hrnet.PRECISION_RULES,
    rules_for=hrnet.precision_rules,
    check_options=_hrnet_config,
    default_classes=_hrnet_classes,
)

MASKRCNN = Family(
    name="maskrcnn",
    arch=lambda name: f"maskrcnn_{arch_key(name)}",
    build=lambda arch, n, weights, pickle, o: maskrcnn.build_maskrcnn(arch, n, weights, pickle),
    # a class file's count is ambiguous (with or without the background): weights or --num-classes
    count_from_classes=lambda spec, weighted: len(COCO_CATEGORIES) if spec.lower() == "coco" and not weighted else None,
    classes=maskrcnn.maskrcnn_classes,
    num_classes=lambda model: int(model.roi_heads.box_predictor.cls_score.out_features),
    write=lambda model, out, hw, classes, arch, steps, o: maskrcnn.export_maskrcnn(
        model, out, hw, GraphOptions(**o), classes, arch=arch, steps=steps),
    options=("score_thresh", "detections", "max_candidates", "paste", "mask_threshold"),
    precision_rules=maskrcnn.PRECISION_RULES,
    check_options=lambda o: GraphOptions(**o),
)

def _d2_config(options: dict[str, Any]) -> Any:
    from edgeseg.converters.detectron2.config import read_config

    if not options.get("config"):
        raise ArgumentError("detectron2 needs its config: --config config.yaml (the training run's, or a model-zoo "
                            "file with its _BASE_ files beside it)")
    return read_config(options["config"])


def _d2_options(options: dict[str, Any]) -> Any:
    from edgeseg.converters.detectron2.export import graph_options

    return graph_options(_d2_config(options), options.get("score_thresh"), options.get("detections"),
                         options.get("max_candidates") or 3000, options.get("mask_threshold", 0.5))


def _d2_build(arch: str, n: int | None, weights: Path | None, pickle: bool, options: dict[str, Any]) -> Any:
    from edgeseg.converters.detectron2 import model as d2model
    from edgeseg.converters.detectron2.checkpoint import read_detectron2_weights

    cfg = _d2_config(options)
    if n is not None and n != cfg.num_classes:
        raise ArgumentError(f"--num-classes {n}: the config has {cfg.num_classes} (MODEL.ROI_HEADS.NUM_CLASSES)")
    return d2model.load(cfg, read_detectron2_weights(weights, pickle) if weights is not None else None)


def _d2_write(model: Any, out: Path, hw: tuple[int, int], classes: ClassSet, arch: str, steps: Steps,
              options: dict[str, Any]) -> ModelMetadata:
    from edgeseg.converters.detectron2.export import export_detectron2

    return export_detectron2(_d2_config(options), model, out, hw, _d2_options(options), classes, steps)


def _d2_classes(spec: str | None, n: int) -> ClassSet:
    from edgeseg.converters.detectron2.export import detectron2_classes

    return detectron2_classes(spec, n)


DETECTRON2 = Family(
    name="detectron2",
    arch=lambda name: "detectron2",  # the architecture is the config's
    build=_d2_build,
    count_from_classes=lambda spec, weighted: None,
    classes=_d2_classes,
    num_classes=lambda model: int(model.roi_heads.box_predictor.cls_score.out_features) - 1,  # K, no background
    write=_d2_write,
    options=("config", "score_thresh", "detections", "max_candidates", "mask_threshold"),
    precision_rules=maskrcnn.PRECISION_RULES,  # rebuilt as a torchvision MaskRCNN: the same node names
    check_options=_d2_options,
)

def _mrb_config(family: str, options: dict[str, Any]) -> Any:
    """The config as maskrcnn-benchmark settings (a Detectron one translated; its widths, which
    only the checkpoint knows, are not needed here)."""
    from edgeseg.converters.maskrcnn_benchmark.export import read

    return read(family, options.get("config"), None)[0]


def _mrb_options(family: str, options: dict[str, Any]) -> Any:
    from edgeseg.converters.maskrcnn_benchmark.export import graph_options

    return graph_options(_mrb_config(family, options), options.get("score_thresh"), options.get("detections"),
                         options.get("max_candidates") or 3000, options.get("mask_threshold"))


def _mrb_family(name: str) -> Family:
    """maskrcnn-benchmark (``.pth``) or Detectron (``.pkl``): one path, two config readers."""

    def build(arch: str, n: int | None, weights: Path | None, pickle: bool, options: dict[str, Any]) -> Any:
        from edgeseg.converters.maskrcnn_benchmark.export import read

        cfg, model = read(name, options.get("config"), weights, pickle)
        if n is not None and n != cfg.num_classes:
            raise ArgumentError(f"--num-classes {n}: the config has {cfg.num_classes} (background included)")
        return model

    def write(model: Any, out: Path, hw: tuple[int, int], classes: ClassSet, arch: str, steps: Steps,
              options: dict[str, Any]) -> ModelMetadata:
        from edgeseg.converters.maskrcnn_benchmark.export import export as export_mrb

        return export_mrb(name, _mrb_config(name, options), model, out, hw, _mrb_options(name, options), classes,
                          steps)

    def classes(spec: str | None, n: int) -> ClassSet:
        from edgeseg.converters.maskrcnn_benchmark.export import classes as mrb_classes

        return mrb_classes(spec, n)

    return Family(
        name=name,
        arch=lambda arch: name,  # the architecture is the config's
        build=build,
        count_from_classes=lambda spec, weighted: None,
        classes=classes,
        num_classes=lambda model: int(model.roi_heads.box_predictor.cls_score.out_features),  # background included
        write=write,
        options=("config", "score_thresh", "detections", "max_candidates", "mask_threshold"),
        precision_rules=maskrcnn.PRECISION_RULES,  # rebuilt as a torchvision MaskRCNN: the same node names
        check_options=lambda o: _mrb_options(name, o),
    )


MASKRCNN_BENCHMARK = _mrb_family("maskrcnn-benchmark")
DETECTRON = _mrb_family("detectron")


def _mp_build(arch: str, n: int | None, weights: Path | None, pickle: bool, options: dict[str, Any]) -> Any:
    model = matterport.read(options.get("config"), weights, options.get("score_thresh"), options.get("detections"))
    if n is not None and n != model.net.num_classes:
        raise ArgumentError(f"--num-classes {n}: the Config has NUM_CLASSES = {model.net.num_classes} (background "
                            "included)")
    return model


MATTERPORT = Family(
    name="matterport",
    arch=lambda name: "matterport",  # the architecture is the Config's BACKBONE
    build=_mp_build,
    count_from_classes=lambda spec, weighted: None,  # the Config's NUM_CLASSES decides
    classes=matterport.classes,
    num_classes=lambda model: int(model.net.num_classes),  # background included
    write=lambda model, out, hw, classes, arch, steps, o: matterport.export(model, out, hw, classes, steps),
    options=("config", "score_thresh", "detections"),
    precision_rules=matterport.PRECISION_RULES,
    check_options=matterport.family_options,
)

FAMILIES = {f.name: f for f in (HRNET, MASKRCNN, DETECTRON2, MASKRCNN_BENCHMARK, DETECTRON, MATTERPORT)}


def check_weights(weights: str | os.PathLike[str] | None, random_weights: bool) -> None:
    """Exactly one of a checkpoint and ``random_weights``; :class:`ArgumentError` otherwise."""
    if weights is None and not random_weights:
        raise ArgumentError("give --weights PATH, or --random-weights to export an untrained model (for testing)")
    if weights is not None and random_weights:
        raise ArgumentError("--weights and --random-weights exclude each other")


def export(
    family: str,
    output: str | os.PathLike[str],
    *,
    frame_hw: tuple[int, int],
    arch: str = "",
    weights: str | os.PathLike[str] | None = None,
    random_weights: bool = False,
    num_classes: int | None = None,
    classes: str | None = None,
    format: str = "onnx",
    allow_pickle: bool = False,
    quiet: bool = True,
    build_options: Any = None,
    precision: str = "fp32",
    calibration: Calibration | None = None,
    **options: Any,
) -> ModelMetadata:
    """Convert a checkpoint of *family* (``hrnet``, ``maskrcnn``, ``detectron2``,
    ``maskrcnn-benchmark``, ``detectron`` or ``matterport``) to *output*;
    return the model's metadata.

    *frame_hw*: (height, width) in pixels of the uint8 BGR camera frames the graph takes.
    *weights*: the checkpoint, or None with ``random_weights=True`` (seeded, for tests).
    *num_classes*: background included for Mask R-CNN; default from the checkpoint or *classes*.
    *classes*: ``cityscapes`` / ``coco`` / a .txt or .json file of names.
    *format*: ``onnx``, or ``engine`` (needs TensorRT and a GPU: the ONNX file is written beside
    *output* with the suffix .onnx, then built for this GPU with *build_options*, an
    ``edgeseg.trt.build.BuildOptions``).
    *precision*: ``fp32``, ``fp16`` (mixed: FP16 network layers, FP32 elsewhere) or ``int8``
    (Q/DQ, calibrated on ``calibration.images``); see :mod:`edgeseg.precision`.
    *options*: the family's own (hrnet: ``input_hw``, ``align_corners``, or ``config``: the official
    experiment .yaml, which gives the architecture (plain or OCR), classes and ``align_corners``, with
    *arch* empty; maskrcnn:
    ``score_thresh``, ``detections``, ``max_candidates``, ``paste``, ``mask_threshold``;
    detectron2, maskrcnn-benchmark and detectron: ``config`` (the YAML; *arch* unused),
    ``score_thresh``, ``detections``, ``max_candidates``, ``mask_threshold``, defaults from the
    config; matterport: ``config`` (``train.py[:ConfigClass]``, read without running it, or a
    .json/.yaml of its attributes; *weights* the ``.h5``), ``score_thresh``
    (DETECTION_MIN_CONFIDENCE, kept when ``>=``) and ``detections`` (DETECTION_MAX_INSTANCES),
    defaults from the Config).
    """
    spec = FAMILIES.get(family)
    if spec is None:
        raise ArgumentError(f"unknown model family {family!r}; choose one of: {', '.join(FAMILIES)}")
    if format not in FORMATS:
        raise ArgumentError(f"format {format!r}: choose one of {', '.join(FORMATS)}")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ArgumentError(f"{family} takes no option(s) {unknown}; its options: {', '.join(spec.options)}")
    check_weights(weights, random_weights)
    out = check_writable(output)
    onnx_path = out.with_suffix(".onnx") if format == "engine" else out
    if format == "engine":
        check_writable(onnx_path)
    label = spec.arch(arch)
    spec.check_options(options)
    check_precision(precision, calibration)
    steps = Steps(4 + {"fp32": 0, "fp16": 1, "int8": 2}[precision], quiet=quiet)
    if classes is None:
        classes = spec.default_classes(options)
    source = Path(weights) if weights is not None else None
    with steps.step(f"reading weights {source.name}" if source else "building random weights"):
        if num_classes is None and classes is not None:
            num_classes = spec.count_from_classes(classes, source is not None)
        model = spec.build(arch, num_classes, source, allow_pickle, options)
    class_set = spec.classes(classes, spec.num_classes(model))
    if precision == "fp32":
        meta = spec.write(model, onnx_path, frame_hw, class_set, label, steps, options)
    else:
        # The FP32 graph first (beside the output, removed after), then its precision.
        with tempfile.TemporaryDirectory(prefix=".edgeseg-fp32-", dir=onnx_path.parent) as tmp:
            fp32 = Path(tmp) / onnx_path.name
            spec.write(model, fp32, frame_hw, class_set, label, steps, options)
            rules = spec.rules_for(model) if spec.rules_for else spec.precision_rules
            meta = apply_precision(fp32, onnx_path, precision, rules, calibration, steps=steps,
                                   quiet=quiet)
    if format == "engine":
        from edgeseg.trt.gpu_imports import import_tensorrt

        import_tensorrt()
        from edgeseg.trt.build import build_engine

        build_engine(onnx_path, out, build_options, quiet=quiet)
    return meta
