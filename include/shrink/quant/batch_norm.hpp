// batch_norm.hpp: fold a BatchNorm (gamma, beta, running mean and variance, eps) into the preceding conv / linear layer.
#pragma once

#include <cmath>
#include <span>
#include <vector>

#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"

namespace shrink::quant {

/// BatchNorm in inference form: y = gamma * (z - mean) / sqrt(var + eps) + beta, per channel.
struct batch_norm {
  std::span<const float> gamma, beta, mean, var;
  float eps = 1e-5f;
};

/// Weights [out, k] (a conv's [out, in, kh, kw] viewed as [out, in*kh*kw]) and bias [out].
struct folded_layer {
  tensor<float, 2> weights;
  std::vector<float> bias;
};

/// With f_o = gamma_o / sqrt(var_o + eps) (computed in double):
///   W'[o, :] = f_o * W[o, :],   b'_o = f_o * (b_o - mean_o) + beta_o,
/// so W'·x + b' = BN(W·x + b) for every x (PyTorch fuse_conv_bn_weights). An empty bias is 0.
inline folded_layer fold_batch_norm(tensor_view<const float, 2> weights, std::span<const float> bias, const batch_norm& bn) {
  const char* who = "fold_batch_norm";
  const index_t out = weights.extent(0), k = weights.extent(1);
  SHRINK_REQUIRE(out > 0 && k > 0, errc::empty_input, who, ": weights are empty; expected [out, k] with out, k > 0");
  const auto n = static_cast<std::size_t>(out);
  SHRINK_REQUIRE(bias.empty() || bias.size() == n, errc::shape_mismatch, who, ": bias has ", bias.size(), " entries, expected ", n, " or 0");
  SHRINK_REQUIRE(bn.gamma.size() == n && bn.beta.size() == n && bn.mean.size() == n && bn.var.size() == n, errc::shape_mismatch, who,
                 ": batch-norm parameters must have ", n, " entries each (gamma ", bn.gamma.size(), ", beta ", bn.beta.size(), ", mean ",
                 bn.mean.size(), ", var ", bn.var.size(), ")");
  SHRINK_REQUIRE(std::isfinite(bn.eps) && bn.eps >= 0.0f, errc::invalid_argument, who, ": eps must be finite and >= 0, got ", bn.eps);
  folded_layer r{tensor<float, 2>(shape<2>{out, k}), std::vector<float>(n)};
  for (std::size_t o = 0; o < n; ++o) {
    const double var = static_cast<double>(bn.var[o]) + bn.eps;
    SHRINK_REQUIRE(std::isfinite(var) && var > 0.0, errc::invalid_argument, who, ": var + eps must be > 0 and finite, channel ", o,
                   " has ", var);
    SHRINK_REQUIRE(std::isfinite(bn.gamma[o]) && std::isfinite(bn.beta[o]) && std::isfinite(bn.mean[o]), errc::non_finite, who,
                   ": batch-norm parameters of channel ", o, " must be finite");
    const double f = static_cast<double>(bn.gamma[o]) / std::sqrt(var);
    for (index_t c = 0; c < k; ++c) {
      const float w = weights(static_cast<index_t>(o), c);
      SHRINK_REQUIRE(std::isfinite(w), errc::non_finite, who, ": weights must be finite; element ", static_cast<index_t>(o) * k + c,
                     " is ", w);
      r.weights(static_cast<index_t>(o), c) = static_cast<float>(f * w);
    }
    const double b = bias.empty() ? 0.0 : static_cast<double>(bias[o]);
    r.bias[o] = static_cast<float>(f * (b - bn.mean[o]) + bn.beta[o]);
  }
  return r;
}

}  // namespace shrink::quant
