// test_dispatch.cpp: ISA detection and selection, SHRINK_ISA parsing, and the dot kernels on every path.
#include <catch2/catch.hpp>
#include <cmath>
#include <shrink/kernels.hpp>
#include <support/isa.hpp>
#include <support/random.hpp>

namespace k = shrink::kernels;

TEST_CASE("dispatch: reference and generic are always available and the best path is available") {
  auto paths = k::available_isas();
  REQUIRE(paths.size() >= 2);
  CHECK(paths[0] == k::isa::reference);
  CHECK(paths[1] == k::isa::generic);
  CHECK(k::available(k::best_isa()));
  for (auto p : paths) CHECK(k::parse_isa(k::name(p)) == p);
}

TEST_CASE("dispatch: unknown or unavailable SHRINK_ISA names are errors listing the valid ones") {
  CHECK_THROWS_WITH(k::parse_isa("sse9"), Catch::Contains("expected one of: reference, generic"));
  CHECK_THROWS_AS(k::parse_isa("sse9"), shrink::error);
  for (const auto& i : k::k_isa_table) {
    if (k::available(i.path)) continue;
    CHECK_THROWS_WITH(k::parse_isa(i.name), Catch::Contains("available paths:"));
  }
}

TEST_CASE("dispatch: select picks the best implementation not above the forced path") {
  using fn = int (*)();
  const std::array<k::implementation<fn>, 3> impls{{
      {k::isa::reference, 0, [] { return 0; }},
      {k::isa::generic, 0, [] { return 1; }},
      {k::isa::avx512_vnni, 0, [] { return 5; }},
  }};
  {
    k::scoped_isa forced(k::isa::reference);
    CHECK(k::select(impls)() == 0);
  }
  {
    k::scoped_isa forced(k::isa::generic);
    CHECK(k::select(impls)() == 1);
  }
  // Under any path lacking avx512_vnni, the generic implementation serves.
  for (auto p : k::available_isas()) {
    k::scoped_isa forced(p);
    const int expected = p == k::isa::reference ? 0 : (p == k::isa::avx512_vnni ? 5 : 1);
    CHECK(k::select(impls)() == expected);
  }
}

TEST_CASE("dot f32: every path within the documented error bound of the exact sum") {
  for (std::size_t n : {0u, 1u, 7u, 8u, 15u, 16u, 31u, 33u, 64u, 1000u, 4099u}) {
    auto a = shrink::testing::normal_floats(n, 1 + n), b = shrink::testing::normal_floats(n, 2 + n);
    double exact = 0.0, magnitude = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      exact += static_cast<double>(a[i]) * b[i];
      magnitude += std::abs(static_cast<double>(a[i]) * b[i]);
    }
    // Any summation order in fp32: |error| <= n·u·Σ|a·b| (u = 2^-24), plus the final rounding.
    const double bound = static_cast<double>(n) * std::ldexp(1.0, -24) * magnitude + std::abs(exact) * 1e-7;
    shrink::testing::for_each_isa([&](k::isa) {
      INFO("n = " << n);
      CHECK(std::abs(static_cast<double>(k::dot(std::span<const float>(a), std::span<const float>(b))) - exact) <=
            bound + 1e-30);
    });
  }
}

TEST_CASE("dot u8s8: bit-exact on every path, including the saturating extremes") {
  for (std::size_t n : {0u, 1u, 15u, 16u, 17u, 31u, 32u, 63u, 64u, 65u, 1000u}) {
    auto a = shrink::testing::full_range<std::uint8_t>(n, 10 + n);
    auto b = shrink::testing::full_range<std::int8_t>(n, 20 + n);
    std::int32_t expected = 0;
    for (std::size_t i = 0; i < n; ++i) expected += int{a[i]} * int{b[i]};
    // All-extreme operands: pairs 255·(-128) that vpmaddubsw would saturate.
    std::vector<std::uint8_t> a_max(n, 255);
    std::vector<std::int8_t> b_min(n, -128);
    shrink::testing::for_each_isa([&](k::isa) {
      INFO("n = " << n);
      CHECK(k::dot(std::span<const std::uint8_t>(a), std::span<const std::int8_t>(b)) == expected);
      CHECK(k::dot(std::span<const std::uint8_t>(a_max), std::span<const std::int8_t>(b_min)) ==
            -32640 * static_cast<std::int32_t>(n));
    });
  }
}

TEST_CASE("dot: mismatched lengths are errors") {
  std::vector<float> a(3), b(4);
  CHECK_THROWS_AS(k::dot(std::span<const float>(a), std::span<const float>(b)), shrink::error);
}
