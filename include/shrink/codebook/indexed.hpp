// indexed.hpp: codebook::indexed (indices packed at ceil(log2 k) bits + per-tensor or per-row codebooks) and cluster().
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "../core/aligned_buffer.hpp"
#include "../core/bits.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"
#include "kmeans1d.hpp"

namespace shrink::codebook {

/// One codebook for the whole tensor, or one per row (output channel).
enum class granularity { per_tensor, per_row };

/// Weights stored as codebook indices. Layout (docs/codebook.md, "indexed layout"):
/// - `centroids()`: `codebooks() * k()` floats; codebook r (row r, or 0 per tensor) is
///   entries [r*k, (r+1)*k). If the weights of a codebook contain zeros, entry 0 is exactly
///   0.0f and is the code of every zero weight; unused trailing entries are 0.0f.
/// - `packed_indices()`: rows * row_bytes() bytes; row r starts at byte r*row_bytes() and
///   holds its `cols` indices at `bits()` = bits_for(k) bits each, LSB first (core/bits.hpp
///   pack_bits order), the unused high bits of its last byte zero.
class indexed {
 public:
  indexed() = default;

  /// Builds from unpacked indices (rows*cols, each < k) and centroids (codebooks*k). Checked.
  indexed(index_t rows, index_t cols, int k, granularity g, std::span<const float> centroids,
          std::span<const std::uint8_t> indices)
      : rows_(rows), cols_(cols), k_(k), bits_(bits_for(static_cast<std::size_t>(k))), granularity_(g) {
    check_header();
    SHRINK_REQUIRE(indices.size() == static_cast<std::size_t>(rows * cols), errc::shape_mismatch,
                   "indexed: expected ", rows * cols, " indices, got ", indices.size());
    centroids_ = aligned_buffer<float>(centroids);
    check_centroids();
    packed_ = aligned_buffer<std::uint8_t>(static_cast<std::size_t>(rows) * row_bytes());
    for (index_t r = 0; r < rows; ++r) {
      const auto row = indices.subspan(static_cast<std::size_t>(r * cols), static_cast<std::size_t>(cols));
      for (std::size_t c = 0; c < row.size(); ++c)
        SHRINK_REQUIRE(row[c] < k, errc::out_of_range, "indexed: index ", int(row[c]), " at (", r, ", ", c,
                       ") is outside the codebook of ", k, " entries");
      pack_bits(row, bits_, packed_.span().subspan(static_cast<std::size_t>(r) * row_bytes(), row_bytes()));
    }
  }

  /// Builds from already packed rows (what a file reader holds). Checked: sizes, and every
  /// index < k.
  static indexed from_packed(index_t rows, index_t cols, int k, granularity g, std::span<const float> centroids,
                             std::span<const std::uint8_t> packed) {
    indexed q;
    q.rows_ = rows;
    q.cols_ = cols;
    q.k_ = k;
    q.bits_ = bits_for(static_cast<std::size_t>(k));
    q.granularity_ = g;
    q.check_header();
    q.centroids_ = aligned_buffer<float>(centroids);
    q.check_centroids();
    SHRINK_REQUIRE(packed.size() == static_cast<std::size_t>(rows) * q.row_bytes(), errc::shape_mismatch,
                   "indexed::from_packed: expected ", static_cast<std::size_t>(rows) * q.row_bytes(),
                   " packed bytes, got ", packed.size());
    q.packed_ = aligned_buffer<std::uint8_t>(packed);
    std::vector<std::uint8_t> row(static_cast<std::size_t>(cols));
    for (index_t r = 0; r < rows; ++r) {
      q.unpack_row(r, row);
      for (std::size_t c = 0; c < row.size(); ++c)
        SHRINK_REQUIRE(row[c] < k, errc::format, "indexed::from_packed: index ", int(row[c]), " at (", r, ", ",
                       c, ") is outside the codebook of ", k, " entries");
    }
    return q;
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] int k() const noexcept { return k_; }  ///< entries per codebook
  [[nodiscard]] int bits() const noexcept { return bits_; }  ///< bits per index = bits_for(k)
  [[nodiscard]] granularity granularity_kind() const noexcept { return granularity_; }
  [[nodiscard]] index_t codebooks() const noexcept { return granularity_ == granularity::per_row ? rows_ : 1; }
  [[nodiscard]] std::size_t row_bytes() const noexcept { return packed_bytes(static_cast<std::size_t>(cols_), bits_); }

  [[nodiscard]] std::span<const std::uint8_t> packed_indices() const noexcept { return packed_.span(); }
  [[nodiscard]] std::span<const std::uint8_t> packed_row(index_t r) const {
    SHRINK_REQUIRE(r >= 0 && r < rows_, errc::out_of_range, "indexed::packed_row: row ", r, " outside [0, ", rows_, ")");
    return packed_.span().subspan(static_cast<std::size_t>(r) * row_bytes(), row_bytes());
  }
  [[nodiscard]] std::span<const float> centroids() const noexcept { return centroids_.span(); }
  /// Writable centroids (fine-tuning); the indices stay as they are.
  [[nodiscard]] std::span<float> centroids_mutable() noexcept { return centroids_.span(); }
  /// The codebook row r uses (the one codebook when per tensor).
  [[nodiscard]] std::span<const float> codebook_of_row(index_t r) const {
    SHRINK_REQUIRE(r >= 0 && r < rows_, errc::out_of_range, "indexed::codebook_of_row: row ", r, " outside [0, ",
                   rows_, ")");
    const std::size_t b = granularity_ == granularity::per_row ? static_cast<std::size_t>(r) : 0;
    return centroids_.span().subspan(b * static_cast<std::size_t>(k_), static_cast<std::size_t>(k_));
  }

  /// Unpacks row r's indices into out (cols entries).
  void unpack_row(index_t r, std::span<std::uint8_t> out) const {
    SHRINK_REQUIRE(out.size() == static_cast<std::size_t>(cols_), errc::shape_mismatch, "indexed::unpack_row: expected ",
                   cols_, " outputs, got ", out.size());
    unpack_bits(packed_row(r), bits_, out);
  }
  /// All indices, row-major (rows*cols bytes).
  [[nodiscard]] std::vector<std::uint8_t> indices() const {
    std::vector<std::uint8_t> out(static_cast<std::size_t>(rows_ * cols_));
    for (index_t r = 0; r < rows_; ++r)
      unpack_row(r, std::span(out).subspan(static_cast<std::size_t>(r * cols_), static_cast<std::size_t>(cols_)));
    return out;
  }

  /// Writes the float weights (each exactly its centroid) into `out` (rows x cols).
  void expand_into(tensor_view<float, 2> out) const {
    SHRINK_REQUIRE(out.extent(0) == rows_ && out.extent(1) == cols_, errc::shape_mismatch,
                   "indexed::expand_into: expected shape (", rows_, ", ", cols_, "), got ", out.shape());
    std::vector<std::uint8_t> row(static_cast<std::size_t>(cols_));
    for (index_t r = 0; r < rows_; ++r) {
      unpack_row(r, row);
      const auto book = codebook_of_row(r);
      for (index_t c = 0; c < cols_; ++c) out(r, c) = book[row[static_cast<std::size_t>(c)]];
    }
  }
  [[nodiscard]] tensor<float, 2> expand() const {
    tensor<float, 2> out(shape<2>{rows_, cols_});
    expand_into(out.view());
    return out;
  }

  /// Stored bytes: packed indices + 4 bytes per codebook entry (Deep Compression's
  /// n*log2(k) + k*b with b = 32), excluding the few header integers.
  [[nodiscard]] std::size_t bytes() const noexcept { return packed_.size() + centroids_.size() * sizeof(float); }
  [[nodiscard]] double bits_per_weight() const noexcept {
    return rows_ * cols_ == 0 ? 0.0 : 8.0 * static_cast<double>(bytes()) / static_cast<double>(rows_ * cols_);
  }

 private:
  void check_header() const {
    SHRINK_REQUIRE(rows_ >= 0 && cols_ >= 0, errc::invalid_argument, "indexed: negative shape (", rows_, ", ", cols_, ")");
    SHRINK_REQUIRE(k_ >= 1 && k_ <= 256, errc::invalid_argument, "indexed: k must be in [1, 256], got ", k_);
  }
  void check_centroids() const {
    const std::size_t want = static_cast<std::size_t>(codebooks()) * static_cast<std::size_t>(k_);
    SHRINK_REQUIRE(centroids_.size() == want, errc::shape_mismatch, "indexed: expected ", want, " centroids (",
                   codebooks(), " codebooks of ", k_, "), got ", centroids_.size());
    for (std::size_t i = 0; i < centroids_.size(); ++i)
      SHRINK_REQUIRE(std::isfinite(centroids_[i]), errc::non_finite, "indexed: centroid ", i, " is ", centroids_[i]);
  }

  index_t rows_ = 0, cols_ = 0;
  int k_ = 1, bits_ = 1;
  granularity granularity_ = granularity::per_tensor;
  aligned_buffer<float> centroids_;
  aligned_buffer<std::uint8_t> packed_;
};

struct cluster_options {
  int k = 16;  ///< codebook entries including the reserved zero code, in [2, 256]
  granularity per = granularity::per_tensor;
  kmeans_options kmeans{};  ///< its k is ignored (set from `k` and the zero rule)
};

namespace detail {
// One codebook (returns the entries used): zeros -> entry 0 (= 0.0f) when present; the non-zeros get the remaining
// k - has_zero entries from kmeans_1d. Writes the codes of `values` and the codebook.
inline std::size_t build_codebook(std::span<const float> values, const cluster_options& o, std::span<float> book,
                           std::span<std::uint8_t> codes) {
  std::vector<float> nonzero;
  nonzero.reserve(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    SHRINK_REQUIRE(std::isfinite(values[i]), errc::non_finite, "cluster: weight ", i, " is ", values[i],
                   "; expected finite weights");
    if (values[i] != 0.0f) nonzero.push_back(values[i]);
  }
  const bool has_zero = nonzero.size() != values.size();
  std::fill(book.begin(), book.end(), 0.0f);
  std::vector<float> cents;
  if (!nonzero.empty()) {
    const int k_nonzero = o.k - (has_zero ? 1 : 0);
    if (k_nonzero == 1) {  // one non-zero centroid: the mean (k-means with k = 1)
      double s = 0;
      for (float x : nonzero) s += x;
      cents.push_back(static_cast<float>(s / static_cast<double>(nonzero.size())));
    } else {
      kmeans_options ko = o.kmeans;
      ko.k = k_nonzero;
      cents = kmeans_1d(nonzero, ko).centroids;
    }
  }
  const std::size_t offset = has_zero ? 1 : 0;
  for (std::size_t j = 0; j < cents.size(); ++j) book[offset + j] = cents[j];
  for (std::size_t i = 0; i < values.size(); ++i)
    codes[i] = values[i] == 0.0f ? 0 : static_cast<std::uint8_t>(offset + nearest(cents, values[i]));
  return offset + cents.size();
}
}  // namespace detail

/// Weight sharing (Han et al. 2016): clusters the weights of `w` into codebooks of at most
/// `o.k` entries and returns the packed form. Pruned weights (exact zeros, either sign)
/// stay exactly zero and never pull a centroid: they take the reserved code 0 = 0.0f,
/// and the non-zeros are clustered into the other k - 1 entries (all k when the tensor
/// (or row) has no zeros). Fewer distinct non-zeros than entries: each gets its own exact
/// entry, and k() of the result shrinks to the largest codebook actually used. Rows cluster in parallel; the result does not depend on ctx.
inline indexed cluster(tensor_view<const float, 2> w, const cluster_options& o, const context& ctx = {}) {
  SHRINK_REQUIRE(o.k >= 2 && o.k <= 256, errc::invalid_argument, "cluster: k must be in [2, 256], got ", o.k);
  SHRINK_REQUIRE(!w.empty(), errc::empty_input, "cluster: empty weight tensor of shape ", w.shape());
  const tensor<float, 2> dense(w);  // contiguous copy (w may be strided)
  const index_t rows = w.extent(0), cols = w.extent(1);
  const auto k = static_cast<std::size_t>(o.k);
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(rows * cols));
  if (o.per == granularity::per_tensor) {
    std::vector<float> book(k);
    const std::size_t used = detail::build_codebook(dense.span(), o, book, codes);
    book.resize(used);
    return indexed(rows, cols, static_cast<int>(used), o.per, book, codes);
  }
  std::vector<float> books(static_cast<std::size_t>(rows) * k);
  std::vector<std::size_t> used(static_cast<std::size_t>(rows));
  parallel_for(ctx, 0, rows, 1, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      const auto at = static_cast<std::size_t>(r * cols);
      used[static_cast<std::size_t>(r)] =
          detail::build_codebook(dense.span().subspan(at, static_cast<std::size_t>(cols)), o,
                                 std::span(books).subspan(static_cast<std::size_t>(r) * k, k),
                                 std::span(codes).subspan(at, static_cast<std::size_t>(cols)));
    }
  });
  // The stride is the largest codebook actually used, so spare entries cost no bits.
  const std::size_t stride = *std::max_element(used.begin(), used.end());
  std::vector<float> packed_books(static_cast<std::size_t>(rows) * stride);
  for (std::size_t r = 0; r < static_cast<std::size_t>(rows); ++r)
    std::copy_n(books.begin() + static_cast<std::ptrdiff_t>(r * k), stride,
                packed_books.begin() + static_cast<std::ptrdiff_t>(r * stride));
  return indexed(rows, cols, static_cast<int>(stride), o.per, packed_books, codes);
}

}  // namespace shrink::codebook
