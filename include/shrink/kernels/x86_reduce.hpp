// x86_reduce.hpp: horizontal sums of AVX2 and AVX-512 registers, shared by every x86 kernel path.
#pragma once

#include <cstdint>

#include "../core/config.hpp"

#if SHRINK_HAS_X86_PATHS
namespace shrink::kernels::x86 {

SHRINK_TARGET_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

SHRINK_TARGET_AVX2 inline std::int32_t hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// AVX-512 reductions go through memory: GCC 12's 512→256 extract/cast intrinsics trip
// -Wuninitialized inside its own headers, and SIMDe (the emulated test build) lacks some.
// Outside inner loops the cost is a few cycles.
SHRINK_TARGET_AVX512 inline float hsum(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  __m256 s = _mm256_add_ps(_mm256_load_ps(lanes), _mm256_load_ps(lanes + 8));
  return hsum(s);
}

SHRINK_TARGET_AVX512 inline std::int32_t hsum(__m512i v) {
  alignas(64) std::int32_t lanes[16];
  _mm512_store_si512(lanes, v);
  const __m256i s = _mm256_add_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(lanes)),
                                     _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes + 8)));
  return hsum(s);
}

}  // namespace shrink::kernels::x86
#endif
