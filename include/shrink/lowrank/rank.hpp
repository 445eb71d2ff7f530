// rank.hpp: rank selection rules (explicit rank, kept energy, parameter ratio, error tolerance) over a singular spectrum.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <variant>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace shrink::lowrank {

/// Keep exactly `rank` components; 1 ≤ rank ≤ min(m, n).
struct explicit_rank {
  index_t rank = 1;
};

/// Smallest r with Σ_{i≤r} σ_i² ≥ fraction · Σ σ_i²; fraction in (0, 1].
struct kept_energy {
  double fraction = 0.9;
};

/// Largest r with r·(m + n) ≤ ratio · m·n (at least 1); ratio in (0, 1].
struct parameter_ratio {
  double ratio = 0.5;
};

/// Smallest r with ‖W − W_r‖_F / ‖W‖_F = sqrt(Σ_{i>r} σ_i² / Σ σ_i²) ≤ tolerance; tolerance in [0, 1).
struct error_tolerance {
  double tolerance = 0.1;
};

/// One of the four rules; pass any of them where a `rank_rule` is expected.
using rank_rule = std::variant<explicit_rank, kept_energy, parameter_ratio, error_tolerance>;

namespace detail {

/// Checks a rule's own range against a matrix of m × n (before any SVD is spent).
inline void check_rule(const rank_rule& rule, index_t m, index_t n, const char* who) {
  const index_t full = std::min(m, n);
  if (const auto* r = std::get_if<explicit_rank>(&rule)) {
    SHRINK_REQUIRE(r->rank >= 1 && r->rank <= full, errc::invalid_argument, who, ": rank must be in [1, min(m, n) = ",
                   full, "], got ", r->rank);
  } else if (const auto* e = std::get_if<kept_energy>(&rule)) {
    SHRINK_REQUIRE(e->fraction > 0.0 && e->fraction <= 1.0, errc::invalid_argument, who,
                   ": kept energy fraction must be in (0, 1], got ", e->fraction);
  } else if (const auto* p = std::get_if<parameter_ratio>(&rule)) {
    SHRINK_REQUIRE(p->ratio > 0.0 && p->ratio <= 1.0, errc::invalid_argument, who,
                   ": parameter ratio must be in (0, 1], got ", p->ratio);
  } else if (const auto* t = std::get_if<error_tolerance>(&rule)) {
    SHRINK_REQUIRE(t->tolerance >= 0.0 && t->tolerance < 1.0, errc::invalid_argument, who,
                   ": relative error tolerance must be in [0, 1), got ", t->tolerance);
  }
}

/// Largest r ≥ 1 with r·(m + n) ≤ ratio·m·n, capped at min(m, n).
inline index_t rank_for_ratio(double ratio, index_t m, index_t n) {
  const double budget = ratio * static_cast<double>(m) * static_cast<double>(n);
  const auto r = static_cast<index_t>(std::floor(budget / static_cast<double>(m + n)));
  return std::clamp<index_t>(r, 1, std::min(m, n));
}

}  // namespace detail

/// The rank a rule picks for an m × n matrix whose singular values (descending) are
/// `sigma`. `total_energy` is Σ σ_i² over the FULL spectrum (= ‖W‖_F²); pass a negative
/// value to use Σ sigma² (when `sigma` is the full spectrum). The result is in [1, sigma.size()]
/// for the spectrum rules and [1, min(m, n)] for the others.
inline index_t select_rank(std::span<const double> sigma, index_t m, index_t n, const rank_rule& rule,
                           double total_energy = -1.0) {
  detail::check_rule(rule, m, n, "select_rank");
  if (const auto* r = std::get_if<explicit_rank>(&rule)) return r->rank;
  if (const auto* p = std::get_if<parameter_ratio>(&rule)) return detail::rank_for_ratio(p->ratio, m, n);
  SHRINK_REQUIRE(!sigma.empty(), errc::empty_input, "select_rank: the spectrum is empty");
  double total = total_energy;
  if (total < 0.0) {
    total = 0.0;
    for (double s : sigma) total += s * s;
  }
  const auto count = static_cast<index_t>(sigma.size());
  if (total <= 0.0) return 1;  // a zero matrix: any rank is exact
  // Allowed residual energy Σ_{i>r} σ²: (1 − e)·total for the energy rule, tol²·total for the
  // tolerance rule (‖W − W_r‖_F² = Σ_{i>r} σ², Eckart–Young). The tail is summed from the
  // small end so a small residual is not lost to cancellation in total − kept.
  double allowed = 0.0;
  if (const auto* e = std::get_if<kept_energy>(&rule)) {
    allowed = (1.0 - e->fraction) * total;
  } else {
    const double tol = std::get<error_tolerance>(rule).tolerance;
    allowed = tol * tol * total;
  }
  std::vector<double> tail(static_cast<std::size_t>(count) + 1, 0.0);
  for (index_t i = count; i-- > 0;) {
    const double s = sigma[static_cast<std::size_t>(i)];
    tail[static_cast<std::size_t>(i)] = tail[static_cast<std::size_t>(i) + 1] + s * s;
  }
  const double outside = std::max(0.0, total - tail[0]);  // energy beyond a truncated (sketched) spectrum
  for (index_t r = 1; r <= count; ++r)
    if (tail[static_cast<std::size_t>(r)] + outside <= allowed) return r;
  return count;
}

}  // namespace shrink::lowrank
