// roi_align_kernel.h - CUDA launcher of MultiLevelRoIAlign (host-callable, plain C++).
//
// What the TensorRT plugin's enqueue calls with its device pointers: rois = input 0, the levels
// = inputs 1..L, output = output 0.  The kernel (roi_align_kernel.cu) computes one output element
// per grid-stride iteration with roi_align_math.h, the functions the CPU build uses, so both give
// the same floats when the kernel is compiled with --fmad=false (see README.md).
//
// Element type T of features and output: float or __half (CUDA's half); RoIs are always float
// (half carries box corners with 11 significant bits: whole pixels only up to 2048, coarser
// beyond).  Every sum is accumulated in float; a __half output is rounded to nearest.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <stdint.h>

namespace edgeseg {
namespace roi_align {

// Most pyramid levels one launch takes (FPN uses 4 or 5).
constexpr int kMaxLevels = 8;

// The pyramid, passed to the kernel by value: level l (l < num_levels) is the device array
// features[l], [batch_size, channels, heights[l], widths[l]], C-contiguous, with spatial scale
// spatial_scales[l] (feature pixels per image pixel; powers of two, finest level first).
// Entries from num_levels on are ignored.
template <typename T>
struct FeaturePyramid {
  const T* features[kMaxLevels];
  int heights[kMaxLevels];
  int widths[kMaxLevels];
  float spatial_scales[kMaxLevels];
  int num_levels;
};

// Enqueues output[r, c, ph, pw] for every RoI r on `stream`, each RoI pooled from the level that
// roi_level() picks for it (device side, from its area; with one level, plain RoIAlign).
//   pyramid          the levels (by value)
//   batch_size       N of every level; a RoI whose batch index (rois[r, 0], truncated) is not
//                    in [0, N) gets a zero output
//   channels         C of every level
//   rois             device float [num_rois, 5]: batch index, x0, y0, x1, y1 (image pixels;
//                    normalised with sampling 1)
//   output           device [num_rois, channels, out_h, out_w], fully written
//   out_h, out_w, sampling_ratio, aligned, canonical_scale, canonical_level, level_rule,
//   image_area, sampling: the op's attributes
//                    (plugins/multilevel_roi_align/README.md)
// Returns cudaErrorInvalidValue without launching on bad arguments (num_levels not in
// [1, kMaxLevels], negative sizes, out_h or out_w < 1, a sampling other than 0 or 1, a spatial scale that is not a positive
// finite number, a null pointer that would be read or written); cudaSuccess without launching
// when there is nothing to compute (num_rois == 0 or channels == 0); otherwise
// cudaGetLastError() after the launch.
template <typename T>
cudaError_t launch_multilevel_roi_align(const FeaturePyramid<T>& pyramid, int batch_size,
                                        int channels, const float* rois, int64_t num_rois, int out_h,
                                        int out_w, int sampling_ratio, bool aligned,
                                        float canonical_scale, int canonical_level, int level_rule,
                                        float image_area, int sampling, T* output,
                                        cudaStream_t stream);

// Defined in roi_align_kernel.cu for these element types only.
extern template cudaError_t launch_multilevel_roi_align<float>(
    const FeaturePyramid<float>&, int, int, const float*, int64_t, int, int, int, bool, float, int,
    int, float, int, float*, cudaStream_t);
extern template cudaError_t launch_multilevel_roi_align<__half>(
    const FeaturePyramid<__half>&, int, int, const float*, int64_t, int, int, int, bool, float,
    int, int, float, int, __half*, cudaStream_t);

}  // namespace roi_align
}  // namespace edgeseg
