// output_stage.hpp: what an int8 GEMM/GEMV does with its int32 accumulators: zero-point correction, then raw int32, requantized int8/uint8, or dequantized fp32.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../quant/requantize.hpp"

namespace shrink::kernels {

/// int32 → int8/uint8 (TFLite's output stage): acc + bias[n], times multiplier[n] (one for
/// the tensor or one per output channel), + zero_point, clamped to [clamp_min, clamp_max]
/// intersected with the output type's range. Use quant::activation_range for ReLU/ReLU6.
struct requantize_stage {
  std::span<const quant::fixed_point_multiplier> multipliers;  ///< size 1 or N
  std::span<const std::int32_t> bias;                          ///< empty or size N
  std::int32_t zero_point = 0;
  std::int32_t clamp_min = std::numeric_limits<std::int32_t>::min();
  std::int32_t clamp_max = std::numeric_limits<std::int32_t>::max();
};

/// int32 → fp32: scale[n] · acc + bias[n], clamped to [clamp_min, clamp_max]. scale is the
/// activation scale times the weight scale (one for the tensor or one per output).
struct dequantize_stage {
  std::span<const float> scales;  ///< size 1 or N
  std::span<const float> bias;    ///< empty or size N
  float clamp_min = -std::numeric_limits<float>::infinity();
  float clamp_max = std::numeric_limits<float>::infinity();
};

namespace int8_detail {

enum class sink_kind { s32, s8, u8, f32 };

/// Where a tile of accumulators goes, and the zero-point correction terms:
/// Σ(a−za)(w−zw) = Σaw − za·Σw − zw·Σa + K·za·zw, all mod 2^32 (as every path's int32 sums).
struct sink {
  sink_kind kind = sink_kind::s32;
  void* data = nullptr;
  index_t row_stride = 0;  ///< elements between output rows
  index_t col_stride = 1;
  const requantize_stage* rq = nullptr;
  const dequantize_stage* dq = nullptr;
  const std::int32_t* column_sums = nullptr;  ///< Σ_k W[n,k]
  const std::int32_t* row_sums = nullptr;     ///< Σ_k A[m,k]
  std::int32_t a_zero = 0, w_zero = 0;
  index_t depth = 0;
};

inline std::int32_t corrected(const sink& s, std::int32_t acc, index_t m, index_t n) noexcept {
  const auto u = [](auto v) { return static_cast<std::uint32_t>(static_cast<std::int64_t>(v)); };
  const std::uint32_t r = u(acc) - u(s.a_zero) * u(s.column_sums[n]) - u(s.w_zero) * u(s.row_sums[m]) +
                          u(s.depth) * u(s.a_zero) * u(s.w_zero);
  return static_cast<std::int32_t>(r);
}

/// Writes acc[rows][16] (tile-local) to outputs [m0, m0+rows) × [n0, n0+cols). One scalar
/// function shared by every ISA path, so float and requantized outputs are identical on all.
inline void write_tile(const sink& s, const std::int32_t* acc, index_t m0, index_t rows, index_t n0, index_t cols) {
  if (s.kind == sink_kind::s32 && s.col_stride == 1) {
    // The common raw-int32 case as a loop the compiler vectorises (same mod-2^32 sums as
    // corrected(): at 2048³ the scalar per-element path cost ~15 % of a VNNI GEMM).
    const auto u = [](auto v) { return static_cast<std::uint32_t>(static_cast<std::int64_t>(v)); };
    std::uint32_t col_term[16];
    for (index_t c = 0; c < cols; ++c) col_term[c] = u(s.a_zero) * u(s.column_sums[n0 + c]);
    for (index_t r = 0; r < rows; ++r) {
      const index_t m = m0 + r;
      const std::uint32_t row_term = u(s.w_zero) * u(s.row_sums[m]) - u(s.depth) * u(s.a_zero) * u(s.w_zero);
      auto* out = static_cast<std::int32_t*>(s.data) + m * s.row_stride + n0;
      const std::int32_t* in = acc + r * 16;
      for (index_t c = 0; c < cols; ++c) out[c] = static_cast<std::int32_t>(u(in[c]) - col_term[c] - row_term);
    }
    return;
  }
  for (index_t r = 0; r < rows; ++r) {
    const index_t m = m0 + r;
    for (index_t c = 0; c < cols; ++c) {
      const index_t n = n0 + c;
      const std::int32_t v = corrected(s, acc[r * 16 + c], m, n);
      const index_t at = m * s.row_stride + n * s.col_stride;
      switch (s.kind) {
        case sink_kind::s32: static_cast<std::int32_t*>(s.data)[at] = v; break;
        case sink_kind::s8:
        case sink_kind::u8: {
          const auto& q = *s.rq;
          const auto& mul = q.multipliers[q.multipliers.size() == 1 ? 0 : static_cast<std::size_t>(n)];
          const std::int32_t b = q.bias.empty() ? 0 : q.bias[static_cast<std::size_t>(n)];
          const std::int32_t lo = std::max(q.clamp_min, s.kind == sink_kind::s8 ? -128 : 0);
          const std::int32_t hi = std::min(q.clamp_max, s.kind == sink_kind::s8 ? 127 : 255);
          const std::int32_t out = quant::requantize(v, b, mul, q.zero_point, lo, hi);
          if (s.kind == sink_kind::s8)
            static_cast<std::int8_t*>(s.data)[at] = static_cast<std::int8_t>(out);
          else
            static_cast<std::uint8_t*>(s.data)[at] = static_cast<std::uint8_t>(out);
          break;
        }
        case sink_kind::f32: {
          const auto& d = *s.dq;
          const float scale = d.scales[d.scales.size() == 1 ? 0 : static_cast<std::size_t>(n)];
          const float b = d.bias.empty() ? 0.0f : d.bias[static_cast<std::size_t>(n)];
          const float y = static_cast<float>(static_cast<double>(v) * scale + b);
          static_cast<float*>(s.data)[at] = std::clamp(y, d.clamp_min, d.clamp_max);
          break;
        }
      }
    }
  }
}

inline void check_stage(const requantize_stage& q, index_t n, bool is_signed, const char* who) {
  SHRINK_REQUIRE(q.multipliers.size() == 1 || static_cast<index_t>(q.multipliers.size()) == n,
                 errc::shape_mismatch, who, ": requantize_stage needs 1 or ", n, " multipliers, got ",
                 q.multipliers.size());
  for (const auto& m : q.multipliers) quant::check_multiplier(m, who);
  SHRINK_REQUIRE(q.bias.empty() || static_cast<index_t>(q.bias.size()) == n, errc::shape_mismatch, who,
                 ": bias needs 0 or ", n, " values, got ", q.bias.size());
  const std::int32_t lo = is_signed ? -128 : 0, hi = is_signed ? 127 : 255;
  SHRINK_REQUIRE(q.zero_point >= lo && q.zero_point <= hi, errc::out_of_range, who, ": output zero point ",
                 q.zero_point, " is outside [", lo, ", ", hi, "]");
  SHRINK_REQUIRE(q.clamp_min <= q.clamp_max, errc::invalid_argument, who, ": clamp_min ", q.clamp_min,
                 " > clamp_max ", q.clamp_max);
}

inline void check_stage(const dequantize_stage& d, index_t n, const char* who) {
  SHRINK_REQUIRE(d.scales.size() == 1 || static_cast<index_t>(d.scales.size()) == n, errc::shape_mismatch, who,
                 ": dequantize_stage needs 1 or ", n, " scales, got ", d.scales.size());
  for (float s : d.scales)
    SHRINK_REQUIRE(std::isfinite(s), errc::non_finite, who, ": dequantize scale must be finite, got ", s);
  SHRINK_REQUIRE(d.bias.empty() || static_cast<index_t>(d.bias.size()) == n, errc::shape_mismatch, who,
                 ": bias needs 0 or ", n, " values, got ", d.bias.size());
  for (float b : d.bias) SHRINK_REQUIRE(std::isfinite(b), errc::non_finite, who, ": bias must be finite, got ", b);
  SHRINK_REQUIRE(!(d.clamp_min > d.clamp_max), errc::invalid_argument, who, ": clamp_min > clamp_max");
}

}  // namespace int8_detail
}  // namespace shrink::kernels
