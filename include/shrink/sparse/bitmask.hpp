// bitmask.hpp: bitmask + packed values format (one bit per weight, kept values in row-major order).
#pragma once

#include <bit>
#include <cstdint>
#include <limits>
#include <span>

#include "common.hpp"
#include "convert.hpp"

namespace shrink::sparse {

/// One bit per weight (64-bit words, each row padded to a whole word, bit j%64 of word j/64
/// for column j) and the kept values packed in row-major order. Cheaper than CSR when more
/// than about 1/32 of the weights are kept (docs/sparse.md). `row_offset[i]` (32-bit) is the
/// index of row i's first value, so a row can be decoded without scanning earlier ones.
class bitmask_f32 {
 public:
  bitmask_f32() = default;

  static bitmask_f32 from_dense(const_view<float, 2> weights, const_view<std::uint8_t, 2> mask) {
    if (const auto* o = convert_impl::selected();
        o != nullptr && mask.shape() == weights.shape() && weights.size() > 0 && detail::rows_contiguous(weights) &&
        detail::rows_contiguous(mask)) {
      bitmask_f32 out;
      if (out.build_fast(*o, weights, mask)) return out;
      convert_impl::fallbacks().fetch_add(1, std::memory_order_relaxed);
    }
    return from_dense_reference(weights, mask);
  }

  /// The element-by-element conversion: the oracle, and the path that raises every error.
  static bitmask_f32 from_dense_reference(const_view<float, 2> weights, const_view<std::uint8_t, 2> mask) {
    const char* who = "bitmask_f32::from_dense";
    detail::check_mask(who, weights, mask);
    const index_t rows = weights.extent(0), cols = weights.extent(1);
    bitmask_f32 out;
    out.rows_ = rows;
    out.cols_ = cols;
    out.words_per_row_ = (cols + 63) / 64;
    out.bits_ = aligned_buffer<std::uint64_t>(static_cast<std::size_t>(rows * out.words_per_row_));
    out.row_offset_ = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(rows) + 1);
    index_t nnz = 0;
    for (index_t i = 0; i < rows; ++i) {
      for (index_t j = 0; j < cols; ++j)
        if (mask(i, j)) {
          out.bits_[static_cast<std::size_t>(i * out.words_per_row_ + j / 64)] |= std::uint64_t{1} << (j % 64);
          ++nnz;
        }
      detail::check_nnz(who, nnz);
      out.row_offset_[static_cast<std::size_t>(i) + 1] = static_cast<std::uint32_t>(nnz);
    }
    out.values_ = aligned_buffer<float>(static_cast<std::size_t>(nnz));
    index_t k = 0;
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j)
        if (mask(i, j)) {
          detail::check_finite(who, weights(i, j), i, j);
          out.values_[static_cast<std::size_t>(k++)] = weights(i, j);
        }
    return out;
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] index_t nnz() const noexcept { return static_cast<index_t>(values_.size()); }
  [[nodiscard]] std::span<const std::uint64_t> bits() const noexcept { return bits_.span(); }
  [[nodiscard]] std::span<const float> values() const noexcept { return values_.span(); }
  [[nodiscard]] std::span<const std::uint32_t> row_offset() const noexcept { return row_offset_.span(); }

  [[nodiscard]] tensor<float, 2> to_dense() const {
    tensor<float, 2> out(shape<2>{rows_, cols_});
    for (index_t i = 0; i < rows_; ++i) {
      index_t k = row_offset_[static_cast<std::size_t>(i)];
      for (index_t w = 0; w < words_per_row_; ++w)
        for (std::uint64_t word = bits_[static_cast<std::size_t>(i * words_per_row_ + w)]; word != 0;
             word &= word - 1)
          out(i, w * 64 + std::countr_zero(word)) = values_[static_cast<std::size_t>(k++)];
    }
    return out;
  }
  /// 8 rows ceil(cols / 64) + 4 (rows + 1) + 4 nnz.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return bits_.size_bytes() + row_offset_.size_bytes() + values_.size_bytes();
  }

 private:
  /// The fast path (convert.hpp): count the mask bytes per row, then one row kernel writes the
  /// row's bit words and packs its kept values. False on any bad input (the caller reruns the
  /// reference, which raises).
  bool build_fast(const convert_impl::ops& o, const_view<float, 2> w, const_view<std::uint8_t, 2> mask) {
    const index_t rows = w.extent(0), cols = w.extent(1);
    rows_ = rows;
    cols_ = cols;
    words_per_row_ = (cols + 63) / 64;
    row_offset_ = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(rows) + 1, uninitialized);
    row_offset_[0] = 0;
    index_t nnz = 0;
    for (index_t i = 0; i < rows; ++i) {
      unsigned mx = 0;
      nnz += o.mask_count(mask.data() + i * mask.stride(0), cols, &mx);
      if (mx > 1 || nnz > index_t{std::numeric_limits<std::uint32_t>::max()}) return false;
      row_offset_[static_cast<std::size_t>(i) + 1] = static_cast<std::uint32_t>(nnz);
    }
    bits_ = aligned_buffer<std::uint64_t>(static_cast<std::size_t>(rows * words_per_row_), uninitialized);
    values_ = aligned_buffer<float>(static_cast<std::size_t>(nnz), uninitialized);
    shrink::prefer_huge_pages(values_.data(), values_.size_bytes());
    for (index_t i = 0; i < rows; ++i) {
      const index_t at = row_offset_[static_cast<std::size_t>(i)];
      if (!o.bitmask_row(w.data() + i * w.stride(0), mask.data() + i * mask.stride(0), cols,
                         bits_.data() + i * words_per_row_, values_.data() + at, nnz - at))
        return false;
    }
    return true;
  }

  index_t rows_ = 0, cols_ = 0, words_per_row_ = 0;
  aligned_buffer<std::uint64_t> bits_;
  aligned_buffer<std::uint32_t> row_offset_{1};
  aligned_buffer<float> values_;
};

}  // namespace shrink::sparse
