"""An FP32 edgeseg ONNX file -> the same model at ``fp16`` or ``int8``, metadata updated."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from edgeseg.atomic import atomic_output, check_writable
from edgeseg.errors import ArgumentError, CacheError
from edgeseg.metadata import METADATA_KEY, ModelMetadata
from edgeseg.precision import calibration, int8
from edgeseg.precision.fp16 import to_fp16
from edgeseg.precision.rules import PRECISIONS, PrecisionRules
from edgeseg.progress import Steps


@dataclass(frozen=True)
class Calibration:
    """How an INT8 file is calibrated: up to *count* images of *images* (a folder), by *method*
    (``minmax``, ``entropy``, ``percentile``); statistics read from and written to *cache*
    (default: a file per model and image set under :func:`~edgeseg.precision.calibration.cache_dir`)."""

    images: Path | None = None
    count: int = calibration.DEFAULT_COUNT
    method: str = int8.DEFAULT_METHOD
    cache: Path | None = None


def check_precision(precision: str, calib: Calibration | None) -> None:
    """Refuse a bad precision or calibration request before any long work (typed errors)."""
    if precision not in PRECISIONS:
        raise ArgumentError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    given = calib is not None and (calib.images is not None or calib.cache is not None)
    if precision != "int8":
        if given:
            raise ArgumentError(f"--calib-images / --calib-cache are for --precision int8, not {precision}")
        return
    c = calib or Calibration()
    int8._method(c.method)
    if c.cache is not None and c.cache.is_dir():
        raise CacheError(f"--calib-cache {c.cache}: it is a folder; give a file name such as {c.cache / 'stats.json'}")
    if c.images is None and (c.cache is None or not c.cache.is_file()):
        raise ArgumentError(calibration.NEEDS_IMAGES)
    if c.images is not None:
        calibration.CalibrationSet.from_folder(c.images, c.count, (1, 1), warn=False)  # the folder's errors, now
    if c.cache is not None and not c.cache.is_file():
        check_writable(c.cache)  # written after calibrating: a missing folder is said now, not minutes later
    if c.cache is not None and c.cache.is_file() and c.images is None:
        calibration.check_statistics(c.cache, can_recalibrate=False)


def _load(path: Path) -> Any:
    import onnx

    return onnx.load(str(path))


def _metadata(model: Any) -> ModelMetadata:
    return ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}, source="exported graph")


def _with_metadata(model: Any, meta: ModelMetadata) -> None:
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = meta.to_json()
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()


def apply_precision(src: Path, output: Path, precision: str, rules: PrecisionRules,
                    calib: Calibration | None = None, steps: Steps | None = None,
                    stream: TextIO | None = None, quiet: bool = True) -> ModelMetadata:
    """Write the FP32 edgeseg ONNX file *src* at *precision* to *output* (atomically); return
    the new metadata (``precision`` and ``precision_details`` set)."""
    import onnx

    check_precision(precision, calib)
    steps = steps or Steps(1, quiet=True)
    model = _load(src)
    meta = _metadata(model)
    if precision == "fp32":
        raise ValueError("apply_precision: the file is fp32 already")
    if meta.precision != "fp32":
        raise ArgumentError(f"{src.name} is {meta.precision} already; convert from the FP32 file")
    reduced = rules.reduced(model.graph)
    details: dict[str, Any] = {"rules": rules.family}
    if precision == "fp16":
        with steps.step(f"FP16 graph: {len(reduced)} of {len(model.graph.node)} nodes in FP16"):
            converted = to_fp16(model, reduced)
            details["fp16_nodes"] = len(reduced)
    else:
        c = calib or Calibration()
        nodes = rules.quantized(model.graph)
        cache = c.cache
        images = calibration.CalibrationSet.from_folder(c.images, c.count, meta.frame_hw) if c.images else None
        if cache is None:
            assert images is not None
            key = calibration.cache_key(model.SerializeToString(), c.method, images, nodes)
            cache = calibration.cache_dir() / f"{meta.arch}-{key}.json"
            cache.parent.mkdir(parents=True, exist_ok=True)
        if cache.is_file() and calibration.check_statistics(cache, can_recalibrate=images is not None):
            with steps.step(f"calibration statistics from {cache}"):
                pass
        else:
            assert images is not None
            with steps.step(f"calibrating on {len(images.images)} image(s) of {images.folder} ({c.method})"):
                int8.calibrate(model, meta, images, c.method, cache, nodes, stream=stream, quiet=quiet)
        with steps.step(f"INT8 Q/DQ graph: {len(nodes)} nodes quantized"), \
                tempfile.TemporaryDirectory(prefix="edgeseg-int8-") as tmp:
            quantized = Path(tmp) / "int8.onnx"
            int8.quantize(src, model.graph, quantized, nodes, c.method, cache)
            # the quantizer's new tensors get their types (edgeseg's CPU backend needs every tensor typed)
            converted = onnx.shape_inference.infer_shapes(_load(quantized))
        details.update({"quantized_nodes": len(nodes), "calibration_method": c.method,
                        "calibration_images": len(images.images) if images else None})
    new_meta = dataclasses.replace(meta, precision=precision, precision_details=details)
    del converted.metadata_props[:]
    for prop in model.metadata_props:
        converted.metadata_props.add().CopyFrom(prop)
    _with_metadata(converted, new_meta)
    with atomic_output(output) as part:
        onnx.save(converted, str(part))
    return new_meta

