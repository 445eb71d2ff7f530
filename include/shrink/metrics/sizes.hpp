// sizes.hpp: size accounting shared by every format: bytes before/after, compression ratio, bits per weight.
#pragma once

#include <cstddef>

namespace shrink::metrics {

/// What users ask first about a compressed tensor or model.
struct size_report {
  std::size_t weights = 0;       ///< number of logical weights
  std::size_t bytes_before = 0;  ///< dense size (fp32 unless stated)
  std::size_t bytes_after = 0;   ///< compressed size, all side data (scales, indices, tables) included

  [[nodiscard]] double ratio() const noexcept {
    return bytes_after == 0 ? 0.0 : static_cast<double>(bytes_before) / static_cast<double>(bytes_after);
  }
  [[nodiscard]] double bits_per_weight() const noexcept {
    return weights == 0 ? 0.0 : 8.0 * static_cast<double>(bytes_after) / static_cast<double>(weights);
  }
  size_report& operator+=(const size_report& o) noexcept {
    weights += o.weights;
    bytes_before += o.bytes_before;
    bytes_after += o.bytes_after;
    return *this;
  }
};

/// The report for `weights` fp32 values stored in `bytes_after` bytes.
constexpr size_report fp32_size_report(std::size_t weights, std::size_t bytes_after) noexcept {
  return {weights, weights * 4, bytes_after};
}

}  // namespace shrink::metrics
