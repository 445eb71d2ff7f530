// bench_lowrank.cpp: randomized rank-64 SVD (shrink) beside Eigen's full BDCSVD on matrices with a known decaying spectrum.
#include <benchmark/benchmark.h>

#include <Eigen/Dense>
#include <cmath>
#include <map>
#include <shrink/lowrank.hpp>
#include <shrink/metrics.hpp>
#include <string>

#include "support/bench.hpp"

namespace {

using matrix_f = Eigen::MatrixXf;
using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
constexpr shrink::index_t k_rank = 64;
constexpr shrink::index_t k_support = 256;  // nonzero singular values: σ_i = exp(−i/20), i < 256

/// W = U diag(σ) Vᵀ with U, V orthonormal (thin Q of Gaussian n × 256 matrices, seeded), so
/// the spectrum is known: σ_i = exp(−i/20) for i < 256 and 0 after (fp32 rounding adds a
/// floor near 1e-7·σ_0). Built once per size, outside every timing loop.
struct test_matrix {
  shrink::tensor<float, 2> w;   // row-major, what shrink reads
  double optimal_error = 0.0;   // sqrt(Σ_{i≥64} σ²) / sqrt(Σ σ²), Eckart–Young
};

const test_matrix& matrix_of(shrink::index_t n) {
  static std::map<shrink::index_t, test_matrix> cache;
  auto it = cache.find(n);
  if (it != cache.end()) return it->second;
  auto orthonormal = [&](unsigned seed) {
    std::srand(seed);
    const matrix_f g = matrix_f::Random(n, k_support);  // uniform entries: fine for a random basis
    const Eigen::HouseholderQR<matrix_f> qr(g);
    return matrix_f(qr.householderQ() * matrix_f::Identity(n, k_support));
  };
  Eigen::VectorXf sigma(k_support);
  double all = 0, tail = 0;
  for (shrink::index_t i = 0; i < k_support; ++i) {
    sigma(i) = static_cast<float>(std::exp(-static_cast<double>(i) / 20.0));
    all += double(sigma(i)) * sigma(i);
    if (i >= k_rank) tail += double(sigma(i)) * sigma(i);
  }
  const matrix_f u = orthonormal(1), v = orthonormal(2);
  test_matrix t;
  t.w = shrink::tensor<float, 2>(shrink::shape<2>{n, n});
  Eigen::Map<row_matrix>(t.w.data(), n, n).noalias() = (u * sigma.asDiagonal()) * v.transpose();
  t.optimal_error = std::sqrt(tail / all);
  return cache.emplace(n, std::move(t)).first->second;
}

void randomized(benchmark::State& state, shrink::index_t n) {
  const auto& t = matrix_of(n);
  shrink::lowrank::factorized f;
  for (auto _ : state) {
    f = shrink::lowrank::factorize_randomized(t.w.view(), shrink::lowrank::explicit_rank{k_rank});
    benchmark::DoNotOptimize(f.a.data());
  }
  const auto approx = f.expand();
  const double err = shrink::metrics::relative_frobenius_error(t.w.span(), approx.span());
  state.counters["rel_err"] = err;
  state.counters["optimal_err"] = t.optimal_error;
  state.counters["err_over_optimal"] = err / t.optimal_error;
}

void eigen_bdcsvd(benchmark::State& state, shrink::index_t n) {
  const auto& t = matrix_of(n);
  const matrix_f w = Eigen::Map<const row_matrix>(t.w.data(), n, n);  // column-major copy, untimed
  Eigen::VectorXf s;
  for (auto _ : state) {
    const Eigen::BDCSVD<matrix_f> svd(w, Eigen::ComputeThinU | Eigen::ComputeThinV);
    s = svd.singularValues();
    benchmark::DoNotOptimize(svd.matrixU().data());
  }
  // The optimal rank-64 error from BDCSVD's own singular values (Eckart–Young).
  double all = 0, tail = 0;
  for (shrink::index_t i = 0; i < s.size(); ++i) {
    all += double(s(i)) * s(i);
    if (i >= k_rank) tail += double(s(i)) * s(i);
  }
  state.counters["optimal_err"] = std::sqrt(tail / all);
}

[[maybe_unused]] const bool registered = [] {
  for (shrink::index_t n : {1024, 2048, 4096}) {
    const std::string shape = std::to_string(n) + "x" + std::to_string(n);
    benchmark::RegisterBenchmark(shrink::bench::name("svd_rank64", "shrink_randomized", shape).c_str(),
                                 [n](benchmark::State& s) { randomized(s, n); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(shrink::bench::name("svd_full", "eigen_bdcsvd", shape).c_str(),
                                 [n](benchmark::State& s) { eigen_bdcsvd(s, n); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->Iterations(1);
  }
  return true;
}();

}  // namespace
