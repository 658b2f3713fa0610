"""HRNetV2 / HRNet-OCR checkpoint -> edgeseg ONNX graph that goes from a raw camera frame to a label map.

Graph (static shapes), input ``frame`` uint8 [H, W, 3] BGR at the frame size:

    Cast float -> Transpose -> BGR->RGB -> x * scale/std - mean/std     (official preprocessing)
    [Resize bilinear half-pixel to the network input size, if smaller]
    HRNetV2 (last_layer or the OCR head) -> ``logits`` float [1, C, h/4, w/4]
    Resize bilinear to H x W (align_corners as trained) -> ArgMax -> Cast uint8 -> ``label_map`` [H, W]
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeseg.classes import ClassSet, resolve_classes
from edgeseg.converters.checkpoint import StateDict, fitting_layout, load_strict, read_state_dict
from edgeseg.converters.hrnet.archs import ARCHS, HRNetSpec, get_arch
from edgeseg.converters.hrnet.config import HRNetConfig
from edgeseg.converters.hrnet.model import HRNetV2
from edgeseg.converters.hrnet.ocr import HRNetOCR, OCRSpec
from edgeseg.converters.onnx_cleanup import tidy
from edgeseg.converters.onnx_export import DEFAULT_OPSET, check_min_side, trace_to_onnx, write_onnx
from edgeseg.errors import ArgumentError, CheckpointMismatchError
from edgeseg.metadata import ModelMetadata, Preprocessing
from edgeseg.precision.rules import LayerRule, PrecisionRules
from edgeseg.progress import Steps

HEAD_KEY = "last_layer.3.weight"
OCR_HEAD_KEY = "cls_head.weight"

#: which layers an fp16 / int8 file computes in reduced precision (edgeseg.precision.rules);
#: the patterns are the node names the exported graph gets from the module tree (``net``)
PRECISION_RULES = PrecisionRules(
    "hrnet",
    network=(LayerRule("/net/*", "HRNet: stem, branches, fusion, upsampling of the branches, the head's first conv"),),
    keep_fp32=(LayerRule("/net/last_layer/last_layer.3/*",
                         "the classifier: its logits are compared by the argmax (close logits would swap labels)"),),
)
#: the OCR graph's rules (:func:`precision_rules`): what stays FP32 was measured, see the reasons
PRECISION_RULES_OCR = PrecisionRules(
    "hrnet",
    network=(LayerRule("/net/*", "HRNet and the OCR head: convolutions, projections, ObjectAttention"),),
    keep_fp32=(
        LayerRule("/net/cls_head/*", "the classifier: its logits are compared by the argmax"),
        # Measured on the shared HRNet-OCR case (512x1024 frame, 128x256 = 32768 positions): FP16
        # pixel-softmax probabilities are off by up to 2.5% of themselves (1.3e-6 absolute; FP32:
        # 6e-7 relative): a probability near 1/(h*w) = 3e-5 is below FP16's smallest normal number
        # (6.1e-5), so it keeps only a few bits, fewer still at larger frames.
        LayerRule("/net/ocr_gather_head/*", "SpatialGather: the softmax over the h/4*w/4 pixel positions and "
                  "the weighted sum of the features (measured: FP16 probabilities off by up to 2.5%)"),
    ),
)
#: an OCR model whose config picks the aux output (TEST.OUTPUT_INDEX 0): its graph ends at aux_head
PRECISION_RULES_OCR_AUX = PrecisionRules(
    "hrnet",
    network=(LayerRule("/net/*", "HRNet and the aux head's first conv"),),
    keep_fp32=(LayerRule("/net/aux_head/aux_head.3/*", "the classifier (the aux head's last conv): its logits are "
                         "compared by the argmax"),),
)
MAX_CLASSES = 256  # the label map is uint8
OCR_BY_ARCH = ("an HRNet-OCR checkpoint (cls_head, aux_head, no last_layer): --arch builds plain HRNetV2; convert it "
               "with --config and the experiment .yaml it was trained with")


def precision_rules(model: HRNetV2) -> PrecisionRules:
    """The rule list for *model*'s graph: plain HRNetV2 or HRNet-OCR."""
    if isinstance(model, HRNetOCR):
        return PRECISION_RULES_OCR_AUX if model.ocr.output == "aux" else PRECISION_RULES_OCR
    return PRECISION_RULES


class FrameToLabels(nn.Module):
    """Wraps an HRNetV2 so the exported graph takes the raw frame (see the module docstring)."""

    def __init__(
        self,
        net: HRNetV2,
        frame_hw: tuple[int, int],
        input_hw: tuple[int, int],
        pre: Preprocessing,
    ) -> None:
        super().__init__()
        self.net = net
        self.frame_hw = frame_hw
        self.input_hw = input_hw
        std = torch.tensor(pre.std, dtype=torch.float32)
        mean = torch.tensor(pre.mean, dtype=torch.float32)
        # (x * scale - mean) / std folded into one multiply-add per channel.
        self.gain: Tensor
        self.offset: Tensor
        self.channels: Tensor
        self.register_buffer("gain", (pre.scale / std).view(1, 3, 1, 1))
        self.register_buffer("offset", (-mean / std).view(1, 3, 1, 1))
        order = {"rgb": [2, 1, 0], "bgr": [0, 1, 2]}[pre.channel_order]
        self.register_buffer("channels", torch.tensor(order, dtype=torch.long))

    def forward(self, frame: Tensor) -> tuple[Tensor, Tensor]:
        # Cast first: TensorRT's ONNX parser refuses UINT8 tensors between nodes.
        x = frame.to(torch.float32).permute(2, 0, 1).unsqueeze(0)
        x = x.index_select(1, self.channels) * self.gain + self.offset
        if self.input_hw != self.frame_hw:
            x = F.interpolate(x, size=self.input_hw, mode="bilinear", align_corners=False, antialias=False)
        logits = self.net(x)
        up = F.interpolate(logits, size=self.frame_hw, mode="bilinear", align_corners=self.net.align_corners)
        label_map = up.argmax(dim=1)[0].to(torch.uint8)
        return label_map, logits


def build_hrnet(
    arch: str | HRNetSpec,
    num_classes: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    align_corners: bool = False,
    allow_pickle: bool = False,
) -> HRNetV2:
    """An HRNetV2 in eval mode with *weights* loaded strictly (random weights when None).

    *num_classes* defaults to the checkpoint's head size.
    """
    spec = arch if isinstance(arch, HRNetSpec) else get_arch(arch)
    sd = read_state_dict(weights, allow_pickle=allow_pickle) if weights is not None else None
    if sd is not None and OCR_HEAD_KEY in sd and HEAD_KEY not in sd:
        raise CheckpointMismatchError(OCR_BY_ARCH)
    if num_classes is None:
        if sd is None or HEAD_KEY not in sd:
            raise ArgumentError("number of classes unknown: pass --num-classes N")
        num_classes = int(sd[HEAD_KEY].shape[0])
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ArgumentError(f"--num-classes {num_classes}: must be 1..{MAX_CLASSES} (the label map is uint8)")
    # Seeded, so that random weights are the same every time (edgeseg compare --random-weights
    # rebuilds the model `edgeseg convert --random-weights` exported), without touching the
    # caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = HRNetV2(spec, num_classes, align_corners=align_corners)
    if sd is not None:
        builders = {name: functools.partial(HRNetV2, known) for name, known in ARCHS.items()}
        load_strict(model, sd, f"hrnet {spec.name} with {num_classes} classes", builders, HEAD_KEY)
    return model.eval()


def _config_builders(cfg: HRNetConfig) -> dict[str, Callable[[int], nn.Module]]:
    """Model builders (class count -> model) for each known arch, of the config's kind."""
    if cfg.ocr is None:
        return {name: functools.partial(HRNetV2, known, align_corners=cfg.align_corners)
                for name, known in ARCHS.items()}
    return {name: functools.partial(HRNetOCR, known, align_corners=cfg.align_corners, ocr=cfg.ocr)
            for name, known in ARCHS.items()}


def build_hrnet_from_config(
    cfg: HRNetConfig,
    weights: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    allow_pickle: bool = False,
) -> HRNetV2:
    """The model an official experiment config describes (:func:`~edgeseg.converters.hrnet.config.
    read_hrnet_config`), an :class:`HRNetOCR` for ``seg_hrnet_ocr``, in eval mode, with *weights*
    loaded strictly (float16 tensors upcast; seeded random weights when None).

    A checkpoint that does not fit is refused naming its first mismatching keys and shapes, and the
    config (MODEL.NAME, stages, DATASET.NUM_CLASSES) it does fit, where one of the known archs does.
    """
    if num_classes is not None and num_classes != cfg.num_classes:
        raise ArgumentError(f"--num-classes {num_classes}: the config has {cfg.num_classes} (DATASET.NUM_CLASSES)")
    sd = read_state_dict(weights, allow_pickle=allow_pickle) if weights is not None else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model: HRNetV2 = (HRNetOCR(cfg.spec, cfg.num_classes, cfg.align_corners, cfg.ocr) if cfg.ocr
                          else HRNetV2(cfg.spec, cfg.num_classes, cfg.align_corners))
    if sd is not None:
        try:
            load_strict(model, sd, f"{cfg.source} ({cfg.name}, {cfg.spec.name} stages, {cfg.num_classes} classes)")
        except CheckpointMismatchError as exc:
            raise CheckpointMismatchError(f"{exc}{_config_hint(sd)}") from None
    return model.eval()


def _config_hint(sd: StateDict) -> str:
    """Which config a mismatching checkpoint fits: the model name, the stages, the OCR sizes, the
    class count."""
    ocr = OCRSpec(*_ocr_sizes(sd)) if OCR_HEAD_KEY in sd else None
    # align_corners has no weights, so any value compares layouts
    probe = HRNetConfig("", ARCHS["w48"], 1, True, "", ocr)
    fit = fitting_layout(sd, _config_builders(probe), OCR_HEAD_KEY if ocr else HEAD_KEY)
    if fit is None:
        return ""
    arch, n = fit
    sizes = (f", MODEL.OCR.MID_CHANNELS {ocr.mid_channels} and KEY_CHANNELS {ocr.key_channels}"
             if ocr and (ocr.mid_channels, ocr.key_channels) != (OCRSpec().mid_channels, OCRSpec().key_channels)
             else "")
    return (f"; it fits a config with MODEL.NAME {'seg_hrnet_ocr' if ocr else 'seg_hrnet'}, the {arch} stages in "
            f"MODEL.EXTRA (as in the official {arch} experiment files){sizes} and DATASET.NUM_CLASSES {n}")


def _ocr_sizes(sd: StateDict) -> tuple[int, int]:
    """(MID_CHANNELS, KEY_CHANNELS) of an OCR checkpoint's head (the official defaults if unreadable)."""
    mid = sd.get("conv3x3_ocr.0.weight")
    key = sd.get("ocr_distri_head.object_context_block.f_pixel.0.weight")
    return (int(mid.shape[0]) if mid is not None else 512, int(key.shape[0]) if key is not None else 256)


def export_hrnet(
    model: HRNetV2,
    output: str | os.PathLike[str],
    frame_hw: tuple[int, int],
    input_hw: tuple[int, int] | None = None,
    classes: ClassSet | None = None,
    preprocessing: Preprocessing | None = None,
    opset: int = DEFAULT_OPSET,
    steps: Steps | None = None,
) -> ModelMetadata:
    """Write the frame -> label-map ONNX graph of *model* to *output* (atomically).

    *frame_hw*: (height, width) in pixels of the camera frames the graph will take.
    *input_hw*: size the network runs at (default: the frame size); frames are resized to it in
    the graph and the logits are upsampled back to the frame size.
    """
    input_hw = input_hw or frame_hw
    check_min_side("--frame", frame_hw, "HRNet")
    check_min_side("--input-size", input_hw, "HRNet")
    classes = classes or resolve_classes(None, model.num_classes)
    if len(classes.names) != model.num_classes:
        raise ArgumentError(f"{len(classes.names)} class names for a model with {model.num_classes} classes")
    pre = preprocessing or Preprocessing()
    steps = steps or Steps(2, quiet=True)
    wrapper = FrameToLabels(model.eval().for_export(), frame_hw, input_hw, pre).eval()
    example = (torch.zeros((*frame_hw, 3), dtype=torch.uint8),)
    with steps.step(f"tracing {model.spec.name} at {frame_hw[0]}x{frame_hw[1]} to ONNX"):
        graph = trace_to_onnx(wrapper, example, ["frame"], ["label_map", "logits"], opset=opset)
        tidy(graph)
    meta = ModelMetadata(
        kind="semantic",
        arch=model.arch_label,
        classes=classes.names,
        palette=classes.palette,
        frame_hw=frame_hw,
        input_hw=input_hw,
        preprocessing=pre,
        input_name="frame",
        outputs={"label_map": "label_map", "logits": "logits"},
        extra={"align_corners": model.align_corners, "opset": opset,
               **({"label_ids": list(classes.label_ids)} if classes.label_ids else {})},
    )
    with steps.step(f"writing {Path(output).name}"):
        write_onnx(graph, meta, output)
    return meta
