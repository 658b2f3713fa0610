"""The official HRNet-Semantic-Segmentation experiment YAML (``experiments/<dataset>/<name>.yaml``)
read without the official code or yacs: the settings the network needs at inference, each checked.

The file is merged over the official defaults (:data:`DEFAULTS`: ``lib/config/default.py`` of the
HRNet-OCR branch, commit 0bbb288, which also reads the master and pytorch-v1.1 configs) the way
yacs' ``merge_from_file`` does. Every key is used (:data:`DEFAULTS`, :data:`STAGE_KEYS`), ignored
for a stated reason (:data:`IGNORED`: training, evaluation scripts, data lists), or refused by name
(anything else, as yacs and the official code would refuse or silently misread it). The
normalisation is not in the config: every official dataset class applies the same
``input_transform`` (BGR -> RGB, /255, ImageNet mean and std; ``lib/datasets/base_dataset.py:44-49``),
which is edgeseg's default :class:`~edgeseg.metadata.Preprocessing`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.converters.hrnet.archs import ARCHS, HRNetSpec, StageSpec
from edgeseg.converters.hrnet.ocr import OUTPUTS, OCRSpec
from edgeseg.converters.yaml_config import flatten, load_mapping, refuse_unknown
from edgeseg.errors import ArgumentError
from edgeseg.metadata import Preprocessing

#: the inference settings read, with the official defaults (lib/config/default.py, HRNet-OCR branch)
DEFAULTS: dict[str, Any] = {
    "MODEL.NAME": "seg_hrnet",
    "MODEL.ALIGN_CORNERS": True,
    "MODEL.NUM_OUTPUTS": 1,
    "MODEL.OCR.MID_CHANNELS": 512,
    "MODEL.OCR.KEY_CHANNELS": 256,
    "MODEL.EXTRA.FINAL_CONV_KERNEL": 1,
    "DATASET.DATASET": "cityscapes",
    "DATASET.NUM_CLASSES": 19,
    "TEST.OUTPUT_INDEX": -1,
}

#: the backbone's stage table (MODEL.EXTRA is free-form in the official defaults: no default values)
STAGE_KEYS = ("NUM_MODULES", "NUM_BRANCHES", "BLOCK", "NUM_BLOCKS", "NUM_CHANNELS", "FUSE_METHOD")

_RUN = "a setting of the official training / evaluation scripts, not of the network"
_STAGE1 = "stage 1 is one layer of NUM_BLOCKS[0] bottlenecks; the official code never reads it"

#: keys (or sections, ending in ".") that do not change inference, and why
IGNORED: dict[str, str] = {
    **{k: _RUN for k in ("OUTPUT_DIR", "LOG_DIR", "GPUS", "WORKERS", "PRINT_FREQ", "AUTO_RESUME", "PIN_MEMORY",
                         "RANK", "CUDNN.")},
    "MODEL.PRETRAINED": "the ImageNet weights training starts from; --weights replaces every tensor",
    "MODEL.OCR.DROPOUT": "Dropout2d is the identity at inference (and the official SpatialOCR_Module hard-codes "
                         "0.05 instead of reading it)",
    "MODEL.OCR.SCALE": "never read: the official SpatialOCR_Module is built with scale 1 (seg_hrnet_ocr.py:483-488)",
    "MODEL.EXTRA.STAGE1.NUM_MODULES": _STAGE1,
    "MODEL.EXTRA.STAGE1.NUM_BRANCHES": _STAGE1,
    "MODEL.EXTRA.STAGE1.NUM_RANCHES": "a typo of NUM_BRANCHES in the official small-model configs; " + _STAGE1,
    "MODEL.EXTRA.STAGE1.FUSE_METHOD": "stage 1 has one branch: nothing to fuse",
    "LOSS.": "training only",
    "TRAIN.": "training only",
    "DEBUG.": "training diagnostics",
    **{f"DATASET.{k}": "data lists of training / evaluation" for k in (
        "ROOT", "TRAIN_SET", "EXTRA_TRAIN_SET", "TEST_SET")},
    "TEST.IMAGE_SIZE": "the evaluation's resize; the graph runs at --input-size (default: the frame size)",
    "TEST.BASE_SIZE": "the evaluation's resize; the graph runs at --input-size (default: the frame size)",
    "TEST.BATCH_SIZE_PER_GPU": _RUN,
    "TEST.NUM_SAMPLES": _RUN,
    "TEST.MODEL_FILE": "the checkpoint is --weights",
    **{f"TEST.{k}": "evaluation-time augmentation of tools/test.py; the graph is the official single pass "
                    "(BaseDataset.inference at one scale, unflipped)" for k in ("FLIP_TEST", "MULTI_SCALE",
                                                                                 "SCALE_LIST")},
}

NAMES = ("seg_hrnet", "seg_hrnet_ocr")
#: the official blocks_dict names of the residual blocks, per stage
BLOCKS = {1: "BOTTLENECK", 2: "BASIC", 3: "BASIC", 4: "BASIC"}
MAX_CLASSES = 256  # the label map is uint8


@dataclass(frozen=True)
class HRNetConfig:
    """The inference settings of one official experiment file."""

    source: str
    spec: HRNetSpec
    num_classes: int
    align_corners: bool
    dataset: str
    #: None for MODEL.NAME seg_hrnet
    ocr: OCRSpec | None

    @property
    def preprocessing(self) -> Preprocessing:
        """The official normalisation: the same for every official data set (module docstring)."""
        return Preprocessing()

    @property
    def name(self) -> str:
        return "seg_hrnet_ocr" if self.ocr else "seg_hrnet"


def _stage_table(flat: dict[str, Any], source: str) -> list[dict[str, Any]]:
    stages = []
    for k in (1, 2, 3, 4):
        prefix = f"MODEL.EXTRA.STAGE{k}."
        keys = ("BLOCK", "NUM_BLOCKS", "NUM_CHANNELS") if k == 1 else STAGE_KEYS
        missing = [prefix + key for key in keys if prefix + key not in flat]
        if missing:
            raise ArgumentError(f"{source}: {missing[0]} is missing: the backbone's stages come from MODEL.EXTRA "
                                "(copy the STAGE1..STAGE4 block of the experiment file the checkpoint was trained "
                                "with)")
        stage = {key: flat[prefix + key] for key in keys}
        if stage["BLOCK"] != BLOCKS[k]:
            raise ArgumentError(f"{source}: {prefix}BLOCK = {stage['BLOCK']!r} is not supported: HRNetV2 has "
                                f"{BLOCKS[k]} blocks in stage {k}")
        width = 1 if k == 1 else k
        for key in ("NUM_BLOCKS", "NUM_CHANNELS"):
            value = stage[key]
            if not isinstance(value, list) or len(value) != width or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
                raise ArgumentError(f"{source}: {prefix}{key} = {value!r}: stage {k} takes {width} positive "
                                    "integer(s), one per branch")
        if k > 1:
            if stage["NUM_BRANCHES"] != k:
                raise ArgumentError(f"{source}: {prefix}NUM_BRANCHES = {stage['NUM_BRANCHES']!r}: HRNetV2's "
                                    f"stage {k} has {k} branches")
            if stage["FUSE_METHOD"] != "SUM":
                raise ArgumentError(f"{source}: {prefix}FUSE_METHOD = {stage['FUSE_METHOD']!r} is not supported: "
                                    "SUM is the one fusion the official code has")
            if not isinstance(stage["NUM_MODULES"], int) or stage["NUM_MODULES"] < 1:
                raise ArgumentError(f"{source}: {prefix}NUM_MODULES = {stage['NUM_MODULES']!r}: a positive integer")
        stages.append(stage)
    return stages


def spec_from_stages(stages: list[dict[str, Any]], final_conv_kernel: int) -> HRNetSpec:
    """The :class:`HRNetSpec` of a stage table, named after the known arch it equals ("custom" if none)."""
    body = tuple(StageSpec(s["NUM_MODULES"], tuple(s["NUM_BLOCKS"]), tuple(s["NUM_CHANNELS"])) for s in stages[1:])
    assert len(body) == 3
    spec = HRNetSpec("custom", stages[0]["NUM_BLOCKS"][0], stages[0]["NUM_CHANNELS"][0],
                     (body[0], body[1], body[2]), final_conv_kernel)
    for known in ARCHS.values():
        if (known.stem_blocks, known.stem_channels, known.stages, known.final_conv_kernel) == (
                spec.stem_blocks, spec.stem_channels, spec.stages, spec.final_conv_kernel):
            return known
    return spec


def experiment(spec: HRNetSpec, num_classes: int, ocr: OCRSpec | None = None, align_corners: bool = True,
               dataset: str = "cityscapes") -> dict[str, Any]:
    """The content of an official experiment file for *spec* (what :func:`read_hrnet_config` reads
    back): for tests and benchmarks that need a config without the official repository."""
    def stage(k: int) -> dict[str, Any]:
        if k == 1:
            return {"NUM_MODULES": 1, "NUM_RANCHES": 1, "BLOCK": BLOCKS[1], "NUM_BLOCKS": [spec.stem_blocks],
                    "NUM_CHANNELS": [spec.stem_channels], "FUSE_METHOD": "SUM"}
        s = spec.stages[k - 2]
        return {"NUM_MODULES": s.modules, "NUM_BRANCHES": s.branches, "BLOCK": BLOCKS[k],
                "NUM_BLOCKS": list(s.blocks), "NUM_CHANNELS": list(s.channels), "FUSE_METHOD": "SUM"}

    model: dict[str, Any] = {
        "NAME": "seg_hrnet_ocr" if ocr else "seg_hrnet", "ALIGN_CORNERS": align_corners,
        "NUM_OUTPUTS": len(OUTPUTS) if ocr else 1,
        "EXTRA": {"FINAL_CONV_KERNEL": spec.final_conv_kernel, **{f"STAGE{k}": stage(k) for k in (1, 2, 3, 4)}},
    }
    out: dict[str, Any] = {"MODEL": model, "DATASET": {"DATASET": dataset, "NUM_CLASSES": num_classes}}
    if ocr:
        model["OCR"] = {"MID_CHANNELS": ocr.mid_channels, "KEY_CHANNELS": ocr.key_channels}
        out["TEST"] = {"OUTPUT_INDEX": OUTPUTS.index(ocr.output)}
    return out


def read_hrnet_config(path: str | os.PathLike[str]) -> HRNetConfig:
    """The checked inference settings of an official HRNet experiment file; :class:`ArgumentError`
    naming the first setting edgeseg does not know or cannot reproduce."""
    source = Path(path)
    name = source.name
    flat = flatten(load_mapping(source, "HRNet", "MODEL: ..., DATASET: ..."))
    stage_keys = {f"MODEL.EXTRA.STAGE{k}.{key}" for k in (1, 2, 3, 4) for key in STAGE_KEYS}
    refuse_unknown(flat, DEFAULTS.keys() | stage_keys, IGNORED, name, "the official code")
    values = {**DEFAULTS, **{k: v for k, v in flat.items() if k in DEFAULTS}}
    model = values["MODEL.NAME"]
    if model not in NAMES:
        raise ArgumentError(f"{name}: MODEL.NAME = {model!r} is not supported: edgeseg converts {' and '.join(NAMES)}")
    if model == "seg_hrnet" and "MODEL.ALIGN_CORNERS" not in flat:
        raise ArgumentError(f"{name}: MODEL.ALIGN_CORNERS is not set: the HRNet-OCR branch defaults it to true, the "
                            "master and pytorch-v1.1 branches upsample with false; add ALIGN_CORNERS: true or false "
                            "under MODEL, as on the branch the checkpoint was trained with")
    align = values["MODEL.ALIGN_CORNERS"]
    if not isinstance(align, bool):
        raise ArgumentError(f"{name}: MODEL.ALIGN_CORNERS = {align!r}: true or false")
    outputs = values["MODEL.NUM_OUTPUTS"]
    expected = len(OUTPUTS) if model == "seg_hrnet_ocr" else 1
    if outputs != expected:
        raise ArgumentError(f"{name}: MODEL.NUM_OUTPUTS = {outputs!r} does not fit {model}, whose forward returns "
                            f"{expected} output(s)" + (" [aux, ocr]" if expected > 1 else ""))
    classes = values["DATASET.NUM_CLASSES"]
    if not isinstance(classes, int) or not 1 <= classes <= MAX_CLASSES:
        raise ArgumentError(f"{name}: DATASET.NUM_CLASSES = {classes!r}: must be 1..{MAX_CLASSES} (the label map is "
                            "uint8)")
    kernel = values["MODEL.EXTRA.FINAL_CONV_KERNEL"]
    if kernel not in (1, 3):
        raise ArgumentError(f"{name}: MODEL.EXTRA.FINAL_CONV_KERNEL = {kernel!r}: 1 or 3")
    ocr = None
    if model == "seg_hrnet_ocr":
        index = values["TEST.OUTPUT_INDEX"]
        if not isinstance(index, int) or not -len(OUTPUTS) <= index < len(OUTPUTS):
            raise ArgumentError(f"{name}: TEST.OUTPUT_INDEX = {index!r}: picks one of the outputs [aux, ocr] "
                                "(-2..1)")
        sizes = [values[f"MODEL.OCR.{k}"] for k in ("MID_CHANNELS", "KEY_CHANNELS")]
        if not all(isinstance(v, int) and v > 0 for v in sizes):
            raise ArgumentError(f"{name}: MODEL.OCR.MID_CHANNELS / KEY_CHANNELS = {sizes}: positive integers")
        ocr = OCRSpec(sizes[0], sizes[1], OUTPUTS[index])
    spec = spec_from_stages(_stage_table(flat, name), 1 if ocr else kernel)
    return HRNetConfig(name, spec, classes, align, str(values["DATASET.DATASET"]), ocr)
