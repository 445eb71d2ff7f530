// requantize.hpp: fixed-point requantization (gemmlowp/TFLite): real multipliers as (int32, shift), the rounding primitives, and the int32 → int8/uint8 output stage.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace shrink::quant {

/// A real multiplier r ≈ multiplier · 2^(shift − 31), multiplier in [2^30, 2^31) (or 0).
/// `shift > 0` is a left shift of the input before the high multiply, `shift < 0` a
/// rounding right shift after it: TFLite's QuantizeMultiplier convention.
struct fixed_point_multiplier {
  std::int32_t multiplier = 0;
  int shift = 0;

  /// The real number this pair represents exactly.
  [[nodiscard]] double value() const noexcept { return std::ldexp(static_cast<double>(multiplier), shift - 31); }
};

/// Largest real multiplier accepted: TFLite requires shift <= 31.
inline constexpr double k_max_real_multiplier = 2147483648.0;  // 2^31 (exclusive)

/// Checks that a (multiplier, shift) pair is one quantize_multiplier can produce:
/// multiplier >= 0 and shift in [-31, 31] (so RoundingDivideByPOT's exponent is <= 31).
inline void check_multiplier(const fixed_point_multiplier& m, const char* who) {
  SHRINK_REQUIRE(m.multiplier >= 0, errc::out_of_range, who, ": fixed-point multiplier must be >= 0, got ",
                 m.multiplier);
  SHRINK_REQUIRE(m.shift >= -31 && m.shift <= 31, errc::out_of_range, who,
                 ": fixed-point shift must be in [-31, 31], got ", m.shift);
}

/// TFLite's QuantizeMultiplier: frexp splits r = q · 2^shift with q in [0.5, 1); q is
/// rounded (half away from zero, TfLiteRound) to Q31. A q that rounds up to 2^31 becomes
/// 2^30 with shift+1. Multipliers below 2^-32 (shift < -31) become 0, as in TFLite.
/// r must be finite, >= 0 and < 2^31; anything else is shrink::error(out_of_range).
inline fixed_point_multiplier quantize_multiplier(double real) {
  SHRINK_REQUIRE(std::isfinite(real) && real >= 0.0 && real < k_max_real_multiplier, errc::out_of_range,
                 "quantize_multiplier: real multiplier must be finite and in [0, 2^31), got ", real);
  if (real == 0.0) return {};
  int shift = 0;
  const double q = std::frexp(real, &shift);
  auto q_fixed = static_cast<std::int64_t>(std::round(q * 2147483648.0));
  if (q_fixed == (std::int64_t{1} << 31)) {
    q_fixed /= 2;
    ++shift;
  }
  if (shift < -31) return {};
  return {static_cast<std::int32_t>(q_fixed), shift};
}

/// gemmlowp's SaturatingRoundingDoublingHighMul: round(a·b / 2^31) to nearest; exact ties
/// go toward +inf (the nudge is 2^30 for a·b ≥ 0 and 1 − 2^30 below, then truncation);
/// the one overflow (INT32_MIN · INT32_MIN) saturates to INT32_MAX.
constexpr std::int32_t saturating_rounding_doubling_high_mul(std::int32_t a, std::int32_t b) noexcept {
  const bool overflow = a == b && a == std::numeric_limits<std::int32_t>::min();
  const std::int64_t ab = static_cast<std::int64_t>(a) * static_cast<std::int64_t>(b);
  const std::int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  const auto high = static_cast<std::int32_t>((ab + nudge) / (std::int64_t{1} << 31));
  return overflow ? std::numeric_limits<std::int32_t>::max() : high;
}

/// gemmlowp's RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero.
/// exponent in [0, 31].
constexpr std::int32_t rounding_divide_by_pot(std::int32_t x, int exponent) noexcept {
  const std::int32_t mask = static_cast<std::int32_t>((std::int64_t{1} << exponent) - 1);
  const std::int32_t remainder = x & mask;
  const std::int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/// TFLite's MultiplyByQuantizedMultiplier: x · r in fixed point. The left shift saturates
/// to the int32 range (TFLite's `x * (1 << left_shift)` is undefined when it overflows;
/// where it is defined the results agree). Worst case vs round(x·r): 1 (docs/kernels.md).
constexpr std::int32_t multiply_by_quantized_multiplier(std::int32_t x, fixed_point_multiplier m) noexcept {
  const int left = m.shift > 0 ? m.shift : 0;
  const int right = m.shift > 0 ? 0 : -m.shift;
  std::int64_t shifted = static_cast<std::int64_t>(x) * (std::int64_t{1} << left);
  shifted = std::clamp<std::int64_t>(shifted, std::numeric_limits<std::int32_t>::min(),
                                     std::numeric_limits<std::int32_t>::max());
  return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(static_cast<std::int32_t>(shifted), m.multiplier),
                                right);
}

/// Activation fused into the output stage.
enum class activation { none, relu, relu6, clamp };

/// TFLite's CalculateActivationRangeQuantized: the [lo, hi] clamp, in output integers, of an
/// activation for an output with `scale` and `zero_point`, within [qmin, qmax]. For
/// `activation::clamp`, [real_lo, real_hi] is quantized the same way (round half away).
inline std::pair<std::int32_t, std::int32_t> activation_range(activation act, float scale, std::int32_t zero_point,
                                                              std::int32_t qmin, std::int32_t qmax,
                                                              float real_lo = 0.0f, float real_hi = 0.0f) {
  SHRINK_REQUIRE(std::isfinite(scale) && scale > 0.0f, errc::invalid_argument,
                 "activation_range: scale must be finite and > 0, got ", scale);
  SHRINK_REQUIRE(qmin <= qmax, errc::invalid_argument, "activation_range: qmin ", qmin, " > qmax ", qmax);
  auto quantize = [&](float x) {
    const double q = static_cast<double>(zero_point) + std::round(static_cast<double>(x) / scale);
    return static_cast<std::int32_t>(std::clamp<double>(q, qmin, qmax));
  };
  switch (act) {
    case activation::none: return {qmin, qmax};
    case activation::relu: return {std::max(qmin, quantize(0.0f)), qmax};
    case activation::relu6: return {std::max(qmin, quantize(0.0f)), std::min(qmax, quantize(6.0f))};
    case activation::clamp:
      SHRINK_REQUIRE(real_lo <= real_hi, errc::invalid_argument, "activation_range: clamp lo ", real_lo,
                     " > hi ", real_hi);
      return {std::max(qmin, quantize(real_lo)), std::min(qmax, quantize(real_hi))};
  }
  return {qmin, qmax};
}

/// The output stage for one int32 accumulator: add the (int32) bias with wrap-around as
/// TFLite's int32 add, scale by the fixed-point multiplier, add the output zero point, then
/// clamp to [lo, hi] (which the caller has intersected with the output type's range).
constexpr std::int32_t requantize(std::int32_t acc, std::int32_t bias, fixed_point_multiplier m,
                                  std::int32_t zero_point, std::int32_t lo, std::int32_t hi) noexcept {
  const auto biased =
      static_cast<std::int32_t>(static_cast<std::uint32_t>(acc) + static_cast<std::uint32_t>(bias));
  const std::int64_t out = static_cast<std::int64_t>(multiply_by_quantized_multiplier(biased, m)) + zero_point;
  return static_cast<std::int32_t>(std::clamp<std::int64_t>(out, lo, hi));
}

}  // namespace shrink::quant
