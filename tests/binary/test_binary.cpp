// test_binary.cpp: binarization against closed forms: sign convention, bit layout, XNOR-Net scales, stochastic rule, STE, TWN, validation.
#include <catch2/catch.hpp>
#include <bit>
#include <cmath>
#include <limits>
#include <shrink/binary.hpp>
#include <support/random.hpp>

namespace b = shrink::binary;
using shrink::index_t;

namespace {
shrink::tensor<float, 2> matrix(index_t rows, index_t cols, const std::vector<float>& v) {
  shrink::tensor<float, 2> t(shrink::shape<2>{rows, cols});
  std::copy(v.begin(), v.end(), t.data());
  return t;
}
}  // namespace

TEST_CASE("binary: sign(0) is +1 and bit 1 means -1, element 0 in the LSB") {
  CHECK(b::sign(0.0f) == 1.0f);
  CHECK(b::sign(-0.0f) == 1.0f);
  CHECK(b::sign(-1e-30f) == -1.0f);
  CHECK(b::sign(3.0f) == 1.0f);
  auto w = matrix(1, 4, {-2.0f, 0.0f, 1.0f, -0.5f});
  const auto m = b::binarize(w, {b::scaling::none});
  // elements 0 and 3 are negative: bits 0 and 3 set, padding above bit 3 clear.
  CHECK(m.words()[0] == 0b1001u);
  CHECK(m.scale(0) == 1.0f);
}

TEST_CASE("binary: XNOR-Net alpha is the mean absolute value per row and expand gives exactly +-alpha") {
  auto w = matrix(2, 3, {1.0f, -2.0f, 3.0f, -0.5f, -0.5f, 2.0f});
  const auto m = b::binarize(w);
  CHECK(m.scale(0) == 2.0f);  // (1 + 2 + 3) / 3
  CHECK(m.scale(1) == 1.0f);  // (0.5 + 0.5 + 2) / 3
  const auto e = m.expand();
  const float expected[2][3] = {{2.0f, -2.0f, 2.0f}, {-1.0f, -1.0f, 1.0f}};
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) CHECK(e(r, c) == expected[r][c]);
  // alpha = mean|W| minimises ||W - alpha·sign(W)||^2 (Rastegari et al. eq. 4): a nudge either way is worse.
  auto err = [&](float a) {
    double s = 0;
    for (int c = 0; c < 3; ++c) s += std::pow(w(0, c) - a * b::sign(w(0, c)), 2);
    return s;
  };
  CHECK(err(m.scale(0)) < err(m.scale(0) * 1.01f));
  CHECK(err(m.scale(0)) < err(m.scale(0) * 0.99f));
}

TEST_CASE("binary: padding keeps dot = K - 2 popcount(a xor b) exact for K not a multiple of 64") {
  for (index_t k : {1, 5, 63, 64, 65, 127, 130, 1000}) {
    auto av = shrink::testing::normal_floats(static_cast<std::size_t>(k), 3 + k);
    auto bv = shrink::testing::normal_floats(static_cast<std::size_t>(k), 7 + k);
    const auto a = b::binarize(shrink::tensor_view<const float, 2>(av.data(), {1, k}));
    const auto c = b::binarize(shrink::tensor_view<const float, 2>(bv.data(), {1, k}));
    REQUIRE(a.words_per_row() == (k + 63) / 64);
    CHECK(a.padding_is_clear());
    int pop = 0;
    for (index_t j = 0; j < a.words_per_row(); ++j) pop += std::popcount(a.row_words(0)[j] ^ c.row_words(0)[j]);
    int dot = 0;
    for (index_t i = 0; i < k; ++i) dot += static_cast<int>(b::sign(av[static_cast<std::size_t>(i)]) * b::sign(bv[static_cast<std::size_t>(i)]));
    INFO("K = " << k);
    CHECK(dot == k - 2 * pop);
  }
}

TEST_CASE("binary: from_words rejects padding bits, wrong sizes and non-finite scales") {
  std::vector<std::uint64_t> words{0x1u, 0x3u};
  std::vector<float> scales{1.0f, 2.0f};
  const auto ok = b::bit_matrix::from_words(2, 2, words, scales);
  CHECK(ok.sign(1, 1) == -1.0f);
  CHECK(ok.expand()(1, 0) == -2.0f);
  words[1] = 0x7u;  // bit 2 lies beyond K = 2
  try {
    (void)b::bit_matrix::from_words(2, 2, words, scales);
    FAIL("expected an error");
  } catch (const shrink::error& e) {
    CHECK(e.code() == shrink::errc::format);
  }
  CHECK_THROWS_AS(b::bit_matrix::from_words(3, 2, words, scales), shrink::error);
  words[1] = 0x3u;
  scales[0] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(b::bit_matrix::from_words(2, 2, words, scales), shrink::error);
}

TEST_CASE("binary: NaN weights are a non_finite error") {
  auto w = matrix(1, 2, {1.0f, std::numeric_limits<float>::quiet_NaN()});
  try {
    (void)b::binarize(w);
    FAIL("expected an error");
  } catch (const shrink::error& e) {
    CHECK(e.code() == shrink::errc::non_finite);
  }
  CHECK_THROWS_AS(b::ternarize(w), shrink::error);
  CHECK_THROWS_AS(b::binarize_stochastic(w, 1), shrink::error);
}

TEST_CASE("binary: stochastic binarization follows the hard sigmoid and is reproducible from its seed") {
  CHECK(b::hard_sigmoid(-3.0f) == 0.0f);
  CHECK(b::hard_sigmoid(0.0f) == 0.5f);
  CHECK(b::hard_sigmoid(0.5f) == 0.75f);
  CHECK(b::hard_sigmoid(2.0f) == 1.0f);
  const index_t n = 20000;
  std::vector<float> v(static_cast<std::size_t>(4 * n));
  for (index_t i = 0; i < n; ++i) v[i] = 1.5f, v[n + i] = -1.0f, v[2 * n + i] = 0.0f, v[3 * n + i] = 0.5f;
  shrink::tensor_view<const float, 2> w(v.data(), {4, n});
  const auto s1 = b::binarize_stochastic(w, 42, {b::scaling::none});
  const auto s2 = b::binarize_stochastic(w, 42, {b::scaling::none});
  CHECK(std::equal(s1.words().begin(), s1.words().end(), s2.words().begin()));
  const auto s3 = b::binarize_stochastic(w, 43, {b::scaling::none});
  CHECK(!std::equal(s1.words().begin(), s1.words().end(), s3.words().begin()));
  auto plus_fraction = [&](index_t r) {
    index_t plus = 0;
    for (index_t c = 0; c < n; ++c) plus += s1.bit(r, c) ? 0 : 1;
    return static_cast<double>(plus) / static_cast<double>(n);
  };
  CHECK(plus_fraction(0) == 1.0);  // p = 1
  CHECK(plus_fraction(1) == 0.0);  // p = 0
  // Binomial with n = 20000: standard deviation <= 0.0036; allow 5 sigma.
  CHECK(std::abs(plus_fraction(2) - 0.5) < 0.018);
  CHECK(std::abs(plus_fraction(3) - 0.75) < 0.018);
}

TEST_CASE("binary: hard-tanh STE passes the gradient where |x| <= 1") {
  const std::vector<float> x{-2.0f, -1.0f, -0.3f, 0.0f, 1.0f, 1.0001f};
  const std::vector<float> g{1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  std::vector<float> out(6);
  b::ste_gradient(x, g, out);
  const std::vector<float> expected{0.0f, 2.0f, 3.0f, 4.0f, 5.0f, 0.0f};
  CHECK(out == expected);
  std::vector<float> short_out(5);
  CHECK_THROWS_AS(b::ste_gradient(x, g, short_out), shrink::error);
}

TEST_CASE("binary: activation scale map is the channel mean of |I| box-filtered with zero padding") {
  // |I| = 1 everywhere: K = (taps inside the image) / 9 for a 3x3 window with padding 1.
  shrink::tensor<float, 4> in(shrink::shape<4>{1, 4, 5, 3});
  for (index_t i = 0; i < in.size(); ++i) in.data()[i] = (i % 2) ? -1.0f : 1.0f;
  const auto k = b::activation_scale_map(in.view(), {3, 3, 1, 1, 1, 1});
  REQUIRE(k.shape() == shrink::shape<3>{1, 4, 5});
  CHECK(k(0, 0, 0) == Approx(4.0 / 9));
  CHECK(k(0, 0, 2) == Approx(6.0 / 9));
  CHECK(k(0, 1, 1) == Approx(1.0));
  CHECK(k(0, 3, 4) == Approx(4.0 / 9));
  // Channel means differ per pixel, stride 2, no padding: K(0,0) = mean of A over the 2x2 window.
  shrink::tensor<float, 4> in2(shrink::shape<4>{1, 2, 2, 2});
  const float vals[8] = {1, -3, 2, 2, -4, 0, 0, 6};  // A = 2, 2, 2, 3
  std::copy(vals, vals + 8, in2.data());
  const auto k2 = b::activation_scale_map(in2.view(), {2, 2, 2, 2, 0, 0});
  CHECK(k2(0, 0, 0) == Approx(9.0 / 4));
  CHECK_THROWS_AS(b::activation_scale_map(in2.view(), {2, 2, 0, 1, 0, 0}), shrink::error);  // stride 0
}

TEST_CASE("binary: BWN forward equals the float product with the expanded weights") {
  auto wv = shrink::testing::normal_floats(7 * 70, 11);
  auto xv = shrink::testing::normal_floats(3 * 70, 12);
  shrink::tensor_view<const float, 2> wt(wv.data(), {7, 70}), x(xv.data(), {3, 70});
  const auto w = b::binarize(wt);
  const std::vector<float> bias{1, 2, 3, 4, 5, 6, 7};
  const auto y = b::bwn_forward(w, x, bias);
  const auto we = w.expand();
  for (index_t n = 0; n < 3; ++n)
    for (index_t m = 0; m < 7; ++m) {
      double s = bias[static_cast<std::size_t>(m)];
      for (index_t k = 0; k < 70; ++k) s += static_cast<double>(we(m, k)) * x(n, k);
      CHECK(y(n, m) == Approx(s).epsilon(1e-6).margin(1e-5));
    }
  shrink::tensor_view<const float, 2> bad(xv.data(), {3, 69});
  CHECK_THROWS_AS(b::bwn_forward(w, bad), shrink::error);
}

TEST_CASE("binary: TWN threshold 0.7 mean|W| and alpha the mean of the kept magnitudes") {
  auto w = matrix(1, 4, {0.1f, -0.9f, 0.5f, 0.05f});  // mean|W| = 0.3875, delta = 0.27125
  const auto t = b::ternarize(w);
  CHECK(t.value(0, 0) == 0);
  CHECK(t.value(0, 1) == -1);
  CHECK(t.value(0, 2) == 1);
  CHECK(t.value(0, 3) == 0);
  CHECK(t.scale(0) == Approx(0.7));  // (0.9 + 0.5) / 2
  CHECK(t.nonzeros(0) == 2);
  CHECK(t.mask_words(0)[0] == 0b0110u);
  CHECK(t.sign_words(0)[0] == 0b0010u);
  const auto e = t.expand();
  CHECK(e(0, 1) == -t.scale(0));
  CHECK(e(0, 0) == 0.0f);
  auto zeros = matrix(1, 3, {0, 0, 0});
  CHECK(b::ternarize(zeros).scale(0) == 0.0f);
}

TEST_CASE("binary: ternary from_words rejects sign bits outside the mask and padding bits") {
  std::vector<std::uint64_t> mask{0b011}, sign{0b001};
  std::vector<float> s{0.5f};
  const auto t = b::ternary_matrix::from_words(1, 3, mask, sign, s);
  CHECK(t.value(0, 0) == -1);
  CHECK(t.value(0, 1) == 1);
  CHECK(t.value(0, 2) == 0);
  sign[0] = 0b100;
  CHECK_THROWS_AS(b::ternary_matrix::from_words(1, 3, mask, sign, s), shrink::error);
  sign[0] = 0, mask[0] = 0b1000;
  CHECK_THROWS_AS(b::ternary_matrix::from_words(1, 3, mask, sign, s), shrink::error);
}

TEST_CASE("binary: conv filter packs each tap's channels into words with alpha per output channel") {
  shrink::tensor<float, 4> w(shrink::shape<4>{2, 3, 3, 70});
  auto v = shrink::testing::normal_floats(static_cast<std::size_t>(w.size()), 5);
  std::copy(v.begin(), v.end(), w.data());
  const auto f = b::conv_filter::pack(w.view());
  CHECK(f.words_per_tap() == 2);
  CHECK(f.cols() == 9 * 70);
  for (index_t o = 0; o < 2; ++o) {
    double s = 0;
    for (index_t ky = 0; ky < 3; ++ky)
      for (index_t kx = 0; kx < 3; ++kx)
        for (index_t c = 0; c < 70; ++c) {
          s += std::abs(w(o, ky, kx, c));
          CHECK(f.sign(o, ky, kx, c) == b::sign(w(o, ky, kx, c)));
        }
    CHECK(f.scale(o) == Approx(s / (9 * 70)));
  }
}
