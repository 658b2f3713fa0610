"""CPU versions of edgeseg's custom ops, numpy in and numpy out.

The TensorRT plugins ``MultiLevelRoIAlign``, ``PasteMasks`` and ``ZoomLinear`` compute their math
with the header-only functions in ``plugins/*/…_math.h``; this module calls the same functions
compiled for the CPU into ``edgeseg/_ops_cpu`` (a plain shared library loaded with ctypes, built
by ``pip install -e .``). See ``plugins/README.md`` and each op's README for the exact semantics.

    from edgeseg import ops
    pooled = ops.multilevel_roi_align([p2, p3, p4, p5], rois, 7, [1/4, 1/8, 1/16, 1/32])
    masks = ops.paste_masks(mask_probs, boxes, (1080, 1920))       # [K, 1080, 1920] uint8 0/1
    molded = ops.zoom_linear(rgb, None, height=341, width=512, canvas_height=512,
                             canvas_width=512, top=85, mean=[123.7, 116.8, 103.9])  # [3, 512, 512]

Coordinates are in pixels with (0, 0) the top-left corner of the top-left pixel, so pixel
(col j, row i) covers [j, j + 1) x [i, i + 1) and has its centre at (j + 0.5, i + 0.5). Boxes
are (x0, y0, x1, y1) edges in that system. This module never imports torch.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeGuard

import numpy as np
import numpy.typing as npt

from edgeseg.custom_ops import (
    CROP_AND_RESIZE_PAIRING,
    LEVEL_RULES,
    PASTE_MODES,
    ROI_SAMPLINGS,
    ZOOM_LINEAR,
    zoom_means,
)
from edgeseg.errors import BackendUnavailableError

__all__ = ["library_path", "multilevel_roi_align", "paste_masks", "roi_align", "roi_levels", "zoom_linear"]

_LIB_STEM = "_ops_cpu"
_ABI_VERSION = 3  # must equal edgeseg_ops_abi_version() in plugins/multilevel_roi_align/roi_align_cpu.cpp
_BUILD_HINT = (
    "build it with `pip install -e .` from the edgeseg repository (needs a C++ compiler with "
    "OpenMP, e.g. g++), or `python setup.py build_ext --inplace`"
)

_F32_C = np.ctypeslib.ndpointer(dtype=np.float32, flags="C_CONTIGUOUS")
_I64_C = np.ctypeslib.ndpointer(dtype=np.int64, flags="C_CONTIGUOUS")
_U8_C = np.ctypeslib.ndpointer(dtype=np.uint8, flags="C_CONTIGUOUS")

_lib: ctypes.CDLL | None = None
_lib_path: Path | None = None


# ----------------------------------------------------------------------------------------------
# Loading the shared library


def _candidates() -> list[Path]:
    """Where the library may be: next to this file (in-place and editable builds), then wherever
    the import system would find the extension module ``edgeseg._ops_cpu``."""
    here = Path(__file__).resolve().parent
    found = sorted(here.glob(f"{_LIB_STEM}*.so")) + sorted(here.glob(f"{_LIB_STEM}*.pyd"))
    found += sorted(here.glob(f"{_LIB_STEM}*.dylib"))
    try:
        spec = importlib.util.find_spec(f"edgeseg.{_LIB_STEM}")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin and spec.origin not in ("built-in", "frozen"):
        found.append(Path(spec.origin).resolve())
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def _declare(lib: ctypes.CDLL) -> None:
    lib.edgeseg_ops_abi_version.restype = ctypes.c_int32
    lib.edgeseg_ops_abi_version.argtypes = []
    lib.edgeseg_roi_levels.restype = ctypes.c_int32
    lib.edgeseg_roi_levels.argtypes = [
        _F32_C, ctypes.c_int64, _F32_C, ctypes.c_int64, ctypes.c_float, ctypes.c_int64, ctypes.c_int32,
        ctypes.c_float, _I64_C,
    ]
    lib.edgeseg_multilevel_roi_align_f32.restype = ctypes.c_int32
    lib.edgeseg_multilevel_roi_align_f32.argtypes = [
        ctypes.POINTER(ctypes.c_void_p),  # features (one pointer per level)
        _I64_C,  # heights
        _I64_C,  # widths
        _F32_C,  # spatial_scales
        ctypes.c_int64,  # num_levels
        ctypes.c_int64,  # batch_size
        ctypes.c_int64,  # channels
        _F32_C,  # rois
        ctypes.c_int64,  # num_rois
        ctypes.c_int64,  # out_h
        ctypes.c_int64,  # out_w
        ctypes.c_int64,  # sampling_ratio
        ctypes.c_int32,  # aligned
        ctypes.c_float,  # canonical_scale
        ctypes.c_int64,  # canonical_level
        ctypes.c_int32,  # level_rule
        ctypes.c_float,  # image_area
        ctypes.c_int32,  # sampling
        ctypes.c_int32,  # threads
        _F32_C,  # output
    ]
    lib.edgeseg_paste_masks_u8.restype = ctypes.c_int32
    lib.edgeseg_paste_masks_u8.argtypes = [
        _F32_C,  # masks
        ctypes.c_int64,  # num_masks
        ctypes.c_int64,  # mask_size
        _F32_C,  # boxes
        ctypes.c_int64,  # height
        ctypes.c_int64,  # width
        ctypes.c_float,  # threshold
        ctypes.c_int32,  # mode
        ctypes.c_int32,  # logits
        ctypes.c_int32,  # threads
        ctypes.c_int32,  # per_pixel
        _U8_C,  # output
    ]


def _library() -> ctypes.CDLL:
    """The loaded CPU library; raises BackendUnavailableError saying how to build it."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    candidates = _candidates()
    if not candidates:
        raise BackendUnavailableError(
            f"edgeseg's CPU ops library ({_LIB_STEM}) is not built: {_BUILD_HINT}"
        )
    problems: list[str] = []
    # The kernels run between ONNX Runtime segments: OpenMP threads that busy-wait after a kernel
    # would steal the cores ONNX Runtime needs next. Read by libgomp when it loads, so set it first.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for path in candidates:
        try:
            lib = np.ctypeslib.load_library(path.name, str(path.parent))
            _declare(lib)
            _declare_zoom_linear(lib)
            version = int(lib.edgeseg_ops_abi_version())
        except (OSError, AttributeError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        if version != _ABI_VERSION:
            problems.append(f"{path}: ABI version {version}, this edgeseg needs {_ABI_VERSION}")
            continue
        _lib, _lib_path = lib, path
        return lib
    raise BackendUnavailableError(
        f"edgeseg's CPU ops library ({_LIB_STEM}) cannot be used ({'; '.join(problems)}): "
        f"rebuild it: {_BUILD_HINT}"
    )


def library_path() -> Path:
    """Path of the loaded CPU ops library (loading it if needed)."""
    _library()
    assert _lib_path is not None
    return _lib_path


# ----------------------------------------------------------------------------------------------
# Argument checking


def _is_int(value: object) -> TypeGuard[int | np.integer]:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _float32(value: npt.ArrayLike, name: str) -> np.ndarray:
    """*value* as a C-contiguous float32 array; integer and floating inputs are converted."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a float32 array (integer and float dtypes are converted); "
                         f"got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _output_size(output_size: int | Sequence[int]) -> tuple[int, int]:
    size: tuple[int, int] | None = None
    if _is_int(output_size):
        size = (int(output_size), int(output_size))
    elif isinstance(output_size, Sequence) and len(output_size) == 2:
        first, second = output_size
        if _is_int(first) and _is_int(second):
            size = (int(first), int(second))
    if size is None:
        raise ValueError(f"output_size must be an int or (height, width) ints; got {output_size!r}")
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"output_size must be positive; got {output_size!r}")
    return size


def _int_arg(value: object, name: str) -> int:
    if not _is_int(value):
        raise ValueError(f"{name} must be an int; got {value!r}")
    return int(value)


def _threads(threads: object) -> int:
    if not _is_int(threads) or int(threads) < 0:
        raise ValueError(f"threads must be an int >= 0 (0 = OpenMP's default); got {threads!r}")
    return int(threads)


def _real(value: object) -> TypeGuard[int | float | np.integer | np.floating]:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _finite_float(value: object, name: str) -> float:
    if not _real(value) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite float; got {value!r}")
    return float(value)


def _positive_float(value: object, name: str) -> float:
    if not _real(value) or not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{name} must be positive and finite; got {value!r}")
    return float(value)


def _rois(rois: npt.ArrayLike, batch_size: int) -> np.ndarray:
    arr = _float32(rois, "rois")
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"rois must have shape [R, 5] (batch index, x0, y0, x1, y1); got shape {arr.shape}")
    if arr.shape[0]:
        index = arr[:, 0]
        bad = ~(np.isfinite(index) & (np.trunc(index) >= 0) & (np.trunc(index) < batch_size))
        if bad.any():
            raise ValueError(
                f"rois[:, 0] must be batch indices in [0, {batch_size}) (the features' N); "
                f"got {float(index[bad][0])!r} in row {int(np.flatnonzero(bad)[0])}"
            )
    return arr


def _scales(spatial_scales: Sequence[float] | npt.ArrayLike, levels: int) -> np.ndarray:
    arr = np.asarray(spatial_scales, dtype=np.float64).reshape(-1)
    if arr.size != levels:
        raise ValueError(
            f"spatial_scales must have one entry per feature level ({levels}); got {arr.size}"
        )
    if not (np.isfinite(arr) & (arr > 0)).all():
        raise ValueError(f"spatial_scales must be positive and finite; got {arr.tolist()}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _features(features: npt.ArrayLike, name: str) -> np.ndarray:
    arr = _float32(features, name)
    if arr.ndim != 4:
        raise ValueError(f"{name} must have shape [N, C, H, W]; got shape {arr.shape}")
    if arr.shape[2] < 1 or arr.shape[3] < 1:
        raise ValueError(f"{name} must have H >= 1 and W >= 1; got shape {arr.shape}")
    return arr


def _check(status: int, op: str) -> None:
    if status != 0:  # the Python checks above should make this unreachable
        raise ValueError(f"{op}: the CPU library rejected its arguments (status {status})")


# ----------------------------------------------------------------------------------------------
# Ops


def _level_rule(value: int) -> int:
    rule = _int_arg(value, "level_rule")
    if not 0 <= rule < len(LEVEL_RULES):
        names = [f"{i} ({name})" for i, name in enumerate(LEVEL_RULES)]
        raise ValueError(f"level_rule must be {', '.join(names[:-1])} or {names[-1]}; got {rule}")
    return rule


def _image_area(value: object, rule: int) -> float:
    """image_area, checked: finite and >= 0, and > 0 where the matterport level rule reads it."""
    if not _real(value) or not math.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"image_area must be a finite number >= 0; got {value!r}")
    if LEVEL_RULES[rule] == "matterport" and not float(value) > 0:
        raise ValueError(
            "image_area must be > 0 with level_rule 2 (matterport): the molded image's height * width in pixels; "
            f"got {value!r}"
        )
    return float(value)


def _sampling(value: object) -> int:
    """The sampling's index in ROI_SAMPLINGS, from its name or its index."""
    if isinstance(value, str) and value in ROI_SAMPLINGS:
        return ROI_SAMPLINGS.index(value)
    if _is_int(value) and 0 <= int(value) < len(ROI_SAMPLINGS):
        return int(value)
    raise ValueError(
        f"sampling must be one of {', '.join(repr(n) for n in ROI_SAMPLINGS)} (or its index); got {value!r}"
    )


def roi_levels(
    rois: npt.ArrayLike,
    spatial_scales: Sequence[float] | npt.ArrayLike,
    canonical_scale: float = 224.0,
    canonical_level: int = 4,
    level_rule: int = 0,
    image_area: float = 0.0,
) -> npt.NDArray[np.int64]:
    """Feature level (0 = first, finest) :func:`multilevel_roi_align` pools each RoI from.

    torchvision's ``LevelMapper`` rule (FPN paper, eq. 1), in float32 as torchvision computes
    it: ``k = floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6)`` clamped to
    ``[k_min, k_max]``, minus ``k_min``, where ``area = (x1 - x0) * (y1 - y0)`` in image pixels and
    ``k_min`` / ``k_max`` are ``round(-log2(scale))`` of the first / last spatial scale. A RoI
    with a negative area gets ``-1`` (no level; its pooled output is all zeros, as in
    torchvision). With a single level every RoI gets 0.

    *level_rule* 1 is Detectron's and maskrcnn-benchmark's rule instead: ``k = floor(
    canonical_level + log2(sqrt(area) / canonical_scale + 1e-6))`` with the +1 area
    ``(x1 - x0 + 1) * (y1 - y0 + 1)``.

    *level_rule* 2 is matterport's ``PyramidROIAlign`` (TF's ``log2_graph`` and ``tf.round``):
    ``k = canonical_level + round_half_even(log(sqrt(h * w) / (canonical_scale /
    sqrt(image_area))) / log(2))`` in float32, with ``h = y1 - y0``, ``w = x1 - x0`` in the rois'
    own units (matterport: normalised, as ``sampling="crop_and_resize"`` takes them) and
    *image_area* the molded image's height * width in pixels (> 0). A box whose ``h * w`` is not
    > 0 (zero-padded rows) or whose term is NaN gets level 0, as in matterport (TF casts
    ``log(0) = -inf`` to INT_MIN, which its ``max`` lifts to the first level).

    *rois* is ``[R, 5]`` (batch index, x0, y0, x1, y1); the batch index is not used here.
    """
    arr = _float32(rois, "rois")
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"rois must have shape [R, 5] (batch index, x0, y0, x1, y1); got shape {arr.shape}")
    scales = np.asarray(spatial_scales, dtype=np.float64).reshape(-1)
    if scales.size == 0:
        raise ValueError("spatial_scales must hold one scale per feature level; got none")
    scales_f32 = _scales(scales, scales.size)
    cs = _positive_float(canonical_scale, "canonical_scale")
    cl = _int_arg(canonical_level, "canonical_level")
    levels = np.empty(arr.shape[0], dtype=np.int64)
    rule = _level_rule(level_rule)
    area = _image_area(image_area, rule)
    status = _library().edgeseg_roi_levels(arr, arr.shape[0], scales_f32, scales_f32.size, cs, cl, rule, area,
                                           levels)
    _check(status, "roi_levels")
    return levels


def multilevel_roi_align(
    features_list: Sequence[npt.ArrayLike],
    rois: npt.ArrayLike,
    output_size: int | Sequence[int],
    spatial_scales: Sequence[float] | npt.ArrayLike,
    sampling_ratio: int = -1,
    aligned: bool = False,
    canonical_scale: float = 224.0,
    canonical_level: int = 4,
    threads: int = 0,
    level_rule: int = 0,
    sampling: str | int = "roi_align",
    image_area: float = 0.0,
) -> npt.NDArray[np.float32]:
    """RoIAlign over an FPN pyramid: each RoI is pooled from the level :func:`roi_levels` picks.

    Same result as ``torchvision.ops.MultiScaleRoIAlign`` (which always uses ``aligned=False``)
    given the same scales.

    Args:
        features_list: L feature maps ``[N, C, H_l, W_l]`` (same N and C), finest first.
        rois: ``[R, 5]`` rows (batch index, x0, y0, x1, y1); box edges in input-image pixels,
            batch index in ``[0, N)`` (truncated to int).
        output_size: bins per RoI, an int or (height, width).
        spatial_scales: L feature pixels per image pixel, e.g. ``[1/4, 1/8, 1/16, 1/32]``;
            should be powers of two (levels are ``round(-log2(scale))``).
        sampling_ratio: bilinear samples per bin and axis; ``<= 0`` = adaptive,
            ``ceil(roi_size / output_size)`` per RoI and axis (in feature pixels).
        aligned: ``True`` shifts boxes by -0.5 feature pixel so that feature pixel ``j`` is
            centred at ``j + 0.5`` and does not enlarge RoIs smaller than one feature pixel
            (Detectron2); ``False`` is the legacy convention (pixel ``j`` at ``j``, RoIs at least
            1 x 1 feature pixel).
        canonical_scale, canonical_level, level_rule, image_area: FPN level rule, see
            :func:`roi_levels`.
        threads: OpenMP threads; 0 = OpenMP's default.
        sampling: ``"roi_align"`` (0, the above) or ``"crop_and_resize"`` (1):
            ``tf.image.crop_and_resize(..., method="bilinear", extrapolation_value=0)`` on the
            chosen level, matterport's ``PyramidROIAlign``. The rois' x0, y0, x1, y1 are then
            *normalised* (matterport's x1, y1, x2, y2 after ``norm_boxes``): 0 is the centre of
            the first feature pixel and 1 the centre of the last, on every level. Output cell
            (i, j) is one bilinear sample at ``y = y0 * (H - 1) + i * ((y1 - y0) * (H - 1) /
            (out_h - 1))`` (float32, TF's order; the first and last samples on the box edges;
            ``out_h == 1``: the centre, ``0.5 * (y0 + y1) * (H - 1)`` in double) and the same
            along x; a sample outside ``[0, H - 1] x [0, W - 1]`` is 0. *sampling_ratio* and
            *aligned* are not read. Only with *level_rule* 2 (matterport): a plugin library
            from before sampling 1 ignores the attribute but refuses level_rule 2, so a graph
            it cannot run fails to build rather than giving RoIAlign's values.

    Returns:
        ``[R, C, out_h, out_w]`` float32.
    """
    if isinstance(features_list, np.ndarray) or not isinstance(features_list, Sequence):
        raise ValueError("features_list must be a list of [N, C, H, W] arrays, one per level")
    if len(features_list) == 0:
        raise ValueError("features_list must hold at least one [N, C, H, W] array; got an empty list")
    feats = [_features(f, f"features_list[{i}]") for i, f in enumerate(features_list)]
    n, c = feats[0].shape[:2]
    for i, f in enumerate(feats[1:], start=1):
        if f.shape[:2] != (n, c):
            raise ValueError(
                f"features_list[{i}] has shape {f.shape}, but every level must have the N and C "
                f"of features_list[0] ({n}, {c})"
            )
    return _roi_align_levels(
        feats, rois, output_size, spatial_scales, sampling_ratio, aligned,
        canonical_scale, canonical_level, threads, level_rule, sampling, image_area,
    )


def roi_align(
    features: npt.ArrayLike,
    rois: npt.ArrayLike,
    output_size: int | Sequence[int],
    spatial_scale: float,
    sampling_ratio: int = -1,
    aligned: bool = False,
    threads: int = 0,
) -> npt.NDArray[np.float32]:
    """``torchvision.ops.roi_align`` on one feature map (average of bilinear samples per bin).

    Args:
        features: ``[N, C, H, W]``.
        rois: ``[R, 5]`` rows (batch index, x0, y0, x1, y1); box edges in input-image pixels,
            batch index in ``[0, N)`` (truncated to int).
        output_size: bins per RoI, an int or (height, width).
        spatial_scale: feature pixels per image pixel (e.g. 1/16).
        sampling_ratio, aligned, threads: as in :func:`multilevel_roi_align`.

    Sample points outside ``[-1, H] x [-1, W]`` (feature pixels) contribute 0, points in
    ``[-1, 0)`` are clamped to 0, and points beyond the last row or column use it alone.

    Returns:
        ``[R, C, out_h, out_w]`` float32.
    """
    feats = [_features(features, "features")]
    scale = _positive_float(spatial_scale, "spatial_scale")
    return _roi_align_levels(feats, rois, output_size, [scale], sampling_ratio, aligned, 224.0, 4, threads, 0)


def _roi_align_levels(
    feats: list[np.ndarray],
    rois: npt.ArrayLike,
    output_size: int | Sequence[int],
    spatial_scales: Sequence[float] | npt.ArrayLike,
    sampling_ratio: int,
    aligned: bool,
    canonical_scale: float,
    canonical_level: int,
    threads: int,
    level_rule: int,
    sampling: str | int = "roi_align",
    image_area: float = 0.0,
) -> npt.NDArray[np.float32]:
    n, c = feats[0].shape[:2]
    rois_f32 = _rois(rois, n)
    out_h, out_w = _output_size(output_size)
    scales = _scales(spatial_scales, len(feats))
    ratio = _int_arg(sampling_ratio, "sampling_ratio")
    cs = _positive_float(canonical_scale, "canonical_scale")
    cl = _int_arg(canonical_level, "canonical_level")
    rule = _level_rule(level_rule)
    area = _image_area(image_area, rule)
    mode = _sampling(sampling)
    if ROI_SAMPLINGS[mode] == "crop_and_resize" and LEVEL_RULES[rule] != "matterport":
        raise ValueError(f"sampling 'crop_and_resize' (1) requires level_rule 2 (matterport); got level_rule {rule}: "
                         f"{CROP_AND_RESIZE_PAIRING}")
    nthreads = _threads(threads)
    lib = _library()

    r = rois_f32.shape[0]
    out = np.empty((r, c, out_h, out_w), dtype=np.float32)
    if out.size == 0:
        return out
    pointers = (ctypes.c_void_p * len(feats))(*[f.ctypes.data for f in feats])
    heights = np.array([f.shape[2] for f in feats], dtype=np.int64)
    widths = np.array([f.shape[3] for f in feats], dtype=np.int64)
    status = lib.edgeseg_multilevel_roi_align_f32(
        pointers, heights, widths, scales, len(feats), n, c, rois_f32, r, out_h, out_w,
        ratio, int(bool(aligned)), cs, cl, rule, area, mode, nthreads, out,
    )
    _check(status, "multilevel_roi_align")
    return out


def paste_masks(
    masks: npt.ArrayLike,
    boxes: npt.ArrayLike,
    frame_hw: tuple[int, int] | Sequence[int],
    mode: str = "torchvision",
    threshold: float = 0.5,
    logits: bool = False,
    threads: int = 0,
    count: int | None = None,
) -> npt.NDArray[np.uint8]:
    """Paste K box-relative M x M masks into K binary frame-sized planes.

    Args:
        masks: ``[K, M, M]`` mask probabilities (or logits when *logits* is true: a sigmoid is
            applied to every mask sample before interpolation; the zero border stays 0).
        boxes: ``[K, 4]`` box edges (x0, y0, x1, y1) in frame pixels, one per mask.
        frame_hw: (height, width) of the frame in pixels.
        mode: how the mask is resampled onto the frame:

            * ``"torchvision"``: exactly ``torchvision.models.detection.roi_heads.
              paste_masks_in_image`` then ``value > threshold``: the mask gets a one-pixel zero
              border, the box is grown about its centre by (M + 2) / M and truncated to integer
              pixel indices, the bordered mask is resized to that integer size with bilinear
              interpolation (``align_corners=False``) and placed at its top-left pixel.
            * ``"continuous"``: Detectron2's ``_do_paste_mask`` then ``value >= threshold``: the
              centre (x + 0.5, y + 0.5) of frame pixel (x, y) is mapped into the continuous box
              and the mask is read there with bilinear ``grid_sample`` (``align_corners=False``,
              zero padding), i.e. mask sample j covers [x0 + j w / M, x0 + (j + 1) w / M).
            * ``"zoom"``: matterport's ``utils.unmold_mask`` then ``value >= threshold``: the
              box edges are rounded to integers (they should already be; exclusive ends), the
              mask is zoomed to the box's integer size as ``skimage.transform.resize(order=1,
              mode="constant", anti_aliasing=False)`` does (scipy's half-pixel linear zoom with
              a zero border, in float64), clipped to the mask's own [min, max] (NaN samples skipped,
              skimage's ``nanmin`` / ``nanmax``; a pixel that reads a NaN is background) and placed at the
              box's top-left pixel; boxes of zero width or height paste nothing.

        threshold: foreground when value > threshold (torchvision) or >= threshold
            (continuous, zoom), compared in float32. Pixels outside a box's pasted area (or outside
            the mask's bilinear support) are background whatever the threshold.
        logits: see *masks*.
        threads: OpenMP threads; 0 = OpenMP's default.
        count: paste only the first *count* masks (the op's third input, ``num_detections``);
            ``None`` = all K. The graph op leaves rows from *count* on unwritten (on TensorRT they
            hold whatever the buffer held); here they are zero.

    Returns:
        ``[K, H, W]`` uint8, 1 = foreground, 0 = background. The work done is proportional to
        the boxes' areas; the rest of the output is zero-filled.
    """
    return _paste_masks(masks, boxes, frame_hw, mode, threshold, logits, threads, per_pixel=False, count=count)


def _paste_masks(
    masks: npt.ArrayLike,
    boxes: npt.ArrayLike,
    frame_hw: tuple[int, int] | Sequence[int],
    mode: str,
    threshold: float,
    logits: bool,
    threads: int,
    per_pixel: bool,
    count: int | None = None,
) -> npt.NDArray[np.uint8]:
    """:func:`paste_masks`; *per_pixel* runs the math header's one-pixel function for every
    pixel, as the CUDA kernel will, instead of the CPU fast path (same bytes; for tests)."""
    arr = _float32(masks, "masks")
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2] or arr.shape[1] < 1:
        raise ValueError(f"masks must have shape [K, M, M] with M >= 1; got shape {arr.shape}")
    k, m = arr.shape[0], arr.shape[1]
    box = _float32(boxes, "boxes")
    if box.shape != (k, 4):
        raise ValueError(
            f"boxes must have shape [K, 4] (x0, y0, x1, y1) with K = {k} (one per mask); "
            f"got shape {box.shape}"
        )
    if (
        not isinstance(frame_hw, Sequence)
        or len(frame_hw) != 2
        or not all(_is_int(v) and int(v) > 0 for v in frame_hw)
    ):
        raise ValueError(f"frame_hw must be (height, width) with positive ints; got {frame_hw!r}")
    height, width = int(frame_hw[0]), int(frame_hw[1])
    if mode not in PASTE_MODES:
        raise ValueError(f"mode must be one of {', '.join(repr(m) for m in PASTE_MODES)}; got {mode!r}")
    thr = _finite_float(threshold, "threshold")
    nthreads = _threads(threads)
    if count is not None and not _is_int(count):
        raise ValueError(f"count must be an int or None; got {count!r}")
    # Negative counts paste nothing and counts past K paste all K, as the CUDA kernel clamps them.
    live = k if count is None else min(max(int(count), 0), k)
    lib = _library()

    # np.zeros costs nothing for rows never written (the OS hands out zeroed pages lazily).
    out = np.empty((k, height, width), dtype=np.uint8) if live == k else np.zeros((k, height, width), np.uint8)
    if live == 0:
        return out
    status = lib.edgeseg_paste_masks_u8(
        arr, live, m, box, height, width, thr, PASTE_MODES.index(mode), int(bool(logits)), nthreads,
        int(per_pixel), out,
    )
    _check(status, "paste_masks")
    return out



# ----------------------------------------------------------------------------------------------
# ZoomLinear


def _declare_zoom_linear(lib: ctypes.CDLL) -> None:
    lib.edgeseg_zoom_linear_f32.restype = ctypes.c_int32
    lib.edgeseg_zoom_linear_f32.argtypes = [
        _F32_C,  # image
        ctypes.c_int64,  # rows
        ctypes.c_int64,  # cols
        ctypes.c_int64,  # channels
        _F32_C,  # value_range
        _F32_C,  # mean
        ctypes.c_int64,  # num_means
        ctypes.c_int64,  # height
        ctypes.c_int64,  # width
        ctypes.c_int64,  # canvas_height
        ctypes.c_int64,  # canvas_width
        ctypes.c_int64,  # top
        ctypes.c_int64,  # left
        ctypes.c_int32,  # threads
        ctypes.c_int32,  # per_element
        _F32_C,  # output
    ]


def zoom_linear(
    image: npt.ArrayLike,
    value_range: npt.ArrayLike | None,
    *,
    height: int,
    width: int,
    canvas_height: int,
    canvas_width: int,
    top: int = 0,
    left: int = 0,
    mean: Sequence[float] = (0.0,),
    threads: int = 0,
) -> npt.NDArray[np.float32]:
    """matterport's molded input (``MaskRCNN.mold_inputs`` in "square" mode), bit for bit.

    The image is zoomed to *height* x *width* with skimage's linear resize
    (``resize(order=1, mode='constant', cval=0, anti_aliasing=False, preserve_range=True)``:
    scipy's grid-mode zoom, half-pixel centres, samples outside the image 0) computed in float64
    in scipy's order of operations, clipped to *value_range*, truncated toward zero
    (``astype(uint8)``), placed with its top-left pixel at canvas pixel (*top*, *left*) of a zero
    *canvas_height* x *canvas_width* canvas, and *mean* subtracted in float64 with the result
    rounded to float32. Zoom factors are ``H / height`` and ``W / width``; ``height == H`` copies.

    Args:
        image: ``[H, W, C]`` pixel values (integers; uint8 is converted to float32).
        value_range: ``(min, max)`` the zoomed values are clipped to: the image's minimum and
            maximum over all channels (skimage's clip); ``None`` computes them from *image*.
        height, width: the zoomed size in pixels (>= 1).
        canvas_height, canvas_width: the output's size; the zoomed image must fit at (top, left).
        top, left: canvas row / column of the zoomed image's first pixel (>= 0).
        mean: subtracted from every canvas value, one per channel or one for all (1 to 8 values).
        threads: OpenMP threads; 0 = OpenMP's default.

    Returns:
        ``[C, canvas_height, canvas_width]`` float32 (channels first, as the network reads it);
        outside the zoomed image ``0 - mean``. ValueError naming the problem for a bad argument.
    """
    return _zoom_linear(image, value_range, height, width, canvas_height, canvas_width, top, left, mean, threads,
                        per_element=False)


def _zoom_linear(
    image: npt.ArrayLike,
    value_range: npt.ArrayLike | None,
    height: int,
    width: int,
    canvas_height: int,
    canvas_width: int,
    top: int,
    left: int,
    mean: Sequence[float],
    threads: int,
    per_element: bool,
) -> npt.NDArray[np.float32]:
    """:func:`zoom_linear`; *per_element* runs the math header's one-element function for every
    output element, as the CUDA kernel does, instead of the CPU fast path (same bits; for tests)."""
    arr = _float32(image, "image")
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(f"image must have shape [H, W, C] with H, W, C >= 1; got shape {arr.shape}")
    rows, cols, channels = arr.shape
    attrs = ZOOM_LINEAR.node_attributes(height=height, width=width, canvas_height=canvas_height,
                                        canvas_width=canvas_width, top=top, left=left, mean=list(mean))
    zoom_means(attrs["mean"], channels)  # 1 or C values
    means = np.asarray(attrs["mean"], dtype=np.float32)  # the attribute's float32 values, as on TensorRT
    if not np.isfinite(means).all():
        raise ValueError(f"mean must be finite; got {list(mean)}")
    if value_range is None:
        bounds = np.array([arr.min(), arr.max()], dtype=np.float32)
    else:
        bounds = _float32(value_range, "value_range").reshape(-1)
        if bounds.shape != (2,) or not np.isfinite(bounds).all() or bounds[0] > bounds[1]:
            raise ValueError(f"value_range must be (min, max), finite, min <= max; got {bounds.tolist()}")
    nthreads = _threads(threads)
    lib = _library()
    out = np.empty((channels, canvas_height, canvas_width), dtype=np.float32)
    status = lib.edgeseg_zoom_linear_f32(
        arr, rows, cols, channels, bounds, means, len(means), height, width, canvas_height, canvas_width, top, left,
        nthreads, int(per_element), out,
    )
    _check(status, "zoom_linear")
    return out
