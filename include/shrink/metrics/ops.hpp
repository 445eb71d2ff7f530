// ops.hpp: parameter and multiply-add (MAC) counts of linear and conv layers, dense and factorized, with overflow checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "../core/error.hpp"

namespace shrink::metrics {

/// Parameters and MACs of a layer before and after compression (biases not counted).
struct ops_report {
  std::uint64_t params_before = 0;
  std::uint64_t params_after = 0;
  std::uint64_t macs_before = 0;
  std::uint64_t macs_after = 0;

  [[nodiscard]] double params_ratio() const noexcept {
    return params_after == 0 ? 0.0 : static_cast<double>(params_before) / static_cast<double>(params_after);
  }
  [[nodiscard]] double macs_ratio() const noexcept {
    return macs_after == 0 ? 0.0 : static_cast<double>(macs_before) / static_cast<double>(macs_after);
  }
};

namespace detail {
/// Product of non-negative extents, an error on a negative extent or on overflow.
inline std::uint64_t checked_product(std::initializer_list<std::int64_t> factors, const char* who) {
  std::uint64_t p = 1;
  for (std::int64_t f : factors) {
    SHRINK_REQUIRE(f >= 0, errc::invalid_argument, who, ": sizes must be >= 0, got ", f);
    SHRINK_REQUIRE(!__builtin_mul_overflow(p, static_cast<std::uint64_t>(f), &p), errc::overflow, who,
                   ": the count overflows 64 bits");
  }
  return p;
}
inline std::uint64_t checked_sum(std::initializer_list<std::uint64_t> terms, const char* who) {
  std::uint64_t s = 0;
  for (std::uint64_t t : terms)
    SHRINK_REQUIRE(!__builtin_add_overflow(s, t, &s), errc::overflow, who, ": the count overflows 64 bits");
  return s;
}
}  // namespace detail

/// y = W·x with W of m × n: m·n parameters, m·n MACs per input vector (× batch).
inline ops_report linear_ops(std::int64_t m, std::int64_t n, std::int64_t batch = 1) {
  const auto p = detail::checked_product({m, n}, "linear_ops");
  return {p, p, detail::checked_product({m, n, batch}, "linear_ops"), detail::checked_product({m, n, batch}, "linear_ops")};
}

/// W ≈ A·B of rank r, run as A·(B·x): r·(m + n) parameters and MACs per vector.
inline ops_report factorized_linear_ops(std::int64_t m, std::int64_t n, std::int64_t r, std::int64_t batch = 1) {
  auto rep = linear_ops(m, n, batch);
  rep.params_after = detail::checked_sum({detail::checked_product({r, m}, "factorized_linear_ops"),
                                          detail::checked_product({r, n}, "factorized_linear_ops")},
                                         "factorized_linear_ops");
  rep.macs_after = detail::checked_product({static_cast<std::int64_t>(rep.params_after), batch}, "factorized_linear_ops");
  return rep;
}

/// Shape of a 2-D convolution (groups = 1): kernel [out, in, kh, kw], input spatial size
/// in_h × in_w, output spatial size out_h × out_w (after stride, padding, dilation).
struct conv_shape {
  std::int64_t out = 0, in = 0, kh = 1, kw = 1;
  std::int64_t in_h = 1, in_w = 1, out_h = 1, out_w = 1;
};

/// Dense conv: out·in·kh·kw parameters; out·in·kh·kw MACs per output pixel.
inline ops_report conv_ops(const conv_shape& c, std::int64_t batch = 1) {
  const auto p = detail::checked_product({c.out, c.in, c.kh, c.kw}, "conv_ops");
  const auto macs = detail::checked_product({c.out, c.in, c.kh, c.kw, c.out_h, c.out_w, batch}, "conv_ops");
  return {p, p, macs, macs};
}

/// Tucker-2 conv (1×1 in → r_in, kh×kw r_in → r_out, 1×1 r_out → out). The first 1×1 conv runs
/// at the input resolution (it commutes with zero padding; with stride it could also run on the
/// strided pixels only, which this count does not assume), the other two at the output's.
inline ops_report tucker2_conv_ops(const conv_shape& c, std::int64_t rank_out, std::int64_t rank_in,
                                   std::int64_t batch = 1) {
  auto rep = conv_ops(c, batch);
  const char* who = "tucker2_conv_ops";
  rep.params_after = detail::checked_sum({detail::checked_product({c.in, rank_in}, who),
                                          detail::checked_product({rank_out, rank_in, c.kh, c.kw}, who),
                                          detail::checked_product({c.out, rank_out}, who)},
                                         who);
  rep.macs_after = detail::checked_sum({detail::checked_product({c.in, rank_in, c.in_h, c.in_w, batch}, who),
                                        detail::checked_product({rank_out, rank_in, c.kh, c.kw, c.out_h, c.out_w, batch}, who),
                                        detail::checked_product({c.out, rank_out, c.out_h, c.out_w, batch}, who)},
                                       who);
  return rep;
}

}  // namespace shrink::metrics
