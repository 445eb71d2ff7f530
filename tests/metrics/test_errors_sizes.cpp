// test_errors_sizes.cpp: MSE, SQNR, max error and relative Frobenius error on hand-computed vectors; size reports.
#include <catch2/catch.hpp>
#include <cmath>
#include <shrink/metrics.hpp>
#include <vector>

namespace m = shrink::metrics;

TEST_CASE("error metrics: closed forms on a hand-computed pair") {
  std::vector<float> x{3, 4, 0, 0}, y{3, 3, 1, 0};  // differences 0, 1, -1, 0
  CHECK(m::squared_error(x, y) == 2.0);
  CHECK(m::mse(x, y) == 0.5);
  CHECK(m::max_abs_error(x, y) == 1.0);
  CHECK(m::sqnr_db(x, y) == Approx(10.0 * std::log10(25.0 / 2.0)));
  CHECK(m::relative_frobenius_error(x, y) == Approx(std::sqrt(2.0) / 5.0));
  CHECK(std::isinf(m::sqnr_db(x, x)));
  std::vector<float> zeros(4, 0.0f);
  CHECK(m::relative_frobenius_error(zeros, zeros) == 0.0);
}

TEST_CASE("error metrics: mismatched or empty operands are errors") {
  std::vector<float> a(3), b(4), e;
  CHECK_THROWS_AS(m::mse(a, b), shrink::error);
  CHECK_THROWS_AS(m::mse(e, e), shrink::error);
}

TEST_CASE("size_report: ratio and bits per weight") {
  auto r = m::fp32_size_report(1000, 250);  // 8:1 -> 2 bits per weight... 250 bytes = 2000 bits
  CHECK(r.bytes_before == 4000);
  CHECK(r.ratio() == 16.0);
  CHECK(r.bits_per_weight() == 2.0);
  r += m::fp32_size_report(1000, 1000);
  CHECK(r.ratio() == Approx(8000.0 / 1250.0));
}
