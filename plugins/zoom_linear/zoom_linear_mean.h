// zoom_linear_mean.h - the double mean ZoomLinear subtracts, read from its float32 attribute
// (host only: the CPU build and the plugin call it once, the kernel gets the doubles).
//
// matterport subtracts MEAN_PIXEL as float64 (123.7, not the float32 123.69999695) and casts the
// difference to float32; with the float32 value, 128 of the 256 results for 123.7 round to
// another float32.  ONNX float attributes and TensorRT's plugin fields carry float32 only, so the
// op reads each mean back as the decimal it was written from: the shortest decimal (1 to 9
// significant digits, printf's correctly rounded "%.*g") whose double rounds to the same float32,
// parsed as a double.  That is the config's value whenever it has at most 6 significant digits.
// edgeseg/custom_ops.py (`attribute_decimal`) is the same rule for the Python side; a test holds
// the two equal.
#pragma once

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

namespace edgeseg {
namespace zoom_linear {

// Most means the op takes (op.json: mean holds 1 to 8 values).
constexpr int kMaxMeans = 8;

// The means as the kernel reads them, passed by value.
struct ZoomMeans {
  double value[kMaxMeans];
  int count;
};

inline double attribute_decimal(float value) {
  if (!isfinite(value)) return static_cast<double>(value);
  char text[32];
  for (int digits = 1; digits <= 9; ++digits) {
    snprintf(text, sizeof(text), "%.*g", digits, static_cast<double>(value));
    const double decimal = strtod(text, nullptr);
    if (static_cast<float>(decimal) == value) return decimal;
  }
  return static_cast<double>(value);  // unreachable: 9 digits round-trip every float32
}

// `count` (1 to kMaxMeans) float32 attribute values as the op's doubles.
inline ZoomMeans read_means(const float* mean, int count) {
  ZoomMeans means{};
  means.count = count;
  for (int i = 0; i < count && i < kMaxMeans; ++i) means.value[i] = attribute_decimal(mean[i]);
  return means;
}

}  // namespace zoom_linear
}  // namespace edgeseg
