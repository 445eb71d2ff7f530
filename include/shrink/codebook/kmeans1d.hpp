// kmeans1d.hpp: 1-D k-means for weight sharing: radix sort once, Lloyd on prefix sums (O(k log n) per iteration), exact DP.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <span>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace shrink::codebook {

/// Where Lloyd's iterations start (Han et al. 2016, section 3.1, plus k-means++).
enum class init {
  linear,     ///< k points evenly spaced between min and max (Deep Compression's default and best)
  density,    ///< k points evenly spaced on the CDF: the (j + 1/2)/k quantiles
  random,     ///< k observations drawn without replacement (Forgy), seeded
  kmeans_pp,  ///< k-means++ D^2 sampling (Arthur and Vassilvitskii 2007), seeded
};

/// Which algorithm clusters: `automatic` picks `optimal` when k * (distinct values) <=
/// k_optimal_work_limit, `lloyd` otherwise (docs/codebook.md, "Which algorithm when").
enum class method { automatic, lloyd, optimal };

inline constexpr std::size_t k_optimal_work_limit = std::size_t{1} << 15;

struct kmeans_options {
  int k = 16;                          ///< clusters, >= 2; reduced to the number of distinct values
  init initialisation = init::linear;  ///< start of Lloyd's iterations (ignored by `optimal`)
  method algorithm = method::automatic;
  int iterations = 20;                 ///< Lloyd iterations at most (stops early at a fixed point)
  std::uint64_t seed = 0;              ///< for init::random and init::kmeans_pp
  bool track_objective = false;        ///< record the SSE after every iteration (O(n) each)
};

struct kmeans_result {
  std::vector<float> centroids;   ///< ascending; size min(k, distinct values)
  double sse = 0;                 ///< sum of squared distances to the nearest centroid
  int iterations = 0;             ///< Lloyd iterations run (0 for `optimal`)
  bool optimal = false;           ///< true when the DP found the global optimum
  std::vector<double> objective;  ///< SSE after each iteration when track_objective
};

namespace detail {

// Order-preserving map of a float's bits to an unsigned key (negatives flipped).
inline std::uint32_t float_key(float x) noexcept {
  const auto u = std::bit_cast<std::uint32_t>(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
inline float key_float(std::uint32_t k) noexcept {
  return std::bit_cast<float>((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

/// Finite floats in ascending order: storage without zero-filling (the sort overwrites it).
struct sorted_floats {
  std::unique_ptr<float[]> data;
  std::size_t size = 0;
  [[nodiscard]] std::span<const float> span() const noexcept { return {data.get(), size}; }
};

/// Sorts finite floats ascending by their bit patterns: one MSD pass on the top 11 bits of
/// the order-preserving key scatters into 2048 buckets, then each bucket is finished in
/// cache by an LSD radix sort on the low 21 bits (11 + 10), whose last pass writes the
/// floats. O(n), exact, deterministic. Non-finite values are an error; -0 sorts (and comes
/// back) as +0.
inline sorted_floats radix_sort(std::span<const float> values, const char* who) {
  const std::size_t n = values.size();
  std::unique_ptr<std::uint32_t[]> keys(new std::uint32_t[n]);
  sorted_floats out{std::unique_ptr<float[]>(new float[n]), n};
  std::vector<std::uint32_t> top(2049, 0);
  for (std::size_t i = 0; i < n; ++i) {
    SHRINK_REQUIRE(std::isfinite(values[i]), errc::non_finite, who, ": weight ", i, " is ", values[i],
                   "; expected finite values");
    ++top[float_key(values[i] == 0.0f ? 0.0f : values[i]) >> 21];  // -0 sorts as +0
  }
  std::uint32_t sum = 0;
  for (int d = 0; d < 2049; ++d) {
    const std::uint32_t c = top[static_cast<std::size_t>(d)];
    top[static_cast<std::size_t>(d)] = sum;
    sum += c;
  }
  std::vector<std::uint32_t> start(top.begin(), top.end());  // bucket d is [start[d], start[d+1])
  {
    std::uint32_t* SHRINK_RESTRICT dst = keys.get();
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t key = float_key(values[i] == 0.0f ? 0.0f : values[i]);
      dst[top[key >> 21]++] = key;
    }
  }
  std::vector<std::uint32_t> tmp;
  std::array<std::uint32_t, 2048> h0{}, h1{};
  for (std::size_t d = 0; d < 2048; ++d) {
    const std::size_t lo = start[d], hi = start[d + 1], m = hi - lo;
    std::uint32_t* k = keys.get() + lo;
    float* o = out.data.get() + lo;
    if (m == 0) continue;
    if (m < 64) {  // insertion sort (keys are distinct-or-equal integers: stable enough)
      for (std::size_t i = 1; i < m; ++i) {
        const std::uint32_t v = k[i];
        std::size_t j = i;
        for (; j > 0 && k[j - 1] > v; --j) k[j] = k[j - 1];
        k[j] = v;
      }
      for (std::size_t i = 0; i < m; ++i) o[i] = key_float(k[i]);
      continue;
    }
    tmp.resize(std::max(tmp.size(), m));
    h0.fill(0);
    h1.fill(0);
    for (std::size_t i = 0; i < m; ++i) {
      ++h0[k[i] & 2047];
      ++h1[(k[i] >> 11) & 1023];
    }
    std::uint32_t s0 = 0, s1 = 0;
    for (std::size_t b = 0; b < 2048; ++b) {
      const std::uint32_t c0 = h0[b];
      h0[b] = s0;
      s0 += c0;
      if (b < 1024) {
        const std::uint32_t c1 = h1[b];
        h1[b] = s1;
        s1 += c1;
      }
    }
    std::uint32_t* SHRINK_RESTRICT t = tmp.data();
    for (std::size_t i = 0; i < m; ++i) t[h0[k[i] & 2047]++] = k[i];
    for (std::size_t i = 0; i < m; ++i) o[h1[(t[i] >> 11) & 1023]++] = key_float(t[i]);
  }
  return out;
}

/// Sums of the sorted values over [0, i) for any i, from block totals every 64 values plus
/// a short scan: O(n / 64) memory instead of a full prefix array.
class block_prefix {
 public:
  static constexpr std::size_t k_block = 64;
  explicit block_prefix(std::span<const float> sorted) : x_(sorted), block_(sorted.size() / k_block + 1, 0.0) {
    double s = 0;
    for (std::size_t i = 0; i < sorted.size(); ++i) {
      if (i % k_block == 0) block_[i / k_block] = s;
      s += static_cast<double>(sorted[i]);
    }
    if (sorted.size() % k_block == 0) block_[sorted.size() / k_block] = s;
  }
  [[nodiscard]] double sum_before(std::size_t i) const noexcept {
    const std::size_t b = i / k_block;
    double s = block_[b];
    for (std::size_t j = b * k_block; j < i; ++j) s += static_cast<double>(x_[j]);
    return s;
  }

 private:
  std::span<const float> x_;
  std::vector<double> block_;
};

// Uniform double in [0, 1) from a 64-bit generator: the same on every standard library.
inline double unit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

/// Boundaries of the clusters on sorted data: value x goes to the nearest centroid, a tie
/// (x exactly on the midpoint) to the lower one. pos[j] .. pos[j+1] is cluster j.
inline void boundaries(std::span<const float> sorted, std::span<const double> c, std::vector<std::size_t>& pos) {
  const std::size_t k = c.size();
  pos.assign(k + 1, 0);
  pos[k] = sorted.size();
  for (std::size_t j = 0; j + 1 < k; ++j) {
    const double mid = 0.5 * (c[j] + c[j + 1]);
    const auto it = std::upper_bound(sorted.begin() + static_cast<std::ptrdiff_t>(pos[j]), sorted.end(), mid,
                                     [](double m, float v) { return m < static_cast<double>(v); });
    pos[j + 1] = static_cast<std::size_t>(it - sorted.begin());
  }
}

inline double segment_sse(std::span<const float> sorted, std::size_t lo, std::size_t hi, double c) {
  double s = 0;
  for (std::size_t i = lo; i < hi; ++i) {
    const double d = static_cast<double>(sorted[i]) - c;
    s += d * d;
  }
  return s;
}

inline double sse_of(std::span<const float> sorted, std::span<const double> c) {
  std::vector<std::size_t> pos;
  boundaries(sorted, c, pos);
  double s = 0;
  for (std::size_t j = 0; j < c.size(); ++j) s += segment_sse(sorted, pos[j], pos[j + 1], c[j]);
  return s;
}

inline std::vector<double> initial_centroids(std::span<const float> sorted, std::span<const float> unique,
                                             std::size_t k, const kmeans_options& o) {
  const std::size_t n = sorted.size();
  std::vector<double> c(k);
  std::mt19937_64 rng(o.seed);
  switch (o.initialisation) {
    case init::linear: {
      const double lo = sorted.front(), hi = sorted.back();
      for (std::size_t j = 0; j < k; ++j) c[j] = lo + (hi - lo) * static_cast<double>(j) / static_cast<double>(k - 1);
      break;
    }
    case init::density:
      for (std::size_t j = 0; j < k; ++j) {
        const auto i = static_cast<std::size_t>((static_cast<double>(j) + 0.5) * static_cast<double>(n) /
                                                static_cast<double>(k));
        c[j] = sorted[std::min(i, n - 1)];
      }
      break;
    case init::random: {
      // Floyd's sampling of k distinct positions, then sorted: deterministic for a seed.
      std::vector<std::size_t> picked;
      for (std::size_t j = n - k; j < n; ++j) {
        const auto t = static_cast<std::size_t>(unit(rng) * static_cast<double>(j + 1));
        const std::size_t pick = std::min(t, j);
        picked.push_back(std::find(picked.begin(), picked.end(), pick) == picked.end() ? pick : j);
      }
      std::sort(picked.begin(), picked.end());
      for (std::size_t j = 0; j < k; ++j) c[j] = sorted[picked[j]];
      break;
    }
    case init::kmeans_pp: {
      // D^2 sampling over the distinct values weighted by their multiplicity; O(n k).
      const std::size_t u = unique.size();
      std::vector<double> weight(u, 0), d2(u, std::numeric_limits<double>::infinity());
      {
        std::size_t i = 0;
        for (std::size_t v = 0; v < u; ++v) {
          const std::size_t start = i;
          while (i < n && sorted[i] == unique[v]) ++i;
          weight[v] = static_cast<double>(i - start);
        }
      }
      double pick = unit(rng) * static_cast<double>(n);
      std::size_t chosen = 0;
      for (double acc = 0; chosen + 1 < u; ++chosen) {
        acc += weight[chosen];
        if (acc > pick) break;
      }
      c[0] = unique[chosen];
      for (std::size_t j = 1; j < k; ++j) {
        double total = 0;
        for (std::size_t v = 0; v < u; ++v) {
          const double d = static_cast<double>(unique[v]) - c[j - 1];
          d2[v] = std::min(d2[v], d * d);
          total += weight[v] * d2[v];
        }
        pick = unit(rng) * total;
        chosen = u - 1;
        double acc = 0;
        for (std::size_t v = 0; v < u; ++v) {
          acc += weight[v] * d2[v];
          if (acc > pick && d2[v] > 0) {
            chosen = v;
            break;
          }
        }
        if (d2[chosen] == 0)  // rounding left no mass: take the farthest distinct value
          chosen = static_cast<std::size_t>(std::max_element(d2.begin(), d2.end()) - d2.begin());
        c[j] = unique[chosen];
      }
      std::sort(c.begin(), c.end());
      break;
    }
  }
  return c;
}

/// Exact optimal 1-D k-means (Wang and Song 2011, Ckmeans.1d.dp) on distinct values with
/// multiplicities, using the divide-and-conquer speed-up of the row minima (the optimal
/// split point is monotone in j): O(k u log u) time, O(k u) memory.
inline std::vector<double> optimal_centroids(std::span<const float> unique, std::span<const double> count,
                                             std::size_t k) {
  const std::size_t u = unique.size();
  std::vector<double> s0(u + 1, 0), s1(u + 1, 0), s2(u + 1, 0);
  for (std::size_t i = 0; i < u; ++i) {
    const double x = unique[i], w = count[i];
    s0[i + 1] = s0[i] + w;
    s1[i + 1] = s1[i] + w * x;
    s2[i + 1] = s2[i] + w * x * x;
  }
  // cost of one cluster holding unique[i..j] inclusive
  auto cost = [&](std::size_t i, std::size_t j) {
    const double w = s0[j + 1] - s0[i], s = s1[j + 1] - s1[i];
    return std::max(0.0, s2[j + 1] - s2[i] - s * s / w);
  };
  std::vector<double> prev(u), cur(u);
  std::vector<std::uint32_t> back(k * u, 0);
  for (std::size_t j = 0; j < u; ++j) prev[j] = cost(0, j);
  for (std::size_t m = 1; m < k; ++m) {
    std::uint32_t* b = back.data() + m * u;
    // cur[j] = min over i in [m, j] of prev[i-1] + cost(i, j), for j in [m, u)
    auto solve = [&](auto&& self, std::size_t jl, std::size_t jr, std::size_t il, std::size_t ir) -> void {
      if (jl > jr) return;
      const std::size_t j = jl + (jr - jl) / 2;
      std::size_t best_i = std::max(il, m);
      double best = std::numeric_limits<double>::infinity();
      for (std::size_t i = std::max(il, m); i <= std::min(j, ir); ++i) {
        const double v = prev[i - 1] + cost(i, j);
        if (v < best) {
          best = v;
          best_i = i;
        }
      }
      cur[j] = best;
      b[j] = static_cast<std::uint32_t>(best_i);
      if (j > jl) self(self, jl, j - 1, il, best_i);
      self(self, j + 1, jr, best_i, ir);
    };
    solve(solve, m, u - 1, m, u - 1);
    std::swap(prev, cur);
  }
  std::vector<double> c(k);
  std::size_t hi = u - 1;
  for (std::size_t m = k; m-- > 0;) {
    const std::size_t lo = m == 0 ? 0 : back[m * u + hi];
    c[m] = (s1[hi + 1] - s1[lo]) / (s0[hi + 1] - s0[lo]);
    if (m > 0) hi = lo - 1;
  }
  return c;
}

}  // namespace detail

/// Clusters `values` (all finite; every value counts, zeros included: callers that keep
/// pruned weights at zero pass only the non-zeros, as `cluster` does) into at most
/// `options.k` centroids. k < 2 is an error; k above the number of distinct values is
/// reduced to it, and the centroids are then those values exactly. Deterministic.
inline kmeans_result kmeans_1d(std::span<const float> values, const kmeans_options& options) {
  SHRINK_REQUIRE(options.k >= 2, errc::invalid_argument, "kmeans_1d: k must be >= 2, got ", options.k);
  SHRINK_REQUIRE(options.iterations >= 0, errc::invalid_argument, "kmeans_1d: iterations must be >= 0, got ",
                 options.iterations);
  SHRINK_REQUIRE(!values.empty(), errc::empty_input, "kmeans_1d: no values to cluster");
  const detail::sorted_floats sorted_storage = detail::radix_sort(values, "kmeans_1d");
  const std::span<const float> sorted = sorted_storage.span();
  const std::size_t n = sorted.size();
  std::size_t distinct = n > 0 ? 1 : 0;
  for (std::size_t i = 1; i < n; ++i) distinct += sorted[i] != sorted[i - 1];
  // Distinct values and their multiplicities: only the DP and k-means++ need them.
  std::vector<float> unique;
  std::vector<double> count;
  auto build_unique = [&] {
    unique.reserve(distinct);
    count.reserve(distinct);
    for (std::size_t i = 0; i < n; ++i) {
      if (unique.empty() || sorted[i] != unique.back()) {
        unique.push_back(sorted[i]);
        count.push_back(0);
      }
      count.back() += 1;
    }
  };
  kmeans_result r;
  const std::size_t k = std::min(static_cast<std::size_t>(options.k), distinct);
  std::vector<double> c;
  if (k == distinct) {  // every distinct value is its own centroid: exact, SSE 0
    build_unique();
    c.assign(unique.begin(), unique.end());
    r.optimal = true;
  } else if (options.algorithm == method::optimal ||
             (options.algorithm == method::automatic && k * distinct <= k_optimal_work_limit)) {
    build_unique();
    c = detail::optimal_centroids(unique, count, k);
    r.optimal = true;
  } else {
    if (options.initialisation == init::kmeans_pp) build_unique();
    c = detail::initial_centroids(sorted, unique, k, options);
    // prefix sums of the sorted values: a cluster's mean is two lookups
    const detail::block_prefix prefix(sorted);
    std::vector<double> at(k + 1);
    std::vector<std::size_t> pos;
    for (int it = 0; it < options.iterations; ++it) {
      detail::boundaries(sorted, c, pos);
      for (std::size_t j = 0; j <= k; ++j) at[j] = prefix.sum_before(pos[j]);
      std::vector<double> next(k);
      std::vector<std::size_t> empty;
      for (std::size_t j = 0; j < k; ++j) {
        const std::size_t cnt = pos[j + 1] - pos[j];
        if (cnt == 0) {
          empty.push_back(j);
          next[j] = c[j];
        } else {
          next[j] = (at[j + 1] - at[j]) / static_cast<double>(cnt);
        }
      }
      // An empty centroid costs nothing; moving it into the most populous cluster that holds
      // two distinct values (midway between its mean and its largest value) can only lower
      // the objective at the next assignment, so Lloyd stays monotone.
      std::vector<char> split(k, 0);
      for (std::size_t e : empty) {
        std::size_t big = k, best = 1;
        for (std::size_t j = 0; j < k; ++j) {
          const std::size_t cnt = pos[j + 1] - pos[j];
          if (!split[j] && cnt > best && sorted[pos[j]] != sorted[pos[j + 1] - 1]) {
            best = cnt;
            big = j;
          }
        }
        if (big == k) break;
        next[e] = 0.5 * (next[big] + static_cast<double>(sorted[pos[big + 1] - 1]));
        split[big] = 1;  // do not split the same cluster twice in one iteration
      }
      if (!empty.empty()) std::sort(next.begin(), next.end());
      const bool moved = next != c;
      c.swap(next);
      r.iterations = it + 1;
      if (options.track_objective) r.objective.push_back(detail::sse_of(sorted, c));
      if (!moved) break;
    }
  }
  r.centroids.resize(k);
  for (std::size_t j = 0; j < k; ++j) r.centroids[j] = static_cast<float>(c[j]);
  std::sort(r.centroids.begin(), r.centroids.end());
  std::vector<double> cf(r.centroids.begin(), r.centroids.end());
  r.sse = detail::sse_of(sorted, cf);
  return r;
}

/// Index of the centroid nearest to x among ascending `centroids` (ties to the lower index).
inline std::size_t nearest(std::span<const float> centroids, float x) noexcept {
  std::size_t lo = 0, hi = centroids.size() - 1;
  while (lo < hi) {  // first j whose upper midpoint is >= x
    const std::size_t mid = (lo + hi) / 2;
    const double m = 0.5 * (static_cast<double>(centroids[mid]) + static_cast<double>(centroids[mid + 1]));
    if (static_cast<double>(x) <= m)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

}  // namespace shrink::codebook
