// common.hpp: pieces every sparse format shares: column-index storage (16 or 32 bits, chosen by width) and input checks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>

#include "../core/aligned_buffer.hpp"
#include "../core/error.hpp"
#include "../core/huge_pages.hpp"
#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"

namespace shrink::sparse {

/// Column indices of a sparse format. 16-bit when every index fits (the matrix has at most
/// 65,536 columns), else 32-bit; the choice is made once from the column count, so two
/// matrices of the same shape always use the same width (docs/sparse.md, "Index width").
class column_indices {
 public:
  static constexpr index_t k_max_narrow_columns = index_t{1} << 16;

  column_indices() = default;
  column_indices(index_t count, index_t columns) : narrow_(columns <= k_max_narrow_columns) {
    SHRINK_REQUIRE(columns <= index_t{std::numeric_limits<std::uint32_t>::max()}, errc::overflow,
                   "sparse: ", columns, " columns do not fit 32-bit column indices");
    if (narrow_)
      u16_ = aligned_buffer<std::uint16_t>(static_cast<std::size_t>(count));
    else
      u32_ = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(count));
  }

  /// Storage left uninitialised: the caller writes every index before any is read.
  column_indices(index_t count, index_t columns, uninitialized_t) : narrow_(columns <= k_max_narrow_columns) {
    SHRINK_REQUIRE(columns <= index_t{std::numeric_limits<std::uint32_t>::max()}, errc::overflow,
                   "sparse: ", columns, " columns do not fit 32-bit column indices");
    if (narrow_)
      u16_ = aligned_buffer<std::uint16_t>(static_cast<std::size_t>(count), uninitialized);
    else
      u32_ = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(count), uninitialized);
  }

  [[nodiscard]] bool narrow() const noexcept { return narrow_; }
  /// The active array, for the conversion kernels that fill it (convert.hpp).
  [[nodiscard]] void* data() noexcept {
    return narrow_ ? static_cast<void*>(u16_.data()) : static_cast<void*>(u32_.data());
  }
  /// Bits per stored index: 16 or 32.
  [[nodiscard]] int bits() const noexcept { return narrow_ ? 16 : 32; }
  [[nodiscard]] index_t size() const noexcept {
    return static_cast<index_t>(narrow_ ? u16_.size() : u32_.size());
  }
  [[nodiscard]] std::size_t bytes() const noexcept { return narrow_ ? u16_.size_bytes() : u32_.size_bytes(); }
  [[nodiscard]] index_t operator[](index_t i) const noexcept {
    return narrow_ ? static_cast<index_t>(u16_[static_cast<std::size_t>(i)])
                   : static_cast<index_t>(u32_[static_cast<std::size_t>(i)]);
  }
  void set(index_t i, index_t column) noexcept {
    if (narrow_)
      u16_[static_cast<std::size_t>(i)] = static_cast<std::uint16_t>(column);
    else
      u32_[static_cast<std::size_t>(i)] = static_cast<std::uint32_t>(column);
  }
  /// The raw arrays; exactly one is non-empty (unless there are no indices).
  [[nodiscard]] std::span<const std::uint16_t> u16() const noexcept { return u16_.span(); }
  [[nodiscard]] std::span<const std::uint32_t> u32() const noexcept { return u32_.span(); }

 private:
  bool narrow_ = true;
  aligned_buffer<std::uint16_t> u16_;
  aligned_buffer<std::uint32_t> u32_;
};

namespace detail {

/// A mask must match the weights' shape and hold only 0 and 1.
inline void check_mask(const char* who, const_view<float, 2> weights, const_view<std::uint8_t, 2> mask) {
  SHRINK_REQUIRE(mask.shape() == weights.shape(), errc::shape_mismatch, who, ": mask shape ", mask.shape(),
                 " differs from the weight shape ", weights.shape());
  for (index_t i = 0; i < mask.extent(0); ++i)
    for (index_t j = 0; j < mask.extent(1); ++j)
      SHRINK_REQUIRE(mask(i, j) <= 1, errc::invalid_argument, who, ": mask values must be 0 or 1, got ",
                     int{mask(i, j)}, " at (", i, ", ", j, ")");
}

/// Kept weights must be finite: a NaN stored in a format would surface in every product.
inline void check_finite(const char* who, float v, index_t i, index_t j) {
  SHRINK_REQUIRE(std::isfinite(v), errc::non_finite, who, ": weight at (", i, ", ", j, ") is ", v,
                 "; expected a finite value");
}

/// True when a row-major 2-D view's rows are contiguous (unit stride along columns), so the
/// fast conversion kernels can read a row as an array.
template <class T>
inline bool rows_contiguous(const_view<T, 2> v) {
  return v.extent(1) <= 1 || v.stride(1) == 1;
}

/// Per-row scales of an int8 format: one per row, each finite and positive.
inline void check_row_scales(const char* who, std::span<const float> s, index_t rows) {
  SHRINK_REQUIRE(s.size() == static_cast<std::size_t>(rows), errc::shape_mismatch, who, ": expected ", rows,
                 " row scales, got ", s.size());
  for (std::size_t i = 0; i < s.size(); ++i)
    SHRINK_REQUIRE(std::isfinite(s[i]) && s[i] > 0.0f, errc::invalid_argument, who, ": row scale ", i, " is ", s[i],
                   "; expected a finite positive value");
}

/// csr_int8's per-row scales of the kept weights: max_j |w_ij| / 127 over mask(i, j) = 1
/// (1 for a row with none). Every kept weight must be finite.
inline aligned_buffer<float> kept_row_scales(const char* who, const_view<float, 2> weights,
                                             const_view<std::uint8_t, 2> mask) {
  aligned_buffer<float> scales(static_cast<std::size_t>(weights.extent(0)));
  for (index_t i = 0; i < weights.extent(0); ++i) {
    float peak = 0.0f;
    for (index_t j = 0; j < weights.extent(1); ++j)
      if (mask(i, j)) {
        check_finite(who, weights(i, j), i, j);
        peak = std::max(peak, std::abs(weights(i, j)));
      }
    scales[static_cast<std::size_t>(i)] = peak > 0.0f ? peak / 127.0f : 1.0f;
  }
  return scales;
}

/// Row pointers are 32-bit: the non-zero count must fit.
inline void check_nnz(const char* who, index_t nnz) {
  SHRINK_REQUIRE(nnz <= index_t{std::numeric_limits<std::uint32_t>::max()}, errc::overflow, who, ": ", nnz,
                 " stored entries do not fit 32-bit row pointers");
}

}  // namespace detail
}  // namespace shrink::sparse
