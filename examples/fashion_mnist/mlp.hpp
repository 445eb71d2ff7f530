// mlp.hpp: a small fully-connected network with Adam, written with Eigen, whose training loop calls shrink's hooks.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "dataset.hpp"

namespace demo {

using vector = Eigen::VectorXf;

/// How a layer's trained ("master") weights become the weights the forward pass uses, and how
/// the gradient flows back: identity, pruning masks, fake quantisation with a straight-through
/// estimator, binarisation, shared centroids... Implemented with shrink in main.cpp.
struct weight_hook {
  virtual ~weight_hook() = default;
  /// w_eff = f(w).
  virtual void forward(const matrix& w, matrix& w_eff) { w_eff = w; }
  /// In: dL/dw_eff. Out: dL/dw (e.g. masked by the STE or the pruning mask).
  virtual void backward(const matrix& /*w*/, matrix& /*grad*/) {}
  /// After the optimiser step (e.g. re-apply a pruning mask).
  virtual void after_step(matrix& /*w*/) {}
};

enum class activation { relu, sign_ste, none };

struct layer {
  matrix w;  ///< [out, in], PyTorch's nn.Linear layout
  vector b;  ///< [out]
  activation act = activation::relu;
  std::shared_ptr<weight_hook> hook = std::make_shared<weight_hook>();
  // Adam moments
  matrix mw, vw;
  vector mb, vb;
  // forward cache
  matrix w_eff, input, pre;
};

struct network {
  std::vector<layer> layers;

  /// He-initialised layers of the given widths, hidden activation `hidden`, fixed seed.
  static network make(const std::vector<int>& widths, std::uint64_t seed, activation hidden = activation::relu) {
    network n;
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i + 1 < widths.size(); ++i) {
      layer l;
      std::normal_distribution<float> init(0.0f, std::sqrt(2.0f / static_cast<float>(widths[i])));
      l.w = matrix(widths[i + 1], widths[i]);
      for (Eigen::Index k = 0; k < l.w.size(); ++k) l.w.data()[k] = init(rng);
      l.b = vector::Zero(widths[i + 1]);
      l.act = i + 2 == widths.size() ? activation::none : hidden;
      n.layers.push_back(std::move(l));
    }
    return n;
  }

  /// Logits for a batch [n, in] (training mode caches what backward needs).
  matrix forward(const matrix& x) {
    matrix a = x;
    for (auto& l : layers) {
      l.hook->forward(l.w, l.w_eff);
      l.input = a;
      l.pre = (a * l.w_eff.transpose()).rowwise() + l.b.transpose();
      a = apply(l.act, l.pre);
    }
    return a;
  }

  /// Inference with the effective weights (no cache).
  matrix predict(const matrix& x) const {
    matrix a = x;
    for (const auto& l : layers) {
      matrix w_eff;
      l.hook->forward(l.w, w_eff);
      a = apply(l.act, (a * w_eff.transpose()).rowwise() + l.b.transpose());
    }
    return a;
  }

  static matrix apply(activation act, const matrix& pre) {
    switch (act) {
      case activation::relu: return pre.cwiseMax(0.0f);
      case activation::sign_ste: return pre.unaryExpr([](float v) { return v >= 0.0f ? 1.0f : -1.0f; });
      case activation::none: return pre;
    }
    return pre;
  }

  /// Backward from dL/dlogits, then one Adam step (lr, β = 0.9, 0.999).
  void backward_and_step(matrix grad, float lr, int step) {
    for (std::size_t i = layers.size(); i-- > 0;) {
      layer& l = layers[i];
      if (l.act == activation::relu) grad = grad.cwiseProduct((l.pre.array() > 0.0f).cast<float>().matrix());
      if (l.act == activation::sign_ste)  // hard-tanh straight-through estimator
        grad = grad.cwiseProduct((l.pre.array().abs() <= 1.0f).cast<float>().matrix());
      matrix gw = grad.transpose() * l.input;
      vector gb = grad.colwise().sum().transpose();
      if (i > 0) grad = grad * l.w_eff;
      l.hook->backward(l.w, gw);
      adam(l, gw, gb, lr, step);
      l.hook->after_step(l.w);
    }
  }

  static void adam(layer& l, const matrix& gw, const vector& gb, float lr, int step) {
    constexpr float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    if (l.mw.size() == 0) {
      l.mw = matrix::Zero(l.w.rows(), l.w.cols());
      l.vw = l.mw;
      l.mb = vector::Zero(l.b.size());
      l.vb = l.mb;
    }
    const float c1 = 1.0f - std::pow(b1, static_cast<float>(step)), c2 = 1.0f - std::pow(b2, static_cast<float>(step));
    l.mw = b1 * l.mw + (1 - b1) * gw;
    l.vw = b2 * l.vw + (1 - b2) * gw.cwiseAbs2();
    l.w.array() -= lr * (l.mw.array() / c1) / ((l.vw.array() / c2).sqrt() + eps);
    l.mb = b1 * l.mb + (1 - b1) * gb;
    l.vb = b2 * l.vb + (1 - b2) * gb.cwiseAbs2();
    l.b.array() -= lr * (l.mb.array() / c1) / ((l.vb.array() / c2).sqrt() + eps);
  }

  void reset_optimizer() {
    for (auto& l : layers) l.mw.resize(0, 0);
  }
};

/// Softmax cross-entropy gradient dL/dlogits for mean loss over the batch.
inline matrix cross_entropy_grad(const matrix& logits, const std::vector<std::int32_t>& labels) {
  matrix p = (logits.colwise() - logits.rowwise().maxCoeff()).array().exp();
  p = p.array().colwise() / p.rowwise().sum().array();
  for (Eigen::Index i = 0; i < p.rows(); ++i) p(i, labels[static_cast<std::size_t>(i)]) -= 1.0f;
  return p / static_cast<float>(p.rows());
}

/// Loss gradient: given the batch's logits, its labels and the images' row indices.
using loss_gradient = std::function<matrix(const matrix& logits, const std::vector<std::int32_t>& labels,
                                           const std::vector<Eigen::Index>& rows)>;

struct train_options {
  int epochs = 10;
  int batch = 128;
  float lr = 1e-3f;
  float lr_final = 1e-4f;  ///< cosine decay from lr to lr_final over the run
  std::uint64_t seed = 1;
};

/// Mini-batch training with shuffling (seeded) and cosine learning-rate decay.
inline void train(network& net, const split& data, const train_options& opt, const loss_gradient& loss = {}) {
  std::mt19937_64 rng(opt.seed);
  std::vector<Eigen::Index> order(static_cast<std::size_t>(data.images.rows()));
  std::iota(order.begin(), order.end(), 0);
  const int batches = static_cast<int>((order.size() + opt.batch - 1) / opt.batch);
  const int total = batches * opt.epochs;
  int step = 0;
  net.reset_optimizer();
  matrix x;
  std::vector<std::int32_t> y;
  std::vector<Eigen::Index> rows;
  for (int e = 0; e < opt.epochs; ++e) {
    std::shuffle(order.begin(), order.end(), rng);
    for (int bi = 0; bi < batches; ++bi) {
      const std::size_t begin = static_cast<std::size_t>(bi) * opt.batch;
      const std::size_t end = std::min(order.size(), begin + static_cast<std::size_t>(opt.batch));
      rows.assign(order.begin() + static_cast<std::ptrdiff_t>(begin), order.begin() + static_cast<std::ptrdiff_t>(end));
      x.resize(static_cast<Eigen::Index>(rows.size()), data.images.cols());
      y.resize(rows.size());
      for (std::size_t r = 0; r < rows.size(); ++r) {
        x.row(static_cast<Eigen::Index>(r)) = data.images.row(rows[r]);
        y[r] = data.labels[static_cast<std::size_t>(rows[r])];
      }
      const matrix logits = net.forward(x);
      const float t = static_cast<float>(step) / static_cast<float>(std::max(1, total - 1));
      const float lr = opt.lr_final + 0.5f * (opt.lr - opt.lr_final) * (1.0f + std::cos(3.14159265f * t));
      net.backward_and_step(loss ? loss(logits, y, rows) : cross_entropy_grad(logits, y), lr, ++step);
    }
  }
}

/// Fraction of rows whose arg-max equals the label.
inline double accuracy(const matrix& logits, const std::vector<std::int32_t>& labels) {
  std::size_t hit = 0;
  for (Eigen::Index i = 0; i < logits.rows(); ++i) {
    Eigen::Index arg = 0;
    logits.row(i).maxCoeff(&arg);
    hit += arg == labels[static_cast<std::size_t>(i)];
  }
  return static_cast<double>(hit) / static_cast<double>(logits.rows());
}

}  // namespace demo
