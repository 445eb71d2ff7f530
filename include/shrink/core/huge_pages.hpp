// huge_pages.hpp: prefer_huge_pages, a hint that asks Linux for 2 MiB pages over a large, freshly allocated buffer.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace shrink {

/// Large buffers written once front to back (converted sparse formats, SpMV plans) are paid
/// for mostly in first-touch page faults when the OS hands out 4 KiB pages: under a
/// hypervisor that cost more than the conversion itself, and a streamed plan then needs one
/// TLB entry per 4 KiB. Call this on a fresh buffer before its first write: it asks for
/// transparent huge pages over the buffer's 2 MiB-aligned part (so buffers under 2 MiB are
/// left alone). Only a hint: a no-op where THP is off or "never", or the OS is not Linux.
inline void prefer_huge_pages([[maybe_unused]] const void* data, [[maybe_unused]] std::size_t bytes) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t k_huge = std::uintptr_t{1} << 21;
  if (data == nullptr) return;
  const auto begin = (reinterpret_cast<std::uintptr_t>(data) + k_huge - 1) & ~(k_huge - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + bytes) & ~(k_huge - 1);
  if (end > begin) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

}  // namespace shrink
