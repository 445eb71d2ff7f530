// tensor_view.hpp: tensor_view<T, Rank>, a non-owning strided view over memory someone else owns.
#pragma once

#include <array>
#include <cassert>
#include <cstddef>
#include <span>
#include <type_traits>

#include "config.hpp"
#include "error.hpp"
#include "shape.hpp"

namespace shrink {

/// A non-owning view of a rank-`Rank` array of `T` (Eigen `Map` spirit). Strides are in
/// elements, row-major by default. `tensor_view<const T, R>` converts from `tensor_view<T, R>`.
/// A view never allocates and never outlives questions of ownership: the caller keeps the
/// memory alive.
template <class T, std::size_t Rank>
class tensor_view {
  static_assert(Rank >= 1, "tensor_view: Rank must be at least 1");

 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using shape_type = shrink::shape<Rank>;
  using strides_type = std::array<index_t, Rank>;

  constexpr tensor_view() = default;

  /// View `data` as a contiguous row-major array of shape `s`.
  constexpr tensor_view(T* data, const shape_type& s)
      : data_(data), shape_(s), strides_(row_major_strides(s)) {
    check_pointer();
  }

  /// View `data` with explicit strides (in elements). Strides must be non-negative.
  constexpr tensor_view(T* data, const shape_type& s, const strides_type& strides)
      : data_(data), shape_(s), strides_(strides) {
    check_pointer();
    for (std::size_t i = 0; i < Rank; ++i)
      SHRINK_REQUIRE(strides_[i] >= 0, errc::invalid_argument,
                     "tensor_view: strides must be >= 0, got ", strides_[i], " on axis ", i);
  }

  /// View a buffer with a shape; the shape must fit inside the buffer.
  constexpr tensor_view(std::span<T> buffer, const shape_type& s) : tensor_view(buffer.data(), s) {
    SHRINK_REQUIRE(static_cast<std::size_t>(s.size()) <= buffer.size(), errc::out_of_range,
                   "tensor_view: shape ", s, " needs ", s.size(), " elements but the buffer holds ",
                   buffer.size());
  }

  /// View a buffer with a shape and strides; the furthest element must lie inside the buffer.
  constexpr tensor_view(std::span<T> buffer, const shape_type& s, const strides_type& strides)
      : tensor_view(buffer.data(), s, strides) {
    SHRINK_REQUIRE(required_extent() <= static_cast<index_t>(buffer.size()), errc::out_of_range,
                   "tensor_view: shape ", s, " with these strides reaches element ",
                   required_extent() - 1, " but the buffer holds ", buffer.size());
  }

  /// tensor_view<const T> from tensor_view<T>.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  constexpr tensor_view(const tensor_view<U, Rank>& other)  // NOLINT(google-explicit-constructor)
      : data_(other.data()), shape_(other.shape()), strides_(other.strides()) {}

  [[nodiscard]] constexpr T* data() const noexcept { return data_; }
  [[nodiscard]] constexpr const shape_type& shape() const noexcept { return shape_; }
  [[nodiscard]] constexpr index_t extent(std::size_t axis) const noexcept { return shape_.dims[axis]; }
  [[nodiscard]] constexpr const strides_type& strides() const noexcept { return strides_; }
  [[nodiscard]] constexpr index_t stride(std::size_t axis) const noexcept { return strides_[axis]; }
  [[nodiscard]] static constexpr std::size_t rank() noexcept { return Rank; }
  [[nodiscard]] constexpr index_t size() const noexcept {
    index_t n = 1;
    for (index_t e : shape_.dims) n *= e;
    return n;
  }
  [[nodiscard]] constexpr bool empty() const noexcept { return size() == 0; }

  /// True when elements are laid out densely in row-major order.
  [[nodiscard]] constexpr bool is_contiguous() const noexcept {
    index_t step = 1;
    for (std::size_t i = Rank; i-- > 0;) {
      if (shape_.dims[i] != 1 && strides_[i] != step) return false;
      step *= shape_.dims[i];
    }
    return true;
  }

  /// The contiguous elements as a span; an error when the view is strided.
  [[nodiscard]] std::span<T> span() const {
    SHRINK_REQUIRE(is_contiguous(), errc::invalid_argument,
                   "tensor_view::span: the view is strided; expected a contiguous row-major view");
    return {data_, static_cast<std::size_t>(size())};
  }

  /// One past the offset of the furthest element (0 for an empty view).
  [[nodiscard]] constexpr index_t required_extent() const noexcept {
    if (empty()) return 0;
    index_t last = 0;
    for (std::size_t i = 0; i < Rank; ++i) last += (shape_.dims[i] - 1) * strides_[i];
    return last + 1;
  }

  /// Unchecked element access (asserts in debug builds).
  template <std::integral... I>
    requires(sizeof...(I) == Rank)
  constexpr T& operator()(I... idx) const noexcept {
    const std::array<index_t, Rank> i{static_cast<index_t>(idx)...};
    index_t offset = 0;
    for (std::size_t a = 0; a < Rank; ++a) {
      assert(i[a] >= 0 && i[a] < shape_.dims[a]);
      offset += i[a] * strides_[a];
    }
    return data_[offset];
  }

  /// Checked element access: an out-of-range index is a shrink::error.
  template <std::integral... I>
    requires(sizeof...(I) == Rank)
  constexpr T& at(I... idx) const {
    const std::array<index_t, Rank> i{static_cast<index_t>(idx)...};
    index_t offset = 0;
    for (std::size_t a = 0; a < Rank; ++a) {
      SHRINK_REQUIRE(i[a] >= 0 && i[a] < shape_.dims[a], errc::out_of_range, "tensor_view::at: index ",
                     i[a], " on axis ", a, " is outside [0, ", shape_.dims[a], ")");
      offset += i[a] * strides_[a];
    }
    return data_[offset];
  }

  /// Sub-view of row `i` (drops the first axis). Checked.
  [[nodiscard]] constexpr auto row(index_t i) const
    requires(Rank >= 2)
  {
    SHRINK_REQUIRE(i >= 0 && i < shape_.dims[0], errc::out_of_range, "tensor_view::row: row ", i,
                   " is outside [0, ", shape_.dims[0], ")");
    shrink::shape<Rank - 1> s;
    std::array<index_t, Rank - 1> st{};
    for (std::size_t a = 1; a < Rank; ++a) {
      s.dims[a - 1] = shape_.dims[a];
      st[a - 1] = strides_[a];
    }
    return tensor_view<T, Rank - 1>(data_ + i * strides_[0], s, st);
  }

  /// Sub-view of the elements [begin, end) along `axis`. Checked.
  [[nodiscard]] constexpr tensor_view slice(std::size_t axis, index_t begin, index_t end) const {
    SHRINK_REQUIRE(axis < Rank, errc::out_of_range, "tensor_view::slice: axis ", axis,
                   " is outside [0, ", Rank, ")");
    SHRINK_REQUIRE(0 <= begin && begin <= end && end <= shape_.dims[axis], errc::out_of_range,
                   "tensor_view::slice: range [", begin, ", ", end, ") is outside [0, ",
                   shape_.dims[axis], "] on axis ", axis);
    shape_type s = shape_;
    s.dims[axis] = end - begin;
    return tensor_view(begin == end ? data_ : data_ + begin * strides_[axis], s, strides_);
  }

 private:
  constexpr void check_pointer() const {
    SHRINK_REQUIRE(data_ != nullptr || shape_.size() == 0, errc::invalid_argument,
                   "tensor_view: null data with non-empty shape ", shape_);
  }

  T* data_ = nullptr;
  shape_type shape_{};
  strides_type strides_{};
};

template <class T, std::size_t Rank>
using const_view = tensor_view<const T, Rank>;

/// Rank-1 view of a contiguous span.
template <class T>
constexpr tensor_view<T, 1> as_view(std::span<T> values) {
  return tensor_view<T, 1>(values.data(), shape<1>{values.size()});
}

}  // namespace shrink
