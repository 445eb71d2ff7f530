// tucker.hpp: Tucker-2 decomposition of a conv kernel [out, in, kh, kw] into 1×1 → kh×kw → 1×1 convolutions (HOSVD + optional HOOI).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include <Eigen/Core>
#include <Eigen/SVD>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"

namespace shrink::lowrank {

/// Ranks and refinement of a Tucker-2 decomposition.
struct tucker_options {
  index_t rank_out = 1;  ///< r_out: 1 ≤ r_out ≤ out channels
  index_t rank_in = 1;   ///< r_in: 1 ≤ r_in ≤ in channels
  int als_iterations = 0;  ///< HOOI (alternating least squares) rounds after the HOSVD start
};

/// K[o, i, h, w] ≈ Σ_{a, b} last[o, a] · core[a, b, h, w] · first[b, i], run as three convs:
///   1. `first`: a 1×1 conv in → r_in   (weights [r_in, in], no padding, stride 1)
///   2. `core`:  a kh×kw conv r_in → r_out with the original stride, padding and dilation
///   3. `last`:  a 1×1 conv r_out → out (weights [out, r_out])
/// Because conv is linear and a 1×1 conv commutes with zero padding, the sequence equals the
/// conv with the expanded kernel (docs/lowrank.md).
struct tucker2 {
  tensor<float, 2> first;  ///< [r_in, in]   (= U_inᵀ)
  tensor<float, 4> core;   ///< [r_out, r_in, kh, kw]
  tensor<float, 2> last;   ///< [out, r_out] (= U_out)

  [[nodiscard]] index_t out_channels() const noexcept { return last.extent(0); }
  [[nodiscard]] index_t in_channels() const noexcept { return first.extent(1); }
  [[nodiscard]] index_t rank_out() const noexcept { return core.extent(0); }
  [[nodiscard]] index_t rank_in() const noexcept { return core.extent(1); }
  [[nodiscard]] std::size_t params() const noexcept {
    return static_cast<std::size_t>(first.size() + core.size() + last.size());
  }
  [[nodiscard]] std::size_t bytes() const noexcept { return params() * sizeof(float); }

  /// The kernel [out, in, kh, kw] the three convolutions compute.
  [[nodiscard]] tensor<float, 4> expand() const {
    const index_t o_n = out_channels(), i_n = in_channels(), ro = rank_out(), ri = rank_in();
    const index_t kh = core.extent(2), kw = core.extent(3);
    tensor<float, 4> k(shape<4>{o_n, i_n, kh, kw});
    for (index_t o = 0; o < o_n; ++o)
      for (index_t i = 0; i < i_n; ++i)
        for (index_t h = 0; h < kh; ++h)
          for (index_t w = 0; w < kw; ++w) {
            double s = 0.0;
            for (index_t a = 0; a < ro; ++a) {
              double inner = 0.0;
              for (index_t b = 0; b < ri; ++b) inner += static_cast<double>(core(a, b, h, w)) * first(b, i);
              s += static_cast<double>(last(o, a)) * inner;
            }
            k(o, i, h, w) = static_cast<float>(s);
          }
    return k;
  }
};

namespace detail {

using matrix_d = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;

/// The leading `r` left singular vectors of `m` (computed in double).
inline matrix_d leading_left(const matrix_d& m, index_t r) {
  if (std::min(m.rows(), m.cols()) <= 64) {
    const Eigen::JacobiSVD<matrix_d> svd(m, Eigen::ComputeThinU);
    return svd.matrixU().leftCols(r);
  }
  const Eigen::BDCSVD<matrix_d> svd(m, Eigen::ComputeThinU);
  return svd.matrixU().leftCols(r);
}

/// Mode-0 unfolding of X[o, i, s] (s = spatial): rows o, columns (i, s).
/// Mode-1 unfolding: rows i, columns (o, s). X is stored as kernel[o][i][s].
inline matrix_d unfold(const std::vector<double>& x, index_t o_n, index_t i_n, index_t s_n, int mode) {
  matrix_d m = mode == 0 ? matrix_d(o_n, i_n * s_n) : matrix_d(i_n, o_n * s_n);
  for (index_t o = 0; o < o_n; ++o)
    for (index_t i = 0; i < i_n; ++i)
      for (index_t s = 0; s < s_n; ++s) {
        const double v = x[static_cast<std::size_t>((o * i_n + i) * s_n + s)];
        if (mode == 0) m(o, i * s_n + s) = v;
        else m(i, o * s_n + s) = v;
      }
  return m;
}

/// Y[a, i, s] = Σ_o U(o, a) X[o, i, s] (mode-0 product with Uᵀ) or, for mode 1,
/// Y[o, b, s] = Σ_i U(i, b) X[o, i, s].
inline std::vector<double> project(const std::vector<double>& x, index_t o_n, index_t i_n, index_t s_n,
                                   const matrix_d& u, int mode) {
  const index_t r = u.cols();
  const index_t yo = mode == 0 ? r : o_n, yi = mode == 0 ? i_n : r;
  std::vector<double> y(static_cast<std::size_t>(yo * yi * s_n), 0.0);
  for (index_t o = 0; o < o_n; ++o)
    for (index_t i = 0; i < i_n; ++i)
      for (index_t s = 0; s < s_n; ++s) {
        const double v = x[static_cast<std::size_t>((o * i_n + i) * s_n + s)];
        for (index_t k = 0; k < r; ++k) {
          if (mode == 0) y[static_cast<std::size_t>((k * yi + i) * s_n + s)] += u(o, k) * v;
          else y[static_cast<std::size_t>((o * yi + k) * s_n + s)] += u(i, k) * v;
        }
      }
  return y;
}

}  // namespace detail

/// Tucker-2 of a conv kernel [out, in, kh, kw] along the channel modes (the spatial modes are
/// kept whole, Kim et al. 2016). Start: HOSVD, U_out = leading r_out left singular vectors of
/// the mode-0 unfolding, U_in those of the mode-1 unfolding; then `als_iterations` rounds of
/// HOOI (De Lathauwer et al. 2000): U_out from K ×₁ U_inᵀ, U_in from K ×₀ U_outᵀ. Core
/// G = K ×₀ U_outᵀ ×₁ U_inᵀ. Full ranks reproduce K to rounding. Errors: a kernel that is
/// empty or non-finite; ranks outside [1, channels]; negative iterations.
inline tucker2 tucker2_decompose(const tensor_view<const float, 4>& kernel, const tucker_options& opt) {
  const index_t o_n = kernel.extent(0), i_n = kernel.extent(1), kh = kernel.extent(2), kw = kernel.extent(3);
  SHRINK_REQUIRE(kernel.size() > 0, errc::empty_input, "tucker2_decompose: the kernel is empty, shape ",
                 kernel.shape());
  SHRINK_REQUIRE(opt.rank_out >= 1 && opt.rank_out <= o_n, errc::invalid_argument,
                 "tucker2_decompose: rank_out must be in [1, out channels = ", o_n, "], got ", opt.rank_out);
  SHRINK_REQUIRE(opt.rank_in >= 1 && opt.rank_in <= i_n, errc::invalid_argument,
                 "tucker2_decompose: rank_in must be in [1, in channels = ", i_n, "], got ", opt.rank_in);
  SHRINK_REQUIRE(opt.als_iterations >= 0, errc::invalid_argument,
                 "tucker2_decompose: als_iterations must be >= 0, got ", opt.als_iterations);
  const index_t s_n = kh * kw;
  std::vector<double> x(static_cast<std::size_t>(kernel.size()));
  for (index_t o = 0; o < o_n; ++o)
    for (index_t i = 0; i < i_n; ++i)
      for (index_t h = 0; h < kh; ++h)
        for (index_t w = 0; w < kw; ++w) {
          const float v = kernel(o, i, h, w);
          SHRINK_REQUIRE(std::isfinite(v), errc::non_finite, "tucker2_decompose: kernel (", o, ", ", i, ", ", h,
                         ", ", w, ") is ", v, "; expected finite values");
          x[static_cast<std::size_t>((o * i_n + i) * s_n + h * kw + w)] = v;
        }

  detail::matrix_d u_out = detail::leading_left(detail::unfold(x, o_n, i_n, s_n, 0), opt.rank_out);
  detail::matrix_d u_in = detail::leading_left(detail::unfold(x, o_n, i_n, s_n, 1), opt.rank_in);
  for (int it = 0; it < opt.als_iterations; ++it) {
    // Each step solves its factor exactly with the other fixed, so ‖G‖ (the kept energy)
    // never decreases: ‖K − K̂‖² = ‖K‖² − ‖G‖² for orthonormal factors.
    const auto y_in = detail::project(x, o_n, i_n, s_n, u_in, 1);  // [out, r_in, s]
    u_out = detail::leading_left(detail::unfold(y_in, o_n, opt.rank_in, s_n, 0), opt.rank_out);
    const auto y_out = detail::project(x, o_n, i_n, s_n, u_out, 0);  // [r_out, in, s]
    u_in = detail::leading_left(detail::unfold(y_out, opt.rank_out, i_n, s_n, 1), opt.rank_in);
  }
  const auto g = detail::project(detail::project(x, o_n, i_n, s_n, u_out, 0), opt.rank_out, i_n, s_n, u_in, 1);

  tucker2 t;
  t.first = tensor<float, 2>(shape<2>{opt.rank_in, i_n});
  t.core = tensor<float, 4>(shape<4>{opt.rank_out, opt.rank_in, kh, kw});
  t.last = tensor<float, 2>(shape<2>{o_n, opt.rank_out});
  for (index_t b = 0; b < opt.rank_in; ++b)
    for (index_t i = 0; i < i_n; ++i) t.first(b, i) = static_cast<float>(u_in(i, b));
  for (index_t o = 0; o < o_n; ++o)
    for (index_t a = 0; a < opt.rank_out; ++a) t.last(o, a) = static_cast<float>(u_out(o, a));
  for (index_t a = 0; a < opt.rank_out; ++a)
    for (index_t b = 0; b < opt.rank_in; ++b)
      for (index_t s = 0; s < s_n; ++s)
        t.core(a, b, s / kw, s % kw) = static_cast<float>(g[static_cast<std::size_t>((a * opt.rank_in + b) * s_n + s)]);
  return t;
}

}  // namespace shrink::lowrank
