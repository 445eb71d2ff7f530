// bench_quant.cpp: quantize + pack of a 64 MiB fp32 matrix (int8 per channel, int4 per group) beside a plain read pass, and observers' cost.
#include <benchmark/benchmark.h>

#include <shrink/quant.hpp>
#include <vector>

#include "support/bench.hpp"

namespace {

using namespace shrink;

constexpr index_t k_rows = 4096, k_cols = 4096;

const aligned_buffer<float>& weights() {
  static const aligned_buffer<float> w = [] {
    aligned_buffer<float> b(static_cast<std::size_t>(k_rows * k_cols));
    std::uint64_t s = 0x12345678;
    for (float& v : b) {  // cheap deterministic pseudo-Gaussian (sum of uniforms)
      float acc = 0.0f;
      for (int k = 0; k < 4; ++k) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        acc += static_cast<float>(s >> 40) * 0x1p-24f;
      }
      v = acc - 2.0f;
    }
    return b;
  }();
  return w;
}

#if SHRINK_HAS_X86_PATHS
SHRINK_TARGET_AVX2 double read_avx2(const float* p, std::size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (std::size_t i = 0; i < n; i += 32) {
    s0 = _mm256_add_ps(s0, _mm256_load_ps(p + i));
    s1 = _mm256_add_ps(s1, _mm256_load_ps(p + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_load_ps(p + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_load_ps(p + i + 24));
  }
  return _mm256_cvtss_f32(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}
#endif

void read_pass(benchmark::State& state) {
  const auto& w = weights();
  for (auto _ : state) {
#if SHRINK_HAS_X86_PATHS
    if (kernels::available(kernels::isa::avx2)) {
      benchmark::DoNotOptimize(read_avx2(w.data(), w.size()));
      continue;
    }
#endif
    float s = 0.0f;
    for (float v : w) s += v;
    benchmark::DoNotOptimize(s);
  }
  bench::set_bytes(state, static_cast<double>(w.size_bytes()));
}

// reuse = false: the allocating call (fresh 16 MiB output each time, page faults included);
// reuse = true: quantize_into an existing result, the steady state of re-quantizing a layer.
void quantize_matrix(benchmark::State& state, quant::options o, bool reuse) {
  const auto& w = weights();
  const tensor_view<const float, 2> x(w.data(), shape<2>{k_rows, k_cols});
  quant::quantized kept;
  for (auto _ : state) {
    if (reuse) {
      quant::quantize_into(x, o, {}, kept);
      benchmark::DoNotOptimize(kept.codes().data());
    } else {
      auto q = quant::quantize(x, o);
      benchmark::DoNotOptimize(q.codes().data());
    }
  }
  bench::set_bytes(state, static_cast<double>(w.size_bytes()));
}

// The same work on the first `rows` rows only (L2-resident when small): the compute cost
// without the DRAM stream, to tell how far the full-size run is from memory-bound.
void quantize_rows(benchmark::State& state, quant::options o, index_t rows) {
  const auto& w = weights();
  const tensor_view<const float, 2> x(w.data(), shape<2>{rows, k_cols});
  quant::quantized kept;
  for (auto _ : state) {
    quant::quantize_into(x, o, {}, kept);
    benchmark::DoNotOptimize(kept.codes().data());
  }
  bench::set_bytes(state, static_cast<double>(rows * k_cols) * sizeof(float));
}

template <class Observer>
void observe_million(benchmark::State& state, Observer proto) {
  const auto& w = weights();
  const std::span<const float> x(w.data(), 1u << 20);
  for (auto _ : state) {
    Observer obs = proto;
    obs.observe(x);
    benchmark::DoNotOptimize(obs.ranges());
  }
  bench::set_bytes(state, static_cast<double>(x.size_bytes()));  // the time column is the cost per 2^20 values
}

const std::string k_shape = "4096x4096";

BENCHMARK(read_pass)->Name(bench::name("read_pass", "memory", k_shape))->Unit(benchmark::kMillisecond);
const quant::options k_int8_pc{quant::k_qint8_symmetric, quant::granularity::per_channel(0)};
const quant::options k_int4_g32{quant::k_int4_symmetric, quant::granularity::per_group(32)};
const quant::options k_uint8_pt{quant::k_quint8_affine, quant::granularity::per_tensor()};
BENCHMARK_CAPTURE(quantize_matrix, a, k_int8_pc, false)->Name(bench::name("quantize_int8_per_channel", "shrink", k_shape))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(quantize_matrix, b, k_int8_pc, true)->Name(bench::name("quantize_int8_per_channel", "shrink_into", k_shape))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(quantize_matrix, c, k_int4_g32, false)->Name(bench::name("quantize_int4_g32", "shrink", k_shape))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(quantize_matrix, d, k_int4_g32, true)->Name(bench::name("quantize_int4_g32", "shrink_into", k_shape))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(quantize_matrix, e, k_uint8_pt, false)->Name(bench::name("quantize_uint8_per_tensor", "shrink", k_shape))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(quantize_matrix, f, k_uint8_pt, true)->Name(bench::name("quantize_uint8_per_tensor", "shrink_into", k_shape))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(quantize_rows, a, k_int8_pc, 32)->Name(bench::name("quantize_int8_per_channel", "shrink_into", "32x4096_cached"));
BENCHMARK_CAPTURE(quantize_rows, b, k_int4_g32, 32)->Name(bench::name("quantize_int4_g32", "shrink_into", "32x4096_cached"));

BENCHMARK_CAPTURE(observe_million, mm, quant::min_max_observer{})->Name("observe_min_max/shrink/1M")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(observe_million, ma, quant::moving_average_min_max_observer{})
    ->Name("observe_moving_average/shrink/1M")
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(observe_million, pct, quant::percentile_observer{99.99})->Name("observe_percentile/shrink/1M")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(observe_million, mse, quant::mse_observer{})->Name("observe_mse/shrink/1M")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(observe_million, kl, quant::entropy_observer{})->Name("observe_entropy/shrink/1M")->Unit(benchmark::kMillisecond);

}  // namespace
