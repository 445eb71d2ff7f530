// bench_io.cpp: fp16/bf16 <-> fp32 conversion on each ISA path (peer: the scalar reference) and safetensors header parsing.
#include <benchmark/benchmark.h>

#include <shrink/io.hpp>
#include <string>
#include <vector>

#include "support/bench.hpp"

namespace {

using namespace shrink;
constexpr std::size_t k_n = 1 << 20;

template <class In, class Out, class Fn>
void conversion(benchmark::State& state, kernels::isa path, Fn fn) {
  if (!kernels::available(path)) {
    state.SkipWithError("ISA path not available");
    return;
  }
  kernels::scoped_isa forced(path);
  std::vector<In> in(k_n);
  for (std::size_t i = 0; i < k_n; ++i) in[i] = static_cast<In>(i * 2654435761u);
  std::vector<Out> out(k_n);
  for (auto _ : state) {
    fn(std::span<const In>(in), std::span<Out>(out));
    benchmark::DoNotOptimize(out.data());
  }
  bench::set_bytes(state, static_cast<double>(k_n * (sizeof(In) + sizeof(Out))));
}

void register_all() {
  for (kernels::isa path : {kernels::isa::reference, kernels::isa::avx2}) {
    const std::string impl(kernels::name(path));
    benchmark::RegisterBenchmark(bench::name("fp16_to_fp32", impl, "1M").c_str(), [path](benchmark::State& s) {
      conversion<std::uint16_t, float>(s, path, io::convert_fp16_to_fp32);
    });
    benchmark::RegisterBenchmark(bench::name("fp32_to_fp16", impl, "1M").c_str(), [path](benchmark::State& s) {
      conversion<float, std::uint16_t>(s, path, io::convert_fp32_to_fp16);
    });
    benchmark::RegisterBenchmark(bench::name("bf16_to_fp32", impl, "1M").c_str(), [path](benchmark::State& s) {
      conversion<std::uint16_t, float>(s, path, io::convert_bf16_to_fp32);
    });
    benchmark::RegisterBenchmark(bench::name("fp32_to_bf16", impl, "1M").c_str(), [path](benchmark::State& s) {
      conversion<float, std::uint16_t>(s, path, io::convert_fp32_to_bf16);
    });
  }
  // A header with 1000 tensors (a large model's worth of names).
  benchmark::RegisterBenchmark("safetensors_parse/shrink/1000_tensors", [](benchmark::State& state) {
    std::string h = "{";
    for (int i = 0; i < 1000; ++i)
      h += (i ? "," : "") + std::string("\"model.layers.") + std::to_string(i) +
           ".weight\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[" + std::to_string(4 * i) + "," +
           std::to_string(4 * i + 4) + "]}";
    h += "}";
    std::vector<std::byte> file(8 + h.size() + 4000);
    for (int i = 0; i < 8; ++i) file[static_cast<std::size_t>(i)] = static_cast<std::byte>((h.size() >> (8 * i)) & 0xff);
    std::memcpy(file.data() + 8, h.data(), h.size());
    for (auto _ : state) benchmark::DoNotOptimize(io::parse_safetensors(file).tensors.size());
  });
}

const int k_registered = (register_all(), 0);

}  // namespace
