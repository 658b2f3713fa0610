// paste_masks_kernel.h - CUDA launcher of PasteMasks (host-callable, plain C++).
//
// What the TensorRT plugin's enqueue calls with its device pointers: masks = input 0,
// boxes = input 1, count = input 2, output = output 0.  The kernel (paste_masks_kernel.cu) writes
// every byte of the first `count` planes exactly once (no separate memset): the pixels of a box's
// rectangle with the functions of paste_masks_math.h that the CPU build uses, every other pixel
// 0.  Planes from `count` on are not touched.  Same bytes as the CPU build when compiled with
// --fmad=false (see README.md).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <stdint.h>

namespace edgeseg {
namespace paste_masks {

// Largest mask side M the kernel takes: one block stages a mask with its zero border,
// (M + 2)^2 floats, in shared memory, within the 48 KiB available without opt-in.
constexpr int kMaxMaskSize = 100;

// Enqueues the first `*count` of the K = num_masks binary planes on `stream`.
//   masks       device [num_masks, mask_size, mask_size], float or __half: probabilities
//               (logits when `logits`)
//   boxes       device float [num_masks, 4]: x0, y0, x1, y1 in frame pixels (always float:
//               half would round frame coordinates above 1024 to whole pixels)
//   count       device int32 [1], read by the kernel: planes [0, clamp(*count, 0, num_masks)) are
//               written, the rest left as they are; nullptr = all num_masks
//   height, width, threshold, mode (0 torchvision, 1 continuous, 2 zoom), logits: the op's attributes
//               (plugins/paste_masks/README.md)
//   output      device uint8 [num_masks, height, width]: 1 = foreground
// Returns cudaErrorInvalidValue without launching on bad arguments (negative sizes, mask_size
// not in [1, kMaxMaskSize], mode not 0, 1 or 2, height * width > 2^31 - 1, a null pointer that would
// be read or written); cudaSuccess without launching when the output is empty (num_masks,
// height or width 0); otherwise cudaGetLastError() after the launch.
template <typename T>
cudaError_t launch_paste_masks(const T* masks, const float* boxes, const int32_t* count,
                               int64_t num_masks, int mask_size, int height, int width,
                               float threshold, int mode, bool logits, uint8_t* output,
                               cudaStream_t stream);

// Defined in paste_masks_kernel.cu for these element types only.
extern template cudaError_t launch_paste_masks<float>(const float*, const float*, const int32_t*,
                                                      int64_t, int, int, int, float, int, bool,
                                                      uint8_t*, cudaStream_t);
extern template cudaError_t launch_paste_masks<__half>(const __half*, const float*,
                                                       const int32_t*, int64_t, int, int, int,
                                                       float, int, bool, uint8_t*, cudaStream_t);

}  // namespace paste_masks
}  // namespace edgeseg
