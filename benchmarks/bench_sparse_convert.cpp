// bench_sparse_convert.cpp: dense + mask → CSR / BSR / N:M conversion speed, in GB/s of input read, beside one read pass.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <shrink/sparse.hpp>
#include <support/bench.hpp>
#include <vector>

namespace {

namespace sp = shrink::sparse;
constexpr shrink::index_t k_n = 4096;

struct inputs {
  std::vector<float> w;
  std::vector<std::uint8_t> mask_s90, mask_24;
  inputs() : w(static_cast<std::size_t>(k_n * k_n)), mask_s90(w.size()), mask_24(w.size()) {
    std::uint64_t s = 0x9E3779B97F4A7C15ull;
    for (float& x : w) {  // cheap deterministic pseudo-normal values (sum of 4 uniforms)
      float acc = 0.0f;
      for (int i = 0; i < 4; ++i) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        acc += static_cast<float>(s >> 40) / static_cast<float>(1ull << 24);
      }
      x = acc - 2.0f;
    }
    for (std::size_t i = 0; i < w.size(); ++i) mask_s90[i] = std::abs(w[i]) > 1.07f;  // ~10 % kept
    for (std::size_t g = 0; g < w.size(); g += 4) {  // 2:4: the two largest |w| of each group
      std::array<std::size_t, 4> idx{0, 1, 2, 3};
      std::sort(idx.begin(), idx.end(), [&](auto a, auto b) { return std::abs(w[g + a]) > std::abs(w[g + b]); });
      mask_24[g + idx[0]] = mask_24[g + idx[1]] = 1;
    }
  }
  [[nodiscard]] shrink::const_view<float, 2> weights() const { return {w.data(), {k_n, k_n}}; }
  [[nodiscard]] static shrink::const_view<std::uint8_t, 2> view(const std::vector<std::uint8_t>& m) {
    return {m.data(), {k_n, k_n}};
  }
};

const inputs& data() {
  static const inputs d;
  return d;
}

// Bytes a conversion must read: the fp32 weights and the byte mask.
constexpr double k_input_bytes = static_cast<double>(k_n * k_n) * (4 + 1);

void read_pass(benchmark::State& state) {
  const auto& d = data();
  for (auto _ : state) {
    float sum = 0.0f;
    for (std::size_t i = 0; i < d.w.size(); i += 8)
      sum += d.w[i] + d.w[i + 1] + d.w[i + 2] + d.w[i + 3] + d.w[i + 4] + d.w[i + 5] + d.w[i + 6] + d.w[i + 7];
    benchmark::DoNotOptimize(sum);
  }
  shrink::bench::set_bytes(state, static_cast<double>(d.w.size()) * 4);
}

template <class Convert>
void convert(benchmark::State& state, Convert&& fn) {
  (void)data();
  for (auto _ : state) benchmark::DoNotOptimize(fn());
  shrink::bench::set_bytes(state, k_input_bytes);
}

}  // namespace

BENCHMARK(read_pass)->Name("read_pass/memory/4096x4096")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "dense_to_csr_f32/shrink/4096x4096_s90",
                  [] { return sp::csr_f32::from_dense(data().weights(), inputs::view(data().mask_s90)).bytes(); })
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "dense_to_bsr4x4_f32/shrink/4096x4096_s90",
                  [] {
                    return sp::bsr_f32::from_dense(data().weights(), inputs::view(data().mask_s90), {4, 4}).bytes();
                  })
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "dense_to_nm24_f32/shrink/4096x4096",
                  [] { return sp::nm_f32::from_dense(data().weights(), inputs::view(data().mask_24), 2, 4).bytes(); })
    ->Unit(benchmark::kMillisecond);
