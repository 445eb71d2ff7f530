// ternary_gemm.hpp: ternary-weight GEMM/GEMV over two bit planes (mask, sign) against bit-packed ±1 activations.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <span>

#include "../binary/bit_matrix.hpp"
#include "../binary/ternary.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor_view.hpp"
#include "dispatch.hpp"
#include "xnor_gemm.hpp"

namespace shrink::kernels {

namespace ternary_impl {

/// popcount(mask AND (sign XOR x)) over `words` words: the number of non-zero weights whose
/// sign disagrees with x, so Σ t·x = nonzeros - 2·that.
using pair_fn = std::int32_t (*)(const std::uint64_t* mask, const std::uint64_t* sign, const std::uint64_t* x,
                                 index_t words);

inline std::int32_t pair_reference(const std::uint64_t* mask, const std::uint64_t* sign, const std::uint64_t* x,
                                   index_t words) {
  std::int32_t p = 0;
  for (index_t i = 0; i < words; ++i) p += std::popcount(mask[i] & (sign[i] ^ x[i]));
  return p;
}

inline std::int32_t pair_generic(const std::uint64_t* mask, const std::uint64_t* sign, const std::uint64_t* x,
                                 index_t words) {
  std::int32_t p0 = 0, p1 = 0;
  index_t i = 0;
  for (; i + 2 <= words; i += 2) {
    p0 += std::popcount(mask[i] & (sign[i] ^ x[i]));
    p1 += std::popcount(mask[i + 1] & (sign[i + 1] ^ x[i + 1]));
  }
  if (i < words) p0 += std::popcount(mask[i] & (sign[i] ^ x[i]));
  return p0 + p1;
}

#if SHRINK_HAS_X86_PATHS
SHRINK_TARGET_AVX2 inline std::int32_t pair_avx2(const std::uint64_t* mask, const std::uint64_t* sign,
                                                 const std::uint64_t* x, index_t words) {
  using xnor_impl::load4;
  std::int64_t total = 0;
  const index_t vec = words & ~index_t{3};
  index_t i = 0;
  while (i < vec) {
    const index_t end = std::min(vec, i + 4 * xnor_impl::k_avx2_flush);
    __m256i acc = _mm256_setzero_si256();
    for (; i < end; i += 4)
      acc = _mm256_add_epi8(acc, xnor_impl::popcount_bytes_avx2(
                                     _mm256_and_si256(load4(mask + i), _mm256_xor_si256(load4(sign + i), load4(x + i)))));
    total += xnor_impl::sum_bytes_avx2(acc);
  }
  for (; i < words; ++i) total += std::popcount(mask[i] & (sign[i] ^ x[i]));
  return static_cast<std::int32_t>(total);
}

SHRINK_TARGET_AVX512_VPOPCNT inline std::int32_t pair_avx512(const std::uint64_t* mask, const std::uint64_t* sign,
                                                             const std::uint64_t* x, index_t words) {
  __m512i acc = _mm512_setzero_si512();
  index_t i = 0;
  for (; i + 8 <= words; i += 8)
    acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_and_si512(
                                    _mm512_loadu_si512(mask + i),
                                    _mm512_xor_si512(_mm512_loadu_si512(sign + i), _mm512_loadu_si512(x + i)))));
  std::int64_t total = xnor_impl::sum_epi64_avx512(acc);
  for (; i < words; ++i) total += std::popcount(mask[i] & (sign[i] ^ x[i]));
  return static_cast<std::int32_t>(total);
}
#endif

inline const std::array<implementation<pair_fn>, SHRINK_HAS_X86_PATHS ? 4 : 2> k_pair{{
    {isa::reference, 0, pair_reference},
    {isa::generic, 0, pair_generic},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, pair_avx2},
    {isa::avx512, avx512_vpopcntdq, pair_avx512},
#endif
}};

inline void check(const binary::ternary_matrix& w, const binary::bit_matrix& x, const xnor_output& stage,
                  const char* who) {
  SHRINK_REQUIRE(w.cols() == x.cols(), errc::shape_mismatch, who, ": K mismatch: weights have ", w.cols(),
                 " values per row, activations ", x.cols());
  SHRINK_REQUIRE(x.padding_is_clear(), errc::format, who,
                 ": activations have padding bits set beyond K; expected them 0");
  SHRINK_REQUIRE(stage.bias.empty() || static_cast<index_t>(stage.bias.size()) == w.rows(), errc::shape_mismatch,
                 who, ": bias has ", stage.bias.size(), " elements; expected 0 or ", w.rows());
}

}  // namespace ternary_impl

/// Ternary GEMM: out[n, m] = α[m]·β[n]·Σ_k t[m,k]·x[n,k] + bias[m] with t ∈ {-1, 0, +1} and
/// x ∈ ±1 (bit-packed rows of x, N×K). out is N×M. Threads split the weight rows.
inline void ternary_gemm(const binary::ternary_matrix& w, const binary::bit_matrix& x, tensor_view<float, 2> out,
                         const xnor_output& stage = {}, const context& ctx = {}) {
  ternary_impl::check(w, x, stage, "ternary_gemm");
  SHRINK_REQUIRE(out.extent(0) == x.rows() && out.extent(1) == w.rows(), errc::shape_mismatch,
                 "ternary_gemm: output is ", out.shape(), "; expected (", x.rows(), ", ", w.rows(), ")");
  const auto fn = select(ternary_impl::k_pair);
  const index_t words = w.words_per_row();
  parallel_for(ctx, 0, w.rows(), 16, [&](index_t m0, index_t m1) {
    for (index_t n = 0; n < x.rows(); ++n)
      for (index_t m = m0; m < m1; ++m) {
        const std::int32_t dot = w.nonzeros(m) - 2 * fn(w.mask_words(m), w.sign_words(m), x.row_words(n), words);
        out(n, m) = xnor_impl::apply(dot, w.scale(m), x.scale(n),
                                     stage.bias.empty() ? 0.0f : stage.bias[static_cast<std::size_t>(m)],
                                     stage.apply_scales);
      }
  });
}

/// Ternary GEMV: y = ternary_gemm with the single activation row `row` of x.
inline void ternary_gemv(const binary::ternary_matrix& w, const binary::bit_matrix& x, std::span<float> y,
                         const xnor_output& stage = {}, const context& ctx = {}, index_t row = 0) {
  ternary_impl::check(w, x, stage, "ternary_gemv");
  SHRINK_REQUIRE(row >= 0 && row < x.rows(), errc::out_of_range, "ternary_gemv: activation row ", row,
                 " is outside [0, ", x.rows(), ")");
  SHRINK_REQUIRE(static_cast<index_t>(y.size()) == w.rows(), errc::shape_mismatch, "ternary_gemv: output has ",
                 y.size(), " elements; expected ", w.rows());
  const auto fn = select(ternary_impl::k_pair);
  parallel_for(ctx, 0, w.rows(), 16, [&](index_t m0, index_t m1) {
    for (index_t m = m0; m < m1; ++m) {
      const std::int32_t dot =
          w.nonzeros(m) - 2 * fn(w.mask_words(m), w.sign_words(m), x.row_words(row), w.words_per_row());
      y[static_cast<std::size_t>(m)] =
          xnor_impl::apply(dot, w.scale(m), x.scale(row),
                           stage.bias.empty() ? 0.0f : stage.bias[static_cast<std::size_t>(m)], stage.apply_scales);
    }
  });
}

}  // namespace shrink::kernels
