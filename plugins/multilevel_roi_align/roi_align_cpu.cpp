// roi_align_cpu.cpp - CPU build of MultiLevelRoIAlign (and plain RoIAlign, L == 1).
//
// All of the math comes from roi_align_math.h, which the CUDA kernel of the TensorRT plugin
// shares; this file only arranges it for a CPU.  Plain C interface (raw pointers, sizes,
// attributes, thread count) so Python can call it through ctypes; no torch, no Python C API.
// Inputs are assumed valid: edgeseg/ops.py checks shapes, dtypes and batch indices.
//
// How it is arranged: a sample point of a RoI reads the same four pixels with the same four
// weights in every channel, so the taps are worked out once per RoI (per axis, with
// make_roi_bins, sample_coord and bilinear_axis; bilinear_tap is bilinear_axis along y and x)
// and then applied to a block of kBlock channels at a time.  RoIs are grouped by the (level,
// image) they read; for each group and channel block, the pixels the group's RoIs read are first
// interleaved from the kBlock planes into a per-thread buffer (channels last, so that a tap is a
// kBlock-wide vector multiply-add) which stays in cache while all RoIs of the group are pooled
// from it.  The samples of a bin are added in roi_align_bin's order and each sample in
// bilinear_tap's, so every output is the same float as roi_align_bin's.  Threads share out the
// (group, channel block) pairs, split further into chunks of RoIs when channels are few.
//
// With sampling 1 (tf.image.crop_and_resize) the same arrangement runs with one sample per output
// cell: the tap tables hold crop_coord + crop_axis per RoI and axis (crop_taps), and crop_block
// does crop_sample's arithmetic kBlock channels at a time, so every output is crop_sample's float.
#include <stdint.h>

#include <algorithm>
#include <vector>

#include "common/cpu_threads.h"
#include "multilevel_roi_align/roi_align_math.h"

namespace {

namespace ra = edgeseg::roi_align;

// Channels pooled together (the width of the multiply-adds).
constexpr int64_t kBlock = 8;

// Pixels interleaved per strip (the kBlock source rows of a strip stay in L1).
constexpr int64_t kStrip = 128;

// Beyond this many samples along an axis a RoI is pooled element by element with roi_align_bin
// instead of from tap tables, which would take a lot of memory (reachable only with adaptive
// sampling of RoIs thousands of feature pixels large, slow either way).
constexpr int64_t kMaxAxisSamples = 4096;

// Jobs per thread wanted; with few channel blocks a group's RoIs are split into chunks.
constexpr int64_t kJobsPerThread = 4;

// How a RoI is pooled.
enum Mode : unsigned char {
  kZero,        // no level, no valid image or an empty level: all zeros (as roi_align_bin)
  kTaps,        // from the tap tables, kBlock channels at a time
  kPerElement,  // roi_align_bin for every output element
};

// Taps of every sample along one axis of a RoI: entry p * grid + i is sample i of bin p.
void axis_taps(float start, float bin, int64_t bins, int grid, int size, ra::AxisTaps* taps) {
  for (int64_t p = 0; p < bins; ++p) {
    for (int i = 0; i < grid; ++i) {
      taps[p * grid + i] =
          ra::bilinear_axis(ra::sample_coord(start, bin, static_cast<int>(p), i, grid), size);
    }
  }
}

// dst[p * kBlock + k] = src[k * pixels + p] for k < kc and p in [p_begin, p_end); lanes kc..
// of those pixels are zeroed.
void interleave(const float* src, int64_t pixels, int64_t kc, int64_t p_begin, int64_t p_end,
                float* dst) {
  for (int64_t p0 = p_begin; p0 < p_end; p0 += kStrip) {
    const int64_t p1 = std::min(p0 + kStrip, p_end);
    for (int64_t k = 0; k < kBlock; ++k) {
      float* d = dst + k;
      if (k < kc) {
        const float* s = src + k * pixels;
        for (int64_t p = p0; p < p1; ++p) d[p * kBlock] = s[p];
      } else {
        for (int64_t p = p0; p < p1; ++p) d[p * kBlock] = 0.0f;
      }
    }
  }
}

// Taps of the n crop_and_resize samples along one axis of `size` pixels of a box from a0 to a1
// (normalised), as AxisTaps: lo / hi the pixels, w_hi the lerp weight of hi (crop_block reads
// only these; w_lo is unused), inside as crop_axis.
void crop_taps(float a0, float a1, int64_t n, int size, ra::AxisTaps* taps) {
  for (int64_t i = 0; i < n; ++i) {
    const ra::CropTaps t =
        ra::crop_axis(ra::crop_coord(a0, a1, size, static_cast<int>(n), static_cast<int>(i)), size);
    taps[i] = ra::AxisTaps{t.lo, t.hi, 0.0f, t.lerp, t.inside};
  }
}

// Pixels [lo, hi] along one axis that the inside taps of `taps` read; lo > hi when none.
void tap_range(const ra::AxisTaps* taps, int64_t count, int* lo, int* hi) {
  *lo = 2147483647;
  *hi = -1;
  for (int64_t i = 0; i < count; ++i) {
    if (!taps[i].inside) continue;
    *lo = std::min(*lo, taps[i].lo);
    *hi = std::max(*hi, taps[i].hi);
  }
}

// Bin averages of one RoI for kBlock channels: avg[(ph * out_w + pw) * kBlock + k].  `block` is
// the interleaved level image, `width` pixels wide.
void pool_block(const float* block, int64_t width, const ra::AxisTaps* y_taps,
                const ra::AxisTaps* x_taps, int grid_h, int grid_w, float count, int64_t out_h,
                int64_t out_w, float* avg) {
  const int64_t row_stride = width * kBlock;
  for (int64_t ph = 0; ph < out_h; ++ph) {
    for (int64_t pw = 0; pw < out_w; ++pw) {
      float sum[kBlock] = {};
      for (int iy = 0; iy < grid_h; ++iy) {
        const ra::AxisTaps& ty = y_taps[ph * grid_h + iy];
        if (!ty.inside) continue;  // bilinear_tap is 0: adding it changes nothing
        const float* row0 = block + ty.lo * row_stride;
        const float* row1 = block + ty.hi * row_stride;
        for (int ix = 0; ix < grid_w; ++ix) {
          const ra::AxisTaps& tx = x_taps[pw * grid_w + ix];
          if (!tx.inside) continue;
          const float w00 = ty.w_lo * tx.w_lo;
          const float w01 = ty.w_lo * tx.w_hi;
          const float w10 = ty.w_hi * tx.w_lo;
          const float w11 = ty.w_hi * tx.w_hi;
          const float* p00 = row0 + tx.lo * kBlock;
          const float* p01 = row0 + tx.hi * kBlock;
          const float* p10 = row1 + tx.lo * kBlock;
          const float* p11 = row1 + tx.hi * kBlock;
#pragma omp simd
          for (int64_t k = 0; k < kBlock; ++k) {
            sum[k] += w00 * p00[k] + w01 * p01[k] + w10 * p10[k] + w11 * p11[k];
          }
        }
      }
      float* a = avg + (ph * out_w + pw) * kBlock;
#pragma omp simd
      for (int64_t k = 0; k < kBlock; ++k) a[k] = sum[k] / count;
    }
  }
}

// crop_and_resize of one RoI for kBlock channels: out[(i * out_w + j) * kBlock + k], the taps
// from crop_taps; crop_sample's operations in its order, 0 off the map.
void crop_block(const float* block, int64_t width, const ra::AxisTaps* y_taps,
                const ra::AxisTaps* x_taps, int64_t out_h, int64_t out_w, float* out) {
  const int64_t row_stride = width * kBlock;
  for (int64_t i = 0; i < out_h; ++i) {
    const ra::AxisTaps& ty = y_taps[i];
    for (int64_t j = 0; j < out_w; ++j) {
      const ra::AxisTaps& tx = x_taps[j];
      float* o = out + (i * out_w + j) * kBlock;
      if (!ty.inside || !tx.inside) {
        for (int64_t k = 0; k < kBlock; ++k) o[k] = 0.0f;
        continue;
      }
      const float ly = ty.w_hi;
      const float lx = tx.w_hi;
      const float* tl = block + ty.lo * row_stride + tx.lo * kBlock;
      const float* tr = block + ty.lo * row_stride + tx.hi * kBlock;
      const float* bl = block + ty.hi * row_stride + tx.lo * kBlock;
      const float* br = block + ty.hi * row_stride + tx.hi * kBlock;
#pragma omp simd
      for (int64_t k = 0; k < kBlock; ++k) {
        const float top = tl[k] + (tr[k] - tl[k]) * lx;
        const float bottom = bl[k] + (br[k] - bl[k]) * lx;
        o[k] = top + (bottom - top) * ly;
      }
    }
  }
}

}  // namespace

extern "C" {

// Bumped whenever a signature below changes; edgeseg/ops.py refuses a library of another version.
int32_t edgeseg_ops_abi_version(void) { return 3; }

// Level index of every RoI (see edgeseg::roi_align::roi_level); -1 = no level (zero output).
// k_min and k_max come from the first and last spatial scale; image_area is read by level rule 2.
// Returns 0, or 1 on bad arguments.
int32_t edgeseg_roi_levels(const float* rois, int64_t num_rois, const float* spatial_scales,
                           int64_t num_levels, float canonical_scale, int64_t canonical_level,
                           int32_t level_rule, float image_area, int64_t* levels) {
  if (num_rois < 0 || num_levels < 1 || (num_rois > 0 && (rois == nullptr || levels == nullptr)) ||
      spatial_scales == nullptr) {
    return 1;
  }
  const int k_min = edgeseg::roi_align::level_exponent(spatial_scales[0]);
  const int k_max = edgeseg::roi_align::level_exponent(spatial_scales[num_levels - 1]);
  for (int64_t r = 0; r < num_rois; ++r) {
    levels[r] = edgeseg::roi_align::roi_level(rois + 5 * r, static_cast<int>(num_levels), k_min,
                                              k_max, canonical_scale,
                                              static_cast<int>(canonical_level), level_rule,
                                              image_area);
  }
  return 0;
}

// output[r, c, ph, pw] for every RoI r, pooled from the level roi_level() picks for it.
//   features[l]          level l, float32 [batch_size, channels, heights[l], widths[l]], C order
//   spatial_scales[l]    feature pixels per image pixel of level l
//   rois                 float32 [num_rois, 5]: batch index, x0, y0, x1, y1 (image pixels;
//                        normalised with sampling 1)
//   sampling             0: RoIAlign bins (sampling_ratio, aligned read); 1: crop_and_resize
//   output               float32 [num_rois, channels, out_h, out_w], fully written
//   threads              OpenMP threads; 0 = OpenMP's default
// Returns 0, or 1 on bad arguments (nothing written).
int32_t edgeseg_multilevel_roi_align_f32(const float* const* features, const int64_t* heights,
                                         const int64_t* widths, const float* spatial_scales,
                                         int64_t num_levels, int64_t batch_size, int64_t channels,
                                         const float* rois, int64_t num_rois, int64_t out_h,
                                         int64_t out_w, int64_t sampling_ratio, int32_t aligned,
                                         float canonical_scale, int64_t canonical_level,
                                         int32_t level_rule, float image_area, int32_t sampling,
                                         int32_t threads, float* output) {
  if (num_levels < 1 || batch_size < 0 || channels < 0 || num_rois < 0 || out_h < 1 ||
      out_w < 1 || features == nullptr || heights == nullptr || widths == nullptr ||
      spatial_scales == nullptr || (num_rois > 0 && (rois == nullptr || output == nullptr)) ||
      (sampling != ra::kSamplingRoiAlign && sampling != ra::kSamplingCropAndResize)) {
    return 1;
  }
  if (num_rois == 0 || channels == 0) return 0;

  std::vector<int64_t> level(static_cast<size_t>(num_rois));
  if (edgeseg_roi_levels(rois, num_rois, spatial_scales, num_levels, canonical_scale,
                         canonical_level, level_rule, image_area, level.data()) != 0) {
    return 1;
  }
  const bool crop = sampling == ra::kSamplingCropAndResize;

  // Geometry and mode of every RoI; tap tables of the kTaps ones (y taps, then x taps, from
  // taps_at[r]).  A group is the RoIs of one (level, image): group g = level * batch_size + image.
  const size_t n = static_cast<size_t>(num_rois);
  const int64_t num_groups = num_levels * batch_size;
  std::vector<ra::RoiBins> bins(n);
  std::vector<unsigned char> mode(n, kZero);
  std::vector<int64_t> taps_at(n + 1, 0);
  std::vector<int64_t> group_end(static_cast<size_t>(num_groups) + 1, 0);  // counts, then ends
  for (size_t r = 0; r < n; ++r) {
    const int64_t l = level[r];
    int64_t taps = 0;
    if (l >= 0) {
      ra::RoiBins b{};
      if (crop) {
        // one sample per output cell; only the batch index and the grid of one are read
        b.batch = ra::roi_batch(rois[5 * r]);
        b.grid_h = 1;
        b.grid_w = 1;
      } else {
        b = ra::make_roi_bins(rois + 5 * r, spatial_scales[l], static_cast<int>(out_h),
                              static_cast<int>(out_w), static_cast<int>(sampling_ratio),
                              aligned != 0);
      }
      bins[r] = b;
      if (b.batch >= 0 && b.batch < batch_size && heights[l] > 0 && widths[l] > 0) {
        const int64_t y_taps = out_h * b.grid_h;
        const int64_t x_taps = out_w * b.grid_w;
        // crop_and_resize has out_h + out_w taps a RoI whatever its size: always tap tables
        if (crop || (y_taps <= kMaxAxisSamples && x_taps <= kMaxAxisSamples)) {
          mode[r] = kTaps;
          taps = y_taps + x_taps;
          ++group_end[static_cast<size_t>(l * batch_size + b.batch) + 1];
        } else {
          mode[r] = kPerElement;
        }
      }
    }
    taps_at[r + 1] = taps_at[r] + taps;
  }
  for (size_t g = 0; g < static_cast<size_t>(num_groups); ++g) group_end[g + 1] += group_end[g];
  // kTaps RoIs sorted by group: order[group_end[g] .. group_end[g + 1]) is group g.
  std::vector<int64_t> order(static_cast<size_t>(group_end[static_cast<size_t>(num_groups)]));
  {
    std::vector<int64_t> next(group_end.begin(), group_end.end() - 1);
    for (size_t r = 0; r < n; ++r) {
      if (mode[r] != kTaps) continue;
      const size_t g = static_cast<size_t>(level[r] * batch_size + bins[r].batch);
      order[static_cast<size_t>(next[g]++)] = static_cast<int64_t>(r);
    }
  }
  std::vector<ra::AxisTaps> taps(static_cast<size_t>(taps_at[n]));
  // Pixels of its level image a kTaps RoI reads: rows foot[4r]..foot[4r+1], columns
  // foot[4r+2]..foot[4r+3] (none when a range is empty).
  std::vector<int> foot(4 * n, 0);

  const int64_t plane = out_h * out_w;
  const int nt = edgeseg::cpu_thread_count(threads);
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt)
  for (int64_t r = 0; r < num_rois; ++r) {
    // Tap tables; RoIs without them are written here in full.
    const size_t ri = static_cast<size_t>(r);
    const ra::RoiBins& b = bins[ri];
    const int64_t l = level[ri];
    float* out = output + r * channels * plane;
    if (mode[ri] == kZero) {
      std::fill(out, out + channels * plane, 0.0f);
    } else if (mode[ri] == kTaps) {
      ra::AxisTaps* y_taps = taps.data() + taps_at[ri];
      ra::AxisTaps* x_taps = y_taps + out_h * b.grid_h;
      if (crop) {
        const float* roi = rois + 5 * r;
        crop_taps(roi[2], roi[4], out_h, static_cast<int>(heights[l]), y_taps);
        crop_taps(roi[1], roi[3], out_w, static_cast<int>(widths[l]), x_taps);
      } else {
        axis_taps(b.start_y, b.bin_h, out_h, b.grid_h, static_cast<int>(heights[l]), y_taps);
        axis_taps(b.start_x, b.bin_w, out_w, b.grid_w, static_cast<int>(widths[l]), x_taps);
      }
      tap_range(y_taps, out_h * b.grid_h, &foot[4 * ri], &foot[4 * ri + 1]);
      tap_range(x_taps, out_w * b.grid_w, &foot[4 * ri + 2], &foot[4 * ri + 3]);
    } else {
      for (int64_t c = 0; c < channels; ++c) {
        for (int64_t ph = 0; ph < out_h; ++ph) {
          for (int64_t pw = 0; pw < out_w; ++pw) {
            out[c * plane + ph * out_w + pw] = ra::roi_align_bin(
                features[l], static_cast<int>(batch_size), static_cast<int>(channels),
                static_cast<int>(heights[l]), static_cast<int>(widths[l]), b,
                static_cast<int>(c), static_cast<int>(ph), static_cast<int>(pw));
          }
        }
      }
    }
  }

  // Pixel spans of each group's level image that its RoIs read (only these are interleaved):
  // the spans of job group j are spans[span_at[j] .. span_at[j + 1]), pairs [begin, end).
  std::vector<int64_t> job_group;
  std::vector<int64_t> span_at(1, 0);
  std::vector<int64_t> spans;
  int64_t max_pixels = 0;
  {
    std::vector<int> col_lo;
    std::vector<int> col_hi;
    for (int64_t g = 0; g < num_groups; ++g) {
      const size_t gi = static_cast<size_t>(g);
      if (group_end[gi] == group_end[gi + 1]) continue;
      job_group.push_back(g);
      const int64_t l = g / batch_size;
      const int height = static_cast<int>(heights[l]);
      const int width = static_cast<int>(widths[l]);
      col_lo.assign(static_cast<size_t>(std::max(height, 0)), width);
      col_hi.assign(static_cast<size_t>(std::max(height, 0)), -1);
      bool any = false;
      for (int64_t i = group_end[gi]; i < group_end[gi + 1]; ++i) {
        const int* f = &foot[4 * static_cast<size_t>(order[static_cast<size_t>(i)])];
        if (f[0] > f[1] || f[2] > f[3]) continue;  // reads nothing
        any = true;
        for (int y = f[0]; y <= f[1]; ++y) {
          col_lo[static_cast<size_t>(y)] = std::min(col_lo[static_cast<size_t>(y)], f[2]);
          col_hi[static_cast<size_t>(y)] = std::max(col_hi[static_cast<size_t>(y)], f[3]);
        }
      }
      if (any) {
        max_pixels = std::max(max_pixels, heights[l] * widths[l]);
        for (int y = 0; y < height; ++y) {
          const size_t yi = static_cast<size_t>(y);
          if (col_lo[yi] > col_hi[yi]) continue;
          const int64_t begin = static_cast<int64_t>(y) * width + col_lo[yi];
          const int64_t end = static_cast<int64_t>(y) * width + col_hi[yi] + 1;
          if (static_cast<int64_t>(spans.size()) > span_at.back() && spans.back() == begin) {
            spans.back() = end;  // continues the previous span
          } else {
            spans.push_back(begin);
            spans.push_back(end);
          }
        }
      }
      span_at.push_back(static_cast<int64_t>(spans.size()));
    }
  }

  // Jobs: (group, channel block, chunk of the group's RoIs); more than one chunk only when there
  // are too few (group, block) pairs for the threads (few channels).
  const int64_t num_blocks = (channels + kBlock - 1) / kBlock;
  const int64_t pairs = static_cast<int64_t>(job_group.size()) * num_blocks;
  const int64_t chunks =
      (pairs > 0 && pairs < kJobsPerThread * nt) ? (kJobsPerThread * nt + pairs - 1) / pairs : 1;
  const int64_t num_jobs = pairs * chunks;
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> block(static_cast<size_t>(max_pixels * kBlock));
    std::vector<float> avg(static_cast<size_t>(plane * kBlock));
#pragma omp for schedule(dynamic, 1)
    for (int64_t job = 0; job < num_jobs; ++job) {
      const size_t j = static_cast<size_t>(job / (num_blocks * chunks));
      const int64_t g = job_group[j];
      const int64_t c0 = (job / chunks % num_blocks) * kBlock;
      const int64_t chunk = job % chunks;
      const int64_t first = group_end[static_cast<size_t>(g)];
      const int64_t count = group_end[static_cast<size_t>(g) + 1] - first;
      const int64_t begin = first + count * chunk / chunks;
      const int64_t end = first + count * (chunk + 1) / chunks;
      if (begin == end) continue;
      const int64_t kc = std::min(kBlock, channels - c0);
      const int64_t l = g / batch_size;
      const int64_t image = g % batch_size;
      const int64_t pixels = heights[l] * widths[l];
      const float* src = features[l] + (image * channels + c0) * pixels;
      for (int64_t i = span_at[j]; i < span_at[j + 1]; i += 2) {
        interleave(src, pixels, kc, spans[static_cast<size_t>(i)],
                   spans[static_cast<size_t>(i) + 1], block.data());
      }
      for (int64_t i = begin; i < end; ++i) {
        const size_t r = static_cast<size_t>(order[static_cast<size_t>(i)]);
        const ra::RoiBins& b = bins[r];
        const ra::AxisTaps* t = taps.data() + taps_at[r];
        if (crop) {
          crop_block(block.data(), widths[l], t, t + out_h, out_h, out_w, avg.data());
        } else {
          pool_block(block.data(), widths[l], t, t + out_h * b.grid_h, b.grid_h, b.grid_w,
                     b.count, out_h, out_w, avg.data());
        }
        float* out = output + (static_cast<int64_t>(r) * channels + c0) * plane;
        for (int64_t k = 0; k < kc; ++k) {
          for (int64_t bin = 0; bin < plane; ++bin) {
            out[k * plane + bin] = avg[static_cast<size_t>(bin * kBlock + k)];
          }
        }
      }
    }
  }
  return 0;
}

}  // extern "C"
