"""Stage-by-stage parity of an edgeseg model against the PyTorch model it came from.

``edgeseg compare MODEL --weights W.pth`` rebuilds the PyTorch model from the file's metadata
(architecture, classes, frame size, score threshold...) and the same weights, runs both on the
same frames and reports, per stage, the largest difference against a limit:

- semantic (HRNet): the logits (relative error: max |diff| / max |logit|), the label map (agreement
  where the top-2 logits differ by at least ``MARGIN``, and overall);
- instance (Mask R-CNN): the top detections' labels, boxes (IoU), scores and masks (IoU), row by
  row in score order, against torchvision's own inference.

The PyTorch side is the reference pipeline each model was trained with (the official HRNet
pre-processing; torchvision's ``MaskRCNN.forward``), so it checks the conversion end to end.
The test suite uses the same functions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import ArgumentError
from edgeseg.metadata import ModelMetadata, Preprocessing
from edgeseg.model import Model

MARGIN = 1e-3  # pixels whose top-2 logits are closer than this may legitimately flip
# The official code normalises with ImageNet's statistics, the graph's default preprocessing.
HRNET_MEAN = np.array(Preprocessing().mean)
HRNET_STD = np.array(Preprocessing().std)


@dataclass(frozen=True)
class Check:
    """One measured difference and its limit (``at_least``: the value must reach the limit,
    otherwise it must not exceed it)."""

    stage: str
    measure: str
    value: float
    limit: float
    at_least: bool

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def line(self) -> str:
        op = ">=" if self.at_least else "<="
        return f"{self.stage:<12}{self.measure:<44}{self.value:>12.6g}  (limit {op} {self.limit:g})  " + (
            "ok" if self.passed else "FAIL")


@dataclass(frozen=True)
class ParityReport:
    checks: list[Check]
    frames: int
    precision: str = "fp32"

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def text(self) -> str:
        lines = [c.line() for c in self.checks]
        failed = [c for c in self.checks if not c.passed]
        verdict = "PASS" if not failed else f"FAIL ({len(failed)} of {len(self.checks)} checks)"
        lines.append(f"{verdict}: edgeseg vs PyTorch on {self.frames} frame(s)" + (
            f" (limits for a {self.precision} file)" if self.precision != "fp32" else ""))
        return "\n".join(lines)


#: each check's limit by the file's precision: FP32 is parity; FP16 and INT8 files are held to
#: what their rounding allows (their accuracy is `edgeseg eval`'s to measure)
LIMITS: dict[str, dict[str, float]] = {
    "fp32": {"logits": 1e-4, "decided": 0.9999, "pixels": 0.999, "count": 1.0, "labels": 1.0, "boxes": 0.98,
             "scores": 1e-3, "masks": 0.98},
    "fp16": {"logits": 2e-2, "decided": 0.999, "pixels": 0.995, "matched": 0.98, "boxes": 0.95, "scores": 2e-2,
             "masks": 0.95},
    "int8": {"logits": 0.2, "decided": 0.98, "pixels": 0.95, "matched": 0.9, "boxes": 0.85, "scores": 0.1,
             "masks": 0.85},
}
#: reduced-precision files: the reference's detections scoring at least this are matched (lower
#: ones come and go with any rounding of the scores)
CONFIDENT = 0.3


# --- the PyTorch references -------------------------------------------------------------------

def hrnet_preprocess(frame_bgr: np.ndarray) -> torch.Tensor:
    """HRNet-Semantic-Segmentation's input transform: BGR->RGB, /255, minus mean, over std (float64
    then float32), as a [1, 3, H, W] tensor."""
    x = frame_bgr.astype(np.float64)[:, :, ::-1] / 255.0
    x = (x - HRNET_MEAN) / HRNET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))[None]


def hrnet_reference(model: nn.Module, frame_bgr: np.ndarray, input_hw: tuple[int, int] | None = None,
                    align_corners: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(1/4-res logits [1, C, h, w], frame-res logits [C, H, W], label map [H, W] uint8) from PyTorch eager."""
    h, w = frame_bgr.shape[:2]
    x = hrnet_preprocess(frame_bgr)
    with torch.no_grad():
        if input_hw and input_hw != (h, w):
            x = F.interpolate(x, size=input_hw, mode="bilinear", align_corners=False)
        logits = model(x)
        up = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=align_corners)
    return logits.numpy(), up[0].numpy(), up[0].argmax(0).numpy().astype(np.uint8)


class EagerReference(nn.Module):
    """A family whose reference is edgeseg's own eager rebuild of its inference, not a module
    torchvision runs (matterport: ``detect()`` rebuilt in PyTorch): :meth:`detections` gives
    what :func:`torchvision_reference` returns."""

    def detections(self, frame_bgr: np.ndarray) -> dict[str, np.ndarray]:
        """HxWx3 uint8 BGR frame -> boxes [N, 4] (x0, y0, x1, y1 frame pixels), scores [N],
        labels [N], masks bool [N, H, W], in score order."""
        raise NotImplementedError


def bgr_to_rgb_tensor(frame: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 BGR -> 3xHxW float RGB in [0, 1] (torchvision detection's input)."""
    return torch.from_numpy(np.ascontiguousarray(frame[:, :, ::-1])).permute(2, 0, 1).float() / 255.0


def torchvision_reference(model: nn.Module, frame_bgr: np.ndarray, mask_threshold: float = 0.5
                          ) -> dict[str, np.ndarray]:
    """torchvision's own inference: RGB float image in [0, 1]; masks foreground where > *mask_threshold*.
    A detectron2 model's reference is edgeseg's own reimplementation of its inference (the graph's
    module, run eagerly in PyTorch with the torch versions of the custom ops)."""
    from edgeseg.converters.maskrcnn.graph import FrameToDetections

    if isinstance(model, EagerReference):
        return model.detections(frame_bgr)
    if isinstance(model, FrameToDetections):
        from edgeseg.custom_ops import unpack_mask_bytes

        with torch.no_grad():
            num, boxes, scores, labels, masks = model(torch.from_numpy(np.ascontiguousarray(frame_bgr)))
        n = int(num[0])
        return {"boxes": boxes[:n].numpy(), "scores": scores[:n].numpy(), "labels": labels[:n].numpy(),
                "masks": unpack_mask_bytes(masks[:n].numpy(), frame_bgr.shape[1]).astype(bool)}
    with torch.no_grad():
        out = model([bgr_to_rgb_tensor(frame_bgr)])[0]
    return {
        "boxes": out["boxes"].numpy(),
        "scores": out["scores"].numpy(),
        "labels": out["labels"].numpy(),
        "masks": (out["masks"][:, 0] > mask_threshold).numpy(),
    }


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of corresponding rows, boxes as x0, y0, x1, y1 (pixels)."""
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return np.asarray(inter / np.maximum(area_a + area_b - inter, 1e-9))


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of corresponding masks [N, H, W]; two empty masks agree (IoU 1)."""
    a, b = a.astype(bool), b.astype(bool)
    inter = (a & b).sum((1, 2))
    union = (a | b).sum((1, 2))
    return np.asarray(np.where(union == 0, 1.0, inter / np.maximum(union, 1)))


# --- comparisons ------------------------------------------------------------------------------

def compare_semantic(model: Model, reference: nn.Module, frames: Sequence[np.ndarray]) -> ParityReport:
    """HRNet: logits and label maps of *model* (an edgeseg semantic model) vs *reference*."""
    meta = model.metadata
    limit = LIMITS[meta.precision]
    logits_name = meta.outputs.get("logits")
    rel_err, decided_agree, overall = 0.0, 1.0, 1.0
    for frame in frames:
        fitted = model.preprocess(frame)
        wanted = [n for n in (logits_name, meta.outputs["label_map"]) if n]
        out = model.run_outputs(fitted, wanted)
        ref_logits, ref_up, ref_labels = hrnet_reference(reference, fitted, meta.input_hw,
                                                         meta.semantic is not None and meta.semantic.align_corners)
        if logits_name:
            got = out[logits_name]
            rel_err = max(rel_err, float(np.abs(got - ref_logits).max() / np.abs(ref_logits).max()))
        labels = out[meta.outputs["label_map"]]
        top2 = np.sort(ref_up, axis=0)[-2:]
        decided = (top2[1] - top2[0]) >= MARGIN
        decided_agree = min(decided_agree, float((labels[decided] == ref_labels[decided]).mean()))
        overall = min(overall, float((labels == ref_labels).mean()))
    checks = [
        Check("label map", f"agreement where top-2 margin >= {MARGIN:g}", decided_agree, limit["decided"], True),
        Check("label map", "agreement, all pixels", overall, limit["pixels"], True),
    ]
    if logits_name:
        checks.insert(0, Check("logits", "max relative error", rel_err, limit["logits"], False))
    return ParityReport(checks, len(frames), meta.precision)


def compare_matched(model: Model, reference: nn.Module, frames: Sequence[np.ndarray]) -> ParityReport:
    """Mask R-CNN at FP16 / INT8: every confident detection of *reference* (score >=
    :data:`CONFIDENT`) matched to the same-class detection of *model* with the highest box IoU;
    the share matched (IoU >= 0.5), their mean box and mask IoU, their worst score difference."""
    limit = LIMITS[model.metadata.precision]
    found, wanted, box_ious, mask_ious, score_max = 0, 0, [], [], 0.0
    for frame in frames:
        fitted = model.preprocess(frame)
        ours = model.instances(fitted)
        ref = torchvision_reference(reference, fitted)
        for i in np.flatnonzero(ref["scores"] >= CONFIDENT):
            wanted += 1
            same = np.flatnonzero(ours.labels == ref["labels"][i])
            if not len(same):
                continue
            ious = box_iou(ref["boxes"][i:i + 1], ours.boxes[same])  # one box against each (broadcast)
            j = same[int(ious.argmax())]
            if ious.max() < 0.5:
                continue
            found += 1
            box_ious.append(float(ious.max()))
            mask_ious.append(float(mask_iou(ref["masks"][i:i + 1], ours.masks[j:j + 1])[0]))
            score_max = max(score_max, abs(float(ours.scores[j]) - float(ref["scores"][i])))
    checks = [
        Check("detections", f"confident ones (score >= {CONFIDENT:g}) matched", found / wanted if wanted else 1.0,
              limit["matched"], True),
        Check("boxes", "IoU of the matched, mean", float(np.mean(box_ious)) if box_ious else 1.0, limit["boxes"], True),
        Check("scores", "max abs difference, matched", score_max, limit["scores"], False),
        Check("masks", "IoU of the matched, mean", float(np.mean(mask_ious)) if mask_ious else 1.0, limit["masks"],
              True),
    ]
    return ParityReport(checks, len(frames), model.metadata.precision)


def compare_instance(model: Model, reference: nn.Module, frames: Sequence[np.ndarray], top: int = 50) -> ParityReport:
    """Mask R-CNN: the top detections of *model* vs torchvision's inference of *reference*, rank
    by rank (FP32 files: parity); :func:`compare_matched` for FP16 / INT8 files."""
    if model.metadata.precision != "fp32":
        return compare_matched(model, reference, frames)
    limit = LIMITS["fp32"]
    label_agree, box_min, score_max, mask_mean, count_ok = 1.0, 1.0, 0.0, 1.0, 1.0
    for frame in frames:
        fitted = model.preprocess(frame)
        ours = model.instances(fitted)
        ref = torchvision_reference(reference, fitted)
        n = min(top, len(ours), len(ref["boxes"]))
        count_ok = min(count_ok, float(len(ours) == len(ref["boxes"]) or n == top))
        if n == 0:
            continue
        label_agree = min(label_agree, float((ours.labels[:n] == ref["labels"][:n]).mean()))
        box_min = min(box_min, float(box_iou(ours.boxes[:n], ref["boxes"][:n]).min()))
        score_max = max(score_max, float(np.abs(ours.scores[:n] - ref["scores"][:n]).max()))
        mask_mean = min(mask_mean, float(mask_iou(ours.masks[:n], ref["masks"][:n]).mean()))
    checks = [
        Check("detections", f"same number (or both >= {top})", count_ok, limit["count"], True),
        Check("labels", f"agreement, top {top} by score", label_agree, limit["labels"], True),
        Check("boxes", "IoU, minimum", box_min, limit["boxes"], True),
        Check("scores", "max abs difference", score_max, limit["scores"], False),
        Check("masks", "IoU, mean (worst frame)", mask_mean, limit["masks"], True),
    ]
    return ParityReport(checks, len(frames), model.metadata.precision)


def reference_model(meta: ModelMetadata, weights: str | os.PathLike[str] | None,
                    allow_pickle: bool = False, config: str | os.PathLike[str] | None = None) -> nn.Module:
    """The PyTorch model an edgeseg file was converted from, rebuilt from its metadata with
    *weights* (None: the seeded random weights of ``edgeseg convert --random-weights``); a
    detectron2, maskrcnn-benchmark, Detectron or matterport model needs its *config* and is
    edgeseg's eager reimplementation of its inference (matterport: of ``detect()``); an HRNet
    converted from an official experiment file (HRNet-OCR always) is rebuilt from that *config*."""
    if meta.kind == "instance" and meta.arch.startswith("detectron2_"):
        from edgeseg.converters.detectron2 import model as d2model
        from edgeseg.converters.detectron2.export import build_detectron2, graph_options
        from edgeseg.converters.maskrcnn.graph import FrameToDetections

        if config is None:
            raise ArgumentError("a detectron2 model is compared with its config: --config config.yaml")
        assert meta.instance is not None
        cfg, model = build_detectron2(config, weights, allow_pickle)
        assert isinstance(model, nn.Module)  # a torchvision MaskRCNN
        options = graph_options(cfg, meta.instance.score_thresh, meta.instance.max_detections,
                                meta.instance.max_candidates, meta.instance.mask_threshold)
        return FrameToDetections(model, meta.frame_hw, options, d2model.conventions(cfg)).eval()
    if meta.kind == "semantic" and (config is not None or meta.arch.startswith("hrnet_ocr_")):
        from edgeseg.converters.hrnet.config import read_hrnet_config
        from edgeseg.converters.hrnet.export import build_hrnet_from_config

        if config is None:
            raise ArgumentError("an HRNet model converted from its experiment config is compared with it: --config "
                                "experiment.yaml")
        return build_hrnet_from_config(read_hrnet_config(config), weights, meta.num_classes, allow_pickle)
    if meta.kind == "instance" and meta.arch.startswith("matterport_"):
        from edgeseg.converters.matterport.export import reference as matterport_reference

        return matterport_reference(meta, config, weights)
    from edgeseg.converters.maskrcnn_benchmark.export import SOURCES

    family = next((f for f, source in SOURCES.items() if meta.arch.startswith(source.arch_prefix + "_")), None)
    if meta.kind == "instance" and family is not None:
        from edgeseg.converters.maskrcnn.graph import FrameToDetections
        from edgeseg.converters.maskrcnn_benchmark import model as mrbmodel
        from edgeseg.converters.maskrcnn_benchmark.export import graph_options as mrb_options
        from edgeseg.converters.maskrcnn_benchmark.export import read as mrb_read

        if config is None:
            raise ArgumentError(f"a {family} model is compared with its config: --config C.yaml")
        assert meta.instance is not None
        mrb_cfg, mrb_model = mrb_read(family, config, weights, allow_pickle)
        mrb_graph = mrb_options(mrb_cfg, meta.instance.score_thresh, meta.instance.max_detections,
                                meta.instance.max_candidates, meta.instance.mask_threshold)
        return FrameToDetections(mrb_model, meta.frame_hw, mrb_graph, mrbmodel.conventions(mrb_cfg)).eval()
    if meta.kind == "semantic" and meta.arch.startswith("hrnetv2_"):
        from edgeseg.converters.hrnet.export import build_hrnet

        return build_hrnet(meta.arch.removeprefix("hrnetv2_"), meta.num_classes, weights,
                           meta.semantic is not None and meta.semantic.align_corners, allow_pickle)
    if meta.kind == "instance" and meta.arch.startswith("maskrcnn_"):
        from edgeseg.converters.maskrcnn.export import build_maskrcnn

        model = build_maskrcnn(meta.arch.removeprefix("maskrcnn_"), meta.num_classes, weights, allow_pickle)
        # the graph's own settings, as converted
        assert meta.instance is not None
        model.roi_heads.score_thresh = meta.instance.score_thresh
        model.roi_heads.detections_per_img = meta.instance.max_detections
        return model
    raise ArgumentError(f"edgeseg compare knows HRNetV2 and Mask R-CNN models; this one is {meta.kind} {meta.arch}")


def compare(model: Model, reference: nn.Module, frames: Sequence[np.ndarray]) -> ParityReport:
    """Parity of *model* against *reference* on *frames* (any size; each is fitted to the model's frame)."""
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if model.metadata.kind == "semantic":
        return compare_semantic(model, reference, frames)
    return compare_instance(model, reference, frames)
