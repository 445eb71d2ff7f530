// test_quantize_paths.cpp: every ISA path against the scalar reference and the ONNX formula on awkward shapes, and fully written (deterministic) storage bytes.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <shrink/quant.hpp>
#include <string>
#include <vector>

#include "support/isa.hpp"
#include "support/random.hpp"
#include "onnx_oracle.hpp"

using namespace shrink;
using quant::granularity;
using quant::options;
using quant::scheme;

namespace {

// Round half to even and ONNX QuantizeLinear, written out in onnx_oracle.hpp.
using shrink::testing::onnx_quantize;
using shrink::testing::round_half_even;

// Random weights with planted runs along each row, cycling every `run` values: an all-equal
// run, an all-zero run, a run of exact ties for a power-of-two scale (amax 7.5 / 16 gives
// the int4 symmetric scale 1/16; the other values are odd multiples of 1/32), then random.
std::vector<float> awkward(index_t rows, index_t cols, index_t run, std::uint64_t seed) {
  auto x = testing::normal_floats(static_cast<std::size_t>(rows * cols), seed);
  for (index_t r = 0; r < rows; ++r)
    for (index_t c0 = 0, k = 0; c0 < cols; c0 += run, ++k) {
      const index_t n = std::min(run, cols - c0);
      float* g = x.data() + r * cols + c0;
      switch (k % 4) {
        case 0:
          for (index_t i = 0; i < n; ++i) g[i] = -1.25f;
          break;
        case 1:
          for (index_t i = 0; i < n; ++i) g[i] = 0.0f;
          break;
        case 2:
          for (index_t i = 0; i < n; ++i) g[i] = static_cast<float>(2 * (i % 15) - 15) / 32.0f;
          g[0] = 7.5f / 16.0f;
          break;
        default: break;
      }
    }
  return x;
}

bool same_bytes(const quant::quantized& a, const quant::quantized& b) {
  return a.codes().size() == b.codes().size() && a.scales().size() == b.scales().size() &&
         std::memcmp(a.codes().data(), b.codes().data(), a.codes().size()) == 0 &&
         std::memcmp(a.scales().data(), b.scales().data(), a.scales().size_bytes()) == 0 &&
         std::memcmp(a.zero_points().data(), b.zero_points().data(), a.zero_points().size_bytes()) == 0;
}

struct shape2 {
  index_t rows, cols;
};
// Odd lengths, lengths just off the vector widths (8, 32) and group sizes, and rows long
// enough for the eight-groups-at-a-time path with a short last group.
const shape2 k_shapes[] = {{3, 1}, {5, 7}, {4, 31}, {3, 33}, {2, 65}, {6, 255}, {2, 1100}, {9, 1024}};

std::vector<options> all_options() {
  std::vector<options> out;
  const scheme schemes[] = {quant::k_int4_symmetric, quant::k_uint4_affine,    quant::k_qint8_symmetric, quant::k_quint8_affine,
                            quant::k_int8_restricted, scheme::affine(2, true), scheme::affine(3, false),  scheme::affine(5, true),
                            scheme::symmetric_range(4, false)};
  for (const scheme& s : schemes) {
    out.push_back({s, granularity::per_tensor()});
    out.push_back({s, granularity::per_channel(0)});
    out.push_back({s, granularity::per_channel(-1)});
    for (index_t gs : {32, 64, 128, 48, 7}) out.push_back({s, granularity::per_group(gs)});
  }
  return out;
}

std::string describe(const options& o, shape2 sh) {
  return "bits " + std::to_string(o.quant_scheme.bits) + (o.quant_scheme.is_signed ? " signed" : " unsigned") +
         (o.quant_scheme.symmetric ? " symmetric" : " affine") + " kind " + std::to_string(static_cast<int>(o.quant_granularity.kind)) +
         " axis " + std::to_string(o.quant_granularity.axis) + " group " + std::to_string(o.quant_granularity.group_size) + " shape " +
         std::to_string(sh.rows) + "x" + std::to_string(sh.cols);
}

}  // namespace

TEST_CASE("every ISA path gives the reference path's bytes and ONNX codes on awkward shapes") {
  const auto opts = all_options();
  for (const shape2 sh : k_shapes) {
    for (const options& o : opts) {
      const index_t run = o.quant_granularity.group_size > 0 ? o.quant_granularity.group_size : 32;
      const auto x = awkward(sh.rows, sh.cols, run, static_cast<std::uint64_t>(sh.rows * 7919 + sh.cols));
      const tensor_view<const float, 2> v(x.data(), shape<2>{sh.rows, sh.cols});
      quant::quantized ref;
      {
        kernels::scoped_isa forced(kernels::isa::reference);
        ref = quant::quantize(v, o);
      }
      INFO(describe(o, sh));
      // The reference path's codes are ONNX's for its own scales (which test_quantize.cpp
      // checks against PyTorch's observer formulas).
      for (index_t r = 0; r < sh.rows; ++r)
        for (index_t c = 0; c < sh.cols; ++c) {
          const auto p = static_cast<std::size_t>(ref.param_index(r, c));
          REQUIRE(ref.code(r, c) == onnx_quantize(x[static_cast<std::size_t>(r * sh.cols + c)], ref.scales()[p], ref.zero_points()[p],
                                                  o.quant_scheme.qmin(), o.quant_scheme.qmax()));
        }
      testing::for_each_isa([&](kernels::isa) { REQUIRE(same_bytes(quant::quantize(v, o), ref)); });
    }
  }
}

TEST_CASE("every storage byte is written: results over garbage equal fresh ones, run after run") {
  // quantize allocates its result without zeroing; a byte it forgot (row padding: the high
  // nibble after an odd int4 row, the last int2 byte) would show up as garbage here.
  auto check = [](const std::vector<float>& x, shape2 sh, const options& o, std::span<const quant::params> given) {
    const tensor_view<const float, 2> v(x.data(), shape<2>{sh.rows, sh.cols});
    INFO(describe(o, sh) << " given " << given.size());
    const auto first = given.empty() ? quant::quantize(v, o) : quant::quantize(v, o, given);
    const auto second = given.empty() ? quant::quantize(v, o) : quant::quantize(v, o, given);
    REQUIRE(same_bytes(first, second));
    quant::quantized dirty = first;
    for (std::uint8_t& b : dirty.codes()) b = 0xa5;
    for (float& s : dirty.scales()) s = std::numeric_limits<float>::quiet_NaN();
    for (std::int32_t& z : dirty.zero_points()) z = -12345;
    quant::quantize_into(v, o, given, dirty);
    REQUIRE(same_bytes(dirty, first));
  };
  testing::for_each_isa([&](kernels::isa) {
    for (const shape2 sh : k_shapes) {
      const auto x = awkward(sh.rows, sh.cols, 32, static_cast<std::uint64_t>(sh.cols));
      for (const options& o : all_options()) check(x, sh, o, {});
      // The other encoders: non-default rounding, the clamp policy (with an Inf and a NaN),
      // and given parameters.
      for (const quant::rounding rm : {quant::rounding::floor, quant::rounding::stochastic, quant::rounding::half_away_from_zero})
        check(x, sh, options{quant::k_int4_symmetric, granularity::per_group(32), rm, 7}, {});
      auto bad = x;
      bad[0] = std::numeric_limits<float>::infinity();
      bad.back() = std::numeric_limits<float>::quiet_NaN();
      check(bad, sh,
            options{quant::k_uint4_affine, granularity::per_channel(0), quant::rounding::half_even, 0, quant::non_finite_policy::clamp},
            {});
      const std::vector<quant::params> one{{0.05f, 3}};
      check(x, sh, options{scheme::affine(2, false), granularity::per_tensor()}, one);
      check(x, sh, options{quant::k_quint8_affine, granularity::per_tensor()}, one);
    }
  });
}

TEST_CASE("codes at the saturation ends and exact ties per group of 32 on every path") {
  // One row of eight groups of 32 (the eight-at-a-time path) and a short ninth: each group
  // holds exact ties at scale 1/16 (int4 symmetric: amax 7.5/16) and values far beyond the
  // range of the groups' neighbours.
  std::vector<float> x(9 * 32 + 5);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(i % 16) - 8) / 16.0f + 1.0f / 32.0f;
  for (std::size_t g = 0; g < x.size(); g += 32) x[g] = (g / 32) % 2 == 0 ? 7.5f / 16.0f : -7.5f / 16.0f;
  const tensor_view<const float, 2> v(x.data(), shape<2>{1, static_cast<index_t>(x.size())});
  testing::for_each_isa([&](kernels::isa) {
    for (const scheme& s : {quant::k_int4_symmetric, quant::k_uint4_affine, quant::k_qint8_symmetric}) {
      const auto q = quant::quantize(v, options{s, granularity::per_group(32)});
      for (index_t c = 0; c < static_cast<index_t>(x.size()); ++c) {
        const auto p = static_cast<std::size_t>(q.param_index(0, c));
        REQUIRE(q.code(0, c) == onnx_quantize(x[static_cast<std::size_t>(c)], q.scales()[p], q.zero_points()[p], s.qmin(), s.qmax()));
      }
      if (s == quant::k_int4_symmetric) {
        REQUIRE(q.scales()[0] == 1.0f / 16.0f);
        CHECK(q.code(0, 1) == -6);   // -13/32 / (1/16) = -6.5: the tie goes to the even -6
        CHECK(q.code(0, 2) == -6);   // -11/32 / (1/16) = -5.5 -> -6
        CHECK(q.code(0, 3) == -4);   // -9/32 -> -4.5 -> -4
        CHECK(q.code(0, 15) == 7);   // 15/32 -> 7.5 -> 8, saturated to qmax 7
        CHECK(q.code(0, 32) == -8);  // group 1 starts at -7.5/16 -> -7.5 -> -8 = qmin
      }
    }
  });
}

TEST_CASE("a failed quantize_into into a result of another shape leaves that result unchanged") {
  const auto a = testing::normal_floats(4 * 40, 3);
  auto b = testing::normal_floats(5 * 33, 4);
  b[100] = std::numeric_limits<float>::quiet_NaN();
  const options o{quant::k_int4_symmetric, granularity::per_group(32)};
  auto q = quant::quantize(tensor_view<const float, 2>(a.data(), shape<2>{4, 40}), o);
  const auto before = q;
  REQUIRE_THROWS_AS(quant::quantize_into(tensor_view<const float, 2>(b.data(), shape<2>{5, 33}), o, {}, q), shrink::error);
  CHECK(q.dims() == before.dims());
  CHECK(same_bytes(q, before));
}
