// half.hpp: fp16 / bf16 <-> fp32 conversion, scalar (the oracle) and vectorised (F16C, AVX2), round to nearest even.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <span>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../kernels/dispatch.hpp"

namespace shrink::io {

// ---- scalar conversions (docs/format.md, "Half-precision conversion").
// NaN handling follows the hardware: a NaN stays a NaN, keeps its sign and the top bits of
// its payload, and comes out quiet (F16C's vcvtps2ph / vcvtph2ps do exactly this), so the
// scalar and vector paths agree bit for bit on all inputs.

/// IEEE binary16 bits -> float. Exact for every non-NaN input.
constexpr float fp16_to_fp32(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t e = (h >> 10) & 0x1fu;
  std::uint32_t m = h & 0x3ffu;
  std::uint32_t bits = 0;
  if (e == 0x1f) {
    bits = sign | 0x7f800000u | (m << 13) | (m != 0 ? 0x00400000u : 0u);
  } else if (e != 0) {
    bits = sign | ((e + 112u) << 23) | (m << 13);  // rebias 15 -> 127
  } else if (m == 0) {
    bits = sign;
  } else {  // subnormal half: normalise into a normal float
    e = 113;
    while ((m & 0x400u) == 0) {
      m <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((m & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

/// float -> IEEE binary16 bits, round to nearest, ties to even; overflow gives +-inf.
constexpr std::uint16_t fp32_to_fp16(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x47800000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65536 and inf
  if (a >= 0x38800000u) {                                                    // normal half
    std::uint32_t h = (a - 0x38000000u) >> 13;  // rebias 127 -> 15; may carry into inf
    const std::uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  if (a < 0x33000000u) return sign;  // below 2^-25: rounds to zero
  // Subnormal half: value / 2^-24 = m * 2^(e - 126), e in [102, 112].
  const std::uint32_t e = a >> 23;
  const std::uint32_t m = (a & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126u - e;
  std::uint32_t h = m >> shift;
  const std::uint32_t rem = m & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(sign | h);
}

/// bfloat16 bits -> float (exact: bf16 is the top half of a float).
constexpr float bf16_to_fp32(std::uint16_t b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// float -> bfloat16 bits, round to nearest even (add 0x7FFF + lsb); NaN stays NaN, made quiet.
/// Subnormal floats are rounded like any other value (not flushed), as PyTorch's c10::BFloat16.
constexpr std::uint16_t fp32_to_bf16(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

namespace half_impl {

using widen_fn = void (*)(const std::uint16_t*, float*, std::size_t);
using narrow_fn = void (*)(const float*, std::uint16_t*, std::size_t);

inline void fp16_to_fp32_reference(const std::uint16_t* in, float* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = fp16_to_fp32(in[i]);
}
inline void fp32_to_fp16_reference(const float* in, std::uint16_t* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = fp32_to_fp16(in[i]);
}
inline void bf16_to_fp32_reference(const std::uint16_t* in, float* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_fp32(in[i]);
}
inline void fp32_to_bf16_reference(const float* in, std::uint16_t* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = fp32_to_bf16(in[i]);
}

#if SHRINK_HAS_X86_PATHS
SHRINK_TARGET_AVX2 inline void fp16_to_fp32_avx2(const std::uint16_t* in, float* out, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) out[i] = fp16_to_fp32(in[i]);
}

SHRINK_TARGET_AVX2 inline void fp32_to_fp16_avx2(const float* in, std::uint16_t* out, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  for (; i < n; ++i) out[i] = fp32_to_fp16(in[i]);
}

SHRINK_TARGET_AVX2 inline void bf16_to_fp32_avx2(const std::uint16_t* in, float* out, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i)));
    _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
  for (; i < n; ++i) out[i] = bf16_to_fp32(in[i]);
}

// Integer round-to-nearest-even: (x + 0x7FFF + ((x >> 16) & 1)) >> 16; NaN lanes take
// (x >> 16) | 0x40 instead. The results fit 16 bits, so packus (signed -> unsigned
// saturation) is exact; it packs per 128-bit lane, hence the final permute.
SHRINK_TARGET_AVX2 inline void fp32_to_bf16_avx2(const float* in, std::uint16_t* out, std::size_t n) {
  const __m256i bias = _mm256_set1_epi32(0x7fff);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i quiet = _mm256_set1_epi32(0x40);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i r[2];
    for (int k = 0; k < 2; ++k) {
      const __m256 v = _mm256_loadu_ps(in + i + 8 * k);
      const __m256i x = _mm256_castps_si256(v);
      const __m256i hi = _mm256_srli_epi32(x, 16);
      const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, bias), _mm256_and_si256(hi, one)), 16);
      const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      r[k] = _mm256_blendv_epi8(rounded, _mm256_or_si256(hi, quiet), nan);
    }
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), packed);
  }
  for (; i < n; ++i) out[i] = fp32_to_bf16(in[i]);
}
#endif

inline constexpr std::array<kernels::implementation<widen_fn>, 1 + SHRINK_HAS_X86_PATHS> k_fp16_to_fp32{{
    {kernels::isa::reference, 0, fp16_to_fp32_reference},
#if SHRINK_HAS_X86_PATHS
    {kernels::isa::avx2, 0, fp16_to_fp32_avx2},
#endif
}};
inline constexpr std::array<kernels::implementation<narrow_fn>, 1 + SHRINK_HAS_X86_PATHS> k_fp32_to_fp16{{
    {kernels::isa::reference, 0, fp32_to_fp16_reference},
#if SHRINK_HAS_X86_PATHS
    {kernels::isa::avx2, 0, fp32_to_fp16_avx2},
#endif
}};
inline constexpr std::array<kernels::implementation<widen_fn>, 1 + SHRINK_HAS_X86_PATHS> k_bf16_to_fp32{{
    {kernels::isa::reference, 0, bf16_to_fp32_reference},
#if SHRINK_HAS_X86_PATHS
    {kernels::isa::avx2, 0, bf16_to_fp32_avx2},
#endif
}};
inline constexpr std::array<kernels::implementation<narrow_fn>, 1 + SHRINK_HAS_X86_PATHS> k_fp32_to_bf16{{
    {kernels::isa::reference, 0, fp32_to_bf16_reference},
#if SHRINK_HAS_X86_PATHS
    {kernels::isa::avx2, 0, fp32_to_bf16_avx2},
#endif
}};

inline void check_sizes(std::size_t in, std::size_t out, const char* who) {
  SHRINK_REQUIRE(in == out, errc::shape_mismatch, who, ": input has ", in, " elements but output has ", out);
}

}  // namespace half_impl

/// Converts spans element by element on the best ISA path (kernels::selected_isa()).
inline void convert_fp16_to_fp32(std::span<const std::uint16_t> in, std::span<float> out) {
  half_impl::check_sizes(in.size(), out.size(), "convert_fp16_to_fp32");
  kernels::select(half_impl::k_fp16_to_fp32)(in.data(), out.data(), in.size());
}
inline void convert_fp32_to_fp16(std::span<const float> in, std::span<std::uint16_t> out) {
  half_impl::check_sizes(in.size(), out.size(), "convert_fp32_to_fp16");
  kernels::select(half_impl::k_fp32_to_fp16)(in.data(), out.data(), in.size());
}
inline void convert_bf16_to_fp32(std::span<const std::uint16_t> in, std::span<float> out) {
  half_impl::check_sizes(in.size(), out.size(), "convert_bf16_to_fp32");
  kernels::select(half_impl::k_bf16_to_fp32)(in.data(), out.data(), in.size());
}
inline void convert_fp32_to_bf16(std::span<const float> in, std::span<std::uint16_t> out) {
  half_impl::check_sizes(in.size(), out.size(), "convert_fp32_to_bf16");
  kernels::select(half_impl::k_fp32_to_bf16)(in.data(), out.data(), in.size());
}

}  // namespace shrink::io
