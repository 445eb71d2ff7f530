// randomized.hpp: randomized truncated SVD (Halko, Martinsson, Tropp 2011) with oversampling, power iterations and a seed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <variant>
#include <vector>

#include <Eigen/Core>
#include <Eigen/QR>
#include <Eigen/SVD>

#include "../core/error.hpp"
#include "../core/tensor_view.hpp"
#include "factorized.hpp"
#include "rank.hpp"
#include "svd.hpp"

namespace shrink::lowrank {

/// Options of the randomized range finder (Halko et al. 2011, Algorithms 4.4 and 5.1).
struct randomized_options {
  index_t oversampling = 10;   ///< p: extra sketch columns beyond the rank, l = r + p
  int power_iterations = 2;    ///< q: subspace iterations (A·Aᵀ)^q, re-orthonormalised by QR between
  std::uint64_t seed = 0x5eed; ///< seed of the Gaussian test matrix; same seed → same factors
  index_t max_rank = 0;        ///< sketch rank for the energy / tolerance rules (0 = min(m, n))
};

namespace detail {

/// splitmix64: a tiny, fully specified generator, so the test matrix is the same on every
/// standard library (std::normal_distribution is implementation-defined).
struct splitmix64 {
  std::uint64_t state;
  std::uint64_t next() noexcept {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in (0, 1]: 53 random bits, never 0 (log below).
  double uniform() noexcept { return (static_cast<double>(next() >> 11) + 1.0) * 0x1.0p-53; }
};

/// An n × l matrix of independent standard normals (Box–Muller), column-major.
inline matrix_f gaussian_matrix(index_t rows, index_t cols, std::uint64_t seed) {
  matrix_f g(rows, cols);
  splitmix64 rng{seed};
  float* p = g.data();
  const index_t count = rows * cols;
  for (index_t i = 0; i < count; i += 2) {
    const double radius = std::sqrt(-2.0 * std::log(rng.uniform()));
    const double angle = 2.0 * std::numbers::pi * rng.uniform();
    p[i] = static_cast<float>(radius * std::cos(angle));
    if (i + 1 < count) p[i + 1] = static_cast<float>(radius * std::sin(angle));
  }
  return g;
}

/// An orthonormal basis of the columns of y (thin Q of a Householder QR), in place.
inline void orthonormalize(matrix_f& y) {
  const index_t rows = y.rows(), cols = y.cols();
  const Eigen::HouseholderQR<Eigen::Ref<matrix_f>> qr(y);  // factorises in place
  matrix_f q = matrix_f::Identity(rows, cols);
  q.applyOnTheLeft(qr.householderQ());
  y.swap(q);
}

template <class Map>
factorized randomized_impl(const Map& a, const rank_rule& rule, const randomized_options& opt) {
  const index_t m = a.rows(), n = a.cols(), full = std::min(m, n);
  index_t k = full;
  if (const auto* r = std::get_if<explicit_rank>(&rule)) k = r->rank;
  else if (const auto* p = std::get_if<parameter_ratio>(&rule)) k = rank_for_ratio(p->ratio, m, n);
  else if (opt.max_rank > 0) k = std::min(opt.max_rank, full);
  const index_t l = std::min(k + opt.oversampling, full);

  // Range finder: Y = A·Ω, then q rounds of Q ← orth(A·orth(Aᵀ·Q)). Each product is one
  // GEMM; the QR between products keeps the small singular directions from being lost to
  // rounding (Halko et al. Algorithm 4.4).
  matrix_f y(m, l);
  y.noalias() = a * gaussian_matrix(n, l, opt.seed);
  orthonormalize(y);
  matrix_f z(n, l);
  for (int it = 0; it < opt.power_iterations; ++it) {
    z.noalias() = a.transpose() * y;
    orthonormalize(z);
    y.noalias() = a * z;
    orthonormalize(y);
  }
  // Bᵀ = Aᵀ·Q (n × l, tall): its thin SVD Bᵀ = Ũ S Ṽᵀ gives A ≈ Q·B = (Q·Ṽ) S Ũᵀ.
  z.noalias() = a.transpose() * y;
  constexpr int options = Eigen::ComputeThinU | Eigen::ComputeThinV;
  matrix_f u_small, v;
  Eigen::VectorXf sigma;
  if (l <= k_jacobi_max_side) {
    const Eigen::JacobiSVD<matrix_f> svd(z, options);
    sigma = svd.singularValues();
    v = svd.matrixU();
    u_small = svd.matrixV();
  } else {
    const Eigen::BDCSVD<matrix_f> svd(z, options);
    sigma = svd.singularValues();
    v = svd.matrixU();
    u_small = svd.matrixV();
  }
  const matrix_f u = y * u_small;

  std::vector<double> s(static_cast<std::size_t>(sigma.size()));
  for (index_t i = 0; i < sigma.size(); ++i) s[static_cast<std::size_t>(i)] = sigma(i);
  index_t r = k;
  if (std::holds_alternative<kept_energy>(rule) || std::holds_alternative<error_tolerance>(rule)) {
    // The sketch sees only l components; the energy it misses is ‖A‖_F² − Σ σ̃², which
    // select_rank counts as residual, so the rule never claims more than it kept.
    const double total = static_cast<double>(a.template cast<double>().squaredNorm());
    r = select_rank(s, m, n, rule, total);
  }
  r = std::min(r, l);
  return split_factors(u, sigma, v, r);
}

}  // namespace detail

/// Randomized truncated SVD of `w`: a rank-r factorization A·B (A = U√Σ, B = √ΣVᵀ) from a
/// sketch of l = r + p columns and q power iterations, deterministic for a given seed.
/// Cost ≈ (2q + 2)·2mnl flops of GEMM plus O((m + n)l²) for QR, against O(mn·min(m, n))
/// for a full SVD (docs/lowrank.md). Explicit rank and parameter ratio fix r before the
/// sketch; kept energy and error tolerance pick r from the sketched spectrum (of width
/// `max_rank` + p), counting the energy outside the sketch as error.
inline factorized factorize_randomized(const tensor_view<const float, 2>& w, const rank_rule& rule,
                                       const randomized_options& options = {}) {
  const index_t m = w.extent(0), n = w.extent(1);
  detail::check_rule(rule, m, n, "factorize_randomized");
  SHRINK_REQUIRE(options.oversampling >= 0, errc::invalid_argument,
                 "factorize_randomized: oversampling must be >= 0, got ", options.oversampling);
  SHRINK_REQUIRE(options.power_iterations >= 0, errc::invalid_argument,
                 "factorize_randomized: power_iterations must be >= 0, got ", options.power_iterations);
  SHRINK_REQUIRE(options.max_rank >= 0, errc::invalid_argument,
                 "factorize_randomized: max_rank must be >= 0 (0 = min(m, n)), got ", options.max_rank);
  SHRINK_REQUIRE(m > 0 && n > 0, errc::empty_input, "factorize_randomized: the matrix is empty, shape ", w.shape());
  using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  if (w.is_contiguous()) {
    // No copy: GEMMs read the caller's row-major memory directly.
    for (float v : w.span())
      SHRINK_REQUIRE(std::isfinite(v), errc::non_finite,
                     "factorize_randomized: the matrix holds ", v, "; expected finite values");
    const Eigen::Map<const row_matrix> a(w.data(), m, n);
    return detail::randomized_impl(a, rule, options);
  }
  const detail::matrix_f a = detail::checked_copy(w, "factorize_randomized");
  return detail::randomized_impl(a, rule, options);
}

}  // namespace shrink::lowrank
