// paste_masks_math.h - the math of PasteMasks, one output pixel per call.
//
// Shared by the CPU build (paste_masks_cpu.cpp) and the CUDA kernel (paste_masks_kernel.cu).  Each mask is an
// M x M grid of probabilities (or logits) covering a box in frame pixels; pasting resamples it
// to the frame and thresholds it into a uint8 0/1 plane.  Three resampling conventions:
//
//   mode 0, "torchvision": torchvision.models.detection.roi_heads.paste_masks_in_image followed
//     by `value > threshold`.  The mask gets a one-pixel zero border (M + 2), the box is grown
//     about its centre by (M + 2) / M and truncated to integers, the padded mask is resized to the
//     integer box size with F.interpolate(bilinear, align_corners=False) and placed at the box's
//     integer top-left corner, clipped to the frame.
//   mode 1, "continuous": detectron2's _do_paste_mask followed by `value >= threshold`.  The box
//     stays continuous; frame pixel (x, y) is sampled at its centre (x + 0.5, y + 0.5), mapped
//     to normalised mask coordinates g = (centre - x0) / (x1 - x0) * 2 - 1 and read with
//     F.grid_sample(bilinear, align_corners=False, padding_mode="zeros").
//   mode 2, "zoom": matterport's utils.unmold_mask followed by `value >= threshold`.  The box
//     edges are rounded to integers (rintf; matterport's boxes already are), the mask is zoomed
//     to the integer box size as skimage.transform.resize(order=1, mode="constant",
//     anti_aliasing=False) does (scipy's grid-mode linear zoom with a zero border, in double:
//     common/zoom_taps.h), clipped to the mask's own [min, max] (skimage's clip) and placed at
//     the box's top-left pixel.  The clip needs the mask's range: callers compute it once per
//     mask with mask_range() and store it in the PasteBox (clip_lo, clip_hi).
//
// Pixels outside a box's paste rectangle (mode 0) or outside the sampling support (mode 1:
// every bilinear tap falls outside the mask) are background whatever the threshold.  With
// logits = true every mask sample goes through a sigmoid before interpolation (the zero border
// and zero padding stay 0).
//
// The work per mask is proportional to its rectangle: make_paste_box() computes the rectangle
// and the resampling parameters once per box; paste_pixel() computes one pixel.
#pragma once

#include "common/edgeseg_hd.h"
#include "common/zoom_taps.h"

namespace edgeseg {
namespace paste_masks {

enum PasteMode : int {
  kModeTorchvision = 0,
  kModeContinuous = 1,
  kModeZoom = 2,
};

// Mode 2 box edges are clamped to +-2^29 before they become ints, so that box sizes and frame
// offsets stay ints; only absurd boxes are affected.
constexpr float kZoomEdgeLimit = 536870912.0f;

// Everything paste_pixel() needs to know about one box.
struct PasteBox {
  // Frame pixels that may be foreground: columns [x_begin, x_end), rows [y_begin, y_end),
  // already clipped to the frame.  Empty when x_begin >= x_end or y_begin >= y_end.
  int x_begin;
  int x_end;
  int y_begin;
  int y_end;
  // mode 0: frame position of the resized padded mask's top-left pixel, and source (padded
  // mask) pixels per destination pixel along each axis, (M + 2) / size in float32.
  long long origin_x;
  long long origin_y;
  float scale_x;
  float scale_y;
  // mode 1: the box edges, frame pixels.
  float x0;
  float y0;
  float x1;
  float y1;
  // mode 2: the rounded box, its top-left frame pixel and its size (> 0 unless empty), and the
  // clip range: the min and max of the mask's M x M samples (after the optional sigmoid), set
  // by the caller from mask_range().
  int zoom_x0;
  int zoom_y0;
  int zoom_w;
  int zoom_h;
  // mode 2: mask samples per frame pixel along x and y, zoom_factor(M, zoom_w / zoom_h): the
  // double divisions done once per box, not per pixel.
  double zoom_x;
  double zoom_y;
  float clip_lo;
  float clip_hi;
};

EDGESEG_HD float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

// float -> int64 with truncation toward zero, like Tensor.to(torch.int64), for finite values;
// the clamp only keeps absurd boxes away from undefined conversions.
EDGESEG_HD long long trunc_to_i64(float v) {
  const float limit = 1152921504606846976.0f;  // 2^60
  return static_cast<long long>(hd_clamp(v, -limit, limit));
}

// Clamps a float frame coordinate into [0, size] and converts it to int.
EDGESEG_HD int clip_to_frame(float v, int size) {
  return static_cast<int>(hd_clamp(v, 0.0f, static_cast<float>(size)));
}

EDGESEG_HD bool all_finite(const float* box) {
  return isfinite(box[0]) && isfinite(box[1]) && isfinite(box[2]) && isfinite(box[3]);
}

// Per-box parameters of box (x0, y0, x1, y1) for masks of size M x M in a frame_h x frame_w
// frame.  Non-finite boxes get an empty rectangle.
EDGESEG_HD PasteBox make_paste_box(const float* box, int mask_size, int frame_h, int frame_w,
                                   int mode) {
  PasteBox p;
  p.x_begin = p.x_end = p.y_begin = p.y_end = 0;
  p.origin_x = p.origin_y = 0;
  p.scale_x = p.scale_y = 1.0f;
  p.x0 = box[0];
  p.y0 = box[1];
  p.x1 = box[2];
  p.y1 = box[3];
  p.zoom_x0 = p.zoom_y0 = p.zoom_w = p.zoom_h = 0;
  p.zoom_x = p.zoom_y = 0.0;
  p.clip_lo = 0.0f;
  p.clip_hi = 1.0f;
  if (!all_finite(box) || mask_size < 1) return p;

  if (mode == kModeTorchvision) {
    // Grow the box about its centre so the zero border lands just outside it.  float32 like
    // torchvision's expand_boxes; the factor is a Python float rounded to float32.
    const float grow =
        static_cast<float>(static_cast<double>(mask_size + 2) / static_cast<double>(mask_size));
    const float half_w = (box[2] - box[0]) * 0.5f * grow;
    const float half_h = (box[3] - box[1]) * 0.5f * grow;
    const float cx = (box[2] + box[0]) * 0.5f;
    const float cy = (box[3] + box[1]) * 0.5f;
    const long long bx0 = trunc_to_i64(cx - half_w);
    const long long by0 = trunc_to_i64(cy - half_h);
    const long long bx1 = trunc_to_i64(cx + half_w);
    const long long by1 = trunc_to_i64(cy + half_h);
    // Integer size of the resized mask; the box corners are inclusive pixel indices.
    const long long w = hd_max(bx1 - bx0 + 1, 1LL);
    const long long h = hd_max(by1 - by0 + 1, 1LL);
    p.origin_x = bx0;
    p.origin_y = by0;
    p.scale_x = static_cast<float>(mask_size + 2) / static_cast<float>(w);
    p.scale_y = static_cast<float>(mask_size + 2) / static_cast<float>(h);
    // Pasted columns [bx0, bx1] and rows [by0, by1] (nothing when reversed), clipped to the
    // frame.  Column x reads resized column x - bx0, which is < w.
    p.x_begin = static_cast<int>(hd_clamp(bx0, 0LL, static_cast<long long>(frame_w)));
    p.x_end = static_cast<int>(hd_clamp(bx1 + 1, 0LL, static_cast<long long>(frame_w)));
    p.y_begin = static_cast<int>(hd_clamp(by0, 0LL, static_cast<long long>(frame_h)));
    p.y_end = static_cast<int>(hd_clamp(by1 + 1, 0LL, static_cast<long long>(frame_h)));
  } else if (mode == kModeZoom) {
    // Pixels [X0, X1) x [Y0, Y1) of the rounded box, clipped to the frame; nothing when the
    // box has no width or height (skimage cannot resize to a zero size; matterport never asks).
    const int bx0 = static_cast<int>(rintf(hd_clamp(box[0], -kZoomEdgeLimit, kZoomEdgeLimit)));
    const int by0 = static_cast<int>(rintf(hd_clamp(box[1], -kZoomEdgeLimit, kZoomEdgeLimit)));
    const int bx1 = static_cast<int>(rintf(hd_clamp(box[2], -kZoomEdgeLimit, kZoomEdgeLimit)));
    const int by1 = static_cast<int>(rintf(hd_clamp(box[3], -kZoomEdgeLimit, kZoomEdgeLimit)));
    if (bx1 > bx0 && by1 > by0) {
      p.zoom_x0 = bx0;
      p.zoom_y0 = by0;
      p.zoom_w = bx1 - bx0;
      p.zoom_h = by1 - by0;
      p.zoom_x = zoom_factor(mask_size, p.zoom_w);
      p.zoom_y = zoom_factor(mask_size, p.zoom_h);
      p.x_begin = hd_clamp(bx0, 0, frame_w);
      p.x_end = hd_clamp(bx1, 0, frame_w);
      p.y_begin = hd_clamp(by0, 0, frame_h);
      p.y_end = hd_clamp(by1, 0, frame_h);
    }
  } else {
    // Bilinear taps reach half a mask pixel beyond the box; widen by a whole mask pixel plus
    // one frame pixel so rounding can never cut the support.  paste_pixel() decides exactly.
    const float lo_x = hd_min(box[0], box[2]);
    const float hi_x = hd_max(box[0], box[2]);
    const float lo_y = hd_min(box[1], box[3]);
    const float hi_y = hd_max(box[1], box[3]);
    const float margin_x = (hi_x - lo_x) / static_cast<float>(mask_size) + 1.0f;
    const float margin_y = (hi_y - lo_y) / static_cast<float>(mask_size) + 1.0f;
    p.x_begin = clip_to_frame(floorf(lo_x - margin_x), frame_w);
    p.x_end = clip_to_frame(ceilf(hi_x + margin_x), frame_w);
    p.y_begin = clip_to_frame(floorf(lo_y - margin_y), frame_h);
    p.y_end = clip_to_frame(ceilf(hi_y + margin_y), frame_h);
  }
  if (p.x_end < p.x_begin) p.x_end = p.x_begin;
  if (p.y_end < p.y_begin) p.y_end = p.y_begin;
  return p;
}

// ---------------------------------------------------------------------------------------------
// Reading the mask.  Every mode reads it through a one-sample zero border: bordered (row, col) is
// mask (row - 1, col - 1) for 1 <= row, col <= M and 0 elsewhere, after the optional sigmoid.
// In mode 0 the border is torchvision's F.pad; in mode 1 it is grid_sample's zero padding (a
// bilinear tap never lands further than one sample outside the mask); in mode 2 it is skimage's
// zero cval (see ZoomSamples).

// Reads the bordered mask straight from the M x M samples (what paste_pixel() uses).
template <typename T>
struct BorderedMask {
  const T* mask;
  int size;
  bool logits;

  EDGESEG_HD float operator()(int row, int col) const {
    if (row < 1 || row > size || col < 1 || col > size) return 0.0f;
    const float v = hd_to_float(mask[static_cast<long long>(row - 1) * size + (col - 1)]);
    return logits ? sigmoid(v) : v;
  }
};

// Reads a prepared (M + 2) x (M + 2) float copy of the bordered mask (row-major), e.g. one a
// kernel filled once per box with BorderedMask, so the sigmoid runs once per sample.
struct DenseBorderedMask {
  const float* data;
  int stride;  // M + 2

  EDGESEG_HD float operator()(int row, int col) const {
    return data[static_cast<long long>(row) * stride + col];
  }
};

// ---------------------------------------------------------------------------------------------
// Per-axis interpolation.  Bilinear interpolation is separable: along each axis a frame index
// maps to two bordered-mask indices and their weights, independent of the other axis.

struct AxisTap {
  int lower;      // bordered-mask index of the first tap
  int upper;      // bordered-mask index of the second tap
  float w_lower;  // weight of `lower`
  float w_upper;  // weight of `upper`
  bool inside;    // false: no tap touches the mask (mode 1 only), the pixel is background
};

// Mode 0: destination index `dst` of an image resized from `in_size` samples with
// F.interpolate(bilinear, align_corners=False), as PyTorch's CPU kernel computes it:
// source = max(scale * (dst + 0.5) - 0.5, 0) in float32, lower = floor(source) (at most
// in_size - 1), upper = lower + 1 unless lower is the last sample, w_upper = source - lower.
EDGESEG_HD AxisTap resize_tap(float scale, long long dst, int in_size) {
  float src = scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  if (src < 0.0f) src = 0.0f;
  AxisTap t;
  t.lower = hd_min(static_cast<int>(floorf(src)), in_size - 1);
  t.upper = t.lower < in_size - 1 ? t.lower + 1 : t.lower;
  t.w_upper = hd_clamp(src - static_cast<float>(t.lower), 0.0f, 1.0f);
  t.w_lower = 1.0f - t.w_upper;
  t.inside = true;
  return t;
}

// Mode 1: frame index `i` on an axis where the box spans [lo, hi].  The pixel centre i + 0.5
// is normalised to g = (i + 0.5 - lo) / (hi - lo) * 2 - 1 (detectron2) and unnormalised to a
// mask coordinate s = (g + 1) * (M / 2) - 0.5 (grid_sample, align_corners=False; sample j is
// centred at s = j).  Taps are floor(s) and floor(s) + 1, shifted by one for the border.
EDGESEG_HD AxisTap grid_tap(int i, float lo, float hi, int mask_size) {
  const float g = (static_cast<float>(i) + 0.5f - lo) / (hi - lo) * 2.0f - 1.0f;
  const float s = (g + 1.0f) * (static_cast<float>(mask_size) / 2.0f) - 0.5f;
  AxisTap t;
  // NaN (zero-size box) and anything at or beyond -1 / M has no tap on the mask.
  t.inside = s > -1.0f && s < static_cast<float>(mask_size);
  if (!t.inside) {
    t.lower = t.upper = 0;
    t.w_lower = 1.0f;
    t.w_upper = 0.0f;
    return t;
  }
  const float f = floorf(s);
  t.lower = static_cast<int>(f) + 1;
  t.upper = t.lower + 1;
  t.w_upper = s - f;
  t.w_lower = 1.0f - t.w_upper;
  return t;
}

// Tap of frame column x (axis 0) or row y (axis 1) of box `p`; x / y must lie in the box's
// rectangle.
EDGESEG_HD AxisTap axis_tap(const PasteBox& p, int mask_size, int mode, int axis, int i) {
  if (mode == kModeTorchvision) {
    return axis == 0 ? resize_tap(p.scale_x, static_cast<long long>(i) - p.origin_x, mask_size + 2)
                     : resize_tap(p.scale_y, static_cast<long long>(i) - p.origin_y, mask_size + 2);
  }
  return axis == 0 ? grid_tap(i, p.x0, p.x1, mask_size) : grid_tap(i, p.y0, p.y1, mask_size);
}

// Bilinear value from the row tap `ty` and column tap `tx`.  Summation order of PyTorch's
// kernels: (lower, lower), (lower, upper), (upper, lower), (upper, upper).
template <typename Reader>
EDGESEG_HD float bilinear_value(const Reader& bordered, const AxisTap& ty, const AxisTap& tx) {
  return bordered(ty.lower, tx.lower) * (ty.w_lower * tx.w_lower) +
         bordered(ty.lower, tx.upper) * (ty.w_lower * tx.w_upper) +
         bordered(ty.upper, tx.lower) * (ty.w_upper * tx.w_lower) +
         bordered(ty.upper, tx.upper) * (ty.w_upper * tx.w_upper);
}

// Threshold test: value > threshold in mode 0 (torchvision), value >= threshold in modes 1, 2.
EDGESEG_HD uint8_t is_foreground(float value, float threshold, int mode) {
  const bool fg = mode == kModeTorchvision ? value > threshold : value >= threshold;
  return fg ? 1 : 0;
}

// Output pixel (x, y) of one mask from the taps of its row and column (see paste_pixel()).
template <typename Reader>
EDGESEG_HD uint8_t pixel_from_taps(const Reader& bordered, const AxisTap& ty, const AxisTap& tx,
                                   float threshold, int mode) {
  if (!(ty.inside && tx.inside)) return 0;
  return is_foreground(bilinear_value(bordered, ty, tx), threshold, mode);
}

// ---------------------------------------------------------------------------------------------
// Mode 2, zoom.  The taps are common/zoom_taps.h's (double weights), read through the same
// one-sample zero border as the other modes.

// The min and max of the M x M samples `bordered` reads (after its optional sigmoid): the clip
// range of mode 2, computed once per mask.  NaN samples are skipped, as skimage's nanmin /
// nanmax skip them: the range starts empty (+inf, -inf) and hd_min / hd_max keep their first
// argument when the second is NaN.  An all-NaN mask keeps (+inf, -inf); its values are NaN, so
// no pixel is foreground, as in skimage.
template <typename Reader>
EDGESEG_HD void mask_range(const Reader& bordered, int mask_size, float* lo, float* hi) {
  float l = INFINITY;
  float h = -INFINITY;
  for (int r = 1; r <= mask_size; ++r) {
    for (int c = 1; c <= mask_size; ++c) {
      const float v = bordered(r, c);
      l = hd_min(l, v);
      h = hd_max(h, v);
    }
  }
  *lo = l;
  *hi = h;
}

// zoom_value's view of a bordered reader: sample (r, c) of the mask, 0 for r or c in {-1, M}
// (the only out-of-mask indices zoom_tap yields: its coordinate lies in (-0.5, M - 0.5)).
template <typename Reader>
struct ZoomSamples {
  const Reader& bordered;

  EDGESEG_HD double operator()(int row, int col) const {
    return static_cast<double>(bordered(row + 1, col + 1));
  }
};

// Mode 2 tap of frame column x (axis 0) or row y (axis 1) of box `p`; x / y in the box's rectangle.
// The zoom factors are the box's (make_paste_box), so no division happens here.
EDGESEG_HD ZoomTap zoom_axis_tap(const PasteBox& p, int axis, int i) {
  return axis == 0 ? zoom_tap_at(i - p.zoom_x0, p.zoom_x) : zoom_tap_at(i - p.zoom_y0, p.zoom_y);
}

// Mode 2 output pixel from its row and column taps: skimage's value (double), clipped to the
// mask's range, stored as float32 as skimage stores a float32 mask's resize, `>= threshold`.
template <typename Reader>
EDGESEG_HD uint8_t zoom_pixel_from_taps(const Reader& bordered, ZoomTap ty, ZoomTap tx,
                                        const PasteBox& p, float threshold) {
  const ZoomSamples<Reader> at = {bordered};
  const double v = hd_clamp(zoom_value(at, ty, tx), static_cast<double>(p.clip_lo),
                            static_cast<double>(p.clip_hi));
  return static_cast<float>(v) >= threshold ? 1 : 0;
}

// Output pixel (x, y) of one mask: 1 = foreground, 0 = background.  `mask` is that mask's
// M x M samples, `p` its make_paste_box() result (in mode 2 with clip_lo / clip_hi set from
// mask_range()); pixels outside p's rectangle are 0.
// A CUDA kernel can call this once per pixel of the rectangle; the CPU build computes the same
// thing with the row and column taps hoisted out of its loops.
template <typename T>
EDGESEG_HD uint8_t paste_pixel(const T* mask, int mask_size, const PasteBox& p, int x, int y,
                               float threshold, int mode, bool logits) {
  if (x < p.x_begin || x >= p.x_end || y < p.y_begin || y >= p.y_end) return 0;
  const BorderedMask<T> bordered = {mask, mask_size, logits};
  if (mode == kModeZoom) {
    return zoom_pixel_from_taps(bordered, zoom_axis_tap(p, 1, y), zoom_axis_tap(p, 0, x), p, threshold);
  }
  const AxisTap ty = axis_tap(p, mask_size, mode, 1, y);
  const AxisTap tx = axis_tap(p, mask_size, mode, 0, x);
  return pixel_from_taps(bordered, ty, tx, threshold, mode);
}

}  // namespace paste_masks
}  // namespace edgeseg
