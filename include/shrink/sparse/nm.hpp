// nm.hpp: N:M compressed format (N kept values in every group of M along a row) with packed position metadata.
#pragma once

#include <bit>
#include <cstdint>
#include <span>

#include "common.hpp"
#include "convert.hpp"

namespace shrink::sparse {

/// N:M structured sparsity along the input (column) dimension: every group of M consecutive
/// columns keeps N values. Stored: the kept values, row-major, N per group in increasing
/// column order (rows * cols/M * N floats), and for each kept value its position inside
/// the group in ceil(log2 M) bits, packed LSB-first into a bit stream per row; each row's
/// stream starts on a 16-bit word boundary. For 2:4 this is 2 bits per value, 4 bits per
/// group, 4 groups per 16-bit word with the first group in the low nibble and, inside a
/// nibble, the first kept position in the low 2 bits: the metadata layout NVIDIA's sparse
/// tensor cores (mma.sp, cuSPARSELt) read before their own tile interleaving (docs/sparse.md).
/// A group with fewer than N masked-in entries is padded with zero values at the lowest
/// unused positions, so to_dense() is exactly weights * mask.
class nm_f32 {
 public:
  nm_f32() = default;

  static nm_f32 from_dense(const_view<float, 2> weights, const_view<std::uint8_t, 2> mask, index_t n, index_t m) {
    // The fast path takes M in {2, 4, 8} (8 / M whole groups per 8-lane step); other valid M
    // and every bad input go to the reference, which raises the errors.
    if (const auto* o = convert_impl::selected();
        o != nullptr && mask.shape() == weights.shape() && (m == 2 || m == 4 || m == 8) && n >= 1 && n < m &&
        weights.size() > 0 && weights.extent(1) % m == 0 && detail::rows_contiguous(weights) &&
        detail::rows_contiguous(mask)) {
      nm_f32 out;
      if (out.build_fast(*o, weights, mask, n, m)) return out;
      convert_impl::fallbacks().fetch_add(1, std::memory_order_relaxed);
    }
    return from_dense_reference(weights, mask, n, m);
  }

  /// The element-by-element conversion: the oracle, and the path that raises every error.
  static nm_f32 from_dense_reference(const_view<float, 2> weights, const_view<std::uint8_t, 2> mask, index_t n,
                                     index_t m) {
    const char* who = "nm_f32::from_dense";
    detail::check_mask(who, weights, mask);
    SHRINK_REQUIRE(m >= 2 && m <= 256 && n >= 1 && n < m, errc::invalid_argument, who,
                   ": expected 1 <= N < M <= 256, got N = ", n, ", M = ", m);
    const index_t rows = weights.extent(0), cols = weights.extent(1);
    SHRINK_REQUIRE(cols % m == 0, errc::shape_mismatch, who, ": M = ", m, " does not divide the ", cols,
                   " columns");
    nm_f32 out;
    out.rows_ = rows;
    out.cols_ = cols;
    out.n_ = n;
    out.m_ = m;
    out.bits_ = std::bit_width(static_cast<unsigned>(m - 1));
    const index_t groups = cols / m, kept = groups * n;
    out.words_per_row_ = (kept * out.bits_ + 15) / 16;
    out.values_ = aligned_buffer<float>(static_cast<std::size_t>(rows * kept));
    out.meta_ = aligned_buffer<std::uint16_t>(static_cast<std::size_t>(rows * out.words_per_row_));
    for (index_t i = 0; i < rows; ++i)
      for (index_t g = 0; g < groups; ++g) {
        index_t in = 0;
        for (index_t p = 0; p < m; ++p) in += mask(i, g * m + p);
        SHRINK_REQUIRE(in <= n, errc::invalid_argument, who, ": group ", g, " of row ", i, " keeps ", in,
                       " entries; an ", n, ":", m, " mask keeps at most ", n);
        index_t pad = n - in, slot = 0;  // unused positions filled from the lowest
        for (index_t p = 0; p < m && slot < n; ++p) {
          const bool on = mask(i, g * m + p) != 0;
          if (!on && pad == 0) continue;
          if (!on) --pad;
          const index_t k = g * n + slot++;
          float v = 0.0f;
          if (on) {
            detail::check_finite(who, weights(i, g * m + p), i, g * m + p);
            v = weights(i, g * m + p);
          }
          out.values_[static_cast<std::size_t>(i * kept + k)] = v;
          out.set_position(i, k, p);
        }
      }
    return out;
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] index_t n() const noexcept { return n_; }
  [[nodiscard]] index_t m() const noexcept { return m_; }
  /// Bits per position: ceil(log2 M).
  [[nodiscard]] int position_bits() const noexcept { return bits_; }
  /// Kept values per row: cols / M * N.
  [[nodiscard]] index_t kept_per_row() const noexcept { return cols_ / m_ * n_; }
  [[nodiscard]] std::span<const float> values() const noexcept { return values_.span(); }
  [[nodiscard]] std::span<const std::uint16_t> metadata() const noexcept { return meta_.span(); }
  [[nodiscard]] index_t metadata_words_per_row() const noexcept { return words_per_row_; }

  /// Position inside its group of the k-th kept value of row i.
  [[nodiscard]] index_t position(index_t i, index_t k) const noexcept {
    const index_t bit = k * bits_;
    const std::uint16_t* row = meta_.data() + i * words_per_row_;
    std::uint32_t v = row[bit / 16];
    if (bit % 16 + bits_ > 16) v |= static_cast<std::uint32_t>(row[bit / 16 + 1]) << 16;
    return static_cast<index_t>((v >> (bit % 16)) & ((1u << bits_) - 1));
  }
  /// Column of the k-th kept value of row i.
  [[nodiscard]] index_t column(index_t i, index_t k) const noexcept { return k / n_ * m_ + position(i, k); }

  [[nodiscard]] tensor<float, 2> to_dense() const {
    tensor<float, 2> out(shape<2>{rows_, cols_});
    const index_t kept = kept_per_row();
    for (index_t i = 0; i < rows_; ++i)
      for (index_t k = 0; k < kept; ++k) out(i, column(i, k)) = values_[static_cast<std::size_t>(i * kept + k)];
    return out;
  }
  /// 4 rows (cols/M) N + 2 rows ceil(rows' metadata bits / 16).
  [[nodiscard]] std::size_t bytes() const noexcept { return values_.size_bytes() + meta_.size_bytes(); }

 private:
  /// One table lookup per 8 lanes (convert.hpp): kept lanes compressed, positions packed.
  bool build_fast(const convert_impl::ops& o, const_view<float, 2> w, const_view<std::uint8_t, 2> mask, index_t n,
                  index_t m) {
    const index_t rows = w.extent(0), cols = w.extent(1);
    rows_ = rows;
    cols_ = cols;
    n_ = n;
    m_ = m;
    bits_ = std::bit_width(static_cast<unsigned>(m - 1));
    const index_t kept = cols / m * n;
    words_per_row_ = (kept * bits_ + 15) / 16;
    values_ = aligned_buffer<float>(static_cast<std::size_t>(rows * kept), uninitialized);
    meta_ = aligned_buffer<std::uint16_t>(static_cast<std::size_t>(rows * words_per_row_), uninitialized);
    shrink::prefer_huge_pages(values_.data(), values_.size_bytes());
    shrink::prefer_huge_pages(meta_.data(), meta_.size_bytes());
    convert_impl::nm_table t;
    convert_impl::make_nm_table(t, n, m);
    const index_t total = rows * kept;
    // Outputs well beyond the last-level cache are written with non-temporal stores.
    const bool stream = values_.size_bytes() >= convert_impl::stream_min_bytes().load(std::memory_order_relaxed);
    for (index_t i = 0; i < rows; ++i)
      if (!o.nm_row(w.data() + i * w.stride(0), mask.data() + i * mask.stride(0), cols, t,
                    values_.data() + i * kept, meta_.data() + i * words_per_row_, total - i * kept, stream))
        return false;
    return true;
  }

  void set_position(index_t i, index_t k, index_t p) noexcept {
    const index_t bit = k * bits_;
    std::uint16_t* row = meta_.data() + i * words_per_row_;
    const auto v = static_cast<std::uint32_t>(p) << (bit % 16);
    row[bit / 16] = static_cast<std::uint16_t>(row[bit / 16] | (v & 0xFFFFu));
    if (bit % 16 + bits_ > 16) row[bit / 16 + 1] = static_cast<std::uint16_t>(row[bit / 16 + 1] | (v >> 16));
  }

  index_t rows_ = 0, cols_ = 0, n_ = 2, m_ = 4, words_per_row_ = 0;
  int bits_ = 2;
  aligned_buffer<float> values_;
  aligned_buffer<std::uint16_t> meta_;
};

}  // namespace shrink::sparse
