// test_q8_gemv.cpp: integer-activation GEMVs (int4 per-group × q8, 4-bit codebook with integer-coded centroids × q8) bit-exact on every ISA path against scalar oracles written here, their error bound against the fp32-activation paths, and bad input.
#include <catch2/catch.hpp>

#include <cfenv>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <shrink/core/bits.hpp>
#include <shrink/kernels/q8_gemv.hpp>

#include "support/errors.hpp"
#include "support/isa.hpp"
#include "support/random.hpp"

using namespace shrink;

namespace {

constexpr double k_u = 5.9604644775390625e-8;  // 2^-24

// The test's own quantizer (written from the stated definition, not the library's code):
// d = max|x_block| / 127, q = x / d rounded half to even by the FPU's default mode.
struct oracle_q8 {
  std::vector<int> q;
  std::vector<float> d;  // per element: the scale of its block
};

oracle_q8 oracle_quantize(const std::vector<float>& x, index_t block) {
  REQUIRE(std::fegetround() == FE_TONEAREST);
  const index_t k = static_cast<index_t>(x.size()), b = block == 0 ? k : block;
  oracle_q8 o;
  o.q.resize(x.size());
  o.d.resize(x.size());
  for (index_t b0 = 0; b0 < k; b0 += b) {
    float amax = 0.0f;
    for (index_t i = b0; i < std::min(k, b0 + b); ++i) amax = std::max(amax, std::fabs(x[static_cast<std::size_t>(i)]));
    const float d = amax / 127.0f;
    for (index_t i = b0; i < std::min(k, b0 + b); ++i) {
      o.d[static_cast<std::size_t>(i)] = d;
      o.q[static_cast<std::size_t>(i)] = d > 0.0f ? static_cast<int>(std::nearbyint(x[static_cast<std::size_t>(i)] / d)) : 0;
    }
  }
  return o;
}

// A float exactly representable in fp16 and its bits: (1024 + man) · 2^(e − 25), e in [1, 30].
std::pair<float, std::uint16_t> half_value(int e, int man) {
  return {std::ldexp(static_cast<float>(1024 + man), e - 25), static_cast<std::uint16_t>((e << 10) | man)};
}

std::vector<float> activations(std::size_t n, std::uint64_t seed) {
  auto x = testing::normal_floats(n, seed);
  // Ties: with max|x| = 127 in a block the scale is 1 and ±2.5, 3.5 are exact halves.
  if (n > 4) {
    x[0] = 127.0f;
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 3.5f;
  }
  return x;
}

}  // namespace

TEST_CASE("quantize_activations follows d = amax/127 and round half to even") {
  std::vector<float> x(70, 0.0f);
  x[0] = 127.0f;  // block 0 (32 elements): d = 1
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 3.5f;
  x[4] = 0.5f;
  x[5] = -126.5f;
  x[32] = -63.5f;  // block 1: d = 0.5, so −63.5 → −127 and 0.25 → 0.5 → 0 (tie to even)
  x[33] = 0.25f;
  x[34] = 0.75f;  // 1.5 → 2
  // block 2 (elements 64..69) all zero: d = 0, q = 0.
  auto q = kernels::quantize_activations(x, 32);
  REQUIRE(q.scales.size() == 3);
  CHECK(q.scales[0] == 1.0f);
  CHECK(q.scales[1] == 0.5f);
  CHECK(q.scales[2] == 0.0f);
  CHECK(q.q[0] == 127);
  CHECK(q.q[1] == 2);
  CHECK(q.q[2] == -2);
  CHECK(q.q[3] == 4);
  CHECK(q.q[4] == 0);
  CHECK(q.q[5] == -126);
  CHECK(q.q[32] == -127);
  CHECK(q.q[33] == 0);
  CHECK(q.q[34] == 2);
  REQUIRE(q.depth_padded == 128);
  for (index_t i = 64; i < 128; ++i) CHECK(q.q[static_cast<std::size_t>(i)] == 0);
  CHECK(q.sums32[0] == 127 + 2 - 2 + 4 + 0 - 126);
  CHECK(q.sums32[1] == -127 + 0 + 2);
  CHECK(q.sums32[2] == 0);
  CHECK(q.sums32[3] == 0);
  // Per tensor: one scale, amax = 127.
  auto t = kernels::quantize_activations(x, 0);
  REQUIRE(t.scales.size() == 1);
  CHECK(t.scales[0] == 1.0f);
  CHECK(t.q[32] == -64);  // −63.5 → −64 (even)
  CHECK(t.q[34] == 1);    // 0.75 → 1
  // Random data against the test's quantizer, every block size and path (the AVX2 path does
  // 16 at a time with a scalar tail: odd sizes), plus extreme magnitudes (subnormal scales,
  // values near FLT_MAX) and exact ties at several scales.
  std::vector<std::vector<float>> inputs = {activations(1000, 3), activations(37, 4), activations(7, 5)};
  {
    auto tiny = activations(300, 6), huge = activations(300, 7), ties = activations(260, 8);
    for (auto& v : tiny) v *= 1e-40f;  // d = amax/127 is subnormal (division, not × 1/d)
    for (auto& v : huge) v *= 1e36f;
    for (std::size_t i = 0; i < ties.size(); ++i) ties[i] = static_cast<float>(static_cast<int>(i % 9) - 4) + 0.5f;
    for (std::size_t i = 0; i < ties.size(); i += 32) ties[i] = 127.0f;  // d = 1 in every block: ±k.5 ties
    inputs.push_back(tiny);
    inputs.push_back(huge);
    inputs.push_back(ties);
  }
  testing::for_each_isa([&](kernels::isa) {
    for (const auto& r : inputs)
      for (index_t block : {0, 32, 64, 128}) {
        INFO("k " << r.size() << " block " << block);
        const auto o = oracle_quantize(r, block);
        const auto a = kernels::quantize_activations(r, block);
        for (std::size_t i = 0; i < r.size(); ++i) {
          REQUIRE(a.q[i] == o.q[i]);
          REQUIRE(a.scales[block == 0 ? 0 : i / static_cast<std::size_t>(block)] == o.d[i]);
        }
        for (std::size_t s = 0; s < a.sums32.size(); ++s) {
          int sum = 0;
          for (std::size_t i = s * 32; i < std::min(r.size(), s * 32 + 32); ++i) sum += o.q[i];
          REQUIRE(a.sums32[s] == sum);
        }
      }
  });
}

TEST_CASE("gemv_s4_q8 is bit-exact with the integer-dot oracle on every path") {
  struct cfg {
    index_t n, k, group, block;
    bool f16;
  };
  const std::vector<cfg> cfgs = {{1, 1, 32, 32, false},   {7, 31, 32, 0, true},     {8, 32, 32, 32, false},
                                 {19, 256, 32, 32, true}, {33, 200, 64, 64, false}, {9, 131, 128, 0, true},
                                 {40, 96, 32, 0, false},  {17, 1000, 128, 128, true}, {64, 2048, 32, 32, true},
                                 // 32-row panels with group 64/128 and a last panel of 25 or 18 real rows
                                 {57, 384, 128, 128, false}, {50, 320, 64, 0, true}};
  int seed = 0;
  for (const auto& c : cfgs) {
    ++seed;
    INFO("shape " << c.n << "x" << c.k << " group " << c.group << " block " << c.block << " f16 " << c.f16);
    const index_t groups = (c.k + c.group - 1) / c.group;
    std::mt19937_64 rng(static_cast<std::uint64_t>(seed));
    std::uniform_int_distribution<int> dist(-8, 7), man(0, 1023), ex(8, 18);
    std::vector<int> wv(static_cast<std::size_t>(c.n * c.k));
    for (std::size_t i = 0; i < wv.size(); ++i) wv[i] = (i % 7 == 0) ? -8 : (i % 11 == 0 ? 7 : dist(rng));
    std::vector<float> sf;
    std::vector<std::uint16_t> sh;
    for (index_t i = 0; i < c.n * groups; ++i) {
      auto [v, bits] = half_value(ex(rng), man(rng));
      if (i % 5 == 0) v = -v, bits = static_cast<std::uint16_t>(bits | 0x8000u);
      sf.push_back(v);
      sh.push_back(bits);
    }
    std::vector<std::uint8_t> fields(wv.size()), nib(packed_bytes(wv.size(), 4));
    for (std::size_t i = 0; i < wv.size(); ++i) fields[i] = static_cast<std::uint8_t>(wv[i] & 0xF);
    pack_bits(fields, 4, nib);
    const auto wq = c.f16 ? kernels::pack_s4_weights<std::uint16_t>(nib, c.n, c.k, sh, c.group)
                          : kernels::pack_s4_weights<float>(nib, c.n, c.k, sf, c.group);
    const auto w = kernels::pack_s4q8_weights(wq);
    for (index_t n = 0; n < c.n; ++n)
      for (index_t k = 0; k < c.k; ++k) REQUIRE(w.at(n, k) == wv[static_cast<std::size_t>(n * c.k + k)]);

    const auto x = activations(static_cast<std::size_t>(c.k), 100 + seed);
    const auto o = oracle_quantize(x, c.block);
    // Oracle: exact integer dot per (row, group), then acc = fma(s·d, dot, acc), g ascending.
    std::vector<float> expect(static_cast<std::size_t>(c.n));
    for (index_t n = 0; n < c.n; ++n) {
      float acc = 0.0f;
      for (index_t g = 0; g < groups; ++g) {
        std::int64_t dot = 0;
        for (index_t k = g * c.group; k < std::min(c.k, (g + 1) * c.group); ++k)
          dot += static_cast<std::int64_t>(wv[static_cast<std::size_t>(n * c.k + k)]) * o.q[static_cast<std::size_t>(k)];
        const float d = o.d[static_cast<std::size_t>(g * c.group)];
        const float sc = sf[static_cast<std::size_t>(n * groups + g)] * d;
        acc = std::fma(sc, static_cast<float>(dot), acc);
      }
      expect[static_cast<std::size_t>(n)] = acc;
    }
    auto xq = kernels::make_q8_activations(c.k, c.block);
    testing::for_each_isa([&](kernels::isa) {
      for (int threads : {1, 2, 3}) {
        INFO("threads " << threads);
        std::vector<float> y(static_cast<std::size_t>(c.n), -1.0f);
        kernels::gemv_s4_q8(x, xq, w, y, context{threads});
        for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == expect[i]);
      }
    });
  }
}

TEST_CASE("gemv_s4_q8 stays within the stated activation-quantization bound of the fp32 path") {
  // Bound: |y_q8 − Σ s·w·x| ≤ Σ_k |s_g·w_k|·d_g/2 (activation rounding, |x − d·q| ≤ d/2)
  //                          + (groups + 2)·u·Σ_k |s_g·w_k·d_g·q_k| (fp32 scale product and fma chain).
  // The fp32-activation path (weight_only_gemv) is itself within (g + G + 8)·u·Σ|s·w·x| of
  // the exact value, so the two paths differ by at most the sum of both bounds.
  const index_t n = 24, k = 512, group = 32, groups = k / group;
  std::mt19937_64 rng(9);
  std::uniform_int_distribution<int> dist(-8, 7);
  std::vector<int> wv(static_cast<std::size_t>(n * k));
  for (auto& v : wv) v = dist(rng);
  std::vector<std::uint8_t> fields(wv.size()), nib(packed_bytes(wv.size(), 4));
  for (std::size_t i = 0; i < wv.size(); ++i) fields[i] = static_cast<std::uint8_t>(wv[i] & 0xF);
  pack_bits(fields, 4, nib);
  const auto sf = testing::uniform_floats(static_cast<std::size_t>(n * groups), 11, 0.001f, 0.05f);
  const auto wq = kernels::pack_s4_weights<float>(nib, n, k, sf, group);
  const auto w = kernels::pack_s4q8_weights(wq);
  const auto x = testing::normal_floats(static_cast<std::size_t>(k), 12);
  for (index_t block : {index_t{0}, group}) {
    INFO("block " << block);
    const auto o = oracle_quantize(x, block);
    auto xq = kernels::make_q8_activations(k, block);
    std::vector<float> yq(static_cast<std::size_t>(n)), yf(static_cast<std::size_t>(n));
    kernels::gemv_s4_q8(x, xq, w, yq, context{1});
    kernels::weight_only_gemv(x, wq, yf, context{1});
    double worst_rel = 0.0;
    for (index_t r = 0; r < n; ++r) {
      double exact = 0, quant_err = 0, mag_q = 0, mag_f = 0;
      for (index_t j = 0; j < k; ++j) {
        const auto i = static_cast<std::size_t>(j);
        const double sw = static_cast<double>(sf[static_cast<std::size_t>(r * groups + j / group)]) *
                          wv[static_cast<std::size_t>(r * k + j)];
        exact += sw * x[i];
        quant_err += std::abs(sw) * o.d[i] / 2;
        mag_q += std::abs(sw * o.d[i] * o.q[i]);
        mag_f += std::abs(sw * x[i]);
      }
      const double bound_q = quant_err + static_cast<double>(groups + 2) * k_u * mag_q;
      const double bound_f = static_cast<double>(group + groups + 8) * k_u * mag_f;
      const auto ri = static_cast<std::size_t>(r);
      REQUIRE(std::abs(yq[ri] - exact) <= bound_q);
      REQUIRE(std::abs(static_cast<double>(yq[ri]) - yf[ri]) <= bound_q + bound_f);
      worst_rel = std::max(worst_rel, std::abs(yq[ri] - exact) / mag_f);
    }
    // Typical size, for the docs: per-block scales on normal data stay well under 1 %.
    CHECK(worst_rel < 0.01);
  }
}

// The test's own centroid coder, from the stated definitions (docs/kernels.md):
// symmetric8 s = max|c|/127, c_q = c/s rounded half to even; affine7 lo = min c,
// s = (max c − min c)/127 (in double), u = (c − lo)/s rounded to nearest.
struct oracle_book {
  int code[16];
  float scale, offset;
};

oracle_book oracle_code(const float* c, kernels::centroid_code code) {
  oracle_book b{};
  if (code == kernels::centroid_code::symmetric8) {
    float amax = 0.0f;
    for (int i = 0; i < 16; ++i) amax = std::max(amax, std::fabs(c[i]));
    b.scale = amax / 127.0f;
    b.offset = 0.0f;
    for (int i = 0; i < 16; ++i) b.code[i] = b.scale > 0.0f ? static_cast<int>(std::nearbyint(c[i] / b.scale)) : 0;
    return b;
  }
  double lo = c[0], hi = c[0];
  for (int i = 0; i < 16; ++i) lo = std::min(lo, double{c[i]}), hi = std::max(hi, double{c[i]});
  const double s = (hi - lo) / 127.0;
  for (int i = 0; i < 16; ++i) b.code[i] = s > 0.0 ? static_cast<int>(std::lround((c[i] - lo) / s)) : 0;
  b.scale = static_cast<float>(s);
  b.offset = static_cast<float>(lo);
  return b;
}

constexpr kernels::centroid_code k_codes[] = {kernels::centroid_code::affine7, kernels::centroid_code::symmetric8};

TEST_CASE("codebook_gemv_q8 is bit-exact with the integer-dot oracle on every path") {
  struct cfg {
    index_t n, k;
    bool per_row;
  };
  const std::vector<cfg> cfgs = {{1, 1, false}, {5, 63, true},   {8, 64, false},  {13, 200, true},
                                 {37, 1000, false}, {9, 129, true}, {64, 4096, false}};
  int seed = 0;
  for (const auto code : k_codes)
    for (const auto& c : cfgs) {
      ++seed;
      INFO("shape " << c.n << "x" << c.k << " per_row " << c.per_row << " code " << static_cast<int>(code));
      std::mt19937_64 rng(static_cast<std::uint64_t>(seed));
      std::uniform_int_distribution<int> idx(0, 15);
      std::vector<std::uint8_t> fields(static_cast<std::size_t>(c.n * c.k));
      for (auto& f : fields) f = static_cast<std::uint8_t>(idx(rng));
      std::vector<std::uint8_t> packed(packed_bytes(fields.size(), 4));
      pack_bits(fields, 4, packed);
      const index_t books = c.per_row ? c.n : 1;
      auto cents = testing::uniform_floats(static_cast<std::size_t>(books * 16), 40 + seed, -0.3f, 0.3f);
      cents[0] = 0.0f;  // a zero centroid (sign trick: sign(x, 0) = 0)
      if (c.per_row && c.n > 2) {
        for (int i = 0; i < 16; ++i) cents[static_cast<std::size_t>(16 + i)] = 0.125f;  // one value: s = 0
        for (int i = 0; i < 16; ++i) cents[static_cast<std::size_t>(32 + i)] = 1.0f + 0.25f * static_cast<float>(i);
      }
      const auto cw = kernels::pack_codebook_weights(packed, 4, c.n, c.k, cents);
      const auto w = kernels::pack_codebook_q8_weights(cw, code);
      for (index_t n = 0; n < c.n; ++n)
        for (index_t k = 0; k < c.k; ++k) REQUIRE(w.index(n, k) == fields[static_cast<std::size_t>(n * c.k + k)]);
      const auto x = activations(static_cast<std::size_t>(c.k), 60 + seed);
      const auto o = oracle_quantize(x, 0);
      std::int64_t qsum = 0;
      for (const int q : o.q) qsum += q;
      std::vector<float> expect(static_cast<std::size_t>(c.n));
      for (index_t n = 0; n < c.n; ++n) {
        const oracle_book b = oracle_code(cents.data() + (c.per_row ? n * 16 : 0), code);
        for (int i = 0; i < 16; ++i) {
          REQUIRE(b.code[i] >= (code == kernels::centroid_code::affine7 ? 0 : -127));
          REQUIRE(b.code[i] <= 127);
        }
        std::int64_t dot = 0;
        for (index_t k = 0; k < c.k; ++k)
          dot += static_cast<std::int64_t>(b.code[fields[static_cast<std::size_t>(n * c.k + k)]]) *
                 o.q[static_cast<std::size_t>(k)];
        expect[static_cast<std::size_t>(n)] = std::fma(b.offset * o.d[0], static_cast<float>(qsum),
                                                       (b.scale * o.d[0]) * static_cast<float>(dot));
      }
      auto xq = kernels::make_q8_activations(c.k, 0);
      testing::for_each_isa([&](kernels::isa) {
        for (int threads : {1, 2}) {
          INFO("threads " << threads);
          std::vector<float> y(static_cast<std::size_t>(c.n), -1.0f);
          kernels::codebook_gemv_q8(x, xq, w, y, context{threads});
          for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == expect[i]);
        }
      });
    }
}

TEST_CASE("codebook_gemv_q8 is exact at the largest depth it accepts, and rejects one more") {
  // K = 2^31/127² − 64: all-max rows reach |dot| = 127²·K ≈ 2^31 − 10^6, and symmetric8's
  // vpdpbusd paths sum (c_q + 128)·q ≈ 2^32, which wraps before cb_unbias takes 128·Σq off.
  const index_t k = (index_t{1} << 31) / (127 * 127) - 64, n = 9;
  std::vector<float> cents(16);
  for (int i = 0; i < 16; ++i) cents[static_cast<std::size_t>(i)] = -1.0f + 2.0f * static_cast<float>(i) / 15.0f;
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> idx(0, 15);
  std::vector<std::uint8_t> fields(static_cast<std::size_t>(n * k));
  for (index_t r = 0; r < n; ++r)
    for (index_t c = 0; c < k; ++c)  // row 0: all the largest centroid, row 1: all the smallest
      fields[static_cast<std::size_t>(r * k + c)] = static_cast<std::uint8_t>(r == 0 ? 15 : r == 1 ? 0 : idx(rng));
  std::vector<std::uint8_t> packed(packed_bytes(fields.size(), 4));
  pack_bits(fields, 4, packed);
  const auto cw = kernels::pack_codebook_weights(packed, 4, n, k, cents);
  const std::vector<float> x(static_cast<std::size_t>(k), 1.0f);  // q = 127 everywhere
  auto xq = kernels::make_q8_activations(k, 0);
  for (const auto code : k_codes) {
    INFO("code " << static_cast<int>(code));
    const auto w = kernels::pack_codebook_q8_weights(cw, code);
    const oracle_book b = oracle_code(cents.data(), code);
    const float d = 1.0f / 127.0f;
    const double qsum = 127.0 * static_cast<double>(k);
    std::vector<float> expect(static_cast<std::size_t>(n));
    for (index_t r = 0; r < n; ++r) {
      std::int64_t dot = 0;
      for (index_t c = 0; c < k; ++c) dot += std::int64_t{127} * b.code[fields[static_cast<std::size_t>(r * k + c)]];
      REQUIRE(std::abs(dot) < (std::int64_t{1} << 31));
      expect[static_cast<std::size_t>(r)] =
          std::fma(b.offset * d, static_cast<float>(qsum), (b.scale * d) * static_cast<float>(dot));
    }
    testing::for_each_isa([&](kernels::isa) {
      std::vector<float> y(static_cast<std::size_t>(n), -1.0f);
      kernels::codebook_gemv_q8(x, xq, w, y, context{1});
      for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == expect[i]);
    });
  }
  std::vector<std::uint8_t> one_more(packed_bytes(static_cast<std::size_t>(k + 1), 4));
  const auto too_deep = kernels::pack_codebook_weights(one_more, 4, 1, k + 1, cents);
  CHECK(testing::code_of([&] { (void)kernels::pack_codebook_q8_weights(too_deep); }) == errc::overflow);
}

TEST_CASE("codebook_gemv_q8 adds a row's products in 16 bits only where the activations leave room") {
  // AVX2 sums the four products c·q of a lane (q[2j], q[2j+1], q[32+2j], q[33+2j] of a 64-weight
  // chunk) in s16 where 127·Σ|q| ≤ 32767 over every such quad of the 128-deep step, i.e.
  // Σ|q| ≤ 258. With |c| = 127 a quad of 258 sums to ±32766 and one of 259 to ±32893, which
  // would wrap by 2^16: each step below sits on one side of that line. All the large quads of
  // one activation vector have the same sign, so two wrongly paired steps cannot cancel.
  // max|x| = 127, so q = x exactly.
  const index_t k = 6 * 128 + 37, n = 11;  // 3 panels, the last one partial; a depth tail
  std::vector<float> cents(16);
  for (int i = 0; i < 16; ++i) cents[static_cast<std::size_t>(i)] = -1.0f + 2.0f * static_cast<float>(i) / 15.0f;
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int> idx(0, 15), small(-3, 3);
  std::vector<std::uint8_t> fields(static_cast<std::size_t>(n * k));
  for (index_t r = 0; r < n; ++r)
    for (index_t c = 0; c < k; ++c)  // rows 0 and 5: the largest centroid, 1 and 10: the smallest
      fields[static_cast<std::size_t>(r * k + c)] =
          static_cast<std::uint8_t>(r == 0 || r == 5 ? 15 : r == 1 || r == 10 ? 0 : idx(rng));
  std::vector<std::uint8_t> packed(packed_bytes(fields.size(), 4));
  pack_bits(fields, 4, packed);
  for (const int sign : {1, -1}) {
    std::vector<float> x(static_cast<std::size_t>(k));
    for (auto& v : x) v = static_cast<float>(small(rng));
    const auto set_quad = [&](index_t step, index_t chunk, index_t j, int a, int b, int c, int d) {
      const auto at = static_cast<std::size_t>(step * 128 + chunk * 64 + 2 * j);
      x[at] = static_cast<float>(sign * a), x[at + 1] = static_cast<float>(sign * b);
      x[at + 32] = static_cast<float>(sign * c), x[at + 33] = static_cast<float>(sign * d);
    };
    set_quad(0, 0, 0, 127, 127, 4, 0);   // 258: may pair
    set_quad(1, 0, 0, 127, 127, 5, 0);   // 259: must not
    set_quad(2, 1, 15, 127, 127, 3, 2);  // 259 in the last lane of the second chunk
    set_quad(3, 1, 7, 127, 127, 0, 4);   // 258
    for (index_t i = 4 * 128; i < 5 * 128; ++i) x[static_cast<std::size_t>(i)] = (i % 3 == 0) ? -127.0f : 127.0f;
    const auto o = oracle_quantize(x, 0);
    REQUIRE(o.d[0] == 1.0f);
    std::int64_t qsum = 0;
    for (const int q : o.q) qsum += q;
    for (const bool per_row : {false, true}) {
      std::vector<float> books(per_row ? static_cast<std::size_t>(n * 16) : cents.size());
      for (std::size_t i = 0; i < books.size(); ++i) books[i] = cents[i % 16];
      const auto cw = kernels::pack_codebook_weights(packed, 4, n, k, books);
      for (const auto code : k_codes) {
        INFO("sign " << sign << " code " << static_cast<int>(code) << " per_row " << per_row);
        const auto w = kernels::pack_codebook_q8_weights(cw, code);
        const oracle_book b = oracle_code(cents.data(), code);
        REQUIRE(std::max(std::abs(b.code[0]), std::abs(b.code[15])) == 127);
        std::vector<float> expect(static_cast<std::size_t>(n));
        for (index_t r = 0; r < n; ++r) {
          std::int64_t dot = 0;
          for (index_t c = 0; c < k; ++c)
            dot += std::int64_t{b.code[fields[static_cast<std::size_t>(r * k + c)]]} * o.q[static_cast<std::size_t>(c)];
          expect[static_cast<std::size_t>(r)] =
              std::fma(b.offset, static_cast<float>(qsum), b.scale * static_cast<float>(dot));
        }
        auto xq = kernels::make_q8_activations(k, 0);
        testing::for_each_isa([&](kernels::isa) {
          for (int threads : {1, 2}) {
            std::vector<float> y(static_cast<std::size_t>(n), -1.0f);
            kernels::codebook_gemv_q8(x, xq, w, y, context{threads});
            for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == expect[i]);
          }
        });
      }
    }
  }
}

TEST_CASE("codebook_gemv_q8 stays within the stated centroid and activation quantization bound") {
  // ŵ = lo + s·u (affine7, |ŵ − w| ≤ (max − min)/254) or s·c_q (symmetric8, |ŵ − w| ≤
  // max|c|/254), x̂ = d·q with |x̂ − x| ≤ d/2, so
  // |Σŵx̂ − Σwx| ≤ Σ_k e_w·|x̂_k| + Σ_k |w_k|·d/2, plus the fp32 finish: ≤ 4u·Σ(|s·c| + |lo|)·|x̂|.
  const index_t n = 16, k = 777;
  for (const auto code : k_codes)
    for (const bool centred : {true, false}) {
      INFO("code " << static_cast<int>(code) << " centred " << centred);
      std::mt19937_64 rng(5);
      std::uniform_int_distribution<int> idx(0, 15);
      std::vector<std::uint8_t> fields(static_cast<std::size_t>(n * k));
      for (auto& f : fields) f = static_cast<std::uint8_t>(idx(rng));
      std::vector<std::uint8_t> packed(packed_bytes(fields.size(), 4));
      pack_bits(fields, 4, packed);
      // Centred on zero, and one-sided (ReLU-like weights), where affine7 has the finer grid.
      const auto cents = centred ? testing::uniform_floats(16, 6, -0.2f, 0.2f) : testing::uniform_floats(16, 6, 0.05f, 0.4f);
      const auto cw = kernels::pack_codebook_weights(packed, 4, n, k, cents);
      const auto w = kernels::pack_codebook_q8_weights(cw, code);
      float lo = cents[0], hi = cents[0], amax = 0.0f;
      for (float c : cents) lo = std::min(lo, c), hi = std::max(hi, c), amax = std::max(amax, std::fabs(c));
      const double e_w = code == kernels::centroid_code::affine7 ? (double{hi} - lo) / 254.0 : amax / 254.0;
      // The decoded centroids themselves: within e_w (plus the float rounding of lo + s·u).
      for (unsigned i = 0; i < 16; ++i)
        REQUIRE(std::abs(double{w.decoded_centroid(0, i)} - cents[i]) <= e_w * (1 + 1e-5) + 4 * k_u * amax);
      const auto x = testing::normal_floats(static_cast<std::size_t>(k), 7);
      auto xq = kernels::make_q8_activations(k, 0);
      std::vector<float> yq(static_cast<std::size_t>(n)), yf(static_cast<std::size_t>(n));
      kernels::codebook_gemv_q8(x, xq, w, yq, context{1});
      kernels::codebook_gemv(x, cw, yf, context{1});
      const auto o = oracle_quantize(x, 0);
      double worst_rel = 0.0;
      for (index_t r = 0; r < n; ++r) {
        double exact = 0, bound = 0, mag = 0, mag_f = 0;
        for (index_t j = 0; j < k; ++j) {
          const auto i = static_cast<std::size_t>(j);
          const double wv = cents[fields[static_cast<std::size_t>(r * k + j)]];
          const double xh = static_cast<double>(o.d[i]) * o.q[i];
          exact += wv * x[i];
          bound += e_w * std::abs(xh) + std::abs(wv) * o.d[i] / 2;
          mag += (std::abs(wv) + e_w + 2.0 * std::abs(double{lo})) * std::abs(xh);
          mag_f += std::abs(wv * x[i]);
        }
        bound += 4 * k_u * mag;
        const auto ri = static_cast<std::size_t>(r);
        REQUIRE(std::abs(yq[ri] - exact) <= bound);
        // codebook_gemv (fp32 activations) is within (K + 2)·u·Σ|w·x| of exact.
        REQUIRE(std::abs(static_cast<double>(yq[ri]) - yf[ri]) <= bound + static_cast<double>(k + 2) * k_u * mag_f);
        worst_rel = std::max(worst_rel, std::abs(yq[ri] - exact) / mag_f);
      }
      CHECK(worst_rel < 0.02);
    }
}

TEST_CASE("integer-activation gemvs reject bad input") {
  using testing::code_of;
  std::vector<float> x(64, 1.0f);
  CHECK(code_of([&] { kernels::quantize_activations(std::span<const float>{}, 32); }) == errc::empty_input);
  CHECK(code_of([&] { kernels::make_q8_activations(0, 32); }) == errc::empty_input);
  CHECK(code_of([&] { kernels::make_q8_activations(64, 48); }) == errc::invalid_argument);
  auto xq = kernels::make_q8_activations(64, 32);
  std::vector<float> x65(65, 1.0f);
  CHECK(code_of([&] { kernels::quantize_activations(x65, xq); }) == errc::shape_mismatch);
  testing::for_each_isa([&](kernels::isa) {
    std::vector<float> bad = x;
    bad[3] = std::nanf("");
    CHECK(code_of([&] { kernels::quantize_activations(bad, xq); }) == errc::non_finite);
    bad[3] = INFINITY;
    CHECK(code_of([&] { kernels::quantize_activations(bad, xq); }) == errc::non_finite);
    bad[3] = 1.0f;
    bad[63] = -INFINITY;  // the last vector of the second block
    CHECK(code_of([&] { kernels::quantize_activations(bad, xq); }) == errc::non_finite);
    std::vector<float> bad67(67, 1.0f);  // per tensor: the non-finite value in the scalar tail
    bad67[66] = std::nanf("");
    auto xq67 = kernels::make_q8_activations(67, 0);
    CHECK(code_of([&] { kernels::quantize_activations(bad67, xq67); }) == errc::non_finite);
  });

  // int4: 16 × 64 weights, group 32.
  std::vector<std::uint8_t> nib(16 * 64 / 2, 0x21);
  std::vector<float> sc(16 * 2, 0.5f);
  const auto wq = kernels::pack_s4_weights<float>(nib, 16, 64, sc, 32);
  const auto w = kernels::pack_s4q8_weights(wq);
  std::vector<float> y(16);
  kernels::quantize_activations(x, xq);
  CHECK(code_of([&] { kernels::gemv_s4_q8(xq, w, y); }) == errc{});
  CHECK(code_of([&] { kernels::gemv_s4_q8(xq, kernels::packed_s4q8_weights{}, y); }) == errc::invalid_argument);
  {  // a corrupted pack: a group count that does not cover the padded depth, a wrong panel count
    auto bad = kernels::pack_s4q8_weights(wq);
    bad.groups = 3;
    CHECK(code_of([&] { kernels::gemv_s4_q8(xq, bad, y); }) == errc::invalid_argument);
    auto bad2 = kernels::pack_s4q8_weights(wq);
    bad2.panels = 2;
    CHECK(code_of([&] { kernels::gemv_s4_q8(xq, bad2, y); }) == errc::invalid_argument);
    auto xq_bad = kernels::make_q8_activations(64, 32);
    kernels::quantize_activations(x, xq_bad);
    xq_bad.sums32 = aligned_buffer<std::int32_t>(1);  // a truncated activation buffer
    CHECK(code_of([&] { kernels::gemv_s4_q8(xq_bad, w, y); }) == errc::invalid_argument);
  }
  std::vector<float> y15(15);
  CHECK(code_of([&] { kernels::gemv_s4_q8(xq, w, y15); }) == errc::shape_mismatch);
  auto xq65 = kernels::make_q8_activations(65, 32);
  kernels::quantize_activations(x65, xq65);
  CHECK(code_of([&] { kernels::gemv_s4_q8(xq65, w, y); }) == errc::shape_mismatch);  // packed for K = 64
  auto xq64b = kernels::make_q8_activations(64, 64);
  kernels::quantize_activations(x, xq64b);
  CHECK(code_of([&] { kernels::gemv_s4_q8(xq64b, w, y); }) == errc::invalid_argument);  // block ≠ group
  CHECK(code_of([&] { kernels::gemv_s4_q8(x65, xq, w, y); }) == errc::shape_mismatch);
  std::vector<std::int8_t> w8(16 * 64, 1);
  const auto wq8 = kernels::pack_s8_weight_only<float>(
      tensor_view<const std::int8_t, 2>(w8.data(), shape<2>{16, 64}), std::span<const float>(sc.data(), 16), 0);
  CHECK(code_of([&] { kernels::pack_s4q8_weights(wq8); }) == errc::invalid_argument);  // int8, not int4
  std::vector<float> sc_row(16, 0.5f);
  const auto wq_row = kernels::pack_s4_weights<float>(nib, 16, 40, sc_row, 0);  // group = 40 (per row)
  CHECK(code_of([&] { kernels::pack_s4q8_weights(wq_row); }) == errc::invalid_argument);

  // codebook: 4-bit indices, per-tensor codebook.
  std::vector<float> cents(16, 0.25f);
  const auto cw = kernels::pack_codebook_weights(nib, 4, 16, 64, cents);
  const auto cq = kernels::pack_codebook_q8_weights(cw);
  auto xt = kernels::make_q8_activations(64, 0);
  kernels::quantize_activations(x, xt);
  CHECK(code_of([&] { kernels::codebook_gemv_q8(xt, cq, y); }) == errc{});
  CHECK(code_of([&] { kernels::codebook_gemv_q8(xq, cq, y); }) == errc::invalid_argument);  // block 32, not per tensor
  CHECK(code_of([&] { kernels::codebook_gemv_q8(xt, cq, y15); }) == errc::shape_mismatch);
  auto xt65 = kernels::make_q8_activations(65, 0);
  kernels::quantize_activations(x65, xt65);
  CHECK(code_of([&] { kernels::codebook_gemv_q8(xt65, cq, y); }) == errc::shape_mismatch);
  CHECK(code_of([&] { kernels::codebook_gemv_q8(xt, kernels::packed_codebook_q8_weights{}, y); }) ==
        errc::invalid_argument);
  std::vector<float> cents8(8, 0.25f);
  const auto cw3 = kernels::pack_codebook_weights(nib, 3, 16, 64, cents8);
  CHECK(code_of([&] { kernels::pack_codebook_q8_weights(cw3); }) == errc::invalid_argument);  // 3-bit indices
  CHECK(code_of([&] { kernels::codebook_gemv_q8(x, xq, cq, y); }) == errc::invalid_argument);
  CHECK(code_of([&] { kernels::pack_codebook_q8_weights(cw, static_cast<kernels::centroid_code>(7)); }) ==
        errc::invalid_argument);
  auto cq_bad = kernels::pack_codebook_q8_weights(cw);
  cq_bad.code = static_cast<kernels::centroid_code>(7);  // a corrupted pack
  CHECK(code_of([&] { kernels::codebook_gemv_q8(xt, cq_bad, y); }) == errc::invalid_argument);
}
