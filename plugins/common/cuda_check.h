// cuda_check.h - small host-side helpers shared by the CUDA launchers of edgeseg's plugins.
//
// Plain C++ (no exceptions, no I/O): every launcher reports failures as a cudaError_t so that a
// TensorRT plugin's enqueue can turn it into its own status code.
#pragma once

#include <cuda_runtime_api.h>
#include <stdint.h>

// Evaluates a CUDA runtime call and returns its error from the enclosing function unless it is
// cudaSuccess.
#define EDGESEG_CUDA_RETURN_IF_ERROR(call)      \
  do {                                          \
    const cudaError_t edgeseg_status_ = (call); \
    if (edgeseg_status_ != cudaSuccess) {       \
      return edgeseg_status_;                   \
    }                                           \
  } while (0)

namespace edgeseg {

// Blocks of a grid-stride launch over `work` items with `threads_per_block` threads: enough
// blocks for one item per thread, but at most `max_blocks` (the loop covers the rest).  Returns
// 0 for no work.  All arguments must be positive except `work` (>= 0).
inline unsigned int grid_blocks(int64_t work, int threads_per_block, int64_t max_blocks) {
  if (work <= 0) return 0;
  const int64_t wanted = (work + threads_per_block - 1) / threads_per_block;
  return static_cast<unsigned int>(wanted < max_blocks ? wanted : max_blocks);
}

// *product = a * b when both are >= 0 and the product does not exceed `limit`; false otherwise
// (product untouched).
inline bool checked_mul(int64_t a, int64_t b, int64_t limit, int64_t* product) {
  if (a < 0 || b < 0) return false;
  if (a != 0 && b > limit / a) return false;
  *product = a * b;
  return true;
}

}  // namespace edgeseg
