// bit_matrix.hpp: binary::bit_matrix, rows of ±1 values packed into 64-bit words with a per-row scale (docs/binarization.md).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/aligned_buffer.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"

namespace shrink::binary {

/// Bits per packed word.
inline constexpr index_t k_word_bits = 64;

/// Words that hold `k` bits.
constexpr index_t words_for(index_t k) noexcept { return (k + k_word_bits - 1) / k_word_bits; }

/// Mask of the bits of the last word of a row of `k` bits that carry values (all ones when
/// k is a multiple of 64).
constexpr std::uint64_t tail_mask(index_t k) noexcept {
  const index_t r = k % k_word_bits;
  return r == 0 ? ~std::uint64_t{0} : (std::uint64_t{1} << r) - 1;
}

/// The encoding of one value: bit 1 means -1, bit 0 means +1 (the float sign bit, and
/// Larq's convention). sign(0) = +1.
constexpr bool bit_of(float x) noexcept { return x < 0.0f; }

/// A rows × cols matrix of ±scale[row] values, one bit each.
///
/// Layout: row r occupies words [r·words_per_row, (r+1)·words_per_row); element c of the row
/// is bit (c mod 64) of word c/64, LSB first. A bit 1 is -1, a bit 0 is +1. When cols is not
/// a multiple of 64, the unused high bits of each row's last word are 0 ("padding bits"), in
/// every bit_matrix: weights and activations alike. Then padding XORs to 0, popcount(a XOR b)
/// counts exactly the disagreeing values, and dot(a, b) = cols - 2·popcount(a XOR b).
/// scale[r] is the row's magnitude: α (mean |W| of an output channel) for weights, β (mean
/// |x|) for activations, 1 for plain signs.
class bit_matrix {
 public:
  bit_matrix() = default;

  /// All values +1 (all bits 0), every scale 1.
  bit_matrix(index_t rows, index_t cols)
      : rows_(checked(rows, "rows")), cols_(checked(cols, "cols")), words_per_row_(words_for(cols)),
        words_(static_cast<std::size_t>(rows * words_per_row_)), scales_(static_cast<std::size_t>(rows)) {
    for (float& s : scales_) s = 1.0f;
  }

  /// Adopts raw words and scales (e.g. read from a file), validating them: words.size() must
  /// be rows·words_for(cols), scales.size() rows, scales finite, and every padding bit 0 —
  /// otherwise a shrink::error (shape_mismatch / non_finite / format).
  static bit_matrix from_words(index_t rows, index_t cols, std::span<const std::uint64_t> words,
                               std::span<const float> scales) {
    bit_matrix m(rows, cols);
    SHRINK_REQUIRE(static_cast<index_t>(words.size()) == rows * m.words_per_row_, errc::shape_mismatch,
                   "bit_matrix::from_words: ", rows, " rows of ", cols, " bits need ", rows * m.words_per_row_,
                   " words, got ", words.size());
    SHRINK_REQUIRE(static_cast<index_t>(scales.size()) == rows, errc::shape_mismatch,
                   "bit_matrix::from_words: expected one scale per row (", rows, "), got ", scales.size());
    const std::uint64_t pad = ~tail_mask(cols);
    for (index_t r = 0; r < rows && m.words_per_row_ > 0; ++r) {
      const std::uint64_t last = words[static_cast<std::size_t>((r + 1) * m.words_per_row_ - 1)];
      SHRINK_REQUIRE((last & pad) == 0, errc::format, "bit_matrix::from_words: row ", r,
                     " has padding bits set beyond column ", cols,
                     "; expected the unused high bits of each row's last word to be 0");
    }
    for (index_t r = 0; r < rows; ++r)
      SHRINK_REQUIRE(std::isfinite(scales[static_cast<std::size_t>(r)]), errc::non_finite,
                     "bit_matrix::from_words: scale of row ", r, " is not finite");
    std::copy(words.begin(), words.end(), m.words_.begin());
    std::copy(scales.begin(), scales.end(), m.scales_.begin());
    return m;
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] index_t words_per_row() const noexcept { return words_per_row_; }
  [[nodiscard]] std::span<const std::uint64_t> words() const noexcept { return words_.span(); }
  [[nodiscard]] std::span<std::uint64_t> words() noexcept { return words_.span(); }
  [[nodiscard]] const std::uint64_t* row_words(index_t r) const noexcept { return words_.data() + r * words_per_row_; }
  [[nodiscard]] std::uint64_t* row_words(index_t r) noexcept { return words_.data() + r * words_per_row_; }
  [[nodiscard]] std::span<const float> scales() const noexcept { return scales_.span(); }
  [[nodiscard]] std::span<float> scales() noexcept { return scales_.span(); }
  [[nodiscard]] float scale(index_t r) const noexcept { return scales_[static_cast<std::size_t>(r)]; }

  /// Bit (r, c): true means -1.
  [[nodiscard]] bool bit(index_t r, index_t c) const noexcept {
    return (row_words(r)[c / k_word_bits] >> (c % k_word_bits)) & 1u;
  }
  /// Sets bit (r, c); padding bits stay 0 because c < cols is required.
  void set_bit(index_t r, index_t c, bool negative) {
    SHRINK_REQUIRE(r >= 0 && r < rows_ && c >= 0 && c < cols_, errc::out_of_range, "bit_matrix::set_bit: (", r,
                   ", ", c, ") is outside ", rows_, " x ", cols_);
    std::uint64_t& w = row_words(r)[c / k_word_bits];
    const std::uint64_t b = std::uint64_t{1} << (c % k_word_bits);
    w = negative ? (w | b) : (w & ~b);
  }
  /// The ±1 sign of (r, c), without the scale.
  [[nodiscard]] float sign(index_t r, index_t c) const noexcept { return bit(r, c) ? -1.0f : 1.0f; }

  /// True when every padding bit is 0 (the invariant every kernel relies on).
  [[nodiscard]] bool padding_is_clear() const noexcept {
    const std::uint64_t pad = ~tail_mask(cols_);
    for (index_t r = 0; r < rows_ && words_per_row_ > 0; ++r)
      if (row_words(r)[words_per_row_ - 1] & pad) return false;
    return true;
  }

  /// The dense matrix of ±scale[r]: exact (a sign flip of a float is exact).
  [[nodiscard]] tensor<float, 2> expand() const {
    tensor<float, 2> out(shape<2>{rows_, cols_});
    for (index_t r = 0; r < rows_; ++r)
      for (index_t c = 0; c < cols_; ++c) out(r, c) = bit(r, c) ? -scale(r) : scale(r);
    return out;
  }

  /// Bytes of the packed form (words + scales), for size reports.
  [[nodiscard]] std::size_t bytes() const noexcept { return words_.size_bytes() + scales_.size_bytes(); }

 private:
  static index_t checked(index_t v, const char* what) {
    SHRINK_REQUIRE(v >= 0, errc::invalid_argument, "bit_matrix: ", what, " must be >= 0, got ", v);
    return v;
  }

  index_t rows_ = 0, cols_ = 0, words_per_row_ = 0;
  aligned_buffer<std::uint64_t> words_;
  aligned_buffer<float> scales_;
};

}  // namespace shrink::binary
