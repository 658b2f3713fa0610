// kernel_entry.cu - extern "C" entry points over the launchers the TensorRT plugins call, for the
// CUDA kernel tests (tests/test_cuda_kernels.py) on a GPU machine without TensorRT.
//
// Built by nvcc together with plugins/*/..._kernel.cu into a test-only shared library that Python
// drives with ctypes and device memory from PyTorch.  Everything runs on the legacy default
// stream; each entry point returns the launcher's cudaError_t (0 = success) as an int32.
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <stdint.h>

#include "multilevel_roi_align/roi_align_kernel.h"
#include "paste_masks/paste_masks_kernel.h"
#include "zoom_linear/zoom_linear_kernel.h"

namespace {

namespace ra = edgeseg::roi_align;

template <typename T>
int32_t roi_align(const void* const* features, const int32_t* heights, const int32_t* widths,
                  const float* spatial_scales, int32_t num_levels, int32_t batch_size,
                  int32_t channels, const float* rois, int64_t num_rois, int32_t out_h,
                  int32_t out_w, int32_t sampling_ratio, int32_t aligned, float canonical_scale,
                  int32_t canonical_level, int32_t level_rule, float image_area, int32_t sampling,
                  void* output) {
  if (num_levels < 1 || num_levels > ra::kMaxLevels) return cudaErrorInvalidValue;
  ra::FeaturePyramid<T> pyramid{};
  pyramid.num_levels = num_levels;
  for (int32_t l = 0; l < num_levels; ++l) {
    pyramid.features[l] = static_cast<const T*>(features[l]);
    pyramid.heights[l] = heights[l];
    pyramid.widths[l] = widths[l];
    pyramid.spatial_scales[l] = spatial_scales[l];
  }
  return ra::launch_multilevel_roi_align<T>(pyramid, batch_size, channels, rois, num_rois, out_h,
                                            out_w, sampling_ratio, aligned != 0, canonical_scale,
                                            canonical_level, level_rule, image_area, sampling,
                                            static_cast<T*>(output), nullptr);
}

}  // namespace

extern "C" {

// MultiLevelRoIAlign: features[l] device pointers (host array), float (half_features 0) or
// __half (1); rois device float [num_rois, 5]; output device, the features' type; the rest the
// op's attributes.
int32_t edgeseg_test_roi_align(int32_t half_features, const void* const* features,
                               const int32_t* heights, const int32_t* widths,
                               const float* spatial_scales, int32_t num_levels,
                               int32_t batch_size, int32_t channels, const float* rois,
                               int64_t num_rois, int32_t out_h, int32_t out_w,
                               int32_t sampling_ratio, int32_t aligned, float canonical_scale,
                               int32_t canonical_level, int32_t level_rule, float image_area,
                               int32_t sampling, void* output) {
  return half_features != 0
             ? roi_align<__half>(features, heights, widths, spatial_scales, num_levels, batch_size,
                                 channels, rois, num_rois, out_h, out_w, sampling_ratio, aligned,
                                 canonical_scale, canonical_level, level_rule, image_area, sampling,
                                 output)
             : roi_align<float>(features, heights, widths, spatial_scales, num_levels, batch_size,
                                channels, rois, num_rois, out_h, out_w, sampling_ratio, aligned,
                                canonical_scale, canonical_level, level_rule, image_area, sampling,
                                output);
}

// PasteMasks: masks device float or __half [num_masks, mask_size, mask_size]; boxes device float
// [num_masks, 4]; count device int32 [1] or nullptr; output device uint8 [num_masks, h, w].
int32_t edgeseg_test_paste_masks(int32_t half_masks, const void* masks, const float* boxes,
                                 const int32_t* count, int64_t num_masks, int32_t mask_size,
                                 int32_t height, int32_t width, float threshold, int32_t mode,
                                 int32_t logits, uint8_t* output) {
  namespace pm = edgeseg::paste_masks;
  return half_masks != 0
             ? pm::launch_paste_masks<__half>(static_cast<const __half*>(masks), boxes, count,
                                              num_masks, mask_size, height, width, threshold, mode,
                                              logits != 0, output, nullptr)
             : pm::launch_paste_masks<float>(static_cast<const float*>(masks), boxes, count,
                                             num_masks, mask_size, height, width, threshold, mode,
                                             logits != 0, output, nullptr);
}

// ZoomLinear: image device float [rows, cols, channels]; value_range device float [2]; mean host
// float [num_means] (the attribute, read as the plugin reads it); output device float
// [channels, canvas_height, canvas_width].
int32_t edgeseg_test_zoom_linear(const float* image, int32_t rows, int32_t cols, int32_t channels,
                                 const float* value_range, const float* mean, int32_t num_means,
                                 int32_t height, int32_t width, int32_t canvas_height,
                                 int32_t canvas_width, int32_t top, int32_t left, float* output) {
  namespace zl = edgeseg::zoom_linear;
  if (num_means < 1 || num_means > zl::kMaxMeans) return cudaErrorInvalidValue;
  const zl::ZoomGeometry g = {rows, cols, channels, height, width, canvas_height, canvas_width, top, left};
  return zl::launch_zoom_linear(image, value_range, zl::read_means(mean, num_means), g, output, nullptr);
}

// Waits for the kernels; returns the first asynchronous error.
int32_t edgeseg_test_synchronize(void) { return cudaDeviceSynchronize(); }

const char* edgeseg_test_error_string(int32_t status) {
  return cudaGetErrorString(static_cast<cudaError_t>(status));
}

}  // extern "C"
