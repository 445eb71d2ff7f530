// test_tucker.cpp: Tucker-2 of conv kernels checked with a direct reference conv2d (stride, padding) written here.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <shrink/lowrank.hpp>
#include <shrink/metrics.hpp>
#include <vector>

#include "support/random.hpp"

namespace lr = shrink::lowrank;
using shrink::index_t;

namespace {

/// Direct NCHW conv2d (batch 1, groups 1, no bias), as PyTorch's F.conv2d:
/// y[o, p, q] = Σ_{i, h, w} k[o, i, h, w] · x[i, p·stride − pad + h, q·stride − pad + w], zero outside.
std::vector<double> conv2d(const std::vector<double>& x, index_t c_in, index_t height, index_t width,
                           const std::vector<double>& k, index_t c_out, index_t kh, index_t kw, index_t stride,
                           index_t pad, index_t& out_h, index_t& out_w) {
  out_h = (height + 2 * pad - kh) / stride + 1;
  out_w = (width + 2 * pad - kw) / stride + 1;
  std::vector<double> y(static_cast<std::size_t>(c_out * out_h * out_w), 0.0);
  for (index_t o = 0; o < c_out; ++o)
    for (index_t p = 0; p < out_h; ++p)
      for (index_t q = 0; q < out_w; ++q) {
        double s = 0;
        for (index_t i = 0; i < c_in; ++i)
          for (index_t h = 0; h < kh; ++h)
            for (index_t w = 0; w < kw; ++w) {
              const index_t r = p * stride - pad + h, c = q * stride - pad + w;
              if (r < 0 || r >= height || c < 0 || c >= width) continue;
              s += k[static_cast<std::size_t>(((o * c_in + i) * kh + h) * kw + w)] *
                   x[static_cast<std::size_t>((i * height + r) * width + c)];
            }
        y[static_cast<std::size_t>((o * out_h + p) * out_w + q)] = s;
      }
  return y;
}

template <std::size_t R>
std::vector<double> to_double(const shrink::tensor<float, R>& t) {
  return {t.span().begin(), t.span().end()};
}

shrink::tensor<float, 4> random_kernel(index_t o, index_t i, index_t kh, index_t kw, std::uint64_t seed) {
  shrink::tensor<float, 4> k(shrink::shape<4>{o, i, kh, kw});
  const auto v = shrink::testing::normal_floats(static_cast<std::size_t>(k.size()), seed);
  std::copy(v.begin(), v.end(), k.data());
  return k;
}

double rel_error(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += a[i] * a[i];
  }
  return std::sqrt(num / den);
}

}  // namespace

TEST_CASE("tucker2: 1x1, kxk, 1x1 convolutions reproduce the conv with the factorized kernel") {
  const index_t c_out = 12, c_in = 10, kh = 3, kw = 3, height = 9, width = 8;
  const auto kernel = random_kernel(c_out, c_in, kh, kw, 5);
  const auto x = to_double(shrink::tensor<float, 1>([&] {
    shrink::tensor<float, 1> t(shrink::shape<1>{c_in * height * width});
    const auto v = shrink::testing::normal_floats(static_cast<std::size_t>(t.size()), 6);
    std::copy(v.begin(), v.end(), t.data());
    return t;
  }()));
  for (int als : {0, 3}) {
    const auto t = lr::tucker2_decompose(kernel.view(), {.rank_out = 5, .rank_in = 4, .als_iterations = als});
    REQUIRE(t.first.extent(0) == 4);
    REQUIRE(t.first.extent(1) == c_in);
    REQUIRE(t.core.shape() == shrink::shape<4>{5, 4, 3, 3});
    REQUIRE(t.last.extent(0) == c_out);
    const auto expanded = to_double(t.expand());
    for (auto [stride, pad] : {std::pair<index_t, index_t>{1, 1}, {2, 1}, {1, 0}, {2, 2}}) {
      index_t oh = 0, ow = 0, h1 = 0, w1 = 0, h2 = 0, w2 = 0, h3 = 0, w3 = 0;
      const auto direct = conv2d(x, c_in, height, width, expanded, c_out, kh, kw, stride, pad, oh, ow);
      // The sequence: 1x1 (no padding, stride 1) -> kxk with the original stride/padding -> 1x1.
      const auto a = conv2d(x, c_in, height, width, to_double(t.first), 4, 1, 1, 1, 0, h1, w1);
      const auto b = conv2d(a, 4, h1, w1, to_double(t.core), 5, kh, kw, stride, pad, h2, w2);
      const auto y = conv2d(b, 5, h2, w2, to_double(t.last), c_out, 1, 1, 1, 0, h3, w3);
      REQUIRE(h3 == oh);
      REQUIRE(w3 == ow);
      CHECK(rel_error(direct, y) < 1e-6);
    }
  }
}

TEST_CASE("tucker2: full ranks reproduce the original kernel and its conv") {
  const auto kernel = random_kernel(6, 5, 3, 2, 9);
  const auto t = lr::tucker2_decompose(kernel.view(), {.rank_out = 6, .rank_in = 5, .als_iterations = 1});
  const auto k = to_double(kernel), e = to_double(t.expand());
  CHECK(rel_error(k, e) < 1e-6);
  std::vector<double> x(5 * 7 * 7);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37 * static_cast<double>(i));
  index_t oh = 0, ow = 0, h1 = 0, w1 = 0;
  const auto ref = conv2d(x, 5, 7, 7, k, 6, 3, 2, 1, 1, oh, ow);
  const auto a = conv2d(x, 5, 7, 7, to_double(t.first), 5, 1, 1, 1, 0, h1, w1);
  const auto b = conv2d(a, 5, 7, 7, to_double(t.core), 6, 3, 2, 1, 1, h1, w1);
  const auto y = conv2d(b, 6, h1, w1, to_double(t.last), 6, 1, 1, 1, 0, h1, w1);
  CHECK(rel_error(ref, y) < 1e-6);
}

TEST_CASE("tucker2: a kernel of exact multilinear rank is recovered, HOOI never loses energy") {
  // K = G ×0 P ×1 Q with G [3, 2, 3, 3]: multilinear rank (3, 2) in the channel modes.
  const index_t o_n = 8, i_n = 7, r0 = 3, r1 = 2;
  const auto g = shrink::testing::normal_floats(static_cast<std::size_t>(r0 * r1 * 9), 1);
  const auto p = shrink::testing::normal_floats(static_cast<std::size_t>(o_n * r0), 2);
  const auto q = shrink::testing::normal_floats(static_cast<std::size_t>(i_n * r1), 3);
  shrink::tensor<float, 4> k(shrink::shape<4>{o_n, i_n, 3, 3});
  for (index_t o = 0; o < o_n; ++o)
    for (index_t i = 0; i < i_n; ++i)
      for (index_t s = 0; s < 9; ++s) {
        double v = 0;
        for (index_t a = 0; a < r0; ++a)
          for (index_t b = 0; b < r1; ++b)
            v += double(p[static_cast<std::size_t>(o * r0 + a)]) * q[static_cast<std::size_t>(i * r1 + b)] *
                 g[static_cast<std::size_t>((a * r1 + b) * 9 + s)];
        k(o, i, s / 3, s % 3) = static_cast<float>(v);
      }
  const auto t = lr::tucker2_decompose(k.view(), {.rank_out = r0, .rank_in = r1});
  CHECK(rel_error(to_double(k), to_double(t.expand())) < 1e-5);
  // On a generic kernel HOOI refinements do not increase the error of the HOSVD start.
  const auto generic = random_kernel(8, 7, 3, 3, 4);
  const auto h0 = lr::tucker2_decompose(generic.view(), {.rank_out = 3, .rank_in = 3});
  const auto h5 = lr::tucker2_decompose(generic.view(), {.rank_out = 3, .rank_in = 3, .als_iterations = 5});
  const double e0 = rel_error(to_double(generic), to_double(h0.expand()));
  const double e5 = rel_error(to_double(generic), to_double(h5.expand()));
  CHECK(e5 <= e0 + 1e-7);
  CHECK(e0 > 0.1);  // a real truncation, so the comparison means something
  CHECK(h0.params() == 3u * 7u + 3u * 3u * 9u + 8u * 3u);
}

TEST_CASE("tucker2 bad input: ranks, iterations, NaN, empty") {
  auto k = random_kernel(4, 3, 3, 3, 2);
  CHECK_THROWS_AS(lr::tucker2_decompose(k.view(), {.rank_out = 0, .rank_in = 1}), shrink::error);
  CHECK_THROWS_AS(lr::tucker2_decompose(k.view(), {.rank_out = 5, .rank_in = 1}), shrink::error);
  CHECK_THROWS_AS(lr::tucker2_decompose(k.view(), {.rank_out = 2, .rank_in = 4}), shrink::error);
  CHECK_THROWS_AS(lr::tucker2_decompose(k.view(), {.rank_out = 2, .rank_in = 2, .als_iterations = -1}), shrink::error);
  k(1, 2, 0, 1) = std::numeric_limits<float>::quiet_NaN();
  try {
    (void)lr::tucker2_decompose(k.view(), {.rank_out = 2, .rank_in = 2});
    FAIL("expected an error");
  } catch (const shrink::error& e) {
    CHECK(e.code() == shrink::errc::non_finite);
  }
  shrink::tensor<float, 4> empty(shrink::shape<4>{0, 3, 3, 3});
  CHECK_THROWS_AS(lr::tucker2_decompose(empty.view(), {.rank_out = 1, .rank_in = 1}), shrink::error);
}
