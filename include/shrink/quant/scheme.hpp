// scheme.hpp: the policies of a quantizer (scheme, granularity, rounding, non-finite policy) and PyTorch-exact parameter computation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace shrink::quant {

/// Integer grid: `bits` in [2, 8], signed or unsigned, affine (zero point) or symmetric
/// (zero point fixed), optionally the restricted signed range [-(2^(b-1)-1), 2^(b-1)-1]
/// (int8 in [-127, 127], TFLite/ONNX-runtime weights). real = scale * (q - zero_point).
struct scheme {
  int bits = 8;
  bool is_signed = true;
  bool symmetric = true;
  bool restricted_range = false;

  [[nodiscard]] constexpr int qmin() const noexcept {
    return is_signed ? -(1 << (bits - 1)) + (restricted_range ? 1 : 0) : 0;
  }
  [[nodiscard]] constexpr int qmax() const noexcept { return is_signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1; }
  /// Bits one code occupies in storage: 8, 4 (two per byte) or 2 (four per byte).
  [[nodiscard]] constexpr int storage_bits() const noexcept { return bits <= 2 ? 2 : bits <= 4 ? 4 : 8; }

  void validate(const char* who) const {
    SHRINK_REQUIRE(bits >= 2 && bits <= 8, errc::invalid_argument, who, ": bits must be in [2, 8], got ", bits);
    SHRINK_REQUIRE(!restricted_range || (is_signed && symmetric), errc::invalid_argument, who,
                   ": restricted_range needs a signed symmetric scheme");
  }

  friend constexpr bool operator==(const scheme&, const scheme&) = default;

  /// Affine with a zero point: PyTorch per_tensor_affine / ONNX QuantizeLinear.
  static constexpr scheme affine(int bits, bool is_signed = false) { return {bits, is_signed, false, false}; }
  /// Symmetric, zero point 0 (signed) or 2^(b-1) (unsigned, PyTorch's quint8 128).
  static constexpr scheme symmetric_range(int bits, bool is_signed = true, bool restricted = false) {
    return {bits, is_signed, true, restricted};
  }
};

inline constexpr scheme k_quint8_affine = scheme::affine(8, false);            ///< PyTorch quint8 per-tensor affine
inline constexpr scheme k_qint8_symmetric = scheme::symmetric_range(8, true);  ///< PyTorch qint8 symmetric
inline constexpr scheme k_int8_restricted = scheme::symmetric_range(8, true, true);  ///< [-127, 127]
inline constexpr scheme k_int4_symmetric = scheme::symmetric_range(4, true);
inline constexpr scheme k_uint4_affine = scheme::affine(4, false);

/// Which elements share a scale / zero point.
enum class granularity_kind { per_tensor, per_channel, per_group };

/// per_tensor; per_channel along `axis` (negative counts from the end); per_group of
/// `group_size` consecutive elements along the last (reduction) axis, the GPTQ/ggml block
/// layout. When group_size does not divide the last extent, the last group of each row is
/// shorter (docs/quantization.md, "Groups").
struct granularity {
  granularity_kind kind = granularity_kind::per_tensor;
  index_t axis = 0;
  index_t group_size = 0;

  static constexpr granularity per_tensor() { return {granularity_kind::per_tensor, 0, 0}; }
  static constexpr granularity per_channel(index_t axis = 0) { return {granularity_kind::per_channel, axis, 0}; }
  static constexpr granularity per_group(index_t group_size) { return {granularity_kind::per_group, -1, group_size}; }
  friend constexpr bool operator==(const granularity&, const granularity&) = default;
};

/// How a real x/scale becomes an integer.
enum class rounding {
  half_even,            ///< ties to even: PyTorch, ONNX QuantizeLinear (default)
  half_away_from_zero,  ///< std::round
  floor,                ///< toward -inf
  stochastic,           ///< floor(v + u), u uniform in [0, 1) from (seed, element index): unbiased, reproducible
};

/// What quantize does with NaN / Inf weights.
enum class non_finite_policy {
  error,  ///< shrink::error(non_finite) naming the first bad flat index (default)
  clamp,  ///< +Inf -> qmax, -Inf -> qmin, NaN -> zero_point (real 0); observers skip them
};

/// One (scale, zero point) pair.
struct params {
  float scale = 1.0f;
  std::int32_t zero_point = 0;
};

/// PyTorch's eps floor on scales: torch.finfo(torch.float32).eps.
inline constexpr float k_scale_eps = std::numeric_limits<float>::epsilon();

/// Scale and zero point from an observed range, in fp32 exactly as PyTorch's
/// `_ObserverBase._calculate_qparams` does (see docs/quantization.md, "Parameters"):
///   min_neg = min(min, 0), max_pos = max(max, 0)
///   affine:    scale = max((max_pos - min_neg) / (qmax - qmin), eps),
///              zero_point = clamp(qmin - round_half_even(min_neg / scale), qmin, qmax)
///   symmetric: scale = max(max(-min_neg, max_pos) / ((qmax - qmin) / 2), eps),
///              zero_point = 0 (signed) or 2^(bits-1) (unsigned)
/// The range always contains 0, so real 0 is exactly a code. min/max must be finite.
namespace detail {
/// compute_params without the checks, for hot loops whose inputs are already validated.
SHRINK_ALWAYS_INLINE params params_from_range(float min, float max, const scheme& s) noexcept {
  const float min_neg = std::min(min, 0.0f);
  const float max_pos = std::max(max, 0.0f);
  const int qmin = s.qmin(), qmax = s.qmax();
  params p;
  if (s.symmetric) {
    const float amax = std::max(-min_neg, max_pos);
    p.scale = std::max(amax / (static_cast<float>(qmax - qmin) / 2.0f), k_scale_eps);
    p.zero_point = s.is_signed ? 0 : (1 << (s.bits - 1));
  } else {
    p.scale = std::max((max_pos - min_neg) / static_cast<float>(qmax - qmin), k_scale_eps);
    const float shifted = std::nearbyint(min_neg / p.scale);  // default FP env: ties to even
    const auto zp = static_cast<std::int32_t>(static_cast<float>(qmin) - shifted);
    p.zero_point = std::clamp(zp, qmin, qmax);
  }
  return p;
}
}  // namespace detail

inline params compute_params(float min, float max, const scheme& s) {
  s.validate("compute_params");
  SHRINK_REQUIRE(std::isfinite(min) && std::isfinite(max), errc::non_finite,
                 "compute_params: range must be finite, got [", min, ", ", max, "]");
  SHRINK_REQUIRE(min <= max, errc::invalid_argument, "compute_params: min must be <= max, got [", min, ", ", max, "]");
  return detail::params_from_range(min, max, s);
}

namespace detail {
/// Counter-based uniform in [0, 1) for stochastic rounding: splitmix64 of (seed, index), so
/// the draw for an element does not depend on traversal order or thread count.
SHRINK_ALWAYS_INLINE float uniform01(std::uint64_t seed, std::uint64_t index) noexcept {
  std::uint64_t z = seed + 0x9e3779b97f4a7c15ull * (index + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * 0x1p-24f;
}

/// Rounds v (already clamped into an integer range, so |v| < 2^9) to an integer value.
SHRINK_ALWAYS_INLINE float round_value(float v, rounding mode, std::uint64_t seed, std::uint64_t index) noexcept {
  switch (mode) {
    case rounding::half_even: return std::nearbyint(v);
    case rounding::half_away_from_zero: return std::round(v);
    case rounding::floor: return std::floor(v);
    case rounding::stochastic: return std::floor(v + uniform01(seed, index));
  }
  return std::nearbyint(v);
}
}  // namespace detail

/// One value, the ONNX QuantizeLinear way: saturate(round(x / scale) + zero_point). The
/// division is a true fp32 division (not a multiply by 1/scale, which can move ties).
/// Clamping x/scale to [qmin - zp, qmax - zp] before rounding is equivalent (integer bounds).
SHRINK_ALWAYS_INLINE std::int32_t quantize_value(float x, params p, const scheme& s,
                                                 rounding mode = rounding::half_even, std::uint64_t seed = 0,
                                                 std::uint64_t index = 0) noexcept {
  const float lo = static_cast<float>(s.qmin() - p.zero_point);
  const float hi = static_cast<float>(s.qmax() - p.zero_point);
  float v = x / p.scale;
  if (v != v) return p.zero_point;  // NaN: the clamp policy's "real 0" (quantize errors before this)
  v = v < lo ? lo : (v > hi ? hi : v);
  return static_cast<std::int32_t>(detail::round_value(v, mode, seed, index)) + p.zero_point;
}

/// real = scale * (q - zero_point).
SHRINK_ALWAYS_INLINE float dequantize_value(std::int32_t q, params p) noexcept {
  return p.scale * static_cast<float>(q - p.zero_point);
}

}  // namespace shrink::quant
