// weight_only_gemv.hpp: fp32 activations × int8 or int4 weights with per-row or per-group (32/64/128) fp32/fp16 scales, dequantised in registers (the LLM decode path).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>

#include <xsimd/xsimd.hpp>

#include "../core/aligned_buffer.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor_view.hpp"
#include "dispatch.hpp"
#include "x86_reduce.hpp"

namespace shrink::kernels {

/// Storage type of the per-group scales.
enum class scale_format { f32, f16 };

/// IEEE binary16 bits → float, exactly (subnormals, Inf and NaN included). Local so the
/// kernels do not depend on the io/quant modules.
inline float half_bits_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
  std::uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal: man · 2^-24
    const float v = static_cast<float>(man) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return std::bit_cast<float>(bits);
}

/// Weight-only quantized W[N, K]: signed int8 or int4 (two's complement nibbles, element k
/// of a row at nibble k, low nibble first as pack_bits) times a scale per (row, group).
/// Rows are padded to `depth_padded` (a multiple of the group, itself a multiple of 8) with
/// zero weights so every 8-element step is a whole 8-byte (int8) or 4-byte (int4) word.
struct packed_wq_weights {
  index_t rows = 0, depth = 0;
  int bits = 8;
  index_t group = 0;           ///< elements per scale group
  index_t groups = 0;          ///< groups per row
  index_t depth_padded = 0;    ///< groups · group
  index_t row_bytes = 0;       ///< depth_padded · bits / 8
  scale_format scales_format = scale_format::f32;
  aligned_buffer<std::uint8_t> data;       ///< rows · row_bytes
  aligned_buffer<float> scales_f32;        ///< rows · groups (f32 format)
  aligned_buffer<std::uint16_t> scales_f16;  ///< rows · groups (f16 format)

  [[nodiscard]] float scale(index_t n, index_t g) const noexcept {
    const auto i = static_cast<std::size_t>(n * groups + g);
    return scales_format == scale_format::f32 ? scales_f32[i] : half_bits_to_float(scales_f16[i]);
  }
  /// The integer weight W[n, k] read back from the layout.
  [[nodiscard]] int at(index_t n, index_t k) const noexcept {
    const std::uint8_t* row = data.data() + n * row_bytes;
    if (bits == 8) return static_cast<std::int8_t>(row[k]);
    const int nib = (row[k / 2] >> ((k % 2) * 4)) & 0xF;
    return nib >= 8 ? nib - 16 : nib;
  }
};

namespace wq_detail {

inline void check_layout(index_t rows, index_t depth, index_t group, const char* who) {
  SHRINK_REQUIRE(rows > 0 && depth > 0, errc::empty_input, who, ": weights must be non-empty, got ", rows, "x", depth);
  SHRINK_REQUIRE(group == 0 || group == 32 || group == 64 || group == 128, errc::invalid_argument, who,
                 ": group size must be 32, 64, 128 or 0 (one scale per row), got ", group);
}

inline packed_wq_weights make(index_t rows, index_t depth, int bits, index_t group) {
  packed_wq_weights p;
  p.rows = rows;
  p.depth = depth;
  p.bits = bits;
  p.group = group == 0 ? (depth + 7) / 8 * 8 : group;
  p.groups = (depth + p.group - 1) / p.group;
  p.depth_padded = p.groups * p.group;
  p.row_bytes = p.depth_padded * bits / 8;
  // The GEMV streams these bytes from DRAM on every call; on 4 KiB pages the stream runs
  // ≈ 20 % slower (8192², 64 MiB, Zen 4: 3.9 → 3.1 ms with 2 MiB pages). Zeroed: padding
  // weights must be 0; packing writes the rest.
  p.data = aligned_buffer<std::uint8_t>(static_cast<std::size_t>(rows * p.row_bytes), huge_pages);
  return p;
}

template <class S>
void set_scales(packed_wq_weights& p, std::span<const S> scales, const char* who) {
  const auto need = static_cast<std::size_t>(p.rows * p.groups);
  SHRINK_REQUIRE(scales.size() == need, errc::shape_mismatch, who, ": expected ", need, " scales (", p.rows,
                 " rows × ", p.groups, " groups), got ", scales.size());
  if constexpr (std::is_same_v<S, float>) {
    p.scales_format = scale_format::f32;
    for (float s : scales) SHRINK_REQUIRE(std::isfinite(s), errc::non_finite, who, ": scale must be finite, got ", s);
    p.scales_f32 = aligned_buffer<float>(scales);
  } else {
    p.scales_format = scale_format::f16;
    for (std::uint16_t s : scales)
      SHRINK_REQUIRE((s & 0x7C00u) != 0x7C00u, errc::non_finite, who, ": fp16 scale must be finite, got bits ", s);
    p.scales_f16 = aligned_buffer<std::uint16_t>(scales);
  }
}

}  // namespace wq_detail

/// Packs int8 weights W[N, K] with scales [N, groups] (fp32 `float` or fp16 bits
/// `std::uint16_t`); group 0 = one scale per row.
template <class S>
  requires(std::is_same_v<S, float> || std::is_same_v<S, std::uint16_t>)
packed_wq_weights pack_s8_weight_only(tensor_view<const std::int8_t, 2> w, std::span<const S> scales, index_t group) {
  wq_detail::check_layout(w.extent(0), w.extent(1), group, "pack_s8_weight_only");
  auto p = wq_detail::make(w.extent(0), w.extent(1), 8, group);
  wq_detail::set_scales(p, scales, "pack_s8_weight_only");
  for (index_t n = 0; n < p.rows; ++n)
    for (index_t k = 0; k < p.depth; ++k) p.data[static_cast<std::size_t>(n * p.row_bytes + k)] = static_cast<std::uint8_t>(w(n, k));
  return p;
}

/// Packs int4 weights given as nibbles in pack_bits order over the whole tensor (element
/// n·K + k at nibble n·K + k, low nibble first; each nibble a two's complement int4),
/// with scales [N, groups].
template <class S>
  requires(std::is_same_v<S, float> || std::is_same_v<S, std::uint16_t>)
packed_wq_weights pack_s4_weights(std::span<const std::uint8_t> nibbles, index_t rows, index_t depth,
                                  std::span<const S> scales, index_t group) {
  wq_detail::check_layout(rows, depth, group, "pack_s4_weights");
  SHRINK_REQUIRE(nibbles.data() != nullptr, errc::invalid_argument, "pack_s4_weights: null nibble pointer");
  const auto need = static_cast<std::size_t>((rows * depth + 1) / 2);
  SHRINK_REQUIRE(nibbles.size() >= need, errc::shape_mismatch, "pack_s4_weights: ", rows, "x", depth,
                 " int4 weights need ", need, " bytes, got ", nibbles.size());
  auto p = wq_detail::make(rows, depth, 4, group);
  wq_detail::set_scales(p, scales, "pack_s4_weights");
  for (index_t n = 0; n < rows; ++n)
    for (index_t k = 0; k < depth; ++k) {
      const index_t src = n * depth + k;
      const unsigned nib = (nibbles[static_cast<std::size_t>(src / 2)] >> ((src % 2) * 4)) & 0xFu;
      p.data[static_cast<std::size_t>(n * p.row_bytes + k / 2)] |= static_cast<std::uint8_t>(nib << ((k % 2) * 4));
    }
  return p;
}

namespace wq_detail {

/// y[n] for n in [n0, n1), one activation vector x[K].
using rows_fn = void (*)(const float* x, const packed_wq_weights& w, index_t n0, index_t n1, float* y);

// ---- reference: the oracle; exact products summed in double, rounded once.
inline void rows_reference(const float* x, const packed_wq_weights& w, index_t n0, index_t n1, float* y) {
  for (index_t n = n0; n < n1; ++n) {
    double sum = 0.0;
    for (index_t g = 0; g < w.groups; ++g) {
      double gs = 0.0;
      for (index_t k = g * w.group; k < std::min(w.depth, (g + 1) * w.group); ++k)
        gs += static_cast<double>(w.at(n, k)) * static_cast<double>(x[k]);
      sum += gs * static_cast<double>(w.scale(n, g));
    }
    y[n] = static_cast<float>(sum);
  }
}

// ---- generic (xsimd): each group decoded 8 at a time into a float block, fma with x.
inline void rows_generic(const float* x, const packed_wq_weights& w, index_t n0, index_t n1, float* y) {
  using bf = xsimd::batch<float>;
  constexpr index_t lanes = static_cast<index_t>(bf::size);
  alignas(64) float block[128];
  for (index_t n = n0; n < n1; ++n) {
    float sum = 0.0f;
    for (index_t g = 0; g < w.groups; ++g) {
      const index_t k0 = g * w.group, k1 = std::min(w.depth, k0 + w.group), len = k1 - k0;
      float gs = 0.0f;
      for (index_t c0 = 0; c0 < len; c0 += 128) {
        const index_t cl = std::min<index_t>(128, len - c0);
        for (index_t i = 0; i < cl; ++i) block[i] = static_cast<float>(w.at(n, k0 + c0 + i));
        bf acc(0.0f);
        index_t i = 0;
        for (; i + lanes <= cl; i += lanes)
          acc = xsimd::fma(bf::load_aligned(block + i), bf::load_unaligned(x + k0 + c0 + i), acc);
        gs += xsimd::hadd(acc);
        for (; i < cl; ++i) gs += block[i] * x[k0 + c0 + i];
      }
      sum += gs * w.scale(n, g);
    }
    y[n] = sum;
  }
}

#if SHRINK_HAS_X86_PATHS
// ---- avx2: 4 rows at a time share each activation load. int8: vpmovsxbd + cvtdq2ps;
// int4: the 32-bit word of 8 nibbles is broadcast, vpsllvd moves nibble i to the top of
// lane i and vpsrad 28 sign-extends it (no shuffles). Per group: one fma chain per row,
// then one fma by the broadcast group scale. Tail elements past the last multiple of 8
// (inside the row's padded storage, but past x's end) are done in scalar.
// Eight weights from a row at depth k (a multiple of 8) as floats.
template <int Bits>
SHRINK_TARGET_AVX2 inline __m256 load8(const std::uint8_t* row, index_t k, __m256i shifts) {
  if constexpr (Bits == 8) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + k))));
  } else {
    std::int32_t word;
    std::memcpy(&word, row + k / 2, 4);
    return _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_sllv_epi32(_mm256_set1_epi32(word), shifts), 28));
  }
}

// Scale of (row block offset, group) from the block's fp32 or fp16 scale pointer.
template <bool F16>
SHRINK_TARGET_AVX2 inline float group_scale(const float* sf, const std::uint16_t* sh, index_t i) {
  if constexpr (F16)
    return _cvtsh_ss(sh[i]);
  else
    return sf[i];
}

// The last depth mod 8 weights of row n (past every full 8-weight step) times x, scaled by
// their group's scale; 0 when depth is a multiple of 8.
inline float scaled_tail(const float* x, const packed_wq_weights& w, index_t n, index_t vec_end) {
  if (vec_end == w.depth) return 0.0f;
  float ts = 0.0f;
  for (index_t k = vec_end; k < w.depth; ++k) ts += static_cast<float>(w.at(n, k)) * x[k];
  return ts * w.scale(n, vec_end / w.group);
}

template <int Bits, int R, bool F16>
SHRINK_TARGET_AVX2 inline void rows_avx2_block(const float* x, const packed_wq_weights& w, index_t n, float* y) {
  // Per 8 weights: one vpmovsxbd (int8) or broadcast+vpsllvd+vpsrad (int4), one cvtdq2ps,
  // one fma; the activations are loaded once per 4 rows. Two fma chains per row (8 in all)
  // hide the fma latency; the group scale is applied once per group to the group's sum.
  // Software prefetch of the next block of R rows (R·row_bytes ahead, into L2): with the
  // hardware prefetchers alone, or prefetches a few KiB ahead, the core kept too few DRAM
  // misses in flight while busy converting (≈ 12–13 GB/s; ≈ 17 GB/s with it, 8192²).
  const index_t group = w.group, groups = w.groups, depth = w.depth;
  const float* sf = F16 ? nullptr : w.scales_f32.data() + n * groups;
  const std::uint16_t* sh = F16 ? w.scales_f16.data() + n * groups : nullptr;
  __m256 total[R];
  const std::uint8_t* rows[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    total[r] = _mm256_setzero_ps();
    rows[r] = w.data.data() + (n + r) * w.row_bytes;
  }
  const __m256i shifts = _mm256_setr_epi32(28, 24, 20, 16, 12, 8, 4, 0);
  const index_t vec_end = depth / 8 * 8;
  for (index_t g = 0; g < groups; ++g) {
    const index_t k0 = g * group, k1 = std::min(vec_end, k0 + group);
    __m256 ga[R], gb[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) ga[r] = gb[r] = _mm256_setzero_ps();
    index_t k = k0;
    // int8 only: for int4 the decode (broadcast, vpsllvd, vpsrad) needs the registers that
    // the four activation vectors would hold here, and GCC then spilled; the one-chain loop
    // below is 1.3x faster for int4 (weight_only_gemm 10000x300x784 g32: 194 vs 255 ms).
    if constexpr (Bits == 8)
    for (; k + 32 <= k1; k += 32) {
      // The four activation vectors are loaded once and kept in registers for the R rows:
      // GCC otherwise folds them into each fma as a memory operand, R× the loads, and the
      // load ports became the bottleneck (15 → 23 GB/s from L2 for int8 when fixed).
      __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8), x2 = _mm256_loadu_ps(x + k + 16),
             x3 = _mm256_loadu_ps(x + k + 24);
      __asm__("" : "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3));
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + R * w.row_bytes + k * Bits / 8), _MM_HINT_T1);
        // int8: each load8 is one vpmovsxbd ymm, m64 (load and widen in one instruction).
        const __m256 w0 = load8<Bits>(rows[r], k, shifts), w1 = load8<Bits>(rows[r], k + 8, shifts),
                     w2 = load8<Bits>(rows[r], k + 16, shifts), w3 = load8<Bits>(rows[r], k + 24, shifts);
        ga[r] = _mm256_fmadd_ps(w0, x0, ga[r]);
        gb[r] = _mm256_fmadd_ps(w1, x1, gb[r]);
        ga[r] = _mm256_fmadd_ps(w2, x2, ga[r]);
        gb[r] = _mm256_fmadd_ps(w3, x3, gb[r]);
      }
    }
    for (; k < k1; k += 8) {
      const __m256 x0 = _mm256_loadu_ps(x + k);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) ga[r] = _mm256_fmadd_ps(load8<Bits>(rows[r], k, shifts), x0, ga[r]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float sc = group_scale<F16>(sf, sh, r * groups + g);
      const __m256 gs = Bits == 8 ? _mm256_add_ps(ga[r], gb[r]) : ga[r];
      total[r] = _mm256_fmadd_ps(gs, _mm256_set1_ps(sc), total[r]);
    }
  }
  // The last depth mod 8 elements (one group, since groups are multiples of 8), in scalar.
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) y[n + r] = x86::hsum(total[r]) + scaled_tail(x, w, n + r, vec_end);
}

// Tried on Zen 4 (8192², 64 MiB, DRAM-bound at ≈ 16.5 GB/s while the same kernel runs at
// ≈ 23 GB/s from L2): 8 rows per pass with one fma chain per row, prefetching 2 or 4 blocks
// ahead, one prefetch per 64-byte line, an extra prefetcht0 256 B–2 KiB ahead — all within
// ±2 % (docs/kernels.md). The per-weight work (widen, convert, fma) is the floor here: with
// W in L2 the loop issues 3 vector ops per 8 weights at ≈ 4 per cycle, Zen 4's four FP pipes
// (a pshufb-into-top-byte decode, or shifts and masks, cost the same or more), and a layout
// that interleaves each 4-row block into one stream halved the DRAM rate (≈ 10 GB/s).

// Each ISA path is a block function, block<Bits, R, F16>(x, w, n, y) for rows [n, n + R);
// one driver walks the rows in blocks of 4 then singles and picks the packed format.
template <class Path>
inline void rows_by_format(const float* x, const packed_wq_weights& w, index_t n0, index_t n1, float* y) {
  const auto run = [&]<int Bits, bool F16>() {
    index_t n = n0;
    for (; n + 4 <= n1; n += 4) Path::template block<Bits, 4, F16>(x, w, n, y);
    for (; n < n1; ++n) Path::template block<Bits, 1, F16>(x, w, n, y);
  };
  const bool f16 = w.scales_format == scale_format::f16;
  if (w.bits == 8)
    f16 ? run.template operator()<8, true>() : run.template operator()<8, false>();
  else
    f16 ? run.template operator()<4, true>() : run.template operator()<4, false>();
}

struct avx2_path {
  template <int Bits, int R, bool F16>
  static void block(const float* x, const packed_wq_weights& w, index_t n, float* y) {
    rows_avx2_block<Bits, R, F16>(x, w, n, y);
  }
};

// ---- avx512: the AVX2 kernel at twice the width. 16 weights per step: int8 is one
// vpmovsxbd zmm, m128; int4 splits 8 bytes into low and high nibbles, interleaves them so
// nibble i is byte i, maps each to its signed value with a 16-entry vpshufb table and
// widens with vpmovsxbd (128-bit steps plus the one widening; also what SIMDe can emulate).
// Groups are multiples of 8, not 16, so each group ends with at most one 8-weight step in
// a 256-bit register (its own accumulator); the last depth mod 8 elements are scalar.
// GCC 12 flags the `_mm512_undefined_*` pass-through inside its own _mm512_cvtepi8_epi32 /
// _mm512_cvtepi32_ps (-Wmaybe-uninitialized); the maskz forms that avoid it are missing
// from SIMDe, which the emulated test build needs, so the warning is silenced here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
template <int Bits>
SHRINK_TARGET_AVX512 inline __m512 load16(const std::uint8_t* row, index_t k, __m128i low4, __m128i int4_values) {
  if constexpr (Bits == 8) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k))));
  } else {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + k / 2));
    const __m128i nibbles = _mm_unpacklo_epi8(_mm_and_si128(b, low4), _mm_and_si128(_mm_srli_epi16(b, 4), low4));
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_shuffle_epi8(int4_values, nibbles)));
  }
}

template <int Bits, int R, bool F16>
SHRINK_TARGET_AVX512 inline void rows_avx512_block(const float* x, const packed_wq_weights& w, index_t n, float* y) {
  const index_t group = w.group, groups = w.groups, depth = w.depth;
  const float* sf = F16 ? nullptr : w.scales_f32.data() + n * groups;
  const std::uint16_t* sh = F16 ? w.scales_f16.data() + n * groups : nullptr;
  __m512 total[R];
  __m256 total8[R];
  const std::uint8_t* rows[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    total[r] = _mm512_setzero_ps();
    total8[r] = _mm256_setzero_ps();
    rows[r] = w.data.data() + (n + r) * w.row_bytes;
  }
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m128i int4_values = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1);
  const __m256i shifts8 = _mm256_setr_epi32(28, 24, 20, 16, 12, 8, 4, 0);
  const index_t vec_end = depth / 8 * 8;
  for (index_t g = 0; g < groups; ++g) {
    const index_t k0 = g * group, k1 = std::min(vec_end, k0 + group);
    __m512 ga[R], gb[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) ga[r] = gb[r] = _mm512_setzero_ps();
    index_t k = k0;
    if constexpr (Bits == 8)
      for (; k + 64 <= k1; k += 64) {
        // As in the AVX2 kernel: the activations stay in registers for the R rows.
        __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16), x2 = _mm512_loadu_ps(x + k + 32),
               x3 = _mm512_loadu_ps(x + k + 48);
#if !defined(SHRINK_EMULATE_AVX512)  // SIMDe's __m512 is not a register type
        __asm__("" : "+v"(x0), "+v"(x1), "+v"(x2), "+v"(x3));
#endif
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          _mm_prefetch(reinterpret_cast<const char*>(rows[r] + R * w.row_bytes + k), _MM_HINT_T1);
          ga[r] = _mm512_fmadd_ps(load16<Bits>(rows[r], k, low4, int4_values), x0, ga[r]);
          gb[r] = _mm512_fmadd_ps(load16<Bits>(rows[r], k + 16, low4, int4_values), x1, gb[r]);
          ga[r] = _mm512_fmadd_ps(load16<Bits>(rows[r], k + 32, low4, int4_values), x2, ga[r]);
          gb[r] = _mm512_fmadd_ps(load16<Bits>(rows[r], k + 48, low4, int4_values), x3, gb[r]);
        }
      }
    for (; k + 16 <= k1; k += 16) {
      const __m512 x0 = _mm512_loadu_ps(x + k);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) ga[r] = _mm512_fmadd_ps(load16<Bits>(rows[r], k, low4, int4_values), x0, ga[r]);
    }
    const bool step8 = k + 8 <= k1;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float sc = group_scale<F16>(sf, sh, r * groups + g);
      total[r] = _mm512_fmadd_ps(_mm512_add_ps(ga[r], gb[r]), _mm512_set1_ps(sc), total[r]);
      if (step8)
        total8[r] = _mm256_fmadd_ps(_mm256_mul_ps(load8<Bits>(rows[r], k, shifts8), _mm256_loadu_ps(x + k)),
                                    _mm256_set1_ps(sc), total8[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    y[n + r] = (x86::hsum(total[r]) + x86::hsum(total8[r])) + scaled_tail(x, w, n + r, vec_end);
}

struct avx512_path {
  template <int Bits, int R, bool F16>
  static void block(const float* x, const packed_wq_weights& w, index_t n, float* y) {
    rows_avx512_block<Bits, R, F16>(x, w, n, y);
  }
};
#pragma GCC diagnostic pop
#endif

inline const std::array<implementation<rows_fn>, SHRINK_HAS_X86_PATHS ? 4 : 2> k_rows{{
    {isa::reference, 0, rows_reference},
    {isa::generic, 0, rows_generic},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, rows_by_format<avx2_path>},
    {isa::avx512, 0, rows_by_format<avx512_path>},
#endif
}};

inline void check_packed(const packed_wq_weights& w, const char* who) {
  SHRINK_REQUIRE(w.rows > 0 && w.data.size() == static_cast<std::size_t>(w.rows * w.row_bytes) &&
                     (w.bits == 8 || w.bits == 4) &&
                     (w.scales_format == scale_format::f32 ? w.scales_f32.size() : w.scales_f16.size()) ==
                         static_cast<std::size_t>(w.rows * w.groups),
                 errc::invalid_argument, who, ": packed weights are empty or inconsistent; use pack_s8_weight_only / pack_s4_weights");
}

}  // namespace wq_detail

/// Y[M, N] = X[M, K] · Wᵀ with W weight-only quantized. Rows of W are split over threads
/// in blocks of 16; each block runs every activation row while it is hot in cache. Each
/// output is computed by one thread in a fixed order, so results do not depend on threads.
inline void weight_only_gemm(tensor_view<const float, 2> x, const packed_wq_weights& w, tensor_view<float, 2> y,
                             const context& ctx = {}) {
  wq_detail::check_packed(w, "weight_only_gemm");
  const index_t m = x.extent(0);
  SHRINK_REQUIRE(x.extent(1) == w.depth, errc::shape_mismatch, "weight_only_gemm: activations have depth ",
                 x.extent(1), ", the packed weights ", w.depth);
  SHRINK_REQUIRE(y.extent(0) == m && y.extent(1) == w.rows, errc::shape_mismatch, "weight_only_gemm: output is ",
                 y.extent(0), "x", y.extent(1), ", expected ", m, "x", w.rows);
  SHRINK_REQUIRE(x.stride(1) == 1 && y.stride(1) == 1, errc::invalid_argument,
                 "weight_only_gemm: activation and output rows must be contiguous");
  if (m == 0) return;
  SHRINK_REQUIRE(x.data() != nullptr && y.data() != nullptr, errc::invalid_argument,
                 "weight_only_gemm: null activation or output pointer");
  const auto fn = select(wq_detail::k_rows);
  parallel_for(ctx, 0, w.rows, 16, [&](index_t n0, index_t n1) {
    for (index_t nb = n0; nb < n1; nb += 16)
      for (index_t i = 0; i < m; ++i)
        fn(x.data() + i * x.stride(0), w, nb, std::min(n1, nb + 16), y.data() + i * y.stride(0));
  });
}

/// y[N] = W · x, the batch-1 decode GEMV.
inline void weight_only_gemv(std::span<const float> x, const packed_wq_weights& w, std::span<float> y,
                             const context& ctx = {}) {
  weight_only_gemm(tensor_view<const float, 2>(x.data(), shape<2>{1, static_cast<index_t>(x.size())}), w,
                   tensor_view<float, 2>(y.data(), shape<2>{1, static_cast<index_t>(y.size())}), ctx);
}

}  // namespace shrink::kernels
