"""The custom ONNX ops of edgeseg's Mask R-CNN graphs, described as data.

In the ONNX file each op is a node whose ``op_type`` is the TensorRT plugin's name, in the ONNX
domain ``edgeseg``, with ``plugin_version`` and ``plugin_namespace`` attributes: TensorRT's ONNX
parser maps a node it does not know to the plugin registered under that name, version and
namespace (our plugin library, ``plugins/``). ONNX Runtime does not know them either; the CPU
backend runs them with the CPU build of the same kernel math (``edgeseg.ops``).

Semantics, inputs and attributes of each op: ``plugins/<op>/README.md`` and the docstrings of
:func:`edgeseg.ops.multilevel_roi_align`, :func:`edgeseg.ops.paste_masks` and
:func:`edgeseg.ops.zoom_linear`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DOMAIN = "edgeseg"
PLUGIN_NAMESPACE = "edgeseg"
PLUGIN_VERSION = "1"

Attrs = Mapping[str, Any]
Kernel = Callable[[Attrs, Sequence[np.ndarray], int], list[np.ndarray]]


@dataclass(frozen=True)
class Attribute:
    """One attribute of a custom op, as ``plugins/<op>/op.json`` specifies it (a test holds the
    two equal): ``type`` is ``int``, ``float`` or ``floats``; the rest bound its values."""

    name: str
    type: str
    default: Any
    min: float | None = None
    exclusive_min: bool = False
    choices: tuple[int, ...] | None = None
    length: tuple[int, int] | None = None  # floats: fewest and most values
    multiple_of: int | None = None
    required: bool = False
    #: written to an ONNX node only when not at its default (attributes added after files were
    #: already written: those files stay byte-identical, and so do the nodes written now that do
    #: not use them, which plugin libraries from before the attribute still load)
    optional: bool = False

    def problem(self, value: Any) -> str | None:
        """What is wrong with *value* for this attribute, or None."""
        values = list(value) if self.type == "floats" else [value]
        if self.length is not None and not self.length[0] <= len(values) <= self.length[1]:
            return f"{self.name} must hold {self.length[0]} to {self.length[1]} values, got {len(values)}"
        for v in values:
            if self.type == "int" and (not isinstance(v, int) or isinstance(v, bool)):
                return f"{self.name} must be an integer, got {v!r}"
            if self.type != "int" and not isinstance(v, (int, float)):
                return f"{self.name} must be a number, got {v!r}"
            if self.choices is not None and v not in self.choices:
                return f"{self.name} must be one of {', '.join(map(str, self.choices))}, got {v!r}"
            if self.min is not None and (v <= self.min if self.exclusive_min else v < self.min):
                return f"{self.name} must be {'>' if self.exclusive_min else '>='} {self.min:g}, got {v!r}"
            if self.multiple_of is not None and v % self.multiple_of:
                return f"{self.name} must be a multiple of {self.multiple_of}, got {v!r}"
        return None


@dataclass(frozen=True)
class CustomOp:
    """One custom op: its node type, attributes and CPU implementation.

    ``coordinate_inputs``: the inputs that are always FP32 (boxes, RoIs); the op's other float
    inputs and its float output share one type, FP32 or FP16 (the type combinations the plugin
    declares, and what :mod:`edgeseg.precision.fp16` gives it).

    ``fp32_only``: the op computes in FP32 (or wider) in every precision, inputs and output: an
    FP16 file leaves the node out of its FP16 region, and ``edgeseg lint`` refuses an FP16 output.

    ``constraint``: what is wrong with a node's full attribute set as a whole (a window that does
    not fit its canvas), or None; checked after each attribute alone."""

    op_type: str
    attributes: tuple[Attribute, ...]
    kernel: Kernel
    coordinate_inputs: tuple[int, ...] = ()
    fp32_only: bool = False
    constraint: Callable[[Attrs], str | None] | None = None

    @property
    def defaults(self) -> dict[str, Any]:
        return {a.name: a.default for a in self.attributes}

    def node_attributes(self, **values: Any) -> dict[str, Any]:
        """All attributes of a node (defaults filled in, plugin identity added); ValueError naming
        the op and the attribute when one is unknown, missing or out of its range."""
        known = {a.name: a for a in self.attributes}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"{self.op_type}: unknown attribute(s) {sorted(unknown)}")
        attrs = self.checked(values)
        attrs["plugin_version"] = PLUGIN_VERSION
        attrs["plugin_namespace"] = PLUGIN_NAMESPACE
        return attrs

    def checked(self, values: Attrs) -> dict[str, Any]:
        """*values* (a node's attributes, as written or hand-edited) with the defaults of the
        absent ones filled in; ValueError naming the op and the attribute when one is missing or
        out of its range, or when the set breaks the op's constraint. Names the op does not know
        (``plugin_version``...) are kept unchecked."""
        attrs = {**self.defaults, **values}
        for a in self.attributes:
            if a.required and a.name not in values:
                raise ValueError(f"{self.op_type}: attribute {a.name} is required")
            problem = a.problem(attrs[a.name])
            if problem:
                raise ValueError(f"{self.op_type}: {problem}")
        problem = self.constraint(attrs) if self.constraint else None
        if problem:
            raise ValueError(f"{self.op_type}: {problem}")
        return attrs


def _roi_align_kernel(attrs: Attrs, inputs: Sequence[np.ndarray], threads: int) -> list[np.ndarray]:
    from edgeseg import ops

    # Nodes carry no optional attribute at its default, and files written before an attribute
    # existed lack it: both mean the default. A hand-edited value out of range is a typed error.
    attrs = MULTILEVEL_ROI_ALIGN.checked(attrs)
    rois, *features = inputs
    # FP16 features (an fp16 file): the kernels read half, sum in float and round the output to
    # nearest, which is what computing on exact float copies and rounding the result gives.
    half = features[0].dtype == np.float16
    out = ops.multilevel_roi_align(
        [f.astype(np.float32) for f in features] if half else list(features),
        rois,
        (int(attrs["output_height"]), int(attrs["output_width"])),
        [float(s) for s in attrs["spatial_scales"]],
        sampling_ratio=int(attrs["sampling_ratio"]),
        aligned=bool(attrs["aligned"]),
        canonical_scale=float(attrs["canonical_scale"]),
        canonical_level=int(attrs["canonical_level"]),
        threads=threads,
        level_rule=int(attrs["level_rule"]),
        sampling=ROI_SAMPLINGS[int(attrs["sampling"])],
        image_area=float(attrs["image_area"]),
    )
    return [out.astype(np.float16) if half else out]


PASTE_MODES = ("torchvision", "continuous", "zoom")
#: MultiLevelRoIAlign's level_rule values, by index (plugins/multilevel_roi_align/op.json)
LEVEL_RULES = ("torchvision", "detectron", "matterport")
#: MultiLevelRoIAlign's sampling values, by index: RoIAlign bins (rois in image pixels) or
#: tf.image.crop_and_resize (rois normalised, matterport)
ROI_SAMPLINGS = ("roi_align", "crop_and_resize")

#: Mask bytes per element of PasteMasks' output.  TensorRT plugins cannot have uint8 (or bool)
#: inputs or outputs, so the op hands its uint8 planes over as int32 words of four consecutive
#: bytes: a reinterpretation, not a conversion, that costs nothing on either backend.
MASK_BYTES_PER_WORD = 4


def pack_mask_bytes(masks: np.ndarray) -> np.ndarray:
    """View uint8 masks [K, H, W] (W a multiple of 4, C-contiguous) as PasteMasks' int32 [K, H, W / 4]."""
    return masks.view(np.int32)


def unpack_mask_bytes(words: np.ndarray, width: int) -> np.ndarray:
    """uint8 masks [K, H, width] of PasteMasks' int32 output [K, H, W / 4] (a view when possible).

    *width* is the frame width; the op's ``width`` attribute is that rounded up to a multiple of 4,
    and the columns beyond the frame are cut off here.  uint8 input (files written before the
    packing) is returned as it is.
    """
    if words.dtype == np.uint8:
        return words
    return np.ascontiguousarray(words).view(np.uint8)[..., :width]


def packed_mask_width(width: int) -> int:
    """The ``width`` attribute PasteMasks gets for a frame *width* pixels wide (next multiple of 4)."""
    return -(-width // MASK_BYTES_PER_WORD) * MASK_BYTES_PER_WORD


def _paste_kernel(attrs: Attrs, inputs: Sequence[np.ndarray], threads: int) -> list[np.ndarray]:
    from edgeseg import ops

    attrs = PASTE_MASKS.checked(attrs)  # a hand-edited mode out of range: a typed error
    masks, boxes, *count = inputs
    out = ops.paste_masks(
        masks.astype(np.float32) if masks.dtype == np.float16 else masks,
        boxes,
        (int(attrs["height"]), int(attrs["width"])),
        mode=PASTE_MODES[int(attrs["mode"])],
        threshold=float(attrs["threshold"]),
        logits=bool(attrs["logits"]),
        threads=threads,
        count=int(count[0].reshape(-1)[0]) if count else None,
    )
    return [pack_mask_bytes(out)]


#: Why sampling 1 is paired with level_rule 2 (ops.py, the plugin and op.json say the same).
CROP_AND_RESIZE_PAIRING = (
    "plugin libraries from before sampling 1 drop the attribute unread and would run RoIAlign on the "
    "normalised rois without an error; they refuse level_rule 2, so the pairing makes them fail instead"
)


def _roi_align_pairing(attrs: Attrs) -> str | None:
    """sampling 1 only with level_rule 2; level_rule 2 needs the molded image's area."""
    if ROI_SAMPLINGS[attrs["sampling"]] == "crop_and_resize" and LEVEL_RULES[attrs["level_rule"]] != "matterport":
        return (f"sampling 1 (crop_and_resize) requires level_rule 2 (matterport), got level_rule "
                f"{attrs['level_rule']}: {CROP_AND_RESIZE_PAIRING}")
    if LEVEL_RULES[attrs["level_rule"]] == "matterport" and not attrs["image_area"] > 0:
        return ("image_area must be > 0 with level_rule 2 (matterport): the molded image's height * width in "
                f"pixels; got {attrs['image_area']!r}")
    return None


#: inputs: rois [R, 5] float (batch index, x0, y0, x1, y1 in image pixels; with sampling 1
#: normalised, 0 and 1 the centres of the first and last pixel), then L feature maps
#: [N, C, H_l, W_l]; output [R, C, output_height, output_width].
MULTILEVEL_ROI_ALIGN = CustomOp(
    "MultiLevelRoIAlign",
    (
        Attribute("output_height", "int", 7, min=1),
        Attribute("output_width", "int", 7, min=1),
        Attribute("spatial_scales", "floats", [0.25, 0.125, 0.0625, 0.03125], min=0, exclusive_min=True, length=(1, 8)),
        Attribute("sampling_ratio", "int", 2),
        Attribute("aligned", "int", 0, choices=(0, 1)),
        Attribute("canonical_scale", "float", 224.0, min=0, exclusive_min=True),
        Attribute("canonical_level", "int", 4),
        Attribute("level_rule", "int", 0, choices=tuple(range(len(LEVEL_RULES)))),
        Attribute("sampling", "int", 0, choices=tuple(range(len(ROI_SAMPLINGS))), optional=True),
        Attribute("image_area", "float", 0.0, min=0, optional=True),
    ),
    _roi_align_kernel,
    coordinate_inputs=(0,),
    constraint=_roi_align_pairing,
)

#: inputs: masks [K, M, M] float, boxes [K, 4] float (x0, y0, x1, y1 in frame pixels), and
#: optionally count int32 [1] (num_detections: only the first count rows are pasted; files
#: written before it have two inputs and paste all K); output int32 [K, height, width / 4]: the
#: bytes of uint8 planes [K, height, width], 1 = foreground (see MASK_BYTES_PER_WORD; width must be
#: a multiple of 4). Rows from count on are not written by the op: read the first count rows.
PASTE_MASKS = CustomOp(
    "PasteMasks",
    (
        Attribute("height", "int", 0, min=1, required=True),
        Attribute("width", "int", 0, min=1, multiple_of=MASK_BYTES_PER_WORD, required=True),
        Attribute("threshold", "float", 0.5),
        Attribute("mode", "int", 0, choices=tuple(range(len(PASTE_MODES)))),
        Attribute("logits", "int", 0, choices=(0, 1)),
    ),
    _paste_kernel,
    coordinate_inputs=(1,),
)



def _zoom_kernel(attrs: Attrs, inputs: Sequence[np.ndarray], threads: int) -> list[np.ndarray]:
    from edgeseg import ops

    attrs = ZOOM_LINEAR.checked(attrs)
    image, value_range = inputs
    names = ("height", "width", "canvas_height", "canvas_width", "top", "left")
    out = ops.zoom_linear(image, value_range, **{n: int(attrs[n]) for n in names},
                          mean=[float(m) for m in attrs["mean"]], threads=threads)
    return [out]


def attribute_decimal(value: float) -> float:
    """The double a float32 ``floats`` attribute value stands for: the shortest decimal (1 to 9
    significant digits, ``%.*g``) whose double rounds to the same float32, as a double.

    ONNX float attributes and TensorRT plugin fields are float32, but matterport subtracts its
    MEAN_PIXEL (123.7) as float64, and ``float32(v - 123.7)`` differs from ``float32(v -
    float32(123.7))`` for 128 of 256 pixel values. ZoomLinear reads ``mean`` back this way
    (plugins/zoom_linear/zoom_linear_mean.h, the same rule): the config's value whenever it has at
    most 6 significant digits."""
    f = np.float32(value)
    if not np.isfinite(f):
        return float(f)
    for digits in range(1, 10):
        decimal = float(f"{float(f):.{digits}g}")
        if np.float32(decimal) == f:
            return decimal
    return float(f)  # unreachable: 9 digits round-trip every float32


def zoom_means(mean: Sequence[float], channels: int) -> list[float]:
    """The doubles ZoomLinear subtracts from the *channels* channels of an image, from its ``mean``
    attribute (one value per channel, or one for all; :func:`attribute_decimal`); ValueError when
    it holds another number of values."""
    if len(mean) not in (1, channels):
        raise ValueError(f"ZoomLinear: mean must hold 1 or C = {channels} values, got {len(mean)}")
    return [attribute_decimal(m) for m in mean] * (channels if len(mean) == 1 else 1)


def _zoom_window(attrs: Attrs) -> str | None:
    """The zoomed image must lie inside the canvas."""
    for near, size, extent in (("top", "height", "canvas_height"), ("left", "width", "canvas_width")):
        if attrs[near] + attrs[size] > attrs[extent]:
            return (f"{near} + {size} ({attrs[near]} + {attrs[size]}) exceeds {extent} ({attrs[extent]}): "
                    "the zoomed image must lie inside the canvas")
    return None


#: inputs: image float32 [H, W, C] holding integer pixel values (a frame cast to float, channels
#: in the network's order) and value_range float32 [2] = (min, max) of the whole image; output
#: float32 [C, canvas_height, canvas_width]: skimage's linear zoom of the image to height x width
#: in double (matterport's resize), clipped to value_range, truncated to an integer, placed at
#: (top, left) of a zero canvas, minus mean in double, rounded to float32. Always FP32.
ZOOM_LINEAR = CustomOp(
    "ZoomLinear",
    (
        Attribute("height", "int", 0, min=1, required=True),
        Attribute("width", "int", 0, min=1, required=True),
        Attribute("canvas_height", "int", 0, min=1, required=True),
        Attribute("canvas_width", "int", 0, min=1, required=True),
        Attribute("top", "int", 0, min=0),
        Attribute("left", "int", 0, min=0),
        Attribute("mean", "floats", [0.0], length=(1, 8)),
    ),
    _zoom_kernel,
    coordinate_inputs=(0, 1),
    fp32_only=True,
    constraint=_zoom_window,
)

CUSTOM_OPS: dict[str, CustomOp] = {op.op_type: op for op in (MULTILEVEL_ROI_ALIGN, PASTE_MASKS, ZOOM_LINEAR)}


def custom_ops_in(graph: Any) -> tuple[str, ...]:
    """The edgeseg custom ops (TensorRT plugins) an ONNX ``GraphProto`` uses, sorted."""
    return tuple(sorted({n.op_type for n in graph.node if n.domain == DOMAIN}))
