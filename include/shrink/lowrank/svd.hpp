// svd.hpp: truncated SVD through Eigen (JacobiSVD for small, BDCSVD for large) into a lowrank::factorized.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include <Eigen/Core>
#include <Eigen/SVD>

#include "../core/error.hpp"
#include "../core/tensor_view.hpp"
#include "factorized.hpp"
#include "rank.hpp"

namespace shrink::lowrank {

/// Matrices whose smaller side is at most this use Eigen's JacobiSVD (one-sided Jacobi:
/// O(mn·min(m,n)) per sweep, most accurate, fast at this size); larger ones use BDCSVD
/// (divide and conquer, O(mn·min(m,n)) with a much smaller constant at scale). Eigen's own
/// BDCSVD falls back to Jacobi below 16; 64 is where Jacobi stops being competitive here.
inline constexpr index_t k_jacobi_max_side = 64;

namespace detail {

using matrix_f = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;  // column-major, like LAPACK

/// Checks a weight matrix (non-empty, finite) and copies it into a column-major Eigen matrix.
inline matrix_f checked_copy(const tensor_view<const float, 2>& w, const char* who) {
  SHRINK_REQUIRE(w.extent(0) > 0 && w.extent(1) > 0, errc::empty_input, who, ": the matrix is empty, shape ",
                 w.shape());
  matrix_f out(w.extent(0), w.extent(1));
  for (index_t i = 0; i < w.extent(0); ++i)
    for (index_t j = 0; j < w.extent(1); ++j) {
      const float v = w(i, j);
      SHRINK_REQUIRE(std::isfinite(v), errc::non_finite, who, ": weight (", i, ", ", j, ") is ", v,
                     "; expected finite values");
      out(i, j) = v;
    }
  return out;
}

/// Builds A = U_r·√Σ_r (m×r) and B = √Σ_r·V_rᵀ (r×n) from thin U, σ, V (any r ≤ their width).
template <class U, class S, class V>
factorized split_factors(const U& u, const S& sigma, const V& v, index_t r) {
  factorized f;
  const index_t m = u.rows(), n = v.rows();
  f.a = tensor<float, 2>(shape<2>{m, r});
  f.b = tensor<float, 2>(shape<2>{r, n});
  f.singular_values.resize(static_cast<std::size_t>(r));
  for (index_t k = 0; k < r; ++k) {
    const double s = std::max(0.0, static_cast<double>(sigma(k)));
    f.singular_values[static_cast<std::size_t>(k)] = static_cast<float>(s);
    const auto root = static_cast<float>(std::sqrt(s));
    for (index_t i = 0; i < m; ++i) f.a(i, k) = static_cast<float>(u(i, k)) * root;
    for (index_t j = 0; j < n; ++j) f.b(k, j) = root * static_cast<float>(v(j, k));
  }
  return f;
}

template <class Svd>
factorized finish(const Svd& svd, index_t m, index_t n, const rank_rule& rule) {
  const auto& s = svd.singularValues();
  std::vector<double> sigma(static_cast<std::size_t>(s.size()));
  for (index_t i = 0; i < s.size(); ++i) sigma[static_cast<std::size_t>(i)] = s(i);
  const index_t r = select_rank(sigma, m, n, rule);
  return split_factors(svd.matrixU(), s, svd.matrixV(), r);
}

}  // namespace detail

/// All min(m, n) singular values of `w`, descending, in double (computed in fp32 by Eigen).
inline std::vector<double> singular_values(const tensor_view<const float, 2>& w) {
  const detail::matrix_f m = detail::checked_copy(w, "singular_values");
  Eigen::VectorXf s;
  if (std::min(m.rows(), m.cols()) <= k_jacobi_max_side) {
    s = Eigen::JacobiSVD<detail::matrix_f>(m).singularValues();
  } else {
    s = Eigen::BDCSVD<detail::matrix_f>(m).singularValues();
  }
  return {s.data(), s.data() + s.size()};
}

/// Truncated SVD: the best rank-r approximation of `w` in Frobenius and spectral norm
/// (Eckart–Young), r chosen by `rule` from the full spectrum. W ≈ A·B with A = U_r√Σ_r,
/// B = √Σ_r V_rᵀ. Errors: empty or non-finite `w`; a rule outside its range (rank 0 or above
/// min(m, n), energy outside (0, 1], ratio outside (0, 1], tolerance outside [0, 1)).
inline factorized factorize(const tensor_view<const float, 2>& w, const rank_rule& rule) {
  const index_t m = w.extent(0), n = w.extent(1);
  detail::check_rule(rule, m, n, "factorize");
  const detail::matrix_f mat = detail::checked_copy(w, "factorize");
  constexpr int options = Eigen::ComputeThinU | Eigen::ComputeThinV;
  if (std::min(m, n) <= k_jacobi_max_side) {
    const Eigen::JacobiSVD<detail::matrix_f> svd(mat, options);
    return detail::finish(svd, m, n, rule);
  }
  const Eigen::BDCSVD<detail::matrix_f> svd(mat, options);
  return detail::finish(svd, m, n, rule);
}

}  // namespace shrink::lowrank
