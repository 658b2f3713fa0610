"""The description a model file carries about itself.

Converters store one JSON document under the key ``edgeseg`` in the ONNX file's
``metadata_props`` (``edgeseg build`` copies it into the header of an ``.engine``), so the runtime
needs nothing but the file: what kind of model it is, its classes and colours, the frame size the graph was built for,
and the pre-processing baked into the graph (recorded for tools; the runtime never re-applies it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeseg.errors import ModelFileError
from edgeseg.version import __version__

METADATA_KEY = "edgeseg"
FORMAT_VERSION = 1
KINDS = ("semantic", "instance")
#: what a graph computes in (``--precision``; edgeseg.precision makes the fp16 and int8 files)
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Preprocessing:
    """What the graph does to the raw frame before the network, in this order:
    BGR -> ``channel_order``, multiply by ``scale``, subtract ``mean``, divide by ``std``
    (per channel, in ``channel_order``), resize to the network input size (``resize`` mode)."""

    channel_order: str = "rgb"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    resize: str = "bilinear"


@dataclass(frozen=True)
class InstanceSpec:
    """What an instance model's graph does past the network (stored in ``extra``).

    ``max_detections`` is K, the rows of every per-detection output; ``row_trim``: the mask branch
    is row-wise in K, so the CPU backend may run it on the detected rows only; ``paste`` and
    ``mask_threshold``: how PasteMasks writes the frame-size masks, packed
    ``mask_bytes_per_word`` bytes to an int32 word; ``padded_hw``: the network input after
    padding; ``score_thresh``, ``max_candidates``, ``proposals``: the detection settings."""

    max_detections: int
    row_trim: bool
    paste: str
    mask_threshold: float
    score_thresh: float
    padded_hw: tuple[int, int]
    max_candidates: int
    proposals: int
    mask_bytes_per_word: int = 4

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> InstanceSpec:
        return cls(
            max_detections=int(extra["max_detections"]),
            row_trim=bool(extra.get("row_trim", False)),
            paste=str(extra["paste"]),
            mask_threshold=float(extra["mask_threshold"]),
            score_thresh=float(extra["score_thresh"]),
            padded_hw=(int(extra["padded_hw"][0]), int(extra["padded_hw"][1])),
            max_candidates=int(extra["max_candidates"]),
            proposals=int(extra["proposals"]),
        )


@dataclass(frozen=True)
class SemanticSpec:
    """What a semantic model's graph does past the network: ``align_corners`` of the logits'
    upsampling to the frame (the HRNet-OCR branch's convention when true)."""

    align_corners: bool

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> SemanticSpec:
        return cls(align_corners=bool(extra.get("align_corners", False)))


@dataclass(frozen=True)
class ModelMetadata:
    """Everything the runtime needs to know about a converted model.

    ``frame_hw`` is the (height, width) in pixels of the uint8 BGR frame the graph takes;
    ``input_hw`` the size the network itself runs at. ``palette`` holds one RGB colour per class.
    ``outputs`` maps a role (``label_map``, ``logits``, ...) to the graph's tensor name.
    ``extra`` carries model-specific facts (e.g. ``align_corners``). ``precision`` is what the
    graph computes in (``fp32``, ``fp16``, ``int8``: :mod:`edgeseg.precision`), with
    ``precision_details`` (rules, layers, calibration) for tools.
    """

    kind: str
    arch: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    frame_hw: tuple[int, int]
    input_hw: tuple[int, int]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    input_name: str = "frame"
    outputs: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    precision_details: dict[str, Any] = field(default_factory=dict)
    edgeseg_version: str = __version__
    format_version: int = FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def precision_summary(self) -> str:
        """One line on what the graph computes in, e.g. ``int8 (Q/DQ: 141 nodes, minmax on 128 images)``."""
        d = self.precision_details
        if self.precision == "fp16":
            return f"fp16 (mixed: {d.get('fp16_nodes', '?')} nodes in FP16, the rest FP32)"
        if self.precision == "int8":
            images = d.get("calibration_images")
            on = f" on {images} images" if images else " (statistics from a cache)"
            return f"int8 (Q/DQ: {d.get('quantized_nodes', '?')} nodes, {d.get('calibration_method', '?')}{on})"
        return "fp32"

    @property
    def instance(self) -> InstanceSpec | None:
        """The instance section (None for a semantic model); checked by :meth:`from_json`."""
        return InstanceSpec.from_extra(self.extra) if self.kind == "instance" else None

    @property
    def semantic(self) -> SemanticSpec | None:
        """The semantic section (None for an instance model)."""
        return SemanticSpec.from_extra(self.extra) if self.kind == "semantic" else None

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> ModelMetadata:
        """The metadata of a model file's key/value properties (ONNX ``metadata_props``, an
        engine's header); :class:`ModelFileError` when it has none or it is malformed."""
        text = props.get(METADATA_KEY)
        if text is None:
            raise ModelFileError(
                f"{source}: no edgeseg metadata; it was not written by `edgeseg convert` "
                "(convert the PyTorch model with `edgeseg convert`)"
            )
        return cls.from_json(text, source=source)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> ModelMetadata:
        """Parse and validate; raises :class:`ModelFileError` naming the bad field."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{source}: edgeseg metadata is not valid JSON ({exc.msg}); re-convert it") from exc
        if not isinstance(raw, dict):
            raise ModelFileError(f"{source}: edgeseg metadata is not a JSON object; re-convert it")
        version = raw.get("format_version")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise ModelFileError(
                f"{source}: metadata format {version!r} is newer than this edgeseg ({__version__}) reads; "
                "upgrade edgeseg"
            )
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ModelFileError(f"{source}: metadata format {version!r} is not one edgeseg writes (a whole number "
                                 "from 1); re-convert it")
        try:
            prep = raw["preprocessing"]
            meta = cls(
                kind=_text(raw["kind"], "kind"),
                arch=_text(raw["arch"], "arch"),
                classes=tuple(_text(c, "classes") for c in _items(raw["classes"], "classes")),
                palette=tuple(_colour(c) for c in _items(raw["palette"], "palette")),
                frame_hw=_size(raw["frame_hw"], "frame_hw"),
                input_hw=_size(raw["input_hw"], "input_hw"),
                preprocessing=Preprocessing(
                    **{
                        **prep,
                        "mean": _triple(prep["mean"], "mean"),
                        "std": _triple(prep["std"], "std"),
                    }
                ),
                input_name=_text(raw["input_name"], "input_name"),
                outputs={k: _text(v, "outputs") for k, v in _mapping(raw["outputs"], "outputs").items()},
                extra=dict(_mapping(raw.get("extra", {}), "extra")),
                precision=_text(raw.get("precision", "fp32"), "precision"),
                precision_details=dict(_mapping(raw.get("precision_details", {}), "precision_details")),
                edgeseg_version=str(raw.get("edgeseg_version", "unknown")),
                format_version=version,
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            detail = str(exc) if isinstance(exc, _FieldError) else repr(exc)
            raise ModelFileError(f"{source}: edgeseg metadata is malformed ({detail}); re-convert it") from exc
        if meta.kind not in KINDS:
            raise ModelFileError(f"{source}: unknown model kind {meta.kind!r} (known: {', '.join(KINDS)})")
        if meta.precision not in PRECISIONS:
            raise ModelFileError(f"{source}: unknown precision {meta.precision!r} (known: {', '.join(PRECISIONS)}); "
                                 "upgrade edgeseg")
        if len(meta.palette) != len(meta.classes):
            raise ModelFileError(f"{source}: metadata has {len(meta.classes)} classes but {len(meta.palette)} colours")
        try:  # the kind's own section, parsed here so that a bad file fails at load, not mid-run
            _ = meta.instance, meta.semantic
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelFileError(f"{source}: the {meta.kind} section of the metadata is malformed ({exc!r}); "
                                 "re-convert it") from exc
        return meta


# The schema of the metadata's fields: a wrong type is a _FieldError naming the field, so a file
# written by something else fails at load with one line, never later inside the runtime.
class _FieldError(ValueError):
    pass


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _FieldError(f"{name}: expected text, got {type(value).__name__}")
    return value


def _items(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise _FieldError(f"{name}: expected a list, got {type(value).__name__}")
    return value


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _FieldError(f"{name}: expected an object, got {type(value).__name__}")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _FieldError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def _size(value: Any, name: str) -> tuple[int, int]:
    pair = _items(value, name)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise _FieldError(f"{name}: expected [height, width] in pixels, both positive, got {value!r}")
    return int(pair[0]), int(pair[1])


def _triple(value: Any, name: str) -> tuple[float, float, float]:
    values = _items(value, name)
    if len(values) != 3:
        raise _FieldError(f"{name}: expected 3 values, got {value!r}")
    a, b, c = (_number(v, name) for v in values)
    return a, b, c


def _colour(value: Any) -> tuple[int, int, int]:
    rgb = _items(value, "palette")
    if len(rgb) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rgb):
        raise _FieldError(f"palette: expected [r, g, b] in 0..255, got {value!r}")
    return int(rgb[0]), int(rgb[1]), int(rgb[2])
