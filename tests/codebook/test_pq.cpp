// test_pq.cpp: product quantization: exact recovery of clustered data, ADC lookup tables, path agreement, bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "shrink/codebook.hpp"
#include "support/random.hpp"

using namespace shrink;
using namespace shrink::codebook;

namespace {
template <class Fn>
errc pq_code_of(Fn&& fn) {
  try {
    fn();
  } catch (const shrink::error& e) {
    return e.code();
  }
  return errc{};
}

double mse(const std::vector<float>& a, const tensor<float, 2>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += std::pow(static_cast<double>(a[i]) - b.span()[i], 2);
  return s / static_cast<double>(a.size());
}
}  // namespace

TEST_CASE("pq recovers data made of exactly k sub-vectors per sub-space") {
  // 96 rows of dim 6 = 3 sub-spaces of d = 2; each sub-vector is one of 4 fixed points, so
  // k = 4 k-means++ picks them all (every other point has D^2 = 0) and decoding is exact.
  const float pts[4][2] = {{0, 0}, {5, 1}, {-3, 4}, {2, -6}};
  std::vector<float> x(96 * 6);
  for (std::size_t r = 0; r < 96; ++r)
    for (std::size_t s = 0; s < 3; ++s) {
      const std::size_t j = (r + s * (r / 4)) % 4;
      x[r * 6 + s * 2] = pts[j][0] + static_cast<float>(s);
      x[r * 6 + s * 2 + 1] = pts[j][1];
    }
  const tensor_view<const float, 2> v(x.data(), shape<2>{96, 6});
  pq_options o;
  o.sub_dim = 2;
  o.k = 4;
  const auto pq = train_pq(v, o);
  CHECK(pq.m == 3);
  const auto codes = encode_pq(pq, v);
  const auto y = decode_pq(pq, codes);
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(y.span()[i] == x[i]);
}

TEST_CASE("pq training lowers the error below its k-means++ start and is deterministic") {
  const auto x = testing::normal_floats(4096 * 16, 8);
  const tensor_view<const float, 2> v(x.data(), shape<2>{4096, 16});
  pq_options o;
  o.sub_dim = 4;
  o.k = 32;
  o.iterations = 0;
  const auto start = train_pq(v, o);
  o.iterations = 10;
  const auto trained = train_pq(v, o, context{1});
  const double e0 = mse(x, decode_pq(start, encode_pq(start, v)));
  const double e1 = mse(x, decode_pq(trained, encode_pq(trained, v)));
  CHECK(e1 < e0);
  // Unit normal data, 4-D sub-spaces, 32 centroids: well below the variance (1.0).
  CHECK(e1 < 0.5);
  const auto again = train_pq(v, o, context{2});
  CHECK(std::equal(trained.centroids.begin(), trained.centroids.end(), again.centroids.begin()));
}

TEST_CASE("every encoded sub-vector takes its nearest centroid") {
  const auto x = testing::normal_floats(300 * 8, 12);
  const tensor_view<const float, 2> v(x.data(), shape<2>{300, 8});
  pq_options o;
  o.sub_dim = 4;
  o.k = 16;
  o.iterations = 5;
  const auto pq = train_pq(v, o);
  const auto codes = encode_pq(pq, v);
  for (index_t r = 0; r < 300; ++r)
    for (index_t s = 0; s < pq.m; ++s) {
      auto dist = [&](int j) {
        double d = 0;
        const auto c = pq.centroid(s, j);
        for (index_t t = 0; t < 4; ++t) d += std::pow(static_cast<double>(x[static_cast<std::size_t>(r * 8 + s * 4 + t)]) - c[static_cast<std::size_t>(t)], 2);
        return d;
      };
      const double chosen = dist(codes(r, s));
      for (int j = 0; j < pq.k; ++j) CHECK(chosen <= dist(j) + 1e-5);
    }
}

TEST_CASE("scalar and AVX2 assignment paths give identical codes") {
  const std::size_t n = 1000, d = 8, k = 64;
  const auto xt = testing::normal_floats(n * d, 21);
  const auto c = testing::normal_floats(k * d, 22);
  std::vector<float> m2c(k * d), cnorm(k);
  for (std::size_t j = 0; j < k; ++j) {
    float s = 0;
    for (std::size_t t = 0; t < d; ++t) {
      s = std::fma(c[j * d + t], c[j * d + t], s);
      m2c[j * d + t] = -2.0f * c[j * d + t];
    }
    cnorm[j] = s;
  }
  std::vector<std::uint8_t> a(n), b(n);
  codebook::detail::assign_scalar(xt.data(), n, d, m2c.data(), cnorm.data(), k, a.data(), 0, n);
  codebook::detail::assign_points(xt.data(), n, d, c, k, b.data());  // AVX2 where the CPU has it
  CHECK(a == b);
}

TEST_CASE("pq lookup tables hold sub-vector dot products and sum to the decoded dot product") {
  const auto w = testing::normal_floats(64 * 12, 5);
  const tensor_view<const float, 2> v(w.data(), shape<2>{64, 12});
  pq_options o;
  o.sub_dim = 3;
  o.k = 8;
  const auto pq = train_pq(v, o);
  const auto codes = encode_pq(pq, v);
  const auto dec = decode_pq(pq, codes);
  const auto x = testing::uniform_floats(12, 6);
  std::vector<float> lut(static_cast<std::size_t>(pq.m * pq.k));
  pq_lut(pq, x, lut);
  for (index_t s = 0; s < pq.m; ++s)
    for (int j = 0; j < pq.k; ++j) {
      double dot = 0;
      for (index_t t = 0; t < 3; ++t) dot += static_cast<double>(x[static_cast<std::size_t>(s * 3 + t)]) * pq.centroid(s, j)[static_cast<std::size_t>(t)];
      CHECK(lut[static_cast<std::size_t>(s * pq.k + j)] == Approx(dot).margin(1e-5));
    }
  for (index_t r = 0; r < 64; ++r) {
    double y = 0, ref = 0;
    for (index_t s = 0; s < pq.m; ++s) y += lut[static_cast<std::size_t>(s * pq.k + codes(r, s))];
    for (index_t t = 0; t < 12; ++t) ref += static_cast<double>(dec(r, t)) * x[static_cast<std::size_t>(t)];
    CHECK(y == Approx(ref).margin(1e-4));
  }
}

TEST_CASE("pq rejects bad input") {
  const auto x = testing::normal_floats(64 * 10, 1);
  const tensor_view<const float, 2> v(x.data(), shape<2>{64, 10});
  pq_options o;
  o.sub_dim = 4;  // does not divide 10
  o.k = 8;
  CHECK(pq_code_of([&] { (void)train_pq(v, o); }) == errc::shape_mismatch);
  o.sub_dim = 5;
  o.k = 100;  // more centroids than rows
  CHECK(pq_code_of([&] { (void)train_pq(v, o); }) == errc::invalid_argument);
  o.k = 1;
  CHECK(pq_code_of([&] { (void)train_pq(v, o); }) == errc::invalid_argument);
  o.k = 8;
  CHECK(pq_code_of([&] { (void)train_pq(tensor_view<const float, 2>(nullptr, shape<2>{0, 10}), o); }) ==
        errc::empty_input);
  auto bad = x;
  bad[77] = std::numeric_limits<float>::quiet_NaN();
  CHECK(pq_code_of([&] { (void)train_pq(tensor_view<const float, 2>(bad.data(), shape<2>{64, 10}), o); }) ==
        errc::non_finite);
  const auto pq = train_pq(v, o);
  const std::vector<float> other(64 * 5, 0.0f);
  CHECK(pq_code_of([&] { (void)encode_pq(pq, tensor_view<const float, 2>(other.data(), shape<2>{64, 5})); }) ==
        errc::shape_mismatch);
  std::vector<float> lut(3);
  CHECK(pq_code_of([&] { pq_lut(pq, std::span<const float>(x.data(), 10), lut); }) == errc::shape_mismatch);
}
