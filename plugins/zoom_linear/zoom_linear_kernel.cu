// zoom_linear_kernel.cu - CUDA kernel and launcher of ZoomLinear.
//
// One thread per output element (grid-stride, so any canvas fits): element (c, y, x) of the
// [C, canvas_height, canvas_width] output from zoom_linear_element(), the function the CPU build
// calls, in double.  Threads of a warp take consecutive x, so the writes coalesce and the reads of
// an image row (HWC, channel c) are strided by C floats: the op runs once per frame on a few
// hundred thousand elements, and its cost is the double arithmetic, not the reads.  Compile with
// --fmad=false (and without --use_fast_math): a fused multiply-add rounds the taps' products
// differently, and the truncation then changes pixels.
#include "zoom_linear/zoom_linear_kernel.h"

#include "common/cuda_check.h"

namespace edgeseg {
namespace zoom_linear {
namespace detail {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

__global__ void __launch_bounds__(kThreads)
    zoom_linear_kernel(const float* image, const float* value_range, const ZoomMeans means, const ZoomGeometry g,
                       float* output, int64_t elements) {
  const int64_t plane = static_cast<int64_t>(g.canvas_height) * g.canvas_width;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < elements; e += stride) {
    const int c = static_cast<int>(e / plane);
    const int64_t at = e - c * plane;
    const int y = static_cast<int>(at / g.canvas_width);
    const int x = static_cast<int>(at - static_cast<int64_t>(y) * g.canvas_width);
    output[e] = zoom_linear_element(image, value_range, means.value, means.count, g, c, y, x);
  }
}

}  // namespace detail

cudaError_t launch_zoom_linear(const float* image, const float* value_range, const ZoomMeans& means,
                               const ZoomGeometry& g, float* output, cudaStream_t stream) {
  int64_t plane = 0;
  int64_t elements = 0;
  if (g.rows < 1 || g.cols < 1 || g.channels < 1 || g.height < 1 || g.width < 1 || g.top < 0 || g.left < 0 ||
      static_cast<int64_t>(g.top) + g.height > g.canvas_height ||
      static_cast<int64_t>(g.left) + g.width > g.canvas_width || means.count < 1 || means.count > kMaxMeans ||
      (means.count != 1 && means.count != g.channels) ||
      !checked_mul(g.canvas_height, g.canvas_width, INT32_MAX, &plane) ||
      !checked_mul(plane, g.channels, INT32_MAX, &elements)) {
    return cudaErrorInvalidValue;
  }
  if (image == nullptr || value_range == nullptr || output == nullptr) return cudaErrorInvalidValue;
  const unsigned int blocks = grid_blocks(elements, detail::kThreads, detail::kMaxBlocks);
  detail::zoom_linear_kernel<<<blocks, detail::kThreads, 0, stream>>>(image, value_range, means, g, output,
                                                                       elements);
  return cudaGetLastError();
}

}  // namespace zoom_linear
}  // namespace edgeseg
