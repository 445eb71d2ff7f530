// unstructured.hpp: element-wise pruning masks: magnitude and Taylor criteria, per tensor or global across tensors, and re-pruning.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"
#include "mask.hpp"
#include "select.hpp"

namespace shrink::prune {

/// A tensor taking part in global pruning: contiguous values and their shape (rank 1 to 4).
struct layer_ref {
  std::span<const float> values;
  std::vector<index_t> dims;

  template <class T, std::size_t Rank>
    requires std::is_same_v<std::remove_const_t<T>, float>
  layer_ref(tensor_view<T, Rank> v)  // NOLINT(google-explicit-constructor)
      : values(v.span()), dims(v.shape().dims.begin(), v.shape().dims.end()) {}
  template <std::size_t Rank>
  layer_ref(const tensor<float, Rank>& t)  // NOLINT(google-explicit-constructor)
      : layer_ref(t.view()) {}
};

namespace detail {
template <std::size_t Rank>
std::vector<index_t> dims_of(const shape<Rank>& s) {
  return {s.dims.begin(), s.dims.end()};
}

// Contiguous storage of a possibly strided view (a copy only when strided).
template <std::size_t Rank>
struct contiguous {
  tensor<float, Rank> copy;
  const float* data = nullptr;
  explicit contiguous(tensor_view<const float, Rank> v) {
    if (v.is_contiguous()) {
      data = v.data();
    } else {
      copy = tensor<float, Rank>(v);
      data = copy.data();
    }
  }
};

inline void run_target(const std::vector<segment>& segs, index_t total, const target& t, const char* who,
                       const char* what) {
  check_target(t, who);
  if (t.by == target::kind::sparsity)
    select_prune(segs, prune_count(t.value, total), who, what);
  else
    select_threshold(segs, t.value, who, what);
}
}  // namespace detail

/// Magnitude pruning of one tensor: prunes the elements with the smallest |w|. By sparsity:
/// exactly prune_count(s, size) elements, ties broken by index (lower index pruned first),
/// so an all-zero tensor loses its first k elements. By threshold: kept iff |w| > threshold.
/// NaN weights are an error naming the index.
template <std::size_t Rank>
mask magnitude(tensor_view<const float, Rank> weights, const target& t) {
  detail::contiguous<Rank> w(weights);
  mask m(weights.shape(), mask::uninitialized{});  // every byte is written by the selection
  detail::run_target({{w.data, weights.size(), m.data()}}, weights.size(), t, "prune::magnitude", "weight");
  return m;
}

/// magnitude() into an existing mask, reusing its storage when it already has the weights'
/// shape (a training loop that re-prunes every Δt steps allocates its 1 byte per weight once).
template <std::size_t Rank>
void magnitude(tensor_view<const float, Rank> weights, const target& t, mask& out) {
  detail::contiguous<Rank> w(weights);
  if (!out.matches(weights.shape())) out = mask(weights.shape(), mask::uninitialized{});
  detail::run_target({{w.data, weights.size(), out.data()}}, weights.size(), t, "prune::magnitude", "weight");
}

/// Global magnitude pruning across several tensors, as torch.nn.utils.prune.global_unstructured
/// with L1Unstructured: one ranking over the concatenation (in the order given), prune
/// round(s · total) elements; returns one mask per tensor. Ties: lower global index first.
inline std::vector<mask> global_magnitude(std::span<const layer_ref> layers, const target& t) {
  std::vector<mask> masks;
  masks.reserve(layers.size());
  std::vector<detail::segment> segs;
  index_t total = 0;
  for (const layer_ref& l : layers) {
    masks.emplace_back(l.dims, mask::uninitialized{});
    SHRINK_REQUIRE(masks.back().size() == static_cast<index_t>(l.values.size()), errc::shape_mismatch,
                   "prune::global_magnitude: a layer has ", l.values.size(), " values but its dims hold ",
                   masks.back().size());
    segs.push_back({l.values.data(), masks.back().size(), masks.back().data()});
    total += masks.back().size();
  }
  detail::run_target(segs, total, t, "prune::global_magnitude", "weight");
  return masks;
}

/// First-order Taylor pruning (Molchanov et al. 2017, element-wise): score |w · g|, the
/// estimated change of the loss when w is set to zero. Gradients must have the weights' shape.
template <std::size_t Rank>
mask taylor(tensor_view<const float, Rank> weights, tensor_view<const float, Rank> gradients, const target& t) {
  SHRINK_REQUIRE(weights.shape() == gradients.shape(), errc::shape_mismatch,
                 "prune::taylor: gradients must have the weights' shape ", weights.shape(), ", got ",
                 gradients.shape());
  detail::contiguous<Rank> w(weights), g(gradients);
  const index_t n = weights.size();
  std::vector<float> scores(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    const float s = std::fabs(w.data[i] * g.data[i]);
    SHRINK_REQUIRE(!std::isnan(s), errc::non_finite, "prune::taylor: score |w * g| is NaN at index ", i,
                   " (weight ", w.data[i], ", gradient ", g.data[i], "); expected finite values");
    scores[static_cast<std::size_t>(i)] = s;
  }
  mask m(weights.shape(), mask::uninitialized{});
  detail::run_target({{scores.data(), n, m.data()}}, n, t, "prune::taylor", "score");
  return m;
}

/// Re-prunes for the next round of Han et al.'s prune -> retrain loop: elements pruned in
/// `previous` stay pruned, and the remaining ones are ranked by |w| until the total pruned
/// count reaches prune_count(s, size). If `previous` already prunes at least that many, it is
/// returned unchanged (sparsity never decreases). A threshold target keeps iff previously kept
/// and |w| > threshold.
template <std::size_t Rank>
mask reprune(tensor_view<const float, Rank> weights, const mask& previous, const target& t) {
  SHRINK_REQUIRE(previous.matches(weights.shape()), errc::shape_mismatch,
                 "prune::reprune: the previous mask must have the weights' shape ", weights.shape());
  detail::check_target(t, "prune::reprune");
  detail::contiguous<Rank> w(weights);
  const index_t n = weights.size();
  std::vector<float> alive;
  std::vector<index_t> where;
  for (index_t i = 0; i < n; ++i)
    if (previous[i] != 0) {
      SHRINK_REQUIRE(!std::isnan(w.data[i]), errc::non_finite, "prune::reprune: weight is NaN at index ", i,
                     "; expected finite values");
      alive.push_back(w.data[i]);
      where.push_back(i);
    }
  const auto na = static_cast<index_t>(alive.size());
  std::vector<std::uint8_t> sub(alive.size());
  if (t.by == target::kind::sparsity) {
    const index_t k = prune_count(t.value, n);
    if (k <= n - na) return previous;
    detail::select_prune({{alive.data(), na, sub.data()}}, k - (n - na), "prune::reprune", "weight");
  } else {
    detail::select_threshold({{alive.data(), na, sub.data()}}, t.value, "prune::reprune", "weight");
  }
  mask m(weights.shape(), 0);
  for (index_t j = 0; j < na; ++j) m[where[static_cast<std::size_t>(j)]] = sub[static_cast<std::size_t>(j)];
  return m;
}

}  // namespace shrink::prune
