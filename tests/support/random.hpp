// random.hpp: deterministic test data (normal and uniform floats, full-range integers) from a seed.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace shrink::testing {

inline std::vector<float> normal_floats(std::size_t n, std::uint64_t seed, float mean = 0.0f, float stddev = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> out(n);
  for (float& x : out) x = dist(rng);
  return out;
}

inline std::vector<float> uniform_floats(std::size_t n, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> out(n);
  for (float& x : out) x = dist(rng);
  return out;
}

/// Integers uniformly over the whole range of T (so the extremes are hit), as T.
template <class T>
std::vector<T> full_range(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> dist(std::numeric_limits<T>::min(), std::numeric_limits<T>::max());
  std::vector<T> out(n);
  for (T& x : out) x = static_cast<T>(dist(rng));
  return out;
}

}  // namespace shrink::testing
