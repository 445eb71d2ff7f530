// bench.hpp: helpers shared by the benchmarks: counters for ops and bytes, names, and a sink against dead-code elimination.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

namespace shrink::bench {

/// Reports `ops` operations per iteration as a "GOP/s" rate (2 ops per multiply-add).
inline void set_ops(benchmark::State& state, double ops_per_iteration) {
  state.counters["GOP/s"] = benchmark::Counter(ops_per_iteration * static_cast<double>(state.iterations()) / 1e9,
                                               benchmark::Counter::kIsRate);
}

/// Reports `bytes` read per iteration as a "GB/s" rate (10^9 bytes).
inline void set_bytes(benchmark::State& state, double bytes_per_iteration) {
  state.counters["GB/s"] = benchmark::Counter(bytes_per_iteration * static_cast<double>(state.iterations()) / 1e9,
                                              benchmark::Counter::kIsRate);
}

/// "operation/implementation/shape", the naming rule that pairs shrink with its peers.
inline std::string name(const std::string& operation, const std::string& implementation, const std::string& shape) {
  return operation + "/" + implementation + "/" + shape;
}

}  // namespace shrink::bench
