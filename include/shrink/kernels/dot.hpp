// dot.hpp: fp32 and u8·s8 dot products on every ISA path: the small kernel that proves the dispatch mechanism.
#pragma once

#include <cstdint>
#include <span>

#include <xsimd/xsimd.hpp>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "dispatch.hpp"
#include "x86_reduce.hpp"

namespace shrink::kernels {

namespace dot_impl {

using f32_fn = float (*)(const float*, const float*, index_t);
using u8s8_fn = std::int32_t (*)(const std::uint8_t*, const std::int8_t*, index_t);

// ---- reference: the oracle. fp32 accumulates in double, so it is the exact sum rounded
// once; the vector paths accumulate in fp32 lanes (bound in docs/kernels.md).
inline float f32_reference(const float* a, const float* b, index_t n) {
  double sum = 0.0;
  for (index_t i = 0; i < n; ++i) sum += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return static_cast<float>(sum);
}

inline std::int32_t u8s8_reference(const std::uint8_t* a, const std::int8_t* b, index_t n) {
  std::int32_t sum = 0;
  for (index_t i = 0; i < n; ++i) sum += static_cast<std::int32_t>(a[i]) * static_cast<std::int32_t>(b[i]);
  return sum;
}

// ---- generic: xsimd for the compile-time baseline architecture.
inline float f32_generic(const float* a, const float* b, index_t n) {
  using batch = xsimd::batch<float>;
  constexpr index_t w = static_cast<index_t>(batch::size);
  batch acc0(0.0f), acc1(0.0f);
  index_t i = 0;
  for (; i + 2 * w <= n; i += 2 * w) {
    acc0 = xsimd::fma(batch::load_unaligned(a + i), batch::load_unaligned(b + i), acc0);
    acc1 = xsimd::fma(batch::load_unaligned(a + i + w), batch::load_unaligned(b + i + w), acc1);
  }
  for (; i + w <= n; i += w) acc0 = xsimd::fma(batch::load_unaligned(a + i), batch::load_unaligned(b + i), acc0);
  float sum = xsimd::hadd(acc0 + acc1);
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

inline std::int32_t u8s8_generic(const std::uint8_t* a, const std::int8_t* b, index_t n) {
  using batch = xsimd::batch<std::int32_t>;
  constexpr index_t w = static_cast<index_t>(batch::size);
  batch acc(0);
  index_t i = 0;
  for (; i + w <= n; i += w)
    acc += xsimd::load_as<std::int32_t>(a + i, xsimd::unaligned_mode()) *
           xsimd::load_as<std::int32_t>(b + i, xsimd::unaligned_mode());
  std::int32_t sum = xsimd::hadd(acc);
  for (; i < n; ++i) sum += static_cast<std::int32_t>(a[i]) * static_cast<std::int32_t>(b[i]);
  return sum;
}

#if SHRINK_HAS_X86_PATHS
// ---- avx2: four independent FMA chains hide the FMA latency.
SHRINK_TARGET_AVX2 inline float f32_avx2(const float* a, const float* b, index_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
         acc3 = _mm256_setzero_ps();
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float sum = x86::hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// u8·s8 on AVX2 without vpmaddubsw: its 16-bit pair sums saturate (255·127·2 > 32767), so
// widen both operands to 16 bits and use vpmaddwd, which is exact in 32 bits.
SHRINK_TARGET_AVX2 inline std::int32_t u8s8_avx2(const std::uint8_t* a, const std::int8_t* b, index_t n) {
  __m256i acc = _mm256_setzero_si256();
  index_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i va = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    const __m256i vb = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(va, vb));
  }
  std::int32_t sum = x86::hsum(acc);
  for (; i < n; ++i) sum += static_cast<std::int32_t>(a[i]) * static_cast<std::int32_t>(b[i]);
  return sum;
}

// ---- avx_vnni: vpdpbusd on 256-bit registers (u8 × s8, four products summed into s32, exact).
SHRINK_TARGET_AVX_VNNI inline std::int32_t u8s8_avx_vnni(const std::uint8_t* a, const std::int8_t* b, index_t n) {
  __m256i acc = _mm256_setzero_si256();
  index_t i = 0;
  for (; i + 32 <= n; i += 32)
    acc = _mm256_dpbusd_avx_epi32(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i)),
                                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i)));
  std::int32_t sum = x86::hsum(acc);
  for (; i < n; ++i) sum += static_cast<std::int32_t>(a[i]) * static_cast<std::int32_t>(b[i]);
  return sum;
}

// ---- avx512: 16-wide FMA chains, scalar tail.
SHRINK_TARGET_AVX512 inline float f32_avx512(const float* a, const float* b, index_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
  float sum = x86::hsum(_mm512_add_ps(acc0, acc1));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// ---- avx512_vnni: vpdpbusd on 512-bit registers, scalar tail.
SHRINK_TARGET_AVX512_VNNI inline std::int32_t u8s8_avx512_vnni(const std::uint8_t* a, const std::int8_t* b,
                                                                index_t n) {
  __m512i acc = _mm512_setzero_si512();
  index_t i = 0;
  for (; i + 64 <= n; i += 64)
    acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i));
  std::int32_t sum = x86::hsum(acc);
  for (; i < n; ++i) sum += static_cast<std::int32_t>(a[i]) * static_cast<std::int32_t>(b[i]);
  return sum;
}
#endif

inline const std::array<implementation<f32_fn>, SHRINK_HAS_X86_PATHS ? 4 : 2> k_f32{{
    {isa::reference, 0, f32_reference},
    {isa::generic, 0, f32_generic},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, f32_avx2},
    {isa::avx512, 0, f32_avx512},
#endif
}};

inline const std::array<implementation<u8s8_fn>, SHRINK_HAS_X86_PATHS ? 5 : 2> k_u8s8{{
    {isa::reference, 0, u8s8_reference},
    {isa::generic, 0, u8s8_generic},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, u8s8_avx2},
    {isa::avx_vnni, 0, u8s8_avx_vnni},
    {isa::avx512_vnni, 0, u8s8_avx512_vnni},
#endif
}};

}  // namespace dot_impl

/// Σ a[i]·b[i] in fp32 on the selected ISA path. Lengths must match.
inline float dot(std::span<const float> a, std::span<const float> b) {
  SHRINK_REQUIRE(a.size() == b.size(), errc::shape_mismatch, "dot: operands have ", a.size(), " and ", b.size(),
                 " elements; expected equal lengths");
  return select(dot_impl::k_f32)(a.data(), b.data(), static_cast<index_t>(a.size()));
}

/// Σ a[i]·b[i] for unsigned 8-bit a and signed 8-bit b, exact in int32 for lengths up to
/// 2^31 / (255·128) ≈ 65,000 (longer inputs may wrap, as any int32 accumulator does).
inline std::int32_t dot(std::span<const std::uint8_t> a, std::span<const std::int8_t> b) {
  SHRINK_REQUIRE(a.size() == b.size(), errc::shape_mismatch, "dot: operands have ", a.size(), " and ", b.size(),
                 " elements; expected equal lengths");
  return select(dot_impl::k_u8s8)(a.data(), b.data(), static_cast<index_t>(a.size()));
}

}  // namespace shrink::kernels
