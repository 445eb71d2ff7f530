// onnx_oracle.hpp: the published ONNX QuantizeLinear formula written out for the quantization tests (independent of the library's encoders).
#pragma once

#include <algorithm>
#include <cmath>

namespace shrink::testing {

/// Round half to even written out: the nearest integer, ties to the even one.
inline double round_half_even(double v) {
  const double f = std::floor(v);
  const double d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return std::fmod(f, 2.0) == 0.0 ? f : f + 1;
}

/// ONNX QuantizeLinear: saturate(round_half_even(x / scale) + zero_point), x / scale in fp32.
inline int onnx_quantize(float x, float scale, int zp, int qmin, int qmax) {
  const float v = x / scale;
  const double q = round_half_even(static_cast<double>(v)) + zp;
  return static_cast<int>(std::min<double>(qmax, std::max<double>(qmin, q)));
}

}  // namespace shrink::testing
