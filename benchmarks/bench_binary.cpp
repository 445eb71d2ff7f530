// bench_binary.cpp: XNOR-popcount GEMM/GEMV, binary conv and sign packing against Eigen fp32 on the same logical shapes (single thread).
#include <benchmark/benchmark.h>

#include <Eigen/Dense>
#include <shrink/binary.hpp>
#include <shrink/kernels/binary_conv.hpp>
#include <shrink/kernels/bit_pack.hpp>
#include <shrink/kernels/xnor_gemm.hpp>
#include <shrink/kernels/xnor_gemv.hpp>
#include <support/bench.hpp>

#include <random>
#include <vector>

namespace {
namespace b = shrink::binary;
namespace k = shrink::kernels;
using shrink::index_t;

const shrink::context k_one_thread{1};

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

b::bit_matrix random_bits(index_t rows, index_t cols, unsigned seed) {
  auto v = random_floats(static_cast<std::size_t>(rows * cols), seed);
  return b::binarize(shrink::tensor_view<const float, 2>(v.data(), {rows, cols}));
}

// Binary ops are counted one per bit (one XNOR + popcount), as ceiling_xnor_popcount counts them.
void gemm_xnor(benchmark::State& state) {
  const index_t m = state.range(0), n = state.range(1), kk = state.range(2);
  const auto w = random_bits(m, kk, 1), x = random_bits(n, kk, 2);
  shrink::tensor<float, 2> out(shrink::shape<2>{n, m});
  for (auto _ : state) {
    k::xnor_gemm(w, x, out.view(), {}, k_one_thread);
    benchmark::DoNotOptimize(out.data());
  }
  shrink::bench::set_ops(state, static_cast<double>(m) * n * kk);
}

void gemm_f32_eigen(benchmark::State& state) {
  const index_t m = state.range(0), n = state.range(1), kk = state.range(2);
  Eigen::setNbThreads(1);
  Eigen::MatrixXf w = Eigen::MatrixXf::Random(m, kk), x = Eigen::MatrixXf::Random(kk, n), y(m, n);
  for (auto _ : state) {
    y.noalias() = w * x;
    benchmark::DoNotOptimize(y.data());
  }
  shrink::bench::set_ops(state, 2.0 * m * n * kk);
}

void gemv_xnor(benchmark::State& state) {
  const index_t m = state.range(0), kk = state.range(1);
  const auto w = random_bits(m, kk, 3), x = random_bits(1, kk, 4);
  std::vector<float> y(static_cast<std::size_t>(m));
  for (auto _ : state) {
    k::xnor_gemv(w, x, y, {}, k_one_thread);
    benchmark::DoNotOptimize(y.data());
  }
  shrink::bench::set_ops(state, static_cast<double>(m) * kk);
  shrink::bench::set_bytes(state, static_cast<double>(w.words().size_bytes()));
}

void gemv_f32_eigen(benchmark::State& state) {
  const index_t m = state.range(0), kk = state.range(1);
  Eigen::setNbThreads(1);
  Eigen::MatrixXf w = Eigen::MatrixXf::Random(m, kk);
  Eigen::VectorXf x = Eigen::VectorXf::Random(kk), y(m);
  for (auto _ : state) {
    y.noalias() = w * x;
    benchmark::DoNotOptimize(y.data());
  }
  shrink::bench::set_ops(state, 2.0 * m * kk);
  shrink::bench::set_bytes(state, 4.0 * m * kk);
}

// 56×56×256 input, 256 filters of 3×3×256, stride 1, padding 1 (ResNet stage-2 shape).
constexpr index_t k_hw = 56, k_c = 256, k_o = 256, k_k = 3;

void conv_xnor(benchmark::State& state) {
  const auto in = random_bits(k_hw * k_hw, k_c, 5);
  shrink::tensor<float, 4> wf(shrink::shape<4>{k_o, k_k, k_k, k_c});
  auto wv = random_floats(static_cast<std::size_t>(wf.size()), 6);
  std::copy(wv.begin(), wv.end(), wf.data());
  const auto f = b::conv_filter::pack(wf.view());
  shrink::tensor<float, 4> out(shrink::shape<4>{1, k_hw, k_hw, k_o});
  const k::binary_conv_params p{1, 1, 1, 1, k::binary_padding::zero};
  for (auto _ : state) {
    k::binary_conv2d(in, {1, k_hw, k_hw}, f, p, out.view(), {}, k_one_thread);
    benchmark::DoNotOptimize(out.data());
  }
  shrink::bench::set_ops(state, static_cast<double>(k_hw) * k_hw * k_o * k_k * k_k * k_c);
}

void conv_f32_eigen_im2col(benchmark::State& state) {
  Eigen::setNbThreads(1);
  using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  auto iv = random_floats(static_cast<std::size_t>(k_hw * k_hw * k_c), 7);
  const row_major w = row_major::Random(k_k * k_k * k_c, k_o);  // HWI × O
  row_major cols(k_hw * k_hw, k_k * k_k * k_c), out(k_hw * k_hw, k_o);
  for (auto _ : state) {
    for (index_t oy = 0; oy < k_hw; ++oy)
      for (index_t ox = 0; ox < k_hw; ++ox) {
        float* dst = cols.data() + (oy * k_hw + ox) * k_k * k_k * k_c;
        for (index_t ky = 0; ky < k_k; ++ky)
          for (index_t kx = 0; kx < k_k; ++kx, dst += k_c) {
            const index_t y = oy - 1 + ky, x = ox - 1 + kx;
            if (y < 0 || y >= k_hw || x < 0 || x >= k_hw)
              std::fill(dst, dst + k_c, 0.0f);
            else
              std::copy_n(iv.data() + (y * k_hw + x) * k_c, k_c, dst);
          }
      }
    out.noalias() = cols * w;
    benchmark::DoNotOptimize(out.data());
  }
  shrink::bench::set_ops(state, 2.0 * k_hw * k_hw * k_o * k_k * k_k * k_c);
}

void pack_bits(benchmark::State& state) {
  const index_t rows = 4096, cols = 4096;  // 16 M floats, 64 MiB: DRAM-resident
  auto v = random_floats(static_cast<std::size_t>(rows * cols), 8);
  shrink::tensor_view<const float, 2> x(v.data(), {rows, cols});
  b::bit_matrix out(rows, cols);
  for (auto _ : state) {
    k::pack_signs(x, out, b::scaling::mean_abs, k_one_thread);
    benchmark::DoNotOptimize(out.words().data());
  }
  shrink::bench::set_bytes(state, 4.0 * rows * cols);
}

}  // namespace

BENCHMARK(gemm_xnor)->Name("gemm_xnor/shrink/4096x4096x4096")->Args({4096, 4096, 4096})->Unit(benchmark::kMillisecond);
BENCHMARK(gemm_f32_eigen)->Name("gemm_f32/eigen/4096x4096x4096")->Args({4096, 4096, 4096})->Unit(benchmark::kMillisecond);
BENCHMARK(gemv_xnor)->Name("gemv_xnor/shrink/1x4096x4096")->Args({4096, 4096})->Unit(benchmark::kMicrosecond);
BENCHMARK(gemv_f32_eigen)->Name("gemv_f32/eigen/1x4096x4096")->Args({4096, 4096})->Unit(benchmark::kMicrosecond);
BENCHMARK(conv_xnor)->Name("conv_xnor/shrink/56x56x256x256k3")->Unit(benchmark::kMillisecond);
BENCHMARK(conv_f32_eigen_im2col)->Name("conv_f32/eigen_im2col/56x56x256x256k3")->Unit(benchmark::kMillisecond);
BENCHMARK(pack_bits)->Name("pack_bits/shrink/16M")->Unit(benchmark::kMillisecond);
