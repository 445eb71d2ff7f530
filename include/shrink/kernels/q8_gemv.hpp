// q8_gemv.hpp: integer-activation GEMVs (llama.cpp's Q4_0×Q8_0 idea): activations quantized to int8 once per call, int4 per-group weights and 4-bit codebook weights with integer-coded centroids, exact integer dots on every path.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <utility>

#include <xsimd/xsimd.hpp>

#include "../core/aligned_buffer.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "lut_gemv.hpp"
#include "weight_only_gemv.hpp"
#include "x86_reduce.hpp"

namespace shrink::kernels {

// ---------------------------------------------------------------------------------------
// Activations. x[K] fp32 → q[K] int8 with one scale per block of `block` elements (block 0:
// one scale for the tensor): d = max|x_block| / 127, q = round_half_even(x / d) clamped
// to [−127, 127] (d = 0 → q = 0). Symmetric, so −128 never occurs, which keeps every
// vpmaddubsw below exact. This is the accuracy cost of the integer paths: |x − d·q| ≤ d/2
// per element (docs/kernels.md, "Integer-activation GEMV").

/// Depth granularity of q8_activations: every weight group (32/64/128) and the codebook step
/// (128) divides it, so no kernel needs a tail.
inline constexpr index_t k_q8_depth_step = 128;

struct q8_activations {
  index_t depth = 0;
  index_t block = 0;         ///< elements per scale; 0 = one scale for the tensor
  index_t depth_padded = 0;  ///< depth rounded up to k_q8_depth_step (q = 0 past depth)
  aligned_buffer<std::int8_t> q;        ///< depth_padded
  aligned_buffer<float> scales;         ///< one per block (1 when block = 0)
  aligned_buffer<std::int32_t> sums32;  ///< Σ q over each 32 elements (depth_padded / 32), for offset weights
};

/// Allocates the (reusable) quantized-activation buffer; quantize_activations fills it
/// without allocating.
inline q8_activations make_q8_activations(index_t depth, index_t block) {
  SHRINK_REQUIRE(depth > 0, errc::empty_input, "make_q8_activations: depth must be > 0, got ", depth);
  SHRINK_REQUIRE(block == 0 || block == 32 || block == 64 || block == 128, errc::invalid_argument,
                 "make_q8_activations: block must be 0 (per tensor), 32, 64 or 128, got ", block);
  q8_activations a;
  a.depth = depth;
  a.block = block;
  a.depth_padded = (depth + k_q8_depth_step - 1) / k_q8_depth_step * k_q8_depth_step;
  a.q = aligned_buffer<std::int8_t>(static_cast<std::size_t>(a.depth_padded));
  a.scales = aligned_buffer<float>(static_cast<std::size_t>(block == 0 ? 1 : (depth + block - 1) / block));
  a.sums32 = aligned_buffer<std::int32_t>(static_cast<std::size_t>(a.depth_padded / 32));
  return a;
}

namespace q8_detail {

/// Round half to even, independent of the floating-point environment's rounding mode.
inline float round_half_even(float v) noexcept {
  const float f = std::floor(v);
  const float diff = v - f;  // exact for |v| < 2^23
  if (diff > 0.5f) return f + 1.0f;
  if (diff < 0.5f) return f;
  return std::fmod(f, 2.0f) == 0.0f ? f : f + 1.0f;
}

/// q = round_half_even(v / d) in [−127, 127] for d > 0 (|v| ≤ 127·d up to rounding), 0 for
/// d = 0. A division, not a multiply by 1/d: 1/d overflows for subnormal d.
inline std::int8_t quantize_one(float v, float d) noexcept {
  if (!(d > 0.0f)) return 0;
  return static_cast<std::int8_t>(std::clamp(round_half_even(v / d), -127.0f, 127.0f));
}

}  // namespace q8_detail

namespace q8_detail {

/// Writes q and scales for elements [0, k) (the checks and the padding are the caller's).
using quantize_fn = void (*)(const float* x, index_t k, index_t block, std::int8_t* q, float* scales);

/// The scalar quantizer (the oracle of the vector one). Throws non_finite at the first
/// non-finite element.
inline void quantize_reference(const float* x, index_t k, index_t block, std::int8_t* q, float* scales) {
  for (index_t b0 = 0, bi = 0; b0 < k; b0 += block, ++bi) {
    const index_t b1 = std::min(k, b0 + block);
    float amax = 0.0f;
    for (index_t i = b0; i < b1; ++i) {
      const float v = x[i];
      SHRINK_REQUIRE(std::isfinite(v), errc::non_finite, "quantize_activations: x[", i, "] = ", v, " is not finite");
      amax = std::max(amax, std::abs(v));
    }
    const float d = amax / 127.0f;
    scales[bi] = d;
    for (index_t i = b0; i < b1; ++i) q[i] = quantize_one(x[i], d);
  }
}

#if SHRINK_HAS_X86_PATHS
// ---- avx2: the same operations 8 at a time — |x| max, then q = clamp(round(x / d)) with an
// IEEE division (vdivps rounds exactly as the scalar division) and vroundps in
// round-to-nearest-even mode (the immediate, not MXCSR), so every q and d is identical to the
// scalar quantizer's. A block holding a non-finite value is searched for the first one, which
// raises the same error as the scalar code. ≈ 21 µs → ≈ 4 µs for K = 8192.
SHRINK_TARGET_AVX2 inline void quantize_avx2(const float* x, index_t k, index_t block, std::int8_t* q, float* scales) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256 big = _mm256_set1_ps(std::numeric_limits<float>::max());
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  for (index_t b0 = 0, bi = 0; b0 < k; b0 += block, ++bi) {
    const index_t b1 = std::min(k, b0 + block);
    __m256 m = _mm256_setzero_ps(), finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    index_t i = b0;
    for (; i + 8 <= b1; i += 8) {
      const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask);
      finite = _mm256_and_ps(finite, _mm256_cmp_ps(a, big, _CMP_LE_OQ));  // false for inf and NaN
      m = _mm256_max_ps(m, a);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, m);
    float amax = 0.0f;
    for (float v : lanes) amax = std::max(amax, v);
    bool ok = _mm256_movemask_ps(finite) == 0xFF;
    for (; i < b1; ++i) {
      ok = ok && std::isfinite(x[i]);
      amax = std::max(amax, std::abs(x[i]));
    }
    if (!ok)
      for (index_t j = b0; j < b1; ++j)
        SHRINK_REQUIRE(std::isfinite(x[j]), errc::non_finite, "quantize_activations: x[", j, "] = ", x[j],
                       " is not finite");
    const float d = amax / 127.0f;
    scales[bi] = d;
    i = b0;
    if (d > 0.0f) {
      const __m256 dv = _mm256_set1_ps(d);
      for (; i + 16 <= b1; i += 16) {
        const __m256 r0 = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(x + i), dv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256 r1 = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(x + i + 8), dv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256i i0 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r0, lo), hi));
        const __m256i i1 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r1, lo), hi));
        // packs works per 128-bit lane: [i0.lo i1.lo | i0.hi i1.hi] → reorder to depth order.
        const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xD8);
        const __m128i b8 = _mm_packs_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), b8);
      }
    }
    for (; i < b1; ++i) q[i] = quantize_one(x[i], d);
  }
}
#endif

inline const std::array<implementation<quantize_fn>, SHRINK_HAS_X86_PATHS ? 2 : 1> k_quantize{{
    {isa::reference, 0, quantize_reference},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, quantize_avx2},
#endif
}};

}  // namespace q8_detail

/// Quantizes x into `out` (made by make_q8_activations for x.size() elements). Never allocates.
inline void quantize_activations(std::span<const float> x, q8_activations& out) {
  SHRINK_REQUIRE(!x.empty(), errc::empty_input, "quantize_activations: x is empty");
  SHRINK_REQUIRE(x.data() != nullptr, errc::invalid_argument, "quantize_activations: null x");
  SHRINK_REQUIRE(static_cast<index_t>(x.size()) == out.depth &&
                     out.q.size() == static_cast<std::size_t>(out.depth_padded) && out.depth_padded % 32 == 0,
                 errc::shape_mismatch, "quantize_activations: x has ", x.size(),
                 " elements, the buffer was made for depth ", out.depth, " (use make_q8_activations)");
  const index_t k = out.depth;
  select(q8_detail::k_quantize)(x.data(), k, out.block == 0 ? k : out.block, out.q.data(), out.scales.data());
  for (index_t i = k; i < out.depth_padded; ++i) out.q[static_cast<std::size_t>(i)] = 0;
  for (index_t s = 0; s < out.depth_padded / 32; ++s) {
    std::int32_t sum = 0;
    for (index_t i = 0; i < 32; ++i) sum += out.q[static_cast<std::size_t>(s * 32 + i)];
    out.sums32[static_cast<std::size_t>(s)] = sum;
  }
}

/// Allocating convenience form.
inline q8_activations quantize_activations(std::span<const float> x, index_t block) {
  SHRINK_REQUIRE(!x.empty(), errc::empty_input, "quantize_activations: x is empty");
  auto out = make_q8_activations(static_cast<index_t>(x.size()), block);
  quantize_activations(x, out);
  return out;
}

// ---------------------------------------------------------------------------------------
// Int4 per-group weights for the q8 path. Weights are stored offset, u = w + 8 ∈ [0, 15],
// so vpmaddubsw(u, q) is exact (|15·127·2| < 32767) and Σ w·q = Σ u·q − 8·Σ q, with Σ q
// per 32 elements precomputed by quantize_activations. Layout (docs/kernels.md): panels of
// 32 rows = 4 blocks of 8 rows; per (panel, group) group/8 chunk rows of 128 bytes, in
// chunk row c the 32-byte chunk of block b at 32·b, whose byte 4r + j holds row 8b + r's
// element 8c + j in its low nibble and 8c + 4 + j in its high nibble, then the group's 32
// scales (fp16 or fp32). So a panel — weights and scales — is one sequential stream. One
// chunk unpacks (and / shift+and) into two registers of 8 rows × 4 depth, which a broadcast
// activation quad multiplies: the 8 row sums land in 8 lanes without horizontal adds.
// Per (row, group): y[n] = fma(s[n,g]·d_x[g], float(idot[n,g]), y[n]), g ascending; the
// same operations in the same order on every path, so results are bit-identical.

struct packed_s4q8_weights {
  index_t rows = 0, depth = 0;
  index_t group = 0, groups = 0, depth_padded = 0;
  index_t panels = 0;  ///< ceil(rows / 32); rows past `rows` are padding (weight 0, scale 0)
  scale_format scales_format = scale_format::f32;
  index_t group_bytes = 0;  ///< per (panel, group): 16 · group bytes of weights + 32 scales (64 or 128 bytes)
  aligned_buffer<std::uint8_t> data;  ///< panels · groups · group_bytes; weight 0 and scale 0 past rows

  [[nodiscard]] std::size_t group_offset(index_t n, index_t g) const noexcept {
    return static_cast<std::size_t>(((n / 32) * groups + g) * group_bytes);
  }
  [[nodiscard]] std::size_t byte_of(index_t n, index_t k) const noexcept {
    const index_t b = n / 8 % 4, r = n % 8, kk = k % group;
    return group_offset(n, k / group) + static_cast<std::size_t>(kk / 8 * 128 + 32 * b + 4 * r + kk % 4);
  }
  /// The signed weight W[n, k] ∈ [−8, 7].
  [[nodiscard]] int at(index_t n, index_t k) const noexcept {
    const int shift = ((k % group) % 8) / 4 * 4;
    return static_cast<int>((data[byte_of(n, k)] >> shift) & 0xF) - 8;
  }
  /// Where s[n, g] is stored (fp16 bits or fp32, as scales_format says).
  [[nodiscard]] std::size_t scale_byte(index_t n, index_t g) const noexcept {
    const std::size_t size = scales_format == scale_format::f32 ? 4 : 2;
    return group_offset(n, g) + static_cast<std::size_t>(16 * group) + size * static_cast<std::size_t>(n % 32);
  }
  [[nodiscard]] float scale(index_t n, index_t g) const noexcept {
    const std::uint8_t* src = data.data() + scale_byte(n, g);
    if (scales_format == scale_format::f32) {
      float v;
      std::memcpy(&v, src, sizeof v);
      return v;
    }
    std::uint16_t bits;
    std::memcpy(&bits, src, sizeof bits);
    return half_bits_to_float(bits);
  }
};

/// Re-lays int4 weights packed by pack_s4_weights (group 32, 64 or 128; fp32 or fp16
/// scales, kept in their format) for gemv_s4_q8.
inline packed_s4q8_weights pack_s4q8_weights(const packed_wq_weights& w) {
  SHRINK_REQUIRE(w.bits == 4 && w.rows > 0 && w.data.size() == static_cast<std::size_t>(w.rows * w.row_bytes),
                 errc::invalid_argument, "pack_s4q8_weights: expects int4 weights from pack_s4_weights, got ", w.bits,
                 "-bit, ", w.rows, " rows");
  SHRINK_REQUIRE(w.group == 32 || w.group == 64 || w.group == 128, errc::invalid_argument,
                 "pack_s4q8_weights: group must be 32, 64 or 128 (not one scale per row), got ", w.group);
  packed_s4q8_weights p;
  p.rows = w.rows;
  p.depth = w.depth;
  p.group = w.group;
  p.groups = w.groups;
  p.depth_padded = w.depth_padded;
  p.panels = (w.rows + 31) / 32;
  p.scales_format = w.scales_format;
  const index_t scale_size = p.scales_format == scale_format::f32 ? 4 : 2;
  p.group_bytes = 16 * p.group + 32 * scale_size;
  // Huge pages are asked for before the first touch; every weight byte is then set to 0x88
  // (offset 8 = weight 0, the padding) and every scale to 0 before the real ones are written.
  p.data = aligned_buffer<std::uint8_t>(static_cast<std::size_t>(p.panels * p.groups * p.group_bytes), uninitialized);
  prefer_huge_pages(p.data.data(), p.data.size_bytes());
  for (index_t g = 0; g < p.panels * p.groups; ++g) {
    std::uint8_t* grp = p.data.data() + g * p.group_bytes;
    std::fill(grp, grp + 16 * p.group, std::uint8_t{0x88});
    std::fill(grp + 16 * p.group, grp + p.group_bytes, std::uint8_t{0});
  }
  for (index_t n = 0; n < w.rows; ++n) {
    for (index_t k = 0; k < w.depth; ++k) {
      const auto u = static_cast<std::uint8_t>(w.at(n, k) + 8);
      const int shift = ((k % p.group) % 8) / 4 * 4;
      std::uint8_t& b = p.data[p.byte_of(n, k)];
      b = static_cast<std::uint8_t>((b & ~(0xF << shift)) | (u << shift));
    }
    for (index_t g = 0; g < w.groups; ++g) {
      const auto src = static_cast<std::size_t>(n * w.groups + g);
      std::uint8_t* dst = p.data.data() + p.scale_byte(n, g);
      if (p.scales_format == scale_format::f32)
        std::memcpy(dst, &w.scales_f32[src], 4);
      else
        std::memcpy(dst, &w.scales_f16[src], 2);
    }
  }
  return p;
}

namespace q8_detail {

/// y[n] for the rows of panels [p0, p1) (32 rows each).
using s4_fn = void (*)(const q8_activations& x, const packed_s4q8_weights& w, index_t p0, index_t p1, float* y);

inline float x_scale(const q8_activations& x, index_t g) noexcept {
  return x.scales[static_cast<std::size_t>(x.block == 0 ? 0 : g)];
}

// ---- reference: the oracle. Signed weights times q (no offset algebra), exact in int32,
// then the fp32 formula with std::fma.
inline void s4_reference(const q8_activations& x, const packed_s4q8_weights& w, index_t p0, index_t p1, float* y) {
  for (index_t n = p0 * 32; n < std::min(w.rows, p1 * 32); ++n) {
    float acc = 0.0f;
    for (index_t g = 0; g < w.groups; ++g) {
      std::int32_t dot = 0;
      for (index_t k = g * w.group; k < (g + 1) * w.group; ++k)
        dot += w.at(n, k) * static_cast<std::int32_t>(x.q[static_cast<std::size_t>(k)]);
      const float c = w.scale(n, g) * x_scale(x, g);
      acc = std::fma(c, static_cast<float>(dot), acc);
    }
    y[n] = acc;
  }
}

// ---- generic (xsimd): a group of one row is unpacked to int32 (offset removed) and dotted
// with the activations widened on load; the fp32 step as the reference.
inline void s4_generic(const q8_activations& x, const packed_s4q8_weights& w, index_t p0, index_t p1, float* y) {
  using b32 = xsimd::batch<std::int32_t>;
  constexpr index_t lanes = static_cast<index_t>(b32::size);
  alignas(64) std::int32_t wt[128];
  for (index_t n = p0 * 32; n < std::min(w.rows, p1 * 32); ++n) {
    float acc = 0.0f;
    for (index_t g = 0; g < w.groups; ++g) {
      const std::uint8_t* base = w.data.data() + w.byte_of(n, g * w.group);  // chunk 0, row n's 4 bytes
      for (index_t c = 0; c < w.group / 8; ++c)
        for (index_t j = 0; j < 4; ++j) {
          const unsigned v = base[c * 128 + j];
          wt[8 * c + j] = static_cast<std::int32_t>(v & 0xF) - 8;
          wt[8 * c + 4 + j] = static_cast<std::int32_t>(v >> 4) - 8;
        }
      b32 s(0);
      const std::int8_t* xq = x.q.data() + g * w.group;
      for (index_t i = 0; i < w.group; i += lanes)
        s += b32::load_aligned(wt + i) * xsimd::load_as<std::int32_t>(xq + i, xsimd::unaligned_mode());
      const std::int32_t dot = xsimd::hadd(s);
      const float c = w.scale(n, g) * x_scale(x, g);
      acc = std::fma(c, static_cast<float>(dot), acc);
    }
    y[n] = acc;
  }
}

#if SHRINK_HAS_X86_PATHS
// ---- avx2: per (panel of 4 row blocks, group) and per 32 depth one 512-byte step: each
// 32-byte chunk → two registers of u4 (8 rows × 4 depth); vpmaddubsw with the broadcast
// activation quad gives 2 s16 per row, so each quad feeds 8 vpmaddubsw; the 8 products of
// 32 elements go into one s16 chain per block (≤ 8·3810 = 30480, exact; vpaddw wraps, so
// only the final sum's range matters), widened once by vpmaddwd(·, 1) into the 8 row lanes.
// Then −8·Σq, cvtdq2ps, and one fma per group. Per 8 rows × 32 depth: 4 loads, 12 unpack
// (vpand, vpsrlw+vpand), 8 vpmaddubsw, 7 vpaddw, 1 vpmaddwd + the per-group epilogue: ≈ 35
// vector ALU ops, so the loop runs at the ALU limit (4 pipes) in about the time DRAM takes
// to deliver its 128 bytes; only prefetching far enough ahead lets the two overlap. The
// core's own prefetchers keep too few misses in flight here (no software prefetch: 1.7 ms
// at 8192², compute + memory serialised), so per 512-byte step the kernel prefetches the
// panel stream 4 KiB ahead into L1 and 32 KiB ahead into L2, one prefetch per line each,
// and the group's scale lines likewise (docs/kernels.md, "int4 weights", for the measurements).
inline constexpr index_t k_panel_prefetch_l1 = 4096;   // bytes ahead in the panel stream, into L1
inline constexpr index_t k_panel_prefetch_l2 = 32768;  // bytes ahead in the panel stream, into L2

/// Prefetches the `Lines` 64-byte lines at `at` + the L1 and the L2 distance.
template <int Lines>
inline void panel_prefetch(const std::uint8_t* at) noexcept {
#pragma GCC unroll 8
  for (int l = 0; l < Lines; ++l) _mm_prefetch(reinterpret_cast<const char*>(at + k_panel_prefetch_l1 + 64 * l), _MM_HINT_T0);
#pragma GCC unroll 8
  for (int l = 0; l < Lines; ++l) _mm_prefetch(reinterpret_cast<const char*>(at + k_panel_prefetch_l2 + 64 * l), _MM_HINT_T1);
}

/// The scales of block b's 8 rows as fp32, from a group's scale lines.
template <bool F16>
SHRINK_TARGET_AVX2 inline __m256 s4_scales(const std::uint8_t* scales, int b) noexcept {
  if constexpr (F16) return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(scales + 16 * b)));
  else return _mm256_load_ps(reinterpret_cast<const float*>(scales + 32 * b));
}

/// The 8 rows of block b of panel p from the 8 lanes of `v`, skipping padded rows.
inline void s4_store_block(const packed_s4q8_weights& w, index_t p, int b, const float* v, float* y) noexcept {
  const index_t n0 = p * 32 + 8 * b;
  for (index_t r = 0; r < 8 && n0 + r < w.rows; ++r) y[n0 + r] = v[r];
}

/// OneStep: group 32, one step per group, straight-line (1.03–1.09 ms at 8192² against
/// 1.10–1.32 through the run-time loop below).
template <bool F16, bool OneStep>
SHRINK_TARGET_AVX2 inline void s4_avx2_panel(const q8_activations& x, const packed_s4q8_weights& w, index_t p,
                                             float* y) {
  const index_t groups = w.groups;
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  const index_t xs_step = x.block != 0 ? 1 : 0;
  const std::uint8_t* wp = w.data.data() + w.group_offset(p * 32, 0);
  const std::int8_t* xq = x.q.data();
  const std::int32_t* s32 = x.sums32.data();
  const float* xs = x.scales.data();
  const index_t steps = OneStep ? 1 : w.group / 32;
  __m256 acc[4];
#pragma GCC unroll 4
  for (int b = 0; b < 4; ++b) acc[b] = _mm256_setzero_ps();
  for (index_t g = 0; g < groups; ++g) {
    __m256i i32[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    std::int32_t sq = 0;
    // A run-time trip count and no unrolling: with group / 32 known, GCC peels the loop and
    // hoists all the group's prefetches to its start, and bursts of 17 + 17 (group 64) or
    // 33 + 33 (group 128) overflow the miss buffers, which then drop prefetches (8192²:
    // group 64 1.35–1.56 ms, group 128 1.35–1.50, instead of ≈ 1.0).
#pragma GCC unroll 1
    for (index_t e = 0; e < steps; ++e) {  // 32 depth = 4 chunks per block = one 512-byte step
      panel_prefetch<8>(wp);
      __m256i s16[4];
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        std::int32_t qa, qb;
        std::memcpy(&qa, xq + 8 * c, 4);
        std::memcpy(&qb, xq + 8 * c + 4, 4);
        const __m256i xa = _mm256_set1_epi32(qa), xb = _mm256_set1_epi32(qb);
#pragma GCC unroll 4
        for (int b = 0; b < 4; ++b) {
          const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(wp + 128 * c + 32 * b));
          const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
          const __m256i prod = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xa), _mm256_maddubs_epi16(hi, xb));
          s16[b] = c == 0 ? prod : _mm256_add_epi16(s16[b], prod);
          // Keeps the chain in order: GCC otherwise reassociates the integer adds into a tree
          // at the end and spills the vpmaddubsw results (measured: ≈ 20 stack stores per step).
          __asm__("" : "+x"(s16[b]));
        }
      }
#pragma GCC unroll 4
      for (int b = 0; b < 4; ++b) {
        const __m256i t = _mm256_madd_epi16(s16[b], ones);
        i32[b] = _mm256_add_epi32(i32[b], t);
      }
      sq += s32[e];
      wp += 512;
      xq += 32;
    }
    s32 += steps;
    const __m256i corr = _mm256_set1_epi32(8 * sq);
    const __m256 dx = _mm256_set1_ps(*xs);
    xs += xs_step;
    panel_prefetch<F16 ? 1 : 2>(wp);  // the scales, 32 fp16 or fp32 after the weights
#pragma GCC unroll 4
    for (int b = 0; b < 4; ++b) {
      const __m256 sc = s4_scales<F16>(wp, b);
      acc[b] = _mm256_fmadd_ps(_mm256_mul_ps(sc, dx), _mm256_cvtepi32_ps(_mm256_sub_epi32(i32[b], corr)), acc[b]);
    }
    wp += F16 ? 64 : 128;
  }
#pragma GCC unroll 4
  for (int b = 0; b < 4; ++b) {
    alignas(32) float out[8];
    _mm256_store_ps(out, acc[b]);
    s4_store_block(w, p, b, out, y);
  }
}

// ---- avx512_vnni: a zmm holds one 64-byte half of a step, the same chunk of two row
// blocks (16 rows × 4 depth), so one broadcast activation quad serves both, and vpdpbusd
// (u8 × s8, four products into each int32 lane, no saturation) replaces vpmaddubsw + the
// s16 sums + vpmaddwd: 16 row sums land directly in 16 lanes. Same stream, prefetches and
// fp32 steps as the AVX2 panel. Tested through SIMDe only (this machine has no AVX-512).
template <bool F16>
SHRINK_TARGET_AVX512_VNNI inline void s4_avx512_vnni_panel(const q8_activations& x, const packed_s4q8_weights& w,
                                                           index_t p, float* y) {
  const index_t groups = w.groups;
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const index_t xs_step = x.block != 0 ? 1 : 0;
  const std::uint8_t* wp = w.data.data() + w.group_offset(p * 32, 0);
  const std::int8_t* xq = x.q.data();
  const std::int32_t* s32 = x.sums32.data();
  const float* xs = x.scales.data();
  const index_t steps = w.group / 32;
  // The fp32 steps run on 256-bit quarters (AVX2 + F16C): SIMDe 0.7.4 lacks
  // _mm512_cvtepi32_ps, and GCC 12's 256→512 casts trip -Wmaybe-uninitialized.
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  alignas(64) std::int32_t lanes[32];
  for (index_t g = 0; g < groups; ++g) {
    __m512i i32[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
    std::int32_t sq = 0;
#pragma GCC unroll 1
    for (index_t e = 0; e < steps; ++e) {  // as in s4_avx2_panel: prefetches stay spread out
      panel_prefetch<8>(wp);
      for (int c = 0; c < 4; ++c) {
        std::int32_t qa, qb;
        std::memcpy(&qa, xq + 8 * c, 4);
        std::memcpy(&qb, xq + 8 * c + 4, 4);
        const __m512i xa = _mm512_set1_epi32(qa), xb = _mm512_set1_epi32(qb);
        for (int h = 0; h < 2; ++h) {  // blocks 2h and 2h + 1
          const __m512i v = _mm512_load_si512(wp + 128 * c + 64 * h);
          i32[h] = _mm512_dpbusd_epi32(i32[h], _mm512_and_si512(v, m4), xa);
          i32[h] = _mm512_dpbusd_epi32(i32[h], _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), xb);
        }
      }
      sq += s32[e];
      wp += 512;
      xq += 32;
    }
    s32 += steps;
    const __m512i corr = _mm512_set1_epi32(8 * sq);
    _mm512_store_si512(lanes, _mm512_sub_epi32(i32[0], corr));
    _mm512_store_si512(lanes + 16, _mm512_sub_epi32(i32[1], corr));
    const __m256 dx = _mm256_set1_ps(*xs);
    xs += xs_step;
    panel_prefetch<F16 ? 1 : 2>(wp);
    for (int b = 0; b < 4; ++b) {
      const __m256 sc = s4_scales<F16>(wp, b);
      acc[b] = _mm256_fmadd_ps(_mm256_mul_ps(sc, dx),
                               _mm256_cvtepi32_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(lanes + 8 * b))), acc[b]);
    }
    wp += F16 ? 64 : 128;
  }
  for (int b = 0; b < 4; ++b) {
    alignas(32) float out[8];
    _mm256_store_ps(out, acc[b]);
    s4_store_block(w, p, b, out, y);
  }
}

inline void s4_avx512_vnni(const q8_activations& x, const packed_s4q8_weights& w, index_t p0, index_t p1, float* y) {
  for (index_t p = p0; p < p1; ++p)
    w.scales_format == scale_format::f16 ? s4_avx512_vnni_panel<true>(x, w, p, y) : s4_avx512_vnni_panel<false>(x, w, p, y);
}

template <bool F16>
SHRINK_TARGET_AVX2 inline void s4_avx2_format(const q8_activations& x, const packed_s4q8_weights& w, index_t p0,
                                              index_t p1, float* y) {
  for (index_t p = p0; p < p1; ++p)
    w.group == 32 ? s4_avx2_panel<F16, true>(x, w, p, y) : s4_avx2_panel<F16, false>(x, w, p, y);
}

inline void s4_avx2(const q8_activations& x, const packed_s4q8_weights& w, index_t p0, index_t p1, float* y) {
  w.scales_format == scale_format::f16 ? s4_avx2_format<true>(x, w, p0, p1, y) : s4_avx2_format<false>(x, w, p0, p1, y);
}
#endif

inline const std::array<implementation<s4_fn>, SHRINK_HAS_X86_PATHS ? 4 : 2> k_s4{{
    {isa::reference, 0, s4_reference},
    {isa::generic, 0, s4_generic},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, s4_avx2},
    {isa::avx512_vnni, 0, s4_avx512_vnni},
#endif
}};

}  // namespace q8_detail

/// y[N] = W·x̂ with x̂ = x quantized by quantize_activations (block 0 or the weights' group)
/// and W int4 per-group: y[n] = Σ_g (s[n,g]·d_x[g]) · Σ_{k∈g} w[n,k]·q[k], the inner sums
/// exact int32, the outer in fp32 (fma, g ascending) — bit-identical on every path and
/// thread count. Running never allocates.
inline void gemv_s4_q8(const q8_activations& x, const packed_s4q8_weights& w, std::span<float> y,
                       const context& ctx = {}) {
  SHRINK_REQUIRE(w.rows > 0 && (w.group == 32 || w.group == 64 || w.group == 128) && w.panels == (w.rows + 31) / 32 &&
                     w.groups * w.group == w.depth_padded && w.depth_padded >= w.depth &&
                     w.group_bytes == 16 * w.group + (w.scales_format == scale_format::f32 ? 128 : 64) &&
                     w.data.size() == static_cast<std::size_t>(w.panels * w.groups * w.group_bytes),
                 errc::invalid_argument, "gemv_s4_q8: packed weights are empty or inconsistent; use pack_s4q8_weights");
  SHRINK_REQUIRE(x.depth == w.depth && x.q.size() == static_cast<std::size_t>(x.depth_padded) &&
                     x.depth_padded >= w.depth_padded,
                 errc::shape_mismatch, "gemv_s4_q8: activations have depth ", x.depth, ", the weights ", w.depth);
  SHRINK_REQUIRE(x.block == 0 || x.block == w.group, errc::invalid_argument, "gemv_s4_q8: activation block ", x.block,
                 " must be 0 (per tensor) or the weights' group ", w.group);
  SHRINK_REQUIRE(x.sums32.size() == static_cast<std::size_t>(x.depth_padded / 32) &&
                     x.scales.size() >= static_cast<std::size_t>(x.block == 0 ? 1 : w.groups),
                 errc::invalid_argument, "gemv_s4_q8: activations are inconsistent; use make_q8_activations");
  SHRINK_REQUIRE(static_cast<index_t>(y.size()) == w.rows, errc::shape_mismatch, "gemv_s4_q8: y has ", y.size(),
                 " elements, expected ", w.rows);
  SHRINK_REQUIRE(y.data() != nullptr, errc::invalid_argument, "gemv_s4_q8: null output");
  const auto fn = select(q8_detail::k_s4);
  parallel_for(ctx, 0, w.panels, 1, [&](index_t p0, index_t p1) { fn(x, w, p0, p1, y.data()); });
}

/// Quantizes x (into the caller's buffer `xq`, made by make_q8_activations) and runs
/// gemv_s4_q8: the whole integer-activation GEMV of one call, without allocating.
inline void gemv_s4_q8(std::span<const float> x, q8_activations& xq, const packed_s4q8_weights& w, std::span<float> y,
                       const context& ctx = {}) {
  quantize_activations(x, xq);
  gemv_s4_q8(xq, w, y, ctx);
}

// ---------------------------------------------------------------------------------------
// 4-bit codebook weights for the q8 path. The 16 centroids (per tensor or per row) are coded
// as small integers, one of two ways (centroid_code). Indices are laid out in panels of 4
// rows, each one sequential stream: per step of 128 depth the 4 rows' 64 bytes follow each
// other (256 bytes), and a row's 64 bytes are two chunks of 64 weights, byte j of a chunk
// holding element j in its low nibble and element 32 + j in its high nibble. One 32-byte
// load gives two registers of 32 indices in depth order; vpshufb looks the 16 integer
// centroids up (the table is one register). Activations use one scale per tensor (block 0),
// so a row's dot is one exact int32 (docs/kernels.md, "4-bit codebook").

/// How codebook_gemv_q8 codes the 16 centroids of a codebook as integers.
enum class centroid_code {
  /// c ≈ lo + s·u, u ∈ [0, 127], s = (max c − min c)/127: error ≤ (max − min)/254 per
  /// weight. u is unsigned and below 128, so vpmaddubsw(u, q) is exact without the sign
  /// trick: 10–11 vector ops per 64 weights on AVX2, ≈ 20 % faster than symmetric8.
  affine7,
  /// c ≈ s·c_q, c_q ∈ [−127, 127], s = max|c|/127: error ≤ max|c|/254 per weight, half of
  /// affine7's for a codebook centred on zero. AVX2 needs the sign trick: 12–13 vector ops per
  /// 64 weights (the vpdpbusd paths run both codes at the same speed).
  symmetric8,
};

inline constexpr index_t k_cb_panel_rows = 4;    ///< rows per panel of packed_codebook_q8_weights
inline constexpr index_t k_cb_step = 128;         ///< depth per panel step
inline constexpr index_t k_cb_step_bytes = 256;   ///< k_cb_panel_rows rows × 64 bytes
/// The deepest codebook_gemv_q8 accepts: Σ_k c·q stays in int32 (|c|, |q| ≤ 127).
inline constexpr index_t k_cb_max_depth = (index_t{1} << 31) / (127 * 127) - 64;

struct packed_codebook_q8_weights {
  index_t rows = 0, depth = 0, depth_padded = 0;  ///< depth_padded: multiple of k_cb_step
  index_t panels = 0;                             ///< ceil(rows / 4); rows past `rows` are padding (index 0)
  bool per_row = false;
  centroid_code code = centroid_code::affine7;
  aligned_buffer<std::uint8_t> indices;      ///< panels · (depth_padded / 128) · 256
  aligned_buffer<std::int8_t> centroids;     ///< (per_row ? rows : 1) · 16: u (affine7) or c_q (symmetric8)
  aligned_buffer<float> centroid_scales;     ///< (per_row ? rows : 1): s
  aligned_buffer<float> centroid_offsets;    ///< (per_row ? rows : 1): lo (affine7), 0 (symmetric8)

  /// The first byte of panel p (rows 4p .. 4p + 3).
  [[nodiscard]] const std::uint8_t* panel(index_t p) const noexcept {
    return indices.data() + p * (depth_padded / k_cb_step) * k_cb_step_bytes;
  }
  /// Where row n's chunk of 64 weights starting at depth 64·c begins in `indices` (32 bytes).
  [[nodiscard]] std::size_t chunk_offset(index_t n, index_t c) const noexcept {
    return static_cast<std::size_t>(((n / k_cb_panel_rows) * (depth_padded / k_cb_step) + c / 2) * k_cb_step_bytes +
                                    (n % k_cb_panel_rows) * 64 + (c % 2) * 32);
  }
  [[nodiscard]] unsigned index(index_t n, index_t k) const noexcept {
    const std::uint8_t b = indices[chunk_offset(n, k / 64) + static_cast<std::size_t>(k % 32)];
    return (k % 64) < 32 ? (b & 0xFu) : (b >> 4);
  }
  [[nodiscard]] const std::int8_t* codebook(index_t n) const noexcept {
    return centroids.data() + (per_row ? n * 16 : 0);
  }
  [[nodiscard]] float codebook_scale(index_t n) const noexcept {
    return centroid_scales[static_cast<std::size_t>(per_row ? n : 0)];
  }
  [[nodiscard]] float codebook_offset(index_t n) const noexcept {
    return centroid_offsets[static_cast<std::size_t>(per_row ? n : 0)];
  }
  /// The centroid value the integer path computes with: lo + s·u, or s·c_q.
  [[nodiscard]] float decoded_centroid(index_t n, unsigned i) const noexcept {
    return codebook_offset(n) + codebook_scale(n) * static_cast<float>(codebook(n)[i]);
  }
};

namespace q8_detail {

/// Codes one codebook's 16 centroids: writes the integers to `out`, returns {s, lo}.
/// Double arithmetic, so max − min of finite floats cannot overflow.
inline std::pair<float, float> code_centroids(const float* c, centroid_code code, std::int8_t* out) noexcept {
  if (code == centroid_code::symmetric8) {
    float amax = 0.0f;
    for (int i = 0; i < 16; ++i) amax = std::max(amax, std::abs(c[i]));
    const float s = amax / 127.0f;
    for (int i = 0; i < 16; ++i) out[i] = quantize_one(c[i], s);
    return {s, 0.0f};
  }
  const double lo = *std::min_element(c, c + 16), hi = *std::max_element(c, c + 16);
  const double s = (hi - lo) / 127.0;
  for (int i = 0; i < 16; ++i) {
    const double u = s > 0.0 ? std::floor((c[i] - lo) / s + 0.5) : 0.0;  // round to nearest
    out[i] = static_cast<std::int8_t>(std::clamp(u, 0.0, 127.0));
  }
  return {static_cast<float>(s), static_cast<float>(lo)};
}

}  // namespace q8_detail

/// Codes the centroids of 4-bit codebook weights (from pack_codebook_weights) as integers
/// (`code`) and re-lays the indices for codebook_gemv_q8.
inline packed_codebook_q8_weights pack_codebook_q8_weights(const packed_codebook_weights& w,
                                                           centroid_code code = centroid_code::affine7) {
  SHRINK_REQUIRE(w.bits == 4 && w.rows > 0 && w.depth > 0 &&
                     w.centroids.size() == static_cast<std::size_t>((w.per_row ? w.rows : 1) * 16),
                 errc::invalid_argument, "pack_codebook_q8_weights: expects 4-bit codebook weights from "
                 "pack_codebook_weights, got ", w.bits, "-bit, ", w.rows, " rows");
  SHRINK_REQUIRE(code == centroid_code::affine7 || code == centroid_code::symmetric8, errc::invalid_argument,
                 "pack_codebook_q8_weights: centroid code must be affine7 or symmetric8, got ",
                 static_cast<int>(code));
  // Σ_k c·q is held in int32 (|c| ≤ 127 for both codes): K·127² must stay below 2^31.
  SHRINK_REQUIRE(w.depth <= k_cb_max_depth, errc::overflow, "pack_codebook_q8_weights: depth ", w.depth,
                 " would overflow the int32 dot (K·127² < 2^31, so K ≤ ", k_cb_max_depth, ")");
  packed_codebook_q8_weights p;
  p.rows = w.rows;
  p.depth = w.depth;
  p.depth_padded = (w.depth + k_cb_step - 1) / k_cb_step * k_cb_step;
  p.panels = (w.rows + k_cb_panel_rows - 1) / k_cb_panel_rows;
  p.per_row = w.per_row;
  p.code = code;
  const index_t books = w.per_row ? w.rows : 1;
  p.indices = aligned_buffer<std::uint8_t>(
      static_cast<std::size_t>(p.panels * (p.depth_padded / k_cb_step) * k_cb_step_bytes), huge_pages);
  p.centroids = aligned_buffer<std::int8_t>(static_cast<std::size_t>(books * 16));
  p.centroid_scales = aligned_buffer<float>(static_cast<std::size_t>(books));
  p.centroid_offsets = aligned_buffer<float>(static_cast<std::size_t>(books));
  for (index_t b = 0; b < books; ++b) {
    const auto [s, lo] = q8_detail::code_centroids(w.centroids.data() + b * 16, code, p.centroids.data() + b * 16);
    p.centroid_scales[static_cast<std::size_t>(b)] = s;
    p.centroid_offsets[static_cast<std::size_t>(b)] = lo;
  }
  for (index_t n = 0; n < w.rows; ++n)
    for (index_t k = 0; k < w.depth; ++k) {
      std::uint8_t& b = p.indices[p.chunk_offset(n, k / 64) + static_cast<std::size_t>(k % 32)];
      b = static_cast<std::uint8_t>(b | (w.index(n, k) << ((k % 64) < 32 ? 0 : 4)));
    }
  return p;
}

namespace q8_detail {

/// Runs the rows of panels [p0, p1).
using cb_fn = void (*)(const q8_activations& x, const packed_codebook_q8_weights& w, std::int32_t qsum, index_t p0,
                       index_t p1, float* y);

/// y[n] = (s·d)·dot + (lo·d)·Σq, the addition fused (std::fma, correctly rounded) so no
/// path's compiler can contract it differently: bit-identical everywhere. lo = 0 for
/// symmetric8.
inline float cb_finish(const q8_activations& x, const packed_codebook_q8_weights& w, index_t n, std::int32_t dot,
                       std::int32_t qsum) {
  const float d = x.scales[0];
  return std::fma(w.codebook_offset(n) * d, static_cast<float>(qsum),
                  (w.codebook_scale(n) * d) * static_cast<float>(dot));
}

/// The real rows [n0, n1) of panels [p0, p1).
inline std::pair<index_t, index_t> cb_rows(const packed_codebook_q8_weights& w, index_t p0, index_t p1) noexcept {
  return {p0 * k_cb_panel_rows, std::min(p1 * k_cb_panel_rows, w.rows)};
}

/// The codebook to look row n's indices up in; padding rows (n ≥ rows) borrow the last
/// row's (their indices are 0 and their results are not written).
inline const std::int8_t* cb_book(const packed_codebook_q8_weights& w, index_t n) noexcept {
  return w.codebook(std::min(n, w.rows - 1));
}

inline void cb_reference(const q8_activations& x, const packed_codebook_q8_weights& w, std::int32_t qsum, index_t p0,
                         index_t p1, float* y) {
  const auto [n0, n1] = cb_rows(w, p0, p1);
  for (index_t n = n0; n < n1; ++n) {
    const std::int8_t* cb = w.codebook(n);
    std::int32_t dot = 0;
    for (index_t k = 0; k < w.depth; ++k)
      dot += static_cast<std::int32_t>(cb[w.index(n, k)]) * static_cast<std::int32_t>(x.q[static_cast<std::size_t>(k)]);
    y[n] = cb_finish(x, w, n, dot, qsum);
  }
}

inline void cb_generic(const q8_activations& x, const packed_codebook_q8_weights& w, std::int32_t qsum, index_t p0,
                       index_t p1, float* y) {
  using b32 = xsimd::batch<std::int32_t>;
  constexpr index_t lanes = static_cast<index_t>(b32::size);
  alignas(64) std::int32_t wt[64];
  const auto [n0, n1] = cb_rows(w, p0, p1);
  for (index_t n = n0; n < n1; ++n) {
    const std::int8_t* cb = w.codebook(n);
    b32 s(0);
    for (index_t c = 0; c < w.depth_padded / 64; ++c) {
      const std::uint8_t* chunk = w.indices.data() + w.chunk_offset(n, c);
      for (index_t j = 0; j < 32; ++j) {
        const unsigned v = chunk[j];
        wt[j] = cb[v & 0xF];
        wt[32 + j] = cb[v >> 4];
      }
      for (index_t i = 0; i < 64; i += lanes)
        s += b32::load_aligned(wt + i) * xsimd::load_as<std::int32_t>(x.q.data() + 64 * c + i, xsimd::unaligned_mode());
    }
    y[n] = cb_finish(x, w, n, xsimd::hadd(s), qsum);
  }
}

/// symmetric8 on the vpdpbusd paths looks up c_q + 128 (u8, the table XOR 0x80), so a row
/// sums Σ(c_q + 128)·q = dot + 128·Σq. vpdpbusd and the reductions wrap mod 2^32, and the
/// true dot fits in int32 (K·127² < 2^31), so subtracting 128·Σq mod 2^32 gives it exactly.
inline std::int32_t cb_unbias(std::int32_t biased, std::int32_t qsum) noexcept {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(biased) - 128u * static_cast<std::uint32_t>(qsum));
}

/// Writes the real rows of a pass of R rows from panel p, given each row's summed
/// accumulator; Biased: the sums are the vpdpbusd paths' symmetric8 sums (cb_unbias).
template <int R, bool Biased>
inline void cb_write(const q8_activations& x, const packed_codebook_q8_weights& w, std::int32_t qsum, index_t p,
                     const std::int32_t* sums, float* y) {
  const index_t n = p * k_cb_panel_rows, valid = std::min<index_t>(R, w.rows - n);
  for (index_t r = 0; r < valid; ++r) y[n + r] = cb_finish(x, w, n + r, Biased ? cb_unbias(sums[r], qsum) : sums[r], qsum);
}

#if SHRINK_HAS_X86_PATHS
// ---- avx2: one panel (4 rows) per pass, one sequential stream prefetched 4 KiB ahead into
// L1 and 32 KiB into L2 (panel_prefetch). Per row and 64 weights one load, vpand +
// vpsrlw/vpand (indices), two vpshufb (lookup), then per 32 weights:
//   affine7:    vpmaddubsw(u, q)                 (u ∈ [0, 127] unsigned, q signed)
//   symmetric8: vpmaddubsw(|q|, c·sign(q))       (vpsignb per row, vpabsb once per 4 rows)
// A pair of products reaches 2·127² = 32258, so the two vpmaddubsw results of a row (lanes
// summing q[2j], q[2j+1] and q[32+2j], q[33+2j]) can share one s16 sum only where the
// activations allow it: 127·Σ|q| ≤ 32767 over each such quad. The kernel checks that once
// per call (per thread) for every 128-deep step (cb_avx2_pairable) and runs those steps with vpaddw +
// one vpmaddwd(·, 1) + vpaddd (10 ops per row and 64 weights, symmetric8 12), the others
// with two vpmaddwd and two vpaddd (11, 13). Both are exact. Per-tensor activations put the
// largest |q| at 127 and the rest well below it, so for most activation vectors every
// step qualifies (docs/kernels.md, "4-bit codebook"). PerRow: 4 table registers; per tensor:
// one. The accumulators are pinned with an empty asm statement, the index vectors too (one
// load each, not a load plus a folded memory operand); the activations are left to the
// compiler, which folds them into vpmaddubsw as memory operands.

/// Per 128-deep step, whether a row's two vpmaddubsw results may be summed in s16: every
/// quad q[2j], q[2j+1], q[32+2j], q[33+2j] of both 64-weight chunks has Σ|q| ≤ 258, so
/// 127·Σ|q| ≤ 32767.
inline constexpr int k_cb_quad_limit = 32767 / 127;
inline constexpr index_t k_cb_max_steps = (k_cb_max_depth + k_cb_step - 1) / k_cb_step;

SHRINK_TARGET_AVX2 inline void cb_avx2_pairable(const q8_activations& x, index_t steps, std::uint8_t* out) {
  const __m256i ones = _mm256_set1_epi8(1), limit = _mm256_set1_epi16(k_cb_quad_limit);
  for (index_t e = 0; e < steps; ++e) {
    __m256i over = _mm256_setzero_si256();
    for (int c = 0; c < 2; ++c) {
      const std::int8_t* q = x.q.data() + e * k_cb_step + 64 * c;
      const __m256i lo = _mm256_abs_epi8(_mm256_load_si256(reinterpret_cast<const __m256i*>(q)));
      const __m256i hi = _mm256_abs_epi8(_mm256_load_si256(reinterpret_cast<const __m256i*>(q + 32)));
      const __m256i quads = _mm256_add_epi16(_mm256_maddubs_epi16(lo, ones), _mm256_maddubs_epi16(hi, ones));
      over = _mm256_or_si256(over, _mm256_cmpgt_epi16(quads, limit));
    }
    out[e] = static_cast<std::uint8_t>(_mm256_testz_si256(over, over));
  }
}

/// One row's 64 weights (32 index bytes at `at`) looked up in `tb` and multiplied into
/// `acc` with activations xl, xh (symmetric8: and their |q| in axl, axh); Pair sums the two
/// vpmaddubsw results in s16 before widening (cb_avx2_pairable).
template <bool Pair, bool Affine>
SHRINK_TARGET_AVX2 inline void cb_avx2_row(__m256i& acc, const std::uint8_t* at, __m256i tb, __m256i xl, __m256i xh,
                                           __m256i axl, __m256i axh) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(at));
  __asm__("" : "+x"(v));  // one load, not a load plus a folded memory operand
  const __m256i wl = _mm256_shuffle_epi8(tb, _mm256_and_si256(v, m4));
  const __m256i wh = _mm256_shuffle_epi8(tb, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
  __m256i pl, ph;
  if constexpr (Affine) {
    pl = _mm256_maddubs_epi16(wl, xl);
    ph = _mm256_maddubs_epi16(wh, xh);
  } else {
    pl = _mm256_maddubs_epi16(axl, _mm256_sign_epi8(wl, xl));
    ph = _mm256_maddubs_epi16(axh, _mm256_sign_epi8(wh, xh));
  }
  if constexpr (Pair) {
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_add_epi16(pl, ph), ones));
  } else {
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pl, ones));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(ph, ones));
  }
}

/// One 128-deep step of a panel (256 index bytes at `s`, activations at `xk`): two halves
/// of 64 weights, 4 rows each.
template <bool Pair, bool PerRow, bool Affine>
SHRINK_TARGET_AVX2 inline void cb_avx2_step(__m256i& a0, __m256i& a1, __m256i& a2, __m256i& a3, const __m256i* table,
                                            const std::uint8_t* s, const std::int8_t* xk) {
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __m256i xl = _mm256_load_si256(reinterpret_cast<const __m256i*>(xk + 64 * h));
    const __m256i xh = _mm256_load_si256(reinterpret_cast<const __m256i*>(xk + 64 * h + 32));
    const __m256i axl = Affine ? xl : _mm256_abs_epi8(xl), axh = Affine ? xh : _mm256_abs_epi8(xh);
    const std::uint8_t* at = s + 32 * h;
    cb_avx2_row<Pair, Affine>(a0, at, table[0], xl, xh, axl, axh);
    cb_avx2_row<Pair, Affine>(a1, at + 64, table[PerRow ? 1 : 0], xl, xh, axl, axh);
    cb_avx2_row<Pair, Affine>(a2, at + 128, table[PerRow ? 2 : 0], xl, xh, axl, axh);
    cb_avx2_row<Pair, Affine>(a3, at + 192, table[PerRow ? 3 : 0], xl, xh, axl, axh);
    __asm__("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3));
  }
}

template <bool PerRow, bool Affine>
SHRINK_TARGET_AVX2 inline void cb_avx2_panel(const q8_activations& x, const packed_codebook_q8_weights& w,
                                             std::int32_t qsum, const std::uint8_t* pairable, index_t p, float* y) {
  constexpr int T = PerRow ? 4 : 1;
  const index_t n = p * k_cb_panel_rows;
  __m256i table[T];
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t)
    table[t] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cb_book(w, n + t))));
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  const std::uint8_t* s = w.panel(p);
  const std::int8_t* xk = x.q.data();
  const index_t steps = w.depth_padded / k_cb_step;
  for (index_t e = 0; e < steps; ++e, s += k_cb_step_bytes, xk += k_cb_step) {
    panel_prefetch<4>(s);
    if (pairable[e])
      cb_avx2_step<true, PerRow, Affine>(a0, a1, a2, a3, table, s, xk);
    else
      cb_avx2_step<false, PerRow, Affine>(a0, a1, a2, a3, table, s, xk);
  }
  const std::int32_t sums[4] = {x86::hsum(a0), x86::hsum(a1), x86::hsum(a2), x86::hsum(a3)};
  cb_write<4, false>(x, w, qsum, p, sums, y);
}

template <bool PerRow, bool Affine>
SHRINK_TARGET_AVX2 inline void cb_avx2_panels(const q8_activations& x, const packed_codebook_q8_weights& w,
                                              std::int32_t qsum, index_t p0, index_t p1, float* y) {
  std::array<std::uint8_t, k_cb_max_steps> pairable;
  cb_avx2_pairable(x, w.depth_padded / k_cb_step, pairable.data());
  for (index_t p = p0; p < p1; ++p) cb_avx2_panel<PerRow, Affine>(x, w, qsum, pairable.data(), p, y);
}

inline void cb_avx2(const q8_activations& x, const packed_codebook_q8_weights& w, std::int32_t qsum, index_t p0,
                    index_t p1, float* y) {
  const bool affine = w.code == centroid_code::affine7;
  if (w.per_row)
    affine ? cb_avx2_panels<true, true>(x, w, qsum, p0, p1, y) : cb_avx2_panels<true, false>(x, w, qsum, p0, p1, y);
  else
    affine ? cb_avx2_panels<false, true>(x, w, qsum, p0, p1, y) : cb_avx2_panels<false, false>(x, w, qsum, p0, p1, y);
}

// ---- avx_vnni: as cb_avx2_panel, with vpdpbusd (u8 × s8, four products per int32 lane,
// wrapping, no saturation) in place of vpmaddubsw + vpmaddwd + add, on (u, q) for affine7
// and (c_q + 128, q) for symmetric8 (cb_unbias): 7 vector ops per row and 64 weights for
// both codes, no widening and so no pairing. P panels per pass (R = 4P rows, P streams).
// SIMDe-checked only.
template <int P, bool PerRow, bool Affine>
SHRINK_TARGET_AVX_VNNI inline void cb_avx_vnni_rows(const q8_activations& x, const packed_codebook_q8_weights& w,
                                                    std::int32_t qsum, index_t p, float* y) {
  constexpr int R = P * static_cast<int>(k_cb_panel_rows), T = PerRow ? R : 1;
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i bias = _mm256_set1_epi8(Affine ? 0 : static_cast<char>(0x80));
  const index_t n = p * k_cb_panel_rows;
  __m256i table[T], acc[R];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
    table[t] = _mm256_xor_si256(
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cb_book(w, n + t)))), bias);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
  const index_t steps = w.depth_padded / k_cb_step;
  for (index_t e = 0; e < steps; ++e) {
#pragma GCC unroll 2
    for (int i = 0; i < P; ++i) panel_prefetch<4>(w.panel(p + i) + e * k_cb_step_bytes);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const std::int8_t* xk = x.q.data() + e * k_cb_step + 64 * h;
      const __m256i xl = _mm256_load_si256(reinterpret_cast<const __m256i*>(xk));
      const __m256i xh = _mm256_load_si256(reinterpret_cast<const __m256i*>(xk + 32));
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const std::uint8_t* at = w.panel(p + r / 4) + e * k_cb_step_bytes + (r % 4) * 64 + 32 * h;
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(at));
        const __m256i tb = table[PerRow ? r : 0];
        acc[r] = _mm256_dpbusd_avx_epi32(acc[r], _mm256_shuffle_epi8(tb, _mm256_and_si256(v, m4)), xl);
        acc[r] = _mm256_dpbusd_avx_epi32(acc[r], _mm256_shuffle_epi8(tb, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4)), xh);
      }
    }
  }
  std::int32_t sums[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) sums[r] = x86::hsum(acc[r]);
  cb_write<R, !Affine>(x, w, qsum, p, sums, y);
}

// ---- avx512_vnni: one zmm load is a row's 64 bytes of a step, two 64-weight chunks (128
// weights). Its low nibbles are depth k..k+31 and k+64..k+95, its high nibbles k+32..k+63
// and k+96..k+127, so the activations are re-paired to match once per step (two vpermt2q).
// vpshufb looks the 16 integer centroids up in each 128-bit lane (the table copied to all
// four) and vpdpbusd multiplies and accumulates, (u, q) or (c_q + 128, q) as on AVX-VNNI: 6
// vector ops per row and 128 weights, against 20–22 on AVX2. Two panels (8 rows) per pass
// for both kinds: 8 tables + 8 accumulators + 2 activation registers fit in 32 zmm.
// Tested through SIMDe only (this machine has no AVX-512).
/// One row's 128 weights: both nibble halves of `v` looked up in `table` and multiplied
/// into `acc` with their activations.
SHRINK_TARGET_AVX512_VNNI inline __m512i cb_avx512_lookup_dot(__m512i acc, __m512i table, __m512i v, __m512i xl,
                                                             __m512i xh, __m512i m4) {
  acc = _mm512_dpbusd_epi32(acc, _mm512_shuffle_epi8(table, _mm512_and_si512(v, m4)), xl);
  return _mm512_dpbusd_epi32(acc, _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4)), xh);
}

template <int P, bool PerRow, bool Affine>
SHRINK_TARGET_AVX512_VNNI inline void cb_avx512_vnni_rows(const q8_activations& x, const packed_codebook_q8_weights& w,
                                                          std::int32_t qsum, index_t p, float* y) {
  constexpr int R = P * static_cast<int>(k_cb_panel_rows), T = PerRow ? R : 1;
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i bias = _mm512_set1_epi8(Affine ? 0 : static_cast<char>(0x80));
  const index_t n = p * k_cb_panel_rows;
  __m512i table[T], acc[R];
  // The table broadcast goes through memory: GCC 12's vbroadcasti32x4 intrinsic trips
  // -Wuninitialized inside its own header.
  alignas(64) std::int8_t lanes4[64];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    for (int l = 0; l < 4; ++l) std::memcpy(lanes4 + 16 * l, cb_book(w, n + t), 16);
    table[t] = _mm512_xor_si512(_mm512_load_si512(lanes4), bias);
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
  const __m512i pair_lo = _mm512_set_epi64(11, 10, 9, 8, 3, 2, 1, 0);    // 256-bit halves 0 of a, b
  const __m512i pair_hi = _mm512_set_epi64(15, 14, 13, 12, 7, 6, 5, 4);  // 256-bit halves 1 of a, b
  const index_t steps = w.depth_padded / k_cb_step;
  for (index_t e = 0; e < steps; ++e) {
    const std::int8_t* xk = x.q.data() + e * k_cb_step;
    const __m512i a = _mm512_load_si512(xk), b = _mm512_load_si512(xk + 64);
    const __m512i xl = _mm512_permutex2var_epi64(a, pair_lo, b), xh = _mm512_permutex2var_epi64(a, pair_hi, b);
#pragma GCC unroll 2
    for (int i = 0; i < P; ++i) panel_prefetch<4>(w.panel(p + i) + e * k_cb_step_bytes);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const std::uint8_t* at = w.panel(p + r / 4) + e * k_cb_step_bytes + (r % 4) * 64;
      acc[r] = cb_avx512_lookup_dot(acc[r], table[PerRow ? r : 0], _mm512_load_si512(at), xl, xh, m4);
    }
  }
  std::int32_t sums[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) sums[r] = x86::hsum(acc[r]);
  cb_write<R, !Affine>(x, w, qsum, p, sums, y);
}

/// Runs Kernel::run<P, PerRow, Affine> (a kernel over P panels) over panels [p0, p1):
/// TensorPanels per pass for a per-tensor codebook, RowPanels for per-row codebooks, then
/// single panels.
template <class Kernel, int TensorPanels, int RowPanels>
inline void cb_passes(const q8_activations& x, const packed_codebook_q8_weights& w, std::int32_t qsum, index_t p0,
                      index_t p1, float* y) {
  const auto passes = [&]<bool Affine>() {
    index_t p = p0;
    if (w.per_row) {
      for (; p + RowPanels <= p1; p += RowPanels) Kernel::template run<RowPanels, true, Affine>(x, w, qsum, p, y);
      for (; p < p1; ++p) Kernel::template run<1, true, Affine>(x, w, qsum, p, y);
    } else {
      for (; p + TensorPanels <= p1; p += TensorPanels) Kernel::template run<TensorPanels, false, Affine>(x, w, qsum, p, y);
      for (; p < p1; ++p) Kernel::template run<1, false, Affine>(x, w, qsum, p, y);
    }
  };
  if (w.code == centroid_code::affine7)
    passes.template operator()<true>();
  else
    passes.template operator()<false>();
}

struct cb_avx_vnni_kernel {
  template <int P, bool PerRow, bool Affine>
  static void run(const q8_activations& x, const packed_codebook_q8_weights& w, std::int32_t qsum, index_t p, float* y) {
    cb_avx_vnni_rows<P, PerRow, Affine>(x, w, qsum, p, y);
  }
};

struct cb_avx512_vnni_kernel {
  template <int P, bool PerRow, bool Affine>
  static void run(const q8_activations& x, const packed_codebook_q8_weights& w, std::int32_t qsum, index_t p, float* y) {
    cb_avx512_vnni_rows<P, PerRow, Affine>(x, w, qsum, p, y);
  }
};
#endif

inline const std::array<implementation<cb_fn>, SHRINK_HAS_X86_PATHS ? 5 : 2> k_cb{{
    {isa::reference, 0, cb_reference},
    {isa::generic, 0, cb_generic},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, cb_avx2},
    {isa::avx_vnni, 0, cb_passes<cb_avx_vnni_kernel, 2, 1>},
    {isa::avx512_vnni, 0, cb_passes<cb_avx512_vnni_kernel, 2, 2>},
#endif
}};

}  // namespace q8_detail

/// y[N] = Ŵ·x̂: Ŵ the 4-bit codebook weights with integer-coded centroids (w.code), x̂ = x
/// quantized with one scale for the tensor (block 0). Bit-identical on every path and
/// thread count.
inline void codebook_gemv_q8(const q8_activations& x, const packed_codebook_q8_weights& w, std::span<float> y,
                             const context& ctx = {}) {
  SHRINK_REQUIRE(w.rows > 0 && w.depth_padded % k_cb_step == 0 && w.depth_padded >= w.depth &&
                     w.depth <= k_cb_max_depth && w.panels == (w.rows + k_cb_panel_rows - 1) / k_cb_panel_rows &&
                     w.indices.size() ==
                         static_cast<std::size_t>(w.panels * (w.depth_padded / k_cb_step) * k_cb_step_bytes) &&
                     w.centroids.size() == static_cast<std::size_t>((w.per_row ? w.rows : 1) * 16) &&
                     w.centroid_scales.size() == static_cast<std::size_t>(w.per_row ? w.rows : 1) &&
                     w.centroid_offsets.size() == w.centroid_scales.size() &&
                     (w.code == centroid_code::affine7 || w.code == centroid_code::symmetric8),
                 errc::invalid_argument,
                 "codebook_gemv_q8: packed weights are empty or inconsistent; use pack_codebook_q8_weights");
  SHRINK_REQUIRE(x.depth == w.depth && x.q.size() == static_cast<std::size_t>(x.depth_padded) &&
                     x.depth_padded >= w.depth_padded,
                 errc::shape_mismatch, "codebook_gemv_q8: activations have depth ", x.depth, ", the weights ", w.depth);
  SHRINK_REQUIRE(x.block == 0, errc::invalid_argument,
                 "codebook_gemv_q8: activations must have one scale per tensor (block 0), got block ", x.block);
  SHRINK_REQUIRE(static_cast<index_t>(y.size()) == w.rows, errc::shape_mismatch, "codebook_gemv_q8: y has ", y.size(),
                 " elements, expected ", w.rows);
  SHRINK_REQUIRE(y.data() != nullptr, errc::invalid_argument, "codebook_gemv_q8: null output");
  SHRINK_REQUIRE(x.sums32.size() == static_cast<std::size_t>(x.depth_padded / 32), errc::invalid_argument,
                 "codebook_gemv_q8: activations are inconsistent; use make_q8_activations");
  // Σq for affine7's offset term: exact (|Σq| ≤ K·127), q = 0 past depth.
  std::int32_t qsum = 0;
  for (const std::int32_t s : x.sums32) qsum += s;
  const auto fn = select(q8_detail::k_cb);
  parallel_for(ctx, 0, w.panels, 4, [&](index_t p0, index_t p1) { fn(x, w, qsum, p0, p1, y.data()); });
}

/// Quantizes x into `xq` (block 0) and runs codebook_gemv_q8, without allocating.
inline void codebook_gemv_q8(std::span<const float> x, q8_activations& xq, const packed_codebook_q8_weights& w,
                             std::span<float> y, const context& ctx = {}) {
  quantize_activations(x, xq);
  codebook_gemv_q8(xq, w, y, ctx);
}

}  // namespace shrink::kernels
