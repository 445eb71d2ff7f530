// xnor_gemm.hpp: binary GEMM, Y = W·X over bit_matrix operands by XNOR-popcount, with the fused scale/bias/sign-pack output stage.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <span>

#include "../binary/bit_matrix.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor_view.hpp"
#include "dispatch.hpp"

namespace shrink::kernels {

namespace xnor_impl {

/// out[n·ldo + m] = popcount(w_m XOR x_n) over `words` words, for m < mt, n < nt, where
/// w_m = w + m·ldw and x_n = x + n·ldx. dot = K - 2·out (docs/kernels.md, "Binary kernels").
using block_fn = void (*)(const std::uint64_t* w, index_t ldw, index_t mt, const std::uint64_t* x, index_t ldx,
                          index_t nt, index_t words, std::int32_t* out, index_t ldo);

// ---- reference: the plain triple loop.
inline void block_reference(const std::uint64_t* w, index_t ldw, index_t mt, const std::uint64_t* x, index_t ldx,
                            index_t nt, index_t words, std::int32_t* out, index_t ldo) {
  for (index_t n = 0; n < nt; ++n)
    for (index_t m = 0; m < mt; ++m) {
      std::int32_t p = 0;
      for (index_t i = 0; i < words; ++i) p += std::popcount(w[m * ldw + i] ^ x[n * ldx + i]);
      out[n * ldo + m] = p;
    }
}

/// Register-blocked tile walker shared by the fast paths: 2×4 micro-tiles (two weight rows
/// against four activation rows, six loads per eight XORs), single dots for the edges.
template <auto Micro, auto Single>
void block_tiled(const std::uint64_t* w, index_t ldw, index_t mt, const std::uint64_t* x, index_t ldx, index_t nt,
                 index_t words, std::int32_t* out, index_t ldo) {
  index_t m = 0;
  for (; m + 2 <= mt; m += 2) {
    index_t n = 0;
    for (; n + 4 <= nt; n += 4) {
      std::int32_t r[8];
      Micro(w + m * ldw, ldw, x + n * ldx, ldx, words, r);
      for (index_t i = 0; i < 2; ++i)
        for (index_t j = 0; j < 4; ++j) out[(n + j) * ldo + m + i] = r[i * 4 + j];
    }
    for (; n < nt; ++n)
      for (index_t i = 0; i < 2; ++i) out[n * ldo + m + i] = Single(w + (m + i) * ldw, x + n * ldx, words);
  }
  for (; m < mt; ++m)
    for (index_t n = 0; n < nt; ++n) out[n * ldo + m] = Single(w + m * ldw, x + n * ldx, words);
}

// ---- generic: scalar std::popcount (one popcnt instruction where the baseline has it).
inline std::int32_t single_generic(const std::uint64_t* a, const std::uint64_t* b, index_t words) {
  std::int32_t p0 = 0, p1 = 0;
  index_t i = 0;
  for (; i + 2 <= words; i += 2) {
    p0 += std::popcount(a[i] ^ b[i]);
    p1 += std::popcount(a[i + 1] ^ b[i + 1]);
  }
  if (i < words) p0 += std::popcount(a[i] ^ b[i]);
  return p0 + p1;
}

inline void micro_generic(const std::uint64_t* w, index_t ldw, const std::uint64_t* x, index_t ldx, index_t words,
                          std::int32_t* r) {
  std::int32_t acc[8] = {};
  const std::uint64_t* w1 = w + ldw;
  for (index_t i = 0; i < words; ++i) {
    const std::uint64_t a0 = w[i], a1 = w1[i];
    for (int j = 0; j < 4; ++j) {
      const std::uint64_t b = x[j * ldx + i];
      acc[j] += std::popcount(a0 ^ b);
      acc[4 + j] += std::popcount(a1 ^ b);
    }
  }
  for (int j = 0; j < 8; ++j) r[j] = acc[j];
}

inline void block_generic(const std::uint64_t* w, index_t ldw, index_t mt, const std::uint64_t* x, index_t ldx,
                          index_t nt, index_t words, std::int32_t* out, index_t ldo) {
  block_tiled<micro_generic, single_generic>(w, ldw, mt, x, ldx, nt, words, out, ldo);
}

#if SHRINK_HAS_X86_PATHS
// ---- avx2: Mula's nibble-lookup popcount (vpshufb). Per-byte counts accumulate in 8-bit
// lanes (each 256-bit step adds at most 8 per byte, so 31 steps fit in 255) and are widened
// with vpsadbw once per 31 steps.
inline constexpr index_t k_avx2_flush = 31;

SHRINK_TARGET_AVX2 inline __m256i popcount_bytes_avx2(__m256i v) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                       2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  return _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(v, low)),
                         _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low)));
}

SHRINK_TARGET_AVX2 inline std::int64_t sum_bytes_avx2(__m256i acc8) {
  const __m256i s = _mm256_sad_epu8(acc8, _mm256_setzero_si256());
  return _mm256_extract_epi64(s, 0) + _mm256_extract_epi64(s, 1) + _mm256_extract_epi64(s, 2) +
         _mm256_extract_epi64(s, 3);
}

SHRINK_TARGET_AVX2 inline __m256i load4(const std::uint64_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

SHRINK_TARGET_AVX2 inline std::int32_t single_avx2(const std::uint64_t* a, const std::uint64_t* b, index_t words) {
  std::int64_t total = 0;
  const index_t vec = words & ~index_t{3};
  index_t i = 0;
  while (i < vec) {
    const index_t end = std::min(vec, i + 4 * k_avx2_flush);
    __m256i acc = _mm256_setzero_si256();
    for (; i < end; i += 4) acc = _mm256_add_epi8(acc, popcount_bytes_avx2(_mm256_xor_si256(load4(a + i), load4(b + i))));
    total += sum_bytes_avx2(acc);
  }
  for (; i < words; ++i) total += std::popcount(a[i] ^ b[i]);
  return static_cast<std::int32_t>(total);
}

// Widens four byte-count vectors and reduces them to one vector [Σa, Σb, Σc, Σd] of 64-bit sums
// (4 vpsadbw + 2 unpack pairs + 2 permutes instead of 16 lane extracts).
SHRINK_TARGET_AVX2 inline __m256i sum4_bytes_avx2(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i z = _mm256_setzero_si256();
  a = _mm256_sad_epu8(a, z), b = _mm256_sad_epu8(b, z), c = _mm256_sad_epu8(c, z), d = _mm256_sad_epu8(d, z);
  const __m256i ab = _mm256_add_epi64(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
  const __m256i cd = _mm256_add_epi64(_mm256_unpacklo_epi64(c, d), _mm256_unpackhi_epi64(c, d));
  return _mm256_add_epi64(_mm256_permute2x128_si256(ab, cd, 0x20), _mm256_permute2x128_si256(ab, cd, 0x31));
}

// One weight row against NT activation rows. With NT = 6 the loop holds 6 byte accumulators,
// the weight vector, one activation vector, the LUT and the nibble mask in registers (2×4
// tiles needed 8 accumulators and spilled three of them to the stack on every step under GCC:
// ~10 % slower on Zen 4 at K = 2,304 and 4,096 bits; docs/kernels.md, "Binary kernels").
// out[j·ldo] = popcount(w XOR x_j) for j < NT.
template <int NT>
SHRINK_TARGET_AVX2 inline void row_avx2(const std::uint64_t* w, const std::uint64_t* x, index_t ldx, index_t words,
                                        std::int32_t* out, index_t ldo) {
  constexpr int k_sums = (NT + 3) / 4;
  const index_t vec = words & ~index_t{3};
  __m256i t[k_sums];
#pragma GCC unroll 4
  for (int q = 0; q < k_sums; ++q) t[q] = _mm256_setzero_si256();
  index_t i = 0;
  while (i < vec) {
    const index_t end = std::min(vec, i + 4 * k_avx2_flush);
    __m256i c[4 * k_sums];
#pragma GCC unroll 16
    for (int j = 0; j < 4 * k_sums; ++j) c[j] = _mm256_setzero_si256();
    for (; i < end; i += 4) {
      const __m256i a = load4(w + i);
#pragma GCC unroll 16
      for (int j = 0; j < NT; ++j)
        c[j] = _mm256_add_epi8(c[j], popcount_bytes_avx2(_mm256_xor_si256(a, load4(x + j * ldx + i))));
    }
#pragma GCC unroll 4
    for (int q = 0; q < k_sums; ++q)
      t[q] = _mm256_add_epi64(t[q], sum4_bytes_avx2(c[4 * q], c[4 * q + 1], c[4 * q + 2], c[4 * q + 3]));
  }
  alignas(32) std::int64_t total[4 * k_sums];
#pragma GCC unroll 4
  for (int q = 0; q < k_sums; ++q) _mm256_store_si256(reinterpret_cast<__m256i*>(total + 4 * q), t[q]);
  for (; i < words; ++i)
#pragma GCC unroll 16
    for (int j = 0; j < NT; ++j) total[j] += std::popcount(w[i] ^ x[j * ldx + i]);
#pragma GCC unroll 16
  for (int j = 0; j < NT; ++j) out[j * ldo] = static_cast<std::int32_t>(total[j]);
}

SHRINK_TARGET_AVX2 inline void block_avx2(const std::uint64_t* w, index_t ldw, index_t mt, const std::uint64_t* x,
                                          index_t ldx, index_t nt, index_t words, std::int32_t* out, index_t ldo) {
  constexpr index_t k_nt = 6;
  for (index_t m = 0; m < mt; ++m) {
    const std::uint64_t* wm = w + m * ldw;
    std::int32_t* om = out + m;
    index_t n = 0;
    for (; n + k_nt <= nt; n += k_nt) row_avx2<k_nt>(wm, x + n * ldx, ldx, words, om + n * ldo, ldo);
    const std::uint64_t* xn = x + n * ldx;
    switch (nt - n) {
      case 5: row_avx2<5>(wm, xn, ldx, words, om + n * ldo, ldo); break;
      case 4: row_avx2<4>(wm, xn, ldx, words, om + n * ldo, ldo); break;
      case 3: row_avx2<3>(wm, xn, ldx, words, om + n * ldo, ldo); break;
      case 2: row_avx2<2>(wm, xn, ldx, words, om + n * ldo, ldo); break;
      case 1: row_avx2<1>(wm, xn, ldx, words, om + n * ldo, ldo); break;
      default: break;
    }
  }
}

// ---- avx512 + vpopcntdq: vpopcntq counts each 64-bit lane directly; scalar tail (no
// masked loads, so the SIMDe-emulated build runs the same code).
SHRINK_TARGET_AVX512_VPOPCNT inline std::int64_t sum_epi64_avx512(__m512i v) {
  alignas(64) std::int64_t lanes[8];
  _mm512_store_si512(lanes, v);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}

SHRINK_TARGET_AVX512_VPOPCNT inline std::int32_t single_avx512(const std::uint64_t* a, const std::uint64_t* b,
                                                               index_t words) {
  __m512i acc = _mm512_setzero_si512();
  index_t i = 0;
  for (; i + 8 <= words; i += 8)
    acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i))));
  std::int64_t total = sum_epi64_avx512(acc);
  for (; i < words; ++i) total += std::popcount(a[i] ^ b[i]);
  return static_cast<std::int32_t>(total);
}

// Steps of micro_avx512's transposing reduction, in the all-ones maskz forms: GCC 12's plain
// unpack/shuffle intrinsics pass an undefined source that trips -Wuninitialized in user builds.
// Per 128-bit lane: [a0+a1, b0+b1] from a = [a0, a1], b = [b0, b1].
SHRINK_TARGET_AVX512_VPOPCNT inline __m512i add_lo_hi_avx512(__m512i a, __m512i b) {
  return _mm512_add_epi64(_mm512_maskz_unpacklo_epi64(0xFF, a, b), _mm512_maskz_unpackhi_epi64(0xFF, a, b));
}
// Lanes (a0+a1, a2+a3, b0+b1, b2+b3) of 128-bit lanes a0..a3, b0..b3. (SIMDe 0.7.4 has no
// native alias for the maskz shuffle.)
#if defined(SHRINK_EMULATE_AVX512)
#define SHRINK_XNOR_SHUFFLE_I64X2 simde_mm512_maskz_shuffle_i64x2
#else
#define SHRINK_XNOR_SHUFFLE_I64X2 _mm512_maskz_shuffle_i64x2
#endif
SHRINK_TARGET_AVX512_VPOPCNT inline __m512i add_halves_avx512(__m512i a, __m512i b) {
  return _mm512_add_epi64(SHRINK_XNOR_SHUFFLE_I64X2(0xFF, a, b, 0x88), SHRINK_XNOR_SHUFFLE_I64X2(0xFF, a, b, 0xDD));
}
#undef SHRINK_XNOR_SHUFFLE_I64X2

SHRINK_TARGET_AVX512_VPOPCNT inline void micro_avx512(const std::uint64_t* w, index_t ldw, const std::uint64_t* x,
                                                      index_t ldx, index_t words, std::int32_t* r) {
  const std::uint64_t *w0 = w, *w1 = w + ldw;
  __m512i c[8];
  for (auto& v : c) v = _mm512_setzero_si512();
  index_t i = 0;
  for (; i + 8 <= words; i += 8) {
    const __m512i a0 = _mm512_loadu_si512(w0 + i), a1 = _mm512_loadu_si512(w1 + i);
    for (int j = 0; j < 4; ++j) {
      const __m512i b = _mm512_loadu_si512(x + j * ldx + i);
      c[j] = _mm512_add_epi64(c[j], _mm512_popcnt_epi64(_mm512_xor_si512(a0, b)));
      c[4 + j] = _mm512_add_epi64(c[4 + j], _mm512_popcnt_epi64(_mm512_xor_si512(a1, b)));
    }
  }
  // Transposing reduction of the 8 accumulators into [Σc0, …, Σc7] (20 vector ops instead of
  // 8 stores and 56 scalar adds; it mattered for short rows such as a conv's 36 words).
  const __m512i u0 = add_halves_avx512(add_lo_hi_avx512(c[0], c[1]), add_lo_hi_avx512(c[2], c[3]));
  const __m512i u1 = add_halves_avx512(add_lo_hi_avx512(c[4], c[5]), add_lo_hi_avx512(c[6], c[7]));
  alignas(64) std::int64_t total[8];
  _mm512_store_si512(total, add_halves_avx512(u0, u1));
  // A 4-word remainder (rows of 36 words in a 3×3 binary conv over 256 channels) as one
  // 256-bit vpopcntq step rather than 32 scalar popcounts.
  if (i + 4 <= words) {
    const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + i));
    const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1 + i));
    for (int j = 0; j < 4; ++j) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + j * ldx + i));
      alignas(32) std::int64_t l0[4], l1[4];
      _mm256_store_si256(reinterpret_cast<__m256i*>(l0), _mm256_popcnt_epi64(_mm256_xor_si256(a0, b)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(l1), _mm256_popcnt_epi64(_mm256_xor_si256(a1, b)));
      total[j] += l0[0] + l0[1] + l0[2] + l0[3];
      total[4 + j] += l1[0] + l1[1] + l1[2] + l1[3];
    }
    i += 4;
  }
  for (; i < words; ++i)
    for (int j = 0; j < 4; ++j) {
      total[j] += std::popcount(w0[i] ^ x[j * ldx + i]);
      total[4 + j] += std::popcount(w1[i] ^ x[j * ldx + i]);
    }
  for (int j = 0; j < 8; ++j) r[j] = static_cast<std::int32_t>(total[j]);
}

SHRINK_TARGET_AVX512_VPOPCNT inline void block_avx512(const std::uint64_t* w, index_t ldw, index_t mt,
                                                      const std::uint64_t* x, index_t ldx, index_t nt, index_t words,
                                                      std::int32_t* out, index_t ldo) {
  block_tiled<micro_avx512, single_avx512>(w, ldw, mt, x, ldx, nt, words, out, ldo);
}
#endif

inline const std::array<implementation<block_fn>, SHRINK_HAS_X86_PATHS ? 4 : 2> k_block{{
    {isa::reference, 0, block_reference},
    {isa::generic, 0, block_generic},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, block_avx2},
    {isa::avx512, avx512_vpopcntdq, block_avx512},
#endif
}};

/// Output tile sizes: 64 weight rows (one output word when sign-packing) × 16 activation rows.
inline constexpr index_t k_tile_m = 64, k_tile_n = 16;

inline void check_operands(const binary::bit_matrix& w, const binary::bit_matrix& x, const char* who) {
  SHRINK_REQUIRE(w.cols() == x.cols(), errc::shape_mismatch, who, ": K mismatch: weights have ", w.cols(),
                 " bits per row, activations ", x.cols());
  SHRINK_REQUIRE(w.padding_is_clear() && x.padding_is_clear(), errc::format, who,
                 ": an operand has padding bits set beyond K = ", w.cols(),
                 "; expected the unused high bits of each row's last word to be 0");
}

/// Runs the dispatched block kernel over all outputs, threads splitting the weight rows in
/// multiples of 64, and hands each int32 popcount tile to emit(n0, nt, m0, mt, tile) with
/// tile[n·k_tile_m + m].
template <class Emit>
void for_each_tile(const binary::bit_matrix& w, const binary::bit_matrix& x, const context& ctx, Emit&& emit) {
  const block_fn block = select(k_block);
  const index_t m_total = w.rows(), n_total = x.rows(), words = w.words_per_row();
  parallel_for(ctx, 0, m_total, k_tile_m, [&](index_t m_begin, index_t m_end) {
    alignas(64) std::int32_t tile[k_tile_n * k_tile_m];
    for (index_t n0 = 0; n0 < n_total; n0 += k_tile_n) {
      const index_t nt = std::min(k_tile_n, n_total - n0);
      for (index_t m0 = m_begin; m0 < m_end; m0 += k_tile_m) {
        const index_t mt = std::min(k_tile_m, m_end - m0);
        block(w.row_words(m0), words, mt, x.row_words(n0), words, nt, words, tile, k_tile_m);
        emit(n0, nt, m0, mt, static_cast<const std::int32_t*>(tile));
      }
    }
  });
}

}  // namespace xnor_impl

/// The fused output stage of the binary kernels: y[n, m] = s · dot + bias[m], with
/// s = α[m]·β[n] (the operands' row scales) when `apply_scales`, else 1.
struct xnor_output {
  std::span<const float> bias{};  ///< empty, or one per weight row (output channel)
  bool apply_scales = true;
};

/// Raw binary GEMM: out[n, m] = Σ_k w[m, k]·x[n, k] over ±1 values = K - 2·popcount(w_m XOR x_n),
/// exact in int32. w is M×K (weights), x is N×K (one activation vector per row); out is N×M.
inline void xnor_gemm(const binary::bit_matrix& w, const binary::bit_matrix& x, tensor_view<std::int32_t, 2> out,
                      const context& ctx = {}) {
  xnor_impl::check_operands(w, x, "xnor_gemm");
  SHRINK_REQUIRE(out.extent(0) == x.rows() && out.extent(1) == w.rows(), errc::shape_mismatch,
                 "xnor_gemm: output is ", out.shape(), "; expected (", x.rows(), ", ", w.rows(), ")");
  const auto k = static_cast<std::int32_t>(w.cols());
  xnor_impl::for_each_tile(w, x, ctx, [&](index_t n0, index_t nt, index_t m0, index_t mt, const std::int32_t* t) {
    for (index_t n = 0; n < nt; ++n)
      for (index_t m = 0; m < mt; ++m) out(n0 + n, m0 + m) = k - 2 * t[n * xnor_impl::k_tile_m + m];
  });
}

namespace xnor_impl {
inline void check_stage(const binary::bit_matrix& w, const xnor_output& stage, const char* who) {
  SHRINK_REQUIRE(stage.bias.empty() || static_cast<index_t>(stage.bias.size()) == w.rows(), errc::shape_mismatch,
                 who, ": bias has ", stage.bias.size(), " elements; expected 0 or ", w.rows());
}
inline float apply(std::int32_t dot, float alpha, float beta, float bias, bool scales) noexcept {
  const float s = scales ? alpha * beta : 1.0f;
  return s * static_cast<float>(dot) + bias;
}
}  // namespace xnor_impl

/// Binary GEMM with the fused output stage: out[n, m] = α[m]·β[n]·(K - 2·popcount) + bias[m].
/// Identical bytes on every ISA path and thread count.
inline void xnor_gemm(const binary::bit_matrix& w, const binary::bit_matrix& x, tensor_view<float, 2> out,
                      const xnor_output& stage = {}, const context& ctx = {}) {
  xnor_impl::check_operands(w, x, "xnor_gemm");
  xnor_impl::check_stage(w, stage, "xnor_gemm");
  SHRINK_REQUIRE(out.extent(0) == x.rows() && out.extent(1) == w.rows(), errc::shape_mismatch,
                 "xnor_gemm: output is ", out.shape(), "; expected (", x.rows(), ", ", w.rows(), ")");
  const auto k = static_cast<std::int32_t>(w.cols());
  xnor_impl::for_each_tile(w, x, ctx, [&](index_t n0, index_t nt, index_t m0, index_t mt, const std::int32_t* t) {
    for (index_t n = 0; n < nt; ++n)
      for (index_t m = 0; m < mt; ++m)
        out(n0 + n, m0 + m) =
            xnor_impl::apply(k - 2 * t[n * xnor_impl::k_tile_m + m], w.scale(m0 + m), x.scale(n0 + n),
                             stage.bias.empty() ? 0.0f : stage.bias[static_cast<std::size_t>(m0 + m)], stage.apply_scales);
  });
}

/// Binary GEMM whose output goes straight into the next layer's packed input: bit (n, m) of
/// `next` is sign(y[n, m]) with y as in the float form (bit 1 where y < 0); `next` must be
/// N×M and its row scales are set to 1 (binary activations between layers carry no scale).
inline void xnor_gemm(const binary::bit_matrix& w, const binary::bit_matrix& x, binary::bit_matrix& next,
                      const xnor_output& stage = {}, const context& ctx = {}) {
  xnor_impl::check_operands(w, x, "xnor_gemm");
  xnor_impl::check_stage(w, stage, "xnor_gemm");
  SHRINK_REQUIRE(next.rows() == x.rows() && next.cols() == w.rows(), errc::shape_mismatch,
                 "xnor_gemm: packed output is ", next.rows(), " x ", next.cols(), "; expected ", x.rows(), " x ",
                 w.rows());
  const auto k = static_cast<std::int32_t>(w.cols());
  for (float& s : next.scales()) s = 1.0f;
  // Tiles start at multiples of 64 weight rows, so each tile row fills exactly one output word
  // and no two threads write the same word.
  xnor_impl::for_each_tile(w, x, ctx, [&](index_t n0, index_t nt, index_t m0, index_t mt, const std::int32_t* t) {
    for (index_t n = 0; n < nt; ++n) {
      std::uint64_t word = 0;
      for (index_t m = 0; m < mt; ++m) {
        const float y = xnor_impl::apply(k - 2 * t[n * xnor_impl::k_tile_m + m], w.scale(m0 + m), x.scale(n0 + n),
                                         stage.bias.empty() ? 0.0f : stage.bias[static_cast<std::size_t>(m0 + m)],
                                         stage.apply_scales);
        word |= static_cast<std::uint64_t>(binary::bit_of(y)) << m;
      }
      next.row_words(n0 + n)[m0 / binary::k_word_bits] = word;
    }
  });
}

}  // namespace shrink::kernels
