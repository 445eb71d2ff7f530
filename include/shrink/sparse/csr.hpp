// csr.hpp: compressed sparse row formats with fp32, int8 (+ per-row scale) and codebook-index values.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "common.hpp"
#include "convert.hpp"

namespace shrink::sparse {

/// The structure every CSR format shares: `row_ptr` (rows + 1 entries, 32-bit), column
/// indices (16-bit when cols <= 65,536, else 32-bit) sorted within each row, and one value
/// of type V per stored entry. Byte costs are in docs/sparse.md.
template <class V>
class csr_base {
 public:
  using value_type = V;

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] index_t nnz() const noexcept { return static_cast<index_t>(values_.size()); }
  [[nodiscard]] std::span<const std::uint32_t> row_ptr() const noexcept { return row_ptr_.span(); }
  [[nodiscard]] const column_indices& col_idx() const noexcept { return col_idx_; }
  [[nodiscard]] std::span<const V> values() const noexcept { return values_.span(); }
  /// Fraction of zeros: 1 - nnz / (rows * cols).
  [[nodiscard]] double sparsity() const noexcept {
    const double total = static_cast<double>(rows_) * static_cast<double>(cols_);
    return total == 0 ? 0.0 : 1.0 - static_cast<double>(nnz()) / total;
  }

 protected:
  /// Builds the structure from a predicate keep(i, j) and fills values with value(i, j).
  template <class Keep, class Value>
  void build(const char* who, index_t rows, index_t cols, Keep&& keep, Value&& value) {
    rows_ = rows;
    cols_ = cols;
    row_ptr_ = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(rows) + 1);
    index_t nnz = 0;
    for (index_t i = 0; i < rows; ++i) {
      for (index_t j = 0; j < cols; ++j) nnz += keep(i, j) ? 1 : 0;
      detail::check_nnz(who, nnz);
      row_ptr_[static_cast<std::size_t>(i) + 1] = static_cast<std::uint32_t>(nnz);
    }
    col_idx_ = column_indices(nnz, cols);
    values_ = aligned_buffer<V>(static_cast<std::size_t>(nnz));
    index_t k = 0;
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j)
        if (keep(i, j)) {
          col_idx_.set(k, j);
          values_[static_cast<std::size_t>(k++)] = value(i, j);
        }
  }

  /// The fast path (convert.hpp): a counting pass over the mask bytes (or the non-zeros when
  /// `mask` is null) sizes the outputs, then one row kernel per row compresses the kept
  /// entries. Produces the same arrays as build(); returns false, leaving *this unspecified,
  /// when the input is bad in any way (mask byte > 1, kept value non-finite or outside
  /// [0, limit), more than 2^32 - 1 entries): the caller then runs the reference conversion,
  /// which raises the reference's error.
  bool build_fast(const convert_impl::ops& o, index_t rows, index_t cols, const std::uint8_t* mask,
                  index_t mask_stride, const float* w, index_t w_stride, const std::uint8_t* bytes,
                  index_t bytes_stride, convert_impl::csr_value kind, const float* scales = nullptr,
                  unsigned limit = 256) {
    rows_ = rows;
    cols_ = cols;
    row_ptr_ = aligned_buffer<std::uint32_t>(static_cast<std::size_t>(rows) + 1, uninitialized);
    row_ptr_[0] = 0;
    index_t nnz = 0;
    for (index_t i = 0; i < rows; ++i) {
      unsigned mx = 0;
      nnz += mask != nullptr ? o.mask_count(mask + i * mask_stride, cols, &mx) : o.nonzero_count(w + i * w_stride, cols);
      if (mx > 1 || nnz > index_t{std::numeric_limits<std::uint32_t>::max()}) return false;
      row_ptr_[static_cast<std::size_t>(i) + 1] = static_cast<std::uint32_t>(nnz);
    }
    col_idx_ = column_indices(nnz, cols, uninitialized);
    values_ = aligned_buffer<V>(static_cast<std::size_t>(nnz), uninitialized);
    shrink::prefer_huge_pages(values_.data(), values_.size_bytes());
    shrink::prefer_huge_pages(col_idx_.data(), col_idx_.bytes());
    const auto fill = o.csr_fill[static_cast<int>(kind)][col_idx_.narrow() ? 1 : 0];
    const std::size_t index_size = col_idx_.narrow() ? 2 : 4;
    auto* idx = static_cast<unsigned char*>(col_idx_.data());
    for (index_t i = 0; i < rows; ++i) {
      const std::size_t at = row_ptr_[static_cast<std::size_t>(i)];
      convert_impl::csr_row r;
      r.w = w != nullptr ? w + i * w_stride : nullptr;
      r.bytes = bytes != nullptr ? bytes + i * bytes_stride : nullptr;
      r.mask = mask != nullptr ? mask + i * mask_stride : nullptr;
      r.n = cols;
      r.scale = scales != nullptr ? scales[i] : 1.0f;
      r.limit = limit;
      r.values = values_.data() + at;
      r.cols = idx + at * index_size;
      r.room = nnz - static_cast<index_t>(at);
      if (!fill(r)) return false;
    }
    return true;
  }

  /// Copies raw arrays after checking them: the "preprocessing time" validation that keeps
  /// every kernel from reading out of bounds.
  void assign_raw(const char* who, index_t rows, index_t cols, std::span<const std::uint32_t> row_ptr,
                  std::span<const std::uint32_t> col_idx, std::span<const V> values) {
    SHRINK_REQUIRE(rows >= 0 && cols >= 0, errc::invalid_argument, who, ": shape must be non-negative, got ", rows,
                   " x ", cols);
    SHRINK_REQUIRE(row_ptr.size() == static_cast<std::size_t>(rows) + 1, errc::shape_mismatch, who,
                   ": row_ptr must hold rows + 1 = ", rows + 1, " entries, got ", row_ptr.size());
    SHRINK_REQUIRE(row_ptr[0] == 0, errc::format, who, ": row_ptr[0] must be 0, got ", row_ptr[0]);
    for (index_t i = 0; i < rows; ++i)
      SHRINK_REQUIRE(row_ptr[static_cast<std::size_t>(i)] <= row_ptr[static_cast<std::size_t>(i) + 1], errc::format,
                     who, ": row pointers must be non-decreasing, but row_ptr[", i, "] = ",
                     row_ptr[static_cast<std::size_t>(i)], " > row_ptr[", i + 1,
                     "] = ", row_ptr[static_cast<std::size_t>(i) + 1]);
    const std::size_t nnz = row_ptr[static_cast<std::size_t>(rows)];
    SHRINK_REQUIRE(col_idx.size() == nnz && values.size() == nnz, errc::format, who, ": row_ptr[rows] says ", nnz,
                   " entries, but there are ", col_idx.size(), " column indices and ", values.size(), " values");
    for (index_t i = 0; i < rows; ++i)
      for (std::size_t k = row_ptr[static_cast<std::size_t>(i)]; k < row_ptr[static_cast<std::size_t>(i) + 1];
           ++k) {
        SHRINK_REQUIRE(static_cast<index_t>(col_idx[k]) < cols, errc::out_of_range, who, ": column index ",
                       col_idx[k], " in row ", i, " is outside [0, ", cols, ")");
        SHRINK_REQUIRE(k == row_ptr[static_cast<std::size_t>(i)] || col_idx[k - 1] < col_idx[k], errc::format, who,
                       ": column indices of row ", i, " must be strictly increasing, got ", col_idx[k - 1],
                       " then ", col_idx[k]);
      }
    rows_ = rows;
    cols_ = cols;
    row_ptr_ = aligned_buffer<std::uint32_t>(row_ptr);
    col_idx_ = column_indices(static_cast<index_t>(nnz), cols);
    for (std::size_t k = 0; k < nnz; ++k) col_idx_.set(static_cast<index_t>(k), col_idx[k]);
    values_ = aligned_buffer<V>(values);
  }

  /// Bytes of row pointers + column indices + values.
  [[nodiscard]] std::size_t structure_bytes() const noexcept {
    return row_ptr_.size_bytes() + col_idx_.bytes() + values_.size_bytes();
  }

  template <class Fn>
  [[nodiscard]] tensor<float, 2> expand(Fn&& decode) const {
    tensor<float, 2> out(shape<2>{rows_, cols_});
    for (index_t i = 0; i < rows_; ++i)
      for (index_t k = row_ptr_[static_cast<std::size_t>(i)]; k < row_ptr_[static_cast<std::size_t>(i) + 1]; ++k)
        out(i, col_idx_[k]) = decode(i, values_[static_cast<std::size_t>(k)]);
    return out;
  }

  index_t rows_ = 0, cols_ = 0;
  aligned_buffer<std::uint32_t> row_ptr_{1};
  column_indices col_idx_;
  aligned_buffer<V> values_;
};

/// CSR with fp32 values.
class csr_f32 : public csr_base<float> {
 public:
  csr_f32() = default;

  /// Keeps weights(i, j) where mask(i, j) == 1 (a stored entry may be 0.0 if the weight is).
  static csr_f32 from_dense(const_view<float, 2> weights, const_view<std::uint8_t, 2> mask) {
    if (const auto* o = convert_impl::selected();
        o != nullptr && mask.shape() == weights.shape() && weights.size() > 0 && detail::rows_contiguous(weights) &&
        detail::rows_contiguous(mask)) {
      csr_f32 out;
      if (out.build_fast(*o, weights.extent(0), weights.extent(1), mask.data(), mask.stride(0), weights.data(),
                         weights.stride(0), nullptr, 0, convert_impl::csr_value::f32))
        return out;
      convert_impl::fallbacks().fetch_add(1, std::memory_order_relaxed);
    }
    return from_dense_reference(weights, mask);
  }

  /// The element-by-element conversion: the oracle, and the path that raises every error.
  static csr_f32 from_dense_reference(const_view<float, 2> weights, const_view<std::uint8_t, 2> mask) {
    detail::check_mask("csr_f32::from_dense", weights, mask);
    csr_f32 out;
    out.build(
        "csr_f32::from_dense", weights.extent(0), weights.extent(1), [&](index_t i, index_t j) { return mask(i, j) != 0; },
        [&](index_t i, index_t j) {
          detail::check_finite("csr_f32::from_dense", weights(i, j), i, j);
          return weights(i, j);
        });
    return out;
  }

  /// Keeps the non-zeros of a dense matrix.
  static csr_f32 from_nonzeros(const_view<float, 2> weights) {
    if (const auto* o = convert_impl::selected(); o != nullptr && weights.size() > 0 && detail::rows_contiguous(weights)) {
      csr_f32 out;
      if (out.build_fast(*o, weights.extent(0), weights.extent(1), nullptr, 0, weights.data(), weights.stride(0),
                         nullptr, 0, convert_impl::csr_value::f32))
        return out;
      convert_impl::fallbacks().fetch_add(1, std::memory_order_relaxed);
    }
    return from_nonzeros_reference(weights);
  }

  static csr_f32 from_nonzeros_reference(const_view<float, 2> weights) {
    csr_f32 out;
    out.build(
        "csr_f32::from_nonzeros", weights.extent(0), weights.extent(1),
        [&](index_t i, index_t j) { return weights(i, j) != 0.0f; },
        [&](index_t i, index_t j) {
          detail::check_finite("csr_f32::from_nonzeros", weights(i, j), i, j);
          return weights(i, j);
        });
    return out;
  }

  /// From raw CSR arrays, validated (monotonic row pointers, sorted in-range columns, matching
  /// counts, finite values): a malformed input is a shrink::error here, never later.
  static csr_f32 from_raw(index_t rows, index_t cols, std::span<const std::uint32_t> row_ptr,
                          std::span<const std::uint32_t> col_idx, std::span<const float> values) {
    csr_f32 out;
    out.assign_raw("csr_f32::from_raw", rows, cols, row_ptr, col_idx, values);
    for (std::size_t k = 0; k < values.size(); ++k)
      SHRINK_REQUIRE(std::isfinite(values[k]), errc::non_finite, "csr_f32::from_raw: value ", k, " is ", values[k],
                     "; expected finite values");
    return out;
  }

  [[nodiscard]] tensor<float, 2> to_dense() const {
    return expand([](index_t, float v) { return v; });
  }
  /// 4 (rows + 1) + (2 or 4) nnz + 4 nnz.
  [[nodiscard]] std::size_t bytes() const noexcept { return structure_bytes(); }
};

/// CSR with int8 values and one fp32 scale per row: w = scale[i] * q. Symmetric per-row
/// quantization of the kept weights, scale = max|w| / 127, q = round-half-even(w / scale).
class csr_int8 : public csr_base<std::int8_t> {
 public:
  csr_int8() = default;

  static csr_int8 from_dense(const_view<float, 2> weights, const_view<std::uint8_t, 2> mask) {
    if (const auto* o = convert_impl::selected();
        o != nullptr && mask.shape() == weights.shape() && weights.size() > 0 && detail::rows_contiguous(weights) &&
        detail::rows_contiguous(mask)) {
      csr_int8 out;
      const index_t rows = weights.extent(0), cols = weights.extent(1);
      out.row_scales_ = aligned_buffer<float>(static_cast<std::size_t>(rows), uninitialized);
      bool ok = true;
      for (index_t i = 0; i < rows && ok; ++i) {
        float peak = 0.0f;
        ok = o->kept_peak(weights.data() + i * weights.stride(0), mask.data() + i * mask.stride(0), cols, &peak);
        out.row_scales_[static_cast<std::size_t>(i)] = peak > 0.0f ? peak / 127.0f : 1.0f;
      }
      if (ok && out.build_fast(*o, rows, cols, mask.data(), mask.stride(0), weights.data(), weights.stride(0), nullptr,
                               0, convert_impl::csr_value::q8, out.row_scales_.data()))
        return out;
      convert_impl::fallbacks().fetch_add(1, std::memory_order_relaxed);
    }
    return from_dense_reference(weights, mask);
  }

  static csr_int8 from_dense_reference(const_view<float, 2> weights, const_view<std::uint8_t, 2> mask) {
    const char* who = "csr_int8::from_dense";
    detail::check_mask(who, weights, mask);
    csr_int8 out;
    out.row_scales_ = detail::kept_row_scales(who, weights, mask);
    out.build(
        who, weights.extent(0), weights.extent(1), [&](index_t i, index_t j) { return mask(i, j) != 0; },
        [&](index_t i, index_t j) {
          const float q = std::nearbyint(weights(i, j) / out.row_scales_[static_cast<std::size_t>(i)]);
          return static_cast<std::int8_t>(std::clamp(q, -127.0f, 127.0f));
        });
    return out;
  }

  /// From already-quantized weights q (int8) and per-row scales; keeps q where mask is 1.
  static csr_int8 from_quantized(const_view<std::int8_t, 2> q, std::span<const float> row_scales,
                                 const_view<std::uint8_t, 2> mask) {
    const char* who = "csr_int8::from_quantized";
    SHRINK_REQUIRE(mask.shape() == q.shape(), errc::shape_mismatch, who, ": mask shape ", mask.shape(),
                   " differs from the weight shape ", q.shape());
    check_scales(who, row_scales, q.extent(0));
    if (const auto* o = convert_impl::selected();
        o != nullptr && q.size() > 0 && detail::rows_contiguous(q) && detail::rows_contiguous(mask)) {
      csr_int8 out;
      out.row_scales_ = aligned_buffer<float>(row_scales);
      if (out.build_fast(*o, q.extent(0), q.extent(1), mask.data(), mask.stride(0),  nullptr, 0,
                         reinterpret_cast<const std::uint8_t*>(q.data()), q.stride(0), convert_impl::csr_value::byte))
        return out;
      convert_impl::fallbacks().fetch_add(1, std::memory_order_relaxed);
    }
    csr_int8 out;
    out.row_scales_ = aligned_buffer<float>(row_scales);
    out.build(
        who, q.extent(0), q.extent(1),
        [&](index_t i, index_t j) {
          SHRINK_REQUIRE(mask(i, j) <= 1, errc::invalid_argument, who, ": mask values must be 0 or 1, got ",
                         int{mask(i, j)});
          return mask(i, j) != 0;
        },
        [&](index_t i, index_t j) { return q(i, j); });
    return out;
  }

  static csr_int8 from_raw(index_t rows, index_t cols, std::span<const std::uint32_t> row_ptr,
                           std::span<const std::uint32_t> col_idx, std::span<const std::int8_t> values,
                           std::span<const float> row_scales) {
    csr_int8 out;
    out.assign_raw("csr_int8::from_raw", rows, cols, row_ptr, col_idx, values);
    check_scales("csr_int8::from_raw", row_scales, rows);
    out.row_scales_ = aligned_buffer<float>(row_scales);
    return out;
  }

  [[nodiscard]] std::span<const float> row_scales() const noexcept { return row_scales_.span(); }
  /// The dequantized matrix, scale[i] * q (exactly the fp32 products, no further rounding).
  [[nodiscard]] tensor<float, 2> to_dense() const {
    return expand([&](index_t i, std::int8_t q) { return row_scales_[static_cast<std::size_t>(i)] * static_cast<float>(q); });
  }
  /// 4 (rows + 1) + (2 or 4) nnz + nnz + 4 rows.
  [[nodiscard]] std::size_t bytes() const noexcept { return structure_bytes() + row_scales_.size_bytes(); }

 private:
  static void check_scales(const char* who, std::span<const float> s, index_t rows) {
    detail::check_row_scales(who, s, rows);
  }
  aligned_buffer<float> row_scales_;
};

/// CSR whose values are 8-bit indices into a table of at most 256 fp32 centroids (pruning +
/// weight sharing, Deep Compression / EIE). Gap (relative) index coding of the column
/// indices is encode/relative_index.hpp's job; it reads row_ptr() and col_idx().
class csr_codebook : public csr_base<std::uint8_t> {
 public:
  csr_codebook() = default;

  /// Keeps indices(i, j) where mask(i, j) == 1.
  static csr_codebook from_indices(const_view<std::uint8_t, 2> indices, std::span<const float> centroids,
                                   const_view<std::uint8_t, 2> mask) {
    const char* who = "csr_codebook::from_indices";
    SHRINK_REQUIRE(mask.shape() == indices.shape(), errc::shape_mismatch, who, ": mask shape ", mask.shape(),
                   " differs from the index shape ", indices.shape());
    check_centroids(who, centroids);
    if (const auto* o = convert_impl::selected();
        o != nullptr && indices.size() > 0 && detail::rows_contiguous(indices) && detail::rows_contiguous(mask)) {
      csr_codebook out;
      out.centroids_ = aligned_buffer<float>(centroids);
      if (out.build_fast(*o, indices.extent(0), indices.extent(1), mask.data(), mask.stride(0), nullptr, 0,
                         indices.data(), indices.stride(0), convert_impl::csr_value::byte, nullptr,
                         static_cast<unsigned>(centroids.size())))
        return out;
      convert_impl::fallbacks().fetch_add(1, std::memory_order_relaxed);
    }
    csr_codebook out;
    out.centroids_ = aligned_buffer<float>(centroids);
    out.build(
        who, indices.extent(0), indices.extent(1),
        [&](index_t i, index_t j) {
          SHRINK_REQUIRE(mask(i, j) <= 1, errc::invalid_argument, who, ": mask values must be 0 or 1, got ",
                         int{mask(i, j)});
          return mask(i, j) != 0;
        },
        [&](index_t i, index_t j) {
          SHRINK_REQUIRE(indices(i, j) < centroids.size(), errc::out_of_range, who, ": index ", int{indices(i, j)},
                         " at (", i, ", ", j, ") is outside the ", centroids.size(), "-entry codebook");
          return indices(i, j);
        });
    return out;
  }

  static csr_codebook from_raw(index_t rows, index_t cols, std::span<const std::uint32_t> row_ptr,
                               std::span<const std::uint32_t> col_idx, std::span<const std::uint8_t> values,
                               std::span<const float> centroids) {
    const char* who = "csr_codebook::from_raw";
    check_centroids(who, centroids);
    csr_codebook out;
    out.assign_raw(who, rows, cols, row_ptr, col_idx, values);
    for (std::size_t k = 0; k < values.size(); ++k)
      SHRINK_REQUIRE(values[k] < centroids.size(), errc::out_of_range, who, ": index ", int{values[k]},
                     " of entry ", k, " is outside the ", centroids.size(), "-entry codebook");
    out.centroids_ = aligned_buffer<float>(centroids);
    return out;
  }

  [[nodiscard]] std::span<const float> centroids() const noexcept { return centroids_.span(); }
  [[nodiscard]] tensor<float, 2> to_dense() const {
    return expand([&](index_t, std::uint8_t c) { return centroids_[c]; });
  }
  /// 4 (rows + 1) + (2 or 4) nnz + nnz + 4 k. (Packing indices below 8 bits is the encoder's job.)
  [[nodiscard]] std::size_t bytes() const noexcept { return structure_bytes() + centroids_.size_bytes(); }

 private:
  static void check_centroids(const char* who, std::span<const float> c) {
    SHRINK_REQUIRE(!c.empty() && c.size() <= 256, errc::invalid_argument, who,
                   ": the codebook must hold 1 to 256 centroids, got ", c.size());
    for (std::size_t i = 0; i < c.size(); ++i)
      SHRINK_REQUIRE(std::isfinite(c[i]), errc::non_finite, who, ": centroid ", i, " is ", c[i]);
  }
  aligned_buffer<float> centroids_;
};

}  // namespace shrink::sparse
