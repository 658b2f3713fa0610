// zoom_linear_kernel.h - CUDA launcher of ZoomLinear (host-callable, plain C++).
//
// What the TensorRT plugin's enqueue calls with its device pointers: image = input 0,
// value_range = input 1, output = output 0.  One thread per output element, each computing it
// with zoom_linear_math.h (the CPU build's function) in double: the same bits as the CPU build
// when compiled with --fmad=false (README.md in this folder).
#pragma once

#include <cuda_runtime_api.h>
#include <stdint.h>

#include "zoom_linear/zoom_linear_math.h"
#include "zoom_linear/zoom_linear_mean.h"

namespace edgeseg {
namespace zoom_linear {

// Enqueues the molded canvas on `stream`.
//   image        device float [g.rows, g.cols, g.channels]: pixel values
//   value_range  device float [2]: (min, max), read by the kernel (nothing waits for the host)
//   means        the op's mean as doubles (read_means of the attribute), by value
//   g            input size and the op's attributes
//   output       device float [g.channels, g.canvas_height, g.canvas_width], every element written
// Returns cudaErrorInvalidValue without launching on bad arguments (a size < 1, the window outside
// the canvas, means.count neither 1 nor g.channels, more than 2^31 - 1 output elements, a null
// pointer); otherwise cudaGetLastError() after the launch.
cudaError_t launch_zoom_linear(const float* image, const float* value_range, const ZoomMeans& means,
                               const ZoomGeometry& g, float* output, cudaStream_t stream);

}  // namespace zoom_linear
}  // namespace edgeseg
