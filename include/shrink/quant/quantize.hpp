// quantize.hpp: quantize / dequantize a float tensor under a scheme x granularity x rounding, with min-max or given parameters.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"
#include "../kernels/dispatch.hpp"
#include "quantized.hpp"
#include "scheme.hpp"

namespace shrink::quant {

/// A quantizer: scheme x granularity x rounding (+ the seed of stochastic rounding and what
/// to do with NaN/Inf). Plain fields; the defaults are PyTorch's qint8 symmetric per tensor.
struct options {
  scheme quant_scheme = k_qint8_symmetric;
  granularity quant_granularity = granularity::per_tensor();
  rounding round = rounding::half_even;
  std::uint64_t seed = 0;
  non_finite_policy non_finite = non_finite_policy::error;
};

namespace detail {

/// Observed range of a run of values; `bad` is the offset of the first non-finite value or -1.
struct run_range {
  float min = std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();
  index_t bad = -1;
};

// ---- per-path row operations -------------------------------------------------------------
// range: min/max of n floats (non-finite values are skipped, the first one's offset reported).
// encode: fields[i] = low 8 bits of saturate(round_half_even(x[i] / scale) + zp), inputs finite;
//   `ahead` (floats, 0 = none) is where the next block to be read starts, a prefetch hint only.
// pack4: out[j] = (f[2j] & 15) | (f[2j+1] & 15) << 4, n even or odd.
// groups: one row of `cols` values in groups of `gs`: per group its min-max parameters, and
//   the packed row written to `out` (`fields` is scratch of `cols` bytes); returns the
//   offset of the first non-finite value (then stops) or -1.
struct row_ops {
  run_range (*range)(const float* x, index_t n);
  void (*encode)(const float* x, index_t n, params p, int qmin, int qmax, std::uint8_t* fields, index_t ahead);
  void (*pack4)(const std::uint8_t* fields, index_t n, std::uint8_t* out);
  index_t (*groups)(const float* x, index_t cols, index_t gs, const scheme& s, float* scales, std::int32_t* zps,
                    std::uint8_t* fields, std::uint8_t* out);
};

inline run_range range_reference(const float* x, index_t n) {
  run_range r;
  for (index_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (!std::isfinite(v)) {
      if (r.bad < 0) r.bad = i;
      continue;
    }
    r.min = std::min(r.min, v);
    r.max = std::max(r.max, v);
  }
  return r;
}

inline void encode_reference(const float* x, index_t n, params p, int qmin, int qmax, std::uint8_t* fields, index_t /*ahead*/ = 0) {
  const float lo = static_cast<float>(qmin - p.zero_point), hi = static_cast<float>(qmax - p.zero_point);
  for (index_t i = 0; i < n; ++i) {
    float v = x[i] / p.scale;
    v = v < lo ? lo : (v > hi ? hi : v);
    fields[i] = static_cast<std::uint8_t>(static_cast<std::int32_t>(std::nearbyint(v)) + p.zero_point);
  }
}

inline void pack4_reference(const std::uint8_t* f, index_t n, std::uint8_t* out) {
  index_t j = 0;
  for (; j + 1 < n; j += 2) out[j / 2] = static_cast<std::uint8_t>((f[j] & 15u) | ((f[j + 1] & 15u) << 4));
  if (j < n) out[j / 2] = static_cast<std::uint8_t>(f[j] & 15u);
}

inline void pack_fields(const std::uint8_t* fields, index_t n, int storage_bits, void (*pack4)(const std::uint8_t*, index_t, std::uint8_t*),
                        std::uint8_t* out);

inline index_t groups_reference(const float* x, index_t cols, index_t gs, const scheme& s, float* scales, std::int32_t* zps,
                                std::uint8_t* fields, std::uint8_t* out) {
  for (index_t c0 = 0, k = 0; c0 < cols; c0 += gs, ++k) {
    const index_t n = std::min(gs, cols - c0);
    const run_range r = range_reference(x + c0, n);
    if (r.bad >= 0) return c0 + r.bad;
    const params p = params_from_range(r.min, r.max, s);
    scales[k] = p.scale;
    zps[k] = p.zero_point;
    encode_reference(x + c0, n, p, s.qmin(), s.qmax(), fields + c0);
  }
  pack_fields(fields, cols, s.storage_bits(), pack4_reference, out);
  return -1;
}

inline constexpr row_ops k_reference_ops{range_reference, encode_reference, pack4_reference, groups_reference};

#if SHRINK_HAS_X86_PATHS
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE float hmin_avx2(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_min_ss(m, _mm_shuffle_ps(m, m, 1)));
}
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE float hmax_avx2(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}

SHRINK_TARGET_AVX2 inline run_range range_avx2(const float* x, index_t n) {
  // Four independent min/max chains; v - v is 0 for finite v and NaN for Inf/NaN, OR-ed into
  // a poison word (bitwise OR keeps a NaN a NaN), so the loop has no long dependency chain.
  const __m256 pos_inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 lo0 = pos_inf, lo1 = pos_inf, lo2 = pos_inf, lo3 = pos_inf;
  __m256 hi0 = neg_inf, hi1 = neg_inf, hi2 = neg_inf, hi3 = neg_inf;
  __m256 poison0 = _mm256_setzero_ps(), poison1 = poison0;
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    const __m256 c = _mm256_loadu_ps(x + i + 16), d = _mm256_loadu_ps(x + i + 24);
    lo0 = _mm256_min_ps(lo0, a);
    lo1 = _mm256_min_ps(lo1, b);
    lo2 = _mm256_min_ps(lo2, c);
    lo3 = _mm256_min_ps(lo3, d);
    hi0 = _mm256_max_ps(hi0, a);
    hi1 = _mm256_max_ps(hi1, b);
    hi2 = _mm256_max_ps(hi2, c);
    hi3 = _mm256_max_ps(hi3, d);
    poison0 = _mm256_or_ps(poison0, _mm256_or_ps(_mm256_sub_ps(a, a), _mm256_sub_ps(b, b)));
    poison1 = _mm256_or_ps(poison1, _mm256_or_ps(_mm256_sub_ps(c, c), _mm256_sub_ps(d, d)));
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_loadu_ps(x + i);
    lo0 = _mm256_min_ps(lo0, a);
    hi0 = _mm256_max_ps(hi0, a);
    poison0 = _mm256_or_ps(poison0, _mm256_sub_ps(a, a));
  }
  const __m256 poison = _mm256_or_ps(poison0, poison1);
  if (_mm256_movemask_ps(_mm256_cmp_ps(poison, poison, _CMP_UNORD_Q)) != 0) return range_reference(x, n);  // rare: locate it
  const __m256 lo = _mm256_min_ps(_mm256_min_ps(lo0, lo1), _mm256_min_ps(lo2, lo3));
  const __m256 hi = _mm256_max_ps(_mm256_max_ps(hi0, hi1), _mm256_max_ps(hi2, hi3));
  run_range r{hmin_avx2(lo), hmax_avx2(hi), -1};
  const run_range tail = range_reference(x + i, n - i);
  r.min = std::min(r.min, tail.min);
  r.max = std::max(r.max, tail.max);
  if (tail.bad >= 0) r.bad = i + tail.bad;
  return r;
}

// ONNX divides; so does this loop. A multiply by a precomputed 1/scale with a guard that
// redoes near-tie vectors by division gives identical codes, but measured slower on Zen 4
// (vdivps is cheap there; docs/quantization.md, "Division"), so plain division it is.
template <bool AddZp>
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE __m256i encode8_avx2(const float* x, __m256 vs, __m256 vlo, __m256 vhi, __m256i vzp) {
  const __m256 y = _mm256_min_ps(_mm256_max_ps(_mm256_div_ps(_mm256_loadu_ps(x), vs), vlo), vhi);
  const __m256i q = _mm256_cvtps_epi32(y);  // cvtps2dq under the default MXCSR: nearest even
  if constexpr (AddZp) return _mm256_add_epi32(q, vzp);
  return q;
}

// 32 codes in [-128, 127] (Signed) or [0, 255] as 32 bytes in element order. Both packs are
// exact on those ranges (no saturation), and pack only within 128-bit lanes, hence the final
// dword permutation.
template <bool Signed>
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE __m256i bytes32_avx2(__m256i q0, __m256i q1, __m256i q2, __m256i q3) {
  const __m256i a = _mm256_packs_epi32(q0, q1), b = _mm256_packs_epi32(q2, q3);
  const __m256i c = Signed ? _mm256_packs_epi16(a, b) : _mm256_packus_epi16(a, b);
  return _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// 32 codes in [-8, 15] as 16 bytes of nibbles, element 2j in the low nibble of byte j. The
// packs leave, per 128-bit lane, bytes (q0[0..3], q1[0..3], q2[0..3], q3[0..3]) and then
// (q0[4..7], ...): consecutive elements stay adjacent in pairs, so vpmaddubsw with (1, 16)
// joins each pair into one byte value (lo & 15) + 16 (hi & 15) <= 255 before the order is
// fixed: the 16-bit results interleave between the two lanes.
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE __m128i nibbles32_avx2(__m256i q0, __m256i q1, __m256i q2, __m256i q3) {
  const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
  const __m256i w = _mm256_maddubs_epi16(_mm256_and_si256(b, _mm256_set1_epi8(0x0f)), _mm256_set1_epi16(0x1001));
  const __m256i p = _mm256_packus_epi16(w, w);  // per lane: 8 output bytes, twice
  return _mm_unpacklo_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
}

template <bool AddZp, bool Signed>
SHRINK_TARGET_AVX2 inline void encode_avx2_impl(const float* x, index_t n, params p, int qmin, int qmax, std::uint8_t* fields,
                                                index_t ahead) {
  // Clamp to integer bounds, round to nearest even, + zero point, as encode_reference.
  const __m256 vs = _mm256_set1_ps(p.scale);
  const __m256 vlo = _mm256_set1_ps(static_cast<float>(qmin - p.zero_point));
  const __m256 vhi = _mm256_set1_ps(static_cast<float>(qmax - p.zero_point));
  const __m256i vzp = _mm256_set1_epi32(p.zero_point);
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    if (ahead != 0) {  // the next block into L2 while this one is encoded from L1 (see group_encode_avx2)
      _mm_prefetch(reinterpret_cast<const char*>(x + i + ahead), _MM_HINT_T1);
      _mm_prefetch(reinterpret_cast<const char*>(x + i + 16 + ahead), _MM_HINT_T1);
    }
    const __m256i q0 = encode8_avx2<AddZp>(x + i, vs, vlo, vhi, vzp), q1 = encode8_avx2<AddZp>(x + i + 8, vs, vlo, vhi, vzp);
    const __m256i q2 = encode8_avx2<AddZp>(x + i + 16, vs, vlo, vhi, vzp), q3 = encode8_avx2<AddZp>(x + i + 24, vs, vlo, vhi, vzp);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(fields + i), bytes32_avx2<Signed>(q0, q1, q2, q3));
  }
  for (; i + 8 <= n; i += 8) {
    const __m256i q = encode8_avx2<AddZp>(x + i, vs, vlo, vhi, vzp);
    alignas(32) std::int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), q);
    for (int k = 0; k < 8; ++k) fields[i + k] = static_cast<std::uint8_t>(lanes[k]);
  }
  encode_reference(x + i, n - i, p, qmin, qmax, fields + i);
}

SHRINK_TARGET_AVX2 inline void encode_avx2(const float* x, index_t n, params p, int qmin, int qmax, std::uint8_t* fields,
                                           index_t ahead = 0) {
  // Codes lie in [qmin, qmax]; a negative qmin means a signed grid (at most 8 bits either way).
  if (p.zero_point == 0) {
    if (qmin < 0) return encode_avx2_impl<false, true>(x, n, p, qmin, qmax, fields, ahead);
    return encode_avx2_impl<false, false>(x, n, p, qmin, qmax, fields, ahead);
  }
  if (qmin < 0) return encode_avx2_impl<true, true>(x, n, p, qmin, qmax, fields, ahead);
  return encode_avx2_impl<true, false>(x, n, p, qmin, qmax, fields, ahead);
}

SHRINK_TARGET_AVX2 inline void pack4_avx2(const std::uint8_t* f, index_t n, std::uint8_t* out) {
  const __m256i nibble = _mm256_set1_epi16(0x000f);
  index_t j = 0;
  for (; j + 64 <= n; j += 64) {
    const __m256i f0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(f + j));
    const __m256i f1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(f + j + 32));
    const __m256i w0 = _mm256_or_si256(_mm256_and_si256(f0, nibble),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(f0, 8), nibble), 4));
    const __m256i w1 = _mm256_or_si256(_mm256_and_si256(f1, nibble),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(f1, 8), nibble), 4));
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi16(w0, w1), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j / 2), packed);
  }
  pack4_reference(f + j, n - j, out + j / 2);
}

// Full groups of 8*V values, in two sweeps over the row (the row stays in L1/L2): first every
// group's min/max and parameters, then every group's codes. Splitting the sweeps keeps the
// long chain min/max -> scale -> divide of one group from stalling the next (measured 1.3x
// faster than one fused pass per group on L1-resident rows).
template <int V>
SHRINK_TARGET_AVX2 inline bool group_params_avx2(const float* g, const scheme& s, float* scale, std::int32_t* zp) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 lo = _mm256_loadu_ps(g), hi = lo, poison = _mm256_fmadd_ps(lo, zero, zero);
#pragma GCC unroll 16
  for (int k = 1; k < V; ++k) {
    const __m256 v = _mm256_loadu_ps(g + 8 * k);
    lo = _mm256_min_ps(lo, v);
    hi = _mm256_max_ps(hi, v);
    poison = _mm256_fmadd_ps(v, zero, poison);  // v * 0 is NaN for Inf and NaN, else +-0: NaN sticks
  }
  if (_mm256_movemask_ps(_mm256_cmp_ps(poison, poison, _CMP_UNORD_Q)) != 0) return false;
  const params p = params_from_range(hmin_avx2(lo), hmax_avx2(hi), s);
  *scale = p.scale;
  *zp = p.zero_point;
  return true;
}

// Codes of one full group of 8*V values, packed to `out` (8-bit: 8V bytes; 4-bit: 4V bytes,
// low nibble first). vlo/vhi/vzp: qmin - zp, qmax - zp, zp (hoisted by the caller when the
// zero point is the same for every group).
template <int V, int Bits, bool AddZp, bool Signed>
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE void group_encode_avx2(const float* g, __m256 vs, __m256 vlo, __m256 vhi, __m256i vzp,
                                                              std::uint8_t* out, index_t ahead) {
  static_assert(V % 4 == 0, "group_encode_avx2: V must be a multiple of 4 (32 values)");
#pragma GCC unroll 4
  for (int k = 0; k < V; k += 4) {
    // While this row is encoded from cache, pull the next row (`ahead` floats on) from DRAM
    // into L2 (prefetcht1: t0 would evict the row being encoded from L1; measured on Zen 4,
    // int4 group-32 4096x4096: no prefetch 7.7 ms, t0 6.5 ms, t1 5.8 ms). Prefetches never fault.
    _mm_prefetch(reinterpret_cast<const char*>(g + 8 * k + ahead), _MM_HINT_T1);
    _mm_prefetch(reinterpret_cast<const char*>(g + 8 * k + 16 + ahead), _MM_HINT_T1);
    const __m256i q0 = encode8_avx2<AddZp>(g + 8 * k, vs, vlo, vhi, vzp);
    const __m256i q1 = encode8_avx2<AddZp>(g + 8 * k + 8, vs, vlo, vhi, vzp);
    const __m256i q2 = encode8_avx2<AddZp>(g + 8 * k + 16, vs, vlo, vhi, vzp);
    const __m256i q3 = encode8_avx2<AddZp>(g + 8 * k + 24, vs, vlo, vhi, vzp);
    if constexpr (Bits == 8)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8 * k), bytes32_avx2<Signed>(q0, q1, q2, q3));
    else
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 4 * k), nibbles32_avx2(q0, q1, q2, q3));
  }
}

// The codes of `full` groups of one row. A symmetric scheme has one zero point for all
// groups, so only the scale changes from group to group (a broadcast load).
template <int V, int Bits, bool Symmetric, bool Signed>
SHRINK_TARGET_AVX2 inline void groups_encode_avx2(const float* x, index_t full, const float* scales, const std::int32_t* zps, int qmin,
                                                  int qmax, std::uint8_t* out, index_t ahead) {
  constexpr index_t gs = 8 * V, out_bytes = gs * Bits / 8;
  if constexpr (Symmetric) {
    const int zp = zps[0];
    const __m256 vlo = _mm256_set1_ps(static_cast<float>(qmin - zp)), vhi = _mm256_set1_ps(static_cast<float>(qmax - zp));
    const __m256i vzp = _mm256_set1_epi32(zp);
    if (zp == 0) {
      for (index_t g = 0; g < full; ++g)
        group_encode_avx2<V, Bits, false, Signed>(x + g * gs, _mm256_broadcast_ss(scales + g), vlo, vhi, vzp, out + g * out_bytes, ahead);
    } else {
      for (index_t g = 0; g < full; ++g)
        group_encode_avx2<V, Bits, true, Signed>(x + g * gs, _mm256_broadcast_ss(scales + g), vlo, vhi, vzp, out + g * out_bytes, ahead);
    }
  } else {
    for (index_t g = 0; g < full; ++g) {
      const int zp = zps[g];
      group_encode_avx2<V, Bits, true, Signed>(x + g * gs, _mm256_broadcast_ss(scales + g), _mm256_set1_ps(static_cast<float>(qmin - zp)),
                                               _mm256_set1_ps(static_cast<float>(qmax - zp)), _mm256_set1_epi32(zp), out + g * out_bytes,
                                               ahead);
    }
  }
}

// Eight horizontal reductions at once: lane j of the result is min (max) over v[j].
template <bool Max>
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE __m256 minmax_avx2(__m256 x, __m256 y) {
  return Max ? _mm256_max_ps(x, y) : _mm256_min_ps(x, y);
}
template <bool Max>
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE __m256 reduce4_avx2(__m256 v0, __m256 v1, __m256 v2, __m256 v3) {
  const __m256 a = minmax_avx2<Max>(_mm256_unpacklo_ps(v0, v1), _mm256_unpackhi_ps(v0, v1));
  const __m256 b = minmax_avx2<Max>(_mm256_unpacklo_ps(v2, v3), _mm256_unpackhi_ps(v2, v3));
  return minmax_avx2<Max>(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}
template <bool Max>
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE __m256 reduce8_avx2(const __m256* v) {
  const __m256 c = reduce4_avx2<Max>(v[0], v[1], v[2], v[3]), d = reduce4_avx2<Max>(v[4], v[5], v[6], v[7]);
  return minmax_avx2<Max>(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
}

// params_from_range for eight groups in one go: the same IEEE operations lane by lane, so
// the results are bit-identical to the scalar formula (the sign of a zero min/max may differ,
// which changes neither scale nor zero point).
SHRINK_TARGET_AVX2 inline void params8_avx2(__m256 mins, __m256 maxs, const scheme& s, float* scales, std::int32_t* zps) {
  const __m256 zero = _mm256_setzero_ps(), eps = _mm256_set1_ps(k_scale_eps);
  const __m256 min_neg = _mm256_min_ps(mins, zero), max_pos = _mm256_max_ps(maxs, zero);
  const int qmin = s.qmin(), qmax = s.qmax();
  if (s.symmetric) {
    const __m256 amax = _mm256_max_ps(_mm256_sub_ps(zero, min_neg), max_pos);
    const __m256 scale = _mm256_max_ps(_mm256_div_ps(amax, _mm256_set1_ps(static_cast<float>(qmax - qmin) / 2.0f)), eps);
    _mm256_storeu_ps(scales, scale);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(zps), _mm256_set1_epi32(s.is_signed ? 0 : (1 << (s.bits - 1))));
    return;
  }
  const __m256 scale =
      _mm256_max_ps(_mm256_div_ps(_mm256_sub_ps(max_pos, min_neg), _mm256_set1_ps(static_cast<float>(qmax - qmin))), eps);
  const __m256 shifted = _mm256_round_ps(_mm256_div_ps(min_neg, scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256i zp = _mm256_cvttps_epi32(_mm256_sub_ps(_mm256_set1_ps(static_cast<float>(qmin)), shifted));
  zp = _mm256_min_epi32(_mm256_max_epi32(zp, _mm256_set1_epi32(qmin)), _mm256_set1_epi32(qmax));
  _mm256_storeu_ps(scales, scale);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(zps), zp);
}

template <int V>
SHRINK_TARGET_AVX2 inline index_t full_groups_avx2(const float* x, index_t full, const scheme& s, float* scales, std::int32_t* zps,
                                                   std::uint8_t* out, index_t ahead) {
  constexpr index_t gs = 8 * V;
  index_t k = 0;
  for (; k + 8 <= full; k += 8) {  // eight groups' parameters per step
    // Finiteness rides along: a * 0 is +-0 for finite a and NaN for Inf/NaN, and a NaN added
    // into an accumulator stays (one FMA per vector, four chains to hide its latency).
    const __m256 zero = _mm256_setzero_ps();
    __m256 lo[8], hi[8], poison[4] = {zero, zero, zero, zero};
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const float* g = x + (k + j) * gs;
      lo[j] = hi[j] = _mm256_loadu_ps(g);
      poison[0] = _mm256_fmadd_ps(lo[j], zero, poison[0]);
#pragma GCC unroll 16
      for (int v = 1; v < V; ++v) {
        const __m256 a = _mm256_loadu_ps(g + 8 * v);
        lo[j] = _mm256_min_ps(lo[j], a);
        hi[j] = _mm256_max_ps(hi[j], a);
        poison[v % 4] = _mm256_fmadd_ps(a, zero, poison[v % 4]);
      }
    }
    const __m256 bad = _mm256_or_ps(_mm256_or_ps(poison[0], poison[1]), _mm256_or_ps(poison[2], poison[3]));
    if (_mm256_movemask_ps(_mm256_cmp_ps(bad, bad, _CMP_UNORD_Q)) != 0) return k * gs + range_reference(x + k * gs, 8 * gs).bad;
    params8_avx2(reduce8_avx2<false>(lo), reduce8_avx2<true>(hi), s, scales + k, zps + k);
  }
  for (; k < full; ++k)
    if (!group_params_avx2<V>(x + k * gs, s, scales + k, zps + k)) return k * gs + range_reference(x + k * gs, gs).bad;
  const int qmin = s.qmin(), qmax = s.qmax();
  if (full == 0) return -1;
  if (s.storage_bits() == 4) {
    if (s.symmetric)
      groups_encode_avx2<V, 4, true, true>(x, full, scales, zps, qmin, qmax, out, ahead);
    else
      groups_encode_avx2<V, 4, false, true>(x, full, scales, zps, qmin, qmax, out, ahead);
  } else if (qmin < 0) {
    if (s.symmetric)
      groups_encode_avx2<V, 8, true, true>(x, full, scales, zps, qmin, qmax, out, ahead);
    else
      groups_encode_avx2<V, 8, false, true>(x, full, scales, zps, qmin, qmax, out, ahead);
  } else {
    if (s.symmetric)
      groups_encode_avx2<V, 8, true, false>(x, full, scales, zps, qmin, qmax, out, ahead);
    else
      groups_encode_avx2<V, 8, false, false>(x, full, scales, zps, qmin, qmax, out, ahead);
  }
  return -1;
}

SHRINK_TARGET_AVX2 inline index_t groups_avx2(const float* x, index_t cols, index_t gs, const scheme& s, float* scales,
                                             std::int32_t* zps, std::uint8_t* fields, std::uint8_t* out) {
  const int qmin = s.qmin(), qmax = s.qmax(), sb = s.storage_bits();
  const bool fixed = (sb == 8 || sb == 4) && (gs == 32 || gs == 64 || gs == 128);
  index_t c0 = 0, k = 0;
  if (fixed) {  // full groups straight to the packed row
    const index_t full = cols / gs;
    const index_t bad = gs == 32   ? full_groups_avx2<4>(x, full, s, scales, zps, out, cols)
                        : gs == 64 ? full_groups_avx2<8>(x, full, s, scales, zps, out, cols)
                                   : full_groups_avx2<16>(x, full, s, scales, zps, out, cols);
    if (bad >= 0) return bad;
    c0 = full * gs;
    k = full;
    if (c0 == cols) return -1;
  }
  const index_t first = c0;  // the remaining groups go through fields and a final pack
  for (; c0 < cols; c0 += gs, ++k) {
    const index_t n = std::min(gs, cols - c0);
    const run_range r = range_avx2(x + c0, n);
    if (r.bad >= 0) return c0 + r.bad;
    const params p = params_from_range(r.min, r.max, s);
    scales[k] = p.scale;
    zps[k] = p.zero_point;
    encode_avx2(x + c0, n, p, qmin, qmax, fields + c0);
  }
  pack_fields(fields + first, cols - first, sb, pack4_avx2, out + first * sb / 8);
  return -1;
}

inline constexpr row_ops k_avx2_ops{range_avx2, encode_avx2, pack4_avx2, groups_avx2};
#endif

inline const std::array<kernels::implementation<const row_ops*>, SHRINK_HAS_X86_PATHS ? 2 : 1> k_row_ops{{
    {kernels::isa::reference, 0, &k_reference_ops},
#if SHRINK_HAS_X86_PATHS
    {kernels::isa::avx2, 0, &k_avx2_ops},
#endif
}};

inline void pack_fields(const std::uint8_t* fields, index_t n, int storage_bits, void (*pack4)(const std::uint8_t*, index_t, std::uint8_t*),
                        std::uint8_t* out) {
  if (storage_bits == 8) {
    std::copy(fields, fields + n, out);
  } else if (storage_bits == 4) {
    pack4(fields, n, out);
  } else {
    index_t j = 0;
    for (; j + 3 < n; j += 4)
      out[j / 4] = static_cast<std::uint8_t>((fields[j] & 3u) | (fields[j + 1] & 3u) << 2 | (fields[j + 2] & 3u) << 4 |
                                             (fields[j + 3] & 3u) << 6);
    if (j < n) {
      unsigned b = 0;
      for (index_t k = 0; j + k < n; ++k) b |= (fields[j + k] & 3u) << (2 * k);
      out[j / 4] = static_cast<std::uint8_t>(b);
    }
  }
}

/// A granularity with its axis resolved to [0, rank) and checked against the shape.
inline granularity resolve(const granularity& g, const std::vector<index_t>& dims, const char* who) {
  const auto rank = static_cast<index_t>(dims.size());
  granularity r = g;
  switch (g.kind) {
    case granularity_kind::per_tensor: r.axis = 0; r.group_size = 0; break;
    case granularity_kind::per_channel:
      SHRINK_REQUIRE(g.axis >= -rank && g.axis < rank, errc::out_of_range, who, ": axis ", g.axis,
                     " is outside [", -rank, ", ", rank, ") for a rank-", rank, " tensor");
      r.axis = g.axis < 0 ? g.axis + rank : g.axis;
      r.group_size = 0;
      break;
    case granularity_kind::per_group:
      SHRINK_REQUIRE(g.group_size > 0, errc::invalid_argument, who, ": group size must be > 0, got ", g.group_size);
      SHRINK_REQUIRE(g.axis == -1 || g.axis == rank - 1, errc::invalid_argument, who,
                     ": groups run along the last (reduction) axis; axis must be -1 or ", rank - 1, ", got ", g.axis,
                     " (reshape so the reduction axis is last)");
      r.axis = rank - 1;
      break;
  }
  return r;
}

[[noreturn]] inline void raise_non_finite(const char* who, index_t flat, float value) {
  ::shrink::detail::raise(errc::non_finite, who, ": weights must be finite; element ", flat, " is ", value,
                          " (pass non_finite_policy::clamp to saturate Inf and map NaN to zero)");
}

inline void check_params(std::span<const params> p, std::size_t expected, const scheme& s) {
  SHRINK_REQUIRE(p.size() == expected, errc::shape_mismatch, "quantize: ", p.size(), " parameter sets given, this granularity needs ",
                 expected);
  for (std::size_t i = 0; i < p.size(); ++i) {
    SHRINK_REQUIRE(std::isfinite(p[i].scale) && p[i].scale > 0.0f, errc::invalid_argument, "quantize: scale ", i,
                   " must be finite and > 0, got ", p[i].scale);
    SHRINK_REQUIRE(p[i].zero_point >= s.qmin() && p[i].zero_point <= s.qmax(), errc::out_of_range, "quantize: zero point ", i,
                   " = ", p[i].zero_point, " is outside [", s.qmin(), ", ", s.qmax(), "]");
  }
}

/// The engine: contiguous row-major data, dims, resolved granularity; `given` empty means
/// min-max parameters (fused with encoding where a parameter's elements are contiguous).
inline void quantize_contiguous(const float* data, const std::vector<index_t>& dims, const options& o, std::span<const params> given,
                                quantized& out) {
  const char* who = "quantize";
  const scheme s = o.quant_scheme;
  s.validate(who);
  const granularity g = resolve(o.quant_granularity, dims, who);
  if (!(out.dims() == dims && out.quant_scheme() == s && out.quant_granularity() == g)) {
    // New storage is not zero-filled (every byte is written below), and is handed over only
    // once complete: an error (a NaN weight) leaves `out` as it was, never half-written.
    quantized fresh(dims, s, g, uninitialized);
    quantize_contiguous(data, dims, o, given, fresh);
    out = std::move(fresh);
    return;
  }
  SHRINK_REQUIRE(out.size() > 0, errc::empty_input, who, ": the tensor is empty; expected at least one element");
  const index_t rows = out.rows(), cols = out.cols(), rank = static_cast<index_t>(dims.size());
  const int qmin = s.qmin(), qmax = s.qmax(), sb = s.storage_bits();
  const bool clamp_bad = o.non_finite == non_finite_policy::clamp;
  const row_ops& ops = (o.round == rounding::half_even && !clamp_bad) ? *kernels::select(k_row_ops) : k_reference_ops;
  auto scales = out.scales();
  auto zps = out.zero_points();
  const auto n_params = scales.size();

  if (!given.empty()) {
    check_params(given, n_params, s);
    for (std::size_t i = 0; i < n_params; ++i) { scales[i] = given[i].scale; zps[i] = given[i].zero_point; }
    if (!clamp_bad) {
      const run_range r = ops.range(data, out.size());
      if (r.bad >= 0) raise_non_finite(who, r.bad, data[r.bad]);
    }
  }
  auto set_params = [&](std::size_t idx, const run_range& r) {
    const params p = (r.min <= r.max) ? compute_params(r.min, r.max, s) : compute_params(0.0f, 0.0f, s);
    scales[idx] = p.scale;
    zps[idx] = p.zero_point;
  };
  auto merge = [](run_range& into, const run_range& r, index_t offset) {
    into.min = std::min(into.min, r.min);
    into.max = std::max(into.max, r.max);
    if (into.bad < 0 && r.bad >= 0) into.bad = offset + r.bad;
  };

  std::vector<std::uint8_t> fields(static_cast<std::size_t>(cols));
  // Encodes a run of one parameter set into `fields` at column `c0` of row data `x`.
  auto encode_run = [&](const float* x, index_t flat0, index_t n, std::size_t pidx, std::uint8_t* f, index_t ahead = 0) {
    const params p{scales[pidx], zps[pidx]};
    if (&ops != &k_reference_ops || (o.round == rounding::half_even && !clamp_bad)) {
      ops.encode(x, n, p, qmin, qmax, f, ahead);
      return;
    }
    for (index_t i = 0; i < n; ++i)
      f[i] = static_cast<std::uint8_t>(quantize_value(x[i], p, s, o.round, o.seed, static_cast<std::uint64_t>(flat0 + i)));
  };
  auto emit_row = [&](index_t r) { pack_fields(fields.data(), cols, sb, ops.pack4, out.codes().data() + r * out.row_bytes()); };
  const bool direct = sb == 8;  // 8-bit fields are the codes: encode straight into the output row

  if (g.kind == granularity_kind::per_group) {
    const index_t gs = g.group_size, gpr = out.groups_per_row();
    const bool fused = given.empty() && o.round == rounding::half_even && !clamp_bad;
    for (index_t r = 0; r < rows; ++r) {
      const float* x = data + r * cols;
      if (fused) {
        const index_t bad = ops.groups(x, cols, gs, s, scales.data() + r * gpr, zps.data() + r * gpr, fields.data(),
                                       out.codes().data() + r * out.row_bytes());
        if (bad >= 0) raise_non_finite(who, r * cols + bad, x[bad]);
        continue;
      }
      for (index_t k = 0; k < gpr; ++k) {
        const index_t c0 = k * gs, n = std::min(gs, cols - c0);
        const auto pidx = static_cast<std::size_t>(r * gpr + k);
        if (given.empty()) {
          const run_range rr = ops.range(x + c0, n);
          if (rr.bad >= 0 && !clamp_bad) raise_non_finite(who, r * cols + c0 + rr.bad, x[c0 + rr.bad]);
          set_params(pidx, rr);
        }
        encode_run(x + c0, r * cols + c0, n, pidx, fields.data() + c0);
      }
      emit_row(r);
    }
    return;
  }

  const bool channel_last = g.kind == granularity_kind::per_channel && g.axis == rank - 1;
  if (g.kind == granularity_kind::per_channel && g.axis == 0 && rank >= 2) {
    // Each channel is a contiguous block of rows: observe it, then encode it while it is hot.
    const index_t block_rows = rows / dims[0];
    for (index_t ch = 0; ch < dims[0]; ++ch) {
      const float* x = data + ch * block_rows * cols;
      if (given.empty()) {
        const run_range rr = ops.range(x, block_rows * cols);
        if (rr.bad >= 0 && !clamp_bad) raise_non_finite(who, ch * block_rows * cols + rr.bad, x[rr.bad]);
        set_params(static_cast<std::size_t>(ch), rr);
      }
      for (index_t br = 0; br < block_rows; ++br) {
        const index_t r = ch * block_rows + br;
        if (direct) {
          encode_run(data + r * cols, r * cols, cols, static_cast<std::size_t>(ch), out.codes().data() + r * out.row_bytes(), cols);
          continue;
        }
        encode_run(data + r * cols, r * cols, cols, static_cast<std::size_t>(ch), fields.data(), cols);
        emit_row(r);
      }
    }
    return;
  }

  if (given.empty()) {
    // Two passes: ranges for every parameter set, then encoding.
    std::vector<run_range> ranges(n_params);
    for (index_t r = 0; r < rows; ++r) {
      const float* x = data + r * cols;
      if (channel_last) {
        for (index_t c = 0; c < cols; ++c) {
          const float v = x[c];
          if (!std::isfinite(v)) {
            if (!clamp_bad) raise_non_finite(who, r * cols + c, v);
            continue;
          }
          run_range& into = ranges[static_cast<std::size_t>(c)];
          into.min = std::min(into.min, v);
          into.max = std::max(into.max, v);
        }
      } else {
        const run_range rr = ops.range(x, cols);
        if (rr.bad >= 0 && !clamp_bad) raise_non_finite(who, r * cols + rr.bad, x[rr.bad]);
        merge(ranges[static_cast<std::size_t>(out.param_index(r, 0))], rr, r * cols);
      }
    }
    for (std::size_t i = 0; i < n_params; ++i) set_params(i, ranges[i]);
  }
  for (index_t r = 0; r < rows; ++r) {
    const float* x = data + r * cols;
    if (channel_last) {
      for (index_t c = 0; c < cols; ++c) encode_run(x + c, r * cols + c, 1, static_cast<std::size_t>(c), fields.data() + c);
    } else {
      if (direct) {
        encode_run(x, r * cols, cols, static_cast<std::size_t>(out.param_index(r, 0)), out.codes().data() + r * out.row_bytes(), cols);
        continue;
      }
      encode_run(x, r * cols, cols, static_cast<std::size_t>(out.param_index(r, 0)), fields.data(), cols);
    }
    emit_row(r);
  }
}

template <class T, std::size_t R>
std::vector<index_t> dims_of(const tensor_view<T, R>& x) {
  return std::vector<index_t>(x.shape().dims.begin(), x.shape().dims.end());
}

}  // namespace detail

/// Quantizes into `out`, reusing its buffers when its shape, scheme and granularity already
/// match (no allocation: the steady state of re-quantizing the same layer). `given` empty
/// means min-max parameters; otherwise one parameter set per scale, in scales() order.
template <class T, std::size_t R>
  requires std::is_same_v<std::remove_const_t<T>, float>
void quantize_into(const tensor_view<T, R>& x, const options& o, std::span<const params> given, quantized& out) {
  const auto dims = detail::dims_of(x);
  if (x.is_contiguous() || x.empty()) return detail::quantize_contiguous(x.data(), dims, o, given, out);
  const tensor<float, R> copy{tensor_view<const float, R>(x)};
  detail::quantize_contiguous(copy.data(), dims, o, given, out);
}

/// Quantizes `x` with min-max parameters (PyTorch MinMaxObserver / PerChannelMinMaxObserver
/// semantics per parameter set) and encodes it as ONNX QuantizeLinear does. Strided views are
/// copied first. Errors: bits outside [2, 8], an empty tensor, an axis out of range, group
/// size 0, or a NaN/Inf weight (unless options::non_finite is clamp).
template <class T, std::size_t R>
  requires std::is_same_v<std::remove_const_t<T>, float>
quantized quantize(const tensor_view<T, R>& x, const options& o = {}) {
  quantized out;
  quantize_into(x, o, {}, out);
  return out;
}

/// Quantizes with given parameters, one per parameter set of the granularity (from an
/// observer, or a file), in the order quantized::scales() uses.
template <class T, std::size_t R>
  requires std::is_same_v<std::remove_const_t<T>, float>
quantized quantize(const tensor_view<T, R>& x, const options& o, std::span<const params> given) {
  SHRINK_REQUIRE(!given.empty(), errc::invalid_argument, "quantize: no parameters given; expected one per parameter set");
  quantized out;
  quantize_into(x, o, given, out);
  return out;
}

/// Convenience for a flat span (rank 1).
inline quantized quantize(std::span<const float> x, const options& o = {}) {
  return quantize(tensor_view<const float, 1>(x.data(), shape<1>{x.size()}), o);
}

/// Expands a quantized tensor back to floats, exactly scale * (q - zero_point).
inline std::vector<float> dequantize(const quantized& q) { return q.dequantize(); }

}  // namespace shrink::quant
