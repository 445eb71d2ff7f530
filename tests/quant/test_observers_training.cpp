// test_observers_training.cpp: observers, fake quant + STE + LSQ, power-of-two levels, fp16/bf16, batch-norm folding.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <shrink/quant.hpp>
#include <vector>

#include "support/random.hpp"
#include <support/errors.hpp>

using shrink::testing::code_of;

using namespace shrink;
using quant::scheme;

namespace {
tensor_view<const float, 2> rows_of(const std::vector<float>& v, index_t rows) {
  return {v.data(), shape<2>{rows, static_cast<index_t>(v.size()) / rows}};
}
}  // namespace

TEST_CASE("min-max observer over batches gives PyTorch's quint8 parameters") {
  quant::min_max_observer obs;
  const std::vector<float> b1{-1.0f, 0.5f}, b2{2.0f, -0.5f};
  obs.observe(b1);
  obs.observe(b2);
  const auto r = obs.ranges();
  REQUIRE(r.size() == 1);
  CHECK(r[0].min == -1.0f);
  CHECK(r[0].max == 2.0f);
  const auto p = quant::compute_params(obs, quant::k_quint8_affine);
  CHECK(p[0].scale == 3.0f / 255.0f);
  CHECK(p[0].zero_point == 85);  // 0 - round(-1 / (3/255)) = 85, hand-checked
}

TEST_CASE("per-channel min-max observer and qint8 symmetric scales") {
  quant::min_max_observer obs(2);
  const std::vector<float> x{1.0f, -2.55f, 0.5f, 0.25f, 0.0f, -0.125f};
  obs.observe(rows_of(x, 2));
  const auto p = quant::compute_params(obs, quant::k_qint8_symmetric);
  REQUIRE(p.size() == 2);
  CHECK(p[0].scale == 2.55f / 127.5f);  // max(|min|, |max|) / ((127 - -128) / 2)
  CHECK(p[1].scale == 0.25f / 127.5f);
  CHECK(p[0].zero_point == 0);
  CHECK(code_of([&] { obs.observe(rows_of(x, 3)); }) == errc::shape_mismatch);
}

TEST_CASE("moving-average min-max observer uses PyTorch's update") {
  quant::moving_average_min_max_observer obs;  // averaging constant 0.01
  const std::vector<float> b1{-1.0f, 1.0f}, b2{-3.0f, 2.0f};
  obs.observe(b1);
  CHECK(obs.ranges()[0].min == -1.0f);  // the first batch sets the range
  obs.observe(b2);
  const float c = 0.01f;
  CHECK(obs.ranges()[0].min == -1.0f + c * (-3.0f - -1.0f));
  CHECK(obs.ranges()[0].max == 1.0f + c * (2.0f - 1.0f));
  CHECK(code_of([] { quant::moving_average_min_max_observer bad(0.0f); }) == errc::invalid_argument);
}

TEST_CASE("histogram grows with later batches and keeps every count") {
  quant::abs_histogram h(2048);
  const auto a = testing::uniform_floats(1000, 1, -1.0f, 1.0f);
  const auto b = testing::uniform_floats(500, 2, -2.0f, 2.0f);
  h.add(a);
  const double width = h.width();
  h.add(b);
  CHECK(h.width() == width);
  double total = 0.0;
  for (double v : h.counts()) total += v;
  CHECK(total == 1500.0);
  float amax_b = 0.0f;
  for (float v : b) amax_b = std::max(amax_b, std::abs(v));
  CHECK(static_cast<double>(h.counts().size()) == std::ceil(amax_b / width));
  // A later batch far outside the first one's bins is an error, not a gigantic allocation.
  const std::vector<float> huge{1e30f};
  CHECK(code_of([&] { h.add(huge); }) == errc::out_of_range);
}

TEST_CASE("percentile observer clips at the percentile of |x|") {
  std::vector<float> x;
  for (int i = 1; i <= 1000; ++i) x.push_back(static_cast<float>(i) / 1000.0f * (i % 2 ? 1.0f : -1.0f));
  quant::percentile_observer obs(50.0);
  obs.observe(x);
  const auto r = obs.ranges()[0];
  CHECK(r.max == Approx(0.5).margin(2.0 / 2048));
  CHECK(r.min == Approx(-0.5).margin(2.0 / 2048));
  quant::percentile_observer all(100.0);
  all.observe(x);
  // The largest |x| is 1.0 (negative); the positive side is bounded by the data (0.999).
  CHECK(all.ranges()[0].min == Approx(-1.0).margin(1.5 / 2048));
  CHECK(all.ranges()[0].max == 0.999f);  // left edge of the last bin, as pytorch-quantization
}

TEST_CASE("entropy and MSE observers clip Gaussian tails but keep a uniform range") {
  const auto x = testing::normal_floats(200000, 7);
  float max_abs = 0.0f;
  for (float v : x) max_abs = std::max(max_abs, std::abs(v));
  quant::entropy_observer kl;
  quant::mse_observer mse;
  kl.observe(x);
  mse.observe(x);
  const float kl_amax = kl.ranges()[0].max, mse_amax = mse.ranges()[0].max;
  INFO("max |x| " << max_abs << " KL amax " << kl_amax << " MSE amax " << mse_amax);
  CHECK(kl_amax > 2.0f);
  CHECK(kl_amax < 0.95f * max_abs);
  CHECK(mse_amax > 2.0f);
  CHECK(mse_amax < 0.95f * max_abs);
  // TensorRT's candidates start at bin 128 of 2048: amax is never below 128/2048 of max|x|.
  auto y = x;
  y[123] = 100.0f;
  quant::entropy_observer kl_outlier;
  kl_outlier.observe(y);
  CHECK(kl_outlier.ranges()[0].max >= 128.0f / 2048.0f * 100.0f - 1e-4f);
  // A uniform distribution has nothing worth clipping.
  const auto u = testing::uniform_floats(200000, 8, -1.0f, 1.0f);
  quant::entropy_observer klu;
  quant::mse_observer mseu;
  klu.observe(u);
  mseu.observe(u);
  CHECK(klu.ranges()[0].max > 0.9f);
  CHECK(mseu.ranges()[0].max > 0.9f);
  // Per channel: each channel gets its own threshold.
  quant::entropy_observer per(8, 2);
  std::vector<float> two(2 * 4096);
  const auto n = testing::normal_floats(4096, 9);
  for (std::size_t i = 0; i < 4096; ++i) {
    two[i] = n[i];
    two[4096 + i] = 10.0f * n[i];
  }
  per.observe(rows_of(two, 2));
  const auto rr = per.ranges();
  CHECK(rr[1].max == Approx(10.0f * rr[0].max).epsilon(0.05));
}

TEST_CASE("entropy search matches a hand-computed tiny case") {
  // 4 bins with counts [0, 4, 0, 2] (bin 0 is replaced by bin 1 -> [4, 4, 0, 2]); 2 levels,
  // candidates i = 2, 3, 4:
  //  i=2: P = [4, 4+0+2] = [4, 6]; Q merges bins {0},{1} -> [4, 4]; KL = .4 ln(.4/.5)+.6 ln(.6/.5) > 0
  //  i=3: P = [4, 4, 2]; Q: bins {0},{1,2}: bin 2 empty -> Q = [4, 4, 0] but P[2] = 2 -> KL = inf
  //  i=4: P = [4, 4, 0, 2]; Q: {0,1} -> 4 each, {2,3} -> only bin 3 non-empty -> [4, 4, 0, 2]; KL = 0
  // so amax = 4 * width.
  quant::abs_histogram h(4);
  const std::vector<float> x{0.3f, 0.3f, 0.3f, 0.3f, 0.99f, 0.99f, 1.0f};  // width 0.25: bins 1,1,1,1,3,3,3
  h.add(x);
  REQUIRE(h.counts() == std::vector<double>{0, 4, 0, 3});
  CHECK(h.entropy_amax(2, 2) == Approx(1.0f));
}

TEST_CASE("bad input to observers") {
  quant::min_max_observer obs;
  CHECK(code_of([&] { (void)obs.ranges(); }) == errc::empty_input);
  const std::vector<float> empty;
  CHECK(code_of([&] { obs.observe(empty); }) == errc::empty_input);
  const std::vector<float> bad{1.0f, 2.0f, NAN};
  try {
    obs.observe(bad);
    FAIL("no error");
  } catch (const shrink::error& e) {
    CHECK(e.code() == errc::non_finite);
    CHECK_THAT(e.what(), Catch::Contains("element 2"));
  }
  CHECK(code_of([] { quant::entropy_observer e(9); }) == errc::invalid_argument);
  CHECK(code_of([] { quant::min_max_observer m(0); }) == errc::invalid_argument);
  CHECK(code_of([] { quant::percentile_observer p(0.0); }) == errc::invalid_argument);
}

TEST_CASE("fake quantization values and the straight-through mask") {
  const scheme s = quant::k_qint8_symmetric;
  const quant::params p{0.5f, 0};
  const std::vector<float> x{0.25f, 0.75f, -0.25f, 63.5f, 63.75f, 64.0f, -64.0f, -64.25f, -100.0f};
  const auto r = quant::fake_quantize(x, p, s);
  // round(x / 0.5): 0.5->0, 1.5->2, -0.5->0, 127, 127.5->128 (out), 128 (out), -128, -128.5->-128 (tie even, in), -200 (out)
  CHECK(r.values == std::vector<float>{0.0f, 1.0f, 0.0f, 63.5f, 63.5f, 63.5f, -64.0f, -64.0f, -64.0f});
  CHECK(r.mask == std::vector<std::uint8_t>{1, 1, 1, 1, 0, 0, 1, 1, 0});
  const std::vector<float> g(x.size(), 2.0f);
  CHECK(quant::fake_quantize_backward(g, r.mask) == std::vector<float>{2, 2, 2, 2, 0, 0, 2, 2, 0});
  CHECK(code_of([&] { (void)quant::fake_quantize(x, {0.0f, 0}, s); }) == errc::invalid_argument);
  const std::vector<float> nan{NAN};
  CHECK(code_of([&] { (void)quant::fake_quantize(nan, p, s); }) == errc::non_finite);
}

TEST_CASE("LSQ step-size gradient follows Esser et al. 2020") {
  const std::vector<float> x{0.3f, 1.6f, 200.0f, -300.0f}, g{1.0f, 1.0f, 1.0f, 1.0f};
  // d/ds: round(.3)-.3 = -.3; round(1.6)-1.6 = .4; clipped high -> Qp = 127; clipped low -> -Qn = -128.
  const double expected = (-0.3 + 0.4 + 127.0 - 128.0) / std::sqrt(4.0 * 127.0);
  CHECK(quant::lsq_scale_gradient(x, g, {1.0f, 0}, quant::k_qint8_symmetric) == Approx(expected).epsilon(1e-6));
}

TEST_CASE("power-of-two levels") {
  const std::vector<float> x{0.3f, -1.0f, 0.75f, 6.0f, 0.0f, 0.05f, 0.07f, -0.0625f};
  const auto q = quant::quantize_power_of_two(x, 4);  // 7 magnitudes: 2^-3 .. 2^3 (6 rounds up to 8)
  CHECK(q.max_exponent == 3);
  CHECK(q.dequantize() == std::vector<float>{0.25f, -1.0f, 1.0f, 8.0f, 0.0f, 0.0f, 0.125f, -0.125f});
  CHECK(code_of([&] { (void)quant::quantize_power_of_two(x, 1); }) == errc::invalid_argument);
  const std::vector<float> zeros(3, 0.0f);
  CHECK(quant::quantize_power_of_two(zeros, 3).dequantize() == zeros);
}

namespace {
#if SHRINK_HAS_X86_PATHS
__attribute__((target("f16c"))) std::uint16_t hardware_half(float f) {
  return static_cast<std::uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
#endif
// Independent bf16 RNE: pick the nearer of the two truncation neighbours, ties to the even one.
std::uint16_t bf16_oracle(float f) {
  const auto bits = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t lo = bits & 0xffff0000u, hi = lo + 0x10000u;
  const std::uint32_t rest = bits & 0xffffu;
  if (rest < 0x8000u) return static_cast<std::uint16_t>(lo >> 16);
  if (rest > 0x8000u) return static_cast<std::uint16_t>(hi >> 16);
  return static_cast<std::uint16_t>(((lo >> 16) & 1u) ? hi >> 16 : lo >> 16);
}
}  // namespace

TEST_CASE("fp16 conversion: exact round trip, ties to even, overflow, subnormals, NaN") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = quant::half_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      REQUIRE(std::isnan(quant::half_to_float(quant::float_to_half(f))));
      continue;
    }
    REQUIRE(quant::float_to_half(f) == h);
  }
  CHECK(quant::half_to_float(0x3c00) == 1.0f);
  CHECK(quant::half_to_float(0x0001) == 0x1p-24f);
  CHECK(quant::half_to_float(0x7bff) == 65504.0f);
  CHECK(quant::half_to_float(0xfc00) == -INFINITY);
  CHECK(quant::float_to_half(1.0f + 0x1p-11f) == 0x3c00);         // tie -> even (1.0)
  CHECK(quant::float_to_half(1.0f + 3 * 0x1p-11f) == 0x3c02);     // tie -> even (1 + 2^-9)
  CHECK(quant::float_to_half(65519.0f) == 0x7bff);
  CHECK(quant::float_to_half(65520.0f) == 0x7c00);                // overflow to Inf
  CHECK(quant::float_to_half(0x1p-25f) == 0x0000);                // tie between 0 and 2^-24 -> 0
  CHECK(quant::float_to_half(3 * 0x1p-25f) == 0x0002);            // tie -> even
  CHECK(quant::float_to_half(-INFINITY) == 0xfc00);
  CHECK(quant::float_to_half(1e-40f) == 0x0000);                  // fp32 subnormal -> 0
  CHECK((quant::float_to_half(NAN) & 0x7c00) == 0x7c00);
  CHECK((quant::float_to_half(NAN) & 0x03ff) != 0);
#if SHRINK_HAS_X86_PATHS
  if (kernels::available(kernels::isa::avx2)) {  // F16C is part of the avx2 path's features
    std::mt19937 rng(3);
    for (int i = 0; i < 1000000; ++i) {
      std::uint32_t bits = rng();
      if (i % 2) bits = (bits & 0x807fffffu) | ((100u + bits % 60u) << 23);  // half the draws near the half range
      const float f = std::bit_cast<float>(bits);
      if (std::isnan(f)) continue;
      REQUIRE(quant::float_to_half(f) == hardware_half(f));
    }
  }
#endif
  std::vector<float> in{1.5f, -2.0f}, back(2);
  std::vector<std::uint16_t> h(2);
  quant::float_to_half(in, h);
  quant::half_to_float(h, back);
  CHECK(back == in);
  CHECK(code_of([&] { quant::float_to_half(in, std::span<std::uint16_t>(h.data(), 1)); }) == errc::shape_mismatch);
}

TEST_CASE("bf16 conversion: ties to even, NaN and Inf kept") {
  CHECK(quant::float_to_bfloat16(1.0f + 0x1p-8f) == 0x3f80);
  CHECK(quant::float_to_bfloat16(1.0f + 3 * 0x1p-8f) == 0x3f82);
  CHECK(quant::float_to_bfloat16(INFINITY) == 0x7f80);
  CHECK(std::isnan(quant::bfloat16_to_float(quant::float_to_bfloat16(std::bit_cast<float>(0x7f800001u)))));
  CHECK(quant::bfloat16_to_float(0x3f80) == 1.0f);
  std::mt19937 rng(4);
  for (int i = 0; i < 1000000; ++i) {
    const float f = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
    if (std::isnan(f)) continue;
    REQUIRE(quant::float_to_bfloat16(f) == bf16_oracle(f));
  }
}

TEST_CASE("batch-norm folding gives the same outputs") {
  const index_t out = 8, k = 12;
  const auto w = testing::normal_floats(static_cast<std::size_t>(out * k), 1);
  const auto b = testing::normal_floats(static_cast<std::size_t>(out), 2);
  const auto gamma = testing::uniform_floats(static_cast<std::size_t>(out), 3, 0.5f, 2.0f);
  const auto beta = testing::normal_floats(static_cast<std::size_t>(out), 4);
  const auto mean = testing::normal_floats(static_cast<std::size_t>(out), 5);
  const auto var = testing::uniform_floats(static_cast<std::size_t>(out), 6, 0.1f, 3.0f);
  const quant::batch_norm bn{gamma, beta, mean, var, 1e-5f};
  const auto f = quant::fold_batch_norm(tensor_view<const float, 2>(w.data(), shape<2>{out, k}), b, bn);
  for (int trial = 0; trial < 5; ++trial) {
    const auto x = testing::normal_floats(static_cast<std::size_t>(k), 10 + static_cast<std::uint64_t>(trial));
    for (index_t o = 0; o < out; ++o) {
      double z = b[static_cast<std::size_t>(o)], y = f.bias[static_cast<std::size_t>(o)];
      for (index_t c = 0; c < k; ++c) {
        z += static_cast<double>(w[static_cast<std::size_t>(o * k + c)]) * x[static_cast<std::size_t>(c)];
        y += static_cast<double>(f.weights(o, c)) * x[static_cast<std::size_t>(c)];
      }
      const auto so = static_cast<std::size_t>(o);
      const double expected = gamma[so] * (z - mean[so]) / std::sqrt(static_cast<double>(var[so]) + 1e-5) + beta[so];
      CHECK(y == Approx(expected).epsilon(1e-5).margin(1e-5));
    }
  }
  const std::vector<float> short_gamma(3, 1.0f);
  CHECK(code_of([&] {
          (void)quant::fold_batch_norm(tensor_view<const float, 2>(w.data(), shape<2>{out, k}), b, {short_gamma, beta, mean, var});
        }) == errc::shape_mismatch);
  std::vector<float> neg_var(var);
  neg_var[2] = -1.0f;
  CHECK(code_of([&] {
          (void)quant::fold_batch_norm(tensor_view<const float, 2>(w.data(), shape<2>{out, k}), b, {gamma, beta, mean, neg_var});
        }) == errc::invalid_argument);
}
