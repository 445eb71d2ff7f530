// bsr.hpp: block compressed sparse row (BSR) with fp32 values and a configurable r x c block.
#pragma once

#include <cstdint>
#include <span>

#include "common.hpp"

namespace shrink::sparse {

/// Block shape: r rows by c columns (1x4, 4x1, 8x1, 16x1, 4x4, ...).
struct block_shape {
  index_t rows = 1;
  index_t cols = 4;
};

/// BSR: the matrix is tiled into r x c blocks; a block is stored (r*c values, row-major
/// inside the block) when any of its mask entries is 1, with masked-out entries inside a
/// stored block set to 0, so to_dense() is exactly weights * mask. `row_ptr` runs over block
/// rows, `block_col` holds the block-column index of each stored block (16-bit when
/// cols / c <= 65,536).
class bsr_f32 {
 public:
  bsr_f32() = default;

  static bsr_f32 from_dense(const_view<float, 2> weights, const_view<std::uint8_t, 2> mask, block_shape block) {
    detail::check_mask("bsr_f32::from_dense", weights, mask);
    return build("bsr_f32::from_dense", weights, block, [&](index_t i, index_t j) { return mask(i, j) != 0; });
  }

  /// Keeps every block holding at least one non-zero.
  static bsr_f32 from_nonzeros(const_view<float, 2> weights, block_shape block) {
    return build("bsr_f32::from_nonzeros", weights, block,
                 [&](index_t i, index_t j) { return weights(i, j) != 0.0f; });
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] block_shape block() const noexcept { return block_; }
  [[nodiscard]] index_t blocks() const noexcept { return block_col_.size(); }
  [[nodiscard]] std::span<const std::uint32_t> row_ptr() const noexcept { return row_ptr_.span(); }
  [[nodiscard]] const column_indices& block_col() const noexcept { return block_col_; }
  /// blocks() * r * c values, block after block, row-major inside a block.
  [[nodiscard]] std::span<const float> values() const noexcept { return values_.span(); }

  [[nodiscard]] tensor<float, 2> to_dense() const {
    tensor<float, 2> out(shape<2>{rows_, cols_});
    const index_t r = block_.rows, c = block_.cols;
    for (index_t br = 0; br < rows_ / r; ++br)
      for (index_t b = row_ptr_[static_cast<std::size_t>(br)]; b < row_ptr_[static_cast<std::size_t>(br) + 1]; ++b)
        for (index_t y = 0; y < r; ++y)
          for (index_t x = 0; x < c; ++x)
            out(br * r + y, block_col_[b] * c + x) = values_[static_cast<std::size_t>(b * r * c + y * c + x)];
    return out;
  }
  /// 4 (rows / r + 1) + (2 or 4) blocks + 4 r c blocks.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return row_ptr_.size_bytes() + block_col_.bytes() + values_.size_bytes();
  }

 private:
  template <class Keep>
  static bsr_f32 build(const char* who, const_view<float, 2> w, block_shape block, Keep&& keep) {
    const index_t rows = w.extent(0), cols = w.extent(1), r = block.rows, c = block.cols;
    SHRINK_REQUIRE(r >= 1 && c >= 1, errc::invalid_argument, who, ": block must be at least 1x1, got ", r, "x", c);
    SHRINK_REQUIRE(rows % r == 0 && cols % c == 0, errc::shape_mismatch, who, ": block ", r, "x", c,
                   " does not divide the ", rows, "x", cols, " matrix; expected rows % ", r, " == 0 and cols % ", c,
                   " == 0 (pad the matrix first)");
    bsr_f32 out;
    out.rows_ = rows;
    out.cols_ = cols;
    out.block_ = block;
    const index_t brows = rows / r, bcols = cols / c;
    auto kept = [&](index_t br, index_t bc) {
      for (index_t y = 0; y < r; ++y)
        for (index_t x = 0; x < c; ++x)
          if (keep(br * r + y, bc * c + x)) return true;
      return false;
    };
    out.row_ptr_ = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(brows) + 1);
    index_t n = 0;
    for (index_t br = 0; br < brows; ++br) {
      for (index_t bc = 0; bc < bcols; ++bc) n += kept(br, bc) ? 1 : 0;
      detail::check_nnz(who, n * r * c);
      out.row_ptr_[static_cast<std::size_t>(br) + 1] = static_cast<std::uint32_t>(n);
    }
    out.block_col_ = column_indices(n, bcols);
    out.values_ = aligned_buffer<float>(static_cast<std::size_t>(n * r * c));
    index_t b = 0;
    for (index_t br = 0; br < brows; ++br)
      for (index_t bc = 0; bc < bcols; ++bc) {
        if (!kept(br, bc)) continue;
        out.block_col_.set(b, bc);
        for (index_t y = 0; y < r; ++y)
          for (index_t x = 0; x < c; ++x) {
            const index_t i = br * r + y, j = bc * c + x;
            float v = 0.0f;
            if (keep(i, j)) {
              detail::check_finite(who, w(i, j), i, j);
              v = w(i, j);
            }
            out.values_[static_cast<std::size_t>(b * r * c + y * c + x)] = v;
          }
        ++b;
      }
    return out;
  }

  index_t rows_ = 0, cols_ = 0;
  block_shape block_{};
  aligned_buffer<std::uint32_t> row_ptr_{1};
  column_indices block_col_;
  aligned_buffer<float> values_;
};

}  // namespace shrink::sparse
