// zoom_linear_math.h - the math of ZoomLinear, one output element per call, in double.
//
// Shared by the CPU build (zoom_linear_cpu.cpp) and the CUDA kernel (zoom_linear_kernel.cu), so
// both give the same floats.  The semantics (README.md in this folder): matterport's molded
// input, i.e. skimage's linear zoom of the frame in float64 (common/zoom_taps.h, scipy's order of
// operations), clipped to the frame's [min, max], truncated toward zero (`astype(uint8)`), placed
// in a zero canvas, minus the channel's mean in double, rounded once to float.
//
// Why double: the truncation decides at integers, and 148 of matterport's test-case values lie
// within 1e-9 below one; float32 arithmetic changes hundreds of pixels and most detections.
#pragma once

#include "common/edgeseg_hd.h"
#include "common/zoom_taps.h"

namespace edgeseg {
namespace zoom_linear {

// The op's geometry: input [rows, cols, channels], zoomed to height x width, placed at
// (top, left) of a canvas_height x canvas_width canvas.
struct ZoomGeometry {
  int rows;
  int cols;
  int channels;
  int height;
  int width;
  int canvas_height;
  int canvas_width;
  int top;
  int left;
};

// One channel of an HWC float image as the taps read it: a sample outside the image is 0
// (skimage's mode='constant', cval=0).
struct HwcChannel {
  const float* image;
  int rows;
  int cols;
  int channels;
  int channel;

  EDGESEG_HD double operator()(int r, int c) const {
    if (r < 0 || r >= rows || c < 0 || c >= cols) return 0.0;
    return static_cast<double>(image[(static_cast<long long>(r) * cols + c) * channels + channel]);
  }
};

// The zoomed, clipped and truncated value of zoomed pixel (i, j) of `channel`, from its row and
// column taps (zoom_tap(i, rows, height), zoom_tap(j, cols, width)).  lo and hi: value_range.
EDGESEG_HD double zoomed_integer(const HwcChannel& at, ZoomTap row, ZoomTap col, double lo, double hi) {
  return trunc(hd_clamp(zoom_value(at, row, col), lo, hi));
}

// A molded value: the zoomed integer (or the padding's 0) minus the mean, in double, then float.
EDGESEG_HD float molded(double value, double mean) { return static_cast<float>(value - mean); }

// Output element (c, y, x) of the [channels, canvas_height, canvas_width] canvas.  `value_range`
// is the op's second input (min, max); `mean` holds `num_means` doubles (1: one for every
// channel; zoom_linear_mean.h reads them from the attribute).
EDGESEG_HD float zoom_linear_element(const float* image, const float* value_range, const double* mean, int num_means,
                                     const ZoomGeometry& g, int c, int y, int x) {
  const double m = mean[num_means == 1 ? 0 : c];
  const int i = y - g.top;
  const int j = x - g.left;
  if (i < 0 || i >= g.height || j < 0 || j >= g.width) return molded(0.0, m);
  const HwcChannel at = {image, g.rows, g.cols, g.channels, c};
  const double v = zoomed_integer(at, zoom_tap(i, g.rows, g.height), zoom_tap(j, g.cols, g.width),
                                  static_cast<double>(value_range[0]), static_cast<double>(value_range[1]));
  return molded(v, m);
}

}  // namespace zoom_linear
}  // namespace edgeseg
