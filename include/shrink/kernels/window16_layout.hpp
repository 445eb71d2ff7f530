// window16_layout.hpp: the window16 batch-1 layout for int8 CSR: columns in windows of 16 (a 4-bit local index looked up in registers), rows in blocks that share each pass.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "../core/aligned_buffer.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/huge_pages.hpp"

namespace shrink::kernels::sparse_detail {

// Why: at 10-30 % density the x access per entry, not the bytes, bounds every index
// layout (one load per entry, benchmarks/results/sparse.md). With int8 x, 16 consecutive
// x bytes fit one 128-bit table, so a pshufb fetches x for 32 entries at once if each entry
// carries only its column within a window of 16. A *pass* is 128 bytes: for one block of
// R = 64 / S rows and one window, 64 local columns (u8, 0-15) then 64 int8 values, S slots
// per row (row r owns slots r·S .. r·S + S - 1; unused slots hold column 0 and value 0).
// A (block, window) pair with more than S entries in some row takes several passes; one
// with no entries takes none. Passes are stored block by block, windows ascending, each
// with its window's first column. S (4, 8 or 16) is chosen per matrix to minimise the
// passes. 64 slots (two AVX2 registers) rather than 32 per pass: the per-pass costs (the
// window's x load and the loop) are shared by twice the slots, and the kernel ran 1.15 ns
// per 32-slot pass, bound by instructions issued, not by its 6 vector operations.
inline constexpr index_t k_window = 16;
inline constexpr index_t k_pass_slots = 64;
inline constexpr index_t k_pass_bytes = 128;

/// What make_window16 produces (the int8 plan keeps these fields).
struct window16_parts {
  index_t slots = 0;                     ///< S: slots per row per pass (4, 8 or 16)
  aligned_buffer<std::uint32_t> block_ptr;  ///< blocks + 1: first pass of each row block
  aligned_buffer<std::uint32_t> window;     ///< per pass: its window's first column (a multiple of 16)
  aligned_buffer<std::uint8_t> passes;      ///< 128 bytes per pass: 64 local columns, 64 values
  bool full_range = false;                  ///< some value is -128 (the kernels' sign trick needs |q| <= 127)
};

/// Passes of a CSR (row pointers rp, columns col) laid out with S slots per row: Σ over row
/// blocks and windows of max_r ⌈count(r, window) / S⌉.
template <class Col>
std::uint64_t window16_pass_count(std::span<const std::uint32_t> rp, const Col& col, index_t rows, index_t cols,
                                  index_t slots) {
  // need[w]: passes of window w in the current block; only the windows a block touches are
  // visited and reset, so the cost is O(nnz + rows), not O(blocks · windows).
  const index_t rb = k_pass_slots / slots, windows = (cols + k_window - 1) / k_window;
  std::vector<std::uint32_t> need(static_cast<std::size_t>(windows));
  std::vector<index_t> touched;
  std::uint64_t total = 0;
  for (index_t b0 = 0; b0 < rows; b0 += rb) {
    for (const index_t w : touched) total += std::exchange(need[static_cast<std::size_t>(w)], 0u);
    touched.clear();
    for (index_t i = b0; i < std::min(rows, b0 + rb); ++i) {
      index_t k = rp[static_cast<std::size_t>(i)];
      const index_t k1 = rp[static_cast<std::size_t>(i) + 1];
      while (k < k1) {
        const index_t w = col(k) / k_window;
        index_t e = k;
        while (e < k1 && col(e) / k_window == w) ++e;
        auto& n = need[static_cast<std::size_t>(w)];
        if (n == 0) touched.push_back(w);
        n = std::max<std::uint32_t>(n, static_cast<std::uint32_t>((e - k + slots - 1) / slots));
        k = e;
      }
    }
  }
  for (const index_t w : touched) total += need[static_cast<std::size_t>(w)];
  return total;
}

/// The slot width S with the fewest passes (ties keep the smaller S, more rows per pass).
struct window16_choice {
  index_t slots = 4;
  std::uint64_t passes = 0;
};
template <class Col>
window16_choice window16_best(std::span<const std::uint32_t> rp, const Col& col, index_t rows, index_t cols) {
  window16_choice best{4, ~std::uint64_t{0}};
  for (const index_t s : {index_t{4}, index_t{8}, index_t{16}}) {
    const std::uint64_t n = window16_pass_count(rp, col, rows, cols, s);
    if (n < best.passes) best = {s, n};
  }
  return best;
}

/// Lays out a validated CSR (sorted, unique, in-range columns; int8 values) as window16.
template <class Col>
window16_parts make_window16(const char* who, std::span<const std::uint32_t> rp, const Col& col,
                             std::span<const std::int8_t> values, index_t rows, index_t cols) {
  window16_parts out;
  const auto [slots, best] = window16_best(rp, col, rows, cols);
  out.slots = slots;
  SHRINK_REQUIRE(best <= std::uint64_t{0xFFFFFFFF}, errc::overflow, who, ": ", best,
                 " window16 passes overflow the u32 block pointers");
  const index_t s = out.slots, rb = k_pass_slots / s, blocks = (rows + rb - 1) / rb;
  const index_t windows = (cols + k_window - 1) / k_window;
  out.block_ptr = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(blocks) + 1);
  out.window = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(best), uninitialized);
  out.passes = aligned_buffer<std::uint8_t>(static_cast<std::size_t>(best * k_pass_bytes), uninitialized);
  prefer_huge_pages(out.passes.data(), out.passes.size_bytes());
  out.full_range = std::find(values.begin(), values.end(), std::int8_t{-128}) != values.end();
  std::vector<index_t> at(static_cast<std::size_t>(rb)), end(static_cast<std::size_t>(rb));  // each row's next entry
  std::size_t pass = 0;
  for (index_t b = 0; b < blocks; ++b) {
    const index_t b0 = b * rb, nr = std::min(rows - b0, rb);
    out.block_ptr[static_cast<std::size_t>(b)] = static_cast<std::uint32_t>(pass);
    for (index_t r = 0; r < nr; ++r) {
      at[static_cast<std::size_t>(r)] = rp[static_cast<std::size_t>(b0 + r)];
      end[static_cast<std::size_t>(r)] = rp[static_cast<std::size_t>(b0 + r) + 1];
    }
    while (true) {  // one pass per iteration, for the lowest window any row still has entries in
      index_t w = windows;
      for (index_t r = 0; r < nr; ++r)
        if (at[static_cast<std::size_t>(r)] < end[static_cast<std::size_t>(r)])
          w = std::min(w, col(at[static_cast<std::size_t>(r)]) / k_window);
      if (w == windows) break;
      // Counted and laid out by the same rule; only unsorted columns could make them differ.
      SHRINK_REQUIRE(pass < best, errc::format, who, ": columns are not sorted within a row");
      std::uint8_t* p = out.passes.data() + pass * k_pass_bytes;
      std::fill(p, p + k_pass_bytes, std::uint8_t{0});
      out.window[pass] = static_cast<std::uint32_t>(w * k_window);
      for (index_t r = 0; r < nr; ++r) {
        index_t& k = at[static_cast<std::size_t>(r)];
        for (index_t slot = r * s; slot < (r + 1) * s && k < end[static_cast<std::size_t>(r)] && col(k) / k_window == w;
             ++slot, ++k) {
          p[slot] = static_cast<std::uint8_t>(col(k) % k_window);
          p[k_pass_slots + slot] = static_cast<std::uint8_t>(values[static_cast<std::size_t>(k)]);
        }
      }
      ++pass;
    }
  }
  out.block_ptr[static_cast<std::size_t>(blocks)] = static_cast<std::uint32_t>(pass);
  return out;
}

}  // namespace shrink::kernels::sparse_detail
