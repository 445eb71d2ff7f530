// xnor_gemv.hpp: binary GEMV, y = W·x for one bit-packed activation vector, four weight rows per pass, fused output stage.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <span>

#include "../binary/bit_matrix.hpp"
#include "../core/parallel.hpp"
#include "dispatch.hpp"
#include "xnor_gemm.hpp"

namespace shrink::kernels {

namespace xnor_gemv_impl {

/// out[m] = popcount(w_m XOR x) for m < mt, w_m = w + m·ldw.
using rows_fn = void (*)(const std::uint64_t* w, index_t ldw, index_t mt, const std::uint64_t* x, index_t words,
                         std::int32_t* out);

inline void rows_reference(const std::uint64_t* w, index_t ldw, index_t mt, const std::uint64_t* x, index_t words,
                           std::int32_t* out) {
  for (index_t m = 0; m < mt; ++m) {
    std::int32_t p = 0;
    for (index_t i = 0; i < words; ++i) p += std::popcount(w[m * ldw + i] ^ x[i]);
    out[m] = p;
  }
}

inline void rows_generic(const std::uint64_t* w, index_t ldw, index_t mt, const std::uint64_t* x, index_t words,
                         std::int32_t* out) {
  for (index_t m = 0; m < mt; ++m) out[m] = xnor_impl::single_generic(w + m * ldw, x, words);
}

#if SHRINK_HAS_X86_PATHS
// Four weight rows share each activation load; byte counters flushed every 31 steps (see xnor_gemm.hpp).
SHRINK_TARGET_AVX2 inline void rows_avx2(const std::uint64_t* w, index_t ldw, index_t mt, const std::uint64_t* x,
                                         index_t words, std::int32_t* out) {
  using xnor_impl::load4;
  using xnor_impl::popcount_bytes_avx2;
  index_t m = 0;
  const index_t vec = words & ~index_t{3};
  for (; m + 4 <= mt; m += 4) {
    const std::uint64_t *w0 = w + m * ldw, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
    __m256i t = _mm256_setzero_si256();
    index_t i = 0;
    while (i < vec) {
      const index_t end = std::min(vec, i + 4 * xnor_impl::k_avx2_flush);
      __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0;
      for (; i < end; i += 4) {
        const __m256i b = load4(x + i);
        c0 = _mm256_add_epi8(c0, popcount_bytes_avx2(_mm256_xor_si256(load4(w0 + i), b)));
        c1 = _mm256_add_epi8(c1, popcount_bytes_avx2(_mm256_xor_si256(load4(w1 + i), b)));
        c2 = _mm256_add_epi8(c2, popcount_bytes_avx2(_mm256_xor_si256(load4(w2 + i), b)));
        c3 = _mm256_add_epi8(c3, popcount_bytes_avx2(_mm256_xor_si256(load4(w3 + i), b)));
      }
      t = _mm256_add_epi64(t, xnor_impl::sum4_bytes_avx2(c0, c1, c2, c3));
    }
    alignas(32) std::int64_t tt[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(tt), t);
    std::int64_t t0 = tt[0], t1 = tt[1], t2 = tt[2], t3 = tt[3];
    for (; i < words; ++i) {
      t0 += std::popcount(w0[i] ^ x[i]), t1 += std::popcount(w1[i] ^ x[i]);
      t2 += std::popcount(w2[i] ^ x[i]), t3 += std::popcount(w3[i] ^ x[i]);
    }
    out[m] = static_cast<std::int32_t>(t0), out[m + 1] = static_cast<std::int32_t>(t1);
    out[m + 2] = static_cast<std::int32_t>(t2), out[m + 3] = static_cast<std::int32_t>(t3);
  }
  for (; m < mt; ++m) out[m] = xnor_impl::single_avx2(w + m * ldw, x, words);
}

SHRINK_TARGET_AVX512_VPOPCNT inline void rows_avx512(const std::uint64_t* w, index_t ldw, index_t mt,
                                                     const std::uint64_t* x, index_t words, std::int32_t* out) {
  index_t m = 0;
  for (; m + 4 <= mt; m += 4) {
    const std::uint64_t* r = w + m * ldw;
    __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0;
    index_t i = 0;
    for (; i + 8 <= words; i += 8) {
      const __m512i b = _mm512_loadu_si512(x + i);
      c0 = _mm512_add_epi64(c0, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(r + i), b)));
      c1 = _mm512_add_epi64(c1, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(r + ldw + i), b)));
      c2 = _mm512_add_epi64(c2, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(r + 2 * ldw + i), b)));
      c3 = _mm512_add_epi64(c3, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(r + 3 * ldw + i), b)));
    }
    std::int64_t t[4] = {xnor_impl::sum_epi64_avx512(c0), xnor_impl::sum_epi64_avx512(c1),
                         xnor_impl::sum_epi64_avx512(c2), xnor_impl::sum_epi64_avx512(c3)};
    for (; i < words; ++i)
      for (index_t j = 0; j < 4; ++j) t[j] += std::popcount(r[j * ldw + i] ^ x[i]);
    for (index_t j = 0; j < 4; ++j) out[m + j] = static_cast<std::int32_t>(t[j]);
  }
  for (; m < mt; ++m) out[m] = xnor_impl::single_avx512(w + m * ldw, x, words);
}
#endif

inline const std::array<implementation<rows_fn>, SHRINK_HAS_X86_PATHS ? 4 : 2> k_rows{{
    {isa::reference, 0, rows_reference},
    {isa::generic, 0, rows_generic},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, rows_avx2},
    {isa::avx512, avx512_vpopcntdq, rows_avx512},
#endif
}};

inline constexpr index_t k_chunk = 64;

}  // namespace xnor_gemv_impl

/// Binary GEMV: y[m] = α[m]·β·(K - 2·popcount(w_m XOR x)) + bias[m], where x is row `row` of a
/// packed activation matrix (β = its scale). y has one element per weight row.
inline void xnor_gemv(const binary::bit_matrix& w, const binary::bit_matrix& x, std::span<float> y,
                      const xnor_output& stage = {}, const context& ctx = {}, index_t row = 0) {
  xnor_impl::check_operands(w, x, "xnor_gemv");
  xnor_impl::check_stage(w, stage, "xnor_gemv");
  SHRINK_REQUIRE(row >= 0 && row < x.rows(), errc::out_of_range, "xnor_gemv: activation row ", row,
                 " is outside [0, ", x.rows(), ")");
  SHRINK_REQUIRE(static_cast<index_t>(y.size()) == w.rows(), errc::shape_mismatch, "xnor_gemv: output has ",
                 y.size(), " elements; expected ", w.rows());
  const auto fn = select(xnor_gemv_impl::k_rows);
  const auto k = static_cast<std::int32_t>(w.cols());
  const float beta = x.scale(row);
  const std::uint64_t* xr = x.row_words(row);
  parallel_for(ctx, 0, w.rows(), xnor_gemv_impl::k_chunk, [&](index_t m_begin, index_t m_end) {
    std::int32_t pop[xnor_gemv_impl::k_chunk];
    for (index_t m0 = m_begin; m0 < m_end; m0 += xnor_gemv_impl::k_chunk) {
      const index_t mt = std::min(xnor_gemv_impl::k_chunk, m_end - m0);
      fn(w.row_words(m0), w.words_per_row(), mt, xr, w.words_per_row(), pop);
      for (index_t m = 0; m < mt; ++m)
        y[static_cast<std::size_t>(m0 + m)] =
            xnor_impl::apply(k - 2 * pop[m], w.scale(m0 + m), beta,
                             stage.bias.empty() ? 0.0f : stage.bias[static_cast<std::size_t>(m0 + m)], stage.apply_scales);
    }
  });
}

}  // namespace shrink::kernels
