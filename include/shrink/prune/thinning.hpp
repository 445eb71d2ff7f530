// thinning.hpp: structured thinning: drop pruned output channels of a layer (weight, bias, BatchNorm) and the matching inputs of the next layer.
#pragma once

#include <algorithm>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"

namespace shrink::prune {

/// BatchNorm parameters of one layer, one entry per channel:
/// y = γ · (x − mean) / sqrt(var + eps) + β.
struct batch_norm {
  std::vector<float> gamma, beta, mean, var;
  float eps = 1e-5f;

  [[nodiscard]] std::size_t channels() const noexcept { return gamma.size(); }
};

namespace detail {
inline void check_kept(std::span<const index_t> kept, index_t extent, const char* who) {
  for (std::size_t i = 0; i < kept.size(); ++i) {
    SHRINK_REQUIRE(kept[i] >= 0 && kept[i] < extent, errc::out_of_range, who, ": kept index ", kept[i],
                   " is outside [0, ", extent, ")");
    SHRINK_REQUIRE(i == 0 || kept[i] > kept[i - 1], errc::invalid_argument, who,
                   ": kept indices must be strictly increasing, got ", kept[i - 1], " then ", kept[i]);
  }
}

template <std::size_t Rank>
index_t inner_size(const shape<Rank>& s, std::size_t from) {
  index_t r = 1;
  for (std::size_t a = from; a < Rank; ++a) r *= s.dims[a];
  return r;
}
}  // namespace detail

/// The weight with only the kept entries along `axis` (0: output channels, 1: input channels).
template <std::size_t Rank>
tensor<float, Rank> keep_along(tensor_view<const float, Rank> w, std::size_t axis, std::span<const index_t> kept) {
  static_assert(Rank >= 2, "prune::keep_along: weights need rank >= 2");
  SHRINK_REQUIRE(axis < 2, errc::invalid_argument, "prune::keep_along: axis must be 0 or 1, got ", axis);
  detail::check_kept(kept, w.extent(axis), "prune::keep_along");
  const tensor<float, Rank> src(w);  // contiguous copy; thinning runs once at export
  shape<Rank> s = w.shape();
  s.dims[axis] = static_cast<index_t>(kept.size());
  tensor<float, Rank> out(s);
  const index_t inner = detail::inner_size(w.shape(), axis + 1);  // contiguous run per kept index
  const index_t outer = axis == 0 ? 1 : w.extent(0);
  const index_t ext = w.extent(axis);
  float* dst = out.data();
  for (index_t o = 0; o < outer; ++o)
    for (index_t k : kept) {
      if (inner > 0) std::memcpy(dst, src.data() + (o * ext + k) * inner, static_cast<std::size_t>(inner) * sizeof(float));
      dst += inner;
    }
  return out;
}

/// The entries of a per-channel vector (bias) at the kept indices.
inline std::vector<float> keep_entries(std::span<const float> v, std::span<const index_t> kept) {
  detail::check_kept(kept, static_cast<index_t>(v.size()), "prune::keep_entries");
  std::vector<float> out;
  out.reserve(kept.size());
  for (index_t k : kept) out.push_back(v[static_cast<std::size_t>(k)]);
  return out;
}

/// A BatchNorm restricted to the kept channels (γ, β, running mean and variance sliced alike).
inline batch_norm keep_channels(const batch_norm& bn, std::span<const index_t> kept) {
  const std::size_t c = bn.gamma.size();
  SHRINK_REQUIRE(bn.beta.size() == c && bn.mean.size() == c && bn.var.size() == c, errc::shape_mismatch,
                 "prune::keep_channels: γ, β, mean and var must have one entry per channel, got ", bn.gamma.size(),
                 ", ", bn.beta.size(), ", ", bn.mean.size(), ", ", bn.var.size());
  return {keep_entries(bn.gamma, kept), keep_entries(bn.beta, kept), keep_entries(bn.mean, kept),
          keep_entries(bn.var, kept), bn.eps};
}

/// A layer pair after thinning: the first layer's smaller weight, bias and BatchNorm, and the
/// next layer's weight without the matching input channels (its bias is unchanged).
template <std::size_t Rank1, std::size_t Rank2>
struct thinned_pair {
  tensor<float, Rank1> weight;
  std::vector<float> bias;
  std::optional<batch_norm> norm;
  tensor<float, Rank2> next_weight;
};

/// Removes the output channels of a layer that are not in `kept` (ascending, e.g. from
/// prune::channels(..., channel_axis::output, ...).kept): rows of its weight [out, in, ...],
/// entries of its bias (may be empty) and of the BatchNorm that follows it (may be null), and
/// input channels (axis 1) of the next layer's weight [out2, out, ...]. Linear→Linear,
/// Conv→Conv, Conv→BN→Conv. The thinned pair computes exactly what the pair computes when
/// the removed channels' outputs are zero (weights, bias and the BN output of those channels
/// masked); an activation with f(0) = 0 (ReLU) in between keeps that true. See
/// docs/pruning.md, "Structured thinning".
template <std::size_t Rank1, std::size_t Rank2>
thinned_pair<Rank1, Rank2> thin(tensor_view<const float, Rank1> weight, std::span<const float> bias,
                                const batch_norm* norm, tensor_view<const float, Rank2> next_weight,
                                std::span<const index_t> kept) {
  const index_t out = weight.extent(0);
  SHRINK_REQUIRE(bias.empty() || static_cast<index_t>(bias.size()) == out, errc::shape_mismatch,
                 "prune::thin: bias must be empty or have ", out, " entries, got ", bias.size());
  SHRINK_REQUIRE(norm == nullptr || static_cast<index_t>(norm->channels()) == out, errc::shape_mismatch,
                 "prune::thin: BatchNorm must have ", out, " channels, got ", norm == nullptr ? 0 : norm->channels());
  SHRINK_REQUIRE(next_weight.extent(1) == out, errc::shape_mismatch, "prune::thin: the next layer takes ",
                 next_weight.extent(1), " input channels but this layer produces ", out);
  thinned_pair<Rank1, Rank2> r;
  r.weight = keep_along(weight, 0, kept);
  if (!bias.empty()) r.bias = keep_entries(bias, kept);
  if (norm != nullptr) r.norm = keep_channels(*norm, kept);
  r.next_weight = keep_along(next_weight, 1, kept);
  return r;
}

}  // namespace shrink::prune
