// bsr_int8.hpp: BSR with int8 values and one fp32 scale per row (w = scale[i]·q), bsr_f32's block layout.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>

#include "bsr.hpp"
#include "common.hpp"

namespace shrink::sparse {

/// BSR whose stored values are int8 codes with one fp32 scale per (output) row, so a row
/// of a 4×4 block row keeps its own scale. Blocks, their order and the zeros inside a
/// kept block are exactly bsr_f32's for the same mask; values follow csr_int8's rule:
/// scale_i = max|kept w_i·| / 127 (1 for a row with no kept weight), q = round-half-even
/// (w / scale) clamped to [−127, 127]. make_plan(bsr_int8) lowers it to the int8 kernels
/// with the same run / row_group hints as bsr_f32.
class bsr_int8 {
 public:
  bsr_int8() = default;

  static bsr_int8 from_dense(const_view<float, 2> weights, const_view<std::uint8_t, 2> mask, block_shape block) {
    const char* who = "bsr_int8::from_dense";
    detail::check_mask(who, weights, mask);
    detail::check_block(who, weights.extent(0), weights.extent(1), block);
    bsr_int8 out;
    out.row_scales_ = aligned_buffer<float>(static_cast<std::size_t>(weights.extent(0)));
    for (index_t i = 0; i < weights.extent(0); ++i) {
      float peak = 0.0f;
      for (index_t j = 0; j < weights.extent(1); ++j)
        if (mask(i, j)) {
          detail::check_finite(who, weights(i, j), i, j);
          peak = std::max(peak, std::abs(weights(i, j)));
        }
      out.row_scales_[static_cast<std::size_t>(i)] = peak > 0.0f ? peak / 127.0f : 1.0f;
    }
    out.build(who, weights.extent(0), weights.extent(1), block, [&](index_t i, index_t j) { return mask(i, j) != 0; },
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
    out.build(
        who, q.extent(0), q.extent(1), block,
        [&](index_t i, index_t j) {
          SHRINK_REQUIRE(mask(i, j) <= 1, errc::invalid_argument, who, ": mask values must be 0 or 1, got ",
                         int{mask(i, j)}, " at (", i, ", ", j, ")");
          return mask(i, j) != 0;
        },
        [&](index_t i, index_t j) { return q(i, j); });
    return out;
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] block_shape block() const noexcept { return block_; }
  [[nodiscard]] index_t blocks() const noexcept { return block_col_.size(); }
  [[nodiscard]] std::span<const std::uint32_t> row_ptr() const noexcept { return row_ptr_.span(); }
  [[nodiscard]] const column_indices& block_col() const noexcept { return block_col_; }
  /// blocks() · r · c codes, block after block, row-major inside a block.
  [[nodiscard]] std::span<const std::int8_t> values() const noexcept { return values_.span(); }
  [[nodiscard]] std::span<const float> row_scales() const noexcept { return row_scales_.span(); }

  /// The dequantized matrix, scale[i]·q (exactly the fp32 products).
  [[nodiscard]] tensor<float, 2> to_dense() const {
    tensor<float, 2> out(shape<2>{rows_, cols_});
    const index_t r = block_.rows, c = block_.cols;
    for (index_t br = 0; br < rows_ / r; ++br)
      for (index_t b = row_ptr_[static_cast<std::size_t>(br)]; b < row_ptr_[static_cast<std::size_t>(br) + 1]; ++b)
        for (index_t y = 0; y < r; ++y)
          for (index_t x = 0; x < c; ++x)
            out(br * r + y, block_col_[b] * c + x) =
                row_scales_[static_cast<std::size_t>(br * r + y)] *
                static_cast<float>(values_[static_cast<std::size_t>(b * r * c + y * c + x)]);
    return out;
  }
  /// 4 (rows / r + 1) + (2 or 4) blocks + r c blocks + 4 rows.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return row_ptr_.size_bytes() + block_col_.bytes() + values_.size_bytes() + row_scales_.size_bytes();
  }

 private:
  template <class Keep, class Value>
  void build(const char* who, index_t rows, index_t cols, block_shape block, Keep&& keep, Value&& value) {
    rows_ = rows;
    cols_ = cols;
    block_ = block;
    detail::build_blocks<std::int8_t>(who, rows, cols, block, keep, value, row_ptr_, block_col_, values_);
  }

  index_t rows_ = 0, cols_ = 0;
  block_shape block_{};
  aligned_buffer<std::uint32_t> row_ptr_{1};
  column_indices block_col_;
  aligned_buffer<std::int8_t> values_;
  aligned_buffer<float> row_scales_;
};

}  // namespace shrink::sparse
