// finetune.hpp: centroid_trainer, Deep Compression's "trained quantization": shared-weight gradients summed per centroid.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "indexed.hpp"

namespace shrink::codebook {

/// Plugs into a training loop after `cluster`: it keeps the assignments fixed and trains the
/// centroids. Han et al. 2016, eq. (3): dL/dC_k = sum over weights W_ij with index k of
/// dL/dW_ij; the step is C_k -= lr * dL/dC_k. The reserved zero code (entry 0 of a codebook
/// whose weights had zeros) is never updated, so pruned weights stay exactly zero.
///
///   centroid_trainer t(cluster(w, opts));
///   for (...) { t.expand_into(w_view); grad = backward(w_view); t.step(grad, lr); }
///   indexed trained = t.result();
class centroid_trainer {
 public:
  explicit centroid_trainer(indexed q) : q_(std::move(q)), codes_(q_.indices()) {
    const std::size_t k = static_cast<std::size_t>(q_.k());
    frozen_.assign(q_.centroids().size(), 0);
    // A codebook has a zero code iff some weight of it uses index 0 and entry 0 is 0.0f.
    for (index_t r = 0; r < q_.rows(); ++r) {
      const std::size_t book = q_.granularity_kind() == granularity::per_row ? static_cast<std::size_t>(r) : 0;
      for (index_t c = 0; c < q_.cols(); ++c)
        if (codes_[static_cast<std::size_t>(r * q_.cols() + c)] == 0 && q_.centroids()[book * k] == 0.0f)
          frozen_[book * k] = 1;
    }
  }

  /// Per-entry gradient (codebooks()*k values): sums of dL/dW over the weights sharing each
  /// entry; 0 for the frozen zero code. `grad` has the weights' shape.
  [[nodiscard]] std::vector<float> gradient(tensor_view<const float, 2> grad) const {
    SHRINK_REQUIRE(grad.extent(0) == q_.rows() && grad.extent(1) == q_.cols(), errc::shape_mismatch,
                   "centroid_trainer::gradient: expected shape (", q_.rows(), ", ", q_.cols(), "), got ", grad.shape());
    const std::size_t k = static_cast<std::size_t>(q_.k());
    std::vector<double> sum(q_.centroids().size(), 0.0);
    for (index_t r = 0; r < q_.rows(); ++r) {
      const std::size_t base = q_.granularity_kind() == granularity::per_row ? static_cast<std::size_t>(r) * k : 0;
      for (index_t c = 0; c < q_.cols(); ++c) {
        const float g = grad(r, c);
        SHRINK_REQUIRE(std::isfinite(g), errc::non_finite, "centroid_trainer::gradient: gradient at (", r, ", ", c,
                       ") is ", g);
        sum[base + codes_[static_cast<std::size_t>(r * q_.cols() + c)]] += g;
      }
    }
    std::vector<float> out(sum.size());
    for (std::size_t i = 0; i < sum.size(); ++i) out[i] = frozen_[i] ? 0.0f : static_cast<float>(sum[i]);
    return out;
  }

  /// One SGD step on the centroids: C -= lr * gradient(grad). Returns the gradient used.
  std::vector<float> step(tensor_view<const float, 2> grad, float lr) {
    SHRINK_REQUIRE(std::isfinite(lr), errc::non_finite, "centroid_trainer::step: lr is ", lr);
    auto g = gradient(grad);
    auto c = q_.centroids_mutable();
    for (std::size_t i = 0; i < c.size(); ++i) c[i] -= lr * g[i];
    return g;
  }

  [[nodiscard]] std::span<const float> centroids() const noexcept { return q_.centroids(); }
  [[nodiscard]] std::span<float> centroids() noexcept { return q_.centroids_mutable(); }
  /// The shared weights with the current centroids (re-expansion for the next forward pass).
  void expand_into(tensor_view<float, 2> out) const { q_.expand_into(out); }
  [[nodiscard]] tensor<float, 2> expand() const { return q_.expand(); }
  /// The trained packed form (same indices, trained centroids).
  [[nodiscard]] const indexed& result() const noexcept { return q_; }

 private:
  indexed q_;
  std::vector<std::uint8_t> codes_;
  std::vector<char> frozen_;
};

}  // namespace shrink::codebook
