"""detectron2's ``config.yaml`` read without detectron2: the settings a GeneralizedRCNN Mask R-CNN
needs at inference, each checked; anything edgeseg does not reproduce is refused by name.

A config is what ``cfg.dump()`` writes (a training run's ``config.yaml``) or a model-zoo file with
``_BASE_`` files beside it (followed when they exist locally). Values missing from the file take
detectron2's defaults (:data:`DEFAULTS`, detectron2's ``config/defaults.py`` for these keys).
Every key under ``MODEL``, ``INPUT`` and ``TEST`` is either used (:data:`DEFAULTS`), ignored for
a stated reason (training only, or a part of detectron2 this model does not use:
:data:`IGNORED`), or refused as unknown. Other top-level sections (``SOLVER``, ``DATASETS``...)
are training-only and ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.converters.yaml_config import flatten, load_mapping, merge, refuse_unknown, refuse_unsupported
from edgeseg.errors import ArgumentError

#: the inference settings edgeseg reads, with detectron2's defaults
DEFAULTS: dict[str, Any] = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.MASK_ON": False,
    "MODEL.KEYPOINT_ON": False,
    "MODEL.LOAD_PROPOSALS": False,
    "MODEL.PIXEL_MEAN": [103.530, 116.280, 123.675],
    "MODEL.PIXEL_STD": [1.0, 1.0, 1.0],
    "MODEL.BACKBONE.NAME": "build_resnet_backbone",
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.OUT_FEATURES": ["res4"],
    "MODEL.RESNETS.NUM_GROUPS": 1,
    "MODEL.RESNETS.NORM": "FrozenBN",
    "MODEL.RESNETS.WIDTH_PER_GROUP": 64,
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.RESNETS.RES5_DILATION": 1,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 256,
    "MODEL.RESNETS.STEM_OUT_CHANNELS": 64,
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE": [False, False, False, False],
    "MODEL.FPN.IN_FEATURES": [],
    "MODEL.FPN.OUT_CHANNELS": 256,
    "MODEL.FPN.NORM": "",
    "MODEL.FPN.FUSE_TYPE": "sum",
    "MODEL.PROPOSAL_GENERATOR.NAME": "RPN",
    "MODEL.PROPOSAL_GENERATOR.MIN_SIZE": 0,
    "MODEL.ANCHOR_GENERATOR.NAME": "DefaultAnchorGenerator",
    "MODEL.ANCHOR_GENERATOR.SIZES": [[32, 64, 128, 256, 512]],
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [[0.5, 1.0, 2.0]],
    "MODEL.ANCHOR_GENERATOR.OFFSET": 0.0,
    "MODEL.RPN.HEAD_NAME": "StandardRPNHead",
    "MODEL.RPN.IN_FEATURES": ["res4"],
    "MODEL.RPN.BBOX_REG_WEIGHTS": [1.0, 1.0, 1.0, 1.0],
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 6000,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 1000,
    "MODEL.RPN.NMS_THRESH": 0.7,
    "MODEL.RPN.CONV_DIMS": [-1],
    "MODEL.ROI_HEADS.NAME": "Res5ROIHeads",
    "MODEL.ROI_HEADS.NUM_CLASSES": 80,
    "MODEL.ROI_HEADS.IN_FEATURES": ["res4"],
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.05,
    "MODEL.ROI_HEADS.NMS_THRESH_TEST": 0.5,
    "MODEL.ROI_BOX_HEAD.NAME": "",
    "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS": [10.0, 10.0, 5.0, 5.0],
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": 0,
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": "ROIAlignV2",
    "MODEL.ROI_BOX_HEAD.NUM_FC": 0,
    "MODEL.ROI_BOX_HEAD.FC_DIM": 1024,
    "MODEL.ROI_BOX_HEAD.NUM_CONV": 0,
    "MODEL.ROI_BOX_HEAD.CONV_DIM": 256,
    "MODEL.ROI_BOX_HEAD.NORM": "",
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": False,
    "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE": False,
    "MODEL.ROI_BOX_HEAD.USE_FED_LOSS": False,
    "MODEL.ROI_MASK_HEAD.NAME": "MaskRCNNConvUpsampleHead",
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO": 0,
    "MODEL.ROI_MASK_HEAD.POOLER_TYPE": "ROIAlignV2",
    "MODEL.ROI_MASK_HEAD.NUM_CONV": 0,
    "MODEL.ROI_MASK_HEAD.CONV_DIM": 256,
    "MODEL.ROI_MASK_HEAD.NORM": "",
    "MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK": False,
    "INPUT.MIN_SIZE_TEST": 800,
    "INPUT.MAX_SIZE_TEST": 1333,
    "INPUT.FORMAT": "BGR",
    "TEST.DETECTIONS_PER_IMAGE": 100,
    "TEST.AUG.ENABLED": False,
}

#: keys (or sections, ending in ".") that do not change inference here, and why
IGNORED: dict[str, str] = {
    "MODEL.DEVICE": "edgeseg picks the device at run time",
    "MODEL.WEIGHTS": "the checkpoint is --weights",
    "MODEL.BACKBONE.FREEZE_AT": "training only",
    "MODEL.RESNETS.DEFORM_MODULATED": "deformable convolutions are off (DEFORM_ON_PER_STAGE)",
    "MODEL.RESNETS.DEFORM_NUM_GROUPS": "deformable convolutions are off (DEFORM_ON_PER_STAGE)",
    "MODEL.ANCHOR_GENERATOR.ANGLES": "rotated anchors only",
    **{f"MODEL.RPN.{k}": "training only" for k in (
        "BATCH_SIZE_PER_IMAGE", "BBOX_REG_LOSS_TYPE", "BBOX_REG_LOSS_WEIGHT", "BOUNDARY_THRESH", "IOU_LABELS",
        "IOU_THRESHOLDS", "LOSS_WEIGHT", "POSITIVE_FRACTION", "POST_NMS_TOPK_TRAIN", "PRE_NMS_TOPK_TRAIN",
        "SMOOTH_L1_BETA")},
    **{f"MODEL.ROI_HEADS.{k}": "training only" for k in (
        "BATCH_SIZE_PER_IMAGE", "IOU_LABELS", "IOU_THRESHOLDS", "POSITIVE_FRACTION", "PROPOSAL_APPEND_GT")},
    **{f"MODEL.ROI_BOX_HEAD.{k}": "training only" for k in (
        "BBOX_REG_LOSS_TYPE", "BBOX_REG_LOSS_WEIGHT", "FED_LOSS_FREQ_WEIGHT_POWER", "FED_LOSS_NUM_CLASSES",
        "SMOOTH_L1_BETA", "TRAIN_ON_PRED_BOXES")},
    "MODEL.RETINANET.": "RetinaNet only (META_ARCHITECTURE is GeneralizedRCNN)",
    "MODEL.SEM_SEG_HEAD.": "panoptic/semantic models only",
    "MODEL.PANOPTIC_FPN.": "panoptic models only",
    "MODEL.ROI_KEYPOINT_HEAD.": "keypoint models only (KEYPOINT_ON is false)",
    "MODEL.ROI_BOX_CASCADE_HEAD.": "cascade models only (ROI_HEADS.NAME is StandardROIHeads)",
    "INPUT.MIN_SIZE_TRAIN": "training only",
    "INPUT.MIN_SIZE_TRAIN_SAMPLING": "training only",
    "INPUT.MAX_SIZE_TRAIN": "training only",
    "INPUT.MASK_FORMAT": "training only",
    "INPUT.RANDOM_FLIP": "training only",
    "INPUT.CROP.": "training only",
    "TEST.AUG.": "test-time augmentation is off (TEST.AUG.ENABLED)",
    "TEST.EVAL_PERIOD": "training only",
    "TEST.EXPECTED_RESULTS": "detectron2's own regression tests",
    "TEST.KEYPOINT_OKS_SIGMAS": "keypoint evaluation only",
    "TEST.PRECISE_BN.": "training only",
}

#: top-level sections read; the others (SOLVER, DATASETS, DATALOADER, OUTPUT_DIR, ...) are training-only
SECTIONS = ("MODEL", "INPUT", "TEST")

# (key, allowed values, what to say)
_SUPPORTED: tuple[tuple[str, tuple[Any, ...], str], ...] = (
    ("MODEL.META_ARCHITECTURE", ("GeneralizedRCNN",), "edgeseg converts GeneralizedRCNN (Mask R-CNN) models"),
    ("MODEL.MASK_ON", (True,), "a Mask R-CNN has MASK_ON: True"),
    ("MODEL.KEYPOINT_ON", (False,), "keypoint heads are not supported"),
    ("MODEL.LOAD_PROPOSALS", (False,), "precomputed proposals are not supported"),
    ("MODEL.BACKBONE.NAME", ("build_resnet_fpn_backbone",), "ResNet-FPN backbones only"),
    ("MODEL.RESNETS.NORM", ("FrozenBN", "BN"), "FrozenBN or BN (folded at inference); GN/SyncBN are not supported"),
    ("MODEL.RESNETS.RES5_DILATION", (1,), "dilated res5 is not supported"),
    ("MODEL.RESNETS.OUT_FEATURES", (["res2", "res3", "res4", "res5"],), "the FPN reads res2..res5"),
    ("MODEL.FPN.IN_FEATURES", (["res2", "res3", "res4", "res5"],), "the FPN reads res2..res5"),
    ("MODEL.FPN.NORM", ("",), "FPN without normalisation only"),
    ("MODEL.FPN.FUSE_TYPE", ("sum",), "the sum fusion only"),
    ("MODEL.PROPOSAL_GENERATOR.NAME", ("RPN",), "the RPN proposal generator only"),
    ("MODEL.ANCHOR_GENERATOR.NAME", ("DefaultAnchorGenerator",), "DefaultAnchorGenerator only"),
    ("MODEL.RPN.HEAD_NAME", ("StandardRPNHead",), "StandardRPNHead only"),
    ("MODEL.RPN.IN_FEATURES", (["p2", "p3", "p4", "p5", "p6"],), "the RPN reads p2..p6"),
    ("MODEL.RPN.CONV_DIMS", ([-1],), "one RPN conv as wide as its input"),
    ("MODEL.ROI_HEADS.NAME", ("StandardROIHeads",), "StandardROIHeads only"),
    ("MODEL.ROI_HEADS.IN_FEATURES", (["p2", "p3", "p4", "p5"],), "the RoI heads read p2..p5"),
    ("MODEL.ROI_BOX_HEAD.NAME", ("FastRCNNConvFCHead",), "FastRCNNConvFCHead only"),
    ("MODEL.ROI_BOX_HEAD.POOLER_TYPE", ("ROIAlignV2", "ROIAlign"), "RoIAlign poolers only"),
    ("MODEL.ROI_BOX_HEAD.NORM", ("",), "box heads without normalisation only"),
    ("MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE", (False,), "softmax classification only"),
    ("MODEL.ROI_BOX_HEAD.USE_FED_LOSS", (False,), "softmax classification only"),
    ("MODEL.ROI_MASK_HEAD.NAME", ("MaskRCNNConvUpsampleHead",), "MaskRCNNConvUpsampleHead only"),
    ("MODEL.ROI_MASK_HEAD.POOLER_TYPE", ("ROIAlignV2", "ROIAlign"), "RoIAlign poolers only"),
    ("MODEL.ROI_MASK_HEAD.NORM", ("",), "mask heads without normalisation only"),
    ("INPUT.FORMAT", ("BGR", "RGB"), "BGR or RGB input"),
    ("TEST.AUG.ENABLED", (False,), "test-time augmentation is not supported"),
)


@dataclass(frozen=True)
class Detectron2Config:
    """The inference settings of one config, flattened (``MODEL.RPN.NMS_THRESH`` -> value)."""

    values: Mapping[str, Any]
    source: str

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def num_classes(self) -> int:
        return int(self.values["MODEL.ROI_HEADS.NUM_CLASSES"])


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The YAML of *path* with its ``_BASE_`` chain merged in (the file's own values win)."""
    if path in seen:
        raise ArgumentError(f"{path}: _BASE_ files include each other: {' -> '.join(map(str, (*seen, path)))}")
    data = load_mapping(path, "detectron2", "MODEL: ..., INPUT: ...")
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    base_path = (path.parent / str(base)) if not os.path.isabs(str(base)) else Path(str(base))
    if not base_path.is_file():
        raise ArgumentError(f"{path}: its _BASE_ {base} is not here ({base_path}); put the base config beside it, or "
                            "use the config.yaml a training run writes (cfg.dump(), no _BASE_)")
    return _merge(_read(base_path, (*seen, path)), data)


_merge = merge


def read_config(path: str | os.PathLike[str]) -> Detectron2Config:
    """The checked inference settings of a detectron2 config file; :class:`ArgumentError` naming
    the first setting edgeseg does not know or cannot reproduce."""
    source = Path(path)
    flat = {k: v for k, v in flatten(_read(source)).items() if k.split(".")[0] in SECTIONS}
    refuse_unknown(flat, DEFAULTS, IGNORED, source.name, "detectron2")
    values = {**DEFAULTS, **{k: v for k, v in flat.items() if k in DEFAULTS}}
    refuse_unsupported(values, _SUPPORTED, source.name)
    if any(values["MODEL.RESNETS.DEFORM_ON_PER_STAGE"]):
        raise ArgumentError(f"{source.name}: MODEL.RESNETS.DEFORM_ON_PER_STAGE: deformable convolutions are not "
                            "supported")
    sizes = values["MODEL.ANCHOR_GENERATOR.SIZES"]
    if len(sizes) != 5 or any(len(s) != 1 for s in sizes):
        raise ArgumentError(f"{source.name}: MODEL.ANCHOR_GENERATOR.SIZES = {sizes!r} is not supported: one size "
                            "per level, five levels (p2..p6)")
    if len(values["MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS"]) != 1:
        raise ArgumentError(f"{source.name}: MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS: one list for all levels only")
    for key in ("MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO"):
        if int(values[key]) < 0:
            raise ArgumentError(f"{source.name}: {key} = {values[key]} must be >= 0")
    if isinstance(values["INPUT.MIN_SIZE_TEST"], list):
        raise ArgumentError(f"{source.name}: INPUT.MIN_SIZE_TEST must be one size (test-time augmentation is not "
                            "supported)")
    if int(values["INPUT.MIN_SIZE_TEST"]) <= 0:
        raise ArgumentError(f"{source.name}: INPUT.MIN_SIZE_TEST = 0 (no resize) is not supported")
    return Detectron2Config(values, source.name)
