// sparse_conv.hpp: 2-D convolution with pruned (sparse) weights, as im2col into a caller-owned workspace followed by SpMM.
#pragma once

#include <cstdint>
#include <span>

#include "../core/parallel.hpp"
#include "../core/tensor_view.hpp"
#include "spmm_csr.hpp"

namespace shrink::kernels {

/// One image, CHW; PyTorch Conv2d semantics (zero padding, no dilation, groups = 1).
struct conv2d_shape {
  index_t in_channels = 1, height = 1, width = 1;
  index_t kernel_h = 1, kernel_w = 1;
  index_t stride = 1, padding = 0;

  [[nodiscard]] index_t out_h() const noexcept { return (height + 2 * padding - kernel_h) / stride + 1; }
  [[nodiscard]] index_t out_w() const noexcept { return (width + 2 * padding - kernel_w) / stride + 1; }
  /// Rows of the im2col matrix = columns of the weight matrix.
  [[nodiscard]] index_t patch() const noexcept { return in_channels * kernel_h * kernel_w; }

  void check(const char* who) const {
    SHRINK_REQUIRE(in_channels >= 1 && height >= 1 && width >= 1 && kernel_h >= 1 && kernel_w >= 1 && stride >= 1 &&
                       padding >= 0,
                   errc::invalid_argument, who,
                   ": channels, sizes, kernel and stride must be >= 1 and padding >= 0");
    SHRINK_REQUIRE(kernel_h <= height + 2 * padding && kernel_w <= width + 2 * padding, errc::shape_mismatch, who,
                   ": kernel ", kernel_h, "x", kernel_w, " is larger than the padded input ", height + 2 * padding,
                   "x", width + 2 * padding);
  }
};

/// Floats of workspace sparse_conv2d needs: patch() x out_h() x out_w().
inline index_t sparse_conv2d_workspace(const conv2d_shape& s) { return s.patch() * s.out_h() * s.out_w(); }

/// output[co, oy*out_w + ox] = Σ W[co, (ci, ky, kx)] · in[ci, (oy·stride + ky − pad)·W + ox·stride + kx − pad].
/// `w` is the plan of the [Cout, Cin·kh·kw] weight matrix (PyTorch's [Cout, Cin, kh, kw]
/// flattened); `input` is [Cin, H·W]; `output` is [Cout, out_h·out_w]. The im2col matrix is
/// [Cin·kh·kw, out_h·out_w], exactly SpMM's [K, batch] layout, so no transpose is needed.
template <float_valued_plan V>
void sparse_conv2d(const sparse_plan<V>& w, const conv2d_shape& s, const_view<float, 2> input,
                   std::span<float> workspace, tensor_view<float, 2> output, const context& ctx = {}) {
  const char* who = "sparse_conv2d";
  s.check(who);
  SHRINK_REQUIRE(w.cols == s.patch(), errc::shape_mismatch, who, ": weights have ", w.cols,
                 " columns; expected in_channels * kernel_h * kernel_w = ", s.patch());
  SHRINK_REQUIRE(input.extent(0) == s.in_channels && input.extent(1) == s.height * s.width, errc::shape_mismatch, who,
                 ": input must be [", s.in_channels, ", ", s.height * s.width, "], got ", input.shape());
  const index_t pixels = s.out_h() * s.out_w();
  SHRINK_REQUIRE(output.extent(0) == w.rows && output.extent(1) == pixels, errc::shape_mismatch, who,
                 ": output must be [", w.rows, ", ", pixels, "], got ", output.shape());
  SHRINK_REQUIRE(static_cast<index_t>(workspace.size()) >= sparse_conv2d_workspace(s), errc::out_of_range, who,
                 ": workspace holds ", workspace.size(), " floats; expected ", sparse_conv2d_workspace(s));
  const index_t ow = s.out_w();
  for (index_t ci = 0; ci < s.in_channels; ++ci)
    for (index_t ky = 0; ky < s.kernel_h; ++ky)
      for (index_t kx = 0; kx < s.kernel_w; ++kx) {
        float* row = workspace.data() + ((ci * s.kernel_h + ky) * s.kernel_w + kx) * pixels;
        for (index_t oy = 0; oy < s.out_h(); ++oy) {
          const index_t iy = oy * s.stride + ky - s.padding;
          for (index_t ox = 0; ox < ow; ++ox) {
            const index_t ix = ox * s.stride + kx - s.padding;
            row[oy * ow + ox] =
                (iy >= 0 && iy < s.height && ix >= 0 && ix < s.width) ? input(ci, iy * s.width + ix) : 0.0f;
          }
        }
      }
  spmm(w, const_view<float, 2>(workspace.data(), shape<2>{s.patch(), pixels}), output, ctx);
}

}  // namespace shrink::kernels
