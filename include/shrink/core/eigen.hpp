// eigen.hpp: zero-copy interop with Eigen both ways (a tensor_view of a matrix, an Eigen::Map of a view), layout checked.
#pragma once

#include <Eigen/Core>
#include <type_traits>

#include "error.hpp"
#include "tensor_view.hpp"

namespace shrink {

/// The Eigen::Map type that `as_eigen` returns for a rank-2 view: row-major with runtime
/// strides, so any tensor_view layout maps without a copy.
template <class T>
using eigen_map = Eigen::Map<
    std::conditional_t<std::is_const_v<T>,
                       const Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>,
                       Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>,
    Eigen::Unaligned, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;

/// Column-vector map of a rank-1 view (any stride).
template <class T>
using eigen_vector_map = Eigen::Map<
    std::conditional_t<std::is_const_v<T>, const Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>,
                       Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>>,
    Eigen::Unaligned, Eigen::InnerStride<Eigen::Dynamic>>;

/// An Eigen::Map over a rank-2 view: no copy; writes through a mutable view reach its memory.
template <class T>
eigen_map<T> as_eigen(const tensor_view<T, 2>& v) {
  // Eigen needs non-zero strides for a well-defined map; a zero stride only occurs on
  // extents of 1, where it is never used, so replace it.
  const index_t outer = v.stride(0) != 0 ? v.stride(0) : v.extent(1) * (v.stride(1) ? v.stride(1) : 1);
  const index_t inner = v.stride(1) != 0 ? v.stride(1) : 1;
  return eigen_map<T>(v.data(), v.extent(0), v.extent(1), Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(outer, inner));
}

/// An Eigen column-vector Map over a rank-1 view.
template <class T>
eigen_vector_map<T> as_eigen(const tensor_view<T, 1>& v) {
  return eigen_vector_map<T>(v.data(), v.extent(0), Eigen::InnerStride<Eigen::Dynamic>(v.stride(0) ? v.stride(0) : 1));
}

/// An Eigen column-vector Map over a rank-2 view of shape (n, 1) or (1, n); any other
/// shape is a shrink::error (a rank mismatch: the view is a matrix, not a vector).
template <class T>
eigen_vector_map<T> as_eigen_vector(const tensor_view<T, 2>& v) {
  SHRINK_REQUIRE(v.extent(0) == 1 || v.extent(1) == 1, errc::shape_mismatch,
                 "as_eigen_vector: expected a (n, 1) or (1, n) view, got shape ", v.shape());
  const std::size_t axis = v.extent(0) == 1 ? 1 : 0;
  const index_t stride = v.stride(axis) ? v.stride(axis) : 1;
  return eigen_vector_map<T>(v.data(), v.extent(axis), Eigen::InnerStride<Eigen::Dynamic>(stride));
}

namespace detail {
template <class Derived>
auto view_of(Derived& m) {
  using scalar = std::remove_pointer_t<decltype(m.data())>;
  const index_t rows = m.rows(), cols = m.cols();
  const index_t inner = m.innerStride(), outer = m.outerStride();
  if constexpr (Derived::IsRowMajor) {
    return tensor_view<scalar, 2>(m.data(), shape<2>{rows, cols}, {outer, inner});
  } else {
    return tensor_view<scalar, 2>(m.data(), shape<2>{rows, cols}, {inner, outer});
  }
}

template <class View>
auto vector_of(const View& v) {
  SHRINK_REQUIRE(v.extent(0) == 1 || v.extent(1) == 1, errc::shape_mismatch,
                 "as_vector_view: expected an Eigen vector, got a ", v.extent(0), "x", v.extent(1),
                 " matrix");
  const std::size_t axis = v.extent(0) == 1 ? 1 : 0;
  return tensor_view<typename View::element_type, 1>(v.data(), shape<1>{v.extent(axis)},
                                                     {v.stride(axis)});
}
}  // namespace detail

/// A rank-2 view of an Eigen dense object with direct access (Matrix, Map, Ref, Block),
/// row-major or column-major; the view's strides follow Eigen's layout. No copy.
template <class Derived>
auto as_view(Eigen::PlainObjectBase<Derived>& m) { return detail::view_of(m.derived()); }
template <class Derived>
auto as_view(const Eigen::PlainObjectBase<Derived>& m) { return detail::view_of(m.derived()); }
template <class Derived>
auto as_view(Eigen::MapBase<Derived, Eigen::WriteAccessors>& m) { return detail::view_of(m.derived()); }
template <class Derived>
auto as_view(const Eigen::MapBase<Derived, Eigen::ReadOnlyAccessors>& m) { return detail::view_of(m.derived()); }

/// A rank-1 view of an Eigen vector (or a 1xN / Nx1 matrix); any other shape is a
/// shrink::error naming the shape it got.
template <class Derived>
auto as_vector_view(Eigen::PlainObjectBase<Derived>& m) { return detail::vector_of(as_view(m)); }
template <class Derived>
auto as_vector_view(const Eigen::PlainObjectBase<Derived>& m) { return detail::vector_of(as_view(m)); }
template <class Derived>
auto as_vector_view(Eigen::MapBase<Derived, Eigen::WriteAccessors>& m) { return detail::vector_of(as_view(m)); }
template <class Derived>
auto as_vector_view(const Eigen::MapBase<Derived, Eigen::ReadOnlyAccessors>& m) { return detail::vector_of(as_view(m)); }

}  // namespace shrink
