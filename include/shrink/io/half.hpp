// half.hpp: fp16 / bf16 <-> fp32 conversion, scalar (the oracle) and vectorised (F16C, AVX2), round to nearest even.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <span>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../kernels/dispatch.hpp"
#include "../quant/float16.hpp"

namespace shrink::io {

// ---- scalar conversions (docs/format.md, "Half-precision conversion").
// NaN handling follows the hardware: a NaN stays a NaN, keeps its sign and the top bits of
// its payload, and comes out quiet (F16C's vcvtps2ph / vcvtph2ps do exactly this), so the
// scalar and vector paths agree bit for bit on all inputs.

// The rounding conversions are quant/float16.hpp's (one implementation in the library):
// float -> fp16, float -> bf16 and bf16 -> float agree with this file's former scalar code bit
// for bit on all 2^32 floats / 65,536 bf16 values (checked once exhaustively; tests/io keeps a
// sampled check). fp16 -> float differs only for signalling-NaN halves, which quant's
// conversion keeps signalling; here they are made quiet as F16C's vcvtph2ps does.

/// IEEE binary16 bits -> float. Exact for every non-NaN input; NaNs come out quiet.
inline float fp16_to_fp32(std::uint16_t h) noexcept {
  const float f = quant::half_to_float(h);
  if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0)
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(f) | 0x00400000u);
  return f;
}

/// float -> IEEE binary16 bits, round to nearest, ties to even; overflow gives +-inf.
inline std::uint16_t fp32_to_fp16(float f) noexcept { return quant::float_to_half(f); }

/// bfloat16 bits -> float (exact: bf16 is the top half of a float).
inline float bf16_to_fp32(std::uint16_t b) noexcept { return quant::bfloat16_to_float(b); }

/// float -> bfloat16 bits, round to nearest even (add 0x7FFF + lsb); NaN stays NaN, made quiet.
/// Subnormal floats are rounded like any other value (not flushed), as PyTorch's c10::BFloat16.
inline std::uint16_t fp32_to_bf16(float f) noexcept { return quant::float_to_bfloat16(f); }

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
