// roi_align_kernel.cu - CUDA kernel and launcher of MultiLevelRoIAlign.
//
// A thin grid-stride loop around roi_align_math.h: one iteration = one output element
// (r, c, ph, pw), which picks its RoI's level with roi_level() and pools it with
// roi_align_element() (sampling 0) or crop_and_resize_element() (sampling 1), exactly the
// functions the CPU build (roi_align_cpu.cpp) is made of.
// Threads of a warp work on neighbouring pw / ph of one RoI and channel, so they share the RoI's
// geometry and read nearby feature pixels.
//
// Compile with --fmad=false (and without --use_fast_math): nvcc otherwise contracts the math's
// a * b + c into fused multiply-adds, whose single rounding gives floats that differ in the last
// bits from the CPU build's, and from the torchvision results the CPU build is tested against.
#include "multilevel_roi_align/roi_align_kernel.h"

#include "common/cuda_check.h"
#include "multilevel_roi_align/roi_align_math.h"

namespace edgeseg {
namespace roi_align {
namespace detail {

constexpr int kThreads = 256;
// Enough resident threads for any current GPU; the grid-stride loop covers the rest.
constexpr int64_t kMaxBlocks = 8192;

// Everything one output element needs, passed to the kernel by value.
template <typename T>
struct RoiAlignArgs {
  FeaturePyramid<T> pyramid;
  const float* rois;
  T* output;
  int batch_size;
  int channels;
  int out_h;
  int out_w;
  int sampling_ratio;
  bool aligned;
  float canonical_scale;
  int canonical_level;
  int level_rule;
  float image_area;
  int sampling;
  int k_min;  // FPN exponents of the first and last level (level_exponent)
  int k_max;
};

EDGESEG_HD void store(float* dst, float v) { *dst = v; }
EDGESEG_HD void store(__half* dst, float v) { *dst = __float2half_rn(v); }

// Output element `index` of the flat [num_rois, channels, out_h, out_w] output.  Index is
// uint32_t when the whole output has fewer than 2^31 elements (cheaper divisions), else int64_t.
template <typename T, typename Index>
EDGESEG_HD float pooled_element(const RoiAlignArgs<T>& a, Index index) {
  const Index pw = index % static_cast<Index>(a.out_w);
  Index rest = index / static_cast<Index>(a.out_w);
  const Index ph = rest % static_cast<Index>(a.out_h);
  rest /= static_cast<Index>(a.out_h);
  const Index c = rest % static_cast<Index>(a.channels);
  const Index r = rest / static_cast<Index>(a.channels);

  float roi[5];
  const float* src = a.rois + static_cast<int64_t>(r) * 5;
  for (int i = 0; i < 5; ++i) roi[i] = src[i];

  const int level = roi_level(roi, a.pyramid.num_levels, a.k_min, a.k_max, a.canonical_scale,
                              a.canonical_level, a.level_rule, a.image_area);
  if (level < 0) return 0.0f;
  // Select the level's fields with compile-time indices so the struct stays in registers /
  // parameter space instead of being copied to local memory for a dynamic index.
  const T* features = nullptr;
  int height = 0;
  int width = 0;
  float scale = 0.0f;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int l = 0; l < kMaxLevels; ++l) {
    if (l == level) {
      features = a.pyramid.features[l];
      height = a.pyramid.heights[l];
      width = a.pyramid.widths[l];
      scale = a.pyramid.spatial_scales[l];
    }
  }
  if (a.sampling == kSamplingCropAndResize) {
    return crop_and_resize_element(features, a.batch_size, a.channels, height, width, roi, a.out_h,
                                   a.out_w, static_cast<int>(c), static_cast<int>(ph),
                                   static_cast<int>(pw));
  }
  return roi_align_element(features, a.batch_size, a.channels, height, width, roi, scale,
                           a.out_h, a.out_w, a.sampling_ratio, a.aligned, static_cast<int>(c),
                           static_cast<int>(ph), static_cast<int>(pw));
}

template <typename T, typename Index>
__global__ void __launch_bounds__(kThreads)
    multilevel_roi_align_kernel(const RoiAlignArgs<T> args, Index total) {
  const Index stride = static_cast<Index>(gridDim.x) * static_cast<Index>(blockDim.x);
  for (Index i = static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) + threadIdx.x;
       i < total; i += stride) {
    store(args.output + i, pooled_element(args, i));
  }
}

}  // namespace detail

template <typename T>
cudaError_t launch_multilevel_roi_align(const FeaturePyramid<T>& pyramid, int batch_size,
                                        int channels, const float* rois, int64_t num_rois, int out_h,
                                        int out_w, int sampling_ratio, bool aligned,
                                        float canonical_scale, int canonical_level, int level_rule,
                                        float image_area, int sampling, T* output,
                                        cudaStream_t stream) {
  const int num_levels = pyramid.num_levels;
  if (num_levels < 1 || num_levels > kMaxLevels || batch_size < 0 || channels < 0 ||
      num_rois < 0 || out_h < 1 || out_w < 1 ||
      (sampling != kSamplingRoiAlign && sampling != kSamplingCropAndResize)) {
    return cudaErrorInvalidValue;
  }
  for (int l = 0; l < num_levels; ++l) {
    const float s = pyramid.spatial_scales[l];
    if (!(s > 0.0f && s <= 3.0e38f) || pyramid.heights[l] < 0 || pyramid.widths[l] < 0) {
      return cudaErrorInvalidValue;
    }
  }
  if (num_rois == 0 || channels == 0) return cudaSuccess;

  int64_t per_roi = 0;
  int64_t total = 0;
  const int64_t limit = INT64_MAX / 2;  // keeps i + stride of the grid-stride loop in range
  if (!checked_mul(static_cast<int64_t>(channels), static_cast<int64_t>(out_h) * out_w, limit,
                   &per_roi) ||
      !checked_mul(num_rois, per_roi, limit, &total)) {
    return cudaErrorInvalidValue;
  }
  if (rois == nullptr || output == nullptr) return cudaErrorInvalidValue;
  for (int l = 0; l < num_levels; ++l) {
    const bool read = batch_size > 0 && pyramid.heights[l] > 0 && pyramid.widths[l] > 0;
    if (read && pyramid.features[l] == nullptr) return cudaErrorInvalidValue;
  }

  detail::RoiAlignArgs<T> args;
  args.pyramid = pyramid;
  args.rois = rois;
  args.output = output;
  args.batch_size = batch_size;
  args.channels = channels;
  args.out_h = out_h;
  args.out_w = out_w;
  args.sampling_ratio = sampling_ratio;
  args.aligned = aligned;
  args.canonical_scale = canonical_scale;
  args.canonical_level = canonical_level;
  args.level_rule = level_rule;
  args.image_area = image_area;
  args.sampling = sampling;
  args.k_min = level_exponent(pyramid.spatial_scales[0]);
  args.k_max = level_exponent(pyramid.spatial_scales[num_levels - 1]);

  const unsigned int blocks = grid_blocks(total, detail::kThreads, detail::kMaxBlocks);
  if (total <= INT32_MAX) {
    // i < 2^31 and stride <= 2^31: i + stride never wraps a uint32_t.
    detail::multilevel_roi_align_kernel<T, uint32_t>
        <<<blocks, detail::kThreads, 0, stream>>>(args, static_cast<uint32_t>(total));
  } else {
    detail::multilevel_roi_align_kernel<T, int64_t>
        <<<blocks, detail::kThreads, 0, stream>>>(args, total);
  }
  return cudaGetLastError();
}

template cudaError_t launch_multilevel_roi_align<float>(const FeaturePyramid<float>&, int, int,
                                                        const float*, int64_t, int, int, int,
                                                        bool, float, int, int, float, int,
                                                        float*, cudaStream_t);
template cudaError_t launch_multilevel_roi_align<__half>(const FeaturePyramid<__half>&, int, int,
                                                         const float*, int64_t, int, int, int,
                                                         bool, float, int, int, float, int,
                                                         __half*, cudaStream_t);

}  // namespace roi_align
}  // namespace edgeseg
