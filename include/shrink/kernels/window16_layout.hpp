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
// Passes are stored block by block, windows ascending, each with its window's first
// column; a (block, window) with no entries takes none. When some row has more than S
// entries in a window, the (block, window) either takes ⌈m / S⌉ passes (m the fullest
// row's count) or one pass plus a *residual*: each row's entries past its S slots go to a
// list per row block (u32 column, int8 value, row in the block) that the kernel adds
// after the block's passes. It spills when that is modelled cheaper
// (k_spill_entries_per_pass). S ∈ {2, 4, 8, 16} is chosen per matrix by the modelled time
// (window16_choice::cost_ns). 64 slots (two AVX2 registers) rather than 32 per pass: the
// per-pass costs (the window's x load and the loop) are shared by twice the slots; a
// 32-slot pass ran 1.15 ns, a 64-slot pass 1.9 ns (issue-bound).
inline constexpr index_t k_window = 16;
inline constexpr index_t k_pass_slots = 64;
inline constexpr index_t k_pass_bytes = 128;
/// A (block, window) spills when its overflow entries are at most this many per saved
/// pass: a pass costs ≈ 1.9 ns on Zen 4, a residual entry (one scalar x load) ≈ 0.9 ns.
inline constexpr index_t k_spill_entries_per_pass = 2;
/// index32's cost per entry on Zen 4 (one x insert each), which make_spmv_plan's automatic
/// rule weighs against window16_choice::cost_ns.
inline constexpr double k_index32_ns_per_entry = 0.32;

/// What make_window16 produces (the int8 plan keeps these fields).
struct window16_parts {
  index_t slots = 0;                     ///< S: slots per row per pass (2, 4, 8 or 16)
  aligned_buffer<std::uint32_t> block_ptr;  ///< blocks + 1: first pass of each row block
  aligned_buffer<std::uint32_t> window;     ///< per pass: its window's first column (a multiple of 16)
  aligned_buffer<std::uint8_t> passes;      ///< 128 bytes per pass: 64 local columns, 64 values
  bool full_range = false;                  ///< some value is -128 (the kernels' sign trick needs |q| <= 127)
  aligned_buffer<std::uint32_t> res_ptr;    ///< blocks + 1: each row block's first residual entry
  aligned_buffer<std::uint32_t> res_col;    ///< residual entries' columns
  aligned_buffer<std::int8_t> res_val;      ///< residual entries' values
  aligned_buffer<std::uint8_t> res_row;     ///< residual entries' rows within their block

  [[nodiscard]] std::size_t bytes() const noexcept {
    return block_ptr.size_bytes() + window.size_bytes() + passes.size_bytes() + res_ptr.size_bytes() +
           res_col.size_bytes() + res_val.size_bytes() + res_row.size_bytes();
  }
};

/// What one slot width costs: passes, residual entries, and the modelled time in ns
/// (Zen 4, benchmarks/results/sparse.md run 10: 1.9 ns per pass, 2.4 with S = 2, whose
/// kernel folds each 32-slot half into even and odd rows separately; 0.9 ns per residual
/// entry, a scalar x load each).
struct window16_choice {
  index_t slots = 4;
  std::uint64_t passes = 0, residual = 0;
  [[nodiscard]] double cost_ns() const noexcept {
    return static_cast<double>(passes) * (slots == 2 ? 2.4 : 1.9) + 0.9 * static_cast<double>(residual);
  }
};

/// The passes of one (block, window): its fullest row's count m and the entries past S
/// summed over rows. Returns {passes, residual entries}: ⌈m/S⌉ passes, or 1 pass and the
/// excess as residual when that saves passes at ≤ k_spill_entries_per_pass entries each.
constexpr std::pair<std::uint64_t, std::uint64_t> window16_split(index_t m, index_t excess, index_t slots) noexcept {
  const index_t extra = (m + slots - 1) / slots - 1;
  if (extra > 0 && excess <= k_spill_entries_per_pass * extra) return {1, static_cast<std::uint64_t>(excess)};
  return {static_cast<std::uint64_t>(extra + 1), 0};
}

/// Passes and residual entries of a CSR (row pointers rp, columns col) laid out with S
/// slots per row, (block, window) by (block, window) as window16_split decides.
template <class Col>
window16_choice window16_count(std::span<const std::uint32_t> rp, const Col& col, index_t rows, index_t cols,
                               index_t slots) {
  // Per touched window of the current block: the fullest row's count and the excess over S;
  // only the windows a block touches are visited and reset: O(nnz + rows).
  const index_t rb = k_pass_slots / slots, windows = (cols + k_window - 1) / k_window;
  std::vector<index_t> fullest(static_cast<std::size_t>(windows)), excess(static_cast<std::size_t>(windows));
  std::vector<index_t> touched;
  window16_choice out{slots, 0, 0};
  const auto flush = [&] {
    for (const index_t w : touched) {
      const auto [passes, residual] =
          window16_split(fullest[static_cast<std::size_t>(w)], excess[static_cast<std::size_t>(w)], slots);
      out.passes += passes;
      out.residual += residual;
      fullest[static_cast<std::size_t>(w)] = excess[static_cast<std::size_t>(w)] = 0;
    }
    touched.clear();
  };
  for (index_t b0 = 0; b0 < rows; b0 += rb) {
    flush();
    for (index_t i = b0; i < std::min(rows, b0 + rb); ++i) {
      index_t k = rp[static_cast<std::size_t>(i)];
      const index_t k1 = rp[static_cast<std::size_t>(i) + 1];
      while (k < k1) {
        const index_t w = col(k) / k_window;
        index_t e = k;
        while (e < k1 && col(e) / k_window == w) ++e;
        auto& m = fullest[static_cast<std::size_t>(w)];
        if (m == 0) touched.push_back(w);
        m = std::max(m, e - k);
        excess[static_cast<std::size_t>(w)] += std::max<index_t>(e - k - slots, 0);
        k = e;
      }
    }
  }
  flush();
  return out;
}

/// The slot width with the lowest modelled time (ties keep the smaller S).
template <class Col>
window16_choice window16_best(std::span<const std::uint32_t> rp, const Col& col, index_t rows, index_t cols) {
  window16_choice best{};
  double best_ns = -1.0;
  for (const index_t s : {index_t{2}, index_t{4}, index_t{8}, index_t{16}}) {
    const auto c = window16_count(rp, col, rows, cols, s);
    if (best_ns < 0.0 || c.cost_ns() < best_ns) best = c, best_ns = c.cost_ns();
  }
  return best;
}

/// Lays out a validated CSR (sorted, unique, in-range columns; int8 values) as window16.
template <class Col>
window16_parts make_window16(const char* who, std::span<const std::uint32_t> rp, const Col& col,
                             std::span<const std::int8_t> values, index_t rows, index_t cols) {
  const window16_choice choice = window16_best(rp, col, rows, cols);
  SHRINK_REQUIRE(choice.passes <= std::uint64_t{0xFFFFFFFF}, errc::overflow, who, ": ", choice.passes,
                 " window16 passes overflow the u32 block pointers");
  window16_parts out;
  out.slots = choice.slots;
  const index_t s = out.slots, rb = k_pass_slots / s, blocks = (rows + rb - 1) / rb;
  const index_t windows = (cols + k_window - 1) / k_window;
  out.block_ptr = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(blocks) + 1);
  out.window = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(choice.passes), uninitialized);
  out.passes = aligned_buffer<std::uint8_t>(static_cast<std::size_t>(choice.passes * k_pass_bytes), uninitialized);
  prefer_huge_pages(out.passes.data(), out.passes.size_bytes());
  out.full_range = std::find(values.begin(), values.end(), std::int8_t{-128}) != values.end();
  out.res_ptr = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(blocks) + 1);
  out.res_col = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(choice.residual), uninitialized);
  out.res_val = aligned_buffer<std::int8_t>(static_cast<std::size_t>(choice.residual), uninitialized);
  out.res_row = aligned_buffer<std::uint8_t>(static_cast<std::size_t>(choice.residual), uninitialized);
  const auto u = [](index_t i) { return static_cast<std::size_t>(i); };
  std::vector<index_t> at(u(rb)), end(u(rb)), count(u(rb));  // per row of the block
  std::size_t pass = 0, res = 0;
  for (index_t b = 0; b < blocks; ++b) {
    const index_t b0 = b * rb, nr = std::min(rows - b0, rb);
    out.block_ptr[u(b)] = static_cast<std::uint32_t>(pass);
    out.res_ptr[u(b)] = static_cast<std::uint32_t>(res);
    for (index_t r = 0; r < nr; ++r) {
      at[u(r)] = rp[u(b0 + r)];
      end[u(r)] = rp[u(b0 + r) + 1];
    }
    while (true) {  // one window per iteration: the lowest any row of the block still has entries in
      index_t w = windows;
      for (index_t r = 0; r < nr; ++r)
        if (at[u(r)] < end[u(r)]) w = std::min(w, col(at[u(r)]) / k_window);
      if (w == windows) break;
      index_t m = 0, excess = 0;
      for (index_t r = 0; r < nr; ++r) {
        index_t e = at[u(r)];
        while (e < end[u(r)] && col(e) / k_window == w) ++e;
        count[u(r)] = e - at[u(r)];
        m = std::max(m, count[u(r)]);
        excess += std::max<index_t>(count[u(r)] - s, 0);
      }
      const auto [n_passes, n_residual] = window16_split(m, excess, s);
      for (std::uint64_t q = 0; q < n_passes; ++q) {
        // Counted and laid out by the same rule; only unsorted columns could make them differ.
        SHRINK_REQUIRE(pass < choice.passes, errc::format, who, ": columns are not sorted within a row");
        std::uint8_t* p = out.passes.data() + pass * k_pass_bytes;
        std::fill(p, p + k_pass_bytes, std::uint8_t{0});
        out.window[pass] = static_cast<std::uint32_t>(w * k_window);
        for (index_t r = 0; r < nr; ++r)
          for (index_t slot = r * s; slot < (r + 1) * s && count[u(r)] > 0; ++slot, ++at[u(r)], --count[u(r)]) {
            p[slot] = static_cast<std::uint8_t>(col(at[u(r)]) % k_window);
            p[k_pass_slots + slot] = static_cast<std::uint8_t>(values[u(at[u(r)])]);
          }
        ++pass;
      }
      if (n_residual > 0)
        for (index_t r = 0; r < nr; ++r)
          for (; count[u(r)] > 0; ++at[u(r)], --count[u(r)]) {
            SHRINK_REQUIRE(res < choice.residual, errc::format, who, ": columns are not sorted within a row");
            out.res_col[res] = static_cast<std::uint32_t>(col(at[u(r)]));
            out.res_val[res] = values[u(at[u(r)])];
            out.res_row[res++] = static_cast<std::uint8_t>(r);
          }
    }
  }
  out.block_ptr[u(blocks)] = static_cast<std::uint32_t>(pass);
  out.res_ptr[u(blocks)] = static_cast<std::uint32_t>(res);
  return out;
}

}  // namespace shrink::kernels::sparse_detail
