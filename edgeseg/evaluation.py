"""Accuracy of a model on a labelled data set: COCO box/mask AP and semantic mIoU.

Both functions take a *predictor*, anything callable ``frame -> result`` with the contract of an
:class:`edgeseg.Model` (HxWx3 uint8 BGR frame in, result in the frame's coordinates out): a
loaded model, or a wrapper around the PyTorch model (``edgeseg.converters.reference``), so a converted
model and its source are scored by the same code on the same frames. Images are read with
OpenCV (BGR), in file-name order.

Importing this module needs numpy and OpenCV only; :func:`coco_instance_ap` imports pycocotools
when called.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg import ranges
from edgeseg.errors import ArgumentError, BackendUnavailableError, SourceError
from edgeseg.progress import FrameProgress
from edgeseg.result import InstanceResult, SemanticResult
from edgeseg.sources import IMAGE_SUFFIXES

#: COCOeval's summary rows that :func:`coco_instance_ap` reports (index into ``stats``)
COCO_STATS = {"AP": 0, "AP50": 1, "AP75": 2, "AP_small": 3, "AP_medium": 4, "AP_large": 5, "AR100": 8}


def _pycocotools() -> tuple[Any, Any, Any]:
    """(pycocotools.mask, COCO, COCOeval), or :class:`BackendUnavailableError` saying how to get them."""
    try:
        from pycocotools import mask as mask_utils  # type: ignore[import-untyped]
        from pycocotools.coco import COCO  # type: ignore[import-untyped]
        from pycocotools.cocoeval import COCOeval  # type: ignore[import-untyped]
    except ImportError as exc:
        raise BackendUnavailableError("COCO AP needs pycocotools: pip install pycocotools") from exc
    return mask_utils, COCO, COCOeval


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"cannot read image {path}; check that it exists and is a PNG or JPEG")
    return image


def _instances(result: object, path: Path) -> InstanceResult:
    if not isinstance(result, InstanceResult):
        raise ArgumentError(f"{path.name}: the predictor returned {type(result).__name__}, not an InstanceResult; "
                            "COCO AP needs an instance model (Mask R-CNN)")
    return result


Predictor = Callable[[np.ndarray], InstanceResult | SemanticResult]
"""frame -> result: an :class:`edgeseg.Model`, ``model.instances`` / ``model.semantic``, or a PyTorch wrapper."""


def coco_instance_ap(
    predict: Predictor,
    coco_json: str | os.PathLike[str],
    image_dir: str | os.PathLike[str],
    *,
    category_map: Mapping[int, int] | None = None,
    max_images: int | None = None,
    quiet: bool = True,
) -> dict[str, float]:
    """COCO box and mask AP of *predict* on the images of *coco_json* (read from *image_dir*).

    Every image listed in *coco_json* is read, passed to *predict*, and its detections are scored
    with pycocotools' ``COCOeval`` (masks RLE-encoded with ``pycocotools.mask.encode``, boxes as
    ``[x, y, w, h]``, up to 100 detections per image). A detection's category id is its label,
    or ``category_map[label]`` when given (labels missing from the map are dropped).
    *max_images*: only the first N images (by id). Returns ``mask_AP``, ``mask_AP50``,
    ``mask_AP75``, ``box_AP``, ... (keys ``<iou type>_<COCO_STATS name>``, in 0..1) and ``images``.
    """
    if max_images is not None:
        ranges.check("max_images", max_images, 1, integer=True)
    mask_utils, coco_cls, coco_eval_cls = _pycocotools()
    json_path, folder = Path(coco_json), Path(image_dir)
    if not json_path.is_file():
        raise SourceError(f"COCO annotations {json_path} not found; pass the instances .json of the data set")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = coco_cls(str(json_path))
    # pycocotools: json's ValueError for a damaged file, an AssertionError or a lookup error for another format
    except (ValueError, AssertionError, KeyError, TypeError, AttributeError) as exc:
        reason = "not JSON (truncated or damaged)" if isinstance(exc, ValueError) else "not COCO instances JSON"
        raise SourceError(f"COCO annotations {json_path}: {reason}; pass the instances .json of the data set") from exc
    image_ids = sorted(gt.getImgIds())[:max_images]
    boxes: list[dict[str, Any]] = []
    masks: list[dict[str, Any]] = []
    progress = FrameProgress(len(image_ids), quiet=quiet)
    for image_id in image_ids:
        info = gt.imgs[image_id]
        path = folder / info["file_name"]
        frame = _read_image(path)
        result = _instances(predict(frame), path)
        h, w = frame.shape[:2]
        if len(result) and result.masks.shape[1:] != (h, w):
            raise ArgumentError(f"{path.name}: the predictor's masks are {result.masks.shape[1:]}, not the frame's "
                                f"{(h, w)}; return results in frame coordinates")
        if not len(result):
            progress.update()
            continue
        rles = mask_utils.encode(np.asfortranarray(np.moveaxis(result.masks != 0, 0, -1).astype(np.uint8)))
        for i in range(len(result)):
            label = int(result.labels[i])
            category = label if category_map is None else category_map.get(label)
            if category is None:
                continue
            x0, y0, x1, y1 = (float(v) for v in result.boxes[i])
            common = {"image_id": image_id, "category_id": int(category), "score": float(result.scores[i])}
            boxes.append({**common, "bbox": [x0, y0, x1 - x0, y1 - y0]})
            masks.append({**common, "segmentation": rles[i]})
        progress.update()
    progress.finish()
    metrics: dict[str, float] = {}
    for iou_type, prefix, detections in (("segm", "mask", masks), ("bbox", "box", boxes)):
        stats = _coco_stats(gt, detections, image_ids, iou_type, coco_eval_cls)
        metrics.update({f"{prefix}_{name}": stats[i] for name, i in COCO_STATS.items()})
    metrics["images"] = float(len(image_ids))
    return metrics


def _coco_stats(gt: Any, detections: list[dict[str, Any]], image_ids: list[int], iou_type: str,
                coco_eval_cls: Any) -> list[float]:
    if not detections:  # loadRes cannot take an empty list; nothing detected scores 0
        return [0.0] * 12
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(detections)
        ev = coco_eval_cls(gt, dt, iou_type)
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # COCOeval reports -1 where there is nothing to score (e.g. no small objects): keep it as is.
    return [float(v) for v in ev.stats]


def _label_lut(class_map: Mapping[int, int] | None, ignore_label: int) -> np.ndarray | None:
    if class_map is None:
        return None
    lut = np.full(65536, ignore_label, np.int64)
    for src, dst in class_map.items():
        if not 0 <= int(src) < lut.size:
            raise ArgumentError(f"class_map key {src} is not a label value (0..65535)")
        lut[int(src)] = int(dst)
    return lut


def semantic_miou(
    predict: Predictor,
    image_dir: str | os.PathLike[str],
    label_dir: str | os.PathLike[str],
    num_classes: int,
    ignore_label: int = 255,
    class_map: Mapping[int, int] | None = None,
    *,
    max_images: int | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Mean IoU of *predict* over the images of *image_dir* against the label maps in *label_dir*.

    Image ``name.ext`` is scored against ``label_dir/name.png`` (8- or 16-bit grey, one class id
    per pixel). *class_map* maps label values to class ids first (e.g. Cityscapes ids -> train
    ids; unmapped values are ignored); pixels labelled *ignore_label* or outside
    0..num_classes - 1 are not scored. One confusion matrix is summed over all images;
    IoU = TP / (TP + FP + FN) per class, and classes absent from both the labels and the
    predictions (IoU undefined, reported as None) are left out of the mean. Predicted ids
    outside 0..num_classes - 1 count as wrong.

    Returns ``mIoU``, ``pixel_accuracy``, ``per_class_IoU`` (class name -> IoU or None; names
    from the result's ``classes`` when it has num_classes of them), ``confusion`` (rows: label,
    columns: prediction) and ``images``.
    """
    ranges.check("ignore_label", ignore_label, 0, 255, integer=True)
    if max_images is not None:
        ranges.check("max_images", max_images, 1, integer=True)
    if num_classes < 1:
        raise ArgumentError(f"num_classes must be >= 1, got {num_classes}")
    images_path, labels_path = Path(image_dir), Path(label_dir)
    if not images_path.is_dir() or not labels_path.is_dir():
        missing = images_path if not images_path.is_dir() else labels_path
        raise SourceError(f"folder {missing} not found; pass the data set's image and label folders")
    files = sorted(p for p in images_path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:max_images]
    if not files:
        raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images_path}")
    lut = _label_lut(class_map, ignore_label)
    n = num_classes
    confusion = np.zeros((n, n + 1), np.int64)  # last column: predictions outside 0..n-1
    names: tuple[str, ...] = tuple(str(i) for i in range(n))
    progress = FrameProgress(len(files), quiet=quiet)
    for path in files:
        label_path = labels_path / f"{path.stem}.png"
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if label is None or label.ndim != 2:
            raise SourceError(f"label map {label_path} for {path.name} is missing or not a grey image; "
                              "label maps are single-channel PNGs named like their images")
        frame = _read_image(path)
        result = predict(frame)
        if not isinstance(result, SemanticResult):
            raise ArgumentError(f"{path.name}: the predictor returned {type(result).__name__}, not a "
                                "SemanticResult; mIoU needs a semantic model (HRNet)")
        pred = result.label_map
        if pred.shape != label.shape:
            raise ArgumentError(f"{path.name}: label map is {label.shape[0]}x{label.shape[1]} but the prediction "
                                f"is {pred.shape[0]}x{pred.shape[1]}; return results in frame coordinates")
        if len(result.classes) == n:
            names = result.classes
        gt = label.astype(np.int64)
        if lut is not None:
            gt = lut[gt]
        valid = (gt != ignore_label) & (gt >= 0) & (gt < n)
        p = pred.astype(np.int64)[valid]
        p = np.where((p >= 0) & (p < n), p, n)
        confusion += np.bincount(gt[valid] * (n + 1) + p, minlength=n * (n + 1)).reshape(n, n + 1)
        progress.update()
    progress.finish()
    tp = np.diag(confusion[:, :n]).astype(np.float64)
    union = confusion.sum(1) + confusion[:, :n].sum(0) - tp
    iou = [float(t / u) if u > 0 else None for t, u in zip(tp, union, strict=True)]
    present = [v for v in iou if v is not None]
    total = int(confusion.sum())
    return {
        "mIoU": float(np.mean(present)) if present else 0.0,
        "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
        "per_class_IoU": dict(zip(names, iou, strict=True)),
        "confusion": confusion[:, :n].tolist(),
        "images": len(files),
    }
