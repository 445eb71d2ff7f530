// bit_pack.hpp: activation binarization + packing: sign bits of float or int8 rows into 64-bit words, with the mean-|x| scale.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#include "../binary/binarize.hpp"
#include "../binary/bit_matrix.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor_view.hpp"
#include "dispatch.hpp"
#include "x86_reduce.hpp"

namespace shrink::kernels {

namespace bit_pack_impl {

/// Packs k floats into words_for(k) words (bit = x < 0, so -0 and NaN give +1; padding bits
/// 0) and returns Σ|x| in one fixed order on every path: eight fp32 lane sums s_j over the
/// elements i < 8·floor(k/8) with i mod 8 = j, combined as ((s0+s4)+(s2+s6))+((s1+s5)+(s3+s7)),
/// then the last k mod 8 elements added in order.
using f32_fn = float (*)(const float* x, index_t k, std::uint64_t* words);
/// Packs k int8 values (bit = x < 0) and returns Σ|x| exactly.
using i8_fn = std::int64_t (*)(const std::int8_t* x, index_t k, std::uint64_t* words);

inline float combine_lanes(const float* s) noexcept { return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7])); }

inline float f32_reference(const float* x, index_t k, std::uint64_t* words) {
  for (index_t j = 0; j < binary::words_for(k); ++j) words[j] = 0;
  float lane[8] = {};
  index_t i = 0;
  for (; i + 8 <= k; i += 8)
    for (index_t j = 0; j < 8; ++j) lane[j] += std::abs(x[i + j]);
  float sum = combine_lanes(lane);
  for (; i < k; ++i) sum += std::abs(x[i]);
  for (index_t c = 0; c < k; ++c)
    if (x[c] < 0.0f) words[c / 64] |= std::uint64_t{1} << (c % 64);
  return sum;
}

inline float f32_generic(const float* x, index_t k, std::uint64_t* words) {
  float lane[8] = {};
  index_t i = 0;
  for (; i + 64 <= k; i += 64) {
    std::uint64_t w = 0;
    for (index_t b = 0; b < 64; b += 8)
      for (index_t j = 0; j < 8; ++j) {
        const float v = x[i + b + j];
        lane[j] += std::abs(v);
        w |= static_cast<std::uint64_t>(v < 0.0f) << (b + j);
      }
    words[i / 64] = w;
  }
  if (i < k) {
    std::uint64_t w = 0;
    for (index_t c = i; c < k; ++c) w |= static_cast<std::uint64_t>(x[c] < 0.0f) << (c - i);
    words[i / 64] = w;
    for (; i + 8 <= k; i += 8)
      for (index_t j = 0; j < 8; ++j) lane[j] += std::abs(x[i + j]);
  }
  float sum = combine_lanes(lane);
  for (; i < k; ++i) sum += std::abs(x[i]);
  return sum;
}

inline std::int64_t i8_reference(const std::int8_t* x, index_t k, std::uint64_t* words) {
  for (index_t j = 0; j < binary::words_for(k); ++j) words[j] = 0;
  std::int64_t sum = 0;
  for (index_t c = 0; c < k; ++c) {
    sum += x[c] < 0 ? -std::int64_t{x[c]} : std::int64_t{x[c]};
    if (x[c] < 0) words[c / 64] |= std::uint64_t{1} << (c % 64);
  }
  return sum;
}

#if SHRINK_HAS_X86_PATHS
// ---- avx2: vcmpltps + vmovmskps gives 8 sign bits per load (the compare, not the raw sign
// bit, so -0 packs as +1); |x| = x AND NOT signbit accumulates in the fixed lane order.
SHRINK_TARGET_AVX2 inline float f32_avx2(const float* x, index_t k, std::uint64_t* words) {
  const __m256 zero = _mm256_setzero_ps(), sign_bit = _mm256_set1_ps(-0.0f);
  __m256 acc = _mm256_setzero_ps();
  index_t i = 0;
  for (; i + 64 <= k; i += 64) {
    std::uint64_t w = 0;
    for (int b = 0; b < 8; ++b) {
      const __m256 v = _mm256_loadu_ps(x + i + 8 * b);
      acc = _mm256_add_ps(acc, _mm256_andnot_ps(sign_bit, v));
      w |= static_cast<std::uint64_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ))) << (8 * b);
    }
    words[i / 64] = w;
  }
  if (i < k) {
    std::uint64_t w = 0;
    const index_t base = i;
    for (; i + 8 <= k; i += 8) {
      const __m256 v = _mm256_loadu_ps(x + i);
      acc = _mm256_add_ps(acc, _mm256_andnot_ps(sign_bit, v));
      w |= static_cast<std::uint64_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ))) << (i - base);
    }
    for (index_t c = i; c < k; ++c) w |= static_cast<std::uint64_t>(x[c] < 0.0f) << (c - base);
    words[base / 64] = w;
  }
  float sum = x86::hsum(acc);  // = ((s0+s4)+(s2+s6))+((s1+s5)+(s3+s7)), the documented order
  for (; i < k; ++i) sum += std::abs(x[i]);
  return sum;
}

// vpmovmskb gives the 32 sign bits of 32 int8 values directly; vpabsb + vpsadbw sums |x|
// exactly (|-128| = 128 fits an unsigned byte).
SHRINK_TARGET_AVX2 inline std::int64_t i8_avx2(const std::int8_t* x, index_t k, std::uint64_t* words) {
  __m256i acc = _mm256_setzero_si256();
  index_t i = 0;
  for (; i + 64 <= k; i += 64) {
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 32));
    acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_abs_epi8(v0), _mm256_setzero_si256()));
    acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_abs_epi8(v1), _mm256_setzero_si256()));
    words[i / 64] = static_cast<std::uint32_t>(_mm256_movemask_epi8(v0)) |
                    (static_cast<std::uint64_t>(static_cast<std::uint32_t>(_mm256_movemask_epi8(v1))) << 32);
  }
  std::int64_t sum = _mm256_extract_epi64(acc, 0) + _mm256_extract_epi64(acc, 1) + _mm256_extract_epi64(acc, 2) +
                     _mm256_extract_epi64(acc, 3);
  if (i < k) {
    std::uint64_t w = 0;
    for (index_t c = i; c < k; ++c) {
      sum += x[c] < 0 ? -std::int64_t{x[c]} : std::int64_t{x[c]};
      w |= static_cast<std::uint64_t>(x[c] < 0) << (c - i);
    }
    words[i / 64] = w;
  }
  return sum;
}
#endif

inline const std::array<implementation<f32_fn>, SHRINK_HAS_X86_PATHS ? 3 : 2> k_f32{{
    {isa::reference, 0, f32_reference},
    {isa::generic, 0, f32_generic},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, f32_avx2},
#endif
}};

inline const std::array<implementation<i8_fn>, SHRINK_HAS_X86_PATHS ? 2 : 1> k_i8{{
    {isa::reference, 0, i8_reference},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, i8_avx2},
#endif
}};

template <class T>
void check_shapes(tensor_view<const T, 2> x, const binary::bit_matrix& out, const char* who) {
  SHRINK_REQUIRE(out.rows() == x.extent(0) && out.cols() == x.extent(1), errc::shape_mismatch, who,
                 ": output bit_matrix is ", out.rows(), " x ", out.cols(), "; expected ", x.extent(0), " x ",
                 x.extent(1));
  SHRINK_REQUIRE(x.extent(1) == 0 || x.stride(1) == 1, errc::invalid_argument, who,
                 ": rows must be contiguous (stride 1 along K)");
}

}  // namespace bit_pack_impl

/// Binarizes and packs activation rows (N×K floats) into `out` (N×K bits, allocated by the
/// caller, so this never allocates): bit = x < 0, and row scale β = mean |x| (scaling::mean_abs,
/// summed in the fixed order documented in bit_pack_impl) or 1 (scaling::none).
inline void pack_signs(tensor_view<const float, 2> x, binary::bit_matrix& out,
                       binary::scaling scale = binary::scaling::mean_abs, const context& ctx = {}) {
  bit_pack_impl::check_shapes(x, out, "pack_signs");
  const auto fn = select(bit_pack_impl::k_f32);
  const index_t k = x.extent(1);
  parallel_for(ctx, 0, x.extent(0), 1, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      const float sum = k == 0 ? 0.0f : fn(&x(r, 0), k, out.row_words(r));
      out.scales()[static_cast<std::size_t>(r)] =
          scale == binary::scaling::mean_abs ? (k == 0 ? 0.0f : sum / static_cast<float>(k)) : 1.0f;
    }
  });
}

/// Allocating convenience form of pack_signs.
inline binary::bit_matrix pack_signs(tensor_view<const float, 2> x, binary::scaling scale = binary::scaling::mean_abs,
                                     const context& ctx = {}) {
  binary::bit_matrix out(x.extent(0), x.extent(1));
  pack_signs(x, out, scale, ctx);
  return out;
}

/// Packs int8 activation rows (real value = input_scale · q): bit = q < 0, β = input_scale ·
/// mean |q| (exact integer sum) or 1.
inline void pack_signs(tensor_view<const std::int8_t, 2> x, float input_scale, binary::bit_matrix& out,
                       binary::scaling scale = binary::scaling::mean_abs, const context& ctx = {}) {
  bit_pack_impl::check_shapes(x, out, "pack_signs");
  SHRINK_REQUIRE(std::isfinite(input_scale) && input_scale >= 0.0f, errc::invalid_argument,
                 "pack_signs: input_scale must be finite and >= 0, got ", input_scale);
  const auto fn = select(bit_pack_impl::k_i8);
  const index_t k = x.extent(1);
  parallel_for(ctx, 0, x.extent(0), 1, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      const std::int64_t sum = k == 0 ? 0 : fn(&x(r, 0), k, out.row_words(r));
      out.scales()[static_cast<std::size_t>(r)] =
          scale == binary::scaling::mean_abs
              ? (k == 0 ? 0.0f
                        : static_cast<float>(static_cast<double>(input_scale) * static_cast<double>(sum) /
                                             static_cast<double>(k)))
              : 1.0f;
    }
  });
}

}  // namespace shrink::kernels
