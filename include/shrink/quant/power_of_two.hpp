// power_of_two.hpp: logarithmic (power-of-two) quantization: codes are a sign and an exponent, levels 0 and ±2^e.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/error.hpp"

namespace shrink::quant {

/// Power-of-two quantized values. With b bits a code is a sign bit (bit b-1) and a
/// magnitude m in [0, M], M = 2^(b-1) - 1: m = 0 is zero, m >= 1 is 2^(max_exponent - M + m).
/// So the levels are 0, ±2^(e_max - M + 1), ..., ±2^e_max (multiplication becomes a shift).
struct pow2_quantized {
  std::vector<std::uint8_t> codes;  ///< one code per byte (low b bits)
  int bits = 4;
  int max_exponent = 0;

  [[nodiscard]] float value(std::uint8_t code) const noexcept {
    const int levels = (1 << (bits - 1)) - 1;
    const int m = code & levels;
    if (m == 0) return 0.0f;
    const float mag = std::ldexp(1.0f, max_exponent - levels + m);
    return (code >> (bits - 1)) & 1 ? -mag : mag;
  }
  [[nodiscard]] std::vector<float> dequantize() const {
    std::vector<float> out(codes.size());
    for (std::size_t i = 0; i < codes.size(); ++i) out[i] = value(codes[i]);
    return out;
  }
};

namespace detail {
/// Nearest power-of-two exponent of a > 0 in the linear sense: 2^e if a < 1.5 * 2^e else 2^(e+1)
/// (the midpoint of 2^e and 2^(e+1) rounds up).
inline int nearest_pow2_exponent(double a) {
  int k = 0;
  (void)std::frexp(a, &k);  // a = f * 2^k, f in [0.5, 1)
  const int e = k - 1;
  return a >= 1.5 * std::ldexp(1.0, e) ? e + 1 : e;
}
}  // namespace detail

/// Quantizes to power-of-two levels. e_max is the nearest power of two to max|x|; each |x|
/// goes to the nearest level in the linear sense (midpoints round to the larger magnitude;
/// below half the smallest level it becomes 0). All-zero input gives all-zero codes.
inline pow2_quantized quantize_power_of_two(std::span<const float> x, int bits = 4) {
  SHRINK_REQUIRE(bits >= 2 && bits <= 8, errc::invalid_argument, "quantize_power_of_two: bits must be in [2, 8], got ", bits);
  SHRINK_REQUIRE(!x.empty(), errc::empty_input, "quantize_power_of_two: input is empty; expected at least one value");
  double amax = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    SHRINK_REQUIRE(std::isfinite(x[i]), errc::non_finite, "quantize_power_of_two: values must be finite; element ", i, " is ", x[i]);
    amax = std::max(amax, std::abs(static_cast<double>(x[i])));
  }
  pow2_quantized out;
  out.bits = bits;
  out.codes.resize(x.size());
  if (amax == 0.0) return out;
  const int levels = (1 << (bits - 1)) - 1;
  out.max_exponent = detail::nearest_pow2_exponent(amax);
  const int e_min = out.max_exponent - levels + 1;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double a = std::abs(static_cast<double>(x[i]));
    int m = 0;
    if (a >= std::ldexp(1.0, e_min - 1)) {
      const int e = std::min(std::max(detail::nearest_pow2_exponent(a), e_min), out.max_exponent);
      m = e - e_min + 1;
    }
    const unsigned sign = (x[i] < 0.0f && m != 0) ? 1u << (bits - 1) : 0u;
    out.codes[i] = static_cast<std::uint8_t>(sign | static_cast<unsigned>(m));
  }
  return out;
}

}  // namespace shrink::quant
