"""torchvision Mask R-CNN -> edgeseg ONNX graph (see ``graph.py`` for what the graph does)."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import torch
from torchvision.models.detection import MaskRCNN

from edgeseg.classes import ClassSet, generated_palette, read_class_file
from edgeseg.converters.checkpoint import load_strict, read_state_dict
from edgeseg.converters.maskrcnn.archs import ARCHS, CLASS_KEY, COCO_CATEGORIES, build_arch
from edgeseg.converters.maskrcnn.graph import OUTPUT_NAMES, TORCHVISION, Conventions, FrameToDetections, GraphOptions
from edgeseg.converters.onnx_cleanup import tidy
from edgeseg.converters.onnx_export import DEFAULT_OPSET, MIN_SIDE, check_min_side, trace_to_onnx, write_onnx
from edgeseg.custom_ops import MASK_BYTES_PER_WORD, packed_mask_width
from edgeseg.errors import ArgumentError
from edgeseg.metadata import ModelMetadata, Preprocessing
from edgeseg.precision.rules import LayerRule, PrecisionRules
from edgeseg.progress import Steps

#: which layers an fp16 / int8 file computes in reduced precision (edgeseg.precision.rules): the
#: convolutional and fully connected layers, named as torchvision names its modules
PRECISION_RULES = PrecisionRules(
    "maskrcnn",
    network=(
        LayerRule("/backbone/*", "ResNet body and FPN"),
        LayerRule("/rpn/head/conv*", "the RPN's shared conv (its objectness and deltas stay FP32)"),
        LayerRule("/MultiLevelRoIAlign*", "the plugin reads FP16 features with FP32 RoIs, gives FP16 (INT8 file: FP32, "
                  "reading the INT8 features dequantized)"),
        LayerRule("/roi_heads/box_head/*", "box head (FC or conv layers)"),
        LayerRule("/roi_heads/mask_head/*", "mask head convs"),
        LayerRule("/roi_heads/mask_predictor/conv5_mask*", "mask upsampling (transposed conv: FP32 in the INT8 file)"),
        LayerRule("/roi_heads/mask_predictor/relu*", "its activation"),
    ),
    # not among the layers above, so FP32 anyway: listed to say why
    keep_fp32=(
        LayerRule("/rpn/head/cls_logits*", "objectness: feeds the per-level top-k and NMS"),
        LayerRule("/rpn/head/bbox_pred*", "proposal deltas: exp and box decoding"),
        LayerRule("/roi_heads/box_predictor/*", "class scores (softmax, score threshold) and box deltas"),
        LayerRule("/roi_heads/mask_predictor/mask_fcn_logits*", "mask logits: the paste thresholds them"),
    ),
)


def _triple(values: list[float]) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def build_maskrcnn(
    arch: str,
    num_classes: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    allow_pickle: bool = False,
) -> MaskRCNN:
    """A torchvision Mask R-CNN in eval mode with *weights* loaded strictly (random when None).

    *num_classes* (background included, 91 for COCO) defaults to the checkpoint's.
    """
    sd = read_state_dict(weights, allow_pickle=allow_pickle) if weights is not None else None
    if num_classes is None:
        if sd is None or CLASS_KEY not in sd:
            raise ArgumentError("number of classes unknown: pass --num-classes N (background included)")
        num_classes = int(sd[CLASS_KEY].shape[0])
    if num_classes < 2:
        raise ArgumentError(f"--num-classes {num_classes}: Mask R-CNN needs the background and at least one class")
    model = build_arch(arch, num_classes)
    if sd is not None:
        load_strict(model, sd, f"maskrcnn {arch} with {num_classes} classes", ARCHS, CLASS_KEY)
    return model.eval()


def maskrcnn_classes(spec: str | None, num_classes: int) -> ClassSet:
    """Names by label id (index 0 is the background): ``coco``, a file, or generated."""
    if spec is None:
        names: tuple[str, ...] = ("__background__", *(f"class_{i}" for i in range(1, num_classes)))
    elif spec.lower() == "coco":
        names = COCO_CATEGORIES
    else:
        names = read_class_file(Path(spec))
        if len(names) == num_classes - 1:  # the file lists the objects only
            names = ("__background__", *names)
    if len(names) != num_classes:
        raise ArgumentError(
            f"--classes {spec} lists {len(names)} names (background included) but the model has {num_classes} "
            "classes; make them agree"
        )
    return ClassSet(names, generated_palette(num_classes))


def trace_detection_graph(module: torch.nn.Module, frame_hw: tuple[int, int], detections: int,
                          opset: int) -> onnx.ModelProto:
    """*module* (a frame -> detections graph of any family: uint8 [H, W, 3] in, ``OUTPUT_NAMES``
    out, *detections* rows) traced to ONNX and tidied, with the static shape of every input and
    output stated (masks: int32 words of four bytes, ``packed_mask_width``)."""
    h, w = frame_hw
    k = detections
    graph = trace_to_onnx(module, (torch.zeros((h, w, 3), dtype=torch.uint8),), ["frame"], list(OUTPUT_NAMES),
                          opset=opset)
    tidy(graph, {"frame": (h, w, 3), "num_detections": (1,), "boxes": (k, 4), "scores": (k,), "labels": (k,),
                 "masks": (k, h, packed_mask_width(w) // MASK_BYTES_PER_WORD)})
    return graph


def export_maskrcnn(
    model: MaskRCNN,
    output: str | os.PathLike[str],
    frame_hw: tuple[int, int],
    options: GraphOptions | None = None,
    classes: ClassSet | None = None,
    arch: str = "maskrcnn",
    opset: int = DEFAULT_OPSET,
    steps: Steps | None = None,
    conventions: Conventions = TORCHVISION,
) -> ModelMetadata:
    """Write the frame -> detections ONNX graph of any torchvision ``MaskRCNN`` to *output*.

    *frame_hw*: (height, width) in pixels of the uint8 BGR frames the graph takes.
    """
    check_min_side("frame", frame_hw, "Mask R-CNN")
    options = options or GraphOptions()
    steps = steps or Steps(3, quiet=True)
    num_classes = int(model.roi_heads.box_predictor.cls_score.out_features)
    classes = classes or maskrcnn_classes(None, num_classes)
    with steps.step("computing anchors and sizes for the frame"):
        wrapper = FrameToDetections(model, frame_hw, options, conventions).eval()
    if min(wrapper.resized_hw) < MIN_SIDE:
        raise ArgumentError(
            f"frame {frame_hw[0]}x{frame_hw[1]} is too elongated: the model resizes it to "
            f"{wrapper.resized_hw[0]}x{wrapper.resized_hw[1]}, under {MIN_SIDE} pixels a side"
        )
    k = wrapper.detections
    with steps.step(f"tracing {arch} at {frame_hw[0]}x{frame_hw[1]} to ONNX"):
        graph = trace_detection_graph(wrapper, frame_hw, k, opset)
    t = model.transform
    meta = ModelMetadata(
        kind="instance",
        arch=arch,
        classes=classes.names,
        palette=classes.palette,
        frame_hw=frame_hw,
        input_hw=wrapper.resized_hw,
        preprocessing=Preprocessing(channel_order="bgr" if conventions.pixels.bgr else "rgb",
                                    scale=conventions.pixels.effective_scale,
                                    mean=_triple(t.image_mean), std=_triple(t.image_std),
                                    resize=conventions.resize.metadata_name),
        input_name="frame",
        outputs={name: name for name in OUTPUT_NAMES},
        extra={
            "padded_hw": list(wrapper.padded_hw),
            "max_detections": k,
            "score_thresh": wrapper.score_thresh,
            "paste": options.paste,
            "mask_threshold": options.mask_threshold,
            "max_candidates": wrapper.candidates,
            "proposals": wrapper.proposals,
            # the mask branch is row-wise in K: the CPU backend may run it on the detections only
            "row_trim": True,
            "opset": opset,
        },
    )
    with steps.step(f"writing {Path(output).name}"):
        write_onnx(graph, meta, output)
    return meta
