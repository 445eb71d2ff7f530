// quantized.hpp: quant::quantized, the owning format: packed integer codes + scales + zero points + shape + granularity.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "../core/aligned_buffer.hpp"
#include "../core/bits.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "scheme.hpp"

namespace shrink::quant {

/// A quantized tensor. Layout (docs/quantization.md, "Storage"):
/// - codes: the tensor in row-major order, one *row* (the last axis) after another; each row
///   starts on a byte boundary (`row_bytes()` = packed_bytes(last extent, storage_bits)).
///   Inside a row, fields are packed as core/bits.hpp pack_bits does: element 0 in the low
///   bits of byte 0 (int4: low nibble first; int2: bits 0-1 first). A field holds the code's
///   low `storage_bits` bits, two's complement for signed schemes (ONNX INT4's layout).
/// - scales / zero points: one per parameter index, row-major over the parameter shape:
///   per tensor 1; per channel extent(axis); per group rows x ceil(cols / group_size).
/// real(element) = scale[p] * (code - zero_point[p]).
class quantized {
 public:
  quantized() = default;

  /// Allocates zeroed storage for `dims` under a scheme and granularity (already resolved:
  /// axis in [0, rank), group size > 0 for per-group). Used by quantize and by file readers.
  quantized(std::vector<index_t> dims, const scheme& s, const granularity& g) : quantized(std::move(dims), s, g, true) {}

  /// As above, but codes, scales and zero points are left uninitialised (no zero-fill pass
  /// over a large result): the caller must write every byte of every row, row padding
  /// included, and every parameter. quantize does; its tests check the bytes are the same
  /// from one call to the next.
  quantized(std::vector<index_t> dims, const scheme& s, const granularity& g, uninitialized_t)
      : quantized(std::move(dims), s, g, false) {}

 private:
  quantized(std::vector<index_t> dims, const scheme& s, const granularity& g, bool zero)
      : dims_(std::move(dims)), scheme_(s), gran_(g) {
    s.validate("quantized");
    SHRINK_REQUIRE(!dims_.empty(), errc::invalid_argument, "quantized: rank must be >= 1");
    cols_ = dims_.back();
    size_ = 1;
    for (index_t d : dims_) {
      SHRINK_REQUIRE(d >= 0, errc::invalid_argument, "quantized: extents must be >= 0, got ", d);
      size_ *= d;
    }
    rows_ = cols_ == 0 ? 0 : size_ / cols_;
    row_bytes_ = static_cast<index_t>(packed_bytes(static_cast<std::size_t>(cols_), s.storage_bits()));
    codes_ = zero ? aligned_buffer<std::uint8_t>(static_cast<std::size_t>(rows_ * row_bytes_))
                  : aligned_buffer<std::uint8_t>(static_cast<std::size_t>(rows_ * row_bytes_), uninitialized);
    index_t n_params = 1;
    switch (g.kind) {
      case granularity_kind::per_tensor: break;
      case granularity_kind::per_channel:
        SHRINK_REQUIRE(g.axis >= 0 && g.axis < static_cast<index_t>(dims_.size()), errc::out_of_range,
                       "quantized: axis ", g.axis, " is outside [0, ", dims_.size(), ")");
        n_params = dims_[static_cast<std::size_t>(g.axis)];
        break;
      case granularity_kind::per_group:
        SHRINK_REQUIRE(g.group_size > 0, errc::invalid_argument, "quantized: group size must be > 0, got ", g.group_size);
        groups_per_row_ = (cols_ + g.group_size - 1) / g.group_size;
        n_params = rows_ * groups_per_row_;
        break;
    }
    scales_ = zero ? aligned_buffer<float>(static_cast<std::size_t>(n_params))
                   : aligned_buffer<float>(static_cast<std::size_t>(n_params), uninitialized);
    zero_points_ = zero ? aligned_buffer<std::int32_t>(static_cast<std::size_t>(n_params))
                        : aligned_buffer<std::int32_t>(static_cast<std::size_t>(n_params), uninitialized);
  }

 public:
  // ---- shape and policies
  [[nodiscard]] const std::vector<index_t>& dims() const noexcept { return dims_; }
  [[nodiscard]] std::size_t rank() const noexcept { return dims_.size(); }
  [[nodiscard]] index_t size() const noexcept { return size_; }
  [[nodiscard]] index_t rows() const noexcept { return rows_; }        ///< product of all but the last extent
  [[nodiscard]] index_t cols() const noexcept { return cols_; }        ///< last extent
  [[nodiscard]] index_t row_bytes() const noexcept { return row_bytes_; }
  [[nodiscard]] const scheme& quant_scheme() const noexcept { return scheme_; }
  [[nodiscard]] const granularity& quant_granularity() const noexcept { return gran_; }
  [[nodiscard]] int bits() const noexcept { return scheme_.bits; }
  [[nodiscard]] int storage_bits() const noexcept { return scheme_.storage_bits(); }
  [[nodiscard]] index_t axis() const noexcept { return gran_.axis; }
  [[nodiscard]] index_t group_size() const noexcept { return gran_.group_size; }
  [[nodiscard]] index_t groups_per_row() const noexcept { return groups_per_row_; }

  // ---- raw pieces (kernels and the file writer read these)
  [[nodiscard]] std::span<const std::uint8_t> codes() const noexcept { return codes_.span(); }
  [[nodiscard]] std::span<std::uint8_t> codes() noexcept { return codes_.span(); }
  [[nodiscard]] std::span<const float> scales() const noexcept { return scales_.span(); }
  [[nodiscard]] std::span<float> scales() noexcept { return scales_.span(); }
  [[nodiscard]] std::span<const std::int32_t> zero_points() const noexcept { return zero_points_.span(); }
  [[nodiscard]] std::span<std::int32_t> zero_points() noexcept { return zero_points_.span(); }

  /// Parameter index of the element at (row, col) (row = flat index / cols).
  [[nodiscard]] index_t param_index(index_t row, index_t col) const noexcept {
    switch (gran_.kind) {
      case granularity_kind::per_tensor: return 0;
      case granularity_kind::per_group: return row * groups_per_row_ + col / gran_.group_size;
      case granularity_kind::per_channel: {
        const auto a = static_cast<std::size_t>(gran_.axis);
        if (a + 1 == dims_.size()) return col;
        index_t inner_rows = 1;  // rows per step of the channel axis
        for (std::size_t i = a + 1; i + 1 < dims_.size(); ++i) inner_rows *= dims_[i];
        return (row / inner_rows) % dims_[a];
      }
    }
    return 0;
  }

  /// The integer code of element (row, col), sign-extended for signed schemes.
  [[nodiscard]] std::int32_t code(index_t row, index_t col) const noexcept {
    const int b = storage_bits();
    const std::uint8_t* r = codes_.data() + row * row_bytes_;
    unsigned field;
    if (b == 8) {
      field = r[col];
    } else {
      const index_t bit = col * b;
      field = (static_cast<unsigned>(r[bit >> 3]) >> (bit & 7)) & ((1u << b) - 1);
    }
    if (scheme_.is_signed && (field >> (b - 1)) != 0) return static_cast<std::int32_t>(field) - (1 << b);
    return static_cast<std::int32_t>(field);
  }

  /// Expands to floats: out[flat] = scale[p] * (code - zero_point[p]) in fp32.
  void dequantize(std::span<float> out) const {
    SHRINK_REQUIRE(out.size() == static_cast<std::size_t>(size_), errc::shape_mismatch, "quantized::dequantize: output has ",
                   out.size(), " elements, expected ", size_);
    for (index_t r = 0; r < rows_; ++r)
      for (index_t c = 0; c < cols_; ++c) {
        const auto p = static_cast<std::size_t>(param_index(r, c));
        out[static_cast<std::size_t>(r * cols_ + c)] = scales_[p] * static_cast<float>(code(r, c) - zero_points_[p]);
      }
  }
  [[nodiscard]] std::vector<float> dequantize() const {
    std::vector<float> out(static_cast<std::size_t>(size_));
    dequantize(out);
    return out;
  }

  /// Bytes held: packed codes + fp32 scales + int32 zero points (affine schemes only; a
  /// symmetric scheme's zero point is implied by the scheme and not counted).
  [[nodiscard]] std::size_t bytes() const noexcept {
    return codes_.size() + scales_.size_bytes() + (scheme_.symmetric ? 0 : zero_points_.size_bytes());
  }
  /// bytes() * 8 / number of weights.
  [[nodiscard]] double bits_per_weight() const noexcept {
    return size_ == 0 ? 0.0 : static_cast<double>(bytes()) * 8.0 / static_cast<double>(size_);
  }

 private:
  std::vector<index_t> dims_;
  scheme scheme_{};
  granularity gran_{};
  index_t size_ = 0, rows_ = 0, cols_ = 0, row_bytes_ = 0, groups_per_row_ = 0;
  aligned_buffer<std::uint8_t> codes_;
  aligned_buffer<float> scales_;
  aligned_buffer<std::int32_t> zero_points_;
};

}  // namespace shrink::quant
