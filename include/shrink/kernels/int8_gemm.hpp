// int8_gemm.hpp: u8·s8 (and s8·s8) int8 GEMM and GEMV over packed_s8_weights, exact on every ISA path, with raw/requantized/dequantized output stages.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <utility>

#include <xsimd/xsimd.hpp>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor_view.hpp"
#include "dispatch.hpp"
#include "int8_pack.hpp"
#include "output_stage.hpp"

namespace shrink::kernels {

namespace int8_detail {

/// One micro-kernel call: acc[r][c] = Σ_q Σ_j a[r][4q+j] · panel[q][c][j] for r < rows
/// (wrapping int32), c < 16. `a` rows are `a_stride` bytes apart, u8 (or s16 when the
/// kernel says a_s16). docs/kernels.md derives each path's register blocking.
using tile_fn = void (*)(const std::uint8_t* a, index_t a_stride, index_t rows, const std::int8_t* panel,
                         index_t quads, std::int32_t* acc);

/// M = 1 (GEMV) over one panel: acc[c] = Σ_q Σ_j a[4q+j] · panel[q][c][j], same contract
/// as tile_fn with rows = 1. Null when the path's tile is already the best GEMV.
using gemv_fn = void (*)(const std::uint8_t* a, const std::int8_t* panel, index_t quads, std::int32_t* acc);

/// Two adjacent panels at once (32 outputs): the same sums as two tile_fn calls, with
/// panel 1 at panel0 + panel_stride bytes and acc laid out as [panel][row][16].
using tile_pair_fn = void (*)(const std::uint8_t* a, index_t a_stride, index_t rows, const std::int8_t* panel0,
                              index_t panel_stride, index_t quads, std::int32_t* acc);

/// Widens `quads` quads of a panel (64 bytes each) into the s16 depth-pair layout the
/// wide kernel reads: pair t (depths 2t, 2t+1) is 32 int16, output c's two weights at
/// [2c, 2c+2) (docs/kernels.md, "AVX2: widened panel chunks").
using widen_fn = void (*)(const std::int8_t* panel, index_t quads, std::int16_t* wide);

/// acc[r][c] (+)= Σ_t a[r][2t]·wide[t][c][0] + a[r][2t+1]·wide[t][c][1] for r < rows, c < 16;
/// `a` is int16, rows `a_stride` elements apart; `add` keeps what acc holds (K chunks).
using wide_fn = void (*)(const std::int16_t* a, index_t a_stride, index_t rows, const std::int16_t* wide,
                         index_t pairs, std::int32_t* acc, bool add);

struct tile_kernel {
  tile_fn fn;
  index_t mr;  ///< rows per call (register blocking)
  bool a_s16;  ///< activations pre-widened to int16 (AVX2 vpmaddwd path)
  gemv_fn gemv = nullptr;  ///< dedicated M = 1 kernel, if any
  tile_pair_fn pair = nullptr;  ///< two-panel kernel, if any (used for M > 1 where two panels remain)
  index_t mr_pair = 0;          ///< rows per call of `pair`
  widen_fn widen = nullptr;     ///< with `wide`: panels widened once per K chunk (AVX2, M >= k_wide_min_rows)
  wide_fn wide = nullptr;
  index_t mr_wide = 0;          ///< rows per call of `wide` and of `u7`
  tile_fn u7 = nullptr;         ///< u8 activations all <= 127 (exact vpmaddubsw), M >= 2
};

inline constexpr index_t k_max_mr = 8;
/// Largest accumulator block any kernel writes: 12 rows × 2 panels × 16 outputs.
inline constexpr index_t k_max_acc = 12 * 32;

/// Calls f(std::integral_constant<int, R>) with R = min(rows, Max), rows >= 1: the one place
/// that turns a run-time row count into a micro-kernel's compile-time register blocking.
template <int Max, class F>
SHRINK_ALWAYS_INLINE void with_rows(index_t rows, F&& f) {
  if constexpr (Max > 1)
    if (rows < Max) return with_rows<Max - 1>(rows, std::forward<F>(f));
  f(std::integral_constant<int, Max>{});
}

// ---- reference: the oracle, scalar, wrapping arithmetic as every int32 lane.
inline void tile_reference(const std::uint8_t* a, index_t a_stride, index_t rows, const std::int8_t* panel,
                           index_t quads, std::int32_t* acc) {
  for (index_t r = 0; r < rows; ++r) {
    const std::uint8_t* ar = a + r * a_stride;
    for (index_t c = 0; c < 16; ++c) {
      std::uint32_t sum = 0;
      for (index_t q = 0; q < quads; ++q)
        for (index_t j = 0; j < 4; ++j)
          sum += static_cast<std::uint32_t>(ar[4 * q + j]) *
                 static_cast<std::uint32_t>(static_cast<std::int32_t>(panel[q * 64 + 4 * c + j]));
      acc[r * 16 + c] = static_cast<std::int32_t>(sum);
    }
  }
}

// ---- generic (xsimd): an int32 lane holds one output's 4 depth bytes; the bytes are
// sign-extended by shifting left then arithmetically right, and multiplied by the
// broadcast activations. Works for any batch width that divides 16 (4, 8, 16 lanes).
inline void tile_generic(const std::uint8_t* a, index_t a_stride, index_t rows, const std::int8_t* panel,
                         index_t quads, std::int32_t* acc) {
  using b32 = xsimd::batch<std::int32_t>;
  constexpr index_t w = static_cast<index_t>(b32::size);
  constexpr index_t parts = 16 / w;
  static_assert(16 % w == 0, "int8 generic tile: batch width must divide 16");
  for (index_t r = 0; r < rows; ++r) {
    const std::uint8_t* ar = a + r * a_stride;
    std::array<b32, parts> s;
    for (auto& v : s) v = b32(0);
    for (index_t q = 0; q < quads; ++q) {
      const b32 a0(ar[4 * q]), a1(ar[4 * q + 1]), a2(ar[4 * q + 2]), a3(ar[4 * q + 3]);
      const auto* wq = reinterpret_cast<const std::int32_t*>(panel + q * 64);
      for (index_t j = 0; j < parts; ++j) {
        const b32 x = b32::load_unaligned(wq + j * w);
        s[static_cast<std::size_t>(j)] +=
            ((x << 24) >> 24) * a0 + ((x << 16) >> 24) * a1 + ((x << 8) >> 24) * a2 + (x >> 24) * a3;
      }
    }
    for (index_t j = 0; j < parts; ++j) s[static_cast<std::size_t>(j)].store_unaligned(acc + r * 16 + j * w);
  }
}

#if SHRINK_HAS_X86_PATHS
// ---- avx2, exact: weights widened s8→s16 (vpmovsxbw), activations pre-widened u8→s16,
// vpmaddwd sums two 16-bit products into int32 without saturation (|255·128·2| < 2^31).
// vpmaddubsw would saturate (255·127·2 > 32767) and is never used. One ymm covers 4
// outputs × 4 depth: lane 2c holds output c's depths {0,1}, lane 2c+1 depths {2,3}; the
// activation quad is broadcast as 64 bits. 2 rows × 4 ymm = 8 accumulators: with 3 rows
// (12 + 4 weights + 3 broadcasts > 16 ymm) GCC spilled accumulators every step.
template <int R>
SHRINK_TARGET_AVX2 inline void tile_avx2_rows(const std::uint8_t* a, index_t a_stride, const std::int8_t* panel,
                                               index_t quads, std::int32_t* acc) {
  __m256i s[R][4];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 8
    for (int j = 0; j < 4; ++j) s[r][j] = _mm256_setzero_si256();
  // 12 accumulators + 3 broadcasts + 1 weight register = 16 ymm: weights are widened one
  // 16-byte group at a time so nothing spills.
  for (index_t q = 0; q < quads; ++q) {
    const auto* wp = reinterpret_cast<const __m128i*>(panel + q * 64);
    __m256i ab[R];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      long long quad;
      std::memcpy(&quad, a + r * a_stride + q * 8, 8);
      ab[r] = _mm256_set1_epi64x(quad);
    }
    #pragma GCC unroll 8
    for (int j = 0; j < 4; ++j) {
      const __m256i wj = _mm256_cvtepi8_epi16(_mm_loadu_si128(wp + j));
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) s[r][j] = _mm256_add_epi32(s[r][j], _mm256_madd_epi16(wj, ab[r]));
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    // hadd pairs (depth {0,1} + {2,3}) → [c0 c1 c4 c5 | c2 c3 c6 c7]; 0xD8 restores order.
    const __m256i lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(s[r][0], s[r][1]), 0xD8);
    const __m256i hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(s[r][2], s[r][3]), 0xD8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * 16), lo);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * 16 + 8), hi);
  }
}

// ---- avx2 GEMV (M = 1): the whole run is one pass over W, so it is bound by how fast one
// core pulls W from DRAM. One sequential stream per panel left the core's prefetchers
// short of misses in flight (≈ 16 GB/s); here the panel's depth is cut into 4 segments read
// at once (4 streams of 32 KiB for K = 8192), each with a software prefetch 512 bytes ahead
// into L1 and one of the next panel at the same offset into L2 (≈ 20 → 26 GB/s CPU-time
// under load), all adding into the same 4 accumulators (same outputs). Exact as tile_avx2_rows.
inline constexpr index_t k_gemv_streams = 4;
inline constexpr index_t k_gemv_prefetch = 512;

SHRINK_TARGET_AVX2 inline void gemv_avx2_step(const std::int16_t* a16, const std::int8_t* wq, __m256i* s) {
  long long quad;
  std::memcpy(&quad, a16, 8);
  const __m256i ab = _mm256_set1_epi64x(quad);
  const auto* wp = reinterpret_cast<const __m128i*>(wq);
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) s[j] = _mm256_add_epi32(s[j], _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(wp + j)), ab));
}

SHRINK_TARGET_AVX2 inline void gemv_avx2(const std::uint8_t* a, const std::int8_t* panel, index_t quads,
                                         std::int32_t* acc) {
  const auto* a16 = reinterpret_cast<const std::int16_t*>(a);
  __m256i s[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
  const index_t seg = quads / k_gemv_streams;
  for (index_t q = 0; q < seg; ++q) {
#pragma GCC unroll 4
    for (index_t t = 0; t < k_gemv_streams; ++t) {
      const index_t qq = t * seg + q;
      const std::int8_t* wq = panel + qq * 64;
      _mm_prefetch(reinterpret_cast<const char*>(wq + k_gemv_prefetch), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(wq + quads * 64), _MM_HINT_T1);  // next panel, into L2
      gemv_avx2_step(a16 + 4 * qq, wq, s);
    }
  }
  for (index_t q = k_gemv_streams * seg; q < quads; ++q) gemv_avx2_step(a16 + 4 * q, panel + q * 64, s);
  const __m256i lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(s[0], s[1]), 0xD8);
  const __m256i hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(s[2], s[3]), 0xD8);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc), lo);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + 8), hi);
}

inline void tile_avx2(const std::uint8_t* a, index_t a_stride, index_t rows, const std::int8_t* panel, index_t quads,
                      std::int32_t* acc) {
  with_rows<2>(rows, [&](auto r) { tile_avx2_rows<decltype(r)::value>(a, a_stride, panel, quads, acc); });
}

// ---- avx2, widened panel chunks (M >= k_wide_min_rows). The per-quad kernel above spends
// a vpmovsxbw per 4 vpmaddwd and an 8-byte broadcast, so its multiply port idles. Here a
// chunk of k_wide_kc depths of one panel is widened to int16 once (widen_panel_avx2, into
// a 16 KiB L1-resident buffer) in a layout where one ymm holds 8 outputs × 2 depths; every
// 6-row tile of the activation block then runs pure vpbroadcastd (from memory) + vpmaddwd
// + vpaddd: 6 rows × 2 ymm = 12 accumulators + 2 weights + 1 broadcast = 15 ymm, no
// shuffle or hadd in the loop, 12 vpmaddwd per 2 weight loads + 6 broadcasts. Exact for the
// same reason as above (s16 × s16 pairs summed in int32). The widening costs one pass per
// (panel, chunk, row block), ≈ 1/60 of the multiplies for 192-row blocks.
inline constexpr index_t k_wide_kc = 512;        ///< depths per chunk (multiple of 4): 16 KiB of int16 weights
inline constexpr index_t k_wide_max_rows = 192;  ///< rows per block (the int32 accumulator block: 12 KiB)
inline constexpr index_t k_wide_min_rows = 6;    ///< below this the per-quad kernel is cheaper than widening

SHRINK_TARGET_AVX2 inline void widen_panel_avx2(const std::int8_t* panel, index_t quads, std::int16_t* wide) {
  for (index_t q = 0; q < quads; ++q) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {  // outputs 8h .. 8h+7
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + q * 64 + 32 * h));
      // Each 64-bit group is one output's 4 depths as int16: [d0 d1 | d2 d3].
      const __m256 lo = _mm256_castsi256_ps(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(b)));       // outputs 0..3
      const __m256 hi = _mm256_castsi256_ps(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(b, 1)));  // outputs 4..7
      // shufps picks the {d0 d1} (or {d2 d3}) dwords: output order 0 1 4 5 | 2 3 6 7;
      // vpermq 0xD8 restores 0..7.
      const __m256i p0 = _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8);
      const __m256i p1 = _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8);
      _mm256_store_si256(reinterpret_cast<__m256i*>(wide + (2 * q) * 32 + 16 * h), p0);
      _mm256_store_si256(reinterpret_cast<__m256i*>(wide + (2 * q + 1) * 32 + 16 * h), p1);
    }
  }
}

template <int R>
SHRINK_TARGET_AVX2 inline void tile_avx2_wide_rows(const std::int16_t* a, index_t a_stride, const std::int16_t* wide,
                                                    index_t pairs, std::int32_t* acc, bool add) {
  __m256i s0[R], s1[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    s0[r] = add ? _mm256_load_si256(reinterpret_cast<const __m256i*>(acc + r * 16)) : _mm256_setzero_si256();
    s1[r] = add ? _mm256_load_si256(reinterpret_cast<const __m256i*>(acc + r * 16 + 8)) : _mm256_setzero_si256();
  }
  for (index_t t = 0; t < pairs; ++t) {
    const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wide + t * 32));
    const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wide + t * 32 + 16));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int pair;
      std::memcpy(&pair, a + r * a_stride + 2 * t, 4);
      const __m256i ab = _mm256_set1_epi32(pair);
      s0[r] = _mm256_add_epi32(s0[r], _mm256_madd_epi16(w0, ab));
      s1[r] = _mm256_add_epi32(s1[r], _mm256_madd_epi16(w1, ab));
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(acc + r * 16), s0[r]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(acc + r * 16 + 8), s1[r]);
  }
}

inline void tile_avx2_wide(const std::int16_t* a, index_t a_stride, index_t rows, const std::int16_t* wide,
                           index_t pairs, std::int32_t* acc, bool add) {
  with_rows<6>(rows, [&](auto r) { tile_avx2_wide_rows<decltype(r)::value>(a, a_stride, wide, pairs, acc, add); });
}

// ---- avx2, activations all <= 127 (PyTorch/FBGEMM reduce_range): vpmaddubsw is exact then,
// |a0·w0 + a1·w1| <= 127·128·2 = 32512 < 32767, so one vpmaddubsw + one vpmaddwd by ones
// sum 4 depths into an int32 lane straight from the packed s8 panel (no widening; u8
// activations, half the bytes). run() checks every activation before choosing it: a single
// value >= 128 could saturate (255·127·2 > 32767) and takes the exact paths instead.
template <int R>
SHRINK_TARGET_AVX2 inline void tile_avx2_u7_rows(const std::uint8_t* a, index_t a_stride, const std::int8_t* panel,
                                                  index_t quads, std::int32_t* acc) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i s0[R], s1[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) s0[r] = s1[r] = _mm256_setzero_si256();
  for (index_t q = 0; q < quads; ++q) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + q * 64));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + q * 64 + 32));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int quad;
      std::memcpy(&quad, a + r * a_stride + 4 * q, 4);
      const __m256i ab = _mm256_set1_epi32(quad);
      s0[r] = _mm256_add_epi32(s0[r], _mm256_madd_epi16(_mm256_maddubs_epi16(ab, w0), ones));
      s1[r] = _mm256_add_epi32(s1[r], _mm256_madd_epi16(_mm256_maddubs_epi16(ab, w1), ones));
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * 16), s0[r]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * 16 + 8), s1[r]);
  }
}

inline void tile_avx2_u7(const std::uint8_t* a, index_t a_stride, index_t rows, const std::int8_t* panel,
                         index_t quads, std::int32_t* acc) {
  with_rows<6>(rows, [&](auto r) { tile_avx2_u7_rows<decltype(r)::value>(a, a_stride, panel, quads, acc); });
}

// ---- avx_vnni: vpdpbusd (u8 × s8, 4 products into one int32 lane, no saturation) on
// 256 bits: one quad of a panel is two ymm (8 outputs each); 6 rows × 2 = 12 accumulators.
template <int R>
SHRINK_TARGET_AVX_VNNI inline void tile_avx_vnni_rows(const std::uint8_t* a, index_t a_stride,
                                                       const std::int8_t* panel, index_t quads, std::int32_t* acc) {
  __m256i s[R][2];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) s[r][0] = s[r][1] = _mm256_setzero_si256();
  for (index_t q = 0; q < quads; ++q) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + q * 64));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + q * 64 + 32));
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int quad;
      std::memcpy(&quad, a + r * a_stride + q * 4, 4);
      const __m256i ab = _mm256_set1_epi32(quad);
      s[r][0] = _mm256_dpbusd_avx_epi32(s[r][0], ab, w0);
      s[r][1] = _mm256_dpbusd_avx_epi32(s[r][1], ab, w1);
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * 16), s[r][0]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * 16 + 8), s[r][1]);
  }
}

inline void tile_avx_vnni(const std::uint8_t* a, index_t a_stride, index_t rows, const std::int8_t* panel,
                          index_t quads, std::int32_t* acc) {
  with_rows<6>(rows, [&](auto r) { tile_avx_vnni_rows<decltype(r)::value>(a, a_stride, panel, quads, acc); });
}

// ---- avx512_vnni: one quad of a panel is exactly one zmm (16 outputs × 4 depth bytes);
// 8 rows = 8 accumulators, each weight load feeds 8 vpdpbusd.
template <int R>
SHRINK_TARGET_AVX512_VNNI inline void tile_avx512_vnni_rows(const std::uint8_t* a, index_t a_stride,
                                                             const std::int8_t* panel, index_t quads,
                                                             std::int32_t* acc) {
  __m512i s[R];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) s[r] = _mm512_setzero_si512();
  for (index_t q = 0; q < quads; ++q) {
    const __m512i w = _mm512_loadu_si512(panel + q * 64);
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int quad;
      std::memcpy(&quad, a + r * a_stride + q * 4, 4);
      s[r] = _mm512_dpbusd_epi32(s[r], _mm512_set1_epi32(quad), w);
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) _mm512_storeu_si512(acc + r * 16, s[r]);
}

// ---- avx512_vnni, two panels: 12 rows × 2 zmm = 24 accumulators (vpdpbusd has a 5-cycle
// latency and two ports, so at least 10 independent chains are needed); each quad costs 2
// weight loads + 12 broadcast loads for 24 vpdpbusd. Measured on a Sapphire Rapids core
// (benchmarks/results/int8.md) this doubles the one-panel 8-row kernel at 2048³: with one
// panel, 8 chains and 9 loads per 8 vpdpbusd left the multiply ports idle.
template <int R>
SHRINK_TARGET_AVX512_VNNI inline void tile_pair_avx512_vnni_rows(const std::uint8_t* a, index_t a_stride,
                                                                  const std::int8_t* panel0, index_t panel_stride,
                                                                  index_t quads, std::int32_t* acc) {
  __m512i s0[R], s1[R];
  #pragma GCC unroll 12
  for (int r = 0; r < R; ++r) s0[r] = s1[r] = _mm512_setzero_si512();
  const std::int8_t* panel1 = panel0 + panel_stride;
  for (index_t q = 0; q < quads; ++q) {
    const __m512i w0 = _mm512_loadu_si512(panel0 + q * 64);
    const __m512i w1 = _mm512_loadu_si512(panel1 + q * 64);
    #pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      int quad;
      std::memcpy(&quad, a + r * a_stride + q * 4, 4);
      const __m512i ab = _mm512_set1_epi32(quad);
      s0[r] = _mm512_dpbusd_epi32(s0[r], ab, w0);
      s1[r] = _mm512_dpbusd_epi32(s1[r], ab, w1);
    }
  }
  #pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_si512(acc + r * 16, s0[r]);
    _mm512_storeu_si512(acc + (R + r) * 16, s1[r]);
  }
}

inline void tile_pair_avx512_vnni(const std::uint8_t* a, index_t a_stride, index_t rows, const std::int8_t* panel0,
                                  index_t panel_stride, index_t quads, std::int32_t* acc) {
  // acc is [panel][rows][16]: the templates write panel 1 after `R` rows, R == rows here.
  with_rows<12>(rows, [&](auto r) {
    tile_pair_avx512_vnni_rows<decltype(r)::value>(a, a_stride, panel0, panel_stride, quads, acc);
  });
}

inline void tile_avx512_vnni(const std::uint8_t* a, index_t a_stride, index_t rows, const std::int8_t* panel,
                             index_t quads, std::int32_t* acc) {
  with_rows<8>(rows, [&](auto r) { tile_avx512_vnni_rows<decltype(r)::value>(a, a_stride, panel, quads, acc); });
}
#endif

inline constexpr tile_kernel k_reference_tile{tile_reference, 4, false};
inline constexpr tile_kernel k_generic_tile{tile_generic, 4, false};
#if SHRINK_HAS_X86_PATHS
inline constexpr tile_kernel k_avx2_tile{tile_avx2, 2, true, gemv_avx2, nullptr, 0, widen_panel_avx2, tile_avx2_wide, 6, tile_avx2_u7};
inline constexpr tile_kernel k_avx_vnni_tile{tile_avx_vnni, 6, false};
inline constexpr tile_kernel k_avx512_vnni_tile{tile_avx512_vnni, 8, false, nullptr, tile_pair_avx512_vnni, 12};
#endif

inline const std::array<implementation<const tile_kernel*>, SHRINK_HAS_X86_PATHS ? 5 : 2> k_tiles{{
    {isa::reference, 0, &k_reference_tile},
    {isa::generic, 0, &k_generic_tile},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, &k_avx2_tile},
    {isa::avx_vnni, 0, &k_avx_vnni_tile},
    {isa::avx512_vnni, 0, &k_avx512_vnni_tile},
#endif
}};

inline index_t round_up(index_t v, index_t m) { return (v + m - 1) / m * m; }

/// A block of activation rows kept in L2 while every panel of the thread passes over it.
inline constexpr index_t k_a_block_bytes = 256 * 1024;

template <class T>
void run(const context& ctx, tensor_view<const T, 2> a, std::int32_t a_zero, const packed_s8_weights& w, sink s,
         index_t out_rows, index_t out_cols, const void* out_data, std::span<std::byte> workspace, const char* who);

}  // namespace int8_detail

/// Bytes of workspace an int8 GEMM of M×K activations needs (any path): the activations
/// re-laid (padded depth, int16 on AVX2) and their row sums. Running never allocates.
inline std::size_t int8_gemm_workspace_bytes(index_t m, index_t k) {
  SHRINK_REQUIRE(m >= 0 && k >= 0, errc::invalid_argument, "int8_gemm_workspace_bytes: negative size ", m, "x", k);
  const index_t k4 = int8_detail::round_up(k, 4);
  return static_cast<std::size_t>(128 + int8_detail::round_up(m * 4, 64) + m * k4 * 2);
}

namespace int8_detail {

template <class T>
void run(const context& ctx, tensor_view<const T, 2> a, std::int32_t a_zero, const packed_s8_weights& w, sink s,
         index_t out_rows, index_t out_cols, const void* out_data, std::span<std::byte> workspace, const char* who) {
  constexpr bool is_signed = std::is_same_v<T, std::int8_t>;
  const index_t m = a.extent(0), k = a.extent(1);
  SHRINK_REQUIRE(!w.empty() && w.data.size() == static_cast<std::size_t>(w.panels * w.depth_padded * k_int8_panel) &&
                     w.column_sums.size() == static_cast<std::size_t>(w.panels * k_int8_panel),
                 errc::invalid_argument, who, ": packed weights are empty or inconsistent; pack them with pack_s8_weights");
  SHRINK_REQUIRE(k > 0, errc::empty_input, who, ": depth K must be > 0, got ", k);
  SHRINK_REQUIRE(k == w.depth, errc::shape_mismatch, who, ": activations have depth ", k,
                 " but the packed weights were packed for depth ", w.depth);
  SHRINK_REQUIRE(out_rows == m && out_cols == w.rows, errc::shape_mismatch, who, ": output is ", out_rows, "x",
                 out_cols, ", expected ", m, "x", w.rows);
  if (m == 0) return;
  SHRINK_REQUIRE(a.data() != nullptr && out_data != nullptr, errc::invalid_argument, who,
                 ": null activation or output pointer with non-zero size");
  SHRINK_REQUIRE(is_signed ? (a_zero >= -128 && a_zero <= 127) : (a_zero >= 0 && a_zero <= 255), errc::out_of_range,
                 who, ": activation zero point ", a_zero, " is outside the activation type's range");
  const std::size_t need = int8_gemm_workspace_bytes(m, k);
  SHRINK_REQUIRE(workspace.size() >= need && workspace.data() != nullptr, errc::out_of_range, who, ": workspace holds ",
                 workspace.size(), " bytes, needs ", need, " (int8_gemm_workspace_bytes)");

  const tile_kernel& kern = *select(k_tiles);
  const index_t k4 = w.depth_padded;
  // Workspace: [row sums, 64-aligned][activations, one row = k4 u8 or s16].
  auto base = reinterpret_cast<std::uintptr_t>(workspace.data());
  base = (base + 63) / 64 * 64;
  auto* row_sums = reinterpret_cast<std::int32_t*>(base);
  auto* ap = reinterpret_cast<std::uint8_t*>(base + static_cast<std::uintptr_t>(round_up(m * 4, 64)));
  constexpr std::int32_t offset = is_signed ? 128 : 0;
  // The reduce_range fast path (tile_avx2_u7) only when every packed activation is <= 127:
  // one scan, stopping at the first larger value (full-range data stops in the first row).
  bool u7 = false;
  if (kern.u7 != nullptr && m >= 2) {
    u7 = true;
    for (index_t i = 0; i < m && u7; ++i) {
      const T* src = a.data() + i * a.stride(0);
      std::int32_t mx = 0;
      if (a.stride(1) == 1)
        for (index_t j = 0; j < k; ++j) mx = std::max(mx, static_cast<std::int32_t>(src[j]) + offset);
      else
        for (index_t j = 0; j < k; ++j) mx = std::max(mx, static_cast<std::int32_t>(src[j * a.stride(1)]) + offset);
      u7 = mx <= 127;
    }
  }
  const bool a_s16 = kern.a_s16 && !u7;
  // (Padding the rows so that 4 KiB-apart rows fall into different L1 sets was tried:
  // 13 % slower at 64×4096×4096, no change at 2048³.)
  const index_t a_stride = a_s16 ? 2 * k4 : k4;
  // s8 activations become u8 by +128 (the zero point moves with them): exact, since
  // (a + 128) − (za + 128) = a − za.
  // Simple loops the compiler vectorises when the row is contiguous (the usual case): at
  // 512³ the element-by-element version cost as much as the VNNI multiply itself.
  const auto pack_rows = [&](auto col_stride) {
    for (index_t i = 0; i < m; ++i) {
      const T* src = a.data() + i * a.stride(0);
      std::uint8_t* dst8 = ap + i * a_stride;
      std::int32_t sum = 0;
      if (a_s16) {
        auto* dst16 = reinterpret_cast<std::int16_t*>(dst8);  // rows are 2·k4 bytes from a 64-byte aligned start
        for (index_t j = 0; j < k; ++j) {
          const std::int32_t v = static_cast<std::int32_t>(src[j * col_stride]) + offset;
          dst16[j] = static_cast<std::int16_t>(v);
          sum += v;
        }
        std::fill(dst16 + k, dst16 + k4, std::int16_t{0});
      } else {
        for (index_t j = 0; j < k; ++j) {
          const std::int32_t v = static_cast<std::int32_t>(src[j * col_stride]) + offset;
          dst8[j] = static_cast<std::uint8_t>(v);
          sum += v;
        }
        std::fill(dst8 + k, dst8 + k4, std::uint8_t{0});
      }
      row_sums[i] = sum;
    }
  };
  if (a.stride(1) == 1)
    pack_rows(std::integral_constant<index_t, 1>{});
  else
    pack_rows(a.stride(1));
  s.row_sums = row_sums;
  s.column_sums = w.column_sums.data();
  s.a_zero = a_zero + (is_signed ? 128 : 0);
  s.w_zero = w.zero_point;
  s.depth = k;
  // The widened-chunk AVX2 kernel (exact, full range) for blocks of >= k_wide_min_rows rows.
  const bool wide = !u7 && kern.wide != nullptr && m >= k_wide_min_rows;
  const tile_fn one_fn = u7 ? kern.u7 : kern.fn;
  // Rows per call: the pair kernel's when it exists (it serves every panel pair; a last odd
  // panel runs through the one-panel kernel, `mr` rows at a time inside the same block).
  const index_t mr = (u7 || wide) ? kern.mr_wide : kern.pair != nullptr ? kern.mr_pair : kern.mr;
  const index_t mr_one = u7 ? kern.mr_wide : kern.mr;
  // Blocks of about k_a_block_bytes of activations, all of the same size (64 rows of K = 4096
  // used to run as 60 + 4, streaming every panel twice for 4 rows).
  index_t block_rows = std::max(mr, k_a_block_bytes / a_stride);
  // The widened path reads the activations one K chunk at a time, so its block is sized in
  // rows: as tall as the accumulator block allows (more rows per widening, all 6-row tiles).
  if (wide) block_rows = k_wide_max_rows;
  const index_t blocks = (m + block_rows - 1) / block_rows;
  const index_t mc = round_up((m + blocks - 1) / blocks, mr);
  // At least ~256 K multiply-adds per chunk, so small problems do not pay for a thread.
  const index_t grain = std::max<index_t>(1, (index_t{1} << 18) / std::max<index_t>(1, m * k4 * k_int8_panel));
  parallel_for(ctx, 0, w.panels, grain, [&](index_t p0, index_t p1) {
    const index_t panel_stride = k4 * k_int8_panel;
#if SHRINK_HAS_X86_PATHS
    if (wide) {
      // Per (row block, panel): for each K chunk, widen the chunk once, then every tile of
      // the block adds its products into its slice of `accb`; the output stage runs once.
      alignas(64) std::int16_t wbuf[k_wide_kc * k_int8_panel];
      alignas(64) std::int32_t accb[k_wide_max_rows * 16];
      for (index_t mb = 0; mb < m; mb += mc) {
        const index_t me = std::min(m, mb + mc), tiles = (me - mb + mr - 1) / mr;
        for (index_t p = p0; p < p1; ++p) {
          for (index_t kc0 = 0; kc0 < k4; kc0 += k_wide_kc) {
            const index_t kl = std::min(k_wide_kc, k4 - kc0);
            kern.widen(w.panel(p) + kc0 * k_int8_panel, kl / 4, wbuf);
            for (index_t t = 0; t < tiles; ++t) {
              const index_t m0 = mb + (me - mb) * t / tiles, rows = mb + (me - mb) * (t + 1) / tiles - m0;
              kern.wide(reinterpret_cast<const std::int16_t*>(ap + m0 * a_stride) + kc0, a_stride / 2, rows, wbuf, kl / 2,
                        accb + (m0 - mb) * 16, kc0 != 0);
            }
          }
          write_tile(s, accb, mb, me - mb, p * 16, std::min<index_t>(16, w.rows - p * 16));
        }
      }
      return;
    }
#endif
    alignas(64) std::int32_t acc[std::max(k_max_mr * 16, k_max_acc)];
    for (index_t mb = 0; mb < m; mb += mc) {
      const index_t me = std::min(m, mb + mc);
      for (index_t p = p0; p < p1;) {
        const index_t cols = std::min<index_t>(16, w.rows - p * 16);
        if (kern.pair != nullptr && p + 1 < p1 && me - mb > 1) {
          const index_t cols1 = std::min<index_t>(16, w.rows - (p + 1) * 16);
          // Tiles of equal height (64 rows: 4 × 11 + 2 × 10, not 5 × 12 + 4): a short last
          // tile has too few independent accumulators to hide vpdpbusd's latency.
          const index_t tiles = (me - mb + mr - 1) / mr;
          for (index_t t = 0; t < tiles; ++t) {
            const index_t m0 = mb + (me - mb) * t / tiles, rows = mb + (me - mb) * (t + 1) / tiles - m0;
            kern.pair(ap + m0 * a_stride, a_stride, rows, w.panel(p), panel_stride, k4 / 4, acc);
            write_tile(s, acc, m0, rows, p * 16, cols);
            write_tile(s, acc + rows * 16, m0, rows, (p + 1) * 16, cols1);
          }
          p += 2;
          continue;
        }
        for (index_t m0 = mb; m0 < me; m0 += mr_one) {
          const index_t rows = std::min(mr_one, me - m0);
          if (rows == 1 && kern.gemv != nullptr && !u7)
            kern.gemv(ap + m0 * a_stride, w.panel(p), k4 / 4, acc);
          else
            one_fn(ap + m0 * a_stride, a_stride, rows, w.panel(p), k4 / 4, acc);
          write_tile(s, acc, m0, rows, p * 16, cols);
        }
        ++p;
      }
    }
  });
}

template <class T, class Out>
void gemm_to(const context& ctx, tensor_view<const T, 2> a, std::int32_t a_zero, const packed_s8_weights& w,
             tensor_view<Out, 2> out, sink s, std::span<std::byte> ws, const char* who) {
  s.data = out.data();
  s.row_stride = out.stride(0);
  s.col_stride = out.stride(1);
  run<T>(ctx, a, a_zero, w, s, out.extent(0), out.extent(1), out.data(), ws, who);
}

}  // namespace int8_detail

/// C[M,N] = Σ_k (A[m,k] − a_zero)(W[n,k] − w.zero_point), int32 (wrapping, as every int32
/// accumulator; exact while K·255·255 < 2^31). A is u8 (a_zero in [0,255]) or s8 (a_zero
/// in [-128,127]). M = 1 is the GEMV. `workspace` must hold int8_gemm_workspace_bytes(M,K).
inline void int8_gemm(tensor_view<const std::uint8_t, 2> a, std::int32_t a_zero, const packed_s8_weights& w,
                      tensor_view<std::int32_t, 2> c, std::span<std::byte> workspace, const context& ctx = {}) {
  int8_detail::gemm_to(ctx, a, a_zero, w, c, {}, workspace, "int8_gemm");
}
inline void int8_gemm(tensor_view<const std::int8_t, 2> a, std::int32_t a_zero, const packed_s8_weights& w,
                      tensor_view<std::int32_t, 2> c, std::span<std::byte> workspace, const context& ctx = {}) {
  int8_detail::gemm_to(ctx, a, a_zero, w, c, {}, workspace, "int8_gemm");
}

/// Requantized outputs (int8 or uint8): see requantize_stage.
template <class A, class Out>
  requires((std::is_same_v<A, std::uint8_t> || std::is_same_v<A, std::int8_t>) &&
           (std::is_same_v<Out, std::uint8_t> || std::is_same_v<Out, std::int8_t>))
void int8_gemm(tensor_view<const A, 2> a, std::int32_t a_zero, const packed_s8_weights& w,
               const requantize_stage& stage, tensor_view<Out, 2> out, std::span<std::byte> workspace,
               const context& ctx = {}) {
  constexpr bool s8 = std::is_same_v<Out, std::int8_t>;
  int8_detail::check_stage(stage, w.rows, s8, "int8_gemm");
  int8_detail::sink s;
  s.kind = s8 ? int8_detail::sink_kind::s8 : int8_detail::sink_kind::u8;
  s.rq = &stage;
  int8_detail::gemm_to(ctx, a, a_zero, w, out, s, workspace, "int8_gemm");
}

/// Dequantized fp32 outputs: see dequantize_stage.
template <class A>
  requires(std::is_same_v<A, std::uint8_t> || std::is_same_v<A, std::int8_t>)
void int8_gemm(tensor_view<const A, 2> a, std::int32_t a_zero, const packed_s8_weights& w,
               const dequantize_stage& stage, tensor_view<float, 2> out, std::span<std::byte> workspace,
               const context& ctx = {}) {
  int8_detail::check_stage(stage, w.rows, "int8_gemm");
  int8_detail::sink s;
  s.kind = int8_detail::sink_kind::f32;
  s.dq = &stage;
  int8_detail::gemm_to(ctx, a, a_zero, w, out, s, workspace, "int8_gemm");
}

/// y[N] = W·(x − a_zero) for one u8 activation vector (the batch-1 GEMV).
inline void int8_gemv(std::span<const std::uint8_t> x, std::int32_t a_zero, const packed_s8_weights& w,
                      std::span<std::int32_t> y, std::span<std::byte> workspace, const context& ctx = {}) {
  int8_gemm(tensor_view<const std::uint8_t, 2>(x.data(), shape<2>{1, static_cast<index_t>(x.size())}), a_zero, w,
            tensor_view<std::int32_t, 2>(y.data(), shape<2>{1, static_cast<index_t>(y.size())}), workspace, ctx);
}

}  // namespace shrink::kernels
