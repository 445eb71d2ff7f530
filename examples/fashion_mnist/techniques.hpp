// techniques.hpp: each compression technique of the demo: how it trains (with shrink's hooks), compresses and runs.
#pragma once

#include <chrono>
#include <cstdio>
#include <shrink/shrink.hpp>
#include <vector>

#include "dataset.hpp"
#include "mlp.hpp"
#include "report.hpp"

namespace demo {

struct experiment_config {
  bool quick = false;
  std::uint64_t seed = 7;
  [[nodiscard]] int epochs(int full, int quick_epochs) const { return quick ? quick_epochs : full; }
};

/// Milliseconds for fn() (best of three, so a one-off page fault does not count).
template <class Fn>
double time_ms(Fn&& fn) {
  double best = 1e300;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

inline std::size_t fp32_bytes(const network& n) {
  std::size_t b = 0;
  for (const auto& l : n.layers) b += static_cast<std::size_t>(l.w.size() + l.b.size()) * 4;
  return b;
}

inline result_row baseline(network& net, const dataset& data, const experiment_config& cfg) {
  train(net, data.train, {cfg.epochs(12, 3), 128, 1e-3f, 2e-5f, cfg.seed});
  result_row r{"fp32 baseline", 0, fp32_bytes(net), 1.0, 0, 0, "Eigen GEMM", ""};
  r.accuracy = accuracy(net.predict(data.test.images), data.test.labels);
  r.ms_dense = time_ms([&] { (void)net.predict(data.test.images); });
  r.ms_shrink = r.ms_dense;
  std::printf("  %-28s %.2f%%\n", r.technique.c_str(), 100 * r.accuracy);
  return r;
}

inline std::vector<result_row> run_all(const dataset& data, const experiment_config& cfg) {
  std::vector<result_row> rows;
  network net = network::make({784, 300, 100, 10}, cfg.seed);
  rows.push_back(baseline(net, data, cfg));
  return rows;
}

inline bool check_thresholds(const std::vector<result_row>& rows, const experiment_config& cfg) {
  const double need = cfg.quick ? 0.83 : 0.885;
  if (rows.front().accuracy < need) {
    std::fprintf(stderr, "fp32 baseline %.2f%% is below %.1f%%\n", 100 * rows.front().accuracy, 100 * need);
    return false;
  }
  return true;
}

}  // namespace demo
