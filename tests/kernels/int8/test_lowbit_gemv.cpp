// test_lowbit_gemv.cpp: weight-only int8/int4 GEMV/GEMM, codebook GEMV and PQ GEMV on every ISA path against double-precision oracles on unpacked data.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <shrink/core/bits.hpp>
#include <shrink/kernels/lut_gemv.hpp>
#include <shrink/kernels/weight_only_gemv.hpp>

#include "support/isa.hpp"
#include "support/random.hpp"

using namespace shrink;

namespace {

constexpr double k_u = 5.9604644775390625e-8;  // 2^-24, fp32 unit roundoff

// fp16 bits of a float that is exactly representable in fp16 (test scales are chosen so).
std::uint16_t to_half_bits(float f) {
  const auto bits = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  const int exp = static_cast<int>((bits >> 23) & 0xFF) - 127 + 15;
  REQUIRE((exp > 0 && exp < 31));
  REQUIRE((bits & 0x1FFFu) == 0);
  return static_cast<std::uint16_t>(sign | (static_cast<std::uint32_t>(exp) << 10) | ((bits >> 13) & 0x3FFu));
}

float round_to_half_grid(float f) {  // keep 10 mantissa bits
  return std::bit_cast<float>(std::bit_cast<std::uint32_t>(f) & 0xFFFFE000u);
}

}  // namespace

TEST_CASE("half_bits_to_float decodes binary16 exactly") {
  CHECK(kernels::half_bits_to_float(0x3C00) == 1.0f);
  CHECK(kernels::half_bits_to_float(0xC000) == -2.0f);
  CHECK(kernels::half_bits_to_float(0x7BFF) == 65504.0f);
  CHECK(kernels::half_bits_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(kernels::half_bits_to_float(0x0400) == std::ldexp(1.0f, -14));
  CHECK(std::isinf(kernels::half_bits_to_float(0x7C00)));
  CHECK(std::isnan(kernels::half_bits_to_float(0x7E00)));
  CHECK(kernels::half_bits_to_float(0x3555) == 0.25f * (1.0f + 0x155 / 1024.0f));  // exp 13, mantissa 0x155
}

TEST_CASE("weight-only int8 and int4 gemv and gemm are within the stated fp32 bound on every path") {
  struct cfg {
    int bits;
    index_t m, n, k, group;
    bool f16;
  };
  const std::vector<cfg> cfgs = {{8, 1, 37, 300, 0, false}, {8, 3, 21, 257, 32, true},  {8, 2, 16, 64, 64, false},
                                 {4, 1, 19, 256, 32, false}, {4, 1, 33, 200, 64, true}, {4, 5, 9, 131, 128, false},
                                 {4, 1, 1, 7, 32, true},     {8, 1, 5, 3, 0, true},     {4, 17, 40, 96, 32, false},
                                 // 64-wide steps, 16-wide steps and a trailing 8-wide step inside one group
                                 {8, 2, 24, 1000, 0, false}, {8, 1, 9, 384, 128, true}, {4, 2, 12, 520, 128, false},
                                 {8, 1, 6, 72, 0, true},     {4, 1, 5, 1003, 0, true}};
  int seed = 0;
  for (const auto& c : cfgs) {
    ++seed;
    INFO("bits " << c.bits << " shape " << c.m << "x" << c.n << "x" << c.k << " group " << c.group << " f16 " << c.f16);
    const index_t g = c.group == 0 ? c.k : c.group;
    const index_t groups = (c.k + g - 1) / g;
    std::vector<int> wv(static_cast<std::size_t>(c.n * c.k));
    std::mt19937_64 rng(static_cast<std::uint64_t>(seed));
    const int lo = c.bits == 8 ? -128 : -8, hi = c.bits == 8 ? 127 : 7;
    std::uniform_int_distribution<int> dist(lo, hi);
    for (std::size_t i = 0; i < wv.size(); ++i) wv[i] = (i % 11 == 0) ? lo : (i % 13 == 0 ? hi : dist(rng));
    auto scales = testing::uniform_floats(static_cast<std::size_t>(c.n * groups), 50 + seed, 0.001f, 0.1f);
    for (float& s : scales) s = round_to_half_grid(s);
    const auto x = testing::normal_floats(static_cast<std::size_t>(c.m * c.k), 70 + seed);
    kernels::packed_wq_weights w;
    std::vector<std::uint16_t> half;
    for (float s : scales) half.push_back(to_half_bits(s));
    if (c.bits == 8) {
      std::vector<std::int8_t> w8(wv.begin(), wv.end());
      const tensor_view<const std::int8_t, 2> wview(w8.data(), shape<2>{c.n, c.k});
      w = c.f16 ? kernels::pack_s8_weight_only<std::uint16_t>(wview, half, c.group)
                : kernels::pack_s8_weight_only<float>(wview, scales, c.group);
    } else {
      std::vector<std::uint8_t> fields(wv.size());
      for (std::size_t i = 0; i < wv.size(); ++i) fields[i] = static_cast<std::uint8_t>(wv[i] & 0xF);
      std::vector<std::uint8_t> nib(packed_bytes(fields.size(), 4));
      pack_bits(fields, 4, nib);
      w = c.f16 ? kernels::pack_s4_weights<std::uint16_t>(nib, c.n, c.k, half, c.group)
                : kernels::pack_s4_weights<float>(nib, c.n, c.k, scales, c.group);
    }
    for (index_t i = 0; i < c.n; ++i)
      for (index_t j = 0; j < c.k; ++j) REQUIRE(w.at(i, j) == wv[static_cast<std::size_t>(i * c.k + j)]);
    // Oracle on unpacked data; bound (g + G + 8)·u·Σ|s·w·x| covers every path's summation order.
    std::vector<double> expect(static_cast<std::size_t>(c.m * c.n)), mag(expect.size());
    for (index_t i = 0; i < c.m; ++i)
      for (index_t r = 0; r < c.n; ++r) {
        double sum = 0, abs = 0;
        for (index_t j = 0; j < c.k; ++j) {
          const double t = static_cast<double>(scales[static_cast<std::size_t>(r * groups + j / g)]) *
                           wv[static_cast<std::size_t>(r * c.k + j)] * static_cast<double>(x[static_cast<std::size_t>(i * c.k + j)]);
          sum += t;
          abs += std::abs(t);
        }
        expect[static_cast<std::size_t>(i * c.n + r)] = sum;
        mag[static_cast<std::size_t>(i * c.n + r)] = abs;
      }
    const double factor = static_cast<double>(g + groups + 8) * k_u;
    std::vector<float> first;
    testing::for_each_isa([&](kernels::isa) {
      for (int threads : {1, 2}) {
        std::vector<float> y(static_cast<std::size_t>(c.m * c.n));
        kernels::weight_only_gemm(tensor_view<const float, 2>(x.data(), shape<2>{c.m, c.k}), w,
                                  tensor_view<float, 2>(y.data(), shape<2>{c.m, c.n}), context{threads});
        for (std::size_t i = 0; i < y.size(); ++i)
          REQUIRE(std::abs(static_cast<double>(y[i]) - expect[i]) <= factor * mag[i] + 1e-30);
        if (threads == 1) first = y;
        REQUIRE(y == first);  // same bytes for any thread count
        if (c.m == 1) {
          std::vector<float> yv(static_cast<std::size_t>(c.n));
          kernels::weight_only_gemv(x, w, yv, context{threads});
          REQUIRE(yv == y);
        }
      }
    });
  }
}

TEST_CASE("weight-only packing and gemv reject bad input") {
  const std::vector<std::int8_t> w8(40, 1);
  const std::vector<float> s4(4, 1.0f), s8(8, 1.0f);
  const tensor_view<const std::int8_t, 2> wv(w8.data(), shape<2>{4, 10});
  CHECK_THROWS_AS(kernels::pack_s8_weight_only<float>(wv, s4, 48), shrink::error);  // group not 32/64/128/0
  CHECK_THROWS_AS(kernels::pack_s8_weight_only<float>(wv, s8, 0), shrink::error);   // scale count
  const std::vector<float> inf_scales(4, INFINITY);
  CHECK_THROWS_AS(kernels::pack_s8_weight_only<float>(wv, inf_scales, 0), shrink::error);
  CHECK_THROWS_AS(kernels::pack_s8_weight_only<float>(tensor_view<const std::int8_t, 2>(w8.data(), shape<2>{4, 0}), s4, 0),
                  shrink::error);  // K = 0
  const std::vector<std::uint8_t> nib(10);
  CHECK_THROWS_AS(kernels::pack_s4_weights<float>(nib, 4, 10, s4, 0), shrink::error);  // 20 bytes needed
  CHECK_THROWS_AS(kernels::pack_s4_weights<float>(std::span<const std::uint8_t>(), 4, 10, s4, 0), shrink::error);
  const auto w = kernels::pack_s8_weight_only<float>(wv, s4, 0);
  std::vector<float> x(10), y(4), x9(9), y3(3);
  CHECK_NOTHROW(kernels::weight_only_gemv(x, w, y));
  try {
    kernels::weight_only_gemv(x9, w, y);
    FAIL("expected shape_mismatch");
  } catch (const shrink::error& e) {
    CHECK(e.code() == errc::shape_mismatch);
  }
  CHECK_THROWS_AS(kernels::weight_only_gemv(x, w, y3), shrink::error);
  CHECK_THROWS_AS(kernels::weight_only_gemv(x, kernels::packed_wq_weights{}, y), shrink::error);
  CHECK_THROWS_AS(kernels::weight_only_gemv(std::span<const float>(static_cast<const float*>(nullptr), 10), w, y),
                  shrink::error);
}

TEST_CASE("codebook gemv for 1 to 8 bit indices, per-tensor and per-row codebooks, on every path") {
  // Depth 109: AVX-512's 32-weight steps end at 96 with a 13-element tail; depth 123 adds
  // its single 16-weight step (96..111) before an 11-element tail.
  for (const index_t k : {index_t{8 * 13 + 5}, index_t{8 * 15 + 3}})
  for (int bits = 1; bits <= 8; ++bits)
    for (bool per_row : {false, true}) {
      const index_t n = 21;
      INFO("bits " << bits << " per_row " << per_row << " depth " << k);
      const index_t cb = index_t{1} << bits;
      std::mt19937_64 rng(static_cast<std::uint64_t>(bits * 2 + per_row));
      std::uniform_int_distribution<int> dist(0, static_cast<int>(cb - 1));
      std::vector<std::uint8_t> idx(static_cast<std::size_t>(n * k));
      for (std::size_t i = 0; i < idx.size(); ++i)
        idx[i] = static_cast<std::uint8_t>(i % 9 == 0 ? cb - 1 : dist(rng));
      const auto centroids = testing::normal_floats(static_cast<std::size_t>((per_row ? n : 1) * cb), 90 + bits);
      std::vector<std::uint8_t> packed(packed_bytes(idx.size(), bits));
      pack_bits(idx, bits, packed);
      const auto w = kernels::pack_codebook_weights(packed, bits, n, k, centroids);
      for (index_t r = 0; r < n; ++r)
        for (index_t j = 0; j < k; ++j) REQUIRE(w.index(r, j) == idx[static_cast<std::size_t>(r * k + j)]);
      const auto x = testing::normal_floats(static_cast<std::size_t>(k), 5);
      std::vector<double> expect(static_cast<std::size_t>(n)), mag(expect.size());
      for (index_t r = 0; r < n; ++r)
        for (index_t j = 0; j < k; ++j) {
          const double t = static_cast<double>(centroids[static_cast<std::size_t>((per_row ? r * cb : 0) + idx[static_cast<std::size_t>(r * k + j)])]) *
                           static_cast<double>(x[static_cast<std::size_t>(j)]);
          expect[static_cast<std::size_t>(r)] += t;
          mag[static_cast<std::size_t>(r)] += std::abs(t);
        }
      testing::for_each_isa([&](kernels::isa) {
        std::vector<float> y(static_cast<std::size_t>(n)), y2(y.size());
        kernels::codebook_gemv(x, w, y, context{1});
        kernels::codebook_gemv(x, w, y2, context{3});
        REQUIRE(y == y2);
        // each path sums in at most K/8 + 256/8 + 8 steps per lane chain; bound (K + 8)·u·Σ|t|
        for (index_t r = 0; r < n; ++r)
          REQUIRE(std::abs(y[static_cast<std::size_t>(r)] - expect[static_cast<std::size_t>(r)]) <=
                  static_cast<double>(k + 8) * k_u * mag[static_cast<std::size_t>(r)]);
      });
    }
}

TEST_CASE("codebook gemv rejects bad input") {
  const std::vector<std::uint8_t> packed(20);
  const std::vector<float> c16(16), c5(5), x10(10), x9(9);
  CHECK_THROWS_AS(kernels::pack_codebook_weights(packed, 9, 4, 10, c16), shrink::error);
  CHECK_THROWS_AS(kernels::pack_codebook_weights(packed, 4, 4, 10, c5), shrink::error);
  CHECK_THROWS_AS(kernels::pack_codebook_weights(packed, 4, 4, 0, c16), shrink::error);
  CHECK_THROWS_AS(kernels::pack_codebook_weights(std::span<const std::uint8_t>(packed).first(19), 4, 4, 10, c16),
                  shrink::error);
  const auto w = kernels::pack_codebook_weights(packed, 4, 4, 10, c16);
  std::vector<float> y(4), y5(5);
  CHECK_NOTHROW(kernels::codebook_gemv(x10, w, y));
  CHECK_THROWS_AS(kernels::codebook_gemv(x9, w, y), shrink::error);
  CHECK_THROWS_AS(kernels::codebook_gemv(x10, w, y5), shrink::error);
  CHECK_THROWS_AS(kernels::codebook_gemv(x10, kernels::packed_codebook_weights{}, y), shrink::error);
}

TEST_CASE("pq gemv equals the decoded matrix times x, bit-exact across paths") {
  const index_t n = 29, m = 6, d = 5, k = m * d;
  const auto codebooks = testing::normal_floats(static_cast<std::size_t>(m * 256 * d), 3);
  const auto codes = testing::full_range<std::uint8_t>(static_cast<std::size_t>(n * m), 4);
  const auto x = testing::normal_floats(static_cast<std::size_t>(k), 6);
  std::vector<float> lut(static_cast<std::size_t>(m * 256));
  kernels::pq_build_lut(x, codebooks, m, lut);
  // lut entries: exact dot products rounded once
  for (index_t s = 0; s < m; ++s)
    for (index_t c = 0; c < 256; c += 37) {
      double e = 0;
      for (index_t j = 0; j < d; ++j)
        e += static_cast<double>(codebooks[static_cast<std::size_t>((s * 256 + c) * d + j)]) * x[static_cast<std::size_t>(s * d + j)];
      REQUIRE(lut[static_cast<std::size_t>(s * 256 + c)] == static_cast<float>(e));
    }
  const auto packed = kernels::pack_pq_codes(tensor_view<const std::uint8_t, 2>(codes.data(), shape<2>{n, m}));
  // Oracle: decode W row by row and multiply (double), and the float-ordered LUT sum.
  std::vector<float> first;
  testing::for_each_isa([&](kernels::isa) {
    std::vector<float> y(static_cast<std::size_t>(n));
    kernels::pq_gemv(packed, lut, y, context{2});
    for (index_t r = 0; r < n; ++r) {
      float ordered = 0.0f;
      double exact = 0.0, mag = 0.0;
      for (index_t s = 0; s < m; ++s) {
        const std::uint8_t c = codes[static_cast<std::size_t>(r * m + s)];
        ordered += lut[static_cast<std::size_t>(s * 256 + c)];
        for (index_t j = 0; j < d; ++j) {
          const double t = static_cast<double>(codebooks[static_cast<std::size_t>((s * 256 + c) * d + j)]) * x[static_cast<std::size_t>(s * d + j)];
          exact += t;
          mag += std::abs(t);
        }
      }
      REQUIRE(y[static_cast<std::size_t>(r)] == ordered);
      REQUIRE(std::abs(y[static_cast<std::size_t>(r)] - exact) <= static_cast<double>(m + 2) * k_u * mag);
    }
    if (first.empty()) first = y;
    REQUIRE(y == first);
  });
  std::vector<float> y(static_cast<std::size_t>(n)), y_bad(static_cast<std::size_t>(n + 1));
  CHECK_THROWS_AS(kernels::pq_gemv(packed, std::span<const float>(lut).first(100), y), shrink::error);
  CHECK_THROWS_AS(kernels::pq_gemv(packed, lut, y_bad), shrink::error);
  CHECK_THROWS_AS(kernels::pq_build_lut(std::span<const float>(x).first(29), codebooks, m, lut), shrink::error);
  CHECK_THROWS_AS(kernels::pack_pq_codes(tensor_view<const std::uint8_t, 2>(codes.data(), shape<2>{n, 0})), shrink::error);
}
