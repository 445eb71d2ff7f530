// bsr.hpp: block compressed sparse row (BSR) with fp32 values and a configurable r x c block.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "common.hpp"
#include "convert.hpp"

namespace shrink::sparse {

/// Block shape: r rows by c columns (1x4, 4x1, 8x1, 16x1, 4x4, ...).
struct block_shape {
  index_t rows = 1;
  index_t cols = 4;
};

namespace detail {

/// Checks that `block` is valid and divides rows x cols.
inline void check_block(const char* who, index_t rows, index_t cols, block_shape block) {
  const index_t r = block.rows, c = block.cols;
  SHRINK_REQUIRE(r >= 1 && c >= 1, errc::invalid_argument, who, ": block must be at least 1x1, got ", r, "x", c);
  SHRINK_REQUIRE(rows % r == 0 && cols % c == 0, errc::shape_mismatch, who, ": block ", r, "x", c,
                 " does not divide the ", rows, "x", cols, " matrix; expected rows % ", r, " == 0 and cols % ", c,
                 " == 0 (pad the matrix first)");
}

}  // namespace detail

/// The block structure and values of a BSR matrix, shared by bsr_f32 and bsr_int8. The
/// matrix is tiled into r x c blocks; a block is stored (r*c values, row-major inside the
/// block) when any of its mask entries is 1, with masked-out entries inside a stored block
/// set to 0. `row_ptr` runs over block rows, `block_col` holds the block-column index of
/// each stored block (16-bit when cols / c <= 65,536).
template <class V>
class bsr_base {
 public:
  using value_type = V;

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] block_shape block() const noexcept { return block_; }
  [[nodiscard]] index_t blocks() const noexcept { return block_col_.size(); }
  [[nodiscard]] std::span<const std::uint32_t> row_ptr() const noexcept { return row_ptr_.span(); }
  [[nodiscard]] const column_indices& block_col() const noexcept { return block_col_; }
  /// blocks() * r * c values, block after block, row-major inside a block.
  [[nodiscard]] std::span<const V> values() const noexcept { return values_.span(); }

 protected:
  /// The element-by-element build: a block is kept when keep(i, j) holds for any of its
  /// entries; kept entries take value(i, j), the other entries of a kept block V{0}.
  template <class Keep, class Value>
  void build_blocks(const char* who, index_t rows, index_t cols, block_shape block, Keep&& keep, Value&& value) {
    detail::check_block(who, rows, cols, block);
    rows_ = rows;
    cols_ = cols;
    block_ = block;
    const index_t r = block.rows, c = block.cols, brows = rows / r, bcols = cols / c;
    auto kept = [&](index_t br, index_t bc) {
      for (index_t y = 0; y < r; ++y)
        for (index_t x = 0; x < c; ++x)
          if (keep(br * r + y, bc * c + x)) return true;
      return false;
    };
    row_ptr_ = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(brows) + 1);
    index_t n = 0;
    for (index_t br = 0; br < brows; ++br) {
      for (index_t bc = 0; bc < bcols; ++bc) n += kept(br, bc) ? 1 : 0;
      detail::check_nnz(who, n * r * c);
      row_ptr_[static_cast<std::size_t>(br) + 1] = static_cast<std::uint32_t>(n);
    }
    block_col_ = column_indices(n, bcols);
    values_ = aligned_buffer<V>(static_cast<std::size_t>(n * r * c));
    index_t b = 0;
    for (index_t br = 0; br < brows; ++br)
      for (index_t bc = 0; bc < bcols; ++bc) {
        if (!kept(br, bc)) continue;
        block_col_.set(b, bc);
        for (index_t y = 0; y < r; ++y)
          for (index_t x = 0; x < c; ++x) {
            const index_t i = br * r + y, j = bc * c + x;
            values_[static_cast<std::size_t>(b * r * c + y * c + x)] = keep(i, j) ? value(i, j) : V{0};
          }
        ++b;
      }
  }

  /// The dense matrix with decode(i, v) at every stored entry (row i, value v), 0 elsewhere.
  template <class Decode>
  [[nodiscard]] tensor<float, 2> expand(Decode&& decode) const {
    tensor<float, 2> out(shape<2>{rows_, cols_});
    const index_t r = block_.rows, c = block_.cols;
    for (index_t br = 0; br < rows_ / r; ++br)
      for (index_t b = row_ptr_[static_cast<std::size_t>(br)]; b < row_ptr_[static_cast<std::size_t>(br) + 1]; ++b)
        for (index_t y = 0; y < r; ++y)
          for (index_t x = 0; x < c; ++x)
            out(br * r + y, block_col_[b] * c + x) =
                decode(br * r + y, values_[static_cast<std::size_t>(b * r * c + y * c + x)]);
    return out;
  }

  /// 4 (rows / r + 1) + (2 or 4) blocks + sizeof(V) r c blocks.
  [[nodiscard]] std::size_t structure_bytes() const noexcept {
    return row_ptr_.size_bytes() + block_col_.bytes() + values_.size_bytes();
  }

  index_t rows_ = 0, cols_ = 0;
  block_shape block_{};
  aligned_buffer<std::uint32_t> row_ptr_{1};
  column_indices block_col_;
  aligned_buffer<V> values_;
};

/// BSR with fp32 values (bsr_base's layout): to_dense() is exactly weights * mask.
class bsr_f32 : public bsr_base<float> {
 public:
  bsr_f32() = default;

  static bsr_f32 from_dense(const_view<float, 2> weights, const_view<std::uint8_t, 2> mask, block_shape block) {
    if (const auto* o = convert_impl::selected(); o != nullptr && mask.shape() == weights.shape() &&
                                                  fast_shape(weights, block) && detail::rows_contiguous(mask)) {
      bsr_f32 out;
      if (out.build_fast(*o, weights, mask.data(), mask.stride(0), block)) return out;
      convert_impl::fallbacks().fetch_add(1, std::memory_order_relaxed);
    }
    return from_dense_reference(weights, mask, block);
  }

  /// The element-by-element conversion: the oracle, and the path that raises every error.
  static bsr_f32 from_dense_reference(const_view<float, 2> weights, const_view<std::uint8_t, 2> mask,
                                      block_shape block) {
    detail::check_mask("bsr_f32::from_dense", weights, mask);
    return build("bsr_f32::from_dense", weights, block, [&](index_t i, index_t j) { return mask(i, j) != 0; });
  }

  /// Keeps every block holding at least one non-zero.
  static bsr_f32 from_nonzeros(const_view<float, 2> weights, block_shape block) {
    if (const auto* o = convert_impl::selected(); o != nullptr && fast_shape(weights, block)) {
      bsr_f32 out;
      if (out.build_fast(*o, weights, nullptr, 0, block)) return out;
      convert_impl::fallbacks().fetch_add(1, std::memory_order_relaxed);
    }
    return from_nonzeros_reference(weights, block);
  }

  static bsr_f32 from_nonzeros_reference(const_view<float, 2> weights, block_shape block) {
    return build("bsr_f32::from_nonzeros", weights, block,
                 [&](index_t i, index_t j) { return weights(i, j) != 0.0f; });
  }

  [[nodiscard]] tensor<float, 2> to_dense() const {
    return expand([](index_t, float v) { return v; });
  }
  /// 4 (rows / r + 1) + (2 or 4) blocks + 4 r c blocks.
  [[nodiscard]] std::size_t bytes() const noexcept { return structure_bytes(); }

 private:
  /// Shapes the fast path takes: a valid block that divides a non-empty matrix with contiguous
  /// rows (anything else goes to the reference, which raises the errors).
  static bool fast_shape(const_view<float, 2> w, block_shape b) {
    return b.rows >= 1 && b.cols >= 1 && w.size() > 0 && w.extent(0) % b.rows == 0 && w.extent(1) % b.cols == 0 &&
           detail::rows_contiguous(w);
  }

  /// The fast path (convert.hpp). Pass 1, per block row: OR the r mask rows (or the r rows of
  /// "w != 0" bytes when mask is null) into one bit per column, reduce each run of c bits to
  /// one "block kept" bit, count. Pass 2: list the kept block columns of each block row and
  /// copy their r x c masked values. Returns false on any bad input (mask byte > 1, kept
  /// non-finite weight, too many values); the caller then runs the reference, which raises.
  bool build_fast(const convert_impl::ops& o, const_view<float, 2> w, const std::uint8_t* mask, index_t ms,
                  block_shape block) {
    const index_t rows = w.extent(0), cols = w.extent(1), r = block.rows, c = block.cols;
    const index_t brows = rows / r, bcols = cols / c, ws = w.stride(0);
    const index_t nz_words = (cols + 63) / 64, flag_words = (bcols + 63) / 64;
    rows_ = rows;
    cols_ = cols;
    block_ = block;
    std::vector<std::uint64_t> nz(static_cast<std::size_t>(nz_words));
    std::vector<std::uint64_t> flags(static_cast<std::size_t>(brows * flag_words), 0);
    std::vector<std::uint8_t> nonzero;  // the "w != 0" rows of one block row when there is no mask
    if (mask == nullptr) nonzero.resize(static_cast<std::size_t>(r * cols));
    auto mask_rows = [&](index_t br, index_t& stride) -> const std::uint8_t* {
      if (mask != nullptr) {
        stride = ms;
        return mask + br * r * ms;
      }
      for (index_t y = 0; y < r; ++y) o.nonzero_bytes(w.data() + (br * r + y) * ws, cols, nonzero.data() + y * cols);
      stride = cols;
      return nonzero.data();
    };
    row_ptr_ = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(brows) + 1, uninitialized);
    row_ptr_[0] = 0;
    index_t n = 0;
    for (index_t br = 0; br < brows; ++br) {
      index_t stride = 0;
      const std::uint8_t* m = mask_rows(br, stride);
      unsigned mx = 0;
      o.or_rows_bits(m, stride, r, cols, nz.data(), &mx);
      if (mx > 1) return false;
      std::uint64_t* f = flags.data() + br * flag_words;
      if (c == 1) {
        for (index_t k = 0; k < flag_words; ++k) f[k] = nz[static_cast<std::size_t>(k)];
      } else {
        o.block_flags(nz.data(), cols, c, f);
      }
      for (index_t k = 0; k < flag_words; ++k) n += std::popcount(f[k]);
      if (n * r * c > index_t{std::numeric_limits<std::uint32_t>::max()}) return false;
      row_ptr_[static_cast<std::size_t>(br) + 1] = static_cast<std::uint32_t>(n);
    }
    block_col_ = column_indices(n, bcols, uninitialized);
    values_ = aligned_buffer<float>(static_cast<std::size_t>(n * r * c), uninitialized);
    shrink::prefer_huge_pages(values_.data(), values_.size_bytes());
    shrink::prefer_huge_pages(block_col_.data(), block_col_.bytes());
    std::vector<std::uint32_t> kept(static_cast<std::size_t>(bcols));
    // Outputs well beyond the last-level cache are written with non-temporal stores.
    const bool stream = values_.size_bytes() >= convert_impl::stream_min_bytes().load(std::memory_order_relaxed);
    index_t b = 0;
    for (index_t br = 0; br < brows; ++br) {
      const std::uint64_t* f = flags.data() + br * flag_words;
      index_t count = 0;
      for (index_t k = 0; k < flag_words; ++k)
        for (std::uint64_t word = f[k]; word != 0; word &= word - 1)
          kept[static_cast<std::size_t>(count++)] = static_cast<std::uint32_t>(k * 64 + std::countr_zero(word));
      if (count == 0) continue;
      for (index_t t = 0; t < count; ++t) block_col_.set(b + t, kept[static_cast<std::size_t>(t)]);
      index_t stride = 0;
      const std::uint8_t* m = mask_rows(br, stride);
      if (!o.bsr_copy(w.data() + br * r * ws, ws, m, stride, r, c, kept.data(), count, values_.data() + b * r * c,
                      stream))
        return false;
      b += count;
    }
    return true;
  }

  template <class Keep>
  static bsr_f32 build(const char* who, const_view<float, 2> w, block_shape block, Keep&& keep) {
    bsr_f32 out;
    out.build_blocks(who, w.extent(0), w.extent(1), block, keep, [&](index_t i, index_t j) {
      detail::check_finite(who, w(i, j), i, j);
      return w(i, j);
    });
    return out;
  }
};

}  // namespace shrink::sparse
