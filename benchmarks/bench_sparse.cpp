// bench_sparse.cpp: sparse SpMV/SpMM (CSR, N:M, BSR, codebook, int8) against Eigen dense and Eigen SparseMatrix, 4096x4096, single thread.
#include <Eigen/Dense>
#include <Eigen/Sparse>
#include <map>
#include <memory>
#include <random>
#include <shrink/kernels/spmm_csr.hpp>
#include <shrink/kernels/spmm_int8.hpp>
#include <shrink/sparse.hpp>
#include <string>
#include <vector>

#include "support/bench.hpp"

namespace {

using namespace shrink;
namespace k = shrink::kernels;
namespace sp = shrink::sparse;
using bench::name;

constexpr index_t k_n = 4096;
constexpr index_t k_batch = 64;
const context k_one{1};

std::vector<float> normal(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

const std::vector<float>& weights() {
  static const auto w = normal(static_cast<std::size_t>(k_n * k_n), 1);
  return w;
}
const_view<float, 2> wview() { return {weights().data(), shape<2>{k_n, k_n}}; }

// Unstructured mask at `percent` sparsity (Bernoulli per weight), or block-structured for r x c.
const std::vector<std::uint8_t>& mask(int percent, index_t r = 1, index_t c = 1) {
  static std::map<std::tuple<int, index_t, index_t>, std::vector<std::uint8_t>> cache;
  auto& m = cache[{percent, r, c}];
  if (m.empty()) {
    m.resize(static_cast<std::size_t>(k_n * k_n));
    std::mt19937_64 rng(static_cast<std::uint64_t>(percent * 1000 + r * 10 + c));
    std::bernoulli_distribution keep(1.0 - percent / 100.0);
    for (index_t br = 0; br < k_n / r; ++br)
      for (index_t bc = 0; bc < k_n / c; ++bc) {
        const std::uint8_t on = keep(rng) ? 1 : 0;
        for (index_t y = 0; y < r; ++y)
          for (index_t x = 0; x < c; ++x) m[static_cast<std::size_t>((br * r + y) * k_n + bc * c + x)] = on;
      }
  }
  return m;
}
const_view<std::uint8_t, 2> mview(int percent, index_t r = 1, index_t c = 1) {
  return {mask(percent, r, c).data(), shape<2>{k_n, k_n}};
}

const std::vector<std::uint8_t>& nm_mask() {  // 2:4, keeping the two largest of every four
  static std::vector<std::uint8_t> m;
  if (m.empty()) {
    m.resize(static_cast<std::size_t>(k_n * k_n));
    const auto& w = weights();
    for (std::size_t g = 0; g < m.size(); g += 4) {
      std::size_t a = g, b = g + 1;
      if (std::abs(w[b]) > std::abs(w[a])) std::swap(a, b);
      for (std::size_t t = g + 2; t < g + 4; ++t) {
        if (std::abs(w[t]) > std::abs(w[a])) {
          b = a;
          a = t;
        } else if (std::abs(w[t]) > std::abs(w[b])) {
          b = t;
        }
      }
      m[a] = m[b] = 1;
    }
  }
  return m;
}

// Activations live in 64-byte aligned buffers, as an inference engine's do: with malloc's
// 16-byte offset every 64-byte X row of the int8 SpMM straddles two cache lines (4096² s90
// × 64: 2.02 against 1.91 ns per entry, benchmarks/results/sparse.md run 12).
const aligned_buffer<float>& x_vec() {
  static const aligned_buffer<float> x(std::span<const float>(normal(static_cast<std::size_t>(k_n), 2)));
  return x;
}
const aligned_buffer<float>& x_mat() {
  static const aligned_buffer<float> x(std::span<const float>(normal(static_cast<std::size_t>(k_n * k_batch), 3)));
  return x;
}
aligned_buffer<std::int8_t> int8s(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  aligned_buffer<std::int8_t> v(n);
  for (auto& x : v) x = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
  return v;
}

template <class Plan>
void run_spmv(benchmark::State& state, const Plan& plan, double nnz) {
  const auto& x = x_vec();
  std::vector<float> y(static_cast<std::size_t>(k_n));
  for (auto _ : state) {
    k::spmv(plan, std::span<const float>(x), std::span<float>(y), k_one);
    benchmark::DoNotOptimize(y.data());
  }
  bench::set_ops(state, 2.0 * nnz);
}

/// Batch-1 int8 SpMV (s8 activations, exact int32 outputs) through either plan type.
template <class Plan>
void run_spmv_int8(benchmark::State& state, const Plan& plan) {
  const auto x = int8s(static_cast<std::size_t>(k_n), 4);
  std::vector<std::int32_t> y(static_cast<std::size_t>(k_n));
  for (auto _ : state) {
    k::spmv(plan, std::span<const std::int8_t>(x), std::span<std::int32_t>(y), k_one);
    benchmark::DoNotOptimize(y.data());
  }
  bench::set_ops(state, 2.0 * static_cast<double>(plan.nnz()));
}

/// int8 SpMM × 64 (s8 activations in [−127, 127], exact int32 outputs).
void run_spmm_int8(benchmark::State& state, const k::sparse_plan_int8& plan) {
  const auto x = int8s(static_cast<std::size_t>(k_n * k_batch), 5);
  std::vector<std::int32_t> y(static_cast<std::size_t>(k_n * k_batch));
  for (auto _ : state) {
    k::spmm(plan, const_view<std::int8_t, 2>(x.data(), shape<2>{k_n, k_batch}),
            tensor_view<std::int32_t, 2>(y.data(), shape<2>{k_n, k_batch}), k_one);
    benchmark::DoNotOptimize(y.data());
  }
  bench::set_ops(state, 2.0 * static_cast<double>(plan.nnz()) * k_batch);
}

template <class Plan>
void run_spmm(benchmark::State& state, const Plan& plan, double nnz, index_t batch) {
  const auto& x = x_mat();
  std::vector<float> y(static_cast<std::size_t>(k_n * batch));
  for (auto _ : state) {
    k::spmm(plan, const_view<float, 2>(x.data(), shape<2>{k_n, batch}),
            tensor_view<float, 2>(y.data(), shape<2>{k_n, batch}), k_one);
    benchmark::DoNotOptimize(y.data());
  }
  bench::set_ops(state, 2.0 * nnz * static_cast<double>(batch));
}

void register_all() {
  using dense = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  // ---- dense peers
  benchmark::RegisterBenchmark(name("gemv_f32", "eigen", "4096x4096").c_str(), [](benchmark::State& state) {
    const Eigen::Map<const dense> w(weights().data(), k_n, k_n);
    const Eigen::Map<const Eigen::VectorXf> x(x_vec().data(), k_n);
    Eigen::VectorXf y(k_n);
    for (auto _ : state) {
      y.noalias() = w * x;
      benchmark::DoNotOptimize(y.data());
    }
    bench::set_ops(state, 2.0 * k_n * k_n);
  });
  // The same GEMV on a copy of W in 2 MiB pages (what make_spmv_plan asks for its own
  // buffers): the fair peer for the batch-1 plans.
  benchmark::RegisterBenchmark(name("gemv_f32", "eigen_hugepages", "4096x4096").c_str(), [](benchmark::State& state) {
    aligned_buffer<float> copy(static_cast<std::size_t>(k_n * k_n), uninitialized);
    shrink::prefer_huge_pages(copy.data(), copy.size_bytes());
    std::copy(weights().begin(), weights().end(), copy.begin());
    const Eigen::Map<const dense> w(copy.data(), k_n, k_n);
    const Eigen::Map<const Eigen::VectorXf> x(x_vec().data(), k_n);
    Eigen::VectorXf y(k_n);
    for (auto _ : state) {
      y.noalias() = w * x;
      benchmark::DoNotOptimize(y.data());
    }
    bench::set_ops(state, 2.0 * k_n * k_n);
  });
  for (index_t batch : {index_t{8}, k_batch}) {
    benchmark::RegisterBenchmark(name("gemm_f32", "eigen", "4096x4096x" + std::to_string(batch)).c_str(),
                                 [batch](benchmark::State& state) {
                                   const Eigen::Map<const dense> w(weights().data(), k_n, k_n);
                                   const Eigen::Map<const dense> x(x_mat().data(), k_n, batch);
                                   dense y(k_n, batch);
                                   for (auto _ : state) {
                                     y.noalias() = w * x;
                                     benchmark::DoNotOptimize(y.data());
                                   }
                                   bench::set_ops(state, 2.0 * k_n * k_n * static_cast<double>(batch));
                                 });
  }
  // ---- unstructured CSR at each sparsity
  for (int s : {50, 70, 80, 90, 95}) {
    const std::string tag = "_s" + std::to_string(s);
    // the batch-1 plan (layout chosen by density), then each layout forced, then the
    // general plan's gather kernel (what SpMM plans run at batch 1)
    benchmark::RegisterBenchmark(name("spmv_csr_f32", "shrink", "4096x4096" + tag).c_str(), [s](benchmark::State& st) {
      const auto plan = k::make_spmv_plan(sp::csr_f32::from_dense(wview(), mview(s)));
      run_spmv(st, plan, static_cast<double>(plan.nnz()));
    });
    for (auto [layout, lname] : {std::pair{k::spmv_layout::index16, "shrink_index16"},
                                 std::pair{k::spmv_layout::bitmap, "shrink_bitmap"},
                                 std::pair{k::spmv_layout::delta8, "shrink_delta8"}})
      benchmark::RegisterBenchmark(name("spmv_csr_f32", lname, "4096x4096" + tag).c_str(),
                                   [s, layout](benchmark::State& st) {
                                     const auto plan = k::make_spmv_plan(sp::csr_f32::from_dense(wview(), mview(s)), layout);
                                     run_spmv(st, plan, static_cast<double>(plan.nnz()));
                                   });
    benchmark::RegisterBenchmark(name("spmv_csr_f32", "shrink_gather", "4096x4096" + tag).c_str(),
                                 [s](benchmark::State& st) {
                                   const auto plan = k::make_plan(sp::csr_f32::from_dense(wview(), mview(s)));
                                   run_spmv(st, plan, static_cast<double>(plan.nnz()));
                                 });
    benchmark::RegisterBenchmark(name("spmv_csr_f32", "eigen_sparse", "4096x4096" + tag).c_str(),
                                 [s](benchmark::State& st) {
                                   const auto a = sp::csr_f32::from_dense(wview(), mview(s));
                                   const auto d = a.to_dense();
                                   const Eigen::Map<const dense> wd(d.data(), k_n, k_n);
                                   const Eigen::SparseMatrix<float, Eigen::RowMajor> w = wd.sparseView();
                                   const Eigen::Map<const Eigen::VectorXf> x(x_vec().data(), k_n);
                                   Eigen::VectorXf y(k_n);
                                   for (auto _ : st) {
                                     y.noalias() = w * x;
                                     benchmark::DoNotOptimize(y.data());
                                   }
                                   bench::set_ops(st, 2.0 * static_cast<double>(a.nnz()));
                                 });
    for (index_t batch : {index_t{8}, k_batch})
      benchmark::RegisterBenchmark(
          name("spmm_csr_f32", "shrink", "4096x4096x" + std::to_string(batch) + tag).c_str(),
          [s, batch](benchmark::State& st) {
            const auto plan = k::make_plan(sp::csr_f32::from_dense(wview(), mview(s)));
            run_spmm(st, plan, static_cast<double>(plan.nnz()), batch);
          });
    benchmark::RegisterBenchmark(name("spmv_csr_int8", "shrink", "4096x4096" + tag).c_str(), [s](benchmark::State& st) {
      const auto plan = k::make_spmv_plan(sp::csr_int8::from_dense(wview(), mview(s)));
      run_spmv_int8(st, plan);
    });
    for (auto [layout, lname] : {std::pair{k::spmv_layout::index32, "shrink_index32"},
                                 std::pair{k::spmv_layout::bitmap, "shrink_bitmap"},
                                 std::pair{k::spmv_layout::delta8, "shrink_delta8"},
                                 std::pair{k::spmv_layout::window16, "shrink_window16"}})
      benchmark::RegisterBenchmark(name("spmv_csr_int8", lname, "4096x4096" + tag).c_str(),
                                   [s, layout](benchmark::State& st) {
                                     const auto plan = k::make_spmv_plan(sp::csr_int8::from_dense(wview(), mview(s)), layout);
                                     run_spmv_int8(st, plan);
                                   });
    benchmark::RegisterBenchmark(name("spmv_csr_int8", "shrink_general", "4096x4096" + tag).c_str(), [s](benchmark::State& st) {
      const auto plan = k::make_plan(sp::csr_int8::from_dense(wview(), mview(s)));
      run_spmv_int8(st, plan);
    });
    benchmark::RegisterBenchmark(name("spmm_csr_int8", "shrink", "4096x4096x64" + tag).c_str(),
                                 [s](benchmark::State& st) {
                                   run_spmm_int8(st, k::make_plan(sp::csr_int8::from_dense(wview(), mview(s))));
                                 });
    for (auto [r, c] : {std::pair<index_t, index_t>{1, 4}, {4, 4}, {8, 1}}) {
      const std::string blk = std::to_string(r) + "x" + std::to_string(c);
      benchmark::RegisterBenchmark(name("spmv_bsr" + blk + "_f32", "shrink", "4096x4096" + tag).c_str(),
                                   [s, r, c](benchmark::State& st) {
                                     const auto plan = k::make_plan(sp::bsr_f32::from_dense(wview(), mview(s, r, c), {r, c}));
                                     run_spmv(st, plan, static_cast<double>(plan.nnz()));
                                   });
      benchmark::RegisterBenchmark(name("spmm_bsr" + blk + "_f32", "shrink", "4096x4096x64" + tag).c_str(),
                                   [s, r, c](benchmark::State& st) {
                                     const auto plan = k::make_plan(sp::bsr_f32::from_dense(wview(), mview(s, r, c), {r, c}));
                                     run_spmm(st, plan, static_cast<double>(plan.nnz()), k_batch);
                                   });
      if (r != 1 || c != 4) continue;
      // BSR int8 through the general int8 plan (exact int32): 1x4, the VNNI-shaped block.
      benchmark::RegisterBenchmark(name("spmv_bsr" + blk + "_int8", "shrink", "4096x4096" + tag).c_str(),
                                   [s, r, c](benchmark::State& st) {
                                     run_spmv_int8(st, k::make_spmv_plan(sp::bsr_int8::from_dense(wview(), mview(s, r, c), {r, c})));
                                   });
      benchmark::RegisterBenchmark(name("spmv_bsr" + blk + "_int8", "shrink_general", "4096x4096" + tag).c_str(),
                                   [s, r, c](benchmark::State& st) {
                                     run_spmv_int8(st, k::make_plan(sp::bsr_int8::from_dense(wview(), mview(s, r, c), {r, c})));
                                   });
      benchmark::RegisterBenchmark(name("spmm_bsr" + blk + "_int8", "shrink", "4096x4096x64" + tag).c_str(),
                                   [s, r, c](benchmark::State& st) {
                                     run_spmm_int8(st, k::make_plan(sp::bsr_int8::from_dense(wview(), mview(s, r, c), {r, c})));
                                   });
    }
  }
  benchmark::RegisterBenchmark(name("spmm_csr_f32", "eigen_sparse", "4096x4096x64_s90").c_str(),
                               [](benchmark::State& st) {
                                 const auto d = sp::csr_f32::from_dense(wview(), mview(90)).to_dense();
                                 const Eigen::Map<const dense> wd(d.data(), k_n, k_n);
                                 const Eigen::SparseMatrix<float, Eigen::RowMajor> w = wd.sparseView();
                                 const Eigen::Map<const dense> x(x_mat().data(), k_n, k_batch);
                                 dense y(k_n, k_batch);
                                 for (auto _ : st) {
                                   y.noalias() = w * x;
                                   benchmark::DoNotOptimize(y.data());
                                 }
                                 bench::set_ops(st, 2.0 * static_cast<double>(w.nonZeros()) * k_batch);
                               });
  // ---- N:M 2:4 (50 %)
  benchmark::RegisterBenchmark(name("spmv_nm24_f32", "shrink", "4096x4096").c_str(), [](benchmark::State& st) {
    const auto plan = k::make_plan(sp::nm_f32::from_dense(wview(), {nm_mask().data(), shape<2>{k_n, k_n}}, 2, 4));
    run_spmv(st, plan, static_cast<double>(plan.nnz()));
  });
  benchmark::RegisterBenchmark(name("spmm_nm24_f32", "shrink", "4096x4096x64").c_str(), [](benchmark::State& st) {
    const auto plan = k::make_plan(sp::nm_f32::from_dense(wview(), {nm_mask().data(), shape<2>{k_n, k_n}}, 2, 4));
    run_spmm(st, plan, static_cast<double>(plan.nnz()), k_batch);
  });
  // ---- codebook-valued CSR (16 centroids), s90
  benchmark::RegisterBenchmark(name("spmv_csr_codebook16_f32", "shrink", "4096x4096_s90").c_str(),
                               [](benchmark::State& st) {
                                 std::vector<std::uint8_t> idx(static_cast<std::size_t>(k_n * k_n));
                                 std::mt19937_64 rng(6);
                                 for (auto& i : idx) i = static_cast<std::uint8_t>(rng() % 16);
                                 const auto cent = normal(16, 7);
                                 const auto plan = k::make_plan(sp::csr_codebook::from_indices(
                                     {idx.data(), shape<2>{k_n, k_n}}, cent, mview(90)));
                                 run_spmv(st, plan, static_cast<double>(plan.nnz()));
                               });
}

const int k_registered = (register_all(), 0);

}  // namespace
