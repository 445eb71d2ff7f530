// parallel.hpp: context (thread count and ISA override) and parallel_for with a deterministic static split.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <functional>
#include <thread>
#include <vector>

#include "config.hpp"
#include "error.hpp"

namespace shrink {

/// Options a kernel or a long-running function takes. `threads == 0` means all hardware
/// threads. Results never depend on `threads`: work is split over outputs, and each output
/// is computed by exactly one thread in a fixed order.
struct context {
  int threads = 0;

  [[nodiscard]] int resolved_threads() const {
    SHRINK_REQUIRE(threads >= 0, errc::invalid_argument, "context: threads must be >= 0 (0 = all cores), got ",
                   threads);
    if (threads > 0) return threads;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
  }
};

/// Calls fn(begin, end) over [first, last) split into at most ctx.resolved_threads()
/// contiguous chunks of at least `grain` items (the last thread runs on the caller).
/// Chunk boundaries are multiples of `grain` from `first`, so kernels that block by
/// `grain` see aligned chunks. The first exception thrown by any chunk is rethrown.
template <class Fn>
void parallel_for(const context& ctx, index_t first, index_t last, index_t grain, Fn&& fn) {
  SHRINK_REQUIRE(grain >= 1, errc::invalid_argument, "parallel_for: grain must be >= 1, got ", grain);
  if (last <= first) return;
  const index_t blocks = (last - first + grain - 1) / grain;
  const index_t workers = std::min<index_t>(ctx.resolved_threads(), blocks);
  if (workers <= 1) {
    fn(first, last);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(workers));
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(workers - 1));
  auto chunk = [&](index_t w) {
    const index_t b0 = blocks * w / workers, b1 = blocks * (w + 1) / workers;
    const index_t begin = first + b0 * grain, end = std::min(last, first + b1 * grain);
    try {
      if (begin < end) fn(begin, end);
    } catch (...) {
      errors[static_cast<std::size_t>(w)] = std::current_exception();
    }
  };
  for (index_t w = 1; w < workers; ++w) pool.emplace_back(chunk, w);
  chunk(0);
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

/// Splits [first, last) into `parts` contiguous ranges with (roughly) equal total `weight`,
/// e.g. rows balanced by their non-zero count. `prefix` holds last-first+1 cumulative weights
/// (prefix[0] = 0). Returns parts+1 boundaries. Deterministic.
inline std::vector<index_t> balanced_split(const index_t* prefix, index_t first, index_t last, index_t parts) {
  std::vector<index_t> bounds(static_cast<std::size_t>(parts) + 1, last);
  bounds[0] = first;
  const index_t n = last - first;
  const auto total = static_cast<double>(prefix[n] - prefix[0]);
  index_t row = 0;
  for (index_t p = 1; p < parts; ++p) {
    const double target = total * static_cast<double>(p) / static_cast<double>(parts);
    while (row < n && static_cast<double>(prefix[row] - prefix[0]) < target) ++row;
    bounds[static_cast<std::size_t>(p)] = std::max(bounds[static_cast<std::size_t>(p) - 1], first + row);
  }
  return bounds;
}

}  // namespace shrink
