// softmax.hpp: softmax and log-softmax with temperature over the rows of [batch, classes] logits, stable via log-sum-exp.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"

namespace shrink::distill {

namespace detail {

inline void check_temperature(double t, const char* who) {
  SHRINK_REQUIRE(std::isfinite(t) && t > 0.0, errc::invalid_argument, who,
                 ": temperature must be finite and > 0, got ", t);
}

inline void check_logits(const tensor_view<const float, 2>& z, const char* who, const char* what = "logits") {
  SHRINK_REQUIRE(z.extent(0) > 0 && z.extent(1) > 0, errc::empty_input, who, ": ", what,
                 " are empty, shape ", z.shape(), "; expected [batch >= 1, classes >= 1]");
  for (index_t b = 0; b < z.extent(0); ++b)
    for (index_t c = 0; c < z.extent(1); ++c)
      SHRINK_REQUIRE(std::isfinite(z(b, c)), errc::non_finite, who, ": ", what, " (", b, ", ", c, ") is ", z(b, c),
                     "; expected finite values");
}

/// log softmax(z_row / T) into `out` (double): z/T − max − log Σ exp(z/T − max). Subtracting
/// the max makes every exponent ≤ 0, so exp never overflows and the sum is ≥ 1 (no log 0).
inline void log_softmax_row(const tensor_view<const float, 2>& z, index_t row, double t, std::vector<double>& out) {
  const index_t n = z.extent(1);
  out.resize(static_cast<std::size_t>(n));
  double mx = -INFINITY;
  for (index_t c = 0; c < n; ++c) mx = std::max(mx, static_cast<double>(z(row, c)) / t);
  double sum = 0.0;
  for (index_t c = 0; c < n; ++c) sum += std::exp(static_cast<double>(z(row, c)) / t - mx);
  const double lse = mx + std::log(sum);
  for (index_t c = 0; c < n; ++c) out[static_cast<std::size_t>(c)] = static_cast<double>(z(row, c)) / t - lse;
}

}  // namespace detail

/// log softmax(z / T) per row of `logits` [batch, classes]; computed in double.
inline tensor<float, 2> log_softmax(const tensor_view<const float, 2>& logits, double temperature = 1.0) {
  detail::check_temperature(temperature, "log_softmax");
  detail::check_logits(logits, "log_softmax");
  tensor<float, 2> out(logits.shape());
  std::vector<double> row;
  for (index_t b = 0; b < logits.extent(0); ++b) {
    detail::log_softmax_row(logits, b, temperature, row);
    for (index_t c = 0; c < logits.extent(1); ++c) out(b, c) = static_cast<float>(row[static_cast<std::size_t>(c)]);
  }
  return out;
}

/// softmax(z / T) per row of `logits` [batch, classes] = exp(log_softmax); rows sum to 1.
inline tensor<float, 2> softmax(const tensor_view<const float, 2>& logits, double temperature = 1.0) {
  detail::check_temperature(temperature, "softmax");
  detail::check_logits(logits, "softmax");
  tensor<float, 2> out(logits.shape());
  std::vector<double> row;
  for (index_t b = 0; b < logits.extent(0); ++b) {
    detail::log_softmax_row(logits, b, temperature, row);
    for (index_t c = 0; c < logits.extent(1); ++c)
      out(b, c) = static_cast<float>(std::exp(row[static_cast<std::size_t>(c)]));
  }
  return out;
}

}  // namespace shrink::distill
