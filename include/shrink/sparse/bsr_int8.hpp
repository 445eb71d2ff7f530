// bsr_int8.hpp: BSR with int8 values and one fp32 scale per row (w = scale[i]·q), bsr_f32's block layout.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>

#include "bsr.hpp"
#include "common.hpp"

namespace shrink::sparse {

/// BSR whose stored values are int8 codes with one fp32 scale per (output) row, so each row
/// of a 4×4 block row keeps its own scale. Blocks, their order and the zeros inside a kept
/// block are exactly bsr_f32's for the same mask; values follow csr_int8's rule:
/// scale_i = max|kept w_i·| / 127 (1 for a row with no kept weight), q = round-half-even
/// (w / scale) clamped to [−127, 127]. make_plan(bsr_int8) lowers it to the int8 kernels
/// with the same run / row_group hints as bsr_f32.
class bsr_int8 : public bsr_base<std::int8_t> {
 public:
  bsr_int8() = default;

  static bsr_int8 from_dense(const_view<float, 2> weights, const_view<std::uint8_t, 2> mask, block_shape block) {
    const char* who = "bsr_int8::from_dense";
    detail::check_mask(who, weights, mask);
    bsr_int8 out;
    out.row_scales_ = detail::kept_row_scales(who, weights, mask);
    out.build_blocks(who, weights.extent(0), weights.extent(1), block,
                     [&](index_t i, index_t j) { return mask(i, j) != 0; },
                     [&](index_t i, index_t j) {
                       const float q = std::nearbyint(weights(i, j) / out.row_scales_[static_cast<std::size_t>(i)]);
                       return static_cast<std::int8_t>(std::clamp(q, -127.0f, 127.0f));
                     });
    return out;
  }

  /// From already-quantized codes q (any int8, −128 included) and per-row scales; a block
  /// is kept when any of its mask entries is 1, and keeps q where the mask is 1.
  static bsr_int8 from_quantized(const_view<std::int8_t, 2> q, std::span<const float> row_scales,
                                 const_view<std::uint8_t, 2> mask, block_shape block) {
    const char* who = "bsr_int8::from_quantized";
    SHRINK_REQUIRE(mask.shape() == q.shape(), errc::shape_mismatch, who, ": mask shape ", mask.shape(),
                   " differs from the weight shape ", q.shape());
    detail::check_row_scales(who, row_scales, q.extent(0));
    bsr_int8 out;
    out.row_scales_ = aligned_buffer<float>(row_scales);
    out.build_blocks(
        who, q.extent(0), q.extent(1), block,
        [&](index_t i, index_t j) {
          SHRINK_REQUIRE(mask(i, j) <= 1, errc::invalid_argument, who, ": mask values must be 0 or 1, got ",
                         int{mask(i, j)}, " at (", i, ", ", j, ")");
          return mask(i, j) != 0;
        },
        [&](index_t i, index_t j) { return q(i, j); });
    return out;
  }

  [[nodiscard]] std::span<const float> row_scales() const noexcept { return row_scales_.span(); }
  /// The dequantized matrix, scale[i]·q (exactly the fp32 products).
  [[nodiscard]] tensor<float, 2> to_dense() const {
    return expand(
        [&](index_t i, std::int8_t q) { return row_scales_[static_cast<std::size_t>(i)] * static_cast<float>(q); });
  }
  /// 4 (rows / r + 1) + (2 or 4) blocks + r c blocks + 4 rows.
  [[nodiscard]] std::size_t bytes() const noexcept { return structure_bytes() + row_scales_.size_bytes(); }

 private:
  aligned_buffer<float> row_scales_;
};

}  // namespace shrink::sparse
