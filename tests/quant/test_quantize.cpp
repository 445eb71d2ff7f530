// test_quantize.cpp: parameters, QuantizeLinear codes, granularities, packing, rounding and bad input, against formulas written out here.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <shrink/metrics/errors.hpp>
#include <shrink/quant.hpp>
#include <vector>

#include "support/isa.hpp"
#include "support/random.hpp"
#include "onnx_oracle.hpp"

using namespace shrink;
using quant::granularity;
using quant::options;
using quant::scheme;

namespace {

// ---- independent oracles (the published formulas, not the library) ----------------------

// Round half to even and ONNX QuantizeLinear, written out in onnx_oracle.hpp.
using shrink::testing::onnx_quantize;
using shrink::testing::round_half_even;

struct torch_params {
  float scale;
  int zero_point;
};

// PyTorch _ObserverBase._calculate_qparams for per_tensor_affine (fp32 tensors throughout).
torch_params torch_affine(float mn, float mx, int qmin, int qmax) {
  const float min_neg = mn < 0.0f ? mn : 0.0f;
  const float max_pos = mx > 0.0f ? mx : 0.0f;
  float scale = (max_pos - min_neg) / static_cast<float>(qmax - qmin);
  const float eps = 1.1920928955078125e-07f;  // torch.finfo(torch.float32).eps
  if (scale < eps) scale = eps;
  int zp = qmin - static_cast<int>(round_half_even(static_cast<double>(min_neg / scale)));
  zp = std::min(qmax, std::max(qmin, zp));
  return {scale, zp};
}

// ... and for per_channel_symmetric / per_tensor_symmetric with a signed dtype.
torch_params torch_symmetric(float mn, float mx, int qmin, int qmax) {
  const float min_neg = mn < 0.0f ? mn : 0.0f;
  const float max_pos = mx > 0.0f ? mx : 0.0f;
  const float amax = -min_neg > max_pos ? -min_neg : max_pos;
  float scale = amax / (static_cast<float>(qmax - qmin) / 2.0f);
  if (scale < 1.1920928955078125e-07f) scale = 1.1920928955078125e-07f;
  return {scale, 0};
}

template <std::size_t R>
tensor_view<const float, R> view_of(const std::vector<float>& v, shape<R> s) {
  return tensor_view<const float, R>(v.data(), s);
}

std::vector<int> all_codes(const quant::quantized& q) {
  std::vector<int> out;
  for (index_t r = 0; r < q.rows(); ++r)
    for (index_t c = 0; c < q.cols(); ++c) out.push_back(q.code(r, c));
  return out;
}

}  // namespace

TEST_CASE("quint8 affine per tensor matches MinMaxObserver and QuantizeLinear on hand-checked ties") {
  // min = -2, max = 255/64 - 2: scale = (255/64)/255 = 2^-6 exactly, zero_point = 0 - round(-2 / 2^-6) = 128.
  const float s = 0.015625f;
  const std::vector<float> x{0.5f * s, 1.5f * s, -0.5f * s, -1.5f * s, 2.5f * s, -2.0f, 1.984375f, 0.0f};
  const auto q = quant::quantize(view_of(x, shape<1>{x.size()}), options{quant::k_quint8_affine});
  REQUIRE(q.scales()[0] == s);
  REQUIRE(q.zero_points()[0] == 128);
  // Hand-checked: 0.5->0, 1.5->2, -0.5->-0, -1.5->-2, 2.5->2 (ties to even), ends -> 0 and 255.
  CHECK(all_codes(q) == std::vector<int>{128, 130, 128, 126, 130, 0, 255, 128});
  const auto back = q.dequantize();
  CHECK(back[5] == -2.0f);
  CHECK(back[6] == 1.984375f);
  CHECK(back[7] == 0.0f);  // zero is exactly representable

  // Given these parameters, out-of-range values saturate.
  const std::vector<float> far{5.0f, -7.0f};
  const quant::params p{s, 128};
  const auto qf = quant::quantize(view_of(far, shape<1>{2}), options{quant::k_quint8_affine}, std::span(&p, 1));
  CHECK(all_codes(qf) == std::vector<int>{255, 0});
}

TEST_CASE("qint8 symmetric per channel matches PerChannelMinMaxObserver on hand-checked ties") {
  // Channel 0: amax = 127.5 * 2^-7 -> scale 2^-7. Channel 1: amax = 127.5 * 2^-4 -> scale 2^-4.
  const std::vector<float> x{0.99609375f, -0.99609375f, 0.00390625f, 0.01171875f,  //
                             7.96875f,    0.09375f,     -0.15625f,   0.0f};
  options o{quant::k_qint8_symmetric, granularity::per_channel(0)};
  const auto q = quant::quantize(view_of(x, shape<2>{2, 4}), o);
  REQUIRE(q.scales()[0] == 0.0078125f);
  REQUIRE(q.scales()[1] == 0.0625f);
  CHECK(q.zero_points()[0] == 0);
  CHECK(q.zero_points()[1] == 0);
  // 127.5 -> 128 -> saturates to 127; -127.5 -> -128; 0.5 -> 0; 1.5 -> 2; 1.5 -> 2; -2.5 -> -2.
  CHECK(all_codes(q) == std::vector<int>{127, -128, 0, 2, 127, 2, -2, 0});
}

TEST_CASE("restricted int8 range is [-127, 127]") {
  // amax = 127 * 2^-7: scale = amax / ((127 - -127) / 2) = 2^-7.
  const std::vector<float> x{0.9921875f, -0.9921875f, 0.01171875f, 0.00390625f};
  const auto q = quant::quantize(view_of(x, shape<1>{4}), options{quant::k_int8_restricted});
  REQUIRE(q.scales()[0] == 0.0078125f);
  CHECK(all_codes(q) == std::vector<int>{127, -127, 2, 0});
  // -127.5 would round to -128 but saturates at -127.
  const std::vector<float> y{-0.99609375f, -5.0f};
  const quant::params p{0.0078125f, 0};
  CHECK(all_codes(quant::quantize(view_of(y, shape<1>{2}), options{quant::k_int8_restricted}, std::span(&p, 1))) ==
        std::vector<int>{-127, -127});
}

TEST_CASE("all-equal and all-zero inputs give finite PyTorch scales") {
  for (float v : {0.0f, 3.0f, -3.0f, 1e-30f}) {
    const std::vector<float> x(17, v);
    for (const scheme& s : {quant::k_quint8_affine, quant::k_qint8_symmetric, scheme::affine(4, true), quant::k_int8_restricted}) {
      INFO("value " << v << " bits " << s.bits << " symmetric " << s.symmetric);
      const auto q = quant::quantize(view_of(x, shape<1>{x.size()}), options{s});
      const torch_params t = s.symmetric ? torch_symmetric(v, v, s.qmin(), s.qmax()) : torch_affine(v, v, s.qmin(), s.qmax());
      CHECK(std::isfinite(q.scales()[0]));
      CHECK(q.scales()[0] > 0.0f);
      CHECK(q.scales()[0] == t.scale);
      CHECK(q.zero_points()[0] == t.zero_point);
      for (float b : q.dequantize()) CHECK(std::isfinite(b));
    }
  }
  // Hand-checked: all -3 in quint8: scale = 3/255, zero_point = 0 - round(-255) = 255.
  const std::vector<float> neg(4, -3.0f);
  const auto q = quant::quantize(view_of(neg, shape<1>{4}), options{quant::k_quint8_affine});
  CHECK(q.zero_points()[0] == 255);
  CHECK(q.scales()[0] == 3.0f / 255.0f);
  CHECK(all_codes(q)[0] == 0);
  // All zero: scale is eps, zero point 0, every code 0.
  const std::vector<float> zero(4, 0.0f);
  const auto z = quant::quantize(view_of(zero, shape<1>{4}), options{quant::k_qint8_symmetric});
  CHECK(z.scales()[0] == std::numeric_limits<float>::epsilon());
  CHECK(all_codes(z) == std::vector<int>{0, 0, 0, 0});
}

TEST_CASE("compute_params follows the PyTorch observer formulas on random ranges") {
  const auto a = testing::uniform_floats(200, 11, -3.0f, 3.0f);
  for (std::size_t i = 0; i + 1 < a.size(); i += 2) {
    const float mn = std::min(a[i], a[i + 1]), mx = std::max(a[i], a[i + 1]);
    for (int bits = 2; bits <= 8; ++bits) {
      const scheme aff = scheme::affine(bits, false);
      const auto p = quant::compute_params(mn, mx, aff);
      const auto t = torch_affine(mn, mx, aff.qmin(), aff.qmax());
      CHECK(p.scale == t.scale);
      CHECK(p.zero_point == t.zero_point);
      const scheme sym = scheme::symmetric_range(bits, true);
      const auto ps = quant::compute_params(mn, mx, sym);
      CHECK(ps.scale == torch_symmetric(mn, mx, sym.qmin(), sym.qmax()).scale);
      CHECK(ps.zero_point == 0);
    }
  }
  // quint8 symmetric: PyTorch's zero point is 128.
  CHECK(quant::compute_params(-1.0f, 2.0f, scheme::symmetric_range(8, false)).zero_point == 128);
}

TEST_CASE("every ISA path gives QuantizeLinear codes per channel and per group") {
  auto x = testing::normal_floats(64 * 200, 5);
  // Plant exact ties: row 0 has amax 127 * 2^-5 (restricted scale 2^-5) and odd multiples of 2^-6.
  x[0] = 127.0f / 32.0f;
  for (int k = 1; k < 60; ++k) x[static_cast<std::size_t>(k)] = static_cast<float>(2 * k - 61) / 64.0f;
  auto w = testing::normal_floats(16 * 1100, 6);
  for (std::size_t g = 0; g < 16 * 1100; g += 32) {  // every 32-group: amax 127 * 2^-5 and a tie at 2^-6
    w[g] = 127.0f / 32.0f;
    w[g + 1] = 1.0f / 64.0f;
  }
  testing::for_each_isa([&](kernels::isa) {
    for (const scheme& s : {quant::k_int8_restricted, quant::k_qint8_symmetric, quant::k_quint8_affine}) {
      const auto q = quant::quantize(view_of(x, shape<2>{64, 200}), options{s, granularity::per_channel(0)});
      for (index_t r = 0; r < 64; ++r) {
        float mn = x[static_cast<std::size_t>(r * 200)], mx = mn;
        for (index_t c = 0; c < 200; ++c) {
          mn = std::min(mn, x[static_cast<std::size_t>(r * 200 + c)]);
          mx = std::max(mx, x[static_cast<std::size_t>(r * 200 + c)]);
        }
        const auto t = s.symmetric ? torch_symmetric(mn, mx, s.qmin(), s.qmax()) : torch_affine(mn, mx, s.qmin(), s.qmax());
        REQUIRE(q.scales()[static_cast<std::size_t>(r)] == t.scale);
        for (index_t c = 0; c < 200; ++c)
          REQUIRE(q.code(r, c) == onnx_quantize(x[static_cast<std::size_t>(r * 200 + c)], t.scale, t.zero_point, s.qmin(), s.qmax()));
      }
    }
    // Rows of 1100 hold 8+ full groups of 32, 64 and 128 (the eight-at-a-time path) and a short last group.
    for (index_t gs : {32, 64, 128, 48})
      for (const scheme& s : {quant::k_int4_symmetric, quant::k_uint4_affine, scheme::affine(2, true), quant::k_qint8_symmetric,
                              quant::k_quint8_affine}) {
        INFO("group size " << gs << " bits " << s.bits);
        const auto q = quant::quantize(view_of(w, shape<2>{16, 1100}), options{s, granularity::per_group(gs)});
        const index_t gpr = (1100 + gs - 1) / gs;  // the last group of a row is shorter when gs does not divide 1100
        REQUIRE(q.groups_per_row() == gpr);
        for (index_t r = 0; r < 16; ++r)
          for (index_t k = 0; k < gpr; ++k) {
            const index_t c0 = k * gs, n = std::min<index_t>(gs, 1100 - c0);
            float mn = w[static_cast<std::size_t>(r * 1100 + c0)], mx = mn;
            for (index_t c = c0; c < c0 + n; ++c) {
              mn = std::min(mn, w[static_cast<std::size_t>(r * 1100 + c)]);
              mx = std::max(mx, w[static_cast<std::size_t>(r * 1100 + c)]);
            }
            const auto t = s.symmetric ? torch_symmetric(mn, mx, s.qmin(), s.qmax()) : torch_affine(mn, mx, s.qmin(), s.qmax());
            REQUIRE(q.scales()[static_cast<std::size_t>(r * gpr + k)] == t.scale);
            REQUIRE(q.zero_points()[static_cast<std::size_t>(r * gpr + k)] == t.zero_point);
            for (index_t c = c0; c < c0 + n; ++c)
              REQUIRE(q.code(r, c) == onnx_quantize(w[static_cast<std::size_t>(r * 1100 + c)], t.scale, t.zero_point, s.qmin(), s.qmax()));
          }
      }
  });
}

TEST_CASE("per channel along a middle and the last axis") {
  const auto x = testing::uniform_floats(3 * 4 * 5, 9, -2.0f, 2.0f);
  for (index_t axis : {1, 2, -1}) {
    const auto q = quant::quantize(view_of(x, shape<3>{3, 4, 5}), options{quant::k_qint8_symmetric, granularity::per_channel(axis)});
    const index_t a = axis < 0 ? axis + 3 : axis;
    const index_t n = a == 1 ? 4 : 5;
    REQUIRE(q.scales().size() == static_cast<std::size_t>(n));
    for (index_t ch = 0; ch < n; ++ch) {
      float amax = 0.0f;
      for (index_t i = 0; i < 3; ++i)
        for (index_t j = 0; j < 4; ++j)
          for (index_t k = 0; k < 5; ++k)
            if ((a == 1 ? j : k) == ch) amax = std::max(amax, std::abs(x[static_cast<std::size_t>((i * 4 + j) * 5 + k)]));
      CHECK(q.scales()[static_cast<std::size_t>(ch)] == torch_symmetric(-amax, amax, -128, 127).scale);
    }
    for (index_t i = 0; i < 3; ++i)
      for (index_t j = 0; j < 4; ++j)
        for (index_t k = 0; k < 5; ++k) {
          const float sc = q.scales()[static_cast<std::size_t>(a == 1 ? j : k)];
          CHECK(q.code(i * 4 + j, k) == onnx_quantize(x[static_cast<std::size_t>((i * 4 + j) * 5 + k)], sc, 0, -128, 127));
        }
  }
}

TEST_CASE("packed layout puts element 0 in the low bits, two's complement fields") {
  const std::vector<float> x{1.0f, -2.0f, 7.0f, -8.0f, 3.0f};
  const quant::params one{1.0f, 0};
  const auto q4 = quant::quantize(view_of(x, shape<1>{5}), options{quant::k_int4_symmetric}, std::span(&one, 1));
  REQUIRE(q4.codes().size() == 3);
  CHECK(q4.codes()[0] == 0xE1);  // 1 low, -2 (0xE) high
  CHECK(q4.codes()[1] == 0x87);  // 7 low, -8 (0x8) high
  CHECK(q4.codes()[2] == 0x03);
  const std::vector<float> y{1.0f, -2.0f, 0.0f, -1.0f, 1.0f};
  const auto q2 = quant::quantize(view_of(y, shape<1>{5}), options{scheme::symmetric_range(2, true)}, std::span(&one, 1));
  REQUIRE(q2.codes().size() == 2);
  CHECK(q2.codes()[0] == 0xC9);  // fields 1, 2, 0, 3 from bit 0 up
  CHECK(q2.codes()[1] == 0x01);
  // Same bytes as core/bits.hpp pack_bits on the fields.
  std::vector<std::uint8_t> fields{1, 0xE, 7, 8, 3}, packed(3);
  pack_bits(fields, 4, packed);
  CHECK(std::memcmp(packed.data(), q4.codes().data(), 3) == 0);
  // Rows start on byte boundaries: a 2x3 int4 tensor has 2 bytes per row.
  const std::vector<float> z{1, 2, 3, 4, 5, 6};
  const auto qr = quant::quantize(view_of(z, shape<2>{2, 3}), options{quant::k_uint4_affine}, std::span(&one, 1));
  CHECK(qr.row_bytes() == 2);
  CHECK(qr.codes()[2] == 0x54);
  CHECK(qr.codes()[3] == 0x06);
}

TEST_CASE("bytes and bits per weight") {
  const auto x = testing::normal_floats(4 * 64, 3);
  const auto g = quant::quantize(view_of(x, shape<2>{4, 64}), options{quant::k_int4_symmetric, granularity::per_group(32)});
  CHECK(g.bytes() == 4 * 32 + 8 * 4);  // codes + fp32 scales; symmetric zero points implied
  CHECK(g.bits_per_weight() == Approx(5.0));
  const auto a = quant::quantize(view_of(x, shape<2>{4, 64}), options{quant::k_quint8_affine, granularity::per_channel(0)});
  CHECK(a.bytes() == 256 + 4 * 4 + 4 * 4);
  CHECK(a.bits_per_weight() == Approx(8.0 + 8.0 * 32 / 256));
}

TEST_CASE("error is at most scale/2 inside the range for every scheme and granularity") {
  const auto x = testing::normal_floats(12 * 100, 21);
  for (int bits = 2; bits <= 8; ++bits)
    for (int kind = 0; kind < 5; ++kind) {
      std::vector<scheme> schemes{scheme::affine(bits, false), scheme::affine(bits, true), scheme::symmetric_range(bits, true),
                                  scheme::symmetric_range(bits, false), scheme::symmetric_range(bits, true, true)};
      const granularity gran = kind == 0 ? granularity::per_tensor()
                               : kind == 1 ? granularity::per_channel(0)
                               : kind == 2 ? granularity::per_channel(1)
                               : kind == 3 ? granularity::per_group(32)
                                           : granularity::per_group(64);
      for (const scheme& s : schemes) {
        const auto q = quant::quantize(view_of(x, shape<2>{12, 100}), options{s, gran});
        const auto back = q.dequantize();
        std::vector<float> in, out;
        double worst_ratio = 0.0;
        for (index_t r = 0; r < 12; ++r)
          for (index_t c = 0; c < 100; ++c) {
            const auto p = static_cast<std::size_t>(q.param_index(r, c));
            const float sc = q.scales()[p];
            const double v = x[static_cast<std::size_t>(r * 100 + c)] / static_cast<double>(sc) + q.zero_points()[p];
            if (v < s.qmin() || v > s.qmax()) continue;  // outside the representable range
            in.push_back(x[static_cast<std::size_t>(r * 100 + c)]);
            out.push_back(back[static_cast<std::size_t>(r * 100 + c)]);
            worst_ratio = std::max(worst_ratio, std::abs(static_cast<double>(in.back()) - out.back()) / sc);
          }
        INFO("bits " << bits << " granularity " << kind << " signed " << s.is_signed << " symmetric " << s.symmetric);
        REQUIRE(!in.empty());
        CHECK(worst_ratio <= 0.5 + 1e-5);
        CHECK(metrics::max_abs_error(in, out) <= 0.5 * 4.0 * 2.0);  // a loose absolute sanity bound
      }
    }
  // int8 per channel on Gaussian weights: SQNR well above 30 dB.
  const auto q = quant::quantize(view_of(x, shape<2>{12, 100}), options{quant::k_qint8_symmetric, granularity::per_channel(0)});
  CHECK(metrics::sqnr_db(x, q.dequantize()) > 35.0);
  CHECK(metrics::mse(x, q.dequantize()) < 1e-4);
}

TEST_CASE("rounding policies") {
  const quant::params one{1.0f, 0};
  const std::vector<float> x{2.5f, -2.5f, 0.5f, -0.5f, 1.7f, -1.2f};
  auto codes = [&](quant::rounding r) {
    options o{quant::k_qint8_symmetric};
    o.round = r;
    return all_codes(quant::quantize(view_of(x, shape<1>{6}), o, std::span(&one, 1)));
  };
  CHECK(codes(quant::rounding::half_even) == std::vector<int>{2, -2, 0, 0, 2, -1});
  CHECK(codes(quant::rounding::half_away_from_zero) == std::vector<int>{3, -3, 1, -1, 2, -1});
  CHECK(codes(quant::rounding::floor) == std::vector<int>{2, -3, 0, -1, 1, -2});

  // Stochastic: reproducible from the seed, unbiased (mean code of 0.3 is 0.3).
  const std::vector<float> v(100000, 0.3f);
  options o{quant::k_qint8_symmetric};
  o.round = quant::rounding::stochastic;
  o.seed = 42;
  const auto a = all_codes(quant::quantize(view_of(v, shape<1>{v.size()}), o, std::span(&one, 1)));
  const auto b = all_codes(quant::quantize(view_of(v, shape<1>{v.size()}), o, std::span(&one, 1)));
  CHECK(a == b);
  o.seed = 43;
  const auto c = all_codes(quant::quantize(view_of(v, shape<1>{v.size()}), o, std::span(&one, 1)));
  CHECK(a != c);
  double mean = 0.0;
  for (int k : a) {
    REQUIRE((k == 0 || k == 1));
    mean += k;
  }
  mean /= static_cast<double>(a.size());
  CHECK(mean == Approx(0.3).margin(0.006));  // ~4 standard deviations of a Bernoulli(0.3) mean
}

TEST_CASE("bad input: bits, empty, axis, group size, parameters") {
  const std::vector<float> x{1, 2, 3, 4};
  auto code_of = [](auto&& f) {
    try {
      f();
    } catch (const shrink::error& e) {
      return e.code();
    }
    return static_cast<errc>(0);
  };
  for (int bits : {0, 1, 9, 16}) {
    scheme s = scheme::affine(bits);
    CHECK(code_of([&] { (void)quant::quantize(view_of(x, shape<1>{4}), options{s}); }) == errc::invalid_argument);
  }
  CHECK_THROWS_WITH(quant::quantize(view_of(x, shape<1>{4}), options{scheme::affine(9)}), Catch::Contains("bits must be in [2, 8], got 9"));
  const std::vector<float> none;
  CHECK(code_of([&] { (void)quant::quantize(view_of(none, shape<2>{0, 4}), options{}); }) == errc::empty_input);
  CHECK(code_of([&] { (void)quant::quantize(view_of(x, shape<2>{2, 2}), options{quant::k_qint8_symmetric, granularity::per_channel(2)}); }) ==
        errc::out_of_range);
  CHECK(code_of([&] { (void)quant::quantize(view_of(x, shape<2>{2, 2}), options{quant::k_qint8_symmetric, granularity::per_channel(-3)}); }) ==
        errc::out_of_range);
  CHECK(code_of([&] { (void)quant::quantize(view_of(x, shape<2>{2, 2}), options{quant::k_qint8_symmetric, granularity::per_group(0)}); }) ==
        errc::invalid_argument);
  const quant::params bad{0.0f, 0};
  CHECK(code_of([&] { (void)quant::quantize(view_of(x, shape<1>{4}), options{}, std::span(&bad, 1)); }) == errc::invalid_argument);
  const quant::params two[2] = {{1.0f, 0}, {1.0f, 0}};
  CHECK(code_of([&] { (void)quant::quantize(view_of(x, shape<1>{4}), options{}, std::span(two, 2)); }) == errc::shape_mismatch);
  CHECK(code_of([&] { (void)quant::compute_params(2.0f, 1.0f, quant::k_quint8_affine); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)quant::compute_params(0.0f, INFINITY, quant::k_quint8_affine); }) == errc::non_finite);
}

TEST_CASE("bad input: NaN and Inf name the first bad index unless clamped") {
  testing::for_each_isa([&](kernels::isa) {
    for (index_t bad_at : {5, 37, 99}) {
      auto wide = testing::normal_floats(2 * 1100, 2);
      wide[static_cast<std::size_t>(bad_at * 7)] = -std::numeric_limits<float>::infinity();
      wide[1500] = std::numeric_limits<float>::quiet_NaN();
      for (index_t gs : {32, 64, 128}) {
        try {
          (void)quant::quantize(view_of(wide, shape<2>{2, 1100}), options{quant::k_int4_symmetric, granularity::per_group(gs)});
          FAIL("no error");
        } catch (const shrink::error& e) {
          CHECK(e.code() == errc::non_finite);
          CHECK_THAT(e.what(), Catch::Contains("element " + std::to_string(bad_at * 7) + " "));
        }
      }
      auto x = testing::normal_floats(100, 1);
      x[static_cast<std::size_t>(bad_at)] = std::numeric_limits<float>::quiet_NaN();
      x[99] = std::numeric_limits<float>::infinity();
      for (const granularity& g : {granularity::per_tensor(), granularity::per_channel(0), granularity::per_group(32), granularity::per_channel(1)}) {
        try {
          (void)quant::quantize(view_of(x, shape<2>{4, 25}), options{quant::k_qint8_symmetric, g});
          FAIL("no error");
        } catch (const shrink::error& e) {
          CHECK(e.code() == errc::non_finite);
          CHECK_THAT(e.what(), Catch::Contains("element " + std::to_string(bad_at) + " "));
        }
      }
    }
  });
  // Clamp policy: +Inf -> qmax, -Inf -> qmin, NaN -> zero point; ranges ignore them.
  std::vector<float> x{1.0f, -1.0f, INFINITY, -INFINITY, NAN, 0.5f};
  options o{quant::k_quint8_affine};
  o.non_finite = quant::non_finite_policy::clamp;
  const auto q = quant::quantize(view_of(x, shape<1>{6}), o);
  const auto t = torch_affine(-1.0f, 1.0f, 0, 255);
  CHECK(q.scales()[0] == t.scale);
  CHECK(q.zero_points()[0] == t.zero_point);
  const auto c = all_codes(q);
  CHECK(c[2] == 255);
  CHECK(c[3] == 0);
  CHECK(c[4] == t.zero_point);
  for (float b : q.dequantize()) CHECK(std::isfinite(b));
}

TEST_CASE("strided views are quantized like their contiguous copy") {
  const auto x = testing::normal_floats(6 * 8, 4);
  const tensor_view<const float, 2> full(x.data(), shape<2>{6, 8});
  const auto odd_cols = tensor_view<const float, 2>(x.data() + 1, shape<2>{6, 4}, {8, 2});
  std::vector<float> copy;
  for (index_t r = 0; r < 6; ++r)
    for (index_t c = 0; c < 4; ++c) copy.push_back(full(r, 2 * c + 1));
  const options o{quant::k_qint8_symmetric, granularity::per_channel(0)};
  const auto a = quant::quantize(odd_cols, o);
  const auto b = quant::quantize(view_of(copy, shape<2>{6, 4}), o);
  CHECK(all_codes(a) == all_codes(b));
}

TEST_CASE("codes equal true division next to ties for arbitrary scales on every path") {
  // The AVX2 path multiplies by 1/scale and falls back to division near ties; values a few
  // ulps either side of (k + 1/2) * scale are where a reciprocal alone would differ.
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> scale_dist(1e-3f, 3.0f);
  testing::for_each_isa([&](kernels::isa) {
    for (int trial = 0; trial < 40; ++trial) {
      const float sc = scale_dist(rng);
      std::vector<float> x;
      for (int k = -130; k <= 130; ++k) {
        float v = (static_cast<float>(k) + 0.5f) * sc;
        for (int step = 0; step < 4; ++step) v = std::nextafter(v, -INFINITY);
        for (int step = 0; step < 9; ++step, v = std::nextafter(v, INFINITY)) x.push_back(v);
      }
      for (const scheme& s : {quant::k_qint8_symmetric, quant::k_quint8_affine, quant::k_int4_symmetric}) {
        const quant::params p{sc, s.symmetric ? 0 : 3};
        const auto q = quant::quantize(view_of(x, shape<1>{x.size()}), options{s}, std::span(&p, 1));
        for (std::size_t i = 0; i < x.size(); ++i)
          REQUIRE(q.code(0, static_cast<index_t>(i)) == onnx_quantize(x[i], sc, p.zero_point, s.qmin(), s.qmax()));
      }
    }
  });
}

TEST_CASE("quantize_into reuses storage and equals a fresh quantize") {
  const auto a = testing::normal_floats(8 * 70, 30), b = testing::normal_floats(8 * 70, 31);
  for (const options& o : {options{quant::k_int4_symmetric, granularity::per_group(32)},
                           options{quant::k_qint8_symmetric, granularity::per_channel(0)},
                           options{scheme::affine(2, false), granularity::per_tensor()}}) {
    quant::quantized q;
    quant::quantize_into(view_of(a, shape<2>{8, 70}), o, {}, q);
    const auto* codes = q.codes().data();
    quant::quantize_into(view_of(b, shape<2>{8, 70}), o, {}, q);
    CHECK(q.codes().data() == codes);  // same buffer
    const auto fresh = quant::quantize(view_of(b, shape<2>{8, 70}), o);
    CHECK(all_codes(q) == all_codes(fresh));
    CHECK(std::equal(q.scales().begin(), q.scales().end(), fresh.scales().begin(), fresh.scales().end()));
    CHECK(std::memcmp(q.codes().data(), fresh.codes().data(), q.codes().size()) == 0);
  }
}
