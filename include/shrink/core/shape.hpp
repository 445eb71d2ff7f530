// shape.hpp: shape<Rank>, the extents of a tensor, built from any integers and checked for sign and overflow.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <limits>
#include <ostream>

#include "config.hpp"
#include "error.hpp"

namespace shrink {

/// Extents of a rank-`Rank` tensor. Constructible from any integral values, so
/// `shape<2>{rows, cols}` works for `int`, `std::size_t` or `index_t` alike; negative
/// extents are an error.
template <std::size_t Rank>
struct shape {
  std::array<index_t, Rank> dims{};

  constexpr shape() = default;

  template <std::integral... I>
    requires(sizeof...(I) == Rank)
  constexpr shape(I... extents) : dims{checked(extents)...} {}  // NOLINT(google-explicit-constructor)

  constexpr explicit shape(const std::array<index_t, Rank>& d) : dims(d) {
    for (index_t e : dims) checked(e);
  }

  [[nodiscard]] static constexpr std::size_t rank() noexcept { return Rank; }
  [[nodiscard]] constexpr index_t operator[](std::size_t axis) const noexcept { return dims[axis]; }
  [[nodiscard]] constexpr index_t& operator[](std::size_t axis) noexcept { return dims[axis]; }

  /// Product of the extents, checked for overflow.
  [[nodiscard]] constexpr index_t size() const {
    index_t n = 1;
    for (index_t e : dims) {
      SHRINK_REQUIRE(e == 0 || n <= std::numeric_limits<index_t>::max() / e, errc::overflow,
                     "shape: element count overflows ", sizeof(index_t) * 8, "-bit index");
      n *= e;
    }
    return n;
  }
  [[nodiscard]] constexpr bool empty() const { return size() == 0; }

  friend constexpr bool operator==(const shape&, const shape&) = default;

  friend std::ostream& operator<<(std::ostream& out, const shape& s) {
    out << '(';
    for (std::size_t i = 0; i < Rank; ++i) out << (i ? ", " : "") << s.dims[i];
    return out << ')';
  }

 private:
  template <std::integral I>
  static constexpr index_t checked(I extent) {
    if constexpr (std::is_signed_v<I>) {
      SHRINK_REQUIRE(extent >= 0, errc::invalid_argument, "shape: extents must be >= 0, got ",
                     static_cast<long long>(extent));
    }
    if constexpr (sizeof(I) >= sizeof(index_t) && std::is_unsigned_v<I>) {
      SHRINK_REQUIRE(extent <= static_cast<std::make_unsigned_t<index_t>>(
                                   std::numeric_limits<index_t>::max()),
                     errc::overflow, "shape: extent ", extent, " does not fit in index_t");
    }
    return static_cast<index_t>(extent);
  }
};

template <std::integral... I>
shape(I...) -> shape<sizeof...(I)>;

/// Row-major (C order) strides, in elements, for a shape.
template <std::size_t Rank>
constexpr std::array<index_t, Rank> row_major_strides(const shape<Rank>& s) noexcept {
  std::array<index_t, Rank> strides{};
  index_t step = 1;
  for (std::size_t i = Rank; i-- > 0;) {
    strides[i] = step;
    step *= s.dims[i];
  }
  return strides;
}

}  // namespace shrink
