// schedule.hpp: sparsity schedules for retraining: Zhu & Gupta's gradual cubic schedule and Han et al.'s iterative prune -> retrain rounds.
#pragma once

#include <cmath>
#include <cstdint>

#include "../core/error.hpp"

namespace shrink::prune {

/// Gradual pruning schedule of Zhu & Gupta 2017 ("To prune, or not to prune", eq. 1):
///   s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (n · Δt))³   for t0 <= t <= t0 + n·Δt,
/// s_i before t0 and s_f after t0 + n·Δt. Pruning happens every Δt steps (`prune_step`);
/// in between, masks are applied to weights and gradients so pruned weights stay zero.
struct gradual_schedule {
  double initial_sparsity = 0.0;  ///< s_i
  double final_sparsity = 0.9;    ///< s_f
  std::int64_t begin_step = 0;    ///< t0
  std::int64_t prune_steps = 10;  ///< n, the number of pruning events after t0
  std::int64_t interval = 1;      ///< Δt, training steps between pruning events

  void check() const {
    SHRINK_REQUIRE(initial_sparsity >= 0.0 && initial_sparsity <= 1.0 && final_sparsity >= 0.0 &&
                       final_sparsity <= 1.0,
                   errc::invalid_argument, "prune::gradual_schedule: sparsities must be in [0, 1], got s_i = ",
                   initial_sparsity, ", s_f = ", final_sparsity);
    SHRINK_REQUIRE(prune_steps >= 1 && interval >= 1, errc::invalid_argument,
                   "prune::gradual_schedule: n and interval must be >= 1, got n = ", prune_steps,
                   ", interval = ", interval);
  }
  /// The last step of the ramp, t0 + n·Δt.
  [[nodiscard]] std::int64_t end_step() const { return begin_step + prune_steps * interval; }

  /// s_t, clamped to s_i before t0 and s_f after the end.
  [[nodiscard]] double sparsity_at(std::int64_t step) const {
    check();
    if (step <= begin_step) return initial_sparsity;
    if (step >= end_step()) return final_sparsity;
    const double progress = static_cast<double>(step - begin_step) /
                            (static_cast<double>(prune_steps) * static_cast<double>(interval));
    const double rest = 1.0 - progress;
    return final_sparsity + (initial_sparsity - final_sparsity) * rest * rest * rest;
  }

  /// True on the steps where the mask is recomputed: t0, t0 + Δt, …, t0 + n·Δt.
  [[nodiscard]] bool prune_step(std::int64_t step) const {
    check();
    return step >= begin_step && step <= end_step() && (step - begin_step) % interval == 0;
  }
};

/// Han et al. 2015 ("Learning both Weights and Connections"): prune, retrain, repeat. The
/// sparsity after round r (1-based) of R rounds: geometric (the default) removes the same
/// fraction of the surviving weights each round, density_r = (1 − s_f)^(r/R); linear steps
/// s_f · r / R. Use with prune::reprune so weights pruned earlier stay pruned.
struct iterative_schedule {
  enum class kind { geometric, linear };
  double final_sparsity = 0.9;
  int rounds = 5;
  kind spacing = kind::geometric;

  [[nodiscard]] double sparsity(int round) const {
    SHRINK_REQUIRE(final_sparsity >= 0.0 && final_sparsity <= 1.0, errc::invalid_argument,
                   "prune::iterative_schedule: final sparsity must be in [0, 1], got ", final_sparsity);
    SHRINK_REQUIRE(rounds >= 1, errc::invalid_argument, "prune::iterative_schedule: rounds must be >= 1, got ",
                   rounds);
    SHRINK_REQUIRE(round >= 0 && round <= rounds, errc::out_of_range, "prune::iterative_schedule: round must be in [0, ",
                   rounds, "], got ", round);
    if (round == rounds) return final_sparsity;
    const double f = static_cast<double>(round) / static_cast<double>(rounds);
    if (spacing == kind::linear) return final_sparsity * f;
    return 1.0 - std::pow(1.0 - final_sparsity, f);
  }
};

}  // namespace shrink::prune
