// test_svd.cpp: truncated and randomized SVD and rank rules on matrices built with known singular values (Eckart–Young), op counts.
#include <catch2/catch.hpp>

#include <Eigen/Dense>
#include <cmath>
#include <limits>
#include <numeric>
#include <shrink/lowrank.hpp>
#include <shrink/metrics.hpp>
#include <vector>

#include "support/random.hpp"

namespace lr = shrink::lowrank;
using shrink::index_t;

namespace {

using matrix_d = Eigen::MatrixXd;

/// A random orthonormal m × k matrix: thin Q of a Gaussian matrix.
matrix_d random_orthonormal(index_t m, index_t k, std::uint64_t seed) {
  const auto g = shrink::testing::normal_floats(static_cast<std::size_t>(m * k), seed);
  matrix_d a(m, k);
  for (index_t i = 0; i < m * k; ++i) a.data()[i] = g[static_cast<std::size_t>(i)];
  Eigen::HouseholderQR<matrix_d> qr(a);
  return qr.householderQ() * matrix_d::Identity(m, k);
}

/// W = U diag(σ) Vᵀ (row-major fp32) with the given singular values.
shrink::tensor<float, 2> with_spectrum(index_t m, index_t n, const std::vector<double>& sigma, std::uint64_t seed) {
  const auto k = static_cast<index_t>(sigma.size());
  const matrix_d u = random_orthonormal(m, k, seed), v = random_orthonormal(n, k, seed + 1);
  const Eigen::VectorXd s = Eigen::Map<const Eigen::VectorXd>(sigma.data(), k);
  const matrix_d w = u * s.asDiagonal() * v.transpose();
  shrink::tensor<float, 2> out(shrink::shape<2>{m, n});
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) out(i, j) = static_cast<float>(w(i, j));
  return out;
}

/// sqrt(Σ_{i>r} σ²) / sqrt(Σ σ²): the optimal relative error at rank r (Eckart–Young).
double optimal_relative_error(const std::vector<double>& sigma, std::size_t r) {
  double tail = 0, all = 0;
  for (std::size_t i = 0; i < sigma.size(); ++i) {
    all += sigma[i] * sigma[i];
    if (i >= r) tail += sigma[i] * sigma[i];
  }
  return std::sqrt(tail / all);
}

double relative_error(const shrink::tensor<float, 2>& w, const lr::factorized& f) {
  const auto approx = f.expand();
  return shrink::metrics::relative_frobenius_error(w.span(), approx.span());
}

std::vector<double> geometric_spectrum(std::size_t k, double decay) {
  std::vector<double> s(k);
  for (std::size_t i = 0; i < k; ++i) s[i] = 10.0 * std::pow(decay, static_cast<double>(i));
  return s;
}

}  // namespace

TEST_CASE("truncated SVD: error equals the Eckart-Young optimum at every tested rank") {
  // Both the Jacobi (small side <= 64) and the BDC (larger) paths.
  for (index_t n : {index_t{40}, index_t{90}}) {
    const auto sigma = geometric_spectrum(static_cast<std::size_t>(n), 0.93);
    const auto w = with_spectrum(n + 7, n, sigma, 11);
    for (index_t r : {index_t{1}, index_t{5}, index_t{20}, n - 1}) {
      const auto f = lr::factorize(w.view(), lr::explicit_rank{r});
      REQUIRE(f.rank() == r);
      REQUIRE(f.a.extent(0) == n + 7);
      REQUIRE(f.b.extent(1) == n);
      const double opt = optimal_relative_error(sigma, static_cast<std::size_t>(r));
      CHECK(relative_error(w, f) == Approx(opt).epsilon(1e-3).margin(2e-6));
      // The kept singular values are the ones the matrix was built with.
      for (index_t i = 0; i < r; ++i) CHECK(f.singular_values[static_cast<std::size_t>(i)] == Approx(sigma[static_cast<std::size_t>(i)]).epsilon(1e-4));
    }
  }
}

TEST_CASE("truncated SVD: sqrt(sigma) split puts the same scale in both factors") {
  const std::vector<double> sigma{9.0, 4.0, 1.0};
  const auto w = with_spectrum(12, 8, sigma, 3);
  const auto f = lr::factorize(w.view(), lr::explicit_rank{3});
  for (index_t k = 0; k < 3; ++k) {
    double col = 0, row = 0;
    for (index_t i = 0; i < 12; ++i) col += double(f.a(i, k)) * f.a(i, k);
    for (index_t j = 0; j < 8; ++j) row += double(f.b(k, j)) * f.b(k, j);
    // ‖A[:,k]‖² = ‖B[k,:]‖² = σ_k (unit singular vectors times √σ).
    CHECK(col == Approx(sigma[static_cast<std::size_t>(k)]).epsilon(1e-4));
    CHECK(row == Approx(sigma[static_cast<std::size_t>(k)]).epsilon(1e-4));
  }
}

TEST_CASE("factorized: apply computes A(Bx) like the expanded matrix, costs match r(m+n)") {
  const auto sigma = geometric_spectrum(10, 0.7);
  const auto w = with_spectrum(30, 20, sigma, 5);
  const auto f = lr::factorize(w.view(), lr::explicit_rank{6});
  const auto x = shrink::testing::normal_floats(20, 9);
  const auto y = f.apply(x);
  const auto dense = f.expand();
  for (index_t i = 0; i < 30; ++i) {
    double ref = 0;
    for (index_t j = 0; j < 20; ++j) ref += double(dense(i, j)) * x[static_cast<std::size_t>(j)];
    CHECK(y[static_cast<std::size_t>(i)] == Approx(ref).margin(1e-4));
  }
  CHECK(f.params() == 6u * 50u);
  CHECK(f.bytes() == 6u * 50u * 4u);
  CHECK(f.macs() == 6u * 50u);
  std::vector<float> short_x(19), out(30);
  CHECK_THROWS_AS(f.apply(short_x, out), shrink::error);
}

TEST_CASE("rank rules: energy, parameter ratio and tolerance pick the closed-form rank") {
  // σ² = 16, 9, 4, 1, 0.25 + zeros -> total 30.25.
  const std::vector<double> s{4, 3, 2, 1, 0.5, 0, 0, 0};
  CHECK(lr::select_rank(s, 8, 8, lr::explicit_rank{3}) == 3);
  CHECK(lr::select_rank(s, 8, 8, lr::kept_energy{16.0 / 30.25}) == 1);
  CHECK(lr::select_rank(s, 8, 8, lr::kept_energy{0.52}) == 1);       // 16/30.25 = 0.529
  CHECK(lr::select_rank(s, 8, 8, lr::kept_energy{0.54}) == 2);       // 25/30.25 = 0.826
  CHECK(lr::select_rank(s, 8, 8, lr::kept_energy{0.95}) == 3);       // 29/30.25 = 0.9587
  CHECK(lr::select_rank(s, 8, 8, lr::kept_energy{1.0}) == 5);        // the zeros add nothing
  // Tolerance: residual sqrt(tail/total); rank 2 leaves sqrt(5.25/30.25) = 0.4166.
  CHECK(lr::select_rank(s, 8, 8, lr::error_tolerance{0.42}) == 2);
  CHECK(lr::select_rank(s, 8, 8, lr::error_tolerance{0.41}) == 3);   // rank 3: sqrt(1.25/30.25) = 0.203
  CHECK(lr::select_rank(s, 8, 8, lr::error_tolerance{0.0}) == 5);
  // Parameter ratio: r(m+n) <= ratio·m·n; 100x300, ratio 0.25 -> 7500/400 = 18.75 -> 18.
  CHECK(lr::select_rank({}, 100, 300, lr::parameter_ratio{0.25}) == 18);
  CHECK(lr::select_rank({}, 100, 300, lr::parameter_ratio{1e-6}) == 1);  // never below 1
  CHECK(lr::select_rank({}, 4, 4, lr::parameter_ratio{1.0}) == 2);        // 16/8
}

TEST_CASE("factorize with a tolerance rule meets the tolerance at the smallest rank") {
  const auto sigma = geometric_spectrum(30, 0.8);
  const auto w = with_spectrum(40, 30, sigma, 21);
  const auto f = lr::factorize(w.view(), lr::error_tolerance{0.05});
  const auto r = static_cast<std::size_t>(f.rank());
  CHECK(optimal_relative_error(sigma, r) <= 0.05);
  CHECK(optimal_relative_error(sigma, r - 1) > 0.05);
  CHECK(relative_error(w, f) <= 0.05 + 1e-5);
  const auto g = lr::factorize(w.view(), lr::kept_energy{0.99});
  double kept = 0, all = 0;
  for (std::size_t i = 0; i < sigma.size(); ++i) {
    all += sigma[i] * sigma[i];
    if (i < static_cast<std::size_t>(g.rank())) kept += sigma[i] * sigma[i];
  }
  CHECK(kept / all >= 0.99);
  CHECK((kept - sigma[static_cast<std::size_t>(g.rank()) - 1] * sigma[static_cast<std::size_t>(g.rank()) - 1]) / all < 0.99);
}

TEST_CASE("randomized SVD: within 5 percent of the optimal error, deterministic per seed") {
  const auto sigma = [] {
    std::vector<double> s(200);
    for (std::size_t i = 0; i < s.size(); ++i) s[i] = std::exp(-static_cast<double>(i) / 20.0);
    return s;
  }();
  const auto w = with_spectrum(300, 250, sigma, 31);
  for (index_t r : {index_t{8}, index_t{32}}) {
    const auto f = lr::factorize_randomized(w.view(), lr::explicit_rank{r});
    REQUIRE(f.rank() == r);
    const double opt = optimal_relative_error(sigma, static_cast<std::size_t>(r));
    const double err = relative_error(w, f);
    CHECK(err >= opt * (1 - 1e-3));
    CHECK(err <= opt * 1.05);
  }
  // Same seed -> same bytes; another seed -> another sketch.
  const auto a = lr::factorize_randomized(w.view(), lr::explicit_rank{16}, {.seed = 7});
  const auto b = lr::factorize_randomized(w.view(), lr::explicit_rank{16}, {.seed = 7});
  const auto c = lr::factorize_randomized(w.view(), lr::explicit_rank{16}, {.seed = 8});
  CHECK(std::equal(a.a.span().begin(), a.a.span().end(), b.a.span().begin()));
  CHECK(std::equal(a.b.span().begin(), a.b.span().end(), b.b.span().begin()));
  CHECK_FALSE(std::equal(a.a.span().begin(), a.a.span().end(), c.a.span().begin()));
  // Without power iterations on a slowly decaying spectrum the sketch is worse, never better
  // than optimal; with them it approaches the optimum (Halko et al. §10).
  const double opt16 = optimal_relative_error(sigma, 16);
  const double plain = relative_error(w, lr::factorize_randomized(w.view(), lr::explicit_rank{16}, {.power_iterations = 0}));
  CHECK(plain >= opt16 * (1 - 1e-3));
  CHECK(relative_error(w, a) <= plain + 1e-6);
}

TEST_CASE("randomized SVD: a strided view and the energy rule") {
  const auto sigma = geometric_spectrum(20, 0.6);
  const auto w = with_spectrum(50, 80, sigma, 41);
  // View the left 40 columns only (strided rows).
  const auto left = w.view().slice(1, 0, 40);
  shrink::tensor<float, 2> dense(left);
  const auto f = lr::factorize_randomized(left, lr::explicit_rank{5});
  const auto g = lr::factorize(dense.view(), lr::explicit_rank{5});
  CHECK(relative_error(dense, f) <= relative_error(dense, g) * 1.05 + 1e-6);
  const auto e = lr::factorize_randomized(w.view(), lr::kept_energy{0.999}, {.max_rank = 20});
  CHECK(e.rank() == lr::select_rank(sigma, 50, 80, lr::kept_energy{0.999}));
}

TEST_CASE("lowrank bad input: rank, energy, ratio, tolerance, NaN, empty") {
  const auto w = with_spectrum(6, 4, {3, 2, 1, 0.5}, 1);
  using shrink::errc;
  auto code_of = [](auto&& fn) {
    try {
      fn();
    } catch (const shrink::error& e) {
      return e.code();
    }
    return errc{};
  };
  CHECK(code_of([&] { (void)lr::factorize(w.view(), lr::explicit_rank{0}); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)lr::factorize(w.view(), lr::explicit_rank{5}); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)lr::factorize_randomized(w.view(), lr::explicit_rank{5}); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)lr::factorize(w.view(), lr::kept_energy{0.0}); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)lr::factorize(w.view(), lr::kept_energy{1.01}); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)lr::factorize(w.view(), lr::parameter_ratio{0.0}); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)lr::factorize(w.view(), lr::error_tolerance{1.0}); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)lr::factorize_randomized(w.view(), lr::explicit_rank{2}, {.oversampling = -1}); }) ==
        errc::invalid_argument);
  auto bad = w;
  bad(2, 3) = std::numeric_limits<float>::quiet_NaN();
  CHECK(code_of([&] { (void)lr::factorize(bad.view(), lr::explicit_rank{2}); }) == errc::non_finite);
  CHECK(code_of([&] { (void)lr::factorize_randomized(bad.view(), lr::explicit_rank{2}); }) == errc::non_finite);
  CHECK(code_of([&] { (void)lr::singular_values(bad.view()); }) == errc::non_finite);
  bad(2, 3) = std::numeric_limits<float>::infinity();
  CHECK(code_of([&] { (void)lr::factorize(bad.view(), lr::explicit_rank{2}); }) == errc::non_finite);
  shrink::tensor<float, 2> empty(shrink::shape<2>{0, 4});
  CHECK(code_of([&] { (void)lr::factorize(empty.view(), lr::kept_energy{0.5}); }) == errc::empty_input);
}

TEST_CASE("metrics ops: parameters and MACs of dense, factorized and Tucker-2 layers") {
  namespace m = shrink::metrics;
  const auto lin = m::factorized_linear_ops(512, 256, 32, 4);
  CHECK(lin.params_before == 512u * 256u);
  CHECK(lin.params_after == 32u * (512u + 256u));
  CHECK(lin.macs_before == 512u * 256u * 4u);
  CHECK(lin.macs_after == 32u * 768u * 4u);
  CHECK(lin.params_ratio() == Approx(131072.0 / 24576.0));
  // conv 64 -> 128, 3x3, 56x56 -> 28x28 (stride 2).
  const m::conv_shape c{.out = 128, .in = 64, .kh = 3, .kw = 3, .in_h = 56, .in_w = 56, .out_h = 28, .out_w = 28};
  const auto dense = m::conv_ops(c);
  CHECK(dense.params_before == 128u * 64u * 9u);
  CHECK(dense.macs_before == 128u * 64u * 9u * 28u * 28u);
  const auto t = m::tucker2_conv_ops(c, 32, 16);
  CHECK(t.params_after == 64u * 16u + 32u * 16u * 9u + 128u * 32u);
  CHECK(t.macs_after == 64u * 16u * 56u * 56u + 32u * 16u * 9u * 28u * 28u + 128u * 32u * 28u * 28u);
  CHECK_THROWS_AS(m::linear_ops(-1, 4), shrink::error);
  CHECK_THROWS_AS(m::linear_ops(std::int64_t{1} << 40, std::int64_t{1} << 40), shrink::error);
}
