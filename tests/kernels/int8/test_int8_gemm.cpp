// test_int8_gemm.cpp: int8 GEMM/GEMV (u8·s8, s8·s8, zero points, output stages, threads) bit-exact against an int64 oracle on every ISA path.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <shrink/kernels/int8_gemm.hpp>

#include "support/isa.hpp"
#include "support/random.hpp"

using namespace shrink;
using kernels::packed_s8_weights;

namespace {

struct shape3 {
  index_t m, n, k;
};

// Shapes with odd K, K not a multiple of any vector width, M and N tails, several A blocks.
const std::vector<shape3> k_shapes = {{1, 1, 1},   {1, 17, 3},   {1, 33, 65},  {2, 16, 4},   {3, 31, 127},
                                      {5, 47, 33}, {16, 20, 100}, {17, 35, 259}, {9, 16, 64}, {40, 50, 513},
                                      {70, 19, 4101}, {1, 40, 1030}, {1, 16, 2048}, {13, 48, 36}, {25, 64, 8},
                                      // AVX2 widened-chunk path: 6-row tiles, K chunks of 512 (+4
                                      // tail), several 96-row blocks with a short last one.
                                      {6, 16, 260}, {7, 33, 516}, {200, 17, 40}, {131, 20, 300}};

template <class T>
std::vector<T> data_with_extremes(std::size_t n, std::uint64_t seed) {
  auto v = testing::full_range<T>(n, seed);
  // Runs of the extremes so adjacent pairs/quads are all at the saturation corner.
  for (std::size_t i = 0; i < n; ++i) {
    if (i % 7 < 3) v[i] = (seed & 1) ? std::numeric_limits<T>::max() : std::numeric_limits<T>::min();
  }
  return v;
}

// Independent oracle: straight from the definition, in int64, on unpacked data.
template <class A>
std::vector<std::int64_t> oracle(const std::vector<A>& a, std::int32_t za, const std::vector<std::int8_t>& w,
                                 std::int32_t zw, shape3 s) {
  std::vector<std::int64_t> c(static_cast<std::size_t>(s.m * s.n));
  for (index_t i = 0; i < s.m; ++i)
    for (index_t j = 0; j < s.n; ++j) {
      std::int64_t sum = 0;
      for (index_t k = 0; k < s.k; ++k)
        sum += (static_cast<std::int64_t>(a[i * s.k + k]) - za) * (static_cast<std::int64_t>(w[j * s.k + k]) - zw);
      c[i * s.n + j] = sum;
    }
  return c;
}

template <class A>
tensor_view<const A, 2> view(const std::vector<A>& v, index_t r, index_t c) {
  return tensor_view<const A, 2>(v.data(), shape<2>{r, c});
}

}  // namespace

TEST_CASE("pack_s8_weights keeps every weight and pads with zeros") {
  const shape3 s{19, 0, 7};
  const auto w = testing::full_range<std::int8_t>(static_cast<std::size_t>(s.m * s.k), 3);
  const auto p = kernels::pack_s8_weights(view(w, s.m, s.k), -3);
  CHECK(p.panels == 2);
  CHECK(p.depth_padded == 8);
  for (index_t n = 0; n < 32; ++n)
    for (index_t k = 0; k < 8; ++k) {
      const std::int8_t expect = (n < s.m && k < s.k) ? w[static_cast<std::size_t>(n * s.k + k)] : 0;
      REQUIRE(p.at(n, k) == expect);
    }
  for (index_t n = 0; n < s.m; ++n) {
    std::int32_t sum = 0;
    for (index_t k = 0; k < s.k; ++k) sum += w[static_cast<std::size_t>(n * s.k + k)];
    CHECK(p.column_sums[static_cast<std::size_t>(n)] == sum);
  }
}

TEST_CASE("int8 gemm u8 x s8 is bit-exact with the int64 oracle on every path") {
  const std::int32_t a_zeros[] = {0, 128, 255};
  const std::int32_t w_zeros[] = {0, -128, 127, 5};
  int variant = 0;
  for (const auto& s : k_shapes) {
    const auto a = data_with_extremes<std::uint8_t>(static_cast<std::size_t>(s.m * s.k), 100 + variant);
    const auto w = data_with_extremes<std::int8_t>(static_cast<std::size_t>(s.n * s.k), 200 + variant);
    const std::int32_t za = a_zeros[variant % 3], zw = w_zeros[variant % 4];
    ++variant;
    const auto packed = kernels::pack_s8_weights(view(w, s.n, s.k), zw);
    const auto expect = oracle(a, za, w, zw, s);
    std::vector<std::byte> ws(kernels::int8_gemm_workspace_bytes(s.m, s.k));
    testing::for_each_isa([&](kernels::isa) {
      for (int threads : {1, 2, 3}) {
        INFO("shape " << s.m << "x" << s.n << "x" << s.k << " za " << za << " zw " << zw << " threads " << threads);
        std::vector<std::int32_t> c(static_cast<std::size_t>(s.m * s.n), 0x5a5a5a5a);
        kernels::int8_gemm(view(a, s.m, s.k), za, packed, tensor_view<std::int32_t, 2>(c.data(), shape<2>{s.m, s.n}),
                           ws, context{threads});
        for (std::size_t i = 0; i < c.size(); ++i) REQUIRE(static_cast<std::int64_t>(c[i]) == expect[i]);
      }
    });
  }
}

TEST_CASE("int8 gemm s8 x s8 via +128 compensation is bit-exact") {
  int variant = 0;
  for (const auto& s : k_shapes) {
    const auto a = data_with_extremes<std::int8_t>(static_cast<std::size_t>(s.m * s.k), 300 + variant);
    const auto w = data_with_extremes<std::int8_t>(static_cast<std::size_t>(s.n * s.k), 400 + variant);
    const std::int32_t za = (variant % 3 == 0) ? -128 : (variant % 3 == 1 ? 0 : 127);
    ++variant;
    const auto packed = kernels::pack_s8_weights(view(w, s.n, s.k));
    const auto expect = oracle(a, za, w, 0, s);
    std::vector<std::byte> ws(kernels::int8_gemm_workspace_bytes(s.m, s.k));
    testing::for_each_isa([&](kernels::isa) {
      std::vector<std::int32_t> c(static_cast<std::size_t>(s.m * s.n));
      kernels::int8_gemm(view(a, s.m, s.k), za, packed, tensor_view<std::int32_t, 2>(c.data(), shape<2>{s.m, s.n}),
                         ws);
      for (std::size_t i = 0; i < c.size(); ++i) REQUIRE(static_cast<std::int64_t>(c[i]) == expect[i]);
    });
  }
}

TEST_CASE("int8 gemv with a strided output and the span overload") {
  const index_t n = 37, k = 301;
  const auto x = data_with_extremes<std::uint8_t>(k, 5);
  const auto w = data_with_extremes<std::int8_t>(static_cast<std::size_t>(n * k), 6);
  const auto packed = kernels::pack_s8_weights(view(w, n, k));
  const auto expect = oracle(x, 17, w, 0, {1, n, k});
  std::vector<std::byte> ws(kernels::int8_gemm_workspace_bytes(1, k));
  testing::for_each_isa([&](kernels::isa) {
    std::vector<std::int32_t> y(static_cast<std::size_t>(n));
    kernels::int8_gemv(x, 17, packed, y, ws);
    for (index_t i = 0; i < n; ++i) REQUIRE(y[static_cast<std::size_t>(i)] == expect[static_cast<std::size_t>(i)]);
    std::vector<std::int32_t> strided(static_cast<std::size_t>(2 * n), -7);
    kernels::int8_gemm(view(x, 1, k), 17, packed,
                       tensor_view<std::int32_t, 2>(strided.data(), shape<2>{1, n}, {2 * n, 2}), ws);
    for (index_t i = 0; i < n; ++i) {
      REQUIRE(strided[static_cast<std::size_t>(2 * i)] == expect[static_cast<std::size_t>(i)]);
      REQUIRE(strided[static_cast<std::size_t>(2 * i + 1)] == -7);
    }
  });
}

TEST_CASE("int8 gemm requantized int8 and uint8 outputs follow TFLite's output stage") {
  const shape3 s{7, 21, 45};
  const auto a = data_with_extremes<std::uint8_t>(static_cast<std::size_t>(s.m * s.k), 9);
  const auto w = data_with_extremes<std::int8_t>(static_cast<std::size_t>(s.n * s.k), 10);
  const auto packed = kernels::pack_s8_weights(view(w, s.n, s.k));
  const auto acc = oracle(a, 100, w, 0, s);
  std::vector<quant::fixed_point_multiplier> per_channel;
  std::vector<std::int32_t> bias;
  for (index_t j = 0; j < s.n; ++j) {
    per_channel.push_back(quant::quantize_multiplier(std::ldexp(1.0, -12) * (1.0 + 0.37 * static_cast<double>(j))));
    bias.push_back(static_cast<std::int32_t>(j * 1000 - 9000));
  }
  const std::vector<quant::fixed_point_multiplier> per_tensor = {quant::quantize_multiplier(0.0003)};
  std::vector<std::byte> ws(kernels::int8_gemm_workspace_bytes(s.m, s.k));
  for (bool channel : {false, true}) {
    kernels::requantize_stage st;
    st.multipliers = channel ? std::span<const quant::fixed_point_multiplier>(per_channel)
                             : std::span<const quant::fixed_point_multiplier>(per_tensor);
    st.bias = bias;
    st.zero_point = -5;
    const auto [lo, hi] = quant::activation_range(quant::activation::relu, 0.1f, -5, -128, 127);
    st.clamp_min = lo;
    st.clamp_max = hi;
    testing::for_each_isa([&](kernels::isa) {
      std::vector<std::int8_t> out(static_cast<std::size_t>(s.m * s.n));
      kernels::int8_gemm(view(a, s.m, s.k), 100, packed, st, tensor_view<std::int8_t, 2>(out.data(), shape<2>{s.m, s.n}),
                         ws);
      for (index_t i = 0; i < s.m; ++i)
        for (index_t j = 0; j < s.n; ++j) {
          const auto mul = st.multipliers[channel ? static_cast<std::size_t>(j) : 0];
          // Oracle: exact accumulator, then the gemmlowp-validated requantize.
          const std::int32_t e = quant::requantize(static_cast<std::int32_t>(acc[static_cast<std::size_t>(i * s.n + j)]),
                                                   bias[static_cast<std::size_t>(j)], mul, -5, lo, hi);
          REQUIRE(out[static_cast<std::size_t>(i * s.n + j)] == e);
          REQUIRE(e >= -5);  // ReLU in the quantized domain
        }
    });
    st.zero_point = 128;
    st.clamp_min = std::numeric_limits<std::int32_t>::min();
    st.clamp_max = std::numeric_limits<std::int32_t>::max();
    testing::for_each_isa([&](kernels::isa) {
      std::vector<std::uint8_t> out(static_cast<std::size_t>(s.m * s.n));
      kernels::int8_gemm(view(a, s.m, s.k), 100, packed, st,
                         tensor_view<std::uint8_t, 2>(out.data(), shape<2>{s.m, s.n}), ws);
      for (index_t i = 0; i < s.m; ++i)
        for (index_t j = 0; j < s.n; ++j) {
          const auto mul = st.multipliers[channel ? static_cast<std::size_t>(j) : 0];
          const std::int32_t e = quant::requantize(static_cast<std::int32_t>(acc[static_cast<std::size_t>(i * s.n + j)]),
                                                   bias[static_cast<std::size_t>(j)], mul, 128, 0, 255);
          REQUIRE(out[static_cast<std::size_t>(i * s.n + j)] == e);
        }
    });
  }
}

TEST_CASE("int8 gemm dequantized fp32 output is within 2 ulp of the exact value") {
  const shape3 s{6, 19, 77};
  const auto a = data_with_extremes<std::uint8_t>(static_cast<std::size_t>(s.m * s.k), 12);
  const auto w = data_with_extremes<std::int8_t>(static_cast<std::size_t>(s.n * s.k), 13);
  const auto packed = kernels::pack_s8_weights(view(w, s.n, s.k), 3);
  const auto acc = oracle(a, 7, w, 3, s);
  std::vector<float> scales, bias;
  for (index_t j = 0; j < s.n; ++j) {
    scales.push_back(0.001f * static_cast<float>(j + 1));
    bias.push_back(0.5f * static_cast<float>(j) - 3.0f);
  }
  kernels::dequantize_stage st{scales, bias, -1e30f, 1e30f};
  std::vector<std::byte> ws(kernels::int8_gemm_workspace_bytes(s.m, s.k));
  testing::for_each_isa([&](kernels::isa) {
    std::vector<float> y(static_cast<std::size_t>(s.m * s.n));
    kernels::int8_gemm(view(a, s.m, s.k), 7, packed, st, tensor_view<float, 2>(y.data(), shape<2>{s.m, s.n}), ws);
    for (index_t i = 0; i < s.m; ++i)
      for (index_t j = 0; j < s.n; ++j) {
        const double exact = static_cast<double>(acc[static_cast<std::size_t>(i * s.n + j)]) *
                                 static_cast<double>(scales[static_cast<std::size_t>(j)]) +
                             static_cast<double>(bias[static_cast<std::size_t>(j)]);
        REQUIRE(std::abs(y[static_cast<std::size_t>(i * s.n + j)] - exact) <= 2 * std::ldexp(std::abs(exact), -24) + 1e-30);
      }
  });
}

TEST_CASE("int8 gemm rejects bad input") {
  const auto w = testing::full_range<std::int8_t>(40, 1);
  const auto packed = kernels::pack_s8_weights(view(w, 4, 10));
  const auto a = testing::full_range<std::uint8_t>(30, 2);
  std::vector<std::int32_t> c(12);
  std::vector<std::byte> ws(kernels::int8_gemm_workspace_bytes(3, 10));
  auto code_of = [](auto&& fn) {
    try {
      fn();
    } catch (const shrink::error& e) {
      return e.code();
    }
    return static_cast<errc>(0);
  };
  const tensor_view<std::int32_t, 2> out(c.data(), shape<2>{3, 4});
  // depth mismatch (packed weight used with the wrong shape)
  CHECK(code_of([&] { kernels::int8_gemm(view(a, 3, 9), 0, packed, tensor_view<std::int32_t, 2>(c.data(), shape<2>{3, 4}), ws); }) ==
        errc::shape_mismatch);
  // output shape mismatch
  CHECK(code_of([&] { kernels::int8_gemm(view(a, 3, 10), 0, packed, tensor_view<std::int32_t, 2>(c.data(), shape<2>{3, 3}), ws); }) ==
        errc::shape_mismatch);
  // K = 0
  CHECK(code_of([&] { (void)kernels::pack_s8_weights(tensor_view<const std::int8_t, 2>(w.data(), shape<2>{4, 0})); }) ==
        errc::empty_input);
  CHECK(code_of([&] {
          kernels::int8_gemm(tensor_view<const std::uint8_t, 2>(a.data(), shape<2>{3, 0}), 0, packed, out, ws);
        }) == errc::empty_input);
  // null pointers with non-zero sizes
  CHECK_THROWS_AS(kernels::int8_gemm(tensor_view<const std::uint8_t, 2>(nullptr, shape<2>{3, 10}), 0, packed, out, ws),
                  shrink::error);
  CHECK_THROWS_AS(kernels::int8_gemm(view(a, 3, 10), 0, packed, tensor_view<std::int32_t, 2>(nullptr, shape<2>{3, 4}), ws),
                  shrink::error);
  CHECK_THROWS_AS(kernels::pack_s8_weights(tensor_view<const std::int8_t, 2>(nullptr, shape<2>{4, 10})), shrink::error);
  // workspace too small, or null
  CHECK(code_of([&] { kernels::int8_gemm(view(a, 3, 10), 0, packed, out, std::span<std::byte>(ws).first(10)); }) ==
        errc::out_of_range);
  CHECK(code_of([&] { kernels::int8_gemm(view(a, 3, 10), 0, packed, out, std::span<std::byte>()); }) == errc::out_of_range);
  // zero points out of range
  CHECK(code_of([&] { kernels::int8_gemm(view(a, 3, 10), 256, packed, out, ws); }) == errc::out_of_range);
  CHECK(code_of([&] { (void)kernels::pack_s8_weights(view(w, 4, 10), 128); }) == errc::out_of_range);
  // an empty (default) packed weight
  CHECK(code_of([&] { kernels::int8_gemm(view(a, 3, 10), 0, packed_s8_weights{}, out, ws); }) == errc::invalid_argument);
  // multipliers out of range / wrong count / bias count
  std::vector<std::int8_t> o8(12);
  const tensor_view<std::int8_t, 2> out8(o8.data(), shape<2>{3, 4});
  const std::vector<quant::fixed_point_multiplier> bad = {{1 << 30, 40}};
  const std::vector<quant::fixed_point_multiplier> two = {{1 << 30, 0}, {1 << 30, 0}};
  const std::vector<quant::fixed_point_multiplier> one = {{1 << 30, 0}};
  kernels::requantize_stage st{bad, {}, 0, -128, 127};
  CHECK(code_of([&] { kernels::int8_gemm(view(a, 3, 10), 0, packed, st, out8, ws); }) == errc::out_of_range);
  st.multipliers = two;
  CHECK(code_of([&] { kernels::int8_gemm(view(a, 3, 10), 0, packed, st, out8, ws); }) == errc::shape_mismatch);
  st.multipliers = one;
  const std::vector<std::int32_t> bias3(3);
  st.bias = bias3;
  CHECK(code_of([&] { kernels::int8_gemm(view(a, 3, 10), 0, packed, st, out8, ws); }) == errc::shape_mismatch);
  st.bias = {};
  st.zero_point = 300;
  CHECK(code_of([&] { kernels::int8_gemm(view(a, 3, 10), 0, packed, st, out8, ws); }) == errc::out_of_range);
  const std::vector<float> nan_scale = {std::nanf("")};
  std::vector<float> of(12);
  CHECK(code_of([&] {
          kernels::int8_gemm(view(a, 3, 10), 0, packed, kernels::dequantize_stage{nan_scale, {}},
                             tensor_view<float, 2>(of.data(), shape<2>{3, 4}), ws);
        }) == errc::non_finite);
}

namespace {

// Activations in [0, 127] with runs of 127 against weight runs of -128 / 127: the largest
// vpmaddubsw pair sums the u7 fast path can meet (127·128·2 = 32512 < 32767).
std::vector<std::uint8_t> u7_activations(std::size_t n, std::uint64_t seed) {
  auto v = testing::full_range<std::uint8_t>(n, seed);
  for (std::size_t i = 0; i < n; ++i) v[i] = (i % 5 < 2) ? 127 : static_cast<std::uint8_t>(v[i] & 0x7F);
  return v;
}

}  // namespace

TEST_CASE("int8 gemm with activations all <= 127 (reduce_range fast path) is bit-exact") {
  const std::vector<shape3> shapes = {{2, 16, 4}, {3, 17, 5}, {6, 33, 67}, {13, 48, 36}, {40, 50, 513}, {1, 20, 9}};
  int variant = 0;
  for (const auto& s : shapes) {
    const auto a = u7_activations(static_cast<std::size_t>(s.m * s.k), 500 + variant);
    auto w = data_with_extremes<std::int8_t>(static_cast<std::size_t>(s.n * s.k), 600 + 2 * variant);  // runs of -128
    const std::int32_t za = variant % 2 ? 127 : 0, zw = variant % 3 == 0 ? 3 : 0;
    ++variant;
    const auto packed = kernels::pack_s8_weights(view(w, s.n, s.k), zw);
    const auto expect = oracle(a, za, w, zw, s);
    std::vector<std::byte> ws(kernels::int8_gemm_workspace_bytes(s.m, s.k));
    testing::for_each_isa([&](kernels::isa) {
      INFO("shape " << s.m << "x" << s.n << "x" << s.k);
      std::vector<std::int32_t> c(static_cast<std::size_t>(s.m * s.n));
      kernels::int8_gemm(view(a, s.m, s.k), za, packed, tensor_view<std::int32_t, 2>(c.data(), shape<2>{s.m, s.n}), ws,
                         context{2});
      for (std::size_t i = 0; i < c.size(); ++i) REQUIRE(static_cast<std::int64_t>(c[i]) == expect[i]);
    });
  }
}

TEST_CASE("int8 gemm s8 activations all negative (u7 after the +128 shift) is bit-exact") {
  // s8 activations in [-128, -1] become [0, 127] after the +128 shift, so they take the same
  // reduce_range kernel; checked against the oracle on the original s8 values.
  const shape3 s{9, 21, 45};
  auto a = data_with_extremes<std::int8_t>(static_cast<std::size_t>(s.m * s.k), 801);  // seed odd: runs of 127
  for (auto& v : a) v = static_cast<std::int8_t>(v < 0 ? v : -1 - v);  // map into [-128, -1]
  const auto w = data_with_extremes<std::int8_t>(static_cast<std::size_t>(s.n * s.k), 802);
  const auto packed = kernels::pack_s8_weights(view(w, s.n, s.k));
  const auto expect = oracle(a, -7, w, 0, s);
  std::vector<std::byte> ws(kernels::int8_gemm_workspace_bytes(s.m, s.k));
  testing::for_each_isa([&](kernels::isa) {
    std::vector<std::int32_t> c(static_cast<std::size_t>(s.m * s.n));
    kernels::int8_gemm(view(a, s.m, s.k), -7, packed, tensor_view<std::int32_t, 2>(c.data(), shape<2>{s.m, s.n}), ws);
    for (std::size_t i = 0; i < c.size(); ++i) REQUIRE(static_cast<std::int64_t>(c[i]) == expect[i]);
  });
}

TEST_CASE("int8 gemm with one activation of 128 to 255 among 127s avoids the saturating kernel") {
  // All activations 127 except one in the last row (128, 200 or 255) next to a 127, weights
  // 127: that vpmaddubsw pair (200·127 + 127·127 = 41529, 255·127 + 127·127 = 48514) would
  // saturate at 32767, so choosing the u7 kernel would show up as a wrong sum. 128 (32385)
  // would not saturate but is still outside [0, 127] and must take the exact path.
  for (const std::uint8_t big : {std::uint8_t{128}, std::uint8_t{200}, std::uint8_t{255}}) {
    const shape3 s{13, 35, 70};
    std::vector<std::uint8_t> a(static_cast<std::size_t>(s.m * s.k), 127);
    a[static_cast<std::size_t>((s.m - 1) * s.k + 2 * 17)] = big;  // last row only: the scan must reach it
    std::vector<std::int8_t> w(static_cast<std::size_t>(s.n * s.k), 127);
    w[5] = -128;
    const auto packed = kernels::pack_s8_weights(view(w, s.n, s.k));
    const auto expect = oracle(a, 0, w, 0, s);
    // The expectation written out for the last row: 69 products 127·127 and one big·127.
    CHECK(expect[static_cast<std::size_t>((s.m - 1) * s.n + 1)] == 69 * 127 * 127 + std::int64_t{big} * 127);
    std::vector<std::byte> ws(kernels::int8_gemm_workspace_bytes(s.m, s.k));
    testing::for_each_isa([&](kernels::isa) {
      INFO("big activation " << int(big));
      std::vector<std::int32_t> c(static_cast<std::size_t>(s.m * s.n));
      kernels::int8_gemm(view(a, s.m, s.k), 0, packed, tensor_view<std::int32_t, 2>(c.data(), shape<2>{s.m, s.n}), ws);
      for (std::size_t i = 0; i < c.size(); ++i) REQUIRE(static_cast<std::int64_t>(c[i]) == expect[i]);
    });
  }
}

#if SHRINK_HAS_X86_PATHS
TEST_CASE("avx2 int8 micro-kernels against the scalar tile, and vpmaddubsw saturating on 255") {
  if (!kernels::available(kernels::isa::avx2)) return;
  using namespace kernels::int8_detail;
  const index_t quads = 37, k4 = 4 * quads;
  const auto w = data_with_extremes<std::int8_t>(static_cast<std::size_t>(16 * k4), 700);
  const auto packed = kernels::pack_s8_weights(view(w, 16, k4));
  // u7 kernel on activations <= 127: equal to the scalar tile for every row count.
  const auto a7 = u7_activations(static_cast<std::size_t>(6 * k4), 701);
  for (index_t rows = 1; rows <= 6; ++rows) {
    std::vector<std::int32_t> got(96), want(96);
    tile_avx2_u7(a7.data(), k4, rows, packed.panel(0), quads, got.data());
    tile_reference(a7.data(), k4, rows, packed.panel(0), quads, want.data());
    for (index_t i = 0; i < rows * 16; ++i) REQUIRE(got[static_cast<std::size_t>(i)] == want[static_cast<std::size_t>(i)]);
  }
  // ...and wrong on full-range activations (why run() must check before choosing it).
  std::vector<std::uint8_t> a255(static_cast<std::size_t>(k4), 255);
  std::vector<std::int32_t> got(16), want(16);
  std::vector<std::int8_t> w127(static_cast<std::size_t>(16 * k4), 127);
  const auto p127 = kernels::pack_s8_weights(view(w127, 16, k4));
  tile_avx2_u7(a255.data(), k4, 1, p127.panel(0), quads, got.data());
  tile_reference(a255.data(), k4, 1, p127.panel(0), quads, want.data());
  CHECK(want[0] == 255 * 127 * k4);
  CHECK(got[0] == 2 * 32767 * quads);  // each vpmaddubsw pair saturated
  // Widened-chunk kernel: widen then multiply, with and without accumulation, equals the
  // scalar tile (the activations as int16, as run() lays them out).
  const auto a8 = data_with_extremes<std::uint8_t>(static_cast<std::size_t>(6 * k4), 702);
  std::vector<std::int16_t> a16(a8.begin(), a8.end());
  alignas(64) std::int16_t wide[4 * 37 * 16];
  widen_panel_avx2(packed.panel(0), quads, wide);
  for (index_t c = 0; c < 16; ++c)
    for (index_t k = 0; k < k4; ++k) REQUIRE(wide[(k / 2) * 32 + 2 * c + k % 2] == packed.at(c, k));
  for (index_t rows = 1; rows <= 6; ++rows) {
    alignas(64) std::int32_t acc[96];
    std::vector<std::int32_t> ref(96);
    tile_avx2_wide(a16.data(), k4, rows, wide, 2 * quads, acc, false);
    tile_avx2_wide(a16.data(), k4, rows, wide, 2 * quads, acc, true);  // adds the same sums again
    tile_reference(a8.data(), k4, rows, packed.panel(0), quads, ref.data());
    for (index_t i = 0; i < rows * 16; ++i)
      REQUIRE(acc[i] == static_cast<std::int32_t>(2u * static_cast<std::uint32_t>(ref[static_cast<std::size_t>(i)])));
  }
}
#endif
