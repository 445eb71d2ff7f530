// tensor.hpp: tensor<T, Rank>, an owning, 64-byte aligned, row-major array that hands out views.
#pragma once

#include <cstddef>
#include <span>

#include "aligned_buffer.hpp"
#include "shape.hpp"
#include "tensor_view.hpp"

namespace shrink {

/// Owning, contiguous, row-major, zero-initialised, 64-byte aligned tensor. Movable and
/// copyable (deep copy). Converts to `tensor_view<T, Rank>` and `tensor_view<const T, Rank>`.
template <class T, std::size_t Rank>
class tensor {
 public:
  using value_type = T;
  using shape_type = shrink::shape<Rank>;

  tensor() = default;
  explicit tensor(const shape_type& s) : shape_(s), buffer_(static_cast<std::size_t>(s.size())) {}

  /// A tensor holding a copy of `source` (which may be strided).
  template <class U>
    requires std::is_same_v<std::remove_const_t<U>, T>
  explicit tensor(const tensor_view<U, Rank>& source) : tensor(source.shape()) {
    copy_from(source);
  }

  [[nodiscard]] T* data() noexcept { return buffer_.data(); }
  [[nodiscard]] const T* data() const noexcept { return buffer_.data(); }
  [[nodiscard]] const shape_type& shape() const noexcept { return shape_; }
  [[nodiscard]] index_t extent(std::size_t axis) const noexcept { return shape_.dims[axis]; }
  [[nodiscard]] index_t size() const noexcept { return static_cast<index_t>(buffer_.size()); }
  [[nodiscard]] bool empty() const noexcept { return buffer_.empty(); }
  [[nodiscard]] std::span<T> span() noexcept { return buffer_.span(); }
  [[nodiscard]] std::span<const T> span() const noexcept { return buffer_.span(); }

  [[nodiscard]] tensor_view<T, Rank> view() noexcept { return {buffer_.data(), shape_}; }
  [[nodiscard]] tensor_view<const T, Rank> view() const noexcept { return {buffer_.data(), shape_}; }
  operator tensor_view<T, Rank>() noexcept { return view(); }              // NOLINT
  operator tensor_view<const T, Rank>() const noexcept { return view(); }  // NOLINT

  template <std::integral... I>
    requires(sizeof...(I) == Rank)
  T& operator()(I... idx) noexcept { return view()(idx...); }
  template <std::integral... I>
    requires(sizeof...(I) == Rank)
  const T& operator()(I... idx) const noexcept { return view()(idx...); }
  template <std::integral... I>
    requires(sizeof...(I) == Rank)
  T& at(I... idx) { return view().at(idx...); }
  template <std::integral... I>
    requires(sizeof...(I) == Rank)
  const T& at(I... idx) const { return view().at(idx...); }

 private:
  template <class U>
  void copy_from(const tensor_view<U, Rank>& source) {
    if (source.is_contiguous()) {
      std::copy(source.data(), source.data() + source.size(), buffer_.data());
      return;
    }
    index_t out = 0;
    std::array<index_t, Rank> idx{};
    for (index_t n = 0; n < source.size(); ++n) {
      index_t offset = 0;
      for (std::size_t a = 0; a < Rank; ++a) offset += idx[a] * source.stride(a);
      buffer_[static_cast<std::size_t>(out++)] = source.data()[offset];
      for (std::size_t a = Rank; a-- > 0;) {
        if (++idx[a] < source.extent(a)) break;
        idx[a] = 0;
      }
    }
  }

  shape_type shape_{};
  aligned_buffer<T> buffer_;
};

template <class T, std::size_t Rank>
tensor(const tensor_view<T, Rank>&) -> tensor<std::remove_const_t<T>, Rank>;

}  // namespace shrink
