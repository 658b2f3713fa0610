"""COCO run-length encoding of binary masks, without pycocotools.

The format is the one ``pycocotools.mask.encode`` writes (``{"size": [h, w], "counts": str}``):
pixels are read in column-major (Fortran) order, i.e. down the first column, then the second, ...;
run lengths alternate starting with a run of zeros (possibly empty); each run length is written as
the difference from the run two places before (from the fourth run on, as the C code does) in little-endian groups of 5
bits, each group one character ``48 + bits`` with bit 0x20 set when another group follows, the
last group sign-extended from its bit 0x10 (LEB128-like, ``rleToString`` in the COCO API).

The encoder is vectorised numpy and gives pycocotools' strings byte for byte (a test compares
them); it is used even where pycocotools is installed because it is faster on frame-size masks
(0.9 ms against 1.8 ms for a 300x300 object in a 720p mask: pycocotools needs a Fortran-order
copy of the whole mask first).
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np


class RLE(TypedDict):
    """A COCO compressed RLE: ``size`` is [height, width] in pixels."""

    size: list[int]
    counts: str


def runs(mask: np.ndarray) -> np.ndarray:
    """Run lengths (int64) of an HxW binary mask in column-major order, starting with zeros.

    Only the span of columns holding a foreground pixel is scanned in detail, so a small object in
    a large frame costs little more than one ``any`` over the mask.
    """
    if mask.ndim != 2:
        raise ValueError(f"a mask is HxW, got shape {mask.shape}")
    h, w = mask.shape
    fg = mask.astype(bool, copy=False)
    cols = np.flatnonzero(fg.any(axis=0))
    if cols.size == 0:
        return np.array([h * w], dtype=np.int64)
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    # Columns c0..c1-1 are a contiguous stretch of the column-major pixel order.
    flat = np.ascontiguousarray(fg[:, c0:c1].T).ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size])).astype(np.int64)
    counts = np.diff(bounds)
    start, end = c0 * h, (w - c1) * h
    if flat[0]:
        counts = np.concatenate(([start], counts))  # leading zero run (maybe empty)
    else:
        counts[0] += start
    if flat[-1]:
        if end:
            counts = np.concatenate((counts, [end]))
    else:
        counts[-1] += end
    return counts


# A run length below 2**62 needs at most 13 groups of 5 bits (sign included).
_GROUPS = 13


def counts_to_string(counts: np.ndarray) -> str:
    """COCO's compressed string for run lengths *counts* (vectorised ``rleToString``)."""
    counts = np.asarray(counts, dtype=np.int64)
    x = counts.copy()
    # COCO differences from the 4th run on (``if (i > 2)`` in the C code), not from the 3rd.
    if x.size > 3:
        x[3:] -= counts[1:-2]
    shifts = 5 * np.arange(_GROUPS, dtype=np.int64)
    rest = x[:, None] >> shifts[None, :]  # arithmetic shift, as in the C code
    chunk = rest & 0x1F
    after = np.concatenate((rest[:, 1:], rest[:, -1:] >> 5), axis=1)
    more = np.where((chunk & 0x10) != 0, after != -1, after != 0)
    # Group k is written iff every group before it said "more".
    written = np.concatenate((np.ones((x.size, 1), bool), np.logical_and.accumulate(more, axis=1)[:, :-1]), axis=1)
    chars = (chunk | np.where(more & written, 0x20, 0)) + 48
    return chars[written].astype(np.uint8).tobytes().decode("ascii")


def string_to_counts(s: str) -> np.ndarray:
    """Run lengths from COCO's compressed string (``rleFrString``)."""
    out: list[int] = []
    data = s.encode("ascii")
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return np.asarray(out, dtype=np.int64)


def encode_numpy(mask: np.ndarray) -> RLE:
    """COCO RLE of one HxW binary mask (nonzero = foreground), with numpy only."""
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": counts_to_string(runs(mask))}


def decode(rle: RLE) -> np.ndarray:
    """HxW uint8 mask (1 = foreground) from a COCO RLE."""
    h, w = rle["size"]
    counts = string_to_counts(rle["counts"])
    if int(counts.sum()) != h * w:
        raise ValueError(f"RLE runs cover {int(counts.sum())} pixels, size {h}x{w} has {h * w}")
    values = np.arange(counts.size, dtype=np.int64) % 2
    flat = np.repeat(values.astype(np.uint8), counts)
    return np.ascontiguousarray(flat.reshape(w, h).T)


def encode(mask: np.ndarray) -> RLE:
    """COCO RLE of one HxW binary mask (nonzero = foreground)."""
    return encode_numpy(mask)
