// binarize.hpp: deterministic and stochastic binarization, XNOR-Net scales, hard-tanh STE and the BWN forward (docs/binarization.md).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"
#include "bit_matrix.hpp"

namespace shrink::binary {

/// How a row's magnitude is chosen when packing.
enum class scaling {
  none,      ///< scale 1: plain signs
  mean_abs,  ///< XNOR-Net's α = mean |W| of the row (Rastegari et al. 2016, eq. 4): the L2-optimal scale
};

struct binarize_options {
  scaling scale = scaling::mean_abs;
};

/// sign(x) with sign(0) = +1 (and sign(-0) = +1): the value a bit 0 stands for.
constexpr float sign(float x) noexcept { return x < 0.0f ? -1.0f : 1.0f; }

/// Hard sigmoid σ(x) = clip((x + 1) / 2, 0, 1): the probability that stochastic binarization
/// gives +1 (Courbariaux et al. 2016, BinaryConnect eq. 2).
constexpr float hard_sigmoid(float x) noexcept { return std::clamp((x + 1.0f) * 0.5f, 0.0f, 1.0f); }

namespace detail {
inline void check_finite(tensor_view<const float, 2> w, const char* who) {
  for (index_t r = 0; r < w.extent(0); ++r)
    for (index_t c = 0; c < w.extent(1); ++c)
      SHRINK_REQUIRE(std::isfinite(w(r, c)), errc::non_finite, who, ": element (", r, ", ", c,
                     ") is not finite; expected finite weights");
}

/// mean |row| accumulated in double, rounded once.
inline float mean_abs_row(tensor_view<const float, 2> w, index_t r) {
  double s = 0.0;
  for (index_t c = 0; c < w.extent(1); ++c) s += std::abs(static_cast<double>(w(r, c)));
  return w.extent(1) == 0 ? 0.0f : static_cast<float>(s / static_cast<double>(w.extent(1)));
}
}  // namespace detail

/// XNOR-Net weight scales: α[r] = mean |W[r, :]| per output channel (row).
inline std::vector<float> mean_abs_per_row(tensor_view<const float, 2> w) {
  detail::check_finite(w, "mean_abs_per_row");
  std::vector<float> out(static_cast<std::size_t>(w.extent(0)));
  for (index_t r = 0; r < w.extent(0); ++r) out[static_cast<std::size_t>(r)] = detail::mean_abs_row(w, r);
  return out;
}

/// Deterministic binarization of each row: bit = (w < 0), scale per `options`.
/// NaN or Inf is a shrink::error (non_finite).
inline bit_matrix binarize(tensor_view<const float, 2> w, const binarize_options& options = {}) {
  detail::check_finite(w, "binarize");
  bit_matrix out(w.extent(0), w.extent(1));
  for (index_t r = 0; r < w.extent(0); ++r) {
    std::uint64_t* words = out.row_words(r);
    for (index_t c = 0; c < w.extent(1); ++c)
      if (bit_of(w(r, c))) words[c / k_word_bits] |= std::uint64_t{1} << (c % k_word_bits);
    out.scales()[static_cast<std::size_t>(r)] =
        options.scale == scaling::mean_abs ? detail::mean_abs_row(w, r) : 1.0f;
  }
  return out;
}

/// Stochastic binarization: +1 with probability hard_sigmoid(w), else -1, drawn row-major from
/// a 64-bit Mersenne Twister seeded with `seed`; u = (rng() >> 11)·2^-53 ∈ [0, 1) and the value
/// is +1 when u < σ(w). Same seed, same bits on every platform.
inline bit_matrix binarize_stochastic(tensor_view<const float, 2> w, std::uint64_t seed,
                                      const binarize_options& options = {}) {
  detail::check_finite(w, "binarize_stochastic");
  bit_matrix out(w.extent(0), w.extent(1));
  std::mt19937_64 rng(seed);
  for (index_t r = 0; r < w.extent(0); ++r) {
    std::uint64_t* words = out.row_words(r);
    for (index_t c = 0; c < w.extent(1); ++c) {
      const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
      if (!(u < static_cast<double>(hard_sigmoid(w(r, c))))) words[c / k_word_bits] |= std::uint64_t{1} << (c % k_word_bits);
    }
    out.scales()[static_cast<std::size_t>(r)] =
        options.scale == scaling::mean_abs ? detail::mean_abs_row(w, r) : 1.0f;
  }
  return out;
}

/// Hard-tanh straight-through estimator (Courbariaux/Hubara et al. 2016): the gradient of
/// sign(x) is taken as 1 where |x| <= 1 and 0 elsewhere, so grad_in = grad_out · 1{|x| <= 1}.
inline void ste_gradient(std::span<const float> x, std::span<const float> grad_out, std::span<float> grad_in) {
  SHRINK_REQUIRE(x.size() == grad_out.size() && x.size() == grad_in.size(), errc::shape_mismatch,
                 "ste_gradient: x, grad_out and grad_in have ", x.size(), ", ", grad_out.size(), " and ",
                 grad_in.size(), " elements; expected equal lengths");
  for (std::size_t i = 0; i < x.size(); ++i) grad_in[i] = std::abs(x[i]) <= 1.0f ? grad_out[i] : 0.0f;
}

/// Geometry of a 2-D sliding window over NHWC data.
struct window {
  index_t kernel_h = 1, kernel_w = 1;
  index_t stride_h = 1, stride_w = 1;
  index_t pad_h = 0, pad_w = 0;  ///< zero rows/columns added on each side

  void check(const char* who) const {
    SHRINK_REQUIRE(kernel_h >= 1 && kernel_w >= 1, errc::invalid_argument, who, ": kernel must be >= 1x1, got ",
                   kernel_h, "x", kernel_w);
    SHRINK_REQUIRE(stride_h >= 1 && stride_w >= 1, errc::invalid_argument, who, ": stride must be >= 1, got ",
                   stride_h, "x", stride_w);
    SHRINK_REQUIRE(pad_h >= 0 && pad_w >= 0, errc::invalid_argument, who, ": padding must be >= 0, got ", pad_h,
                   "x", pad_w);
  }
  /// Output extent along one axis; an error when the kernel does not fit.
  static index_t out_extent(index_t in, index_t k, index_t stride, index_t pad, const char* who) {
    SHRINK_REQUIRE(in + 2 * pad >= k, errc::shape_mismatch, who, ": kernel ", k, " is larger than the padded input ",
                   in + 2 * pad);
    return (in + 2 * pad - k) / stride + 1;
  }
  [[nodiscard]] index_t out_h(index_t h, const char* who) const { return out_extent(h, kernel_h, stride_h, pad_h, who); }
  [[nodiscard]] index_t out_w(index_t w, const char* who) const { return out_extent(w, kernel_w, stride_w, pad_w, who); }
};

/// XNOR-Net activation scale map for a convolution over NHWC `input` (Rastegari et al. 2016,
/// §3.2): A = mean over channels of |I| (N×H×W), then K = A * k with k the kh×kw box filter
/// 1/(kh·kw), same stride, zero padding. Returns K as N×OH×OW: the scale β of each output pixel.
inline tensor<float, 3> activation_scale_map(tensor_view<const float, 4> input, const window& win) {
  win.check("activation_scale_map");
  const index_t n = input.extent(0), h = input.extent(1), w = input.extent(2), c = input.extent(3);
  SHRINK_REQUIRE(c > 0, errc::empty_input, "activation_scale_map: input has 0 channels");
  const index_t oh = win.out_h(h, "activation_scale_map"), ow = win.out_w(w, "activation_scale_map");
  tensor<double, 3> a(shape<3>{n, h, w});
  for (index_t b = 0; b < n; ++b)
    for (index_t y = 0; y < h; ++y)
      for (index_t x = 0; x < w; ++x) {
        double s = 0.0;
        for (index_t ch = 0; ch < c; ++ch) {
          SHRINK_REQUIRE(std::isfinite(input(b, y, x, ch)), errc::non_finite,
                         "activation_scale_map: input is not finite at (", b, ", ", y, ", ", x, ", ", ch, ")");
          s += std::abs(static_cast<double>(input(b, y, x, ch)));
        }
        a(b, y, x) = s / static_cast<double>(c);
      }
  tensor<float, 3> k(shape<3>{n, oh, ow});
  const double box = 1.0 / static_cast<double>(win.kernel_h * win.kernel_w);
  for (index_t b = 0; b < n; ++b)
    for (index_t oy = 0; oy < oh; ++oy)
      for (index_t ox = 0; ox < ow; ++ox) {
        double s = 0.0;
        for (index_t ky = 0; ky < win.kernel_h; ++ky)
          for (index_t kx = 0; kx < win.kernel_w; ++kx) {
            const index_t y = oy * win.stride_h - win.pad_h + ky, x = ox * win.stride_w - win.pad_w + kx;
            if (y >= 0 && y < h && x >= 0 && x < w) s += a(b, y, x);
          }
        k(b, oy, ox) = static_cast<float>(s * box);
      }
  return k;
}

/// Activation scales of a fully connected layer: β[n] = mean |x[n, :]| (the receptive field is
/// the whole input row).
inline std::vector<float> activation_scales(tensor_view<const float, 2> x) {
  return mean_abs_per_row(x);
}

/// Binary-weight network forward (BWN, Rastegari et al. 2016 §3.1): float activations x (N×K)
/// times binary weights w (M×K, ±α) plus bias: y[n, m] = α[m]·Σ_k sign(w[m,k])·x[n,k] + bias[m].
/// The sum runs in double and is rounded once. Returns N×M.
inline tensor<float, 2> bwn_forward(const bit_matrix& w, tensor_view<const float, 2> x, std::span<const float> bias = {}) {
  SHRINK_REQUIRE(x.extent(1) == w.cols(), errc::shape_mismatch, "bwn_forward: input has ", x.extent(1),
                 " features but the weights expect ", w.cols());
  SHRINK_REQUIRE(bias.empty() || static_cast<index_t>(bias.size()) == w.rows(), errc::shape_mismatch,
                 "bwn_forward: bias has ", bias.size(), " elements; expected 0 or ", w.rows());
  tensor<float, 2> y(shape<2>{x.extent(0), w.rows()});
  for (index_t n = 0; n < x.extent(0); ++n)
    for (index_t m = 0; m < w.rows(); ++m) {
      double s = 0.0;
      for (index_t k = 0; k < w.cols(); ++k) s += w.bit(m, k) ? -static_cast<double>(x(n, k)) : x(n, k);
      y(n, m) = static_cast<float>(static_cast<double>(w.scale(m)) * s +
                                   (bias.empty() ? 0.0 : bias[static_cast<std::size_t>(m)]));
    }
  return y;
}

}  // namespace shrink::binary
