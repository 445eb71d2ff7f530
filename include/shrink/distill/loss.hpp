// loss.hpp: Hinton et al. (2015) distillation loss and its exact gradient w.r.t. the student logits; feature (hint) MSE loss.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"
#include "softmax.hpp"

namespace shrink::distill {

/// Options of the distillation loss: softening temperature T > 0 and soft-target weight α ∈ [0, 1].
struct hinton_options {
  double temperature = 4.0;
  double alpha = 0.9;
};

/// A loss value (batch mean, in double) and its gradient with respect to the student input.
struct loss_and_gradient {
  double loss = 0.0;
  tensor<float, 2> gradient;  ///< same shape as the student input
};

namespace detail {

inline void check_labels(std::span<const std::int32_t> labels, index_t batch, index_t classes, const char* who) {
  SHRINK_REQUIRE(static_cast<index_t>(labels.size()) == batch, errc::shape_mismatch, who, ": ", labels.size(),
                 " labels for a batch of ", batch, "; expected one label per row");
  for (std::size_t b = 0; b < labels.size(); ++b)
    SHRINK_REQUIRE(labels[b] >= 0 && labels[b] < classes, errc::out_of_range, who, ": label ", labels[b],
                   " of row ", b, " is outside [0, ", classes, ")");
}

inline void check_same_shape(const tensor_view<const float, 2>& s, const tensor_view<const float, 2>& t,
                             const char* who) {
  SHRINK_REQUIRE(s.shape() == t.shape(), errc::shape_mismatch, who, ": student ", s.shape(), " and teacher ",
                 t.shape(), " differ; expected the same [batch, classes]");
}

}  // namespace detail

/// Hinton distillation loss, mean over the batch of
///   L_b = α·T²·KL(softmax(t_b/T) ‖ softmax(s_b/T)) + (1 − α)·CE(softmax(s_b), y_b),
/// with gradient (docs/distillation.md)
///   ∂L/∂s_b = [α·T·(softmax(s_b/T) − softmax(t_b/T)) + (1 − α)·(softmax(s_b) − onehot(y_b))] / batch.
/// The T² keeps the soft term's gradient scale independent of T (its gradient is O(1/T²) otherwise).
/// Errors: T ≤ 0, α outside [0, 1], student/teacher shapes that differ, a label count that is
/// not the batch size, a label outside [0, classes), non-finite or empty logits.
inline loss_and_gradient hinton_loss(const tensor_view<const float, 2>& student, const tensor_view<const float, 2>& teacher,
                                     std::span<const std::int32_t> labels, const hinton_options& opt = {}) {
  const char* who = "hinton_loss";
  detail::check_temperature(opt.temperature, who);
  SHRINK_REQUIRE(opt.alpha >= 0.0 && opt.alpha <= 1.0, errc::invalid_argument, who, ": alpha must be in [0, 1], got ",
                 opt.alpha);
  detail::check_logits(student, who, "student logits");
  detail::check_logits(teacher, who, "teacher logits");
  detail::check_same_shape(student, teacher, who);
  const index_t batch = student.extent(0), classes = student.extent(1);
  detail::check_labels(labels, batch, classes, who);

  const double t = opt.temperature, alpha = opt.alpha, inv_batch = 1.0 / static_cast<double>(batch);
  loss_and_gradient out;
  out.gradient = tensor<float, 2>(student.shape());
  std::vector<double> log_q, log_p, log_s;  // student soft, teacher soft, student at T = 1
  double total = 0.0;
  for (index_t b = 0; b < batch; ++b) {
    detail::log_softmax_row(student, b, t, log_q);
    detail::log_softmax_row(teacher, b, t, log_p);
    detail::log_softmax_row(student, b, 1.0, log_s);
    const auto y = static_cast<std::size_t>(labels[static_cast<std::size_t>(b)]);
    double kl = 0.0;
    for (index_t c = 0; c < classes; ++c) {
      const auto k = static_cast<std::size_t>(c);
      const double p = std::exp(log_p[k]);
      kl += p * (log_p[k] - log_q[k]);  // p = 0 contributes 0: log p is finite (log-sum-exp)
      const double g = alpha * t * (std::exp(log_q[k]) - p) + (1.0 - alpha) * (std::exp(log_s[k]) - (k == y ? 1.0 : 0.0));
      out.gradient(b, c) = static_cast<float>(g * inv_batch);
    }
    total += alpha * t * t * kl + (1.0 - alpha) * (-log_s[y]);
  }
  out.loss = total * inv_batch;
  return out;
}

/// Batch of one with a single integer label.
inline loss_and_gradient hinton_loss(const tensor_view<const float, 2>& student, const tensor_view<const float, 2>& teacher,
                                     std::int32_t label, const hinton_options& opt = {}) {
  return hinton_loss(student, teacher, std::span<const std::int32_t>(&label, 1), opt);
}

/// Mean over the batch of KL(softmax(t/T) ‖ softmax(s/T)) (no T² factor). 0 when s = t.
inline double kl_divergence(const tensor_view<const float, 2>& student, const tensor_view<const float, 2>& teacher,
                            double temperature = 1.0) {
  const char* who = "kl_divergence";
  detail::check_temperature(temperature, who);
  detail::check_logits(student, who, "student logits");
  detail::check_logits(teacher, who, "teacher logits");
  detail::check_same_shape(student, teacher, who);
  std::vector<double> log_q, log_p;
  double total = 0.0;
  for (index_t b = 0; b < student.extent(0); ++b) {
    detail::log_softmax_row(student, b, temperature, log_q);
    detail::log_softmax_row(teacher, b, temperature, log_p);
    for (std::size_t k = 0; k < log_p.size(); ++k) total += std::exp(log_p[k]) * (log_p[k] - log_q[k]);
  }
  return total / static_cast<double>(student.extent(0));
}

/// Mean over the batch of −log softmax(s)_y.
inline double cross_entropy(const tensor_view<const float, 2>& logits, std::span<const std::int32_t> labels) {
  const char* who = "cross_entropy";
  detail::check_logits(logits, who);
  detail::check_labels(labels, logits.extent(0), logits.extent(1), who);
  std::vector<double> log_s;
  double total = 0.0;
  for (index_t b = 0; b < logits.extent(0); ++b) {
    detail::log_softmax_row(logits, b, 1.0, log_s);
    total -= log_s[static_cast<std::size_t>(labels[static_cast<std::size_t>(b)])];
  }
  return total / static_cast<double>(logits.extent(0));
}

/// Feature (hint) loss of FitNets (Romero et al. 2015): mean over ALL elements of (s − t)²,
/// gradient 2·(s − t) / (batch·features) with respect to the student features.
inline loss_and_gradient hint_loss(const tensor_view<const float, 2>& student, const tensor_view<const float, 2>& teacher) {
  const char* who = "hint_loss";
  detail::check_logits(student, who, "student features");
  detail::check_logits(teacher, who, "teacher features");
  SHRINK_REQUIRE(student.shape() == teacher.shape(), errc::shape_mismatch, who, ": student ", student.shape(),
                 " and teacher ", teacher.shape(), " differ; expected the same shape");
  loss_and_gradient out;
  out.gradient = tensor<float, 2>(student.shape());
  const double count = static_cast<double>(student.size());
  double total = 0.0;
  for (index_t b = 0; b < student.extent(0); ++b)
    for (index_t f = 0; f < student.extent(1); ++f) {
      const double d = static_cast<double>(student(b, f)) - teacher(b, f);
      total += d * d;
      out.gradient(b, f) = static_cast<float>(2.0 * d / count);
    }
  out.loss = total / count;
  return out;
}

}  // namespace shrink::distill
