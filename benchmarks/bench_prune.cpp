// bench_prune.cpp: mask computation (unstructured 90 %, 2:4, 4x4 blocks) on 16 M weights beside one read pass over the same weights.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <shrink/prune.hpp>
#include <support/bench.hpp>
#include <random>
#include <vector>

namespace {
namespace p = shrink::prune;
constexpr shrink::index_t k_rows = 4096, k_cols = 4096;  // 16 M weights, 64 MiB of fp32

const std::vector<float>& weights() {
  static const std::vector<float> w = [] {
    std::vector<float> v(static_cast<std::size_t>(k_rows * k_cols));
    std::mt19937 rng(7);
    std::normal_distribution<float> d(0.0f, 0.02f);
    for (float& x : v) x = d(rng);
    return v;
  }();
  return w;
}

shrink::tensor_view<const float, 2> view() { return {weights().data(), shrink::shape<2>{k_rows, k_cols}}; }

// The floor: one pass that reads every weight (a sum, vectorised by the compiler).
void read_pass(benchmark::State& state) {
  const auto& w = weights();
  for (auto _ : state) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (std::size_t i = 0; i < w.size(); i += 8) {
      s0 += w[i], s1 += w[i + 1], s2 += w[i + 2], s3 += w[i + 3];
      s4 += w[i + 4], s5 += w[i + 5], s6 += w[i + 6], s7 += w[i + 7];
    }
    float s = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
    benchmark::DoNotOptimize(s);
  }
  shrink::bench::set_bytes(state, 4.0 * static_cast<double>(w.size()));
}

// The mask computation; the caller's mask storage is reused (as in a retraining loop).
void prune_magnitude(benchmark::State& state) {
  const auto v = view();
  p::mask m;
  for (auto _ : state) {
    p::magnitude(v, p::by_sparsity(0.9), m);
    benchmark::DoNotOptimize(m.data());
  }
  shrink::bench::set_bytes(state, 4.0 * static_cast<double>(v.size()));
}

// The same plus a fresh 16 MiB mask per call (whatever the allocator costs, page faults included).
void prune_magnitude_alloc(benchmark::State& state) {
  const auto v = view();
  for (auto _ : state) {
    p::mask m = p::magnitude(v, p::by_sparsity(0.9));
    benchmark::DoNotOptimize(m.data());
  }
  shrink::bench::set_bytes(state, 4.0 * static_cast<double>(v.size()));
}

void prune_threshold(benchmark::State& state) {
  const auto v = view();
  p::mask m;
  for (auto _ : state) {
    p::magnitude(v, p::by_threshold(0.03), m);
    benchmark::DoNotOptimize(m.data());
  }
  shrink::bench::set_bytes(state, 4.0 * static_cast<double>(v.size()));
}

void prune_n_m(benchmark::State& state) {
  const auto v = view();
  for (auto _ : state) {
    p::mask m = p::n_m(v, 2, 4);
    benchmark::DoNotOptimize(m.data());
  }
  shrink::bench::set_bytes(state, 4.0 * static_cast<double>(v.size()));
}

void prune_block(benchmark::State& state) {
  const auto v = view();
  for (auto _ : state) {
    p::mask m = p::block(v, {4, 4, p::norm::l2, false}, p::by_sparsity(0.9));
    benchmark::DoNotOptimize(m.data());
  }
  shrink::bench::set_bytes(state, 4.0 * static_cast<double>(v.size()));
}

const int k_registered = [] {
  namespace b = shrink::bench;
  benchmark::RegisterBenchmark(b::name("read_pass", "memory", "16M").c_str(), read_pass)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(b::name("prune_magnitude", "shrink", "16M_s90").c_str(), prune_magnitude)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(b::name("prune_magnitude_alloc", "shrink", "16M_s90").c_str(), prune_magnitude_alloc)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(b::name("prune_threshold", "shrink", "16M").c_str(), prune_threshold)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(b::name("prune_n_m", "shrink", "16M_2of4").c_str(), prune_n_m)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(b::name("prune_block", "shrink", "16M_4x4_s90").c_str(), prune_block)
      ->Unit(benchmark::kMillisecond);
  return 0;
}();
}  // namespace
