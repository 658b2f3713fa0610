// zoom_taps.h - scipy's grid-mode linear zoom, one output sample per call, in double.
//
// skimage.transform.resize(order=1, mode='constant', cval=0, anti_aliasing=False) calls
// scipy.ndimage.zoom(order=1, mode='grid-constant', grid_mode=True): output index i along an axis
// samples input coordinate (i + 0.5) * in / out - 0.5 (half-pixel centres), linearly between the
// two neighbouring input samples, where samples outside the input are 0.  matterport resizes its
// input image and pastes its masks this way (edgeseg/converters/matterport/conventions.py holds
// the eager reference, bit-identical to skimage).
//
// Why double, and why this exact order of operations: the results are truncated (the image,
// `astype(uint8)`) or thresholded (masks, `>= 0.5`), so a value that scipy computes as exactly 3.0
// and float32 as 2.9999998 changes a pixel.  The arithmetic below is scipy's, operation for
// operation: the zoom factor in/out as a double division, the coordinate as ((i + 0.5) * zoom) -
// 0.5, each tap as (sample * row weight) * column weight, and the four taps summed top-left,
// top-right, bottom-left, bottom-right.  Compile without contraction (nvcc --fmad=false, g++
// -ffp-contract=off), as every file of plugins/ is.
#pragma once

#include "common/edgeseg_hd.h"

namespace edgeseg {

// The two input samples an output index reads along one axis: lo (weight w_lo) and lo + 1
// (weight w_hi).  lo may be -1 and lo + 1 may be the input size: those samples are 0.
struct ZoomTap {
  int lo;
  double w_lo;
  double w_hi;
};

// The zoom factor of an axis of in_size samples zoomed to out_size samples (both > 0): in/out as
// one double division, scipy's.  A caller tapping many indices of one axis computes it once
// (a double division is slow on GPUs with 1/32 or 1/64 rate FP64: Jetson, GeForce).
EDGESEG_HD double zoom_factor(int in_size, int out_size) {
  return static_cast<double>(in_size) / static_cast<double>(out_size);
}

// Tap of output index out_index on an axis whose zoom factor is `zoom` (zoom_factor()).
EDGESEG_HD ZoomTap zoom_tap_at(int out_index, double zoom) {
  const double u = (static_cast<double>(out_index) + 0.5) * zoom - 0.5;
  const double lo = floor(u);
  const double t = u - lo;
  ZoomTap tap;
  tap.lo = static_cast<int>(lo);
  tap.w_lo = 1.0 - t;
  tap.w_hi = t;
  return tap;
}

// Tap of output index out_index when an axis of in_size samples is zoomed to out_size samples
// (both > 0); bit-identical to zoom_tap_at(out_index, zoom_factor(in_size, out_size)).
EDGESEG_HD ZoomTap zoom_tap(int out_index, int in_size, int out_size) {
  return zoom_tap_at(out_index, zoom_factor(in_size, out_size));
}

// The zoomed value at (row, col).  `at(r, c)` returns input sample (r, c) as a double, and 0 for
// r or c outside the input (the caller's functor knows the layout: an HWC image channel, an M x M
// mask).  Not clipped: skimage then clips to the input's [min, max] (see the callers).
template <typename Sample>
EDGESEG_HD double zoom_value(const Sample& at, ZoomTap row, ZoomTap col) {
  double v = at(row.lo, col.lo) * row.w_lo * col.w_lo;
  v = v + at(row.lo, col.lo + 1) * row.w_lo * col.w_hi;
  v = v + at(row.lo + 1, col.lo) * row.w_hi * col.w_lo;
  v = v + at(row.lo + 1, col.lo + 1) * row.w_hi * col.w_hi;
  return v;
}

}  // namespace edgeseg
