// hooks.hpp: the training-loop hooks, each a thin adapter over a shrink module (masks, fake-quant STE, binarization STE, centroid gradients).
#pragma once

#include <shrink/shrink.hpp>

#include "mlp.hpp"

namespace demo {

inline shrink::tensor_view<const float, 2> view(const matrix& m) {
  return {m.data(), shrink::shape<2>{m.rows(), m.cols()}};
}
inline shrink::tensor_view<float, 2> view(matrix& m) { return {m.data(), shrink::shape<2>{m.rows(), m.cols()}}; }

/// Pruning: pruned weights are zero in the forward pass and their gradients are masked, so they
/// stay zero through retraining (prune::apply on weights and on gradients).
struct mask_hook : weight_hook {
  shrink::prune::mask keep;
  explicit mask_hook(shrink::prune::mask m) : keep(std::move(m)) {}
  void forward(const matrix& w, matrix& w_eff) override { w_eff = w; }
  void backward(const matrix&, matrix& grad) override { shrink::prune::apply(keep, view(grad)); }
  void after_step(matrix& w) override { shrink::prune::apply(keep, view(w)); }
};

/// Symmetric per-output-channel fake quantisation (quant::fake_quantize) with the
/// straight-through estimator's mask on the gradient.
struct fake_quant_hook : weight_hook {
  shrink::quant::scheme scheme;
  std::vector<std::uint8_t> ste;  // 1 where the gradient passes
  explicit fake_quant_hook(shrink::quant::scheme s) : scheme(s) {}
  void forward(const matrix& w, matrix& w_eff) override {
    w_eff.resize(w.rows(), w.cols());
    ste.resize(static_cast<std::size_t>(w.size()));
    for (Eigen::Index r = 0; r < w.rows(); ++r) {
      const std::span<const float> row(w.data() + r * w.cols(), static_cast<std::size_t>(w.cols()));
      const auto [lo, hi] = std::minmax_element(row.begin(), row.end());
      const auto p = shrink::quant::compute_params(*lo, *hi, scheme);
      const auto fq = shrink::quant::fake_quantize(row, p, scheme);
      std::copy(fq.values.begin(), fq.values.end(), w_eff.data() + r * w.cols());
      std::copy(fq.mask.begin(), fq.mask.end(), ste.begin() + r * w.cols());
    }
  }
  void backward(const matrix&, matrix& grad) override {
    for (Eigen::Index i = 0; i < grad.size(); ++i) grad.data()[i] *= ste[static_cast<std::size_t>(i)];
  }
};

/// XNOR-Net / BWN weights: forward with α_r·sign(w) (binary::binarize, α = mean|w| per row);
/// backward through the hard-tanh straight-through estimator (binary::ste_gradient).
struct binary_hook : weight_hook {
  void forward(const matrix& w, matrix& w_eff) override {
    const auto bits = shrink::binary::binarize(view(w));
    const auto dense = bits.expand();
    w_eff = Eigen::Map<const matrix>(dense.data(), w.rows(), w.cols());
  }
  void backward(const matrix& w, matrix& grad) override {
    matrix in = grad;
    shrink::binary::ste_gradient({w.data(), static_cast<std::size_t>(w.size())},
                                 {in.data(), static_cast<std::size_t>(in.size())},
                                 {grad.data(), static_cast<std::size_t>(grad.size())});
  }
  void after_step(matrix& w) override { w = w.cwiseMax(-1.0f).cwiseMin(1.0f); }  // BinaryConnect's clip
};

/// Trained quantisation (Deep Compression): weights share centroids; the gradient of each
/// centroid is the sum of its weights' gradients (codebook::centroid_trainer), and only the
/// centroids move. Pruned weights keep the frozen zero code.
struct codebook_hook : weight_hook {
  shrink::codebook::centroid_trainer trainer;
  float lr;
  codebook_hook(shrink::codebook::indexed q, float learning_rate) : trainer(std::move(q)), lr(learning_rate) {}
  void forward(const matrix& w, matrix& w_eff) override {
    w_eff.resize(w.rows(), w.cols());
    trainer.expand_into(view(w_eff));
  }
  void backward(const matrix&, matrix& grad) override {
    trainer.step(view(grad), lr);
    grad.setZero();  // the master weights do not move; the centroids did
  }
};

}  // namespace demo
