"""Procedurally generated scenes: coloured shapes over scikit-image's photos, with exact annotations.

Five classes of objects (:data:`CLASS_NAMES`) with random colours, textures, sizes and rotations are
painted back to front over a random crop of one of the photos scikit-image ships, so they occlude
each other and are cut by the frame edges. Every pixel is owned by exactly one object or by the
background, which makes the annotations exact: instance masks of the visible parts, their boxes,
class ids and a semantic label map. The scenes are meant to be easy (a small network trained from
scratch on a CPU should reach mask AP >= 0.5): the shapes differ only by outline, never by colour
or texture, so a network has to learn the shapes.

Everything is drawn from ``np.random.default_rng([seed, index])``, so a scene depends on its seed
and index only: the same pair gives byte-identical images and annotations in any order, in any
process, whatever else was generated before.

Pixel conventions, used everywhere in this module: arrays are indexed ``[row, column]`` = ``[y, x]``;
pixel ``(x, y)`` covers the square ``[x, x + 1) x [y, y + 1)``. A box ``(x1, y1, x2, y2)`` is
``x1, y1`` = the first column and row of the mask and ``x2, y2`` = the last ones **plus one**
(exclusive ends), so ``x2 - x1`` is the width in pixels, as COCO's ``[x, y, w, h]`` and pycocotools'
``toBbox`` count it.

Importing this module needs numpy and OpenCV only; scikit-image (the ``demo`` extra) is imported
when the first background is needed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg import rle
from edgeseg.atomic import atomic_directory, atomic_output
from edgeseg.democlip import PHOTOS, pan_zoom
from edgeseg.errors import ArgumentError, BackendUnavailableError, OutputError
from edgeseg.sinks import VIDEO_CODECS, VideoSink
from edgeseg.version import __version__

CLASS_NAMES = ("circle", "triangle", "square", "star", "ring")
"""Object classes; class id ``k`` (1-based, 0 = background) is ``CLASS_NAMES[k - 1]`` by default."""

BACKGROUNDS = (*PHOTOS, "hubble_deep_field", "camera", "coins", "moon", "brick", "grass", "gravel")
"""Names of the ``skimage.data`` photos used as backgrounds (grey ones are converted to BGR)."""

TEXTURES = ("solid", "stripes", "noise", "gradient")

VAL_INDEX_OFFSET = 1 << 31
"""Validation image ``i`` of :func:`write_dataset` is scene index ``VAL_INDEX_OFFSET + i``, so the
validation set does not change with the number of training images and never meets a training
index (including scenes generated on the fly with small indices)."""

DATASET_FORMAT = "edgeseg-scenes"
DATASET_VERSION = 1

# A seed-sequence stream that no scene index reaches, so a clip never repeats a still scene.
_CLIP_STREAM = 1 << 40
# Star: inner radius / outer radius. Deep enough notches that a star never looks like a pentagon
# or a circle at the smallest sizes.
_STAR_INNER = 0.45
# Ring: hole radius / outer radius. The band stays at least a few pixels wide on small rings.
_RING_INNER = 0.55


@dataclass(frozen=True)
class SceneSpec:
    """What scenes look like.

    - ``size``: frame (height, width) in pixels.
    - ``classes``: the object classes to draw, names from :data:`CLASS_NAMES`; class id ``k`` is
      ``classes[k - 1]`` (0 = background), so a subset gets ids 1..len(classes).
    - ``objects``: (min, max) number of objects placed per scene, both inclusive, before the
      hidden ones are removed.
    - ``object_size``: (min, max) outer diameter of an object as a fraction of the frame's shorter side.
    - ``min_visible_area``: objects with fewer visible pixels (after occlusion and the frame edges)
      are removed from the scene, image included.
    - ``min_visible_fraction``: likewise for objects of which less than this fraction of the
      whole shape is visible (so no object is only a sliver a network could not classify).
    - ``backgrounds``: names of ``skimage.data`` photos to crop backgrounds from.
    """

    size: tuple[int, int] = (512, 512)
    classes: tuple[str, ...] = CLASS_NAMES
    objects: tuple[int, int] = (3, 8)
    object_size: tuple[float, float] = (0.1, 0.3)
    min_visible_area: int = 64
    min_visible_fraction: float = 0.3
    backgrounds: tuple[str, ...] = BACKGROUNDS

    def __post_init__(self) -> None:
        h, w = self.size
        if h < 16 or w < 16:
            raise ArgumentError(f"scene size {h}x{w} is too small; use at least 16x16 pixels")
        unknown = [c for c in self.classes if c not in CLASS_NAMES]
        if not self.classes or unknown or len(set(self.classes)) != len(self.classes):
            raise ArgumentError(
                f"scene classes {list(self.classes)} must be distinct names from {list(CLASS_NAMES)}"
            )
        lo, hi = self.objects
        if not 0 <= lo <= hi <= 255:
            raise ArgumentError(f"object count range {self.objects} must satisfy 0 <= min <= max <= 255")
        small, big = self.object_size
        if not 0 < small <= big <= 2:
            raise ArgumentError(
                f"object size range {self.object_size} must satisfy 0 < min <= max <= 2 "
                "(outer diameter as a fraction of the frame's shorter side)"
            )
        if self.min_visible_area < 1 or not 0 <= self.min_visible_fraction <= 1:
            raise ArgumentError(
                f"min_visible_area={self.min_visible_area} must be >= 1 and "
                f"min_visible_fraction={self.min_visible_fraction} within 0..1"
            )
        if not self.backgrounds:
            raise ArgumentError(f"no background photos given; use names from {list(BACKGROUNDS)}")


@dataclass
class Scene:
    """One generated frame and its exact annotations.

    - ``image``: HxWx3 uint8, BGR.
    - ``masks``: NxHxW bool, the visible part of each object (disjoint).
    - ``boxes``: Nx4 float32 ``x1, y1, x2, y2`` in pixels, the tight box of each mask with
      exclusive ends (``x2`` = last column + 1), so ``x2 - x1`` is the mask's width.
    - ``labels``: N int64 class ids, 1..len(classes) (0 is background, never listed).
    - ``label_map``: HxW uint8, the class id of every pixel (0 = background); equal to the masks
      painted with their labels.
    - ``ids``: N int64, each object's identity, from 1: in a clip (:func:`scene_clip`) the same
      object has the same id in every frame it is annotated in (ground truth for tracking).
    """

    image: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    label_map: np.ndarray
    ids: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class _Shape:
    """An object in its own frame: class, outer radius (pixels) and texture patch."""

    label: int  # class id, 1-based
    kind: str  # a name from CLASS_NAMES
    radius: float
    texture: np.ndarray  # (2h+1)x(2h+1)x3 uint8, centred on pixel (h, h), unrotated

    @property
    def half(self) -> int:
        # Two pixels of margin keep the sub-pixel centre and the polygon's rounding inside the patch.
        return math.ceil(self.radius) + 2


@dataclass
class _Placed:
    """A shape placed in a frame: its mask in a square patch whose top-left pixel is (ox, oy)."""

    shape: _Shape
    cx: float
    cy: float
    theta: float
    ox: int
    oy: int
    mask: np.ndarray  # SxS bool
    area: int  # pixels of the whole shape, inside the frame or not

    def window(self, h: int, w: int) -> tuple[slice, slice, slice, slice] | None:
        """(frame rows, frame columns, patch rows, patch columns) of the patch's part inside an
        h x w frame, or None when it is wholly outside."""
        size = self.mask.shape[0]
        y0, y1 = max(self.oy, 0), min(self.oy + size, h)
        x0, x1 = max(self.ox, 0), min(self.ox + size, w)
        if y0 >= y1 or x0 >= x1:
            return None
        return (slice(y0, y1), slice(x0, x1), slice(y0 - self.oy, y1 - self.oy), slice(x0 - self.ox, x1 - self.ox))

    def texture(self) -> np.ndarray:
        """The shape's texture rotated and moved like its mask, as an SxSx3 patch."""
        half = self.shape.half
        size = 2 * half + 1
        c, s = math.cos(self.theta), math.sin(self.theta)
        lx, ly = self.cx - self.ox, self.cy - self.oy
        # Patch pixel p samples the unrotated texture at R(-theta) (p - centre) + (half, half).
        m = np.array([[c, s, half - (c * lx + s * ly)], [-s, c, half - (-s * lx + c * ly)]], np.float64)
        return cv2.warpAffine(self.shape.texture, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT)


def _place(shape: _Shape, cx: float, cy: float, theta: float) -> _Placed:
    """Rasterise *shape* centred at (cx, cy) (pixel centres at integer coordinates, as OpenCV
    draws) and rotated by *theta* radians."""
    half = shape.half
    size = 2 * half + 1
    ox, oy = math.floor(cx) - half, math.floor(cy) - half
    lx, ly = cx - ox, cy - oy
    mask = np.zeros((size, size), np.uint8)
    r = shape.radius
    # shift=4 gives OpenCV 1/16-pixel vertices, so small and slowly moving shapes rasterise smoothly.
    fix = 16.0
    if shape.kind in ("circle", "ring"):
        centre = (round(lx * fix), round(ly * fix))
        cv2.circle(mask, centre, round(r * fix), 1, thickness=-1, lineType=cv2.LINE_8, shift=4)
        if shape.kind == "ring":
            cv2.circle(mask, centre, round(r * _RING_INNER * fix), 0, thickness=-1, lineType=cv2.LINE_8, shift=4)
    else:
        if shape.kind == "triangle":
            angles = theta - math.pi / 2 + np.arange(3) * (2 * math.pi / 3)
            radii = np.full(3, r)
        elif shape.kind == "square":
            angles = theta + math.pi / 4 + np.arange(4) * (math.pi / 2)
            radii = np.full(4, r)
        else:  # star
            angles = theta - math.pi / 2 + np.arange(10) * (math.pi / 5)
            radii = np.where(np.arange(10) % 2 == 0, r, r * _STAR_INNER)
        pts = np.stack([lx + radii * np.cos(angles), ly + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [np.round(pts * fix).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    area = int(np.count_nonzero(mask))
    return _Placed(shape, cx, cy, theta, ox, oy, mask.view(bool), area)


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two saturated, clearly different BGR colours (float32); saturated so objects stand out
    from the grey and muted photos."""
    hue = int(rng.integers(0, 180))
    hue2 = (hue + int(rng.integers(45, 136))) % 180
    sat = rng.integers(140, 256, 2)
    val = rng.integers(110, 256, 2)
    hsv = np.array([[[hue, sat[0], val[0]], [hue2, sat[1], val[1]]]], np.uint8)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0].astype(np.float32)
    return bgr[0], bgr[1]


def _texture(rng: np.random.Generator, radius: float, half: int) -> np.ndarray:
    """A (2 half + 1)^2 x 3 uint8 texture patch for a shape of *radius* pixels."""
    size = 2 * half + 1
    kind = TEXTURES[int(rng.integers(len(TEXTURES)))]
    c1, c2 = _colours(rng)
    phi = rng.uniform(0.0, math.pi)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    u = xx * math.cos(phi) + yy * math.sin(phi)  # position across the stripes / along the gradient
    if kind == "solid":
        tex = np.broadcast_to(c1, (size, size, 3))
    elif kind == "stripes":
        period = rng.uniform(0.3, 0.7) * radius
        band = (np.floor(u / period) % 2).astype(bool)
        tex = np.where(band[..., None], c2, c1)
    elif kind == "gradient":
        t = np.clip(u / (2 * radius) + 0.5, 0.0, 1.0)[..., None]
        tex = c1 * (1 - t) + c2 * t
    else:  # noise: blotches plus grain
        low = cv2.resize(rng.normal(0.0, 1.0, (5, 5)).astype(np.float32), (size, size),
                         interpolation=cv2.INTER_CUBIC)
        tex = c1 + 40.0 * low[..., None] + rng.normal(0.0, 15.0, (size, size, 3)).astype(np.float32)
    return np.clip(np.rint(tex), 0, 255).astype(np.uint8)


def _shape(rng: np.random.Generator, spec: SceneSpec) -> _Shape:
    k = int(rng.integers(len(spec.classes)))
    radius = 0.5 * rng.uniform(*spec.object_size) * min(spec.size)
    half = math.ceil(radius) + 2
    return _Shape(k + 1, spec.classes[k], radius, _texture(rng, radius, half))


@functools.cache
def _photo(name: str) -> np.ndarray:
    """A ``skimage.data`` photo as a read-only HxWx3 uint8 BGR array (loaded once per process)."""
    try:
        from skimage import data
    except ImportError as exc:
        raise BackendUnavailableError("scene backgrounds need scikit-image: pip install 'edgeseg[demo]'") from exc
    loader = getattr(data, name, None)
    if loader is None:
        raise ArgumentError(f"unknown background photo {name!r}; use names from {list(BACKGROUNDS)}")
    img = np.asarray(loader())
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ArgumentError(f"skimage.data.{name} is not an 8-bit photo; use names from {list(BACKGROUNDS)}")
    bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else np.ascontiguousarray(img[:, :, 2::-1])
    bgr.flags.writeable = False
    return bgr


def _mute(image: np.ndarray, contrast: float) -> np.ndarray:
    # Pull the photo towards mid-grey so the saturated objects stand out; the photo still varies
    # enough that the network cannot learn "anything not grey is an object".
    return cv2.convertScaleAbs(image, alpha=contrast, beta=127.5 * (1.0 - contrast))


def _background(rng: np.random.Generator, spec: SceneSpec) -> np.ndarray:
    """A random crop of a random photo, flipped or not and scaled to cover the frame."""
    h, w = spec.size
    photo = _photo(spec.backgrounds[int(rng.integers(len(spec.backgrounds)))])
    ph, pw = photo.shape[:2]
    zoom = max(h / ph, w / pw) * rng.uniform(1.0, 1.8)  # at least cover the frame
    x0 = rng.uniform(0.0, max(pw - w / zoom, 0.0))
    y0 = rng.uniform(0.0, max(ph - h / zoom, 0.0))
    flip = bool(rng.integers(2))
    sx = -zoom if flip else zoom
    tx = zoom * (pw - 1 - x0) if flip else -zoom * x0
    # One affine map (crop, scale, mirror) means one resampling of the photo.
    m = np.array([[sx, 0.0, tx], [0.0, zoom, -zoom * y0]], np.float64)
    image = cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return _mute(image, rng.uniform(0.55, 0.9))


def _owner_map(placed: list[_Placed], h: int, w: int) -> np.ndarray:
    """HxW uint8: 1 + the index of the object that owns each pixel (later objects are in front),
    0 for the background."""
    owner = np.zeros((h, w), np.uint8)
    for k, p in enumerate(placed, 1):
        win = p.window(h, w)
        if win is not None:
            fy, fx, py, px = win
            owner[fy, fx][p.mask[py, px]] = k
    return owner


def _compose(background: np.ndarray, placed: list[_Placed], spec: SceneSpec, remove_hidden: bool) -> Scene:
    """Paint *placed* (back to front) over *background* and annotate what is visible.

    With *remove_hidden*, objects below the visibility thresholds are taken out of the scene
    before painting, so every object pixel in the image is annotated. Without it (video, where
    objects must not pop in and out) they are painted but not annotated.
    """
    h, w = background.shape[:2]
    owner = _owner_map(placed, h, w)
    visible = np.zeros(len(placed), np.int64)
    for k, p in enumerate(placed, 1):
        win = p.window(h, w)
        if win is not None:
            visible[k - 1] = np.count_nonzero(owner[win[0], win[1]] == k)
    full = np.array([p.area for p in placed], np.float64)
    keep = (visible >= spec.min_visible_area) & (visible >= spec.min_visible_fraction * full)
    if remove_hidden and not keep.all():
        # Removing an object only uncovers the ones behind it, so every kept object still passes.
        placed = [p for p, k in zip(placed, keep, strict=True) if k]
        owner = _owner_map(placed, h, w)
        keep = np.ones(len(placed), bool)
    image = background.copy()
    n = int(keep.sum())
    masks = np.zeros((n, h, w), bool)
    boxes = np.zeros((n, 4), np.float32)
    labels = np.zeros(n, np.int64)
    ids = np.zeros(n, np.int64)
    lut = np.zeros(256, np.uint8)
    i = 0
    for k, p in enumerate(placed, 1):
        win = p.window(h, w)
        if win is None:
            continue
        fy, fx, py, px = win
        sel = owner[fy, fx] == k
        if not sel.any():
            continue
        image[fy, fx][sel] = p.texture()[py, px][sel]
        if not keep[k - 1]:
            continue
        masks[i, fy, fx] = sel
        rows = np.flatnonzero(sel.any(axis=1))
        cols = np.flatnonzero(sel.any(axis=0))
        boxes[i] = (fx.start + cols[0], fy.start + rows[0], fx.start + cols[-1] + 1, fy.start + rows[-1] + 1)
        labels[i] = p.shape.label
        ids[i] = k
        lut[k] = p.shape.label
        i += 1
    return Scene(image=image, masks=masks, boxes=boxes, labels=labels, label_map=lut[owner], ids=ids)


def make_scene(spec: SceneSpec, seed: int, index: int) -> Scene:
    """Scene number *index* (>= 0) of the data set *seed* (>= 0), drawn as *spec* says.

    Depends on (spec, seed, index) only: the same triple gives byte-identical arrays whatever was
    generated before, in this process or another. See :class:`Scene` for the arrays and the
    module docstring for the pixel and box conventions.
    """
    if seed < 0 or index < 0:
        raise ArgumentError(f"seed ({seed}) and scene index ({index}) must be >= 0")
    rng = np.random.default_rng([seed, index])
    h, w = spec.size
    background = _background(rng, spec)
    placed: list[_Placed] = []
    for _ in range(int(rng.integers(spec.objects[0], spec.objects[1] + 1))):
        shape = _shape(rng, spec)
        # Centres up to half a radius outside the frame, so some objects are cut by its edges.
        r = shape.radius
        cx = rng.uniform(-0.5 * r, w - 1 + 0.5 * r)
        cy = rng.uniform(-0.5 * r, h - 1 + 0.5 * r)
        placed.append(_place(shape, cx, cy, rng.uniform(0.0, 2 * math.pi)))
    return _compose(background, placed, spec, remove_hidden=True)


def _bounce(x: float, length: int) -> float:
    """*x* folded into [0, length - 1] as if it bounced off both ends."""
    span = max(length - 1, 1)
    x = x % (2 * span)
    return 2 * span - x if x > span else x


def scene_clip(spec: SceneSpec, seed: int, frames: int) -> Iterator[Scene]:
    """*frames* scenes of a video: objects that glide (bouncing off the frame edges) and turn
    smoothly over a slowly panning and zooming photo.

    Speeds are in pixels and radians per frame, scaled with the frame: at most about 0.5% of the
    shorter side and 0.03 rad per frame. Objects are never removed from the video (they would
    pop in and out), so objects below the visibility thresholds of *spec* are painted but not
    annotated in that frame.
    """
    if frames < 1:
        raise ArgumentError(f"a clip needs at least 1 frame, got {frames}")
    if seed < 0:
        raise ArgumentError(f"seed ({seed}) must be >= 0")
    return _clip_frames(spec, seed, frames)


def _clip_frames(spec: SceneSpec, seed: int, frames: int) -> Iterator[Scene]:
    rng = np.random.default_rng([seed, _CLIP_STREAM])
    h, w = spec.size
    photo = _photo(spec.backgrounds[int(rng.integers(len(spec.backgrounds)))])
    contrast = rng.uniform(0.55, 0.9)
    unit = min(h, w) / 512.0
    movers = []
    for _ in range(int(rng.integers(spec.objects[0], spec.objects[1] + 1))):
        shape = _shape(rng, spec)
        speed, heading = rng.uniform(0.5, 2.5) * unit, rng.uniform(0.0, 2 * math.pi)
        spin = rng.uniform(0.005, 0.03) * (1 if rng.integers(2) else -1)
        start = (rng.uniform(0, w - 1), rng.uniform(0, h - 1), rng.uniform(0.0, 2 * math.pi))
        movers.append((shape, start, (speed * math.cos(heading), speed * math.sin(heading), spin)))
    for t, frame in enumerate(pan_zoom(photo, spec.size, frames)):
        placed = [
            _place(shape, _bounce(x + vx * t, w), _bounce(y + vy * t, h), a + va * t)
            for shape, (x, y, a), (vx, vy, va) in movers
        ]
        yield _compose(_mute(frame, contrast), placed, spec, remove_hidden=False)


def make_scene_clip(
    path: str | os.PathLike[str], frames: int = 90, size: tuple[int, int] = (360, 640), fps: float = 15.0,
    seed: int = 0, spec: SceneSpec | None = None,
) -> Path:
    """Write a demo video of moving scenes (see :func:`scene_clip`) to *path* atomically.

    *size* is the frame (height, width) in pixels and replaces ``spec.size``; *spec* sets the
    classes, object counts and sizes (default :class:`SceneSpec`). The container follows the
    suffix (.mp4, .avi, .mkv, ...). The file appears complete or not at all, even on error or
    Ctrl-C. Returns the path.
    """
    out = Path(path)
    if out.suffix.lower() not in VIDEO_CODECS:
        raise OutputError(f"{out}: the scene clip is a video; name it .mp4 (or {', '.join(VIDEO_CODECS)})")
    spec = dataclasses.replace(spec or SceneSpec(), size=(int(size[0]), int(size[1])))
    clip = scene_clip(spec, seed, frames)  # validates before any file is created
    with atomic_output(out) as tmp:
        # VideoSink finalises whatever it got on close; atomic_output then discards it if we failed.
        sink = VideoSink(tmp, fps)
        try:
            for scene in clip:
                sink.write(scene.image)
        finally:
            sink.close()
    return out


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE of an HxW mask: ``{"size": [h, w], "counts": [...]}``, run lengths
    in column-major (Fortran) order starting with a run of zeros (possibly empty), as
    pycocotools reads it."""
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": rle.runs(mask).tolist()}


def rle_to_mask(segmentation: dict[str, Any]) -> np.ndarray:
    """The HxW bool mask of an uncompressed COCO RLE (the inverse of :func:`mask_to_rle`)."""
    h, w = segmentation["size"]
    counts = np.asarray(segmentation["counts"], np.int64)
    values = np.arange(counts.size) % 2 == 1  # runs alternate zeros, ones, zeros, ...
    flat = np.repeat(values, counts)
    if flat.size != h * w:
        raise ArgumentError(f"RLE counts add up to {flat.size} pixels, not {h}x{w}; the annotation is corrupt")
    return flat.reshape((w, h)).T


def _check_root(root: Path, overwrite: bool) -> None:
    parent = root.parent
    if root.exists() and not root.is_dir():
        raise OutputError(f"cannot write a data set to {root}: it is a file; choose a folder name")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise OutputError(
            f"cannot write a data set to {root}: the folder is not empty; choose another folder "
            "or pass overwrite=True to replace it"
        )
    if not parent.is_dir():
        raise OutputError(f"cannot write {root}: folder {parent} does not exist; create it or choose another path")


@contextlib.contextmanager
def _atomic_dir(root: Path, overwrite: bool) -> Iterator[Path]:
    """A fresh folder beside *root* that replaces it when complete (:func:`atomic_directory`),
    after checking that *root* may be written."""
    _check_root(root, overwrite)
    with atomic_directory(root) as tmp:
        yield tmp


def _imwrite(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OutputError(f"cannot write {path}: OpenCV could not encode it; check the disk space and the folder")


def _write_split(folder: Path, spec: SceneSpec, seed: int, first_index: int, count: int) -> int:
    """Write one split (images, label maps, COCO instances.json); returns its number of instances."""
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    h, w = spec.size
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i in range(count):
        scene = make_scene(spec, seed, first_index + i)
        name = f"{i:06d}.png"
        _imwrite(folder / "images" / name, scene.image)
        _imwrite(folder / "labels" / name, scene.label_map)
        image_id = i + 1
        images.append({"id": image_id, "file_name": name, "height": h, "width": w, "scene_index": first_index + i})
        for mask, box, label in zip(scene.masks, scene.boxes, scene.labels, strict=True):
            x1, y1, x2, y2 = (int(v) for v in box)
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(label),
                "segmentation": mask_to_rle(mask),
                "area": int(np.count_nonzero(mask)),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "iscrowd": 0,
            })
    coco = {
        "info": {"description": f"{DATASET_FORMAT} seed {seed}", "version": str(DATASET_VERSION)},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k, "name": name, "supercategory": "shape"} for k, name in enumerate(spec.classes, 1)],
    }
    with open(folder / "instances.json", "w") as f:
        json.dump(coco, f, separators=(",", ":"))
    return len(annotations)


def write_dataset(
    root: str | os.PathLike[str], n_train: int, n_val: int, seed: int = 0, size: tuple[int, int] = (512, 512),
    *, spec: SceneSpec | None = None, overwrite: bool = False,
) -> Path:
    """Write a data set of generated scenes to the folder *root*, atomically; returns its path.

    Layout, for each split in ``train`` and ``val``::

        root/dataset.json                 seed, sizes, counts, classes, spec
        root/<split>/images/000000.png    the scene, BGR
        root/<split>/labels/000000.png    its label map, 8-bit grey: 0 background, 1..5 class ids
        root/<split>/instances.json       COCO instances: uncompressed RLE masks, bbox [x, y, w, h]

    Training image ``i`` is scene ``make_scene(spec, seed, i)``, validation image ``i`` is scene
    ``VAL_INDEX_OFFSET + i`` (recorded as ``scene_index`` in instances.json). *size* is the frame
    (height, width) in pixels and replaces ``spec.size``. Everything is written into a temporary
    folder beside *root* that is renamed to *root* when complete; a non-empty *root* is replaced
    only with ``overwrite=True``.
    """
    if n_train < 0 or n_val < 0:
        raise ArgumentError(f"image counts must be >= 0, got n_train={n_train}, n_val={n_val}")
    if seed < 0:
        raise ArgumentError(f"seed ({seed}) must be >= 0")
    spec = dataclasses.replace(spec or SceneSpec(), size=(int(size[0]), int(size[1])))
    out = Path(root)
    splits = {"train": (0, n_train), "val": (VAL_INDEX_OFFSET, n_val)}
    with _atomic_dir(out, overwrite) as tmp:
        summary: dict[str, dict[str, int]] = {}
        for split, (first, count) in splits.items():
            instances = _write_split(tmp / split, spec, seed, first, count)
            summary[split] = {"images": count, "instances": instances, "first_index": first}
        info = {
            "format": DATASET_FORMAT,
            "version": DATASET_VERSION,
            "generator": f"edgeseg {__version__}",
            "seed": seed,
            "size": list(spec.size),
            "classes": list(spec.classes),
            "splits": summary,
            "spec": dataclasses.asdict(spec),
        }
        with open(tmp / "dataset.json", "w") as f:
            json.dump(info, f, indent=2)
            f.write("\n")
    return out
