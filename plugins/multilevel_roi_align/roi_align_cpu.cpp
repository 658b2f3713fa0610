// roi_align_cpu.cpp - CPU build of MultiLevelRoIAlign (and plain RoIAlign, L == 1).
//
// A thin OpenMP loop around roi_align_math.h, which holds all of the math; the CUDA kernel of the
// TensorRT plugin will be an equally thin loop around the same header.  Plain C interface (raw
// pointers, sizes, attributes, thread count) so Python can call it through ctypes; no torch, no
// Python C API.  Inputs are assumed valid: edgeseg/ops.py checks shapes, dtypes and batch indices.
#include <stdint.h>

#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "multilevel_roi_align/roi_align_math.h"

namespace {

int thread_count(int32_t requested) {
#ifdef _OPENMP
  return requested > 0 ? requested : omp_get_max_threads();
#else
  (void)requested;
  return 1;
#endif
}

}  // namespace

extern "C" {

// Bumped whenever a signature below changes; edgeseg/ops.py refuses a library of another version.
int32_t edgeseg_ops_abi_version(void) { return 1; }

// Level index of every RoI (see edgeseg::roi_align::roi_level); -1 = no level (zero output).
// k_min and k_max come from the first and last spatial scale.  Returns 0, or 1 on bad arguments.
int32_t edgeseg_roi_levels(const float* rois, int64_t num_rois, const float* spatial_scales,
                           int64_t num_levels, float canonical_scale, int64_t canonical_level,
                           int64_t* levels) {
  if (num_rois < 0 || num_levels < 1 || (num_rois > 0 && (rois == nullptr || levels == nullptr)) ||
      spatial_scales == nullptr) {
    return 1;
  }
  const int k_min = edgeseg::roi_align::level_exponent(spatial_scales[0]);
  const int k_max = edgeseg::roi_align::level_exponent(spatial_scales[num_levels - 1]);
  for (int64_t r = 0; r < num_rois; ++r) {
    levels[r] = edgeseg::roi_align::roi_level(rois + 5 * r, static_cast<int>(num_levels), k_min,
                                              k_max, canonical_scale,
                                              static_cast<int>(canonical_level));
  }
  return 0;
}

// output[r, c, ph, pw] for every RoI r, pooled from the level roi_level() picks for it.
//   features[l]          level l, float32 [batch_size, channels, heights[l], widths[l]], C order
//   spatial_scales[l]    feature pixels per image pixel of level l
//   rois                 float32 [num_rois, 5]: batch index, x0, y0, x1, y1 (image pixels)
//   output               float32 [num_rois, channels, out_h, out_w], fully written
//   threads              OpenMP threads; 0 = OpenMP's default
// Returns 0, or 1 on bad arguments (nothing written).
int32_t edgeseg_multilevel_roi_align_f32(const float* const* features, const int64_t* heights,
                                         const int64_t* widths, const float* spatial_scales,
                                         int64_t num_levels, int64_t batch_size, int64_t channels,
                                         const float* rois, int64_t num_rois, int64_t out_h,
                                         int64_t out_w, int64_t sampling_ratio, int32_t aligned,
                                         float canonical_scale, int64_t canonical_level,
                                         int32_t threads, float* output) {
  if (num_levels < 1 || batch_size < 0 || channels < 0 || num_rois < 0 || out_h < 1 ||
      out_w < 1 || features == nullptr || heights == nullptr || widths == nullptr ||
      spatial_scales == nullptr || (num_rois > 0 && (rois == nullptr || output == nullptr))) {
    return 1;
  }
  if (num_rois == 0 || channels == 0) return 0;

  std::vector<int64_t> level(static_cast<size_t>(num_rois));
  if (edgeseg_roi_levels(rois, num_rois, spatial_scales, num_levels, canonical_scale,
                         canonical_level, level.data()) != 0) {
    return 1;
  }
  // Per-RoI geometry on its own level, shared by all channels and bins of the RoI.
  std::vector<edgeseg::roi_align::RoiBins> bins(static_cast<size_t>(num_rois));
  for (int64_t r = 0; r < num_rois; ++r) {
    const int64_t l = level[r] >= 0 ? level[r] : 0;
    bins[r] = edgeseg::roi_align::make_roi_bins(rois + 5 * r, spatial_scales[l],
                                                static_cast<int>(out_h), static_cast<int>(out_w),
                                                static_cast<int>(sampling_ratio), aligned != 0);
  }

  const int64_t plane = out_h * out_w;
  const int64_t jobs = num_rois * channels;  // one job = all bins of one (RoI, channel)
  const int nt = thread_count(threads);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t job = 0; job < jobs; ++job) {
    const int64_t r = job / channels;
    const int c = static_cast<int>(job % channels);
    float* out = output + job * plane;
    const int64_t l = level[r];
    if (l < 0) {
      for (int64_t i = 0; i < plane; ++i) out[i] = 0.0f;
      continue;
    }
    for (int ph = 0; ph < out_h; ++ph) {
      for (int pw = 0; pw < out_w; ++pw) {
        out[ph * out_w + pw] = edgeseg::roi_align::roi_align_bin(
            features[l], static_cast<int>(batch_size), static_cast<int>(channels),
            static_cast<int>(heights[l]), static_cast<int>(widths[l]), bins[r], c, ph, pw);
      }
    }
  }
  return 0;
}

}  // extern "C"
