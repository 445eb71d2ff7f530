// allocator.hpp: mixed precision under a byte budget: greedy choice of one option per tensor by least error increase per byte saved.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../core/error.hpp"

namespace shrink::compress {

/// One way to store a tensor: its size and the error it causes (any additive measure, e.g.
/// the sum of squared errors over the tensor's elements).
struct option_cost {
  double bytes = 0;
  double error = 0;
};

/// The options of one tensor, in any order.
struct tensor_costs {
  std::string name;
  std::vector<option_cost> options;
};

struct allocation {
  std::vector<std::size_t> choice;  ///< per tensor, the index of the chosen option
  double bytes = 0;                 ///< total bytes of the chosen options
  double error = 0;                 ///< total error of the chosen options
  bool met = false;                 ///< whether bytes <= budget
};

/// Greedy sensitivity allocation. Every tensor starts at its lowest-error option; while the
/// total exceeds `budget_bytes`, the move with the smallest error increase per byte saved
/// (over all tensors and all cheaper options of each) is taken. This is the classic
/// marginal-analysis heuristic for a separable knapsack (optimal when each tensor's
/// error-vs-bytes curve is convex; docs/tool.md). If even the cheapest options exceed the
/// budget the result has met = false and every tensor at its cheapest option.
inline allocation allocate_greedy(const std::vector<tensor_costs>& tensors, double budget_bytes) {
  allocation a;
  a.choice.resize(tensors.size());
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    const auto& o = tensors[t].options;
    SHRINK_REQUIRE(!o.empty(), errc::invalid_argument, "allocate_greedy: tensor '", tensors[t].name, "' has no options");
    std::size_t best = 0;
    for (std::size_t i = 1; i < o.size(); ++i)
      if (o[i].error < o[best].error || (o[i].error == o[best].error && o[i].bytes < o[best].bytes)) best = i;
    a.choice[t] = best;
    a.bytes += o[best].bytes;
    a.error += o[best].error;
  }
  while (a.bytes > budget_bytes) {
    double best_ratio = std::numeric_limits<double>::infinity();
    std::size_t bt = 0, bi = 0;
    bool found = false;
    for (std::size_t t = 0; t < tensors.size(); ++t) {
      const auto& o = tensors[t].options;
      const option_cost& cur = o[a.choice[t]];
      for (std::size_t i = 0; i < o.size(); ++i) {
        const double saved = cur.bytes - o[i].bytes;
        if (saved <= 0) continue;
        const double ratio = (o[i].error - cur.error) / saved;  // ties: first tensor, first option
        if (ratio < best_ratio) {
          best_ratio = ratio;
          bt = t;
          bi = i;
          found = true;
        }
      }
    }
    if (!found) break;
    const auto& o = tensors[bt].options;
    a.bytes += o[bi].bytes - o[a.choice[bt]].bytes;
    a.error += o[bi].error - o[a.choice[bt]].error;
    a.choice[bt] = bi;
  }
  a.met = a.bytes <= budget_bytes;
  return a;
}

}  // namespace shrink::compress
