// roi_align_math.h - the math of MultiLevelRoIAlign, one output element per call.
//
// Shared by the CPU build (roi_align_cpu.cpp) and the CUDA kernel (roi_align_kernel.cu), so both compute the
// same numbers.  The semantics are those of torchvision.ops.roi_align (average pooling of
// bilinear samples, torchvision's CPU kernel rules for borders) and of
// torchvision.ops.MultiScaleRoIAlign (FPN level of each RoI from its area), or, with sampling 1,
// of tf.image.crop_and_resize (TensorFlow's CPU CropAndResize, as matterport's PyramidROIAlign
// uses it); see README.md.
//
// Conventions
//   * Features are NCHW and C-contiguous; one level is described by its pointer and N, C, H, W.
//   * A RoI row is 5 floats: batch index, x0, y0, x1, y1, in input-image pixels.  Multiplying by
//     a level's spatial_scale gives feature-map coordinates in which feature pixel (i, j) is
//     centred at (j + 0.5, i + 0.5) when `aligned` is true, at (j, i) when it is false (the
//     legacy convention; torchvision's MultiScaleRoIAlign uses it).
//   * Element type T of the features may be float or (on the GPU) half; every sum is
//     accumulated in float.
#pragma once

#include "common/edgeseg_hd.h"

namespace edgeseg {
namespace roi_align {

// The op's sampling attribute.
enum Sampling : int {
  kSamplingRoiAlign = 0,
  kSamplingCropAndResize = 1,
};

// Batch index of a RoI row: its first float truncated toward zero as a C cast does (torchvision),
// or -1 when that conversion would be undefined (NaN, out of int range).
EDGESEG_HD int roi_batch(float index) {
  return (index > -1.0f && index < 2147483648.0f) ? static_cast<int>(index) : -1;
}

// Where and how densely one RoI is sampled on one feature level (feature-map units).
struct RoiBins {
  int batch;      // image of the batch the RoI belongs to; -1 when roi[0] is not a usable index
  float start_y;  // top edge of the RoI
  float start_x;  // left edge of the RoI
  float bin_h;    // height of one output bin
  float bin_w;    // width of one output bin
  int grid_h;     // bilinear samples per bin along y
  int grid_w;     // bilinear samples per bin along x
  float count;    // divisor of the average: max(grid_h * grid_w, 1)
};

// Number of samples per bin along one axis when sampling_ratio <= 0: ceil(extent / bins).
// Negative or NaN extents (possible with aligned=true) give 0 samples, i.e. a zero output,
// which is also what torchvision's loops produce for them.  However many there are, only those
// that land on the feature map are visited (samples_on_map).
EDGESEG_HD int adaptive_grid(float extent, int bins) {
  const float g = ceilf(extent / static_cast<float>(bins));
  if (!(g >= 1.0f)) return 0;
  // Far beyond any real feature map; only keeps the float -> int conversion defined.
  if (g > 1073741824.0f) return 1073741824;
  return static_cast<int>(g);
}

// Sampling geometry of RoI `roi` (5 floats) on a level with the given spatial scale.
// The order of the float operations follows torchvision's CPU kernel on purpose.
EDGESEG_HD RoiBins make_roi_bins(const float* roi, float spatial_scale, int out_h, int out_w,
                                 int sampling_ratio, bool aligned) {
  RoiBins b;
  b.batch = roi_batch(roi[0]);

  const float offset = aligned ? 0.5f : 0.0f;
  const float x0 = roi[1] * spatial_scale - offset;
  const float y0 = roi[2] * spatial_scale - offset;
  const float x1 = roi[3] * spatial_scale - offset;
  const float y1 = roi[4] * spatial_scale - offset;
  float roi_w = x1 - x0;
  float roi_h = y1 - y0;
  if (!aligned) {
    // Legacy behaviour: a RoI is never smaller than one feature pixel.
    roi_w = hd_max(roi_w, 1.0f);
    roi_h = hd_max(roi_h, 1.0f);
  }
  b.start_y = y0;
  b.start_x = x0;
  b.bin_h = roi_h / static_cast<float>(out_h);
  b.bin_w = roi_w / static_cast<float>(out_w);
  b.grid_h = sampling_ratio > 0 ? sampling_ratio : adaptive_grid(roi_h, out_h);
  b.grid_w = sampling_ratio > 0 ? sampling_ratio : adaptive_grid(roi_w, out_w);
  const long long n = static_cast<long long>(b.grid_h) * static_cast<long long>(b.grid_w);
  b.count = static_cast<float>(n > 1 ? n : 1);
  return b;
}

// Coordinate (feature pixels, along one axis) of sample `i` of `grid` in bin `p` of a RoI that
// starts at `start` and has bins of size `bin`: samples sit at the centres of `grid` equal slices
// of the bin.
EDGESEG_HD float sample_coord(float start, float bin, int p, int i, int grid) {
  return start + static_cast<float>(p) * bin +
         (static_cast<float>(i) + 0.5f) * bin / static_cast<float>(grid);
}

// Grids up to this many samples per bin and axis are walked sample by sample; larger ones (the
// adaptive grid of a RoI much larger than the feature map) only over the samples that land on it.
constexpr int kWalkWholeGrid = 16;

// First sample index i in [0, grid) of bin `p` whose coordinate is >= `limit` (grid if none; NaN
// coordinates count as below).  For bin >= 0 the coordinates sample_coord computes are
// non-decreasing in i (each float operation in it is monotone), so a binary search over the very
// same computation finds the edge exactly.
EDGESEG_HD int first_sample_not_below(float start, float bin, int p, int grid, float limit) {
  int lo = 0;
  int hi = grid;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (sample_coord(start, bin, p, mid, grid) >= limit) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

// First sample index i in [0, grid) of bin `p` whose coordinate is > `limit` or NaN (grid if none).
EDGESEG_HD int first_sample_above(float start, float bin, int p, int grid, float limit) {
  int lo = 0;
  int hi = grid;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (!(sample_coord(start, bin, p, mid, grid) <= limit)) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

// Samples [*begin, *end) of bin `p` along an axis of `size` pixels that can be non-zero: those
// with coordinates in [-1, size] (bilinear_axis).  Every other sample of the grid reads 0 and adds
// nothing to the sum (x + 0.0f == x), so skipping them changes no bit of the result; it bounds the
// work of a huge or infinite RoI by the feature map's size instead of the RoI's (a GPU hang
// otherwise).  Small grids and negative bins are walked whole, as before.
EDGESEG_HD void samples_on_map(float start, float bin, int p, int grid, int size, int* begin, int* end) {
  *begin = 0;
  *end = grid;
  if (grid <= kWalkWholeGrid || !(bin >= 0.0f)) return;
  *begin = first_sample_not_below(start, bin, p, grid, -1.0f);
  *end = hd_max(*begin, first_sample_above(start, bin, p, grid, static_cast<float>(size)));
}

// The two pixels (lo, hi) a bilinear sample reads along one axis of `size` pixels and their
// weights (w_lo + w_hi = 1); inside is false when the sample is 0 (see bilinear_tap).
struct AxisTaps {
  int lo;
  int hi;
  float w_lo;
  float w_hi;
  bool inside;
};

// bilinear_tap's rules along one axis; bilinear_tap is this along y and along x.
EDGESEG_HD AxisTaps bilinear_axis(float v, int size) {
  AxisTaps t;
  if (!(v >= -1.0f && v <= static_cast<float>(size))) {
    t.lo = 0;
    t.hi = 0;
    t.w_lo = 0.0f;
    t.w_hi = 0.0f;
    t.inside = false;
    return t;
  }
  if (v <= 0.0f) v = 0.0f;
  t.lo = static_cast<int>(v);
  if (t.lo >= size - 1) {
    t.lo = size - 1;
    t.hi = t.lo;
    v = static_cast<float>(t.lo);
  } else {
    t.hi = t.lo + 1;
  }
  t.w_hi = v - static_cast<float>(t.lo);
  t.w_lo = 1.0f - t.w_hi;
  t.inside = true;
  return t;
}

// Bilinear value of one H x W feature plane at (y, x), feature-pixel units, with torchvision's
// border rules:
//   * a point more than one pixel outside the map (y < -1, y > H, x < -1, x > W) or NaN is 0;
//   * otherwise negative coordinates are clamped to 0;
//   * a point at or beyond the last row (column) uses that row (column) alone.
template <typename T>
EDGESEG_HD float bilinear_tap(const T* plane, int height, int width, float y, float x) {
  const AxisTaps ty = bilinear_axis(y, height);
  if (!ty.inside) return 0.0f;
  const AxisTaps tx = bilinear_axis(x, width);
  if (!tx.inside) return 0.0f;

  const float fy = ty.w_hi;  // weight of row1
  const float fx = tx.w_hi;  // weight of col1
  const float gy = ty.w_lo;  // weight of row0
  const float gx = tx.w_lo;  // weight of col0

  const T* r0 = plane + static_cast<long long>(ty.lo) * width;
  const T* r1 = plane + static_cast<long long>(ty.hi) * width;
  return gy * gx * hd_to_float(r0[tx.lo]) + gy * fx * hd_to_float(r0[tx.hi]) +
         fy * gx * hd_to_float(r1[tx.lo]) + fy * fx * hd_to_float(r1[tx.hi]);
}

// Output element (c, ph, pw) of a RoI whose geometry on this level is `bins`: the average of
// grid_h x grid_w bilinear samples spread evenly over bin (ph, pw).  `features` is the whole
// level, [batch_size, channels, height, width].  A RoI with an invalid batch index gives 0.
template <typename T>
EDGESEG_HD float roi_align_bin(const T* features, int batch_size, int channels, int height,
                               int width, const RoiBins& bins, int c, int ph, int pw) {
  if (bins.batch < 0 || bins.batch >= batch_size || height <= 0 || width <= 0) return 0.0f;
  const T* plane =
      features + (static_cast<long long>(bins.batch) * channels + c) * height * width;

  int iy_begin = 0;
  int iy_end = 0;
  int ix_begin = 0;
  int ix_end = 0;
  samples_on_map(bins.start_y, bins.bin_h, ph, bins.grid_h, height, &iy_begin, &iy_end);
  samples_on_map(bins.start_x, bins.bin_w, pw, bins.grid_w, width, &ix_begin, &ix_end);
  float sum = 0.0f;
  for (int iy = iy_begin; iy < iy_end; ++iy) {
    const float y = sample_coord(bins.start_y, bins.bin_h, ph, iy, bins.grid_h);
    for (int ix = ix_begin; ix < ix_end; ++ix) {
      const float x = sample_coord(bins.start_x, bins.bin_w, pw, ix, bins.grid_w);
      sum += bilinear_tap(plane, height, width, y, x);
    }
  }
  return sum / bins.count;
}

// The same from the raw RoI row: everything one output element (r, c, ph, pw) needs.
template <typename T>
EDGESEG_HD float roi_align_element(const T* features, int batch_size, int channels, int height,
                                   int width, const float* roi, float spatial_scale, int out_h,
                                   int out_w, int sampling_ratio, bool aligned, int c, int ph,
                                   int pw) {
  const RoiBins bins = make_roi_bins(roi, spatial_scale, out_h, out_w, sampling_ratio, aligned);
  return roi_align_bin(features, batch_size, channels, height, width, bins, c, ph, pw);
}

// ---------------------------------------------------------------------------------------------
// sampling 1: tf.image.crop_and_resize (method "bilinear", extrapolation_value 0), TensorFlow's
// CPU CropAndResizePerBox in float32 and in its order.  RoI coordinates are normalised: 0 is the
// centre of the first feature pixel and 1 the centre of the last (corner-aligned), on every
// level.  One bilinear sample per output cell, no averaging, no half-pixel offset.

// Where sample i of n lies along an axis of `size` feature pixels, for a box from a0 to a1:
//   n > 1:  a0 * (size - 1) + i * ((a1 - a0) * (size - 1) / (n - 1))   product first
//   n == 1: the centre, 0.5 * (a0 + a1) * (size - 1); TF's 0.5 is a double literal, so this
//           is double (a0 + a1 is still a float sum) rounded to float.
EDGESEG_HD float crop_coord(float a0, float a1, int size, int n, int i) {
  const float last = static_cast<float>(size - 1);
  if (n > 1) {
    const float step = (a1 - a0) * last / static_cast<float>(n - 1);
    return a0 * last + static_cast<float>(i) * step;
  }
  return static_cast<float>(0.5 * static_cast<double>(a0 + a1) * static_cast<double>(size - 1));
}

// The two pixels a crop_and_resize sample at v reads along one axis of `size` pixels and the
// weight of the upper one; inside is false when the sample lies off the map (v < 0 or
// v > size - 1, or NaN) and is 0.
struct CropTaps {
  int lo;
  int hi;
  float lerp;
  bool inside;
};

EDGESEG_HD CropTaps crop_axis(float v, int size) {
  CropTaps t;
  if (!(v >= 0.0f && v <= static_cast<float>(size - 1))) {
    t.lo = 0;
    t.hi = 0;
    t.lerp = 0.0f;
    t.inside = false;
    return t;
  }
  const float low = floorf(v);
  t.lo = static_cast<int>(low);
  t.hi = static_cast<int>(ceilf(v));
  t.lerp = v - low;
  t.inside = true;
  return t;
}

// One crop_and_resize sample of an H x W plane (`width` pixels a row) from its taps along y and
// x, both inside: TF's order, every value converted to float first.
template <typename T>
EDGESEG_HD float crop_sample(const T* plane, int width, const CropTaps& ty, const CropTaps& tx) {
  const T* top_row = plane + static_cast<long long>(ty.lo) * width;
  const T* bottom_row = plane + static_cast<long long>(ty.hi) * width;
  const float top_left = hd_to_float(top_row[tx.lo]);
  const float top_right = hd_to_float(top_row[tx.hi]);
  const float bottom_left = hd_to_float(bottom_row[tx.lo]);
  const float bottom_right = hd_to_float(bottom_row[tx.hi]);
  const float top = top_left + (top_right - top_left) * tx.lerp;
  const float bottom = bottom_left + (bottom_right - bottom_left) * tx.lerp;
  return top + (bottom - top) * ty.lerp;
}

// Output element (c, i, j) of RoI `roi` (5 floats: batch index, x0, y0, x1, y1 normalised)
// cropped from one level [batch_size, channels, height, width] to out_h x out_w.  A RoI with an
// invalid batch index gives 0.
template <typename T>
EDGESEG_HD float crop_and_resize_element(const T* features, int batch_size, int channels, int height,
                                         int width, const float* roi, int out_h, int out_w, int c,
                                         int i, int j) {
  const int batch = roi_batch(roi[0]);
  if (batch < 0 || batch >= batch_size || height <= 0 || width <= 0) return 0.0f;
  const CropTaps ty = crop_axis(crop_coord(roi[2], roi[4], height, out_h, i), height);
  if (!ty.inside) return 0.0f;
  const CropTaps tx = crop_axis(crop_coord(roi[1], roi[3], width, out_w, j), width);
  if (!tx.inside) return 0.0f;
  const T* plane = features + (static_cast<long long>(batch) * channels + c) * height * width;
  return crop_sample(plane, width, ty, tx);
}

// FPN exponent k of a level from its spatial scale 2^-k (1/4 -> 2, 1/32 -> 5).
EDGESEG_HD int level_exponent(float spatial_scale) {
  return static_cast<int>(roundf(-log2f(spatial_scale)));
}

// The op's level_rule attribute.
enum LevelRule : int {
  kLevelTorchvision = 0,
  kLevelDetectron = 1,
  kLevelMatterport = 2,
};

// matterport's level (PyramidROIAlign: TF's log2_graph and tf.round), float32 in TF's order:
//   t = sqrt(h * w), d = canonical_scale / sqrt(image_area), l = log(t / d) / log(2),
//   k = canonical_level + round_half_even(l)
// with h = y1 - y0, w = x1 - x0 in the rois' units (normalised for matterport) and image_area the
// molded image's H * W in pixels.  logf(x) / logf(2.0f), not log2f: what TF computes.  A box
// with no positive area (a zero-padded row: log(0) = -inf, which TF casts to INT_MIN and its
// max() lifts to the first level) or a NaN term gets k_min.  Unclamped.
EDGESEG_HD int matterport_level(const float* roi, int k_min, float canonical_scale, int canonical_level,
                                float image_area) {
  const float h = roi[4] - roi[2];
  const float w = roi[3] - roi[1];
  const float area = h * w;
  const float t = sqrtf(area);
  const float d = canonical_scale / sqrtf(image_area);
  const float l = logf(t / d) / logf(2.0f);
  if (!(area > 0.0f) || l != l) return k_min;
  // Far beyond any level; only keeps the float -> int conversion of +-inf defined.
  const float r = hd_clamp(rintf(l), -1.0e6f, 1.0e6f);
  return canonical_level + static_cast<int>(r);
}

// Level index (0 = first, finest level) a RoI is pooled from, by the level rule:
//   kLevelTorchvision (torchvision's and detectron2's LevelMapper):
//     k = floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6),
//     area = (x1 - x0) * (y1 - y0);
//   kLevelDetectron (Detectron's and maskrcnn-benchmark's LevelMapper, +1 pixel convention):
//     k = floor(canonical_level + log2(sqrt(area) / canonical_scale + 1e-6)),
//     area = (x1 - x0 + 1) * (y1 - y0 + 1);
//   kLevelMatterport (matterport's PyramidROIAlign): matterport_level, image_area read;
// then clamped to [k_min, k_max], minus k_min; image pixels.  Everything is float32 in the
// reference's order.  Returns -1 (the RoI gets a zero output, as in torchvision) when the area is
// negative or NaN, or when k - k_min has no level (scales that are not consecutive powers of
// two).  With a single level every RoI uses it.
EDGESEG_HD int roi_level(const float* roi, int num_levels, int k_min, int k_max,
                         float canonical_scale, int canonical_level, int level_rule,
                         float image_area) {
  if (num_levels == 1) return 0;
  float k;
  if (level_rule == kLevelMatterport) {
    const int km = matterport_level(roi, k_min, canonical_scale, canonical_level, image_area);
    const int level = hd_clamp(km, k_min, k_max) - k_min;
    return (level >= 0 && level < num_levels) ? level : -1;
  } else if (level_rule == kLevelDetectron) {
    const float area = (roi[3] - roi[1] + 1.0f) * (roi[4] - roi[2] + 1.0f);
    const float side = sqrtf(area);
    k = floorf(static_cast<float>(canonical_level) + log2f(side / canonical_scale + 1e-6f));
  } else {
    const float area = (roi[3] - roi[1]) * (roi[4] - roi[2]);
    const float side = sqrtf(area);
    k = floorf(static_cast<float>(canonical_level) + log2f(side / canonical_scale) + 1e-6f);
  }
  if (k != k) return -1;  // NaN
  k = hd_clamp(k, static_cast<float>(k_min), static_cast<float>(k_max));
  const int level = static_cast<int>(k) - k_min;
  return (level >= 0 && level < num_levels) ? level : -1;
}

}  // namespace roi_align
}  // namespace edgeseg
