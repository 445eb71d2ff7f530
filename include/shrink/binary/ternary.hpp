// ternary.hpp: ternary weight networks (TWN, Li & Liu 2016): threshold Δ, scale α, and the two-bit-plane ternary_matrix.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <span>

#include "../core/aligned_buffer.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"
#include "binarize.hpp"
#include "bit_matrix.hpp"

namespace shrink::binary {

/// A rows × cols matrix of values in {-α[r], 0, +α[r]} as two bit planes with bit_matrix's
/// layout (LSB first, padding bits 0): `mask` bit 1 means non-zero; `sign` bit 1 means -1 and
/// is 0 wherever mask is 0 (one canonical encoding per value). Then for ±1 activations x
/// (bit 1 = -1), Σ_k t_k·x_k = popcount(mask) - 2·popcount(mask AND (sign XOR x)).
class ternary_matrix {
 public:
  ternary_matrix() = default;
  ternary_matrix(index_t rows, index_t cols)
      : rows_(rows), cols_(cols), words_per_row_(words_for(cols)),
        mask_(static_cast<std::size_t>(rows * words_per_row_)), sign_(static_cast<std::size_t>(rows * words_per_row_)),
        scales_(static_cast<std::size_t>(rows)), nonzeros_(static_cast<std::size_t>(rows)) {
    SHRINK_REQUIRE(rows >= 0 && cols >= 0, errc::invalid_argument, "ternary_matrix: extents must be >= 0, got ",
                   rows, " x ", cols);
  }

  /// Adopts raw planes, validating sizes, padding bits 0, sign ⊆ mask, finite scales.
  static ternary_matrix from_words(index_t rows, index_t cols, std::span<const std::uint64_t> mask,
                                   std::span<const std::uint64_t> sign, std::span<const float> scales) {
    ternary_matrix t(rows, cols);
    const auto need = static_cast<std::size_t>(rows * t.words_per_row_);
    SHRINK_REQUIRE(mask.size() == need && sign.size() == need, errc::shape_mismatch, "ternary_matrix::from_words: ",
                   rows, " rows of ", cols, " values need ", need, " words per plane, got ", mask.size(), " and ",
                   sign.size());
    SHRINK_REQUIRE(static_cast<index_t>(scales.size()) == rows, errc::shape_mismatch,
                   "ternary_matrix::from_words: expected ", rows, " scales, got ", scales.size());
    const std::uint64_t pad = ~tail_mask(cols);
    for (index_t r = 0; r < rows; ++r) {
      for (index_t j = 0; j < t.words_per_row_; ++j) {
        const auto i = static_cast<std::size_t>(r * t.words_per_row_ + j);
        SHRINK_REQUIRE((sign[i] & ~mask[i]) == 0, errc::format, "ternary_matrix::from_words: row ", r,
                       " has sign bits set where the mask is 0; expected sign to be 0 at zero values");
        if (j == t.words_per_row_ - 1)
          SHRINK_REQUIRE((mask[i] & pad) == 0, errc::format, "ternary_matrix::from_words: row ", r,
                         " has padding bits set beyond column ", cols, "; expected them 0");
      }
      SHRINK_REQUIRE(std::isfinite(scales[static_cast<std::size_t>(r)]), errc::non_finite,
                     "ternary_matrix::from_words: scale of row ", r, " is not finite");
    }
    std::copy(mask.begin(), mask.end(), t.mask_.begin());
    std::copy(sign.begin(), sign.end(), t.sign_.begin());
    std::copy(scales.begin(), scales.end(), t.scales_.begin());
    t.count_nonzeros();
    return t;
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] index_t words_per_row() const noexcept { return words_per_row_; }
  [[nodiscard]] const std::uint64_t* mask_words(index_t r) const noexcept { return mask_.data() + r * words_per_row_; }
  [[nodiscard]] const std::uint64_t* sign_words(index_t r) const noexcept { return sign_.data() + r * words_per_row_; }
  [[nodiscard]] std::uint64_t* mask_words(index_t r) noexcept { return mask_.data() + r * words_per_row_; }
  [[nodiscard]] std::uint64_t* sign_words(index_t r) noexcept { return sign_.data() + r * words_per_row_; }
  [[nodiscard]] std::span<const float> scales() const noexcept { return scales_.span(); }
  [[nodiscard]] std::span<float> scales() noexcept { return scales_.span(); }
  [[nodiscard]] float scale(index_t r) const noexcept { return scales_[static_cast<std::size_t>(r)]; }
  /// popcount of row r's mask: its number of non-zero values.
  [[nodiscard]] std::int32_t nonzeros(index_t r) const noexcept { return nonzeros_[static_cast<std::size_t>(r)]; }

  /// -1, 0 or +1 at (r, c), without the scale.
  [[nodiscard]] int value(index_t r, index_t c) const noexcept {
    const int sh = static_cast<int>(c % k_word_bits);
    if (!((mask_words(r)[c / k_word_bits] >> sh) & 1u)) return 0;
    return ((sign_words(r)[c / k_word_bits] >> sh) & 1u) ? -1 : 1;
  }

  /// Dense {-α, 0, +α} matrix (exact).
  [[nodiscard]] tensor<float, 2> expand() const {
    tensor<float, 2> out(shape<2>{rows_, cols_});
    for (index_t r = 0; r < rows_; ++r)
      for (index_t c = 0; c < cols_; ++c) out(r, c) = static_cast<float>(value(r, c)) * scale(r);
    return out;
  }

  void count_nonzeros() noexcept {
    for (index_t r = 0; r < rows_; ++r) {
      std::int32_t n = 0;
      for (index_t j = 0; j < words_per_row_; ++j) n += std::popcount(mask_words(r)[j]);
      nonzeros_[static_cast<std::size_t>(r)] = n;
    }
  }

 private:
  index_t rows_ = 0, cols_ = 0, words_per_row_ = 0;
  aligned_buffer<std::uint64_t> mask_, sign_;
  aligned_buffer<float> scales_;
  aligned_buffer<std::int32_t> nonzeros_;
};

struct ternarize_options {
  float delta_factor = 0.7f;  ///< Δ = delta_factor · mean |W| (TWN's approximation of the optimal threshold)
  bool per_row = true;        ///< Δ and α per output channel (row); false: one Δ and α for the whole matrix
};

/// TWN (Li & Liu 2016, eq. 9–10): t = +1 where W > Δ, -1 where W < -Δ, 0 otherwise, with
/// Δ = 0.7·mean |W| and α = mean of |W| over {|W| > Δ} (0 when that set is empty).
inline ternary_matrix ternarize(tensor_view<const float, 2> w, const ternarize_options& options = {}) {
  detail::check_finite(w, "ternarize");
  SHRINK_REQUIRE(std::isfinite(options.delta_factor) && options.delta_factor >= 0.0f, errc::invalid_argument,
                 "ternarize: delta_factor must be finite and >= 0, got ", options.delta_factor);
  const index_t rows = w.extent(0), cols = w.extent(1);
  ternary_matrix t(rows, cols);
  std::vector<double> delta(static_cast<std::size_t>(rows));
  double all = 0.0;
  for (index_t r = 0; r < rows; ++r) {
    double s = 0.0;
    for (index_t c = 0; c < cols; ++c) s += std::abs(static_cast<double>(w(r, c)));
    all += s;
    delta[static_cast<std::size_t>(r)] = cols == 0 ? 0.0 : options.delta_factor * (s / static_cast<double>(cols));
  }
  if (!options.per_row) {
    const double d = rows * cols == 0 ? 0.0 : options.delta_factor * (all / static_cast<double>(rows * cols));
    std::fill(delta.begin(), delta.end(), d);
  }
  double kept_sum_all = 0.0;
  index_t kept_all = 0;
  for (index_t r = 0; r < rows; ++r) {
    const double d = delta[static_cast<std::size_t>(r)];
    double kept_sum = 0.0;
    index_t kept = 0;
    for (index_t c = 0; c < cols; ++c) {
      const double v = w(r, c);
      if (std::abs(v) <= d) continue;
      const std::uint64_t b = std::uint64_t{1} << (c % k_word_bits);
      t.mask_words(r)[c / k_word_bits] |= b;
      if (v < 0) t.sign_words(r)[c / k_word_bits] |= b;
      kept_sum += std::abs(v);
      ++kept;
    }
    kept_sum_all += kept_sum;
    kept_all += kept;
    t.scales()[static_cast<std::size_t>(r)] = kept == 0 ? 0.0f : static_cast<float>(kept_sum / static_cast<double>(kept));
  }
  if (!options.per_row) {
    const float a = kept_all == 0 ? 0.0f : static_cast<float>(kept_sum_all / static_cast<double>(kept_all));
    for (float& s : t.scales()) s = a;
  }
  t.count_nonzeros();
  return t;
}

}  // namespace shrink::binary
