// fake_quant.hpp: fake quantization (quantize then dequantize) with the straight-through estimator's mask, and the LSQ step-size gradient.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "scheme.hpp"

namespace shrink::quant {

/// values[i] = scale * (q_i - zp) with q_i = saturate(round(x_i / scale) + zp); mask[i] = 1
/// where the unclamped round(x_i / scale) + zp lies in [qmin, qmax] (the straight-through
/// estimator passes the gradient there and blocks it outside: PyTorch's
/// fake_quantize_per_tensor_affine_cachemask).
struct fake_quant_result {
  std::vector<float> values;
  std::vector<std::uint8_t> mask;
};

namespace detail {
inline void check_fake_quant_input(std::span<const float> x, params p, const scheme& s, const char* who) {
  s.validate(who);
  SHRINK_REQUIRE(!x.empty(), errc::empty_input, who, ": input is empty; expected at least one value");
  SHRINK_REQUIRE(std::isfinite(p.scale) && p.scale > 0.0f, errc::invalid_argument, who, ": scale must be finite and > 0, got ", p.scale);
  SHRINK_REQUIRE(p.zero_point >= s.qmin() && p.zero_point <= s.qmax(), errc::out_of_range, who, ": zero point ", p.zero_point,
                 " is outside [", s.qmin(), ", ", s.qmax(), "]");
  for (std::size_t i = 0; i < x.size(); ++i)
    SHRINK_REQUIRE(std::isfinite(x[i]), errc::non_finite, who, ": values must be finite; element ", i, " is ", x[i]);
}
}  // namespace detail

/// Fake-quantizes x with one parameter set; `first_index` offsets the stochastic-rounding counter.
inline fake_quant_result fake_quantize(std::span<const float> x, params p, const scheme& s, rounding mode = rounding::half_even,
                                       std::uint64_t seed = 0, std::uint64_t first_index = 0) {
  detail::check_fake_quant_input(x, p, s, "fake_quantize");
  fake_quant_result r{std::vector<float>(x.size()), std::vector<std::uint8_t>(x.size())};
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::int32_t q = quantize_value(x[i], p, s, mode, seed, first_index + i);
    r.values[i] = dequantize_value(q, p);
    const double unclamped = std::nearbyint(static_cast<double>(x[i] / p.scale)) + p.zero_point;
    r.mask[i] = (unclamped >= s.qmin() && unclamped <= s.qmax()) ? 1 : 0;
  }
  return r;
}

/// Gradient of the loss with respect to x through fake quantization: grad_out where the mask is 1, else 0.
inline std::vector<float> fake_quantize_backward(std::span<const float> grad_out, std::span<const std::uint8_t> mask) {
  SHRINK_REQUIRE(grad_out.size() == mask.size(), errc::shape_mismatch, "fake_quantize_backward: ", grad_out.size(),
                 " gradients for ", mask.size(), " mask entries; expected equal");
  std::vector<float> g(grad_out.size());
  for (std::size_t i = 0; i < g.size(); ++i) g[i] = mask[i] ? grad_out[i] : 0.0f;
  return g;
}

/// Learned step size (Esser et al. 2020, "Learned Step Size Quantization", eq. 3 and 4):
///   d v̂ / d s = -x/s + round(x/s)   if -Qn < x/s < Qp
///             = -Qn                 if x/s <= -Qn
///             =  Qp                 if x/s >= Qp
/// with -Qn = qmin - zp and Qp = qmax - zp (for the symmetric signed case exactly the paper's
/// bounds), scaled by g = 1 / sqrt(N * Qp). Returns g * Σ grad_out[i] * d v̂_i / d s.
inline double lsq_scale_gradient(std::span<const float> x, std::span<const float> grad_out, params p, const scheme& s) {
  detail::check_fake_quant_input(x, p, s, "lsq_scale_gradient");
  SHRINK_REQUIRE(grad_out.size() == x.size(), errc::shape_mismatch, "lsq_scale_gradient: ", grad_out.size(), " gradients for ",
                 x.size(), " values; expected equal");
  const double qn = static_cast<double>(p.zero_point - s.qmin()), qp = static_cast<double>(s.qmax() - p.zero_point);
  SHRINK_REQUIRE(qp > 0.0, errc::invalid_argument, "lsq_scale_gradient: Qp = qmax - zero_point must be > 0, got ", qp);
  double sum = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = static_cast<double>(x[i]) / p.scale;
    double d;
    if (v <= -qn) d = -qn;
    else if (v >= qp) d = qp;
    else d = std::nearbyint(v) - v;
    sum += static_cast<double>(grad_out[i]) * d;
  }
  return sum / std::sqrt(static_cast<double>(x.size()) * qp);
}

}  // namespace shrink::quant
