// zoom_linear_cpu.cpp - CPU build of ZoomLinear.
//
// A thin OpenMP loop around zoom_linear_math.h, which holds all of the math; the CUDA kernel of
// the TensorRT plugin is an equally thin loop around the same header.  Plain C interface for
// ctypes; no torch, no Python C API.  Inputs are assumed valid: edgeseg/ops.py checks them.
//
// The row and column taps are computed once per zoomed row / column (zoom_tap is a pure function
// of the index, so hoisting it changes no bit), and the padding rows once per channel.
#include <stdint.h>

#include <vector>

#include "common/cpu_threads.h"
#include "zoom_linear/zoom_linear_math.h"
#include "zoom_linear/zoom_linear_mean.h"

extern "C" {

// Molds an image.
//   image        float32 [rows, cols, channels]: pixel values (integers)
//   value_range  float32 [2]: (min, max) the zoomed values are clipped to
//   mean         float32 [num_means]: 1 value, or one per channel (1 to 8 values), the attribute:
//                read as decimals (zoom_linear_mean.h)
//   output       float32 [channels, canvas_height, canvas_width], fully written
//   threads      OpenMP threads; 0 = OpenMP's default
//   per_element  0: hoist the taps out of the pixel loop; 1: call zoom_linear_element() for every
//                element, as the CUDA kernel does (for tests).  Both give identical bits.
// Returns 0, or 1 on bad arguments (nothing written).
int32_t edgeseg_zoom_linear_f32(const float* image, int64_t rows, int64_t cols, int64_t channels,
                                const float* value_range, const float* mean, int64_t num_means, int64_t height,
                                int64_t width, int64_t canvas_height, int64_t canvas_width, int64_t top, int64_t left,
                                int32_t threads, int32_t per_element, float* output) {
  namespace zl = edgeseg::zoom_linear;
  if (rows < 1 || cols < 1 || channels < 1 || height < 1 || width < 1 || top < 0 || left < 0 ||
      top + height > canvas_height || left + width > canvas_width || (num_means != 1 && num_means != channels) ||
      num_means > zl::kMaxMeans ||
      image == nullptr || value_range == nullptr || mean == nullptr || output == nullptr) {
    return 1;
  }
  const zl::ZoomGeometry g = {static_cast<int>(rows),          static_cast<int>(cols),
                              static_cast<int>(channels),      static_cast<int>(height),
                              static_cast<int>(width),         static_cast<int>(canvas_height),
                              static_cast<int>(canvas_width),  static_cast<int>(top),
                              static_cast<int>(left)};
  const zl::ZoomMeans means = zl::read_means(mean, static_cast<int>(num_means));
  const int nt = edgeseg::cpu_thread_count(threads);
  const int64_t jobs = channels * canvas_height;  // one job = one canvas row of one channel

  if (per_element) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t job = 0; job < jobs; ++job) {
      const int c = static_cast<int>(job / canvas_height);
      const int y = static_cast<int>(job % canvas_height);
      float* row = output + job * canvas_width;
      for (int x = 0; x < g.canvas_width; ++x) {
        row[x] = zl::zoom_linear_element(image, value_range, means.value, means.count, g, c, y, x);
      }
    }
    return 0;
  }

  std::vector<edgeseg::ZoomTap> row_taps(static_cast<size_t>(height));
  std::vector<edgeseg::ZoomTap> col_taps(static_cast<size_t>(width));
  for (int i = 0; i < g.height; ++i) row_taps[i] = edgeseg::zoom_tap(i, g.rows, g.height);
  for (int j = 0; j < g.width; ++j) col_taps[j] = edgeseg::zoom_tap(j, g.cols, g.width);
  const double lo = static_cast<double>(value_range[0]);
  const double hi = static_cast<double>(value_range[1]);

#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t job = 0; job < jobs; ++job) {
    const int c = static_cast<int>(job / canvas_height);
    const int y = static_cast<int>(job % canvas_height);
    const double m = means.value[means.count == 1 ? 0 : c];
    const float pad = zl::molded(0.0, m);
    float* row = output + job * canvas_width;
    const int i = y - g.top;
    if (i < 0 || i >= g.height) {
      for (int x = 0; x < g.canvas_width; ++x) row[x] = pad;
      continue;
    }
    for (int x = 0; x < g.left; ++x) row[x] = pad;
    for (int x = g.left + g.width; x < g.canvas_width; ++x) row[x] = pad;
    const zl::HwcChannel at = {image, g.rows, g.cols, g.channels, c};
    const edgeseg::ZoomTap ty = row_taps[i];
    float* window = row + g.left;
    for (int j = 0; j < g.width; ++j) window[j] = zl::molded(zl::zoomed_integer(at, ty, col_taps[j], lo, hi), m);
  }
  return 0;
}

}  // extern "C"
