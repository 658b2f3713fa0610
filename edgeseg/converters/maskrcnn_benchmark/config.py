"""maskrcnn-benchmark's YAML config read without maskrcnn-benchmark: its yacs merge over its
defaults (``maskrcnn_benchmark/config/defaults.py`` at commit 57eec25), each inference key
checked; anything edgeseg does not reproduce is refused by name.

As yacs does (``CfgNode._decode_cfg_value``), a string value that reads as a Python literal
(``"(4, 8, 16, 32, 64)"``) becomes that literal, through :func:`ast.literal_eval` (literals only:
nothing runs). Every key under ``MODEL``, ``INPUT``, ``TEST`` and ``DATALOADER`` is used
(:data:`DEFAULTS`), ignored for a stated reason (:data:`IGNORED`) or refused as unknown; the
other sections (``SOLVER``, ``DATASETS``, ``OUTPUT_DIR``, ...) are training-only.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.converters.yaml_config import flatten, load_mapping, refuse_mistyped, refuse_unknown, refuse_unsupported
from edgeseg.errors import ArgumentError

#: the inference settings edgeseg reads, with maskrcnn-benchmark's defaults
DEFAULTS: dict[str, Any] = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.RPN_ONLY": False,
    "MODEL.MASK_ON": False,
    "MODEL.RETINANET_ON": False,
    "MODEL.KEYPOINT_ON": False,
    "MODEL.CLS_AGNOSTIC_BBOX_REG": False,
    "MODEL.BACKBONE.CONV_BODY": "R-50-C4",
    "MODEL.FPN.USE_GN": False,
    "MODEL.FPN.USE_RELU": False,
    "MODEL.RESNETS.NUM_GROUPS": 1,
    "MODEL.RESNETS.WIDTH_PER_GROUP": 64,
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.RESNETS.TRANS_FUNC": "BottleneckWithFixedBatchNorm",
    "MODEL.RESNETS.STEM_FUNC": "StemWithFixedBatchNorm",
    "MODEL.RESNETS.RES5_DILATION": 1,
    "MODEL.RESNETS.BACKBONE_OUT_CHANNELS": 256 * 4,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 256,
    "MODEL.RESNETS.STEM_OUT_CHANNELS": 64,
    "MODEL.RESNETS.STAGE_WITH_DCN": (False, False, False, False),
    "MODEL.RPN.USE_FPN": False,
    "MODEL.RPN.ANCHOR_SIZES": (32, 64, 128, 256, 512),
    "MODEL.RPN.ANCHOR_STRIDE": (16,),
    "MODEL.RPN.ASPECT_RATIOS": (0.5, 1.0, 2.0),
    "MODEL.RPN.PRE_NMS_TOP_N_TEST": 6000,
    "MODEL.RPN.POST_NMS_TOP_N_TEST": 1000,
    "MODEL.RPN.NMS_THRESH": 0.7,
    "MODEL.RPN.MIN_SIZE": 0,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST": 2000,
    "MODEL.RPN.RPN_HEAD": "SingleConvRPNHead",
    "MODEL.ROI_HEADS.USE_FPN": False,
    "MODEL.ROI_HEADS.BBOX_REG_WEIGHTS": (10.0, 10.0, 5.0, 5.0),
    "MODEL.ROI_HEADS.SCORE_THRESH": 0.05,
    "MODEL.ROI_HEADS.NMS": 0.5,
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMG": 100,
    "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR": "ResNet50Conv5ROIFeatureExtractor",
    "MODEL.ROI_BOX_HEAD.PREDICTOR": "FastRCNNPredictor",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": 0,
    "MODEL.ROI_BOX_HEAD.POOLER_SCALES": (1.0 / 16,),
    "MODEL.ROI_BOX_HEAD.NUM_CLASSES": 81,
    "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM": 1024,
    "MODEL.ROI_BOX_HEAD.USE_GN": False,
    "MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR": "ResNet50Conv5ROIFeatureExtractor",
    "MODEL.ROI_MASK_HEAD.PREDICTOR": "MaskRCNNC4Predictor",
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO": 0,
    "MODEL.ROI_MASK_HEAD.POOLER_SCALES": (1.0 / 16,),
    "MODEL.ROI_MASK_HEAD.CONV_LAYERS": (256, 256, 256, 256),
    "MODEL.ROI_MASK_HEAD.RESOLUTION": 14,
    "MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR": True,
    "MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS": False,
    "MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS_THRESHOLD": 0.5,
    "MODEL.ROI_MASK_HEAD.DILATION": 1,
    "MODEL.ROI_MASK_HEAD.USE_GN": False,
    "INPUT.MIN_SIZE_TEST": 800,
    "INPUT.MAX_SIZE_TEST": 1333,
    "INPUT.PIXEL_MEAN": (102.9801, 115.9465, 122.7717),
    "INPUT.PIXEL_STD": (1.0, 1.0, 1.0),
    "INPUT.TO_BGR255": True,
    "TEST.BBOX_AUG.ENABLED": False,
    "DATALOADER.SIZE_DIVISIBILITY": 0,
}

#: keys (or sections, ending in ".") that do not change inference here, and why
IGNORED: dict[str, str] = {
    "MODEL.DEVICE": "edgeseg picks the device at run time",
    "MODEL.WEIGHT": "the checkpoint is --weights",
    "MODEL.BACKBONE.FREEZE_CONV_BODY_AT": "training only",
    "MODEL.GROUP_NORM.": "GroupNorm is off (USE_GN, TRANS_FUNC)",
    "MODEL.RESNETS.WITH_MODULATED_DCN": "deformable convolutions are off (STAGE_WITH_DCN)",
    "MODEL.RESNETS.DEFORMABLE_GROUPS": "deformable convolutions are off (STAGE_WITH_DCN)",
    **{f"MODEL.RPN.{k}": "training only" for k in (
        "STRADDLE_THRESH", "FG_IOU_THRESHOLD", "BG_IOU_THRESHOLD", "BATCH_SIZE_PER_IMAGE", "POSITIVE_FRACTION",
        "PRE_NMS_TOP_N_TRAIN", "POST_NMS_TOP_N_TRAIN", "FPN_POST_NMS_TOP_N_TRAIN")},
    "MODEL.RPN.FPN_POST_NMS_PER_BATCH": "read in training only (rpn/inference.py select_over_all_levels)",
    **{f"MODEL.ROI_HEADS.{k}": "training only" for k in (
        "FG_IOU_THRESHOLD", "BG_IOU_THRESHOLD", "BATCH_SIZE_PER_IMAGE", "POSITIVE_FRACTION")},
    "MODEL.ROI_BOX_HEAD.DILATION": "the conv box head only (FEATURE_EXTRACTOR is FPN2MLPFeatureExtractor)",
    "MODEL.ROI_BOX_HEAD.CONV_HEAD_DIM": "the conv box head only (FEATURE_EXTRACTOR is FPN2MLPFeatureExtractor)",
    "MODEL.ROI_BOX_HEAD.NUM_STACKED_CONVS": "the conv box head only (FEATURE_EXTRACTOR is FPN2MLPFeatureExtractor)",
    "MODEL.ROI_MASK_HEAD.MLP_HEAD_DIM": "not read by the FPN mask head",
    "MODEL.ROI_KEYPOINT_HEAD.": "keypoint models only (KEYPOINT_ON is false)",
    "MODEL.RETINANET.": "RetinaNet only (RETINANET_ON is false)",
    "MODEL.FBNET.": "FBNet bodies only (CONV_BODY is a ResNet-FPN)",
    "MODEL.FCOS.": "FCOS only",
    **{f"INPUT.{k}": "training only" for k in (
        "MIN_SIZE_TRAIN", "MAX_SIZE_TRAIN", "BRIGHTNESS", "CONTRAST", "SATURATION", "HUE",
        "HORIZONTAL_FLIP_PROB_TRAIN", "VERTICAL_FLIP_PROB_TRAIN")},
    "TEST.DETECTIONS_PER_IMG": "not read by the Mask R-CNN box head (MODEL.ROI_HEADS.DETECTIONS_PER_IMG is)",
    "TEST.IMS_PER_BATCH": "edgeseg runs one frame at a time",
    "TEST.EXPECTED_RESULTS": "maskrcnn-benchmark's own regression tests",
    "TEST.EXPECTED_RESULTS_SIGMA_TOL": "maskrcnn-benchmark's own regression tests",
    "TEST.BBOX_AUG.": "test-time augmentation is off (TEST.BBOX_AUG.ENABLED)",
    "DATALOADER.NUM_WORKERS": "data loading only",
    "DATALOADER.ASPECT_RATIO_GROUPING": "training batches only",
}

#: top-level sections read; the others are training-only
SECTIONS = ("MODEL", "INPUT", "TEST", "DATALOADER")

#: MODEL.BACKBONE.CONV_BODY -> bottleneck blocks per stage (res2..res5)
BODIES = {"R-50-FPN": (3, 4, 6, 3), "R-101-FPN": (3, 4, 23, 3), "R-152-FPN": (3, 8, 36, 3)}

_FIXED_BN = "FrozenBatchNorm (BottleneckWithFixedBatchNorm / StemWithFixedBatchNorm) only; GroupNorm is not supported"
_SUPPORTED: tuple[tuple[str, tuple[Any, ...], str], ...] = (
    ("MODEL.META_ARCHITECTURE", ("GeneralizedRCNN",), "edgeseg converts GeneralizedRCNN (Mask R-CNN) models"),
    ("MODEL.MASK_ON", (True,), "a Mask R-CNN has MASK_ON: True"),
    ("MODEL.RPN_ONLY", (False,), "RPN-only models are not supported"),
    ("MODEL.RETINANET_ON", (False,), "RetinaNet is not supported"),
    ("MODEL.KEYPOINT_ON", (False,), "keypoint heads are not supported"),
    ("MODEL.CLS_AGNOSTIC_BBOX_REG", (False,), "class-specific box regression only"),
    ("MODEL.BACKBONE.CONV_BODY", tuple(BODIES), "ResNet/ResNeXt FPN bodies only (C4, RetinaNet and FBNet bodies "
                                                "are not)"),
    ("MODEL.FPN.USE_GN", (False,), "FPN without GroupNorm only"),
    ("MODEL.FPN.USE_RELU", (False,), "FPN without ReLU only"),
    ("MODEL.RESNETS.TRANS_FUNC", ("BottleneckWithFixedBatchNorm",), _FIXED_BN),
    ("MODEL.RESNETS.STEM_FUNC", ("StemWithFixedBatchNorm",), _FIXED_BN),
    ("MODEL.RESNETS.RES5_DILATION", (1,), "dilated res5 is not supported"),
    ("MODEL.RPN.USE_FPN", (True,), "the FPN RPN only"),
    ("MODEL.RPN.RPN_HEAD", ("SingleConvRPNHead",), "SingleConvRPNHead only"),
    ("MODEL.ROI_HEADS.USE_FPN", (True,), "FPN RoI heads only"),
    ("MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", ("FPN2MLPFeatureExtractor",), "the MLP box head only"),
    ("MODEL.ROI_BOX_HEAD.PREDICTOR", ("FPNPredictor",), "FPNPredictor only"),
    ("MODEL.ROI_BOX_HEAD.USE_GN", (False,), "box heads without GroupNorm only"),
    ("MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR", ("MaskRCNNFPNFeatureExtractor",), "the FPN mask head only"),
    ("MODEL.ROI_MASK_HEAD.PREDICTOR", ("MaskRCNNC4Predictor",), "MaskRCNNC4Predictor only"),
    ("MODEL.ROI_MASK_HEAD.USE_GN", (False,), "mask heads without GroupNorm only"),
    ("MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR", (False,), "a mask head with its own feature extractor only"),
    ("MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS", (False,), "the mask paste is edgeseg's (Masker, threshold 0.5)"),
    ("INPUT.TO_BGR255", (True,), "BGR 0..255 input only"),
    ("TEST.BBOX_AUG.ENABLED", (False,), "test-time augmentation is not supported"),
)


@dataclass(frozen=True)
class MaskrcnnBenchmarkConfig:
    """The inference settings of one config, flattened (``MODEL.RPN.NMS_THRESH`` -> value)."""

    values: Mapping[str, Any]
    source: str
    #: the paste's threshold (value > it): maskrcnn-benchmark's Masker 0.5, Detectron's MRCNN.THRESH_BINARIZE
    mask_threshold: float = 0.5
    #: the user's own key for a setting, where the file used other names (a Detectron YAML)
    source_keys: Mapping[str, str] = field(default_factory=dict)

    def name_of(self, key: str) -> str:
        """The key to tell the user about for setting *key*."""
        return self.source_keys.get(key, key)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def num_classes(self) -> int:
        """Classes with the background (maskrcnn-benchmark's NUM_CLASSES)."""
        return int(self.values["MODEL.ROI_BOX_HEAD.NUM_CLASSES"])

    @property
    def blocks(self) -> tuple[int, ...]:
        return BODIES[str(self.values["MODEL.BACKBONE.CONV_BODY"])]


def decode_value(value: Any) -> Any:
    """yacs' ``_decode_cfg_value``: a string holding a Python literal becomes the literal."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def read_config(path: str | os.PathLike[str]) -> MaskrcnnBenchmarkConfig:
    """The checked inference settings of a maskrcnn-benchmark config file; :class:`ArgumentError`
    naming the first setting edgeseg does not know or cannot reproduce."""
    source = Path(path)
    data = load_mapping(source, "maskrcnn-benchmark", "MODEL: ..., INPUT: ...")
    flat = {k: decode_value(v) for k, v in flatten(data).items() if k.split(".")[0] in SECTIONS}
    refuse_unknown(flat, DEFAULTS, IGNORED, source.name, "maskrcnn-benchmark")
    values = {**DEFAULTS, **{k: v for k, v in flat.items() if k in DEFAULTS}}
    refuse_mistyped(values, DEFAULTS, source.name)
    refuse_unsupported(values, _SUPPORTED, source.name)
    if any(values["MODEL.RESNETS.STAGE_WITH_DCN"]):
        raise ArgumentError(f"{source.name}: MODEL.RESNETS.STAGE_WITH_DCN: deformable convolutions are not supported")
    strides = tuple(int(s) for s in values["MODEL.RPN.ANCHOR_STRIDE"])
    sizes = tuple(values["MODEL.RPN.ANCHOR_SIZES"])
    if len(strides) != 5 or len(sizes) != 5 or not _same(strides, (4, 8, 16, 32, 64)):
        raise ArgumentError(f"{source.name}: MODEL.RPN.ANCHOR_STRIDE = {strides!r} / ANCHOR_SIZES = {sizes!r} are not "
                            "supported: five FPN levels P2..P6, strides (4, 8, 16, 32, 64), one size each")
    for head in ("ROI_BOX_HEAD", "ROI_MASK_HEAD"):
        key = f"MODEL.{head}.POOLER_SCALES"
        if not _same(tuple(float(s) for s in values[key]), (0.25, 0.125, 0.0625, 0.03125)):
            raise ArgumentError(f"{source.name}: {key} = {values[key]!r} is not supported: the RoI heads read P2..P5 "
                                "(0.25, 0.125, 0.0625, 0.03125)")
        if int(values[f"MODEL.{head}.POOLER_SAMPLING_RATIO"]) < 0:
            raise ArgumentError(f"{source.name}: MODEL.{head}.POOLER_SAMPLING_RATIO must be >= 0")
    if int(values["MODEL.ROI_MASK_HEAD.RESOLUTION"]) != 2 * int(values["MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION"]):
        raise ArgumentError(f"{source.name}: MODEL.ROI_MASK_HEAD.RESOLUTION must be twice POOLER_RESOLUTION (the "
                            "mask head upsamples once)")
    if isinstance(values["INPUT.MIN_SIZE_TEST"], (list, tuple)) or int(values["INPUT.MIN_SIZE_TEST"]) <= 0:
        raise ArgumentError(f"{source.name}: INPUT.MIN_SIZE_TEST must be one positive size")
    return MaskrcnnBenchmarkConfig(values, source.name)
