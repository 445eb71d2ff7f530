// binary_conv.hpp: binary 2-D convolution over NHWC channel-packed bits (packed im2col + XNOR-popcount), with configurable padding.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "../binary/binarize.hpp"
#include "../binary/bit_matrix.hpp"
#include "../binary/conv_filter.hpp"
#include "../core/aligned_buffer.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor_view.hpp"
#include "dispatch.hpp"
#include "xnor_gemm.hpp"

namespace shrink::kernels {

/// What a tap outside the image contributes (zero padding is not representable in ±1).
enum class binary_padding {
  zero,       ///< as if padded with 0: the output is corrected exactly (Larq's correction term)
  plus_one,   ///< padded with +1 (what a model trained with "pad +1" expects)
  minus_one,  ///< padded with -1
};

struct binary_conv_params {
  index_t stride_h = 1, stride_w = 1;
  index_t pad_h = 0, pad_w = 0;  ///< rows/columns added on each side
  binary_padding padding = binary_padding::zero;
};

/// Shape of a packed NHWC input: `pixels` of a bit_matrix with one row per (n, y, x) pixel
/// (row index (n·H + y)·W + x) and one column per channel.
struct image_shape {
  index_t n = 1, h = 1, w = 1;
};

/// Output stage of the convolution: y = α[o]·K[n, oy, ox]·dot + bias[o], with K the XNOR-Net
/// activation scale map (binary::activation_scale_map; empty view: 1) and α the filter scales
/// (skipped when !apply_alpha).
struct binary_conv_output {
  std::span<const float> bias{};
  tensor_view<const float, 3> activation_scale{};
  bool apply_alpha = true;
};

namespace binary_conv_impl {

inline constexpr index_t k_tile_m = 64, k_tile_n = 16;

struct geometry {
  index_t n, h, w, c, oh, ow, kh, kw, taps, wpt, row_words;
};

inline geometry check(const binary::bit_matrix& input, const image_shape& img, const binary::conv_filter& f,
                      const binary_conv_params& p) {
  SHRINK_REQUIRE(p.stride_h >= 1 && p.stride_w >= 1, errc::invalid_argument,
                 "binary_conv2d: stride must be >= 1, got ", p.stride_h, "x", p.stride_w);
  SHRINK_REQUIRE(p.pad_h >= 0 && p.pad_w >= 0, errc::invalid_argument, "binary_conv2d: padding must be >= 0, got ",
                 p.pad_h, "x", p.pad_w);
  SHRINK_REQUIRE(img.n >= 0 && img.h >= 0 && img.w >= 0 && input.rows() == img.n * img.h * img.w,
                 errc::shape_mismatch, "binary_conv2d: input has ", input.rows(), " pixel rows; expected n·h·w = ",
                 img.n, "·", img.h, "·", img.w);
  SHRINK_REQUIRE(input.cols() == f.in_channels(), errc::shape_mismatch, "binary_conv2d: input has ", input.cols(),
                 " channels but the filter expects ", f.in_channels());
  SHRINK_REQUIRE(input.padding_is_clear(), errc::format,
                 "binary_conv2d: input has padding bits set beyond its channels; expected them 0");
  geometry g{img.n, img.h, img.w, input.cols(), 0, 0, f.kernel_h(), f.kernel_w(), f.taps(), f.words_per_tap(), 0};
  g.oh = binary::window::out_extent(g.h, g.kh, p.stride_h, p.pad_h, "binary_conv2d");
  g.ow = binary::window::out_extent(g.w, g.kw, p.stride_w, p.pad_w, "binary_conv2d");
  g.row_words = g.taps * g.wpt;
  return g;
}

/// Runs the convolution and hands emit(n, oy, ox, o0, count, dots) the exact ±1 sums of
/// output channels [o0, o0 + count) of one pixel (count ≤ k_tile_m; padding per params).
/// Work splits over output rows (n, oy); each thread owns a packed im2col buffer of one output
/// row and an int32 buffer of that row's popcounts, which the block kernel fills in place
/// (ldo = out_channels), so the per-pixel work after the kernel is one pass of plain loops.
template <class Emit>
void run(const binary::bit_matrix& input, const geometry& g, const binary::conv_filter& f,
         const binary_conv_params& p, const context& ctx, Emit&& emit) {
  const xnor_impl::block_fn block = select(xnor_impl::k_block);
  const auto k_total = static_cast<std::int32_t>(g.taps * g.c);
  const index_t oc = f.out_channels();
  // The word a padded tap holds: +1 and "zero" pad with bit 0; -1 with bit 1 on every channel.
  std::vector<std::uint64_t> pad_tap(static_cast<std::size_t>(g.wpt), 0);
  if (p.padding == binary_padding::minus_one)
    for (index_t j = 0; j < g.wpt; ++j)
      pad_tap[static_cast<std::size_t>(j)] = j == g.wpt - 1 ? binary::tail_mask(g.c) : ~std::uint64_t{0};
  // Zero padding: a padded tap was counted as +1 and contributed C - 2·popcount(w_tap); its
  // correction per (tap, channel), channel-contiguous so the fix-up loop is unit stride.
  std::vector<std::int32_t> correction;
  if (p.padding == binary_padding::zero) {
    correction.resize(static_cast<std::size_t>(g.taps * oc));
    for (index_t t = 0; t < g.taps; ++t)
      for (index_t o = 0; o < oc; ++o)
        correction[static_cast<std::size_t>(t * oc + o)] = static_cast<std::int32_t>(g.c) - 2 * f.tap_popcount(o, t);
  }
  parallel_for(ctx, 0, g.n * g.oh, 1, [&](index_t r0, index_t r1) {
    aligned_buffer<std::uint64_t> cols(static_cast<std::size_t>(g.ow * g.row_words));
    aligned_buffer<std::int32_t> dots(static_cast<std::size_t>(g.ow * oc));
    std::vector<std::uint8_t> padded(static_cast<std::size_t>(g.ow * g.taps));
    for (index_t r = r0; r < r1; ++r) {
      const index_t b = r / g.oh, oy = r % g.oh;
      // Packed im2col of one output row: whole words copied per tap.
      for (index_t ox = 0; ox < g.ow; ++ox) {
        std::uint64_t* dst = cols.data() + ox * g.row_words;
        for (index_t ky = 0; ky < g.kh; ++ky)
          for (index_t kx = 0; kx < g.kw; ++kx) {
            const index_t y = oy * p.stride_h - p.pad_h + ky, x = ox * p.stride_w - p.pad_w + kx;
            const index_t t = ky * g.kw + kx;
            const bool inside = y >= 0 && y < g.h && x >= 0 && x < g.w;
            padded[static_cast<std::size_t>(ox * g.taps + t)] = inside ? 0 : 1;
            const std::uint64_t* src = inside ? input.row_words((b * g.h + y) * g.w + x) : pad_tap.data();
            std::copy(src, src + g.wpt, dst + t * g.wpt);
          }
      }
      // Popcounts of the whole row, tiles of 16 pixels × 64 filters (the im2col row and one
      // filter tile stay in L1), written straight into dots[ox·oc + o].
      for (index_t ox0 = 0; ox0 < g.ow; ox0 += k_tile_n) {
        const index_t nt = std::min(k_tile_n, g.ow - ox0);
        for (index_t o0 = 0; o0 < oc; o0 += k_tile_m)
          block(f.row_words(o0), g.row_words, std::min(k_tile_m, oc - o0), cols.data() + ox0 * g.row_words,
                g.row_words, nt, g.row_words, dots.data() + ox0 * oc + o0, oc);
      }
      for (index_t ox = 0; ox < g.ow; ++ox) {
        std::int32_t* d = dots.data() + ox * oc;
        for (index_t o = 0; o < oc; ++o) d[o] = k_total - 2 * d[o];
        if (p.padding == binary_padding::zero) {
          const std::uint8_t* pad_of = padded.data() + ox * g.taps;
          for (index_t t = 0; t < g.taps; ++t)
            if (pad_of[t]) {
              const std::int32_t* c = correction.data() + t * oc;
              for (index_t o = 0; o < oc; ++o) d[o] -= c[o];
            }
        }
        for (index_t o0 = 0; o0 < oc; o0 += k_tile_m)
          emit(b, oy, ox, o0, std::min(k_tile_m, oc - o0), static_cast<const std::int32_t*>(d + o0));
      }
    }
  });
}

}  // namespace binary_conv_impl

/// Exact ±1 convolution sums: out[n, oy, ox, o] = Σ_{ky,kx,c} sign(w[o,ky,kx,c])·x[n, y, x, c]
/// with out-of-image taps per params.padding. out is NHWC (N × OH × OW × out_channels).
inline void binary_conv2d(const binary::bit_matrix& input, const image_shape& img, const binary::conv_filter& f,
                          const binary_conv_params& params, tensor_view<std::int32_t, 4> out, const context& ctx = {}) {
  const auto g = binary_conv_impl::check(input, img, f, params);
  SHRINK_REQUIRE(out.extent(0) == g.n && out.extent(1) == g.oh && out.extent(2) == g.ow &&
                     out.extent(3) == f.out_channels(),
                 errc::shape_mismatch, "binary_conv2d: output is ", out.shape(), "; expected (", g.n, ", ", g.oh,
                 ", ", g.ow, ", ", f.out_channels(), ")");
  binary_conv_impl::run(input, g, f, params, ctx,
                        [&](index_t b, index_t oy, index_t ox, index_t o0, index_t count, const std::int32_t* d) {
                          std::int32_t* dst = &out(b, oy, ox, o0);
                          for (index_t i = 0; i < count; ++i) dst[i * out.stride(3)] = d[i];
                        });
}

/// Binary convolution with the fused output stage y = α[o]·K[n,oy,ox]·dot + bias[o] (NHWC float out).
inline void binary_conv2d(const binary::bit_matrix& input, const image_shape& img, const binary::conv_filter& f,
                          const binary_conv_params& params, tensor_view<float, 4> out,
                          const binary_conv_output& stage = {}, const context& ctx = {}) {
  const auto g = binary_conv_impl::check(input, img, f, params);
  SHRINK_REQUIRE(out.extent(0) == g.n && out.extent(1) == g.oh && out.extent(2) == g.ow &&
                     out.extent(3) == f.out_channels(),
                 errc::shape_mismatch, "binary_conv2d: output is ", out.shape(), "; expected (", g.n, ", ", g.oh,
                 ", ", g.ow, ", ", f.out_channels(), ")");
  SHRINK_REQUIRE(stage.bias.empty() || static_cast<index_t>(stage.bias.size()) == f.out_channels(),
                 errc::shape_mismatch, "binary_conv2d: bias has ", stage.bias.size(), " elements; expected 0 or ",
                 f.out_channels());
  const bool has_k = !stage.activation_scale.empty();
  SHRINK_REQUIRE(!has_k || (stage.activation_scale.extent(0) == g.n && stage.activation_scale.extent(1) == g.oh &&
                            stage.activation_scale.extent(2) == g.ow),
                 errc::shape_mismatch, "binary_conv2d: activation scale map is ", stage.activation_scale.shape(),
                 "; expected (", g.n, ", ", g.oh, ", ", g.ow, ")");
  const index_t os = out.stride(3);
  const float* alphas = f.scales().data();
  const float* biases = stage.bias.empty() ? nullptr : stage.bias.data();
  binary_conv_impl::run(input, g, f, params, ctx,
                        [&](index_t b, index_t oy, index_t ox, index_t o0, index_t count, const std::int32_t* d) {
                          const float kk = has_k ? stage.activation_scale(b, oy, ox) : 1.0f;
                          float* dst = &out(b, oy, ox, o0);
                          // One branch-free loop per case over unit-stride pointers (the
                          // compiler vectorises these); each value is xnor_impl::apply's
                          // s·dot + bias with s = α[o]·K (or K), evaluated in that order.
                          const float* a = alphas + o0;
                          const float* bb = biases ? biases + o0 : nullptr;
                          if (os == 1 && stage.apply_alpha && bb)
                            for (index_t i = 0; i < count; ++i) dst[i] = (a[i] * kk) * static_cast<float>(d[i]) + bb[i];
                          else if (os == 1 && stage.apply_alpha)
                            for (index_t i = 0; i < count; ++i) dst[i] = (a[i] * kk) * static_cast<float>(d[i]) + 0.0f;
                          else if (os == 1 && bb)
                            for (index_t i = 0; i < count; ++i) dst[i] = kk * static_cast<float>(d[i]) + bb[i];
                          else
                            for (index_t i = 0; i < count; ++i)
                              dst[i * os] = xnor_impl::apply(d[i], stage.apply_alpha ? a[i] * kk : kk, 1.0f,
                                                             bb ? bb[i] : 0.0f, true);
                        });
}

}  // namespace shrink::kernels
