"""Detectron's (Caffe2) YAML config read without Detectron, translated into the maskrcnn-benchmark
settings that describe the same model (maskrcnn-benchmark is Detectron's PyTorch port and runs
Detectron's weights through its ``configs/caffe2`` files), so a Detectron model takes the same
path as a maskrcnn-benchmark one.

Keys are Detectron's (``detectron/core/config.py``): a YAML merged over its defaults, values
checked against the default's type. Every key under the sections read is used
(:data:`DEFAULTS`, mapped in :func:`to_benchmark`), ignored for a stated reason (:data:`IGNORED`)
or refused as unknown. What Detectron's config cannot say (the stem width, the stage output
widths) is read from the checkpoint's blob shapes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.converters.checkpoint import StateDict
from edgeseg.converters.maskrcnn_benchmark.config import (
    DEFAULTS as BENCHMARK_DEFAULTS,
)
from edgeseg.converters.maskrcnn_benchmark.config import (
    MaskrcnnBenchmarkConfig,
    decode_value,
)
from edgeseg.converters.yaml_config import flatten, load_mapping, refuse_mistyped, refuse_unknown, refuse_unsupported
from edgeseg.errors import ArgumentError

#: the keys edgeseg reads, with Detectron's defaults
DEFAULTS: dict[str, Any] = {
    "MODEL.TYPE": "",
    "MODEL.CONV_BODY": "",
    "MODEL.NUM_CLASSES": -1,
    "MODEL.FASTER_RCNN": False,
    "MODEL.MASK_ON": False,
    "MODEL.KEYPOINTS_ON": False,
    "MODEL.RPN_ONLY": False,
    "MODEL.CLS_AGNOSTIC_BBOX_REG": False,
    "MODEL.BBOX_REG_WEIGHTS": (10.0, 10.0, 5.0, 5.0),
    "PIXEL_MEANS": [[[102.9801, 115.9465, 122.7717]]],
    "RESNETS.NUM_GROUPS": 1,
    "RESNETS.WIDTH_PER_GROUP": 64,
    "RESNETS.STRIDE_1X1": True,
    "RESNETS.TRANS_FUNC": "bottleneck_transformation",
    "RESNETS.STEM_FUNC": "basic_bn_stem",
    "RESNETS.SHORTCUT_FUNC": "basic_bn_shortcut",
    "RESNETS.RES5_DILATION": 1,
    "FPN.FPN_ON": False,
    "FPN.DIM": 256,
    "FPN.MULTILEVEL_ROIS": False,
    "FPN.MULTILEVEL_RPN": False,
    "FPN.RPN_MIN_LEVEL": 2,
    "FPN.RPN_MAX_LEVEL": 6,
    "FPN.ROI_MIN_LEVEL": 2,
    "FPN.ROI_MAX_LEVEL": 5,
    "FPN.RPN_ANCHOR_START_SIZE": 32,
    "FPN.RPN_ASPECT_RATIOS": (0.5, 1, 2),
    "FPN.EXTRA_CONV_LEVELS": False,
    "FPN.COARSEST_STRIDE": 32,
    "FPN.ROI_CANONICAL_SCALE": 224,
    "FPN.ROI_CANONICAL_LEVEL": 4,
    "FPN.USE_GN": False,
    "FAST_RCNN.ROI_BOX_HEAD": "",
    "FAST_RCNN.MLP_HEAD_DIM": 1024,
    "FAST_RCNN.ROI_XFORM_METHOD": "RoIPoolF",
    "FAST_RCNN.ROI_XFORM_RESOLUTION": 14,
    "FAST_RCNN.ROI_XFORM_SAMPLING_RATIO": 0,
    "MRCNN.ROI_MASK_HEAD": "",
    "MRCNN.DIM_REDUCED": 256,
    "MRCNN.RESOLUTION": 14,
    "MRCNN.ROI_XFORM_METHOD": "RoIAlign",
    "MRCNN.ROI_XFORM_RESOLUTION": 7,
    "MRCNN.ROI_XFORM_SAMPLING_RATIO": 0,
    "MRCNN.DILATION": 2,
    "MRCNN.UPSAMPLE_RATIO": 1,
    "MRCNN.USE_FC_OUTPUT": False,
    "MRCNN.CLS_SPECIFIC_MASK": True,
    "MRCNN.THRESH_BINARIZE": 0.5,
    "RETINANET.RETINANET_ON": False,
    "TEST.SCALE": 600,
    "TEST.MAX_SIZE": 1000,
    "TEST.NMS": 0.3,
    "TEST.SCORE_THRESH": 0.05,
    "TEST.DETECTIONS_PER_IM": 100,
    "TEST.RPN_NMS_THRESH": 0.7,
    "TEST.RPN_PRE_NMS_TOP_N": 12000,
    "TEST.RPN_POST_NMS_TOP_N": 2000,
    "TEST.RPN_MIN_SIZE": 0,
    "TEST.BBOX_REG": True,
    "TEST.PRECOMPUTED_PROPOSALS": False,
    "TEST.BBOX_AUG.ENABLED": False,
    "TEST.MASK_AUG.ENABLED": False,
    "TEST.SOFT_NMS.ENABLED": False,
    "TEST.BBOX_VOTE.ENABLED": False,
}

#: keys (or sections, ending in ".") that do not change inference here, and why
IGNORED: dict[str, str] = {
    "NUM_GPUS": "edgeseg picks the device at run time",
    "TEST.WEIGHTS": "the checkpoint is --weights",
    "MRCNN.CONV_INIT": "initialisation, training only",
    "MRCNN.WEIGHT_LOSS_MASK": "training only",
    "FPN.ZERO_INIT_LATERAL": "initialisation, training only",
    "FPN.RPN_COLLECT_SCALE": "training only",
    "FAST_RCNN.CONV_HEAD_DIM": "the conv box heads only (ROI_BOX_HEAD is the 2-MLP head)",
    "FAST_RCNN.NUM_STACKED_CONVS": "the conv box heads only (ROI_BOX_HEAD is the 2-MLP head)",
    "RESNETS.TRANS_FUNC_USE_GN": "GroupNorm is off (TRANS_FUNC)",
    "TEST.DATASETS": "evaluation data sets",
    "TEST.PROPOSAL_FILES": "precomputed proposals are off (TEST.PRECOMPUTED_PROPOSALS)",
    "TEST.PROPOSAL_LIMIT": "precomputed proposals are off (TEST.PRECOMPUTED_PROPOSALS)",
    "TEST.FORCE_JSON_DATASET_EVAL": "evaluation only",
    "TEST.COMPETITION_MODE": "evaluation only",
    "TEST.BBOX_AUG.": "test-time augmentation is off (TEST.BBOX_AUG.ENABLED)",
    "TEST.MASK_AUG.": "test-time augmentation is off (TEST.MASK_AUG.ENABLED)",
    "TEST.KPS_AUG.": "keypoint models only",
    "TEST.SOFT_NMS.": "soft NMS is off (TEST.SOFT_NMS.ENABLED)",
    "TEST.BBOX_VOTE.": "box voting is off (TEST.BBOX_VOTE.ENABLED)",
    "KRCNN.": "keypoint models only (MODEL.KEYPOINTS_ON is false)",
    "RETINANET.": "RetinaNet only (RETINANET.RETINANET_ON is false)",
    "RPN.": "single-level RPN options (this model's RPN is the FPN one)",
}

#: sections read; the others (TRAIN, SOLVER, OUTPUT_DIR, DATA_LOADER, ...) are training-only
SECTIONS = ("MODEL", "PIXEL_MEANS", "RESNETS", "FPN", "FAST_RCNN", "MRCNN", "RETINANET", "KRCNN", "TEST",
            "NUM_GPUS", "RPN")

BODIES = {"FPN.add_fpn_ResNet50_conv5_body": "R-50-FPN", "FPN.add_fpn_ResNet101_conv5_body": "R-101-FPN",
          "FPN.add_fpn_ResNet152_conv5_body": "R-152-FPN"}
MASK_HEADS = {"mask_rcnn_heads.mask_rcnn_fcn_head_v1up4convs": 4, "mask_rcnn_heads.mask_rcnn_fcn_head_v1up": 2}

_SUPPORTED: tuple[tuple[str, tuple[Any, ...], str], ...] = (
    ("MODEL.TYPE", ("generalized_rcnn",), "edgeseg converts generalized_rcnn (Mask R-CNN) models"),
    ("MODEL.CONV_BODY", tuple(BODIES), "ResNet/ResNeXt FPN bodies only (C4 bodies and VGG are not)"),
    ("MODEL.FASTER_RCNN", (True,), "a Mask R-CNN has FASTER_RCNN: True"),
    ("MODEL.MASK_ON", (True,), "a Mask R-CNN has MASK_ON: True"),
    ("MODEL.KEYPOINTS_ON", (False,), "keypoint heads are not supported"),
    ("MODEL.RPN_ONLY", (False,), "RPN-only models are not supported"),
    ("MODEL.CLS_AGNOSTIC_BBOX_REG", (False,), "class-specific box regression only"),
    ("RESNETS.TRANS_FUNC", ("bottleneck_transformation",), "AffineChannel bottlenecks only (GroupNorm is not)"),
    ("RESNETS.STEM_FUNC", ("basic_bn_stem",), "the AffineChannel stem only (GroupNorm is not)"),
    ("RESNETS.SHORTCUT_FUNC", ("basic_bn_shortcut",), "the AffineChannel shortcut only (GroupNorm is not)"),
    ("RESNETS.RES5_DILATION", (1,), "dilated res5 is not supported"),
    ("FPN.FPN_ON", (True,), "FPN models only"),
    ("FPN.MULTILEVEL_ROIS", (True,), "FPN RoI heads only"),
    ("FPN.MULTILEVEL_RPN", (True,), "the FPN RPN only"),
    ("FPN.RPN_MIN_LEVEL", (2,), "the RPN reads P2..P6"),
    ("FPN.RPN_MAX_LEVEL", (6,), "the RPN reads P2..P6"),
    ("FPN.ROI_MIN_LEVEL", (2,), "the RoI heads read P2..P5"),
    ("FPN.ROI_MAX_LEVEL", (5,), "the RoI heads read P2..P5"),
    ("FPN.EXTRA_CONV_LEVELS", (False,), "P6 by subsampling P5 only (extra conv levels are RetinaNet's)"),
    ("FPN.ROI_CANONICAL_SCALE", (224,), "the canonical level rule (224 px -> P4) only"),
    ("FPN.ROI_CANONICAL_LEVEL", (4,), "the canonical level rule (224 px -> P4) only"),
    ("FPN.USE_GN", (False,), "FPN without GroupNorm only"),
    ("FAST_RCNN.ROI_BOX_HEAD", ("fast_rcnn_heads.add_roi_2mlp_head",), "the 2-MLP box head only"),
    ("FAST_RCNN.ROI_XFORM_METHOD", ("RoIAlign",), "RoIAlign only"),
    ("MRCNN.ROI_MASK_HEAD", tuple(MASK_HEADS), "the FPN mask heads v1up4convs and v1up only"),
    ("MRCNN.ROI_XFORM_METHOD", ("RoIAlign",), "RoIAlign only"),
    ("MRCNN.UPSAMPLE_RATIO", (1,), "no extra mask upsampling"),
    ("MRCNN.USE_FC_OUTPUT", (False,), "the convolutional mask output only"),
    ("MRCNN.CLS_SPECIFIC_MASK", (True,), "class-specific masks only"),
    ("RETINANET.RETINANET_ON", (False,), "RetinaNet is not supported"),
    ("TEST.BBOX_REG", (True,), "box regression at test time"),
    ("TEST.PRECOMPUTED_PROPOSALS", (False,), "precomputed proposals are not supported"),
    ("TEST.BBOX_AUG.ENABLED", (False,), "test-time augmentation is not supported"),
    ("TEST.MASK_AUG.ENABLED", (False,), "test-time augmentation is not supported"),
    ("TEST.SOFT_NMS.ENABLED", (False,), "soft NMS is not supported"),
    ("TEST.BBOX_VOTE.ENABLED", (False,), "box voting is not supported"),
)


@dataclass(frozen=True)
class DetectronConfig:
    """The checked Detectron settings of one config, flattened (``TEST.NMS`` -> value)."""

    values: Mapping[str, Any]
    source: str

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


def read_detectron_config(path: str | os.PathLike[str]) -> DetectronConfig:
    """The checked settings of a Detectron YAML; :class:`ArgumentError` naming the first setting
    edgeseg does not know or cannot reproduce."""
    source = Path(path)
    data = load_mapping(source, "Detectron", "MODEL: ..., TEST: ...")
    flat = {k: decode_value(v) for k, v in flatten(data).items() if k.split(".")[0] in SECTIONS}
    refuse_unknown(flat, DEFAULTS, IGNORED, source.name, "Detectron")
    values = {**DEFAULTS, **{k: v for k, v in flat.items() if k in DEFAULTS}}
    refuse_mistyped(values, DEFAULTS, source.name)
    refuse_unsupported(values, _SUPPORTED, source.name)
    if int(values["MODEL.NUM_CLASSES"]) < 2:
        raise ArgumentError(f"{source.name}: MODEL.NUM_CLASSES = {values['MODEL.NUM_CLASSES']}: give the classes, "
                            "background included (at least 2)")
    return DetectronConfig(values, source.name)


def _mean(value: Any) -> tuple[float, float, float]:
    flat: list[float] = []

    def walk(v: Any) -> None:
        if isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        else:
            flat.append(float(v))

    walk(value)
    if len(flat) != 3:
        raise ArgumentError(f"PIXEL_MEANS = {value!r}: expected three values (B, G, R)")
    return flat[0], flat[1], flat[2]


#: the Detectron keys of the maskrcnn-benchmark settings that errors may name
SOURCE_KEYS = {"MODEL.RPN.PRE_NMS_TOP_N_TEST": "TEST.RPN_PRE_NMS_TOP_N",
               "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST": "TEST.RPN_POST_NMS_TOP_N"}


def to_benchmark(cfg: DetectronConfig, sd: StateDict | None) -> MaskrcnnBenchmarkConfig:
    """The maskrcnn-benchmark settings of the same model. The stem and stage widths come from
    the checkpoint *sd* (maskrcnn-benchmark names, :mod:`.checkpoint`): Detectron's YAML cannot
    state them; without a checkpoint they are Detectron's own (64, 256)."""
    v = cfg.values
    groups, width = int(v["RESNETS.NUM_GROUPS"]), int(v["RESNETS.WIDTH_PER_GROUP"])
    stem, res2 = 64, 256
    if sd is not None:
        stem_w = sd.get("backbone.body.stem.conv1.weight")
        res2_w = sd.get("backbone.body.layer1.0.conv3.weight")
        inner_w = sd.get("backbone.body.layer1.0.conv1.weight")
        if stem_w is None or res2_w is None or inner_w is None:
            raise ArgumentError(f"{cfg.source}: the checkpoint has no conv1_w / res2_0_branch2a_w / res2_0_branch2c_w: "
                                "not a ResNet body")
        stem, res2 = int(stem_w.shape[0]), int(res2_w.shape[0])
        if int(inner_w.shape[0]) != groups * width:
            raise ArgumentError(f"{cfg.source}: RESNETS.NUM_GROUPS x WIDTH_PER_GROUP = {groups} x {width} but the "
                                f"checkpoint's res2_0_branch2a_w has {int(inner_w.shape[0])} channels; make them agree")
    start = int(v["FPN.RPN_ANCHOR_START_SIZE"])
    mask_convs = MASK_HEADS[str(v["MRCNN.ROI_MASK_HEAD"])]
    values = {
        **BENCHMARK_DEFAULTS,
        "MODEL.MASK_ON": True,
        "MODEL.BACKBONE.CONV_BODY": BODIES[str(v["MODEL.CONV_BODY"])],
        "MODEL.RESNETS.NUM_GROUPS": groups,
        "MODEL.RESNETS.WIDTH_PER_GROUP": width,
        "MODEL.RESNETS.STRIDE_IN_1X1": bool(v["RESNETS.STRIDE_1X1"]),
        "MODEL.RESNETS.STEM_OUT_CHANNELS": stem,
        "MODEL.RESNETS.RES2_OUT_CHANNELS": res2,
        "MODEL.RESNETS.BACKBONE_OUT_CHANNELS": int(v["FPN.DIM"]),
        "MODEL.RPN.USE_FPN": True,
        "MODEL.RPN.ANCHOR_SIZES": tuple(start * 2 ** i for i in range(5)),
        "MODEL.RPN.ANCHOR_STRIDE": (4, 8, 16, 32, 64),
        "MODEL.RPN.ASPECT_RATIOS": tuple(float(r) for r in v["FPN.RPN_ASPECT_RATIOS"]),
        "MODEL.RPN.PRE_NMS_TOP_N_TEST": int(v["TEST.RPN_PRE_NMS_TOP_N"]),
        # Detectron's one number is used per level and again per image
        "MODEL.RPN.POST_NMS_TOP_N_TEST": int(v["TEST.RPN_POST_NMS_TOP_N"]),
        "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST": int(v["TEST.RPN_POST_NMS_TOP_N"]),
        "MODEL.RPN.NMS_THRESH": float(v["TEST.RPN_NMS_THRESH"]),
        "MODEL.RPN.MIN_SIZE": int(v["TEST.RPN_MIN_SIZE"]),
        "MODEL.ROI_HEADS.USE_FPN": True,
        "MODEL.ROI_HEADS.BBOX_REG_WEIGHTS": tuple(float(w) for w in v["MODEL.BBOX_REG_WEIGHTS"]),
        "MODEL.ROI_HEADS.SCORE_THRESH": float(v["TEST.SCORE_THRESH"]),
        "MODEL.ROI_HEADS.NMS": float(v["TEST.NMS"]),
        "MODEL.ROI_HEADS.DETECTIONS_PER_IMG": int(v["TEST.DETECTIONS_PER_IM"]),
        "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR": "FPN2MLPFeatureExtractor",
        "MODEL.ROI_BOX_HEAD.PREDICTOR": "FPNPredictor",
        "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": int(v["FAST_RCNN.ROI_XFORM_RESOLUTION"]),
        "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": int(v["FAST_RCNN.ROI_XFORM_SAMPLING_RATIO"]),
        "MODEL.ROI_BOX_HEAD.POOLER_SCALES": (0.25, 0.125, 0.0625, 0.03125),
        "MODEL.ROI_BOX_HEAD.NUM_CLASSES": int(v["MODEL.NUM_CLASSES"]),
        "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM": int(v["FAST_RCNN.MLP_HEAD_DIM"]),
        "MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR": "MaskRCNNFPNFeatureExtractor",
        "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": int(v["MRCNN.ROI_XFORM_RESOLUTION"]),
        "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO": int(v["MRCNN.ROI_XFORM_SAMPLING_RATIO"]),
        "MODEL.ROI_MASK_HEAD.POOLER_SCALES": (0.25, 0.125, 0.0625, 0.03125),
        "MODEL.ROI_MASK_HEAD.CONV_LAYERS": (int(v["MRCNN.DIM_REDUCED"]),) * mask_convs,
        "MODEL.ROI_MASK_HEAD.RESOLUTION": int(v["MRCNN.RESOLUTION"]),
        "MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR": False,
        "MODEL.ROI_MASK_HEAD.DILATION": int(v["MRCNN.DILATION"]),
        "INPUT.MIN_SIZE_TEST": int(v["TEST.SCALE"]),
        "INPUT.MAX_SIZE_TEST": int(v["TEST.MAX_SIZE"]),
        "INPUT.PIXEL_MEAN": _mean(v["PIXEL_MEANS"]),
        "DATALOADER.SIZE_DIVISIBILITY": int(v["FPN.COARSEST_STRIDE"]),
    }
    if values["MODEL.ROI_MASK_HEAD.RESOLUTION"] != 2 * values["MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION"]:
        raise ArgumentError(f"{cfg.source}: MRCNN.RESOLUTION must be twice MRCNN.ROI_XFORM_RESOLUTION (the mask head "
                            "upsamples once)")
    return MaskrcnnBenchmarkConfig(values, cfg.source, mask_threshold=float(v["MRCNN.THRESH_BINARIZE"]),
                                   source_keys=SOURCE_KEYS)
