// config.hpp: compiler and platform facts shared by every header (index type, target attributes, force-inline).
#pragma once

#include <cstddef>
#include <cstdint>

namespace shrink {

/// Signed index type for shapes, strides and loop counters (Eigen's `Index` convention).
using index_t = std::ptrdiff_t;

}  // namespace shrink

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define SHRINK_X86 1
#else
#define SHRINK_X86 0
#endif

#if defined(__aarch64__) || defined(_M_ARM64)
#define SHRINK_ARM64 1
#else
#define SHRINK_ARM64 0
#endif

// ISA paths are compiled with the target attribute so a baseline build still carries them
// (see docs/design.md, "Run-time dispatch"). When SHRINK_EMULATE_AVX512 is defined, a test
// build maps the AVX-512 intrinsics onto SIMDe and the attributes disappear, so the AVX-512
// paths can be checked on a CPU that lacks them.
#if SHRINK_X86 && (defined(__GNUC__) || defined(__clang__))
#define SHRINK_TARGET_AVX2 __attribute__((target("avx2,fma,f16c,bmi2,popcnt")))
#if defined(SHRINK_EMULATE_AVX512)
#define SHRINK_TARGET_AVX512 SHRINK_TARGET_AVX2
#define SHRINK_TARGET_AVX512_VNNI SHRINK_TARGET_AVX2
#define SHRINK_TARGET_AVX512_VPOPCNT SHRINK_TARGET_AVX2
#define SHRINK_TARGET_AVX512_BF16 SHRINK_TARGET_AVX2
#else
#define SHRINK_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi2,popcnt")))
#define SHRINK_TARGET_AVX512_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c,bmi2,popcnt")))
#define SHRINK_TARGET_AVX512_VPOPCNT \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq,avx2,fma,popcnt")))
#define SHRINK_TARGET_AVX512_BF16 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")))
#endif
#define SHRINK_TARGET_AVX_VNNI __attribute__((target("avx2,fma,f16c,avxvnni,bmi2,popcnt")))
#define SHRINK_HAS_X86_PATHS 1
#else
#define SHRINK_HAS_X86_PATHS 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SHRINK_ALWAYS_INLINE inline __attribute__((always_inline))
#define SHRINK_RESTRICT __restrict__
#else
#define SHRINK_ALWAYS_INLINE inline
#define SHRINK_RESTRICT
#endif

// Intrinsics headers for the ISA paths (declarations only; use needs the target attribute).
#if SHRINK_HAS_X86_PATHS
#include <immintrin.h>
#if defined(SHRINK_EMULATE_AVX512)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
// AVX-VNNI's 256-bit vpdpbusd has its own intrinsic name; SIMDe models it as the AVX512VL form.
#define _mm256_dpbusd_avx_epi32 simde_mm256_dpbusd_epi32
// SIMDe 0.7.4 defines simde_mm512_shuffle_i64x2 but not its native alias.
#define _mm512_shuffle_i64x2 simde_mm512_shuffle_i64x2
// ...and lacks these two conversions altogether: lane-by-lane stand-ins (tests only).
inline simde__m512 shrink_emulated_mm512_cvtepi32_ps(simde__m512i v) {
  alignas(64) std::int32_t in[16];
  alignas(64) float out[16];
  simde_mm512_store_si512(in, v);
  for (int i = 0; i < 16; ++i) out[i] = static_cast<float>(in[i]);
  return simde_mm512_load_ps(out);
}
inline simde__m512i shrink_emulated_mm512_cvtepi8_epi32(simde__m128i v) {
  alignas(16) std::int8_t in[16];
  alignas(64) std::int32_t out[16];
  simde_mm_store_si128(reinterpret_cast<simde__m128i*>(in), v);
  for (int i = 0; i < 16; ++i) out[i] = in[i];
  return simde_mm512_load_si512(out);
}
#define _mm512_cvtepi32_ps shrink_emulated_mm512_cvtepi32_ps
#define _mm512_cvtepi8_epi32 shrink_emulated_mm512_cvtepi8_epi32
#endif
#endif
