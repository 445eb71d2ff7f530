// cpu_features.hpp: detects the CPU features shrink's ISA paths need (cpuid + OS register-state checks), once.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "../core/config.hpp"

#if SHRINK_X86 && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

namespace shrink::kernels {

/// One bit per CPU feature an ISA path may require.
enum feature : std::uint32_t {
  sse42 = 1u << 0,
  popcnt = 1u << 1,
  avx2 = 1u << 2,
  fma = 1u << 3,
  f16c = 1u << 4,
  bmi2 = 1u << 5,
  avx512f = 1u << 6,
  avx512bw = 1u << 7,
  avx512vl = 1u << 8,
  avx512dq = 1u << 9,
  avx512cd = 1u << 10,
  avx512_vnni = 1u << 11,
  avx512_vpopcntdq = 1u << 12,
  avx512_bf16 = 1u << 13,
  avx_vnni = 1u << 14,
  neon = 1u << 15,
};
using feature_set = std::uint32_t;

inline constexpr std::string_view k_feature_names[] = {
    "sse4.2",   "popcnt",   "avx2",     "fma",      "f16c",        "bmi2",             "avx512f",    "avx512bw",
    "avx512vl", "avx512dq", "avx512cd", "avx512_vnni", "avx512_vpopcntdq", "avx512_bf16", "avx_vnni", "neon"};

/// Names of the features in a set, space separated ("avx2 fma f16c").
inline std::string describe(feature_set set) {
  std::string out;
  for (std::size_t i = 0; i < std::size(k_feature_names); ++i)
    if (set & (1u << i)) (out += out.empty() ? "" : " ") += k_feature_names[i];
  return out.empty() ? "(none)" : out;
}

namespace detail {

inline feature_set probe_cpu() noexcept {
  feature_set f = 0;
#if SHRINK_X86 && (defined(__GNUC__) || defined(__clang__))
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
  const unsigned max_leaf = a;
  __cpuid(1, a, b, c, d);
  const unsigned ecx1 = c;
  if (ecx1 & (1u << 20)) f |= sse42;
  if (ecx1 & (1u << 23)) f |= popcnt;
  // AVX state must be enabled by the OS (XCR0 bits 1-2), AVX-512 state too (bits 5-7):
  // a hypervisor may report the instructions yet leave the registers disabled.
  const bool osxsave = (ecx1 & (1u << 27)) != 0, avx = (ecx1 & (1u << 28)) != 0;
  unsigned long long xcr0 = 0;
  if (osxsave) {
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
  }
  const bool os_avx = avx && (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;
  if (os_avx) {
    if (ecx1 & (1u << 12)) f |= fma;
    if (ecx1 & (1u << 29)) f |= f16c;
  }
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned ebx7 = b, ecx7 = c;
    if (os_avx && (ebx7 & (1u << 5))) f |= avx2;
    if (ebx7 & (1u << 8)) f |= bmi2;
    if (os_avx512) {
      if (ebx7 & (1u << 16)) f |= avx512f;
      if (ebx7 & (1u << 17)) f |= avx512dq;
      if (ebx7 & (1u << 28)) f |= avx512cd;
      if (ebx7 & (1u << 30)) f |= avx512bw;
      if (ebx7 & (1u << 31)) f |= avx512vl;
      if (ecx7 & (1u << 11)) f |= avx512_vnni;
      if (ecx7 & (1u << 14)) f |= avx512_vpopcntdq;
    }
    __cpuid_count(7, 1, a, b, c, d);
    if (os_avx && (a & (1u << 4))) f |= avx_vnni;
    if (os_avx512 && (a & (1u << 5))) f |= avx512_bf16;
  }
#if defined(SHRINK_EMULATE_AVX512)
  // Test builds that map AVX-512 and AVX-VNNI intrinsics onto SIMDe run those paths in
  // emulation wherever AVX2 exists (the paths are compiled for AVX2 in that build).
  if (f & avx2)
    f |= avx512f | avx512bw | avx512vl | avx512dq | avx512cd | avx512_vnni | avx512_vpopcntdq | avx512_bf16 |
         avx_vnni;
#endif
#elif SHRINK_ARM64
  f |= neon;
#endif
  return f;
}

}  // namespace detail

/// The features of the CPU this process runs on, detected on first call.
inline feature_set cpu_features() noexcept {
  static const feature_set features = detail::probe_cpu();
  return features;
}

}  // namespace shrink::kernels
