"""detectron2's test-time resize, exactly: Pillow's bilinear resize of the uint8 image, as two
constant matrix products in the graph.

detectron2 (``ResizeShortestEdge`` -> ``ResizeTransform``) resizes the uint8 image with
``PIL.Image.resize(..., Image.BILINEAR)``. Pillow's bilinear is a triangle filter whose support
grows with the shrink factor (it averages when shrinking), applied in two passes, each in 8-bit
fixed point. Which pass runs first depends on the Pillow version and the sizes (Pillow 13 runs
the vertical one first when the height shrinks much more than the width), so the order is read
from the installed Pillow at conversion (:func:`pillow_pass_order`). Coefficients ``k`` are
doubles normalised per output pixel and rounded to integers with 22 fraction bits; an output is
``clip(floor((sum(k * in) + 2**21) / 2**22))``, and the first pass's result is itself uint8.

TensorRT refuses Resize with antialiasing, and a float resize does not round like this, so the
graph multiplies by constant matrices of those integer coefficients instead. To stay exact in
float32 (integers up to 2**24), each coefficient is split into 11-bit halves
``k = 2**11 * hi + lo`` and the rounding is done on the two exact partial sums,
``floor((S_hi + floor((S_lo + 2**21) / 2**11)) / 2**11)``, which equals Pillow's result for
every input (``tests/test_detectron2.py`` checks it against Pillow: up- and down-scaling, odd
sizes). This holds while a pass shrinks by less than 16x (the partial sums stay below 2**24), and
also on TensorRT's default TF32 matrix products: TF32 rounds the operands to 11 significant
bits and accumulates in float32, and both operands here (uint8 pixels, 11-bit coefficient
halves) have at most 11, so nothing is rounded.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

PRECISION_BITS = 22  # Pillow's fixed point for 8-bit images (32 - 8 - 2)
HALF_BITS = 11
MAX_SHRINK = 16


def resized_hw(frame_hw: tuple[int, int], short: int, max_size: int) -> tuple[int, int]:
    """detectron2's ``ResizeShortestEdge.get_output_shape`` (Python floats, ``int(x + 0.5)``)."""
    h, w = frame_hw
    scale = short * 1.0 / min(h, w)
    newh, neww = (short, scale * w) if h < w else (scale * h, short)
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def pillow_coefficients(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's integer bilinear coefficients, as a dense [out_size, in_size] int64 matrix
    (``precompute_coeffs`` and ``normalize_coeffs_8bpc`` of Pillow's ``Resample.c``)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear (triangle) filter's support is 1
    inv_filterscale = 1.0 / filterscale  # multiplied, not divided: the same doubles as Pillow
    out = np.zeros((out_size, in_size), dtype=np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = []
        for x in range(xmax):
            t = abs((x + xmin - center + 0.5) * inv_filterscale)
            weights.append(1.0 - t if t < 1.0 else 0.0)
        total = sum(weights)
        for x, weight in enumerate(weights):
            k = weight / total if total != 0.0 else weight
            # C's (int) truncates toward zero
            fixed = k * (1 << PRECISION_BITS)
            out[xx, xmin + x] = int(0.5 + fixed) if k >= 0 else int(-0.5 + fixed)
    return out


def _one_pass(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """One Pillow pass over the last axis: uint8 [..., n], coefficients [m, n] -> uint8 [..., m]."""
    # In float64 (BLAS, not numpy's slow integer matmul), exactly: every product is below 2**31
    # and every sum of them below 2**53.
    s = (x.astype(np.float64) @ k.T.astype(np.float64)).astype(np.int64) + (1 << (PRECISION_BITS - 1))
    return np.clip(s >> PRECISION_BITS, 0, 255).astype(np.uint8)


def pillow_resize_numpy(image: np.ndarray, out_hw: tuple[int, int], order: str = "hv") -> np.ndarray:
    """The same arithmetic in integers, on the host: uint8 [H, W, C] -> uint8 [h, w, C]; *order*
    ``hv`` (horizontal pass first) or ``vh``."""
    h, w = image.shape[:2]
    x = image
    for axis in order:
        if axis == "h" and out_hw[1] != w:
            x = np.moveaxis(_one_pass(np.moveaxis(x, 1, -1), pillow_coefficients(w, out_hw[1])), -1, 1)
        if axis == "v" and out_hw[0] != h:
            x = np.moveaxis(_one_pass(np.moveaxis(x, 0, -1), pillow_coefficients(h, out_hw[0])), -1, 0)
    return x


def pillow_pass_order(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> str:
    """Which pass the installed Pillow runs first for this resize (``hv`` or ``vh``), found by
    resizing a seeded noise image both ways; ValueError when Pillow matches neither (a Pillow
    whose bilinear resize edgeseg does not know)."""
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 256, (*in_hw, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(image).resize((out_hw[1], out_hw[0]), Image.Resampling.BILINEAR))
    for order in ("hv", "vh"):
        if np.array_equal(pillow_resize_numpy(image, out_hw, order), want):
            return order
    import PIL

    raise ValueError(f"Pillow {PIL.__version__} resizes {in_hw} -> {out_hw} in a way edgeseg does not reproduce")


class PillowBilinear(nn.Module):
    """Resizes float [N, C, H, W] holding uint8 values to *out_hw* exactly as Pillow resizes the
    uint8 image (module docstring); a no-op at the same size."""

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int], order: str = "hv") -> None:
        super().__init__()
        self.order = order
        for axis, (n, m) in zip("hw", zip(in_hw, out_hw, strict=True), strict=True):
            if m < n and n / m >= MAX_SHRINK:
                raise ValueError(f"resize {in_hw} -> {out_hw}: shrinks {axis} {n / m:.1f}x; at most "
                                 f"{MAX_SHRINK}x stays exact")
        self.in_hw, self.out_hw = in_hw, out_hw
        self.h_hi: Tensor
        self.h_lo: Tensor
        self.w_hi: Tensor
        self.w_lo: Tensor
        for axis, n, m in (("h", in_hw[0], out_hw[0]), ("w", in_hw[1], out_hw[1])):
            k = pillow_coefficients(n, m).T  # [in, out]: x @ k
            self.register_buffer(f"{axis}_hi", torch.from_numpy((k >> HALF_BITS).astype(np.float32)))
            self.register_buffer(f"{axis}_lo", torch.from_numpy((k & ((1 << HALF_BITS) - 1)).astype(np.float32)))

    @staticmethod
    def _pass(x: Tensor, hi: Tensor, lo: Tensor) -> Tensor:
        s_hi, s_lo = x @ hi, x @ lo  # exact integers below 2**24
        carry = torch.floor((s_lo + float(1 << (PRECISION_BITS - 1))) / float(1 << HALF_BITS))
        return torch.clamp(torch.floor((s_hi + carry) / float(1 << HALF_BITS)), 0.0, 255.0)

    def forward(self, x: Tensor) -> Tensor:
        for axis in self.order:
            if axis == "h" and self.out_hw[1] != self.in_hw[1]:
                x = self._pass(x, self.w_hi, self.w_lo)
            if axis == "v" and self.out_hw[0] != self.in_hw[0]:
                x = self._pass(x.transpose(-1, -2), self.h_hi, self.h_lo).transpose(-1, -2)
        return x

