"""matterport Mask R-CNN (a Keras ``.h5`` and its training ``Config``) -> the edgeseg Mask R-CNN
graph (``edgeseg convert matterport``).

The Config is read without running it (:func:`.config.read_config`), the ``.h5`` with h5py
(:func:`.h5weights.read_h5_weights`) into :class:`.network.MatterportNet`; the graph is
``model.build_graph`` (matterport's ``detect()`` step by step, docs/matterport.md). The eager
rebuild (:class:`.detect.EagerMatterport`) is both what the converter reads the network from and
what ``edgeseg compare`` measures the file against (:class:`MatterportReference`).

Settings: ``--score-thresh`` is ``DETECTION_MIN_CONFIDENCE`` (matterport keeps a detection when
its score is ``>=`` it; 0 keeps every non-background one) and ``--max-detections`` is
``DETECTION_MAX_INSTANCES``; both default to the Config's. Labels are matterport's class ids
(0 is the background, matterport's "BG").
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeseg.classes import ClassSet
from edgeseg.converters.maskrcnn.export import maskrcnn_classes, trace_detection_graph
from edgeseg.converters.maskrcnn.graph import OUTPUT_NAMES, GraphOptions
from edgeseg.converters.matterport import conventions as cv
from edgeseg.converters.matterport.config import MatterportConfig, read_config
from edgeseg.converters.matterport.detect import EagerMatterport, load_eager
from edgeseg.converters.matterport.graph_steps import check_frame
from edgeseg.converters.matterport.model import build_graph
from edgeseg.converters.matterport.network import build_network
from edgeseg.converters.onnx_export import DEFAULT_OPSET, check_min_side, write_onnx
from edgeseg.converters.parity import EagerReference
from edgeseg.custom_ops import attribute_decimal
from edgeseg.errors import ArgumentError
from edgeseg.metadata import ModelMetadata, Preprocessing
from edgeseg.precision.rules import LayerRule, PrecisionRules
from edgeseg.progress import Steps

#: the arch label's prefix (``matterport_r50_fpn``); ``edgeseg compare`` reads the family from it
ARCH_PREFIX = "matterport"
#: matterport's ``unmold_mask`` threshold (``utils.unmold_mask(threshold=0.5)``, ``>=``)
MASK_THRESHOLD = 0.5
#: the PasteMasks mode of matterport's mask resize (``edgeseg.custom_ops.PASTE_MODES``)
PASTE = "zoom"

#: which layers an fp16 / int8 file computes in reduced precision (edgeseg.precision.rules): the
#: convolutional and fully connected layers of MatterportNet and the activations between them,
#: named by the scopes the graph calls them under (``/backbone``, ``/rpn``, ``/box_head``,
#: ``/mask_head``) and MatterportNet's module names (the RPN's, called once per level, get a
#: ``_1`` .. ``_4`` suffix). The input resize (ZoomLinear, FP32 in every
#: file), anchors, proposals, the level rule, refinement, NMS, the unmold and the paste are not
#: network layers, so they stay FP32.
PRECISION_RULES = PrecisionRules(
    "matterport",
    network=(
        LayerRule("/backbone/*", "ResNet (BatchNorm folded) and FPN"),
        LayerRule("/rpn/rpn_conv*", "the RPN's shared conv, once per level (its class logits and deltas stay "
                  "FP32)"),
        LayerRule("/rpn/Pad*", "TF 'same' padding before it"),
        LayerRule("/rpn/Relu*", "its activation"),
        LayerRule("/MultiLevelRoIAlign*", "crop_and_resize sampling: the plugin reads FP16 features with FP32 "
                  "normalised boxes (INT8 file: FP32, reading the INT8 features dequantized)"),
        LayerRule("/box_head/class_conv*", "box head: the POOL_SIZE conv (an FC) and the 1x1 conv"),
        LayerRule("/box_head/Relu*", "their activations"),
        LayerRule("/mask_head/mask_convs*", "mask head convs"),
        LayerRule("/mask_head/mask_deconv/*", "mask upsampling (transposed conv: FP32 in the INT8 file)"),
        LayerRule("/mask_head/Relu*", "their activations"),
    ),
    # the first two inside the layers above; the others are not among them, so FP32 anyway:
    # listed to say why
    keep_fp32=(
        LayerRule("/backbone/Pad_1", "the stem max-pool's TF 'same' padding, with -inf: no INT8 range holds it "
                  "(an infinite scale)"),
        LayerRule("/backbone/MaxPool*", "the stem max-pool reading that padding"),
        LayerRule("/rpn/rpn_class*", "RPN class logits: the two-class softmax feeds the top-k and NMS"),
        LayerRule("/rpn/rpn_bbox*", "RPN deltas: exp and box decoding"),
        LayerRule("/box_head/class_logits/*", "class scores: softmax, the >= confidence filter, NMS"),
        LayerRule("/box_head/bbox_fc/*", "box deltas: refinement"),
        LayerRule("/mask_head/mask_logits/*", "mask logits: their sigmoid is what the paste thresholds at 0.5"),
    ),
)


def arch_name(cfg: MatterportConfig) -> str:
    """``matterport_r50_fpn`` / ``matterport_r101_fpn`` (the Config's BACKBONE)."""
    return f"{ARCH_PREFIX}_r{str(cfg['BACKBONE']).removeprefix('resnet')}_fpn"


def config(spec: str | os.PathLike[str] | None) -> MatterportConfig:
    """The Config of *spec* (``train.py``, ``train.py:ConfigClass``, ``.json``, ``.yaml``), read
    without running it; :class:`ArgumentError` without one."""
    if not spec:
        raise ArgumentError("matterport needs its Config: --config train.py[:ConfigClass] (the training script; "
                            "edgeseg reads it without running it) or a .json/.yaml of its attributes")
    return read_config(spec)


def with_settings(cfg: MatterportConfig, score_thresh: float | None = None,
                  detections: int | None = None) -> MatterportConfig:
    """*cfg* with ``DETECTION_MIN_CONFIDENCE`` = *score_thresh* and ``DETECTION_MAX_INSTANCES`` =
    *detections* where given (the CLI's ranges and messages, through :class:`GraphOptions`)."""
    GraphOptions(score_thresh=score_thresh, detections=detections)
    values = dict(cfg.values)
    if score_thresh is not None:
        values["DETECTION_MIN_CONFIDENCE"] = float(score_thresh)
    if detections is not None:
        values["DETECTION_MAX_INSTANCES"] = int(detections)
    return dataclasses.replace(cfg, values=values)


def graph_options(cfg: MatterportConfig) -> GraphOptions:
    """The graph's settings as the other Mask R-CNN families carry them (from *cfg*, overrides
    applied): matterport's confidence and detection count, its zoom paste at ``>= 0.5``."""
    return GraphOptions(score_thresh=float(cfg["DETECTION_MIN_CONFIDENCE"]),
                        detections=int(cfg["DETECTION_MAX_INSTANCES"]), paste=PASTE, mask_threshold=MASK_THRESHOLD)


def read(spec: str | os.PathLike[str] | None, weights: str | os.PathLike[str] | None,
         score_thresh: float | None = None, detections: int | None = None) -> EagerMatterport:
    """The eager model of a Config and ``.h5`` (seeded random weights when *weights* is None),
    with the overrides applied to its Config."""
    cfg = with_settings(config(spec), score_thresh, detections)
    if weights is not None:
        return load_eager(weights, cfg)
    depth = int(str(cfg["BACKBONE"]).removeprefix("resnet"))
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(0)
        net = build_network(cfg, depth)
    return EagerMatterport(net.eval(), cfg)


def classes(spec: str | None, num_classes: int) -> ClassSet:
    """Label k is matterport's class id k, 0 the background (matterport's "BG"); a names file
    lists the NUM_CLASSES - 1 objects, or all NUM_CLASSES with the background first."""
    return maskrcnn_classes(spec, num_classes)


def _by_reason(ignored: dict[str, str]) -> dict[str, list[str]]:
    """The Config's ignored attributes grouped by why, names sorted (one note line per reason)."""
    out: dict[str, list[str]] = {}
    for name, why in sorted(ignored.items()):
        out.setdefault(why, []).append(name)
    return out


def mean_not_carried(mean: object) -> list[float]:
    """The MEAN_PIXEL values ZoomLinear cannot subtract exactly: its ``mean`` attribute is float32
    and read back as the shortest decimal that rounds to it (``custom_ops.attribute_decimal``),
    which is the Config's value whenever that has at most 6 significant digits."""
    values = [float(m) for m in np.asarray(mean, dtype=np.float64).reshape(-1)]
    return [m for m in values if attribute_decimal(m) != m]


def export(model: EagerMatterport, output: str | os.PathLike[str], frame_hw: tuple[int, int],
           class_set: ClassSet | None = None, steps: Steps | None = None,
           opset: int = DEFAULT_OPSET) -> ModelMetadata:
    """Write the frame -> detections graph of *model* (its Config's settings) to *output*.

    *frame_hw*: (height, width) in pixels of the uint8 BGR frames the graph takes; the graph
    resizes them to the Config's IMAGE_MAX_DIM square as ``detect()`` does.
    """
    cfg = model.cfg
    check_min_side("frame", frame_hw, "Mask R-CNN")
    check_frame(frame_hw)
    steps = steps or Steps(3, quiet=True)
    if not steps.quiet:
        for why, names in _by_reason(cfg.ignored).items():
            print(f"edgeseg: note: {cfg.source}: ignored ({why}): {', '.join(names)}", file=steps.stream)
        inexact = mean_not_carried(cfg["MEAN_PIXEL"])
        if inexact:
            print(f"edgeseg: note: {cfg.source}: MEAN_PIXEL {', '.join(map(repr, inexact))}: more significant digits "
                  "than a float32 attribute carries; ZoomLinear subtracts the nearest 6-digit value, so a few "
                  "input values may differ from matterport's by one float32 step (round the Config's mean to 6 "
                  "digits to make the input exact)", file=steps.stream)
    class_set = class_set or classes(None, model.net.num_classes)
    options = graph_options(cfg)
    d = cfg.image_shape[0]
    h, w = frame_hw
    resized_hw = cv.scaled_size(h, w, cv.square_scale(h, w, cfg["IMAGE_MIN_DIM"], d, cfg["IMAGE_MIN_SCALE"]))
    k = int(cfg["DETECTION_MAX_INSTANCES"])
    arch = arch_name(cfg)
    mean = cfg["MEAN_PIXEL"]
    with steps.step("computing anchors and sizes for the frame"):
        graph_module = build_graph(model.net, cfg, frame_hw, options).eval()
    with steps.step(f"tracing {arch} at {h}x{w} to ONNX"):
        graph = trace_detection_graph(graph_module, frame_hw, k, opset)
    meta = ModelMetadata(
        kind="instance",
        arch=arch,
        classes=class_set.names,
        palette=class_set.palette,
        frame_hw=frame_hw,
        input_hw=resized_hw,
        # matterport: RGB, minus MEAN_PIXEL, no scale or std; the square resize (skimage's linear
        # zoom, truncated to uint8, zero-padded to IMAGE_MAX_DIM) happens before the mean
        preprocessing=Preprocessing(channel_order="rgb", scale=1.0,
                                    mean=(float(mean[0]), float(mean[1]), float(mean[2])),
                                    std=(1.0, 1.0, 1.0), resize="skimage-linear"),
        input_name="frame",
        outputs={name: name for name in OUTPUT_NAMES},
        extra={
            "padded_hw": [d, d],
            "max_detections": k,
            "score_thresh": float(cfg["DETECTION_MIN_CONFIDENCE"]),
            "paste": PASTE,
            "mask_threshold": MASK_THRESHOLD,
            # every proposal enters the per-class NMS of the refinement
            "max_candidates": int(cfg["POST_NMS_ROIS_INFERENCE"]),
            "proposals": int(cfg["POST_NMS_ROIS_INFERENCE"]),
            # empty boxes are compacted out after the mask head: the mask rows are not the first
            # num_detections of the head's rows, so the CPU backend must not trim the branch
            "row_trim": False,
            "config": cfg.source,
            "opset": opset,
        },
    )
    with steps.step(f"writing {Path(output).name}"):
        write_onnx(graph, meta, output)
    return meta


class MatterportReference(EagerReference):
    """``edgeseg compare``'s reference for a matterport file: the eager rebuild of ``detect()``
    (:class:`.detect.EagerMatterport`) on the frame converted to RGB, as edgeseg's result arrays."""

    def __init__(self, model: EagerMatterport) -> None:
        super().__init__()
        self.model = model
        self.net = model.net

    def detections(self, frame_bgr: np.ndarray) -> dict[str, np.ndarray]:
        d = self.model.detect(np.ascontiguousarray(frame_bgr[:, :, ::-1]))
        return {"boxes": d.rois[:, [1, 0, 3, 2]].astype(np.float32), "scores": d.scores.astype(np.float32),
                "labels": d.class_ids.astype(np.int64), "masks": d.masks.astype(bool)}


def reference(meta: ModelMetadata, spec: str | os.PathLike[str] | None,
              weights: str | os.PathLike[str] | None) -> MatterportReference:
    """The eager rebuild of the file's model (its Config *spec*, *weights* or the seeded random
    ones), with the file's own confidence and detection count."""
    if spec is None:
        raise ArgumentError("a matterport model is compared with its Config: --config train.py[:ConfigClass] or "
                            "a .json/.yaml of its attributes")
    assert meta.instance is not None
    model = read(spec, weights, meta.instance.score_thresh, meta.instance.max_detections)
    if arch_name(model.cfg) != meta.arch:
        raise ArgumentError(f"--config {os.fspath(spec)} is a {arch_name(model.cfg)} but the file holds a {meta.arch}; "
                            "pass the Config it was converted with")
    return MatterportReference(model)


def family_options(options: dict[str, Any]) -> GraphOptions:
    """The CLI's option dict -> the graph's settings (refusing bad values and a missing Config)."""
    return graph_options(with_settings(config(options.get("config")), options.get("score_thresh"),
                                       options.get("detections")))
