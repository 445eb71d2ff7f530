// mask.hpp: prune::mask (a dense keep/prune byte per weight), pruning targets, the exact prune count, and apply().
#pragma once

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "../core/aligned_buffer.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor_view.hpp"

namespace shrink::prune {

/// A dense pruning mask: one byte per weight, 1 = keep, 0 = pruned (any non-zero byte keeps), in the row-major order of
/// the weights it was computed from. `dims()` is the weights' shape (rank 1 to 4). The sparse
/// formats (`sparse::csr::from_dense(weights, mask)` …) and `apply` consume it. One byte per
/// weight (not one bit) so that building, applying and converting stay branch-free byte loops;
/// `metrics::` and the formats report packed sizes.
class mask {
 public:
  mask() = default;
  /// A mask of the given shape, every element set to `keep` (1) or pruned (0).
  explicit mask(std::vector<index_t> dims, std::uint8_t keep = 1) : mask(std::move(dims), uninitialized{}) {
    if (size_ != 0) std::memset(bytes_.get(), keep != 0 ? 1 : 0, static_cast<std::size_t>(size_));
  }
  /// Tag: storage whose bytes the caller overwrites entirely (saves a pass over large masks).
  struct uninitialized {};
  mask(std::vector<index_t> dims, uninitialized) : dims_(std::move(dims)) {
    SHRINK_REQUIRE(!dims_.empty() && dims_.size() <= 4, errc::invalid_argument,
                   "prune::mask: rank must be in [1, 4], got ", dims_.size());
    index_t n = 1;
    for (index_t d : dims_) {
      SHRINK_REQUIRE(d >= 0, errc::invalid_argument, "prune::mask: extents must be >= 0, got ", d);
      SHRINK_REQUIRE(d == 0 || n <= std::numeric_limits<index_t>::max() / d, errc::overflow,
                     "prune::mask: element count overflows");
      n *= d;
    }
    size_ = n;
    if (n != 0)
      bytes_.reset(static_cast<std::uint8_t*>(
          ::operator new((static_cast<std::size_t>(n) + k_alignment - 1) / k_alignment * k_alignment,
                         std::align_val_t{k_alignment})));
  }
  mask(const mask& o) : mask(o.dims_, uninitialized{}) {
    if (size_ != 0) std::memcpy(bytes_.get(), o.bytes_.get(), static_cast<std::size_t>(size_));
  }
  mask& operator=(const mask& o) {
    if (this != &o) *this = mask(o);
    return *this;
  }
  mask(mask&& o) noexcept
      : dims_(std::move(o.dims_)), size_(std::exchange(o.size_, 0)), bytes_(std::move(o.bytes_)) {}
  mask& operator=(mask&& o) noexcept {
    dims_ = std::move(o.dims_);
    size_ = std::exchange(o.size_, 0);
    bytes_ = std::move(o.bytes_);
    return *this;
  }
  template <std::size_t Rank>
  explicit mask(const shape<Rank>& s, std::uint8_t keep = 1)
      : mask(std::vector<index_t>(s.dims.begin(), s.dims.end()), keep) {}
  template <std::size_t Rank>
  mask(const shape<Rank>& s, uninitialized u) : mask(std::vector<index_t>(s.dims.begin(), s.dims.end()), u) {}

  [[nodiscard]] const std::vector<index_t>& dims() const noexcept { return dims_; }
  [[nodiscard]] std::size_t rank() const noexcept { return dims_.size(); }
  [[nodiscard]] index_t extent(std::size_t axis) const noexcept { return dims_[axis]; }
  [[nodiscard]] index_t size() const noexcept { return size_; }
  /// Rows and columns when the mask is read as a matrix: dims()[0] × (product of the rest).
  [[nodiscard]] index_t rows() const noexcept { return dims_.empty() ? 0 : (dims_.size() == 1 ? 1 : dims_[0]); }
  [[nodiscard]] index_t cols() const noexcept {
    if (dims_.empty()) return 0;
    if (dims_.size() == 1) return dims_[0];
    index_t c = 1;
    for (std::size_t a = 1; a < dims_.size(); ++a) c *= dims_[a];
    return c;
  }
  [[nodiscard]] std::uint8_t* data() noexcept { return bytes_.get(); }
  [[nodiscard]] const std::uint8_t* data() const noexcept { return bytes_.get(); }
  [[nodiscard]] std::span<std::uint8_t> span() noexcept { return {bytes_.get(), static_cast<std::size_t>(size_)}; }
  [[nodiscard]] std::span<const std::uint8_t> span() const noexcept {
    return {bytes_.get(), static_cast<std::size_t>(size_)};
  }
  /// The mask as a rows() × cols() matrix view (what the sparse formats read).
  [[nodiscard]] tensor_view<const std::uint8_t, 2> matrix() const {
    return {bytes_.get(), shape<2>{rows(), cols()}};
  }
  std::uint8_t& operator[](index_t i) noexcept { return bytes_.get()[i]; }
  std::uint8_t operator[](index_t i) const noexcept { return bytes_.get()[i]; }

  [[nodiscard]] index_t kept() const noexcept {
    index_t k = 0;
    for (std::uint8_t b : span()) k += b != 0;
    return k;
  }
  [[nodiscard]] index_t pruned() const noexcept { return size() - kept(); }
  /// Fraction of pruned elements (0 for an empty mask).
  [[nodiscard]] double sparsity() const noexcept {
    return size() == 0 ? 0.0 : static_cast<double>(pruned()) / static_cast<double>(size());
  }
  /// True when the mask has the shape `s`.
  template <std::size_t Rank>
  [[nodiscard]] bool matches(const shape<Rank>& s) const noexcept {
    if (dims_.size() != Rank) return false;
    for (std::size_t a = 0; a < Rank; ++a)
      if (dims_[a] != s.dims[a]) return false;
    return true;
  }

  friend bool operator==(const mask& a, const mask& b) noexcept {
    if (a.dims_ != b.dims_) return false;
    for (index_t i = 0; i < a.size_; ++i)
      if ((a[i] != 0) != (b[i] != 0)) return false;
    return true;
  }

 private:
  struct deleter {
    void operator()(std::uint8_t* p) const noexcept { ::operator delete(p, std::align_val_t{k_alignment}); }
  };
  std::vector<index_t> dims_;
  index_t size_ = 0;
  std::unique_ptr<std::uint8_t, deleter> bytes_;  // 64-byte aligned, like aligned_buffer
};

/// What to prune: a fraction of the elements (exact count, see prune_count) or everything whose
/// score is at or below a threshold (kept iff score > threshold; threshold 0 prunes exact zeros).
struct target {
  enum class kind { sparsity, threshold };
  kind by = kind::sparsity;
  double value = 0.0;
};
inline target by_sparsity(double fraction) { return {target::kind::sparsity, fraction}; }
inline target by_threshold(double threshold) { return {target::kind::threshold, threshold}; }

namespace detail {
inline void check_target(const target& t, const char* who) {
  if (t.by == target::kind::sparsity) {
    SHRINK_REQUIRE(t.value >= 0.0 && t.value <= 1.0, errc::invalid_argument, who,
                   ": sparsity must be in [0, 1], got ", t.value);
  } else {
    SHRINK_REQUIRE(std::isfinite(t.value) && t.value >= 0.0, errc::invalid_argument, who,
                   ": threshold must be finite and >= 0, got ", t.value);
  }
}
}  // namespace detail

/// How many of `count` elements a sparsity `fraction` prunes: round(fraction · count) with
/// round-half-to-even, exactly as PyTorch's `_compute_nparams_toprune` (Python's `round`) for
/// a float amount. E.g. 0.5 of 5 → 2, 0.5 of 7 → 4.
inline index_t prune_count(double fraction, index_t count) {
  SHRINK_REQUIRE(fraction >= 0.0 && fraction <= 1.0, errc::invalid_argument,
                 "prune_count: sparsity must be in [0, 1], got ", fraction);
  SHRINK_REQUIRE(count >= 0, errc::invalid_argument, "prune_count: count must be >= 0, got ", count);
  const double x = fraction * static_cast<double>(count);  // the same double product Python forms
  double r = std::floor(x);
  const double frac = x - r;
  if (frac > 0.5 || (frac == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1.0;
  return static_cast<index_t>(r);
}

/// Zeroes the pruned elements of `values` (weights, or their gradients during retraining so
/// that pruned weights stay zero after each optimizer step). Shapes must match exactly.
template <std::size_t Rank>
void apply(const mask& m, tensor_view<float, Rank> values) {
  SHRINK_REQUIRE(m.matches(values.shape()), errc::shape_mismatch, "prune::apply: mask has ", m.rank(),
                 " dims of total ", m.size(), " elements but values have shape ", values.shape());
  if (values.is_contiguous()) {
    float* v = values.data();
    const std::uint8_t* b = m.data();
    for (index_t i = 0, n = m.size(); i < n; ++i) v[i] = b[i] != 0 ? v[i] : 0.0f;
    return;
  }
  std::array<index_t, Rank> idx{};
  for (index_t n = 0; n < m.size(); ++n) {
    index_t off = 0;
    for (std::size_t a = 0; a < Rank; ++a) off += idx[a] * values.stride(a);
    if (m[n] == 0) values.data()[off] = 0.0f;
    for (std::size_t a = Rank; a-- > 0;) {
      if (++idx[a] < values.extent(a)) break;
      idx[a] = 0;
    }
  }
}

/// apply() over a contiguous span (any rank flattened); sizes must match.
inline void apply(const mask& m, std::span<float> values) {
  SHRINK_REQUIRE(static_cast<index_t>(values.size()) == m.size(), errc::shape_mismatch, "prune::apply: mask has ",
                 m.size(), " elements but values have ", values.size());
  const std::uint8_t* b = m.data();
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = b[i] != 0 ? values[i] : 0.0f;
}

}  // namespace shrink::prune
