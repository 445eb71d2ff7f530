// float16.hpp: fp32 <-> IEEE fp16 and bfloat16 conversion, round to nearest even, NaN/Inf kept, subnormals exact.
#pragma once

#include <bit>
#include <cstdint>
#include <span>

#include "../core/error.hpp"

namespace shrink::quant {

/// fp32 -> IEEE 754 binary16, round to nearest, ties to even. Overflow (|x| >= 65520) gives
/// ±Inf; NaN stays NaN (quiet, the top payload bits kept); results below 2^-14 are rounded
/// to the binary16 subnormal grid (multiples of 2^-24). Method: F. Giesen's
/// float_to_half_fast3_rtne (docs/quantization.md, "Float formats").
inline std::uint16_t float_to_half(float value) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  std::uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // Inf or NaN
    if (ax > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  }
  if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to Inf
  if (ax < 0x38800000u) {
    // Below the smallest normal half (2^-14): adding 0.5 puts the value in [0.5, 1) whose fp32
    // ulp is 2^-24, the half subnormal step, so the FPU's own RNE does the rounding.
    const float t = std::bit_cast<float>(ax) + 0.5f;
    return static_cast<std::uint16_t>(sign | (std::bit_cast<std::uint32_t>(t) - 0x3f000000u));
  }
  const std::uint32_t odd = (ax >> 13) & 1u;
  ax += 0xc8000fffu + odd;  // rebias exponent 127 -> 15 (-112 << 23) and add the RNE bias
  return static_cast<std::uint16_t>(sign | (ax >> 13));
}

/// IEEE binary16 -> fp32 (exact: every half is a float).
inline float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  const std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;  // subnormal or zero, exact
    return std::bit_cast<float>(sign | std::bit_cast<std::uint32_t>(magnitude));
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

/// fp32 -> bfloat16 (the top 16 bits), round to nearest even; NaN stays NaN (made quiet so
/// truncating a payload cannot turn it into Inf), overflow rounds to ±Inf as RNE says.
inline std::uint16_t float_to_bfloat16(float value) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
  const std::uint32_t rounded = x + 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>(rounded >> 16);
}

/// bfloat16 -> fp32 (exact).
inline float bfloat16_to_float(std::uint16_t b) noexcept { return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16); }

namespace detail {
inline void check_same_size(std::size_t in, std::size_t out, const char* who) {
  SHRINK_REQUIRE(in == out, errc::shape_mismatch, who, ": input has ", in, " elements and output ", out,
                 "; expected equal sizes");
}
}  // namespace detail

/// Span versions: out[i] = f(in[i]); sizes must match.
inline void float_to_half(std::span<const float> in, std::span<std::uint16_t> out) {
  detail::check_same_size(in.size(), out.size(), "float_to_half");
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = float_to_half(in[i]);
}
inline void half_to_float(std::span<const std::uint16_t> in, std::span<float> out) {
  detail::check_same_size(in.size(), out.size(), "half_to_float");
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = half_to_float(in[i]);
}
inline void float_to_bfloat16(std::span<const float> in, std::span<std::uint16_t> out) {
  detail::check_same_size(in.size(), out.size(), "float_to_bfloat16");
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = float_to_bfloat16(in[i]);
}
inline void bfloat16_to_float(std::span<const std::uint16_t> in, std::span<float> out) {
  detail::check_same_size(in.size(), out.size(), "bfloat16_to_float");
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = bfloat16_to_float(in[i]);
}

}  // namespace shrink::quant
