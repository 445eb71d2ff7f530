// bench_int8.cpp: int8 GEMM/GEMV, weight-only int8/int4 and codebook GEMV against oneDNN and Eigen (single thread unless named).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <shrink/core.hpp>
#include <shrink/core/bits.hpp>
#include <shrink/core/huge_pages.hpp>
#include <shrink/kernels/int8_gemm.hpp>
#include <shrink/kernels/lut_gemv.hpp>
#include <shrink/kernels/q8_gemv.hpp>
#include <shrink/kernels/weight_only_gemv.hpp>
#include <support/bench.hpp>

#if defined(SHRINK_HAVE_ONEDNN)
#include <dnnl.h>
#endif

namespace {

using shrink::index_t;

// Cheap deterministic fill (a 64 M-element mt19937 fill would dominate start-up).
template <class T>
std::vector<T> fill(std::size_t n, std::uint32_t seed) {
  std::vector<T> v(n);
  std::uint32_t s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<T>(s >> 24);
  }
  return v;
}

std::vector<float> fill_float(std::size_t n, std::uint32_t seed) {
  std::vector<float> v(n);
  std::uint32_t s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<float>(static_cast<int>(s >> 16) - 32768) / 32768.0f;
  }
  return v;
}

std::string shape_name(index_t m, index_t n, index_t k) {
  return std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
}

// `u7`: activations in [0, 127] (PyTorch/FBGEMM reduce_range), where the AVX2 path may use
// the exact vpmaddubsw kernel.
void gemm_shrink(benchmark::State& state, index_t m, index_t n, index_t k, int threads, bool u7 = false) {
  auto a = fill<std::uint8_t>(static_cast<std::size_t>(m * k), 1);
  if (u7)
    for (auto& v : a) v = static_cast<std::uint8_t>(v >> 1);
  const auto w = fill<std::int8_t>(static_cast<std::size_t>(n * k), 2);
  const auto packed = shrink::kernels::pack_s8_weights(
      shrink::tensor_view<const std::int8_t, 2>(w.data(), shrink::shape<2>{n, k}));
  std::vector<std::int32_t> c(static_cast<std::size_t>(m * n));
  std::vector<std::byte> ws(shrink::kernels::int8_gemm_workspace_bytes(m, k));
  const shrink::context ctx{threads};
  for (auto _ : state) {
    shrink::kernels::int8_gemm(shrink::tensor_view<const std::uint8_t, 2>(a.data(), shrink::shape<2>{m, k}), 3, packed,
                               shrink::tensor_view<std::int32_t, 2>(c.data(), shrink::shape<2>{m, n}), ws, ctx);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.SetLabel(std::string(shrink::kernels::name(shrink::kernels::selected_path(shrink::kernels::int8_detail::k_tiles))));
  shrink::bench::set_ops(state, 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k));
  shrink::bench::set_bytes(state, static_cast<double>(m * k + n * k + 4 * m * n));
}

#if defined(SHRINK_HAVE_ONEDNN)
// oneDNN's threading follows OMP_NUM_THREADS: run with OMP_NUM_THREADS=1 for the
// single-thread comparison (benchmarks/results/int8.md).
void gemm_onednn(benchmark::State& state, index_t m, index_t n, index_t k) {
  const auto a = fill<std::uint8_t>(static_cast<std::size_t>(m * k), 1);
  const auto w = fill<std::int8_t>(static_cast<std::size_t>(n * k), 2);  // W[N,K] = Bᵀ
  std::vector<std::int32_t> c(static_cast<std::size_t>(m * n));
  const std::int32_t co = 0;
  for (auto _ : state) {
    const dnnl_status_t st = dnnl_gemm_u8s8s32('N', 'T', 'F', m, n, k, 1.0f, a.data(), k, 3, w.data(), k, 0, 0.0f,
                                               c.data(), n, &co);
    if (st != dnnl_success) state.SkipWithError("dnnl_gemm_u8s8s32 failed");
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  shrink::bench::set_ops(state, 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k));
  shrink::bench::set_bytes(state, static_cast<double>(m * k + n * k + 4 * m * n));
}
#endif

constexpr index_t k_gv = 8192;

void gemv_int4(benchmark::State& state) {
  const index_t n = k_gv, k = k_gv, g = 32;
  const auto nib = fill<std::uint8_t>(static_cast<std::size_t>(n * k / 2), 4);
  std::vector<float> scales(static_cast<std::size_t>(n * k / g), 0.01f);
  const auto w = shrink::kernels::pack_s4_weights<float>(nib, n, k, scales, g);
  const auto x = fill_float(static_cast<std::size_t>(k), 5);
  std::vector<float> y(static_cast<std::size_t>(n));
  for (auto _ : state) {
    shrink::kernels::weight_only_gemv(x, w, y, shrink::context{1});
    benchmark::DoNotOptimize(y.data());
  }
  shrink::bench::set_ops(state, 2.0 * static_cast<double>(n * k));
  shrink::bench::set_bytes(state, static_cast<double>(w.data.size_bytes() + w.scales_f32.size_bytes()));
}

// Integer-activation int4 (llama.cpp Q4_0×Q8_0 style): fp16 scales per group of 32 (18
// bytes per 32 weights, as Q4_0), activations quantized per group of 32 inside the timed
// loop (quantize_activations is part of every call).
// L2-resident rows (n != k_gv) time the kernel alone (activations quantized once, outside the loop).
void gemv_int4_q8(benchmark::State& state, index_t n, index_t k) {
  const index_t g = 32;
  const auto nib = fill<std::uint8_t>(static_cast<std::size_t>(n * k / 2), 4);
  std::vector<std::uint16_t> scales(static_cast<std::size_t>(n * k / g), 0x211F);  // fp16 ≈ 0.0101
  const auto w = shrink::kernels::pack_s4q8_weights(shrink::kernels::pack_s4_weights<std::uint16_t>(nib, n, k, scales, g));
  const auto x = fill_float(static_cast<std::size_t>(k), 5);
  auto xq = shrink::kernels::make_q8_activations(k, g);
  std::vector<float> y(static_cast<std::size_t>(n));
  if (n != k_gv) shrink::kernels::quantize_activations(x, xq);
  for (auto _ : state) {
    if (n == k_gv)
      shrink::kernels::gemv_s4_q8(x, xq, w, y, shrink::context{1});
    else
      shrink::kernels::gemv_s4_q8(xq, w, y, shrink::context{1});
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(shrink::kernels::name(shrink::kernels::selected_path(shrink::kernels::q8_detail::k_s4))));
  shrink::bench::set_ops(state, 2.0 * static_cast<double>(n * k));
  shrink::bench::set_bytes(state, static_cast<double>(w.data.size_bytes()));  // weights and scales
}

// Integer-activation 4-bit codebook (per-tensor centroids coded affine7 by default, or
// symmetric8), activations quantized per tensor inside the timed loop. The activations are
// uniform on [−1, 1) (q spread evenly over [−127, 127]: AVX2 can sum no step's products in
// 16 bits, its slowest case) or standard normal (Normal: max|x| ≈ 3.9σ sets the scale, so
// most |q| are small and nearly every step qualifies; docs/kernels.md, "4-bit codebook").
void gemv_codebook4_q8(benchmark::State& state, index_t n, index_t k,
                       shrink::kernels::centroid_code code = shrink::kernels::centroid_code::affine7,
                       bool normal = false) {
  const auto idx = fill<std::uint8_t>(static_cast<std::size_t>(n * k / 2), 8);
  const auto centroids = fill_float(16, 9);
  const auto w =
      shrink::kernels::pack_codebook_q8_weights(shrink::kernels::pack_codebook_weights(idx, 4, n, k, centroids), code);
  auto x = fill_float(static_cast<std::size_t>(k), 10);
  if (normal) {
    std::mt19937 rng(10);
    std::normal_distribution<float> gauss;
    for (auto& v : x) v = gauss(rng);
  }
  auto xq = shrink::kernels::make_q8_activations(k, 0);
  std::vector<float> y(static_cast<std::size_t>(n));
  if (n != k_gv) shrink::kernels::quantize_activations(x, xq);
  for (auto _ : state) {
    if (n == k_gv)
      shrink::kernels::codebook_gemv_q8(x, xq, w, y, shrink::context{1});
    else
      shrink::kernels::codebook_gemv_q8(xq, w, y, shrink::context{1});
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(shrink::kernels::name(shrink::kernels::selected_path(shrink::kernels::q8_detail::k_cb))));
  shrink::bench::set_ops(state, 2.0 * static_cast<double>(n * k));
  shrink::bench::set_bytes(state, static_cast<double>(w.indices.size_bytes()));
}

void gemv_f32_w8(benchmark::State& state) {
  const index_t n = k_gv, k = k_gv;
  const auto w8 = fill<std::int8_t>(static_cast<std::size_t>(n * k), 6);
  std::vector<float> scales(static_cast<std::size_t>(n), 0.01f);
  const auto w = shrink::kernels::pack_s8_weight_only<float>(
      shrink::tensor_view<const std::int8_t, 2>(w8.data(), shrink::shape<2>{n, k}), scales, 0);
  const auto x = fill_float(static_cast<std::size_t>(k), 7);
  std::vector<float> y(static_cast<std::size_t>(n));
  for (auto _ : state) {
    shrink::kernels::weight_only_gemv(x, w, y, shrink::context{1});
    benchmark::DoNotOptimize(y.data());
  }
  shrink::bench::set_ops(state, 2.0 * static_cast<double>(n * k));
  shrink::bench::set_bytes(state, static_cast<double>(w.data.size_bytes()));
}

void gemv_codebook4(benchmark::State& state) {
  const index_t n = k_gv, k = k_gv;
  const auto idx = fill<std::uint8_t>(static_cast<std::size_t>(n * k / 2), 8);  // 4-bit fields, pack_bits order
  const auto centroids = fill_float(16, 9);
  const auto w = shrink::kernels::pack_codebook_weights(idx, 4, n, k, centroids);
  const auto x = fill_float(static_cast<std::size_t>(k), 10);
  std::vector<float> y(static_cast<std::size_t>(n));
  for (auto _ : state) {
    shrink::kernels::codebook_gemv(x, w, y, shrink::context{1});
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(shrink::kernels::name(shrink::kernels::selected_path(shrink::kernels::lut_detail::k_codebook))));
  shrink::bench::set_ops(state, 2.0 * static_cast<double>(n * k));
  shrink::bench::set_bytes(state, static_cast<double>(w.indices.size_bytes()));
}

// Eigen's fp32 GEMV on its own allocation (4 KiB pages), or on a copy of W in 2 MiB pages —
// what the packed weight-only weights ask for — so the weight-only ratio is shown both ways.
template <bool Huge>
void gemv_f32_eigen(benchmark::State& state) {
  const index_t n = k_gv, k = k_gv;
  const auto vals = fill_float(static_cast<std::size_t>(n * k), 11);
  shrink::aligned_buffer<float> storage(static_cast<std::size_t>(n * k), shrink::uninitialized);
  if (Huge) shrink::prefer_huge_pages(storage.data(), storage.size_bytes());
  std::copy(vals.begin(), vals.end(), storage.data());
  const Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> w(storage.data(), n, k);
  const Eigen::VectorXf x = Eigen::VectorXf::Map(fill_float(static_cast<std::size_t>(k), 12).data(), k);
  Eigen::VectorXf y(n);
  for (auto _ : state) {
    y.noalias() = w * x;
    benchmark::DoNotOptimize(y.data());
  }
  shrink::bench::set_ops(state, 2.0 * static_cast<double>(n * k));
  shrink::bench::set_bytes(state, 4.0 * static_cast<double>(n * k));
}

struct shape3 {
  index_t m, n, k;
};

[[maybe_unused]] const int k_registered = [] {
  const shape3 gemms[] = {{2048, 2048, 2048}, {512, 512, 512}, {64, 4096, 4096}, {1, k_gv, k_gv}};
  for (const auto& s : gemms) {
    const std::string op = s.m == 1 ? "gemv_u8s8s32" : "gemm_u8s8s32";
    const std::string sh = shape_name(s.m, s.n, s.k);
    benchmark::RegisterBenchmark(shrink::bench::name(op, "shrink", sh).c_str(),
                                 [s](benchmark::State& st) { gemm_shrink(st, s.m, s.n, s.k, 1); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
#if defined(SHRINK_HAVE_ONEDNN)
    benchmark::RegisterBenchmark(shrink::bench::name(op, "onednn", sh).c_str(),
                                 [s](benchmark::State& st) { gemm_onednn(st, s.m, s.n, s.k); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
#endif
  }
  benchmark::RegisterBenchmark("gemm_u8s8s32/shrink_u7/2048x2048x2048",
                               [](benchmark::State& st) { gemm_shrink(st, 2048, 2048, 2048, 1, true); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("gemm_u8s8s32/shrink_2threads/2048x2048x2048",
                               [](benchmark::State& st) { gemm_shrink(st, 2048, 2048, 2048, 2); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  // 1x512x1024: the same kernels with L2-resident weights (int8 512 KiB, int4 288 KiB,
  // codebook 256 KiB of the 1 MiB L2): the compute rate without the memory stream.
  for (const index_t n : {k_gv, index_t{512}}) {
    const index_t k = n == k_gv ? k_gv : 1024;
    const std::string sh = shape_name(1, n, k);
    if (n != k_gv)
      benchmark::RegisterBenchmark(shrink::bench::name("gemv_u8s8s32", "shrink", sh).c_str(),
                                   [n, k](benchmark::State& st) { gemm_shrink(st, 1, n, k, 1); })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    benchmark::RegisterBenchmark(shrink::bench::name("gemv_int4g32", "shrink", sh).c_str(),
                                 [n, k](benchmark::State& st) { gemv_int4_q8(st, n, k); })
        ->Unit(n == k_gv ? benchmark::kMillisecond : benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(shrink::bench::name("gemv_codebook4", "shrink", sh).c_str(),
                                 [n, k](benchmark::State& st) { gemv_codebook4_q8(st, n, k); })
        ->Unit(n == k_gv ? benchmark::kMillisecond : benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(shrink::bench::name("gemv_codebook4", "shrink_sym8", sh).c_str(),
                                 [n, k](benchmark::State& st) {
                                   gemv_codebook4_q8(st, n, k, shrink::kernels::centroid_code::symmetric8);
                                 })
        ->Unit(n == k_gv ? benchmark::kMillisecond : benchmark::kMicrosecond)
        ->UseRealTime();
    for (const auto code : {shrink::kernels::centroid_code::affine7, shrink::kernels::centroid_code::symmetric8})
      benchmark::RegisterBenchmark(
          shrink::bench::name("gemv_codebook4",
                              code == shrink::kernels::centroid_code::affine7 ? "shrink_normal" : "shrink_sym8_normal", sh)
              .c_str(),
          [n, k, code](benchmark::State& st) { gemv_codebook4_q8(st, n, k, code, true); })
          ->Unit(n == k_gv ? benchmark::kMillisecond : benchmark::kMicrosecond)
          ->UseRealTime();
  }
  benchmark::RegisterBenchmark("gemv_int4g32/shrink_f32act/1x8192x8192", gemv_int4)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("gemv_codebook4/shrink_f32act/1x8192x8192", gemv_codebook4)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("gemv_f32_w8/shrink/1x8192x8192", gemv_f32_w8)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("gemv_f32/eigen/1x8192x8192", gemv_f32_eigen<false>)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("gemv_f32/eigen_hugepages/1x8192x8192", gemv_f32_eigen<true>)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  return 0;
}();

}  // namespace
