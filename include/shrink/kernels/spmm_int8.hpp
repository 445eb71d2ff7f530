// spmm_int8.hpp: y = W·x and Y = W·X for int8-valued sparse plans with int8 activations and exact int32 outputs, every ISA path.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <span>

#include <xsimd/xsimd.hpp>

#include "../core/config.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor_view.hpp"
#include "dispatch.hpp"
#include "sparse_plan.hpp"
#include "x86_reduce.hpp"

namespace shrink::kernels {

namespace spmm_int8_impl {

// Every path computes the same integer sums exactly (make_plan limits K so no row sum can
// overflow int32), so all paths agree bit for bit. Y[i, b] = Σ_k q(i, k) · X[col_k, b];
// the caller applies row_scale[i] and the activation scale. `x_has_min`: X holds −128
// somewhere (spmm scans it once per call); the AVX2 quad tiles need it not to.
using rows_fn = void (*)(const sparse_plan_int8&, const std::int8_t*, index_t, std::int32_t*, index_t, index_t,
                         index_t, index_t, bool);

inline void rows_reference(const sparse_plan_int8& p, const std::int8_t* x, index_t ldx, std::int32_t* y, index_t ldy,
                           index_t batch, index_t r0, index_t r1, bool /*x_has_min*/) {
  for (index_t i = r0; i < r1; ++i)
    for (index_t b = 0; b < batch; ++b) {
      std::int32_t s = 0;
      for (std::uint32_t k = p.row_ptr[static_cast<std::size_t>(i)]; k < p.row_ptr[static_cast<std::size_t>(i) + 1];
           ++k)
        s += std::int32_t{p.values[k]} * std::int32_t{x[p.col[k] * ldx + b]};
      y[i * ldy + b] = s;
    }
}

SHRINK_ALWAYS_INLINE void scalar_columns(const std::uint32_t* col, const std::int8_t* val, index_t n,
                                         const std::int8_t* x, index_t ldx, std::int32_t* y, index_t b,
                                         index_t batch) {
  for (; b < batch; ++b) {
    std::int32_t s = 0;
    for (index_t k = 0; k < n; ++k) s += std::int32_t{val[k]} * std::int32_t{x[col[k] * ldx + b]};
    y[b] = s;
  }
}

inline void rows_generic(const sparse_plan_int8& p, const std::int8_t* x, index_t ldx, std::int32_t* y, index_t ldy,
                         index_t batch, index_t r0, index_t r1, bool /*x_has_min*/) {
  using vec = xsimd::batch<std::int32_t>;
  constexpr index_t w = static_cast<index_t>(vec::size);
  for (index_t i = r0; i < r1; ++i) {
    const index_t k0 = p.row_ptr[static_cast<std::size_t>(i)], n = p.row_ptr[static_cast<std::size_t>(i) + 1] - k0;
    const std::uint32_t* col = p.col.data() + k0;
    const std::int8_t* val = p.values.data() + k0;
    std::int32_t* yr = y + i * ldy;
    index_t b = 0;
    for (; b + 2 * w <= batch; b += 2 * w) {
      vec a0(0), a1(0);
      for (index_t k = 0; k < n; ++k) {
        const vec wk(std::int32_t{val[k]});
        const std::int8_t* xr = x + col[k] * ldx + b;
        a0 += wk * xsimd::load_as<std::int32_t>(xr, xsimd::unaligned_mode());
        a1 += wk * xsimd::load_as<std::int32_t>(xr + w, xsimd::unaligned_mode());
      }
      a0.store_unaligned(yr + b);
      a1.store_unaligned(yr + b + w);
    }
    scalar_columns(col, val, n, x, ldx, yr, b, batch);
  }
}

#if SHRINK_HAS_X86_PATHS
// SpMV: 16 x bytes per step, each inserted into its lane with vpinsrb from memory (on
// Zen 4, vpgatherdd costs ~10 cycles per 8 lanes; one insert per entry is cheaper and
// reads exactly the addressed bytes), then sign-extended to int16 with the weights and
// multiplied pairwise into int32 lanes by vpmaddwd.
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE __m128i x16_avx2(const std::int8_t* x, const std::uint32_t* c) {
  __m128i v = _mm_cvtsi32_si128(static_cast<std::uint8_t>(x[c[0]]));
  v = _mm_insert_epi8(v, x[c[1]], 1);
  v = _mm_insert_epi8(v, x[c[2]], 2);
  v = _mm_insert_epi8(v, x[c[3]], 3);
  v = _mm_insert_epi8(v, x[c[4]], 4);
  v = _mm_insert_epi8(v, x[c[5]], 5);
  v = _mm_insert_epi8(v, x[c[6]], 6);
  v = _mm_insert_epi8(v, x[c[7]], 7);
  v = _mm_insert_epi8(v, x[c[8]], 8);
  v = _mm_insert_epi8(v, x[c[9]], 9);
  v = _mm_insert_epi8(v, x[c[10]], 10);
  v = _mm_insert_epi8(v, x[c[11]], 11);
  v = _mm_insert_epi8(v, x[c[12]], 12);
  v = _mm_insert_epi8(v, x[c[13]], 13);
  v = _mm_insert_epi8(v, x[c[14]], 14);
  return _mm_insert_epi8(v, x[c[15]], 15);
}

// SpMV of a plan whose entries come in runs of 4 consecutive columns starting at a
// multiple of 4 (BSR r×c int8 with c % 4 == 0: p.run): x for a run is one 32-bit load, so
// 8 loads (not 32 vpinsrb) fill a register of 32 x bytes. Same exact int16 products.
SHRINK_TARGET_AVX2 inline void spmv_runs4_avx2(const sparse_plan_int8& p, const std::int8_t* x, std::int32_t* y,
                                               index_t r0, index_t r1) {
  const std::uint32_t* col = p.col.data();
  const std::int8_t* val = p.values.data();
  const auto quad = [x](std::uint32_t c) {
    std::int32_t v;
    std::memcpy(&v, x + c, 4);
    return v;
  };
  for (index_t i = r0; i < r1; ++i) {
    index_t k = p.row_ptr[static_cast<std::size_t>(i)];
    const index_t k1 = p.row_ptr[static_cast<std::size_t>(i) + 1];
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    for (; k + 32 <= k1; k += 32) {
      const __m256i xv = _mm256_setr_epi32(quad(col[k]), quad(col[k + 4]), quad(col[k + 8]), quad(col[k + 12]),
                                           quad(col[k + 16]), quad(col[k + 20]), quad(col[k + 24]), quad(col[k + 28]));
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(val + k));
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(xv)),
                                                  _mm256_cvtepi8_epi16(_mm256_castsi256_si128(wv))));
      a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(xv, 1)),
                                                  _mm256_cvtepi8_epi16(_mm256_extracti128_si256(wv, 1))));
    }
    std::int32_t s = x86::hsum(_mm256_add_epi32(a0, a1));
    for (; k < k1; ++k) s += std::int32_t{val[k]} * std::int32_t{x[col[k]]};
    y[i] = s;
  }
}

SHRINK_TARGET_AVX2 inline void spmv_rows_avx2(const sparse_plan_int8& p, const std::int8_t* x, std::int32_t* y,
                                              index_t r0, index_t r1) {
  if (p.run % 4 == 0) return spmv_runs4_avx2(p, x, y, r0, r1);
  const std::uint32_t* col = p.col.data();
  const std::int8_t* val = p.values.data();
  for (index_t i = r0; i < r1; ++i) {
    index_t k = p.row_ptr[static_cast<std::size_t>(i)];
    const index_t k1 = p.row_ptr[static_cast<std::size_t>(i) + 1];
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    for (; k + 32 <= k1; k += 32) {
      const __m256i x0 = _mm256_cvtepi8_epi16(x16_avx2(x, col + k));
      const __m256i x1 = _mm256_cvtepi8_epi16(x16_avx2(x, col + k + 16));
      const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(val + k)));
      const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(val + k + 16)));
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(x0, w0));
      a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(x1, w1));
    }
    if (k + 16 <= k1) {
      const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(val + k)));
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(x16_avx2(x, col + k)), w0));
      k += 16;
    }
    std::int32_t s = x86::hsum(_mm256_add_epi32(a0, a1));
    for (; k < k1; ++k) s += std::int32_t{val[k]} * std::int32_t{x[col[k]]};
    y[i] = s;
  }
}

// SpMM: two entries at a time. Their X rows (16 columns, sign-extended to int16) are
// interleaved so vpmaddwd forms w1·x1[b] + w2·x2[b] per 32-bit lane, exactly. Unpacking
// works inside 128-bit lanes, so `lo` holds columns 0-3 | 8-11 and `hi` 4-7 | 12-15; one
// vperm2i128 pair restores the order at the store. A tile is H·16 columns; 64 columns
// (H = 4, 8 accumulators) per pass over the row's entries, so the per-pair work (two
// column loads, the weight pair, the prefetches) is paid once per 64 columns: 4096² s90
// × 64 went 4.84 → 3.33 ms against H = 2 (benchmarks/results/sparse.md, run 10). Putting
// columns 32-63 on a vpmaddubsw route instead (byte-interleaved X, |x| and sign, even/odd
// widening), so the two halves use different pipes, was slower: 3.8 ms.
SHRINK_ALWAYS_INLINE std::int32_t pair_weights(std::int8_t w1, std::int8_t w2) noexcept {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<std::uint16_t>(std::int16_t{w1})) |
                                   (static_cast<std::uint32_t>(static_cast<std::uint16_t>(std::int16_t{w2})) << 16));
}

template <int H>
SHRINK_TARGET_AVX2 inline void tile_avx2(const std::uint32_t* col, const std::int8_t* val, index_t n,
                                         const std::int8_t* x, index_t ldx, std::int32_t* y) {
  __m256i lo[H], hi[H];
#pragma GCC unroll 8
  for (int h = 0; h < H; ++h) lo[h] = hi[h] = _mm256_setzero_si256();
  for (index_t k = 0; k < n; k += 2) {
    const bool pair = k + 1 < n;
    const std::int8_t* x1 = x + col[k] * ldx;
    const std::int8_t* x2 = pair ? x + col[k + 1] * ldx : x1;
    const __m256i wp = _mm256_set1_epi32(pair_weights(val[k], pair ? val[k + 1] : std::int8_t{0}));
    // X rows are random L2 accesses: narrow tiles fetch the pair 8 entries ahead. The
    // 64-column tile is faster without it (s90 x64: 3.55 against 3.8-3.95 ms, s50 17.0-17.7
    // against 18.9-19.4, three alternating runs): it spends longer per pair.
    if (H < 4 && k + 9 < n) {
      _mm_prefetch(reinterpret_cast<const char*>(x + col[k + 8] * ldx), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(x + col[k + 9] * ldx), _MM_HINT_T0);
    }
#pragma GCC unroll 8
    for (int h = 0; h < H; ++h) {
      const __m256i a = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x1 + 16 * h)));
      const __m256i b = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x2 + 16 * h)));
      lo[h] = _mm256_add_epi32(lo[h], _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), wp));
      hi[h] = _mm256_add_epi32(hi[h], _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), wp));
    }
  }
#pragma GCC unroll 8
  for (int h = 0; h < H; ++h) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + 16 * h), _mm256_permute2x128_si256(lo[h], hi[h], 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + 16 * h + 8), _mm256_permute2x128_si256(lo[h], hi[h], 0x31));
  }
}

// SpMM, four entries at a time, when X holds no −128 (the common case: symmetric int8
// activations are in [−127, 127]). The four X rows are interleaved bytewise (vpunpck*bw,
// then *wd), so each 32-bit lane holds (x1, x2, x3, x4)[b] for one column b; the weights
// (w1, w2, w3, w4) are one broadcast dword. vpmaddubsw(|w|, x·sign(w)) then forms
// w1·x1 + w2·x2 and w3·x3 + w4·x4 exactly (|w| ≤ 128 as an unsigned byte, |x| ≤ 127 after
// vpsignb — which would wrap −128 — so pairs ≤ 2·128·127 = 32512), and vpmaddwd(·, 1) adds
// the two into int32. Per entry and 32 columns: 2 unpacks, 1 vpsignb, 1 vpmaddubsw,
// 1 vpmaddwd, 1 add (6 ops) against the pair tile's 8 (2 vpmovsxbw, 2 unpacks, 2 vpmaddwd,
// 2 adds). 4096² s90 × 64 with aligned X: 1.68 against 1.91 ns per entry, 1.40 against
// 1.80 with X in L1 (benchmarks/results/sparse.md, run 12). Lane L of acc[4h + j] holds
// columns 32h + 16L + 4j .. + 3; vperm2i128 pairs restore the order at the store. A row's
// last 1-3 entries form a quad with zero weights.
template <int H>
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE void quad_step_avx2(__m256i* acc, const std::int8_t* x1, const std::int8_t* x2,
                                                          const std::int8_t* x3, const std::int8_t* x4,
                                                          std::int32_t weights) {
  const __m256i wpat = _mm256_set1_epi32(weights), apat = _mm256_abs_epi8(wpat), ones = _mm256_set1_epi16(1);
#pragma GCC unroll 2
  for (int h = 0; h < H; ++h) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1 + 32 * h));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x2 + 32 * h));
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x3 + 32 * h));
    const __m256i d = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x4 + 32 * h));
    const __m256i ab0 = _mm256_unpacklo_epi8(a, b), ab1 = _mm256_unpackhi_epi8(a, b);
    const __m256i cd0 = _mm256_unpacklo_epi8(c, d), cd1 = _mm256_unpackhi_epi8(c, d);
    const __m256i q[4] = {_mm256_unpacklo_epi16(ab0, cd0), _mm256_unpackhi_epi16(ab0, cd0),
                          _mm256_unpacklo_epi16(ab1, cd1), _mm256_unpackhi_epi16(ab1, cd1)};
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j)
      acc[4 * h + j] = _mm256_add_epi32(
          acc[4 * h + j], _mm256_madd_epi16(_mm256_maddubs_epi16(apat, _mm256_sign_epi8(q[j], wpat)), ones));
  }
}

template <int H>
SHRINK_TARGET_AVX2 inline void quad_tile_avx2(const std::uint32_t* col, const std::int8_t* val, index_t n,
                                              const std::int8_t* x, index_t ldx, std::int32_t* y) {
  __m256i acc[4 * H];
#pragma GCC unroll 8
  for (int i = 0; i < 4 * H; ++i) acc[i] = _mm256_setzero_si256();
  index_t k = 0;
  for (; k + 4 <= n; k += 4) {
    std::int32_t weights;
    std::memcpy(&weights, val + k, 4);
    quad_step_avx2<H>(acc, x + col[k] * ldx, x + col[k + 1] * ldx, x + col[k + 2] * ldx, x + col[k + 3] * ldx,
                      weights);
  }
  if (k < n) {
    std::int8_t w4[4] = {0, 0, 0, 0};
    const std::int8_t* xr[4];
    for (index_t j = 0; j < 4; ++j) {
      xr[j] = x + col[k + j < n ? k + j : k] * ldx;
      if (k + j < n) w4[j] = val[k + j];
    }
    std::int32_t weights;
    std::memcpy(&weights, w4, 4);
    quad_step_avx2<H>(acc, xr[0], xr[1], xr[2], xr[3], weights);
  }
#pragma GCC unroll 2
  for (int h = 0; h < H; ++h) {
    __m256i* out = reinterpret_cast<__m256i*>(y + 32 * h);
    _mm256_storeu_si256(out, _mm256_permute2x128_si256(acc[4 * h], acc[4 * h + 1], 0x20));
    _mm256_storeu_si256(out + 1, _mm256_permute2x128_si256(acc[4 * h + 2], acc[4 * h + 3], 0x20));
    _mm256_storeu_si256(out + 2, _mm256_permute2x128_si256(acc[4 * h], acc[4 * h + 1], 0x31));
    _mm256_storeu_si256(out + 3, _mm256_permute2x128_si256(acc[4 * h + 2], acc[4 * h + 3], 0x31));
  }
}

/// True when some X[r, b] (r < rows, b < batch) is −128.
SHRINK_TARGET_AVX2 inline bool has_min_avx2(const std::int8_t* x, index_t ldx, index_t rows, index_t batch) {
  const __m256i m = _mm256_set1_epi8(-128);
  for (index_t r = 0; r < rows; ++r) {
    const std::int8_t* xr = x + r * ldx;
    __m256i hit = _mm256_setzero_si256();
    index_t b = 0;
    for (; b + 32 <= batch; b += 32)
      hit = _mm256_or_si256(hit, _mm256_cmpeq_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr + b)), m));
    // vpmovmskb, not vptest: SIMDe 0.7.4's _mm256_testz_si256 (the emulated test build)
    // reports zero for a register whose only set bit is in the top byte.
    if (_mm256_movemask_epi8(hit) != 0) return true;
    for (; b < batch; ++b)
      if (xr[b] == -128) return true;
  }
  return false;
}

SHRINK_TARGET_AVX2 inline void rows_avx2(const sparse_plan_int8& p, const std::int8_t* x, index_t ldx, std::int32_t* y,
                                         index_t ldy, index_t batch, index_t r0, index_t r1, bool x_has_min) {
  if (batch == 1 && ldx == 1) return spmv_rows_avx2(p, x, y, r0, r1);
  sparse_detail::for_each_row(p, r0, r1, [&](const std::uint32_t* col, const std::int8_t* val, index_t n, index_t i) {
    std::int32_t* yr = y + i * ldy;
    index_t b = 0;
    if (!x_has_min) {
      for (; b + 64 <= batch; b += 64) quad_tile_avx2<2>(col, val, n, x + b, ldx, yr + b);
      for (; b + 32 <= batch; b += 32) quad_tile_avx2<1>(col, val, n, x + b, ldx, yr + b);
    }
    for (; b + 64 <= batch; b += 64) tile_avx2<4>(col, val, n, x + b, ldx, yr + b);
    for (; b + 32 <= batch; b += 32) tile_avx2<2>(col, val, n, x + b, ldx, yr + b);
    for (; b + 16 <= batch; b += 16) tile_avx2<1>(col, val, n, x + b, ldx, yr + b);
    scalar_columns(col, val, n, x, ldx, yr, b, batch);
  });
}

// SIMDe 0.7.4 (the emulated test build) defines its _mm512_madd_epi16 alias with the masked
// form's four parameters; its simde_ function has the right two.
#if defined(SHRINK_EMULATE_AVX512)
#define SHRINK_SPARSE_MADD512 simde_mm512_madd_epi16
#else
#define SHRINK_SPARSE_MADD512 _mm512_madd_epi16
#endif

// ---- avx512: the same pairing on 32 columns per register; unpacking inside 128-bit lanes
// leaves lane L of `lo` with columns 8L..8L+3 and of `hi` with 8L+4..8L+7, reordered
// through memory at the store (once per row tile).
template <int H>
SHRINK_TARGET_AVX512 inline void tile_avx512(const std::uint32_t* col, const std::int8_t* val, index_t n,
                                             const std::int8_t* x, index_t ldx, std::int32_t* y) {
  __m512i lo[H], hi[H];
#pragma GCC unroll 8
  for (int h = 0; h < H; ++h) lo[h] = hi[h] = _mm512_setzero_si512();
  for (index_t k = 0; k < n; k += 2) {
    const bool pair = k + 1 < n;
    const std::int8_t* x1 = x + col[k] * ldx;
    const std::int8_t* x2 = pair ? x + col[k + 1] * ldx : x1;
    const __m512i wp = _mm512_set1_epi32(pair_weights(val[k], pair ? val[k + 1] : std::int8_t{0}));
    if (k + 9 < n) {
      _mm_prefetch(reinterpret_cast<const char*>(x + col[k + 8] * ldx), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(x + col[k + 9] * ldx), _MM_HINT_T0);
    }
#pragma GCC unroll 8
    for (int h = 0; h < H; ++h) {
      const __m512i a = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1 + 32 * h)));
      const __m512i b = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x2 + 32 * h)));
      lo[h] = _mm512_add_epi32(lo[h], SHRINK_SPARSE_MADD512(_mm512_unpacklo_epi16(a, b), wp));
      hi[h] = _mm512_add_epi32(hi[h], SHRINK_SPARSE_MADD512(_mm512_unpackhi_epi16(a, b), wp));
    }
  }
#pragma GCC unroll 8
  for (int h = 0; h < H; ++h) {
    alignas(64) std::int32_t l[16], u[16];
    _mm512_store_si512(l, lo[h]);
    _mm512_store_si512(u, hi[h]);
    for (int lane = 0; lane < 4; ++lane)
      for (int j = 0; j < 4; ++j) {
        y[32 * h + 8 * lane + j] = l[4 * lane + j];
        y[32 * h + 8 * lane + 4 + j] = u[4 * lane + j];
      }
  }
}

SHRINK_TARGET_AVX512 inline void rows_avx512(const sparse_plan_int8& p, const std::int8_t* x, index_t ldx,
                                             std::int32_t* y, index_t ldy, index_t batch, index_t r0, index_t r1,
                                             bool /*x_has_min*/) {
  if (batch == 1 && ldx == 1) return spmv_rows_avx2(p, x, y, r0, r1);
  sparse_detail::for_each_row(p, r0, r1, [&](const std::uint32_t* col, const std::int8_t* val, index_t n, index_t i) {
    std::int32_t* yr = y + i * ldy;
    index_t b = 0;
    for (; b + 64 <= batch; b += 64) tile_avx512<2>(col, val, n, x + b, ldx, yr + b);
    for (; b + 32 <= batch; b += 32) tile_avx512<1>(col, val, n, x + b, ldx, yr + b);
    for (; b + 16 <= batch; b += 16) tile_avx2<1>(col, val, n, x + b, ldx, yr + b);
    scalar_columns(col, val, n, x, ldx, yr, b, batch);
  });
}
#endif

inline const std::array<implementation<rows_fn>, SHRINK_HAS_X86_PATHS ? 4 : 2> k_rows{{
    {isa::reference, 0, rows_reference},
    {isa::generic, 0, rows_generic},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, rows_avx2},
    {isa::avx512, 0, rows_avx512},
#endif
}};

}  // namespace spmm_int8_impl

// ---- batch-1 int8 plans (make_spmv_plan of csr_int8): exact int32 sums on every path.
namespace spmv_int8_impl {

using rows_fn = void (*)(const spmv_plan_int8&, const std::int8_t*, std::int32_t*, index_t, index_t);

/// One delta8 escape row: n u32 columns (little-endian), then n int8 values.
inline std::int32_t escape_row(const std::uint8_t* b, index_t n, const std::int8_t* x) {
  std::int32_t s = 0;
  for (index_t k = 0; k < n; ++k) {
    const std::uint32_t c = std::uint32_t{b[4 * k]} | std::uint32_t{b[4 * k + 1]} << 8 |
                            std::uint32_t{b[4 * k + 2]} << 16 | std::uint32_t{b[4 * k + 3]} << 24;
    s += std::int32_t{static_cast<std::int8_t>(b[4 * n + k])} * std::int32_t{x[c]};
  }
  return s;
}

/// Row i of a delta8 plan: its stream bytes and entry count n (2 bytes per entry), or
/// nullptr once an escape row (u32 columns, 5 bytes per entry) has been summed into y[i].
SHRINK_ALWAYS_INLINE const std::uint8_t* delta8_row(const spmv_plan_int8& p, index_t i, const std::int8_t* x,
                                                    std::int32_t* y, index_t& n) {
  const auto r = static_cast<std::size_t>(i);
  const std::uint8_t* b = p.stream.data() + p.row_ptr[r];
  const auto bytes = static_cast<index_t>(p.row_ptr[r + 1] - p.row_ptr[r]);
  if (p.escape[r] != 0) {
    y[i] = escape_row(b, bytes / 5, x);
    return nullptr;
  }
  n = bytes / 2;
  return b;
}

/// window16: adds block b's residual entries (those past their row's slots in a spilled
/// window) into sum[row in block], then writes the block's rows that fall in [r0, r1).
/// One flat residual list per block: no loop per row. Shared by every path.
inline void window16_finish(const spmv_plan_int8& p, const std::int8_t* x, index_t b, index_t r0, index_t r1,
                            std::int32_t* sum, std::int32_t* y) {
  const std::uint32_t k1 = p.win.res_ptr[static_cast<std::size_t>(b) + 1];
  for (std::uint32_t k = p.win.res_ptr[static_cast<std::size_t>(b)]; k < k1; ++k)
    sum[p.win.res_row[k]] += std::int32_t{p.win.res_val[k]} * std::int32_t{x[p.win.res_col[k]]};
  const index_t rb = sparse_detail::k_pass_slots / p.win.slots;
  for (index_t r = 0; r < rb; ++r)
    if (b * rb + r >= r0 && b * rb + r < r1) y[b * rb + r] = sum[r];
}

/// window16: the sums of row block b (rows b·R ..), R = 64 / S, written for rows in [r0, r1).
inline void window16_block_reference(const spmv_plan_int8& p, const std::int8_t* x, std::int32_t* y, index_t b,
                                     index_t r0, index_t r1) {
  const index_t s = p.win.slots;
  std::int32_t sum[sparse_detail::k_pass_slots / 2] = {};
  for (std::uint32_t q = p.win.block_ptr[static_cast<std::size_t>(b)]; q < p.win.block_ptr[static_cast<std::size_t>(b) + 1];
       ++q) {
    const std::uint8_t* pass = p.win.passes.data() + std::size_t{q} * sparse_detail::k_pass_bytes;
    const std::int8_t* xw = x + p.win.window[q];
    for (index_t slot = 0; slot < sparse_detail::k_pass_slots; ++slot) {
      const auto v = static_cast<std::int8_t>(pass[sparse_detail::k_pass_slots + slot]);
      if (v != 0) sum[slot / s] += std::int32_t{v} * std::int32_t{xw[pass[slot]]};  // unused slots hold 0
    }
  }
  window16_finish(p, x, b, r0, r1, sum, y);
}

/// The row blocks of a window16 plan that rows [r0, r1) touch.
inline void window16_blocks(const spmv_plan_int8& p, index_t r0, index_t r1, index_t& b0, index_t& b1) {
  const index_t rb = sparse_detail::k_pass_slots / p.win.slots;
  b0 = r0 / rb;
  b1 = (r1 + rb - 1) / rb;
}

inline void rows_reference(const spmv_plan_int8& p, const std::int8_t* x, std::int32_t* y, index_t r0, index_t r1) {
  if (p.layout == spmv_layout::window16) {
    index_t b0, b1;
    window16_blocks(p, r0, r1, b0, b1);
    for (index_t b = b0; b < b1; ++b) window16_block_reference(p, x, y, b, r0, r1);
    return;
  }
  for (index_t i = r0; i < r1; ++i) {
    if (p.layout == spmv_layout::delta8) {
      index_t n;
      const std::uint8_t* b = delta8_row(p, i, x, y, n);
      if (b == nullptr) continue;
      std::int32_t s = 0;
      std::uint32_t c = 0;
      for (index_t k = 0; k < n; k += 16) {
        const index_t t = std::min<index_t>(16, n - k);
        for (index_t e = 0; e < t; ++e) {
          c += b[sparse_detail::delta8_slot(e, t)];
          s += std::int32_t{static_cast<std::int8_t>(b[t + e])} * std::int32_t{x[c]};
        }
        b += 2 * t;
      }
      y[i] = s;
      continue;
    }
    const std::int8_t* v = p.values.data() + p.row_ptr[static_cast<std::size_t>(i)];
    std::int32_t s = 0;
    if (p.layout == spmv_layout::index32) {
      const index_t n = p.row_ptr[static_cast<std::size_t>(i) + 1] - p.row_ptr[static_cast<std::size_t>(i)];
      const std::uint32_t* c = p.col.data() + p.row_ptr[static_cast<std::size_t>(i)];
      for (index_t k = 0; k < n; ++k) s += std::int32_t{v[k]} * std::int32_t{x[c[k]]};
    } else {
      for (index_t w = 0; w < p.words; ++w)
        for (std::uint64_t q = p.bits[static_cast<std::size_t>(i * p.words + w)]; q != 0; q &= q - 1)
          s += std::int32_t{*v++} * std::int32_t{x[64 * w + std::countr_zero(q)]};
    }
    y[i] = s;
  }
}

#if SHRINK_HAS_X86_PATHS
/// Byte l of entry m: the rank of bit l among m's set bits, or 0x80 (pshufb writes 0) when
/// bit l is clear; `high` adds 8 (the second 8 bytes of the shuffled register).
struct byte_expand_table {
  alignas(8) std::uint8_t low[256][8];
  alignas(8) std::uint8_t high[256][8];
};
consteval byte_expand_table make_byte_expand_table() {
  byte_expand_table t{};
  for (int m = 0; m < 256; ++m) {
    int at = 0;
    for (int l = 0; l < 8; ++l) {
      const bool on = (m >> l & 1) != 0;
      t.low[m][l] = on ? static_cast<std::uint8_t>(at) : std::uint8_t{0x80};
      t.high[m][l] = on ? static_cast<std::uint8_t>(at + 8) : std::uint8_t{0x80};
      at += on ? 1 : 0;
    }
  }
  return t;
}
inline constexpr byte_expand_table k_byte_expand = make_byte_expand_table();

// Bitmap rows, 16 columns per step: the kept bytes of the two 8-column halves are loaded
// (8 bytes each, the second at the first half's popcount), one pshufb spreads them to
// their columns with zeros elsewhere, and vpmaddwd multiplies them with the 16 contiguous
// x bytes (sign-extended to int16) into 8 int32 lanes. Columns past the last multiple of
// 16 run scalar. No x byte outside [0, cols) is read.
SHRINK_TARGET_AVX2 inline void bitmap_avx2(const spmv_plan_int8& p, const std::int8_t* x, std::int32_t* y, index_t r0,
                                           index_t r1) {
  const index_t steps = p.cols / 16;
  for (index_t i = r0; i < r1; ++i) {
    const auto* mb = reinterpret_cast<const unsigned char*>(p.bits.data() + i * p.words);  // little-endian bytes
    const std::int8_t* v = p.values.data() + p.row_ptr[static_cast<std::size_t>(i)];
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    index_t g = 0;
    for (; g + 2 <= steps; g += 2) {
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const unsigned m0 = mb[2 * (g + h)], m1 = mb[2 * (g + h) + 1];
        const unsigned c0 = static_cast<unsigned>(_mm_popcnt_u32(m0));
        const __m128i ctrl = _mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(k_byte_expand.low[m0])),
                                                _mm_loadl_epi64(reinterpret_cast<const __m128i*>(k_byte_expand.high[m1])));
        const __m128i packed = _mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(v)),
                                                  _mm_loadl_epi64(reinterpret_cast<const __m128i*>(v + c0)));
        const __m256i w = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(packed, ctrl));
        const __m256i xv =
            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 16 * (g + h))));
        if (h == 0)
          a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(w, xv));
        else
          a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(w, xv));
        v += c0 + static_cast<unsigned>(_mm_popcnt_u32(m1));
      }
    }
    std::int32_t s = x86::hsum(_mm256_add_epi32(a0, a1));
    for (index_t j = 16 * g; j < p.cols; ++j)  // the last odd step and the columns past it
      if ((mb[j / 8] >> (j % 8)) & 1u) s += std::int32_t{*v++} * std::int32_t{x[j]};
    y[i] = s;
  }
}

SHRINK_TARGET_AVX2 inline void index32_avx2(const spmv_plan_int8& p, const std::int8_t* x, std::int32_t* y, index_t r0,
                                            index_t r1) {
  const std::uint32_t* col = p.col.data();
  const std::int8_t* val = p.values.data();
  for (index_t i = r0; i < r1; ++i) {
    index_t k = p.row_ptr[static_cast<std::size_t>(i)];
    const index_t k1 = p.row_ptr[static_cast<std::size_t>(i) + 1];
    __m256i a0 = _mm256_setzero_si256();
    for (; k + 16 <= k1; k += 16) {
      const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(val + k)));
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(spmm_int8_impl::x16_avx2(x, col + k)), w0));
    }
    std::int32_t s = x86::hsum(a0);
    for (; k < k1; ++k) s += std::int32_t{val[k]} * std::int32_t{x[col[k]]};
    y[i] = s;
  }
}

// delta8 rows, 16 entries (32 bytes) per step: two u64 loads of the steps give four u64
// of 4 u16 in-group column offsets (sparse_detail::delta8_columns), each group relative to an
// x pointer advanced by the previous group's total; the x bytes are inserted into two
// registers of 8 (two short dependency chains instead of one of 16) and joined, then
// vpmaddwd with the sign-extended values as in index32. The tail chunk runs scalar.
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE __m128i x8_bytes_avx2(const std::int8_t* xa, std::uint64_t a,
                                                             const std::int8_t* xb, std::uint64_t b) {
  __m128i v = _mm_cvtsi32_si128(static_cast<std::uint8_t>(xa[a & 0xFFFF]));
  v = _mm_insert_epi8(v, xa[(a >> 16) & 0xFFFF], 1);
  v = _mm_insert_epi8(v, xa[(a >> 32) & 0xFFFF], 2);
  v = _mm_insert_epi8(v, xa[a >> 48], 3);
  v = _mm_insert_epi8(v, xb[b & 0xFFFF], 4);
  v = _mm_insert_epi8(v, xb[(b >> 16) & 0xFFFF], 5);
  v = _mm_insert_epi8(v, xb[(b >> 32) & 0xFFFF], 6);
  return _mm_insert_epi8(v, xb[b >> 48], 7);
}

SHRINK_TARGET_AVX2 inline void delta8_avx2(const spmv_plan_int8& p, const std::int8_t* x, std::int32_t* y, index_t r0,
                                           index_t r1) {
  const std::uint64_t ones = sparse_detail::delta8_ones();
  for (index_t i = r0; i < r1; ++i) {
    index_t n;
    const std::uint8_t* b = delta8_row(p, i, x, y, n);
    if (b == nullptr) continue;
    __m256i acc = _mm256_setzero_si256();
    const std::int8_t* xc = x;  // x at the last column so far
    for (; n >= 16; n -= 16, b += 32) {
      std::uint64_t d0, d1, g0, g1, g2, g3;
      std::memcpy(&d0, b, 8);
      std::memcpy(&d1, b + 8, 8);
      sparse_detail::delta8_columns(d0, ones, g0, g1);
      sparse_detail::delta8_columns(d1, ones, g2, g3);
      const std::int8_t* x1 = xc + (g0 >> 48);
      const std::int8_t* x2 = x1 + (g1 >> 48);
      const std::int8_t* x3 = x2 + (g2 >> 48);
      const __m256i xv = _mm256_cvtepi8_epi16(_mm_unpacklo_epi64(x8_bytes_avx2(xc, g0, x1, g1), x8_bytes_avx2(x2, g2, x3, g3)));
      const __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16)));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(w, xv));
      xc = x3 + (g3 >> 48);
    }
    std::int32_t s = x86::hsum(acc);
    for (index_t e = 0; e < n; ++e) {  // the tail chunk (< 16 entries): its first 8 steps interleaved
      xc += b[sparse_detail::delta8_slot(e, n)];
      s += std::int32_t{static_cast<std::int8_t>(b[n + e])} * std::int32_t{*xc};
    }
    y[i] = s;
  }
}

// window16, one pass (64 slots: one row block, one 16-column window) per step: the
// window's 16 x bytes broadcast to both lanes, one pshufb per 32 slots fetches their x.
// |q| <= 127 (no -128 in the plan): vpmaddubsw(|x|, q·sign(x)) is exact (pairs reach
// 2·128·127 = 32512) and vpmaddwd(·, 1) folds each row's 4 consecutive slots into an int32
// lane: 5 vector ops per 32 slots. With S = 2 a vpmaddubsw pair is a whole row and
// vpmaddwd(·, 1) would add two rows, so vpmaddwd(·, (1, 0)) takes the even rows and
// vpsrad(·, 16) the odd ones (6 ops; a second vpmaddwd was 5 % slower). Full range: both sides sign-extended to int16 and vpmaddwd (a
// lane holds 2 slots), 8 ops. A block's passes of a partial last window (cols not a
// multiple of 16) come last (windows ascend) and read a zero-padded copy, so no x byte
// past cols is read. Lanes are folded into rows once per block, plus the residual.
template <bool Full, bool Pairs>
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE void window16_pass(const std::int8_t* xw, const std::uint8_t* pass,
                                                           __m256i (&acc)[4]) {
  const __m256i xv = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xw)));
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __m256i xg = _mm256_shuffle_epi8(xv, _mm256_load_si256(reinterpret_cast<const __m256i*>(pass + 32 * h)));
    const std::uint8_t* v = pass + sparse_detail::k_pass_slots + 32 * h;
    if constexpr (Full) {
      const __m256i v0 = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(v)));
      const __m256i v1 = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(v + 16)));
      acc[2 * h] = _mm256_add_epi32(acc[2 * h], _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(xg)), v0));
      acc[2 * h + 1] =
          _mm256_add_epi32(acc[2 * h + 1], _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(xg, 1)), v1));
    } else {
      const __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(v));
      const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(xg), _mm256_sign_epi8(q, xg));
      if constexpr (Pairs) {
        acc[2 * h] = _mm256_add_epi32(acc[2 * h], _mm256_madd_epi16(pairs, _mm256_set1_epi32(1)));
        acc[2 * h + 1] = _mm256_add_epi32(acc[2 * h + 1], _mm256_srai_epi32(pairs, 16));
      } else {
        acc[h] = _mm256_add_epi32(acc[h], _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
      }
    }
  }
}

template <int S, bool Full>
SHRINK_TARGET_AVX2 inline void window16_avx2(const spmv_plan_int8& p, const std::int8_t* x, std::int32_t* y,
                                             index_t r0, index_t r1) {
  constexpr index_t rb = sparse_detail::k_pass_slots / S;
  constexpr bool pairs = S == 2 && !Full;     // acc = even rows, odd rows of each 32-slot half
  constexpr index_t per_lane = Full ? 2 : 4;  // otherwise: slots summed in one int32 lane
  const auto whole = static_cast<std::uint32_t>(p.cols / sparse_detail::k_window * sparse_detail::k_window);
  alignas(16) std::int8_t tail[sparse_detail::k_window] = {};
  std::copy(x + whole, x + p.cols, tail);
  index_t b0, b1;
  window16_blocks(p, r0, r1, b0, b1);
  const std::uint8_t* passes = p.win.passes.data();
  const std::uint32_t* window = p.win.window.data();
  for (index_t b = b0; b < b1; ++b) {
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    std::uint32_t q = p.win.block_ptr[static_cast<std::size_t>(b)], q1 = p.win.block_ptr[static_cast<std::size_t>(b) + 1];
    std::uint32_t qt = q1;  // the passes of a partial last window are the block's last
    while (qt > q && window[qt - 1] >= whole) --qt;
    for (; q < qt; ++q)
      window16_pass<Full, pairs>(x + window[q], passes + std::size_t{q} * sparse_detail::k_pass_bytes, acc);
    for (; q < q1; ++q) window16_pass<Full, pairs>(tail, passes + std::size_t{q} * sparse_detail::k_pass_bytes, acc);
    alignas(32) std::int32_t lane[32];
#pragma GCC unroll 4
    for (int a = 0; a < 4; ++a) _mm256_store_si256(reinterpret_cast<__m256i*>(lane + 8 * a), acc[a]);
    std::int32_t sum[rb] = {};
    for (index_t r = 0; r < rb; ++r) {
      if constexpr (pairs) {  // row 16h + 2l + odd sits in lane l of acc[2h + odd]
        sum[r] = lane[8 * (2 * (r / 16) + r % 2) + (r % 16) / 2];
      } else {
        for (index_t l = r * S / per_lane; l < (r + 1) * S / per_lane; ++l) sum[r] += lane[l];
      }
    }
    window16_finish(p, x, b, r0, r1, sum, y);
  }
}

SHRINK_TARGET_AVX2 inline void rows_avx2(const spmv_plan_int8& p, const std::int8_t* x, std::int32_t* y, index_t r0,
                                         index_t r1) {
  if (p.layout == spmv_layout::window16) {
    const bool full = p.win.full_range;
    switch (p.win.slots) {
      case 2: return full ? window16_avx2<2, true>(p, x, y, r0, r1) : window16_avx2<2, false>(p, x, y, r0, r1);
      case 4: return full ? window16_avx2<4, true>(p, x, y, r0, r1) : window16_avx2<4, false>(p, x, y, r0, r1);
      case 8: return full ? window16_avx2<8, true>(p, x, y, r0, r1) : window16_avx2<8, false>(p, x, y, r0, r1);
      default: return full ? window16_avx2<16, true>(p, x, y, r0, r1) : window16_avx2<16, false>(p, x, y, r0, r1);
    }
  }
  if (p.layout == spmv_layout::bitmap) return bitmap_avx2(p, x, y, r0, r1);
  if (p.layout == spmv_layout::delta8) return delta8_avx2(p, x, y, r0, r1);
  index32_avx2(p, x, y, r0, r1);
}
#endif

// generic = the scalar rows (integer sums are exact in any order; the work is the x access).
inline const std::array<implementation<rows_fn>, SHRINK_HAS_X86_PATHS ? 4 : 2> k_rows{{
    {isa::reference, 0, rows_reference},
    {isa::generic, 0, rows_reference},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, rows_avx2},
    {isa::avx512, 0, rows_avx2},
#endif
}};

}  // namespace spmv_int8_impl

/// y = W·x for an int8 plan (make_plan of csr_int8) and int8 activations; exact int32
/// sums Σ q·x (apply row_scale and the activation scale afterwards).
inline void spmv(const sparse_plan_int8& w, std::span<const std::int8_t> x, std::span<std::int32_t> y,
                 const context& ctx = {}) {
  sparse_detail::check_spmv(w.rows, w.cols, x.size(), y.size());
  const auto fn = select(spmm_int8_impl::k_rows);
  sparse_detail::for_row_ranges(ctx, w,
                                [&](index_t r0, index_t r1) { fn(w, x.data(), 1, y.data(), 1, 1, r0, r1, true); });
}

/// Y = W·X, X int8 [K, batch], Y int32 [N, batch], rows contiguous.
inline void spmm(const sparse_plan_int8& w, const_view<std::int8_t, 2> x, tensor_view<std::int32_t, 2> y,
                 const context& ctx = {}) {
  if (!sparse_detail::check_spmm(w.rows, w.cols, x, y)) return;
  const auto fn = select(spmm_int8_impl::k_rows);
  // Only the AVX2 quad tiles (32 or more columns) care whether X holds −128.
  bool x_has_min = true;
#if SHRINK_HAS_X86_PATHS
  if (fn == &spmm_int8_impl::rows_avx2 && x.extent(1) >= 32)
    x_has_min = spmm_int8_impl::has_min_avx2(x.data(), x.stride(0), x.extent(0), x.extent(1));
#endif
  sparse_detail::for_row_ranges(ctx, w, [&](index_t r0, index_t r1) {
    fn(w, x.data(), x.stride(0), y.data(), y.stride(0), x.extent(1), r0, r1, x_has_min);
  });
}

/// y = W·x for a batch-1 int8 plan (make_spmv_plan of csr_int8): exact int32 Σ q·x.
inline void spmv(const spmv_plan_int8& w, std::span<const std::int8_t> x, std::span<std::int32_t> y,
                 const context& ctx = {}) {
  sparse_detail::check_spmv(w.rows, w.cols, x.size(), y.size());
  const auto fn = select(spmv_int8_impl::k_rows);
  const index_t parts = std::min<index_t>(ctx.resolved_threads(), std::max<index_t>(w.rows, 1));
  if (parts <= 1) return fn(w, x.data(), y.data(), 0, w.rows);
  // window16 splits whole row blocks, balanced by passes; the other layouts rows, by entries.
  const bool blocked = w.layout == spmv_layout::window16;
  const index_t rb = blocked ? sparse_detail::k_pass_slots / w.win.slots : 1;
  const auto cost = blocked ? w.win.block_ptr.span() : w.row_ptr.span();
  const index_t units = blocked ? static_cast<index_t>(cost.size()) - 1 : w.rows;
  parallel_for(ctx, 0, parts, 1, [&](index_t b, index_t e) {
    for (index_t part = b; part < e; ++part) {
      const index_t r0 = std::min(w.rows, rb * sparse_detail::balanced_row(cost, units, part, parts));
      const index_t r1 = std::min(w.rows, rb * sparse_detail::balanced_row(cost, units, part + 1, parts));
      if (r0 < r1) fn(w, x.data(), y.data(), r0, r1);
    }
  });
}

}  // namespace shrink::kernels
