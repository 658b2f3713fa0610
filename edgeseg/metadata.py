"""The description a model file carries about itself.

Converters store one JSON document under the key ``edgeseg`` in the ONNX file's
``metadata_props`` (and, later, next to a TensorRT engine), so the runtime needs nothing but the
file: what kind of model it is, its classes and colours, the frame size the graph was built for,
and the pre-processing baked into the graph (recorded for tools; the runtime never re-applies it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeseg.errors import ModelFileError
from edgeseg.version import __version__

METADATA_KEY = "edgeseg"
FORMAT_VERSION = 1
KINDS = ("semantic", "instance")


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
class ModelMetadata:
    """Everything the runtime needs to know about a converted model.

    ``frame_hw`` is the (height, width) in pixels of the uint8 BGR frame the graph takes;
    ``input_hw`` the size the network itself runs at. ``palette`` holds one RGB colour per class.
    ``outputs`` maps a role (``label_map``, ``logits``, ...) to the graph's tensor name.
    ``extra`` carries model-specific facts (e.g. ``align_corners``).
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
    edgeseg_version: str = __version__
    format_version: int = FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.classes)

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
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelFileError(
                f"{source}: metadata format {version!r} is newer than this edgeseg ({__version__}) reads; "
                "upgrade edgeseg"
            )
        try:
            meta = cls(
                kind=str(raw["kind"]),
                arch=str(raw["arch"]),
                classes=tuple(str(c) for c in raw["classes"]),
                palette=tuple((int(c[0]), int(c[1]), int(c[2])) for c in raw["palette"]),
                frame_hw=(int(raw["frame_hw"][0]), int(raw["frame_hw"][1])),
                input_hw=(int(raw["input_hw"][0]), int(raw["input_hw"][1])),
                preprocessing=Preprocessing(
                    **{
                        **raw["preprocessing"],
                        "mean": tuple(raw["preprocessing"]["mean"]),
                        "std": tuple(raw["preprocessing"]["std"]),
                    }
                ),
                input_name=str(raw["input_name"]),
                outputs={str(k): str(v) for k, v in raw["outputs"].items()},
                extra=dict(raw.get("extra", {})),
                edgeseg_version=str(raw.get("edgeseg_version", "unknown")),
                format_version=version,
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelFileError(f"{source}: edgeseg metadata is malformed ({exc!r}); re-convert it") from exc
        if meta.kind not in KINDS:
            raise ModelFileError(f"{source}: unknown model kind {meta.kind!r} (known: {', '.join(KINDS)})")
        if len(meta.palette) != len(meta.classes):
            raise ModelFileError(f"{source}: metadata has {len(meta.classes)} classes but {len(meta.palette)} colours")
        return meta
