// bench_sparse_convert.cpp: dense + mask → CSR (fp32/int8/codebook) / bitmask / BSR / N:M conversion speed, in GB/s of input read, beside one read pass.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <shrink/sparse.hpp>
#include <support/bench.hpp>
#include <vector>

namespace {

namespace sp = shrink::sparse;
constexpr shrink::index_t k_n = 4096;

struct inputs {
  std::vector<float> w, w_s90;  // w_s90: w with the entries mask_s90 drops set to 0
  std::vector<std::uint8_t> mask_s90, mask_24, mask_48, mask_blk90, codes;
  inputs()
      : w(static_cast<std::size_t>(k_n * k_n)),
        mask_s90(w.size()),
        mask_24(w.size()),
        mask_48(w.size()),
        mask_blk90(w.size()),
        codes(w.size()) {
    std::uint64_t s = 0x9E3779B97F4A7C15ull;
    auto next = [&] {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      return s;
    };
    for (float& x : w) {  // cheap deterministic pseudo-normal values (sum of 4 uniforms)
      float acc = 0.0f;
      for (int i = 0; i < 4; ++i) acc += static_cast<float>(next() >> 40) / static_cast<float>(1ull << 24);
      x = acc - 2.0f;
    }
    for (std::size_t i = 0; i < w.size(); ++i) mask_s90[i] = std::abs(w[i]) > 1.07f;  // ~10 % kept
    w_s90 = w;
    for (std::size_t i = 0; i < w.size(); ++i) w_s90[i] = mask_s90[i] ? w[i] : 0.0f;
    for (std::size_t i = 0; i < w.size(); ++i) codes[i] = static_cast<std::uint8_t>(next() >> 60);  // 16 centroids
    keep_largest(mask_24, 2, 4);
    keep_largest(mask_48, 4, 8);
    // 4x4-block pruning at 90 %: ~10 % of whole blocks kept (what prune_block produces).
    for (shrink::index_t br = 0; br < k_n / 4; ++br)
      for (shrink::index_t bc = 0; bc < k_n / 4; ++bc) {
        const bool on = next() % 10 == 0;
        for (shrink::index_t y = 0; y < 4; ++y)
          for (shrink::index_t x = 0; x < 4; ++x)
            mask_blk90[static_cast<std::size_t>((br * 4 + y) * k_n + bc * 4 + x)] = on ? 1 : 0;
      }
  }
  void keep_largest(std::vector<std::uint8_t>& mask, std::size_t n, std::size_t m) const {
    for (std::size_t g = 0; g < w.size(); g += m) {  // N:M: the N largest |w| of each group of M
      std::array<std::size_t, 8> idx{0, 1, 2, 3, 4, 5, 6, 7};
      std::sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(m),
                [&](auto a, auto b) { return std::abs(w[g + a]) > std::abs(w[g + b]); });
      for (std::size_t k = 0; k < n; ++k) mask[g + idx[k]] = 1;
    }
  }
  [[nodiscard]] shrink::const_view<float, 2> weights() const { return {w.data(), {k_n, k_n}}; }
  [[nodiscard]] shrink::const_view<float, 2> pruned() const { return {w_s90.data(), {k_n, k_n}}; }
  [[nodiscard]] static shrink::const_view<std::uint8_t, 2> view(const std::vector<std::uint8_t>& m) {
    return {m.data(), {k_n, k_n}};
  }
};

const inputs& data() {
  static const inputs d;
  return d;
}

// Bytes a conversion must read: the weights (fp32, or 1-byte codes) and the byte mask.
constexpr double k_weights = static_cast<double>(k_n * k_n);

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

// GB/s: every input byte read (values + mask); fp32_GB/s: the dense fp32 matrix the result
// stands for (4 bytes per weight), the figure compared with the DRAM read ceiling.
template <class Convert>
void convert(benchmark::State& state, double bytes_per_weight, Convert&& fn) {
  (void)data();
  for (auto _ : state) benchmark::DoNotOptimize(fn());
  shrink::bench::set_bytes(state, k_weights * bytes_per_weight);
  state.counters["fp32_GB/s"] =
      benchmark::Counter(k_weights * 4 * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

const std::vector<float>& centroids() {
  static const std::vector<float> c = [] {
    std::vector<float> v(16);
    for (int k = 0; k < 16; ++k) v[static_cast<std::size_t>(k)] = 0.125f * static_cast<float>(k - 8);
    return v;
  }();
  return c;
}

}  // namespace

BENCHMARK(read_pass)->Name("read_pass/memory/4096x4096")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "dense_to_csr_f32/shrink/4096x4096_s90", 5.0,
                  [] { return sp::csr_f32::from_dense(data().weights(), inputs::view(data().mask_s90)).bytes(); })
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "nonzeros_to_csr_f32/shrink/4096x4096_s90", 4.0,
                  [] { return sp::csr_f32::from_nonzeros(data().pruned()).bytes(); })
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "dense_to_csr_int8/shrink/4096x4096_s90", 5.0,
                  [] { return sp::csr_int8::from_dense(data().weights(), inputs::view(data().mask_s90)).bytes(); })
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "codes_to_csr_codebook/shrink/4096x4096_s90", 2.0,
                  [] {
                    return sp::csr_codebook::from_indices(inputs::view(data().codes), centroids(),
                                                          inputs::view(data().mask_s90))
                        .bytes();
                  })
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "dense_to_bitmask_f32/shrink/4096x4096_s90", 5.0,
                  [] { return sp::bitmask_f32::from_dense(data().weights(), inputs::view(data().mask_s90)).bytes(); })
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "dense_to_bsr1x4_f32/shrink/4096x4096_s90", 5.0,
                  [] {
                    return sp::bsr_f32::from_dense(data().weights(), inputs::view(data().mask_s90), {1, 4}).bytes();
                  })
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "dense_to_bsr4x4_f32/shrink/4096x4096_s90", 5.0,
                  [] {
                    return sp::bsr_f32::from_dense(data().weights(), inputs::view(data().mask_s90), {4, 4}).bytes();
                  })
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "dense_to_bsr4x4_f32/shrink/4096x4096_blk90", 5.0,
                  [] {
                    return sp::bsr_f32::from_dense(data().weights(), inputs::view(data().mask_blk90), {4, 4}).bytes();
                  })
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "dense_to_bsr8x1_f32/shrink/4096x4096_s90", 5.0,
                  [] {
                    return sp::bsr_f32::from_dense(data().weights(), inputs::view(data().mask_s90), {8, 1}).bytes();
                  })
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "dense_to_bsr16x1_f32/shrink/4096x4096_s90", 5.0,
                  [] {
                    return sp::bsr_f32::from_dense(data().weights(), inputs::view(data().mask_s90), {16, 1}).bytes();
                  })
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "dense_to_nm24_f32/shrink/4096x4096", 5.0,
                  [] { return sp::nm_f32::from_dense(data().weights(), inputs::view(data().mask_24), 2, 4).bytes(); })
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(convert, "dense_to_nm48_f32/shrink/4096x4096", 5.0,
                  [] { return sp::nm_f32::from_dense(data().weights(), inputs::view(data().mask_48), 4, 8).bytes(); })
    ->Unit(benchmark::kMillisecond);
