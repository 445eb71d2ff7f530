// errors.hpp: reconstruction error metrics (MSE, SQNR in dB, max absolute error, relative Frobenius error).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>

#include "../core/error.hpp"

namespace shrink::metrics {

namespace detail {
inline void check_pair(std::size_t a, std::size_t b, const char* who) {
  SHRINK_REQUIRE(a == b, errc::shape_mismatch, who, ": operands have ", a, " and ", b, " elements; expected equal");
  SHRINK_REQUIRE(a > 0, errc::empty_input, who, ": operands are empty; expected at least one element");
}
}  // namespace detail

/// Σ (x − y)² in double.
inline double squared_error(std::span<const float> x, std::span<const float> y) {
  detail::check_pair(x.size(), y.size(), "squared_error");
  double s = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - static_cast<double>(y[i]);
    s += d * d;
  }
  return s;
}

/// Mean squared error between a reference `x` and its reconstruction `y`.
inline double mse(std::span<const float> x, std::span<const float> y) {
  return squared_error(x, y) / static_cast<double>(x.size());
}

/// Signal-to-quantisation-noise ratio 10·log10(Σx² / Σ(x−y)²) in dB; +inf when y == x.
inline double sqnr_db(std::span<const float> x, std::span<const float> y) {
  const double noise = squared_error(x, y);
  double signal = 0.0;
  for (float v : x) signal += static_cast<double>(v) * v;
  if (noise == 0.0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

/// max |x − y|.
inline double max_abs_error(std::span<const float> x, std::span<const float> y) {
  detail::check_pair(x.size(), y.size(), "max_abs_error");
  double m = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(static_cast<double>(x[i]) - y[i]));
  return m;
}

/// ‖x − y‖_F / ‖x‖_F (0 when both are zero).
inline double relative_frobenius_error(std::span<const float> x, std::span<const float> y) {
  const double noise = squared_error(x, y);
  double signal = 0.0;
  for (float v : x) signal += static_cast<double>(v) * v;
  if (signal == 0.0) return noise == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(noise / signal);
}

}  // namespace shrink::metrics
