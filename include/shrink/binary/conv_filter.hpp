// conv_filter.hpp: binary::conv_filter, binarized k×k convolution weights packed per tap with channels in words (NHWC kernels).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#include "../core/aligned_buffer.hpp"
#include "../core/error.hpp"
#include "../core/tensor_view.hpp"
#include "binarize.hpp"
#include "bit_matrix.hpp"

namespace shrink::binary {

/// Binarized convolution weights for NHWC inputs whose channels are packed into words.
///
/// Layout: output channel o is one row of taps()·words_per_tap() words; tap t = ky·kw + kx
/// holds the signs of w[o, ky, kx, 0..C) packed like a bit_matrix row (bit 1 = -1, LSB first,
/// padding bits above C are 0). A packed input pixel has the same word layout, so one output
/// is cols() - 2·popcount over the concatenated taps (an "im2col" of whole words).
/// tap_popcount(o, t) = popcount of tap t of channel o, used by the zero-padding correction.
class conv_filter {
 public:
  conv_filter() = default;

  [[nodiscard]] index_t out_channels() const noexcept { return out_; }
  [[nodiscard]] index_t kernel_h() const noexcept { return kh_; }
  [[nodiscard]] index_t kernel_w() const noexcept { return kw_; }
  [[nodiscard]] index_t in_channels() const noexcept { return in_; }
  [[nodiscard]] index_t taps() const noexcept { return kh_ * kw_; }
  [[nodiscard]] index_t words_per_tap() const noexcept { return words_for(in_); }
  [[nodiscard]] index_t words_per_row() const noexcept { return taps() * words_per_tap(); }
  /// Logical length of a row: taps · C (the K of the equivalent GEMM).
  [[nodiscard]] index_t cols() const noexcept { return taps() * in_; }
  [[nodiscard]] const std::uint64_t* row_words(index_t o) const noexcept { return words_.data() + o * words_per_row(); }
  [[nodiscard]] std::span<const float> scales() const noexcept { return scales_.span(); }
  [[nodiscard]] float scale(index_t o) const noexcept { return scales_[static_cast<std::size_t>(o)]; }
  [[nodiscard]] std::int32_t tap_popcount(index_t o, index_t t) const noexcept {
    return tap_pop_[static_cast<std::size_t>(o * taps() + t)];
  }
  /// The ±1 sign of w[o, ky, kx, c], without the scale.
  [[nodiscard]] float sign(index_t o, index_t ky, index_t kx, index_t c) const noexcept {
    const std::uint64_t* tap = row_words(o) + (ky * kw_ + kx) * words_per_tap();
    return ((tap[c / k_word_bits] >> (c % k_word_bits)) & 1u) ? -1.0f : 1.0f;
  }

  /// Packs float weights in OHWI order (out, kh, kw, in — TFLite's and Larq's layout):
  /// signs with sign(0) = +1 and α per output channel = mean |w[o]| (or 1 with scaling::none).
  static conv_filter pack(tensor_view<const float, 4> w, const binarize_options& options = {}) {
    conv_filter f;
    f.out_ = w.extent(0), f.kh_ = w.extent(1), f.kw_ = w.extent(2), f.in_ = w.extent(3);
    SHRINK_REQUIRE(f.out_ > 0 && f.kh_ > 0 && f.kw_ > 0 && f.in_ > 0, errc::empty_input,
                   "conv_filter::pack: weights must have non-zero extents (OHWI), got ", w.shape());
    f.words_ = aligned_buffer<std::uint64_t>(static_cast<std::size_t>(f.out_ * f.words_per_row()));
    f.scales_ = aligned_buffer<float>(static_cast<std::size_t>(f.out_));
    f.tap_pop_ = aligned_buffer<std::int32_t>(static_cast<std::size_t>(f.out_ * f.taps()));
    const index_t wpt = f.words_per_tap();
    for (index_t o = 0; o < f.out_; ++o) {
      double s = 0.0;
      std::uint64_t* row = f.words_.data() + o * f.words_per_row();
      for (index_t ky = 0; ky < f.kh_; ++ky)
        for (index_t kx = 0; kx < f.kw_; ++kx) {
          const index_t t = ky * f.kw_ + kx;
          std::int32_t pop = 0;
          for (index_t c = 0; c < f.in_; ++c) {
            const float v = w(o, ky, kx, c);
            SHRINK_REQUIRE(std::isfinite(v), errc::non_finite, "conv_filter::pack: weight (", o, ", ", ky, ", ", kx,
                           ", ", c, ") is not finite");
            s += std::abs(static_cast<double>(v));
            if (bit_of(v)) {
              row[t * wpt + c / k_word_bits] |= std::uint64_t{1} << (c % k_word_bits);
              ++pop;
            }
          }
          f.tap_pop_[static_cast<std::size_t>(o * f.taps() + t)] = pop;
        }
      f.scales_[static_cast<std::size_t>(o)] =
          options.scale == scaling::mean_abs ? static_cast<float>(s / static_cast<double>(f.cols())) : 1.0f;
    }
    return f;
  }

 private:
  index_t out_ = 0, kh_ = 0, kw_ = 0, in_ = 0;
  aligned_buffer<std::uint64_t> words_;
  aligned_buffer<float> scales_;
  aligned_buffer<std::int32_t> tap_pop_;
};

}  // namespace shrink::binary
