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

/// Sorts by bit pattern, lazily. Floats map to order-preserving keys; one MSD pass on the
/// top 16 key bits scatters them into 65536 buckets (with per-bucket count and sum). A
/// bucket is finished only when a query needs its order: an LSD radix sort on the low 16
/// bits (8 + 8) in cache, plus prefix sums every 64 values. Lloyd touches only
/// the buckets holding a cluster boundary, so most of the data is never fully sorted.
/// Exact and deterministic. Non-finite values are an error; -0 sorts as +0.
class lazy_sorted {
 public:
  static constexpr std::size_t k_buckets = 65536;
  static constexpr int k_shift = 16;  // bucket = top 16 key bits: sign, exponent, 7 mantissa bits
  static constexpr std::size_t k_block = 64;

  lazy_sorted(std::span<const float> values, const char* who)
      : n_(values.size()), keys_(new std::uint32_t[values.size()]), out_(new float[values.size()]),
        start_(k_buckets + 1, 0), sum_(k_buckets + 1, 0.0), done_(k_buckets, 0), blocks_(k_buckets) {
    std::vector<std::uint32_t> top(k_buckets + 1, 0);
    std::uint32_t bad = 0;  // exponent all ones: Inf or NaN (checked after the sweep)
    double q[4] = {0, 0, 0, 0};
    std::size_t i = 0;
    for (; i < n_; ++i) {
      const float x = values[i];
      bad |= static_cast<std::uint32_t>((std::bit_cast<std::uint32_t>(x) & 0x7f800000u) == 0x7f800000u);
      ++top[key(x) >> k_shift];
      q[i & 3] += static_cast<double>(x) * static_cast<double>(x);
    }
    if (bad)
      for (std::size_t j = 0; j < n_; ++j)
        SHRINK_REQUIRE(std::isfinite(values[j]), errc::non_finite, who, ": weight ", j, " is ", values[j],
                       "; expected finite values");
    total_sq_ = (q[0] + q[1]) + (q[2] + q[3]);
    std::uint32_t run = 0;
    for (std::size_t d = 0; d <= k_buckets; ++d) {
      start_[d] = run;
      run += top[d];
      top[d] = start_[d];
    }
    std::vector<double> bs(k_buckets, 0.0);
    std::uint32_t* SHRINK_RESTRICT dst = keys_.get();
    for (std::size_t j = 0; j < n_; ++j) {
      const float x = values[j];
      const std::uint32_t k = key(x), d = k >> k_shift;
      dst[top[d]++] = k;
      bs[d] += static_cast<double>(x);
    }
    for (std::size_t d = 0; d < k_buckets; ++d) {
      sum_[d + 1] = sum_[d] + bs[d];
      nonempty_ += start_[d + 1] > start_[d];
    }
  }

  /// Sum of the squares of all values.
  [[nodiscard]] double total_squares() const noexcept { return total_sq_; }

  [[nodiscard]] std::size_t size() const noexcept { return n_; }
  /// Buckets holding at least one value: a lower bound on the number of distinct values.
  [[nodiscard]] std::size_t nonempty_buckets() const noexcept { return nonempty_; }

  void sort_all() {
    for (std::size_t d = 0; d < k_buckets; ++d) ensure(d);
  }
  /// All values ascending (after sort_all()).
  [[nodiscard]] std::span<const float> span() const noexcept { return {out_.get(), n_}; }

  /// The value of rank i.
  [[nodiscard]] float value_at(std::size_t i) {
    const std::size_t d = bucket_of_rank(i);
    ensure(d);
    return out_[i];
  }
  /// Number of values <= t.
  [[nodiscard]] std::size_t count_le(double t) {
    // x <= t for a float x  <=>  x <= the largest float not above t
    float f = static_cast<float>(t);
    if (static_cast<double>(f) > t) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
    if (!(f >= -std::numeric_limits<float>::max())) return 0;
    const std::uint32_t d = key(f) >> k_shift;
    ensure(d);
    const float* b = out_.get() + start_[d];
    const float* e = out_.get() + start_[d + 1];
    return static_cast<std::size_t>(std::upper_bound(b, e, f) - out_.get());
  }
  /// Sum of the values of rank < i.
  [[nodiscard]] double sum_before(std::size_t i) {
    if (i >= n_) return sum_[k_buckets];
    const std::size_t d = bucket_of_rank(i);
    ensure(d);
    const std::size_t local = i - start_[d];
    double s = sum_[d] + blocks_[d][local / k_block];
    for (std::size_t j = start_[d] + local / k_block * k_block; j < i; ++j) s += static_cast<double>(out_[j]);
    return s;
  }

 private:
  // x + 0.0f turns -0 into +0 (round to nearest) and leaves every other value alone.
  static std::uint32_t key(float x) noexcept { return float_key(x + 0.0f); }

  [[nodiscard]] std::size_t bucket_of_rank(std::size_t i) const noexcept {
    // last bucket whose start is <= i and that is non-empty
    const auto it = std::upper_bound(start_.begin(), start_.end(), static_cast<std::uint32_t>(i));
    return static_cast<std::size_t>(it - start_.begin()) - 1;
  }

  void ensure(std::size_t d) {
    if (done_[d]) return;
    done_[d] = 1;
    const std::size_t lo = start_[d], m = start_[d + 1] - lo;
    std::uint32_t* k = keys_.get() + lo;
    float* o = out_.get() + lo;
    if (m < 64) {
      for (std::size_t i = 1; i < m; ++i) {
        const std::uint32_t v = k[i];
        std::size_t j = i;
        for (; j > 0 && k[j - 1] > v; --j) k[j] = k[j - 1];
        k[j] = v;
      }
      for (std::size_t i = 0; i < m; ++i) o[i] = key_float(k[i]);
    } else {
      // LSD radix sort on the low 16 key bits (2 passes of 8), in cache
      tmp_.resize(std::max(tmp_.size(), m));
      std::array<std::uint32_t, 256> h0{}, h1{};
      for (std::size_t i = 0; i < m; ++i) {
        ++h0[k[i] & 255];
        ++h1[(k[i] >> 8) & 255];
      }
      std::uint32_t s0 = 0, s1 = 0;
      for (std::size_t b = 0; b < 256; ++b) {
        const std::uint32_t c0 = h0[b], c1 = h1[b];
        h0[b] = s0;
        s0 += c0;
        h1[b] = s1;
        s1 += c1;
      }
      std::uint32_t* SHRINK_RESTRICT t = tmp_.data();
      for (std::size_t i = 0; i < m; ++i) t[h0[k[i] & 255]++] = k[i];
      for (std::size_t i = 0; i < m; ++i) o[h1[(t[i] >> 8) & 255]++] = key_float(t[i]);
    }
    // prefix sums within the bucket, every k_block values
    auto& blk = blocks_[d];
    blk.assign(m / k_block + 1, 0.0);
    double s = 0;
    for (std::size_t i = 0; i < m; ++i) {
      if (i % k_block == 0) blk[i / k_block] = s;
      s += static_cast<double>(o[i]);
    }
    if (m % k_block == 0) blk[m / k_block] = s;
  }

  std::size_t n_ = 0, nonempty_ = 0;
  std::unique_ptr<std::uint32_t[]> keys_;
  std::unique_ptr<float[]> out_;
  std::vector<std::uint32_t> start_;
  std::vector<double> sum_;  // exclusive prefix over buckets
  double total_sq_ = 0;
  std::vector<char> done_;
  std::vector<std::vector<double>> blocks_;
  std::vector<std::uint32_t> tmp_;
};

/// All values sorted ascending (the eager form of lazy_sorted).
inline std::vector<float> radix_sort(std::span<const float> values, const char* who) {
  lazy_sorted s(values, who);
  s.sort_all();
  return {s.span().begin(), s.span().end()};
}

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

inline std::vector<double> initial_centroids(lazy_sorted& sorted, std::span<const float> unique,
                                             std::span<const double> weight, std::size_t k, const kmeans_options& o) {
  const std::size_t n = sorted.size();
  std::vector<double> c(k);
  std::mt19937_64 rng(o.seed);
  switch (o.initialisation) {
    case init::linear: {
      const double lo = sorted.value_at(0), hi = sorted.value_at(n - 1);
      for (std::size_t j = 0; j < k; ++j) c[j] = lo + (hi - lo) * static_cast<double>(j) / static_cast<double>(k - 1);
      break;
    }
    case init::density:
      for (std::size_t j = 0; j < k; ++j) {
        const auto i = static_cast<std::size_t>((static_cast<double>(j) + 0.5) * static_cast<double>(n) /
                                                static_cast<double>(k));
        c[j] = sorted.value_at(std::min(i, n - 1));
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
      for (std::size_t j = 0; j < k; ++j) c[j] = sorted.value_at(picked[j]);
      break;
    }
    case init::kmeans_pp: {
      // D^2 sampling over the distinct values weighted by their multiplicity; O(n k).
      const std::size_t u = unique.size();
      std::vector<double> d2(u, std::numeric_limits<double>::infinity());
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
  detail::lazy_sorted sorted(values, "kmeans_1d");
  const std::size_t n = sorted.size();
  const auto k_asked = static_cast<std::size_t>(options.k);
  // Lloyd from linear/density/random starts can run on the lazily sorted data when it is
  // certain (enough non-empty buckets) that there are more distinct values than k and that
  // `automatic` would not pick the DP. Everything else sorts fully first.
  const bool lazy = options.algorithm != method::optimal && options.initialisation != init::kmeans_pp &&
                    !options.track_objective && sorted.nonempty_buckets() >= k_asked &&
                    (options.algorithm == method::lloyd || sorted.nonempty_buckets() * k_asked > k_optimal_work_limit);
  std::vector<float> unique;
  std::vector<double> count;
  std::size_t distinct = k_asked + 1;  // a lower bound is all the lazy path needs
  if (!lazy) {
    sorted.sort_all();
    const auto all = sorted.span();
    for (std::size_t i = 0; i < n; ++i) {
      if (unique.empty() || all[i] != unique.back()) {
        unique.push_back(all[i]);
        count.push_back(0);
      }
      count.back() += 1;
    }
    distinct = unique.size();
  }
  kmeans_result r;
  const std::size_t k = std::min(k_asked, distinct);
  std::vector<double> c;
  if (k == distinct) {  // every distinct value is its own centroid: exact, SSE 0
    c.assign(unique.begin(), unique.end());
    r.optimal = true;
  } else if (options.algorithm == method::optimal ||
             (options.algorithm == method::automatic && !lazy && k * distinct <= k_optimal_work_limit)) {
    c = detail::optimal_centroids(unique, count, k);
    r.optimal = true;
  } else {
    c = detail::initial_centroids(sorted, unique, count, k, options);
    std::vector<double> at(k + 1);
    std::vector<std::size_t> pos(k + 1);
    for (int it = 0; it < options.iterations; ++it) {
      // assignment: the boundaries are the midpoints (ties to the lower centroid)
      pos[0] = 0;
      pos[k] = n;
      for (std::size_t j = 0; j + 1 < k; ++j) pos[j + 1] = std::max(pos[j], sorted.count_le(0.5 * (c[j] + c[j + 1])));
      for (std::size_t j = 0; j <= k; ++j) at[j] = sorted.sum_before(pos[j]);
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
          if (!split[j] && cnt > best && sorted.value_at(pos[j]) != sorted.value_at(pos[j + 1] - 1)) {
            best = cnt;
            big = j;
          }
        }
        if (big == k) break;
        next[e] = 0.5 * (next[big] + static_cast<double>(sorted.value_at(pos[big + 1] - 1)));
        split[big] = 1;  // do not split the same cluster twice in one iteration
      }
      if (!empty.empty()) std::sort(next.begin(), next.end());
      const bool moved = next != c;
      c.swap(next);
      r.iterations = it + 1;
      if (options.track_objective) r.objective.push_back(detail::sse_of(sorted.span(), c));
      if (!moved) break;
    }
  }
  r.centroids.resize(k);
  for (std::size_t j = 0; j < k; ++j) r.centroids[j] = static_cast<float>(c[j]);
  std::sort(r.centroids.begin(), r.centroids.end());
  std::vector<double> cf(r.centroids.begin(), r.centroids.end());
  if (!lazy) {
    r.sse = detail::sse_of(sorted.span(), cf);
  } else {  // sum over clusters of (x - c)^2 = sum x^2 - sum_j (2 c_j S1_j - m_j c_j^2)
    std::size_t lo = 0;
    double s1_lo = 0, cross = 0;
    for (std::size_t j = 0; j < k; ++j) {
      const std::size_t hi = j + 1 < k ? std::max(lo, sorted.count_le(0.5 * (cf[j] + cf[j + 1]))) : n;
      const double s1 = sorted.sum_before(hi);
      cross += 2 * cf[j] * (s1 - s1_lo) - static_cast<double>(hi - lo) * cf[j] * cf[j];
      lo = hi;
      s1_lo = s1;
    }
    r.sse = std::max(0.0, sorted.total_squares() - cross);
  }
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
