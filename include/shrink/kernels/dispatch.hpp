// dispatch.hpp: the one place that lists ISA paths, picks the best the CPU has (or SHRINK_ISA's), and selects a kernel's implementation.
#pragma once

#include <array>
#include <atomic>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "cpu_features.hpp"

namespace shrink::kernels {

/// An ISA path: one implementation level of every kernel. Ordered by priority (higher is
/// preferred when available). A kernel need not implement every path: it runs the best
/// path it has that is no higher than the selected one (see `select`).
enum class isa : int { reference = 0, generic = 1, avx2 = 2, avx_vnni = 3, avx512 = 4, avx512_vnni = 5, neon = 6 };

struct isa_info {
  isa path;
  std::string_view name;
  feature_set requires_features;  ///< all must be present for the path to be available
  int priority;
};

inline constexpr feature_set k_avx2_features = avx2 | fma | f16c | bmi2 | popcnt;
inline constexpr feature_set k_avx512_features = k_avx2_features | avx512f | avx512bw | avx512vl | avx512dq;

/// The paths, lowest priority first. `reference` is the scalar oracle; `generic` is the
/// xsimd code for the compile-time baseline ISA.
inline constexpr std::array<isa_info, 7> k_isa_table{{
    {isa::reference, "reference", 0, 0},
    {isa::generic, "generic", 0, 1},
    {isa::neon, "neon", neon, 2},
    {isa::avx2, "avx2", k_avx2_features, 2},
    {isa::avx_vnni, "avx_vnni", k_avx2_features | avx_vnni, 3},
    {isa::avx512, "avx512", k_avx512_features, 4},
    {isa::avx512_vnni, "avx512_vnni", k_avx512_features | avx512_vnni, 5},
}};

constexpr const isa_info& info(isa path) {
  for (const auto& i : k_isa_table)
    if (i.path == path) return i;
  return k_isa_table[0];
}
constexpr std::string_view name(isa path) { return info(path).name; }

/// True when this CPU (and OS) can run `path`.
inline bool available(isa path) noexcept {
  const feature_set need = info(path).requires_features;
  return (cpu_features() & need) == need;
}

/// Available paths, lowest priority first.
inline std::vector<isa> available_isas() {
  std::vector<isa> out;
  for (const auto& i : k_isa_table)
    if (available(i.path)) out.push_back(i.path);
  return out;
}

/// Names of the available paths, e.g. "reference, generic, avx2".
inline std::string available_isa_names() {
  std::string out;
  for (isa p : available_isas()) (out += out.empty() ? "" : ", ") += name(p);
  return out;
}

/// Parses a path name; an unknown name, or a path this CPU lacks, is a shrink::error that
/// lists the valid names.
inline isa parse_isa(std::string_view text) {
  for (const auto& i : k_isa_table) {
    if (i.name != text) continue;
    SHRINK_REQUIRE(available(i.path), errc::unsupported, "SHRINK_ISA: this CPU cannot run path '", text,
                   "' (needs ", describe(i.requires_features), "; CPU has ", describe(cpu_features()),
                   "); available paths: ", available_isa_names());
    return i.path;
  }
  std::string all;
  for (const auto& i : k_isa_table) (all += all.empty() ? "" : ", ") += i.name;
  ::shrink::detail::raise(errc::invalid_argument, "SHRINK_ISA: unknown path '", text, "'; expected one of: ", all,
                " (available here: ", available_isa_names(), ")");
}

/// The best available path by priority.
inline isa best_isa() noexcept {
  isa best = isa::reference;
  for (const auto& i : k_isa_table)
    if (available(i.path) && i.priority > info(best).priority) best = i.path;
  return best;
}

namespace detail {
inline constexpr int k_unset = -1;
inline std::atomic<int>& override_slot() noexcept {
  static std::atomic<int> slot{k_unset};
  return slot;
}
inline isa env_or_best() {
  const char* env = std::getenv("SHRINK_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  return parse_isa(env);
}
}  // namespace detail

/// The path kernels run: a scoped override if one is active, else SHRINK_ISA if set, else
/// the best available. The environment is read once; a bad SHRINK_ISA throws on first use.
inline isa selected_isa() {
  const int forced = detail::override_slot().load(std::memory_order_relaxed);
  if (forced != detail::k_unset) return static_cast<isa>(forced);
  static const isa from_env = detail::env_or_best();
  return from_env;
}

/// Forces a path for its lifetime (process-wide), restoring the previous choice after.
/// Tests use it to run every kernel under every available path.
class scoped_isa {
 public:
  explicit scoped_isa(isa path) : previous_(detail::override_slot().load()) {
    SHRINK_REQUIRE(available(path), errc::unsupported, "scoped_isa: this CPU cannot run path '", name(path),
                   "'; available: ", available_isa_names());
    detail::override_slot().store(static_cast<int>(path));
  }
  ~scoped_isa() { detail::override_slot().store(previous_); }
  scoped_isa(const scoped_isa&) = delete;
  scoped_isa& operator=(const scoped_isa&) = delete;

 private:
  int previous_;
};

/// One implementation of a kernel: the path it belongs to, any features it needs beyond
/// that path's (e.g. avx512_vpopcntdq), and the function.
template <class Fn>
struct implementation {
  isa path;
  feature_set extra_features;
  Fn fn;
};

/// Picks, from a kernel's implementations, the highest-priority one whose path is
/// available, whose extra features are present, and whose priority does not exceed the
/// selected path's. The list must contain a reference implementation.
template <class Fn, std::size_t N>
Fn select(const std::array<implementation<Fn>, N>& impls) {
  const int ceiling = info(selected_isa()).priority;
  const feature_set cpu = cpu_features();
  const implementation<Fn>* best = nullptr;
  for (const auto& im : impls) {
    const auto& i = info(im.path);
    if (!available(im.path) || (cpu & im.extra_features) != im.extra_features || i.priority > ceiling) continue;
    if (best == nullptr || i.priority > info(best->path).priority) best = &im;
  }
  SHRINK_REQUIRE(best != nullptr, errc::unsupported, "dispatch: no implementation for path ",
                 name(selected_isa()));
  return best->fn;
}

/// The path `select` would choose for these implementations (for reporting and tests).
template <class Fn, std::size_t N>
isa selected_path(const std::array<implementation<Fn>, N>& impls) {
  const Fn fn = select(impls);
  for (const auto& im : impls)
    if (im.fn == fn) return im.path;
  return isa::reference;
}

}  // namespace shrink::kernels
