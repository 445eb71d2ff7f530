// int8_pack.hpp: packed_s8_weights, the panel layout every int8 GEMM/GEMV path reads, and its explicit pack function.
#pragma once

#include <cstdint>

#include "../core/aligned_buffer.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/tensor_view.hpp"

namespace shrink::kernels {

/// Columns (output channels) per packed panel: one AVX-512 register of s32 lanes.
inline constexpr index_t k_int8_panel = 16;
/// Depth step of the packed layout: the 4 bytes that vpdpbusd sums into one s32 lane.
inline constexpr index_t k_int8_depth = 4;

/// s8 weights W[N, K] (N outputs, K depth) packed for y = W·x (docs/kernels.md, "Int8 GEMM/GEMV").
/// Layout: panels of 16 outputs; inside a panel, K in steps of 4 ("quads"); one quad of a
/// panel is 64 bytes: output c's 4 depth bytes at [4c, 4c+4). K is padded to a multiple of 4
/// and N to a multiple of 16 with zero weights, so no path needs a masked load or a tail.
/// `column_sums[n]` = Σ_k W[n,k] (for the activation zero point), computed while packing.
struct packed_s8_weights {
  index_t rows = 0;           ///< N, outputs
  index_t depth = 0;          ///< K
  index_t depth_padded = 0;   ///< K rounded up to a multiple of 4
  index_t panels = 0;         ///< ceil(N / 16)
  std::int32_t zero_point = 0;  ///< weight zero point (0 for symmetric weights)
  aligned_buffer<std::int8_t> data;       ///< panels · depth_padded · 16 bytes
  aligned_buffer<std::int32_t> column_sums;  ///< panels · 16 (zero past N)

  [[nodiscard]] const std::int8_t* panel(index_t p) const noexcept {
    return data.data() + p * depth_padded * k_int8_panel;
  }
  /// The weight W[n, k] read back from the packed layout.
  [[nodiscard]] std::int8_t at(index_t n, index_t k) const noexcept {
    return panel(n / k_int8_panel)[(k / 4) * 64 + (n % k_int8_panel) * 4 + (k % 4)];
  }
  [[nodiscard]] bool empty() const noexcept { return rows == 0; }
};

/// Packs W[N, K] (any strides) with weight zero point `zero_point` in [-128, 127].
inline packed_s8_weights pack_s8_weights(tensor_view<const std::int8_t, 2> w, std::int32_t zero_point = 0) {
  const index_t n = w.extent(0), k = w.extent(1);
  SHRINK_REQUIRE(n > 0 && k > 0, errc::empty_input, "pack_s8_weights: weights must be non-empty, got ", n, "x", k);
  SHRINK_REQUIRE(w.data() != nullptr, errc::invalid_argument, "pack_s8_weights: null weight pointer for a ", n,
                 "x", k, " view");
  SHRINK_REQUIRE(zero_point >= -128 && zero_point <= 127, errc::out_of_range,
                 "pack_s8_weights: weight zero point must be in [-128, 127], got ", zero_point);
  packed_s8_weights p;
  p.rows = n;
  p.depth = k;
  p.depth_padded = (k + 3) / 4 * 4;
  p.panels = (n + k_int8_panel - 1) / k_int8_panel;
  p.zero_point = zero_point;
  p.data = aligned_buffer<std::int8_t>(static_cast<std::size_t>(p.panels * p.depth_padded * k_int8_panel), huge_pages);
  p.column_sums = aligned_buffer<std::int32_t>(static_cast<std::size_t>(p.panels * k_int8_panel));
  for (index_t r = 0; r < n; ++r) {
    std::int8_t* dst = p.data.data() + (r / k_int8_panel) * p.depth_padded * k_int8_panel + (r % k_int8_panel) * 4;
    std::int32_t sum = 0;
    for (index_t c = 0; c < k; ++c) {
      const std::int8_t v = w(r, c);
      dst[(c / 4) * 64 + (c % 4)] = v;
      sum += v;
    }
    p.column_sums[static_cast<std::size_t>(r)] = sum;
  }
  return p;
}

}  // namespace shrink::kernels
