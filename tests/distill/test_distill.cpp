// test_distill.cpp: softmax with temperature against hand values, Hinton loss against closed forms and central finite differences.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <shrink/distill.hpp>
#include <vector>

#include "support/random.hpp"
#include <support/errors.hpp>

using shrink::testing::code_of;

namespace ds = shrink::distill;
using shrink::index_t;

namespace {

shrink::tensor<float, 2> make(index_t rows, index_t cols, const std::vector<float>& v) {
  shrink::tensor<float, 2> t(shrink::shape<2>{rows, cols});
  std::copy(v.begin(), v.end(), t.data());
  return t;
}

/// The loss written out independently of the library, per Hinton et al. 2015, in double.
double reference_loss(const shrink::tensor<float, 2>& s, const shrink::tensor<float, 2>& t,
                      const std::vector<std::int32_t>& y, double temp, double alpha) {
  const index_t batch = s.extent(0), classes = s.extent(1);
  double total = 0;
  for (index_t b = 0; b < batch; ++b) {
    auto soft = [&](const shrink::tensor<float, 2>& z, double tt) {
      std::vector<double> p(static_cast<std::size_t>(classes));
      double sum = 0;
      for (index_t c = 0; c < classes; ++c) sum += p[static_cast<std::size_t>(c)] = std::exp(z(b, c) / tt);
      for (double& v : p) v /= sum;
      return p;
    };
    const auto p = soft(t, temp), q = soft(s, temp), hard = soft(s, 1.0);
    double kl = 0;
    for (std::size_t c = 0; c < p.size(); ++c) kl += p[c] * std::log(p[c] / q[c]);
    total += alpha * temp * temp * kl - (1 - alpha) * std::log(hard[static_cast<std::size_t>(y[static_cast<std::size_t>(b)])]);
  }
  return total / static_cast<double>(batch);
}

}  // namespace

TEST_CASE("softmax: hand-computed values at T = 1 and T = 2, rows sum to 1") {
  const auto z = make(2, 3, {1, 2, 3, 3, 2, 1});
  const auto p1 = ds::softmax(z.view(), 1.0);
  CHECK(p1(0, 0) == Approx(0.09003057317038046));
  CHECK(p1(0, 1) == Approx(0.24472847105479767));
  CHECK(p1(0, 2) == Approx(0.6652409557748219));
  CHECK(p1(1, 0) == Approx(0.6652409557748219));
  const auto p2 = ds::softmax(z.view(), 2.0);
  CHECK(p2(0, 0) == Approx(0.1863237232258476));
  CHECK(p2(0, 1) == Approx(0.30719588571849843));
  CHECK(p2(0, 2) == Approx(0.506480391055654));
  const auto lp = ds::log_softmax(z.view(), 2.0);
  CHECK(lp(0, 2) == Approx(std::log(0.506480391055654)));
}

TEST_CASE("softmax: huge logits do not overflow (log-sum-exp)") {
  const auto z = make(1, 3, {1000.0f, 0.0f, -1000.0f});
  const auto p = ds::softmax(z.view(), 1.0);
  CHECK(p(0, 0) == 1.0f);
  CHECK(p(0, 1) == Approx(std::exp(-1000.0)).margin(1e-30));
  const auto lp = ds::log_softmax(z.view(), 1.0);
  CHECK(lp(0, 0) == Approx(0.0).margin(1e-12));
  CHECK(lp(0, 1) == Approx(-1000.0));
  CHECK(lp(0, 2) == Approx(-2000.0));
  const auto l = ds::hinton_loss(z.view(), z.view(), std::int32_t{0}, {.temperature = 1.0, .alpha = 0.5});
  CHECK(std::isfinite(l.loss));
  CHECK(l.loss == Approx(0.0).margin(1e-9));
}

TEST_CASE("hinton loss: KL is zero when student equals teacher, CE is the hard term") {
  const auto z = make(3, 4, shrink::testing::normal_floats(12, 3));
  CHECK(ds::kl_divergence(z.view(), z.view(), 3.0) == Approx(0.0).margin(1e-12));
  const std::vector<std::int32_t> y{0, 3, 1};
  const auto only_soft = ds::hinton_loss(z.view(), z.view(), y, {.temperature = 3.0, .alpha = 1.0});
  CHECK(only_soft.loss == Approx(0.0).margin(1e-12));
  for (float g : only_soft.gradient.span()) CHECK(g == Approx(0.0).margin(1e-7));
  const auto only_hard = ds::hinton_loss(z.view(), z.view(), y, {.temperature = 3.0, .alpha = 0.0});
  CHECK(only_hard.loss == Approx(ds::cross_entropy(z.view(), y)));
  // CE of uniform logits is log(classes).
  const auto flat = make(2, 4, std::vector<float>(8, 0.5f));
  CHECK(ds::cross_entropy(flat.view(), std::vector<std::int32_t>{2, 1}) == Approx(std::log(4.0)));
}

TEST_CASE("hinton loss: value matches the formula written out") {
  const auto s = make(4, 5, shrink::testing::normal_floats(20, 11, 0.0f, 2.0f));
  const auto t = make(4, 5, shrink::testing::normal_floats(20, 12, 0.0f, 2.0f));
  const std::vector<std::int32_t> y{4, 0, 2, 2};
  for (double temp : {1.0, 2.5, 8.0})
    for (double alpha : {0.0, 0.3, 1.0}) {
      const auto l = ds::hinton_loss(s.view(), t.view(), y, {.temperature = temp, .alpha = alpha});
      CHECK(l.loss == Approx(reference_loss(s, t, y, temp, alpha)).epsilon(1e-10));
    }
}

TEST_CASE("hinton loss: gradient matches central finite differences") {
  // Steps of 2^-12 are exact on these floats (|s| < 8), and the loss is accumulated in double,
  // so the difference quotient has only its O(h²) truncation error.
  auto s = make(3, 6, shrink::testing::normal_floats(18, 21, 0.0f, 1.5f));
  const auto t = make(3, 6, shrink::testing::normal_floats(18, 22, 0.0f, 1.5f));
  const std::vector<std::int32_t> y{5, 0, 3};
  for (double temp : {1.0, 4.0})
    for (double alpha : {0.0, 0.7, 1.0}) {
      const ds::hinton_options opt{.temperature = temp, .alpha = alpha};
      const auto l = ds::hinton_loss(s.view(), t.view(), y, opt);
      const float h = 0x1.0p-12f;
      for (index_t b = 0; b < 3; ++b)
        for (index_t c = 0; c < 6; ++c) {
          const float keep = s(b, c);
          s(b, c) = keep + h;
          const double up = ds::hinton_loss(s.view(), t.view(), y, opt).loss;
          s(b, c) = keep - h;
          const double down = ds::hinton_loss(s.view(), t.view(), y, opt).loss;
          s(b, c) = keep;
          const double numeric = (up - down) / (2.0 * static_cast<double>(h));
          CHECK(l.gradient(b, c) == Approx(numeric).margin(1e-6));
        }
    }
}

TEST_CASE("hint loss: MSE and its gradient") {
  auto s = make(2, 3, {1, 2, 3, 4, 5, 6});
  const auto t = make(2, 3, {1, 1, 1, 1, 1, 1});
  const auto l = ds::hint_loss(s.view(), t.view());
  CHECK(l.loss == Approx((0 + 1 + 4 + 9 + 16 + 25) / 6.0));
  CHECK(l.gradient(1, 2) == Approx(2.0 * 5.0 / 6.0));
  CHECK(l.gradient(0, 0) == 0.0f);
  const float h = 0x1.0p-10f;
  s(0, 1) += h;
  const double up = ds::hint_loss(s.view(), t.view()).loss;
  s(0, 1) -= 2 * h;
  const double down = ds::hint_loss(s.view(), t.view()).loss;
  CHECK(l.gradient(0, 1) == Approx((up - down) / (2.0 * h)).epsilon(1e-6));
}

TEST_CASE("distill bad input: temperature, alpha, batch sizes, labels, NaN") {
  using shrink::errc;
  const auto s = make(2, 3, {1, 2, 3, 4, 5, 6});
  const auto t = make(2, 3, {0, 1, 0, 1, 0, 1});
  const std::vector<std::int32_t> y{0, 2};
  CHECK(code_of([&] { (void)ds::hinton_loss(s.view(), t.view(), y, {.temperature = 0.0}); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)ds::hinton_loss(s.view(), t.view(), y, {.temperature = -1.0}); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)ds::softmax(s.view(), 0.0); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)ds::hinton_loss(s.view(), t.view(), y, {.alpha = -0.1}); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)ds::hinton_loss(s.view(), t.view(), y, {.alpha = 1.5}); }) == errc::invalid_argument);
  const std::vector<std::int32_t> three{0, 1, 2};
  CHECK(code_of([&] { (void)ds::hinton_loss(s.view(), t.view(), three); }) == errc::shape_mismatch);
  CHECK(code_of([&] { (void)ds::cross_entropy(s.view(), three); }) == errc::shape_mismatch);
  const std::vector<std::int32_t> out_of_range{0, 3}, negative{-1, 0};
  CHECK(code_of([&] { (void)ds::hinton_loss(s.view(), t.view(), out_of_range); }) == errc::out_of_range);
  CHECK(code_of([&] { (void)ds::hinton_loss(s.view(), t.view(), negative); }) == errc::out_of_range);
  const auto t_wide = make(2, 4, std::vector<float>(8, 0.0f));
  CHECK(code_of([&] { (void)ds::hinton_loss(s.view(), t_wide.view(), y); }) == errc::shape_mismatch);
  CHECK(code_of([&] { (void)ds::hint_loss(s.view(), t_wide.view()); }) == errc::shape_mismatch);
  auto nan = s;
  nan(1, 1) = std::numeric_limits<float>::quiet_NaN();
  CHECK(code_of([&] { (void)ds::hinton_loss(nan.view(), t.view(), y); }) == errc::non_finite);
  CHECK(code_of([&] { (void)ds::hinton_loss(t.view(), nan.view(), y); }) == errc::non_finite);
  CHECK(code_of([&] { (void)ds::hint_loss(nan.view(), t.view()); }) == errc::non_finite);
  CHECK(code_of([&] { (void)ds::hinton_loss(s.view(), t.view(), std::int32_t{1}); }) == errc::shape_mismatch);
}
