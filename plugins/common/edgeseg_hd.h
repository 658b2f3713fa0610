// edgeseg_hd.h - what every math header of edgeseg's plugins includes first.
//
// The math of each custom op is written once, as small inline functions that compute one output
// element.  The same functions are compiled by nvcc into the CUDA kernels of the TensorRT plugins
// and by a plain C++ compiler into the CPU build (edgeseg/_ops_cpu), so both give the same numbers.
//
// EDGESEG_HD marks such a function: `__host__ __device__ inline` when nvcc compiles the file,
// plain `inline` otherwise.  Only <math.h> functions (single precision: sqrtf, floorf, log2f, ...;
// double only where a header says why, as zoom_taps.h does) and the helpers below may be used
// inside them: no std:: containers, no exceptions, no I/O.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define EDGESEG_HD __host__ __device__ inline
#else
#define EDGESEG_HD inline
#endif

namespace edgeseg {

// std::min / std::max / std::clamp are not device functions; these are, for any ordered type.
template <typename T>
EDGESEG_HD T hd_min(T a, T b) {
  return b < a ? b : a;
}

template <typename T>
EDGESEG_HD T hd_max(T a, T b) {
  return a < b ? b : a;
}

// Same order of operations as torch.clamp(x, min=lo, max=hi): max first, then min, so that
// hi wins when lo > hi.
template <typename T>
EDGESEG_HD T hd_clamp(T x, T lo, T hi) {
  return hd_min(hd_max(x, lo), hi);
}

// Converts a feature or mask element to the float the math accumulates in.  float and double
// convert implicitly; CUDA's __half and __nv_bfloat16 have conversion operators to float.
template <typename T>
EDGESEG_HD float hd_to_float(T v) {
  return static_cast<float>(v);
}

}  // namespace edgeseg
