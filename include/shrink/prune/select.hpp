// select.hpp: exact "prune the k smallest" selection over one or several float arrays, by sampling plus one classifying pass (no sort).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../kernels/dispatch.hpp"

#if SHRINK_HAS_X86_PATHS
#include <immintrin.h>
#endif

// How the exact selection works (docs/pruning.md, "Selection"):
//   Each element's score is |x|; its key is the bit pattern of |x| (sign bit cleared), and for
//   non-negative floats integer order equals numeric order, so keys compare as uint32. The
//   total order is (key, global index): among equal scores the lower index ranks lower and is
//   pruned first. To prune exactly k of n:
//   1. take a strided sample of s keys and find, by radix histograms (rank_select), a bracket
//      [lo, hi] that contains the k-th smallest key with overwhelming probability (±4 standard
//      deviations of the sample quantile);
//   2. one pass over the data writes mask = (key > hi), counts `below` = #(key < lo) and
//      collects the few candidates with lo <= key <= hi (key and index, in index order);
//   3. if below <= k <= below + #candidates, rank_select finds the (k − below)-th smallest
//      candidate key K; the candidates below K and the first of those equal to K (lowest
//      index first, the tie rule) stay pruned; otherwise (a bracket miss, never seen in
//      practice) the pass repeats with the whole key range as bracket, every element a
//      candidate.
//   The cost is one read of the weights plus one byte written per weight.

namespace shrink::prune::detail {

inline constexpr std::uint32_t k_abs_bits = 0x7fffffffu;
inline constexpr std::uint32_t k_inf_key = 0x7f800000u;  // keys above this are NaN

inline std::uint32_t key_of(float x) noexcept { return std::bit_cast<std::uint32_t>(x) & k_abs_bits; }

/// One array taking part in a selection: its elements, their count, where its mask goes.
struct segment {
  const float* data = nullptr;
  index_t size = 0;
  std::uint8_t* out = nullptr;
};

/// Candidates collected by the classifying pass, each packed as key << 32 | global index (so
/// integer order is the (score, index) order and ties need no extra work). A plain growable
/// array: appends are unchecked after `ensure`, which keeps the pass's inner loop branch-light.
struct candidates {
  std::unique_ptr<std::uint64_t[]> data;
  std::size_t size = 0, capacity = 0;

  void clear() noexcept { size = 0; }
  void ensure(std::size_t extra) {
    if (capacity - size >= extra) return;
    const std::size_t cap = std::max(2 * capacity, size + extra);
    std::unique_ptr<std::uint64_t[]> bigger(new std::uint64_t[cap]);
    if (size != 0) std::memcpy(bigger.get(), data.get(), size * sizeof(std::uint64_t));
    data = std::move(bigger);
    capacity = cap;
  }
  static std::uint64_t packed(index_t i, std::uint32_t key) noexcept {
    return static_cast<std::uint64_t>(key) << 32 | static_cast<std::uint64_t>(i);
  }
  static std::uint32_t key_of_packed(std::uint64_t v) noexcept { return static_cast<std::uint32_t>(v >> 32); }
  static index_t index_of_packed(std::uint64_t v) noexcept { return static_cast<index_t>(v & 0xffffffffu); }
  void put(index_t i, std::uint32_t key) noexcept { data[size++] = packed(i, key); }
};

/// Elements a classify call handles between capacity checks.
inline constexpr index_t k_classify_block = 4096;

struct classify_result {
  index_t below = 0;
  bool nan = false;
};

using classify_fn = classify_result (*)(const float*, index_t, std::uint32_t, std::uint32_t, std::uint8_t*, index_t,
                                        candidates&);

/// Scalar oracle of the classifying pass: out[i] = key > hi; below = #(key < lo);
/// candidates lo <= key <= hi. lo may exceed hi (then there are no candidates).
inline classify_result classify_reference(const float* x, index_t n, std::uint32_t lo, std::uint32_t hi,
                                          std::uint8_t* out, index_t base, candidates& c) {
  classify_result r;
  for (index_t i = 0; i < n; ++i) {
    if (i % k_classify_block == 0) c.ensure(static_cast<std::size_t>(k_classify_block));
    const std::uint32_t k = key_of(x[i]);
    r.nan |= k > k_inf_key;
    out[i] = static_cast<std::uint8_t>(k > hi);
    r.below += k < lo;
    if (k >= lo && k <= hi) c.put(base + i, k);
  }
  return r;
}

#if SHRINK_HAS_X86_PATHS
/// Collect: whether [lo, hi] can hold candidates at all (lo <= hi); threshold masks skip it.
template <bool Collect>
SHRINK_TARGET_AVX2 inline classify_result classify_avx2_pass(const float* x, index_t n, std::uint32_t lo,
                                                             std::uint32_t hi, std::uint8_t* out, index_t base,
                                                             candidates& c) {
  // Keys are <= 0x7fffffff, so signed 32-bit compares order them correctly; lo and hi are
  // clamped to that range by the caller (hi = 0x7fffffff means "nothing above").
  const __m256i abs_bits = _mm256_set1_epi32(static_cast<int>(k_abs_bits));
  const __m256i vlo = _mm256_set1_epi32(static_cast<int>(lo)), vhi = _mm256_set1_epi32(static_cast<int>(hi));
  const __m256i vinf = _mm256_set1_epi32(static_cast<int>(k_inf_key));
  __m256i nan = _mm256_setzero_si256();
  classify_result r;
  index_t i = 0;
  // The mask is written once and not read back here: 32-byte non-temporal stores skip the
  // read-for-ownership of its cache lines when `out` is 32-byte aligned (masks are 64-aligned).
  const bool stream = (reinterpret_cast<std::uintptr_t>(out) & 31u) == 0;
  for (; i + 32 <= n; i += 32) {
    if (Collect && i % k_classify_block == 0) c.ensure(static_cast<std::size_t>(k_classify_block) + 1);
    __m256i gt[4];
    unsigned lows = 0, highs = 0;
#pragma GCC unroll 4
    for (int h = 0; h < 4; ++h) {
      const __m256i k = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 8 * h)), abs_bits);
      nan = _mm256_or_si256(nan, _mm256_cmpgt_epi32(k, vinf));
      gt[h] = _mm256_cmpgt_epi32(k, vhi);
      const auto l = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(vlo, k))));
      highs |= static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(gt[h]))) << (8 * h);
      lows |= l << (8 * h);
    }
    // 32 lanes of 0/-1 -> 32 bytes of 0/1 in order (the packs interleave 128-bit lanes; the
    // permute puts the 4-byte groups back in element order).
    const __m256i p16a = _mm256_packs_epi32(gt[0], gt[1]), p16b = _mm256_packs_epi32(gt[2], gt[3]);
    const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    const __m256i packed = _mm256_and_si256(_mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)),
                                            _mm256_set1_epi8(1));
    if (stream)
      _mm256_stream_si256(reinterpret_cast<__m256i*>(out + i), packed);
    else
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), packed);
    r.below += std::popcount(lows);
    if constexpr (Collect) {
      // Most 32-element steps hold no candidate or one, so a loop over the candidate bits
      // would mispredict its exit about once per candidate. One entry is written
      // unconditionally (the capacity has room; an entry past the count is overwritten
      // later), and only steps with two or more loop.
      unsigned cand = ~(highs | lows);
      const auto count = static_cast<std::size_t>(std::popcount(cand));
      const int j0 = std::countr_zero(cand | 0x80000000u);
      c.data[c.size] = candidates::packed(base + i + j0, key_of(x[i + j0]));
      if (count > 1) {
        c.size += 1;
        cand &= cand - 1;
        while (cand != 0) {
          const int j = std::countr_zero(cand);
          cand &= cand - 1;
          c.put(base + i + j, key_of(x[i + j]));
        }
      } else {
        c.size += count;
      }
    }
  }
  if (stream) _mm_sfence();
  r.nan = !_mm256_testz_si256(nan, nan);
  const classify_result t = classify_reference(x + i, n - i, lo, hi, out + i, base + i, c);
  r.below += t.below;
  r.nan |= t.nan;
  return r;
}

SHRINK_TARGET_AVX2 inline classify_result classify_avx2(const float* x, index_t n, std::uint32_t lo, std::uint32_t hi,
                                                        std::uint8_t* out, index_t base, candidates& c) {
  return lo <= hi ? classify_avx2_pass<true>(x, n, lo, hi, out, base, c)
                  : classify_avx2_pass<false>(x, n, lo, hi, out, base, c);
}
#endif

inline classify_fn select_classify() {
  using kernels::isa;
  static constexpr std::array<kernels::implementation<classify_fn>, 2> impls{{
      {isa::reference, 0, &classify_reference},
#if SHRINK_HAS_X86_PATHS
      {isa::avx2, 0, &classify_avx2},
#else
      {isa::reference, 0, &classify_reference},
#endif
  }};
  return kernels::select(impls);
}

/// Throws non_finite naming the first NaN (by global index, and tensor/element when several).
[[noreturn]] inline void raise_nan(const std::vector<segment>& segs, const char* who, const char* what) {
  index_t base = 0;
  for (std::size_t s = 0; s < segs.size(); ++s) {
    for (index_t i = 0; i < segs[s].size; ++i)
      if (std::isnan(segs[s].data[i])) {
        if (segs.size() == 1)
          shrink::detail::raise(errc::non_finite, who, ": ", what, " is NaN at index ", i, "; expected finite values");
        shrink::detail::raise(errc::non_finite, who, ": ", what, " is NaN at index ", i, " of tensor ", s, " (global index ",
              base + i, "); expected finite values");
      }
    base += segs[s].size;
  }
  shrink::detail::raise(errc::non_finite, who, ": ", what, " contains NaN");
}

/// Runs the classifying pass over all segments with bracket [lo, hi].
inline index_t classify_all(const std::vector<segment>& segs, std::uint32_t lo, std::uint32_t hi, candidates& c,
                            const char* who, const char* what) {
  const classify_fn fn = select_classify();
  index_t below = 0, base = 0;
  bool nan = false;
  for (const segment& s : segs) {
    const classify_result r = fn(s.data, s.size, lo, hi, s.out, base, c);
    below += r.below;
    nan |= r.nan;
    base += s.size;
  }
  if (nan) raise_nan(segs, who, what);
  return below;
}

/// The rank-th smallest (0-based) of n 32-bit keys key(0) .. key(n − 1); rank < n. Large n:
/// two radix histogram passes (high 16 bits, then low 16 bits within the chosen bucket),
/// O(n) and the keys are not moved. Below 2^15 keys the two 2^16-bucket scans would cost more
/// than nth_element on a copy, which is used instead.
template <class Key>
std::uint32_t rank_select(index_t n, index_t rank, Key key) {
  if (n < (index_t{1} << 15)) {
    std::vector<std::uint32_t> keys(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) keys[static_cast<std::size_t>(i)] = key(i);
    std::nth_element(keys.begin(), keys.begin() + rank, keys.end());
    return keys[static_cast<std::size_t>(rank)];
  }
  std::vector<std::uint32_t> hist(std::size_t{1} << 16);
  // The bucket (of the digit `digit(i)` over keys passing `keep(i)`) holding `rank`; rank
  // becomes the rank inside it.
  const auto bucket_of = [&](auto keep, auto digit) {
    std::fill(hist.begin(), hist.end(), 0u);
    for (index_t i = 0; i < n; ++i)
      if (keep(i)) ++hist[digit(i)];
    std::uint32_t b = 0;
    for (; static_cast<index_t>(hist[b]) <= rank; ++b) rank -= hist[b];
    return b;
  };
  const std::uint32_t high = bucket_of([](index_t) { return true; }, [&](index_t i) { return key(i) >> 16; });
  const std::uint32_t low =
      bucket_of([&](index_t i) { return key(i) >> 16 == high; }, [&](index_t i) { return key(i) & 0xffffu; });
  return high << 16 | low;
}

/// Writes 0 into the masks of the k elements ranking lowest by (|x|, global index) and 1
/// elsewhere. Scores are |x|, so callers pass weights directly or non-negative scores.
inline void select_prune(const std::vector<segment>& segs, index_t k, const char* who, const char* what) {
  index_t n = 0;
  for (const segment& s : segs) n += s.size;
  SHRINK_REQUIRE(k >= 0 && k <= n, errc::invalid_argument, who, ": cannot prune ", k, " of ", n, " elements");
  candidates c;
  if (k == 0) {  // keep everything: bracket above every key, no candidates
    classify_all(segs, k_abs_bits, k_abs_bits - 1, c, who, what);
    for (const segment& s : segs) std::fill(s.out, s.out + s.size, std::uint8_t{1});
    return;
  }
  SHRINK_REQUIRE(n < (index_t{1} << 32), errc::unsupported, who, ": selection by count supports fewer than 2^32 ",
                 "elements in one call, got ", n);
  std::uint32_t lo = 0, hi = k_abs_bits;
  constexpr index_t k_exact_below = index_t{1} << 15;
  if (n >= k_exact_below) {
    // Deterministic strided sample over the concatenation: runs of k_run consecutive
    // elements (one cache line fetch serves several samples) at evenly spaced positions.
    constexpr index_t k_run = 8;
    const index_t s = std::min<index_t>(n / 8, index_t{1} << 16);
    const index_t positions = s / k_run, step = n / positions;
    std::vector<std::uint32_t> sample;
    sample.reserve(static_cast<std::size_t>(s));
    std::size_t seg = 0;
    index_t seg_base = 0;
    for (index_t j = 0; j < positions; ++j) {
      const index_t g = j * step + step / 2;
      while (g >= seg_base + segs[seg].size) seg_base += segs[seg++].size;
      const float* d = segs[seg].data + (g - seg_base);
      const index_t run = std::min(k_run, seg_base + segs[seg].size - g);
      for (index_t t = 0; t < run; ++t) sample.push_back(key_of(d[t]));
    }
    const auto ns = static_cast<index_t>(sample.size());
    const double q = static_cast<double>(k) / static_cast<double>(n);
    const double delta = 4.0 * std::sqrt(q * (1.0 - q) / static_cast<double>(ns)) + 2.0 / static_cast<double>(ns);
    const auto lo_rank = static_cast<index_t>(std::floor((q - delta) * static_cast<double>(ns)));
    const auto hi_rank = static_cast<index_t>(std::ceil((q + delta) * static_cast<double>(ns)));
    const auto sample_key = [&](index_t i) { return sample[static_cast<std::size_t>(i)]; };
    if (hi_rank < ns) hi = std::min(rank_select(ns, hi_rank, sample_key), k_abs_bits);
    if (lo_rank > 0) lo = std::min(rank_select(ns, std::min(lo_rank, ns - 1), sample_key), hi);
    c.ensure(static_cast<std::size_t>(3.0 * delta * static_cast<double>(n)) + 64);
  }
  index_t below = classify_all(segs, lo, hi, c, who, what);
  if (below > k || below + static_cast<index_t>(c.size) < k) {  // bracket missed: exact over all
    c.clear();
    lo = 0;
    hi = k_abs_bits;
    below = classify_all(segs, lo, hi, c, who, what);
  }
  // Candidates were written as pruned; the r lowest by (key, index) stay pruned, the rest are
  // kept. The r-th smallest candidate key K comes from rank_select; the candidates are in
  // global index order (the pass appends them walking forwards), so among those with key K
  // the first r − #(key < K) stay pruned, and the mask writes walk memory forwards.
  const index_t r = k - below;
  const auto ncand = static_cast<index_t>(c.size);
  if (r >= ncand) return;
  const std::uint64_t* cand = c.data.get();
  const std::uint32_t pivot = rank_select(ncand, r, [&](index_t i) { return candidates::key_of_packed(cand[i]); });
  index_t ties_pruned = r;  // minus the candidates below the pivot key
  for (index_t i = 0; i < ncand; ++i) ties_pruned -= candidates::key_of_packed(cand[i]) < pivot;
  std::size_t si = 0;
  index_t seg_end = segs[0].size, seg_start = 0;
  for (index_t i = 0; i < ncand; ++i) {
    const std::uint32_t key = candidates::key_of_packed(cand[i]);
    if (key < pivot || (key == pivot && ties_pruned-- > 0)) continue;  // stays pruned
    const index_t g = candidates::index_of_packed(cand[i]);
    while (g >= seg_end) {
      seg_start = seg_end;
      seg_end += segs[++si].size;
    }
    segs[si].out[g - seg_start] = 1;
  }
}

/// Writes mask = (|x| > threshold) into every segment; NaN is an error.
inline void select_threshold(const std::vector<segment>& segs, double threshold, const char* who, const char* what) {
  // Largest float not above the threshold: |x| > threshold  <=>  key(|x|) > key(t_down).
  float t = static_cast<float>(threshold);
  if (static_cast<double>(t) > threshold) t = std::nextafter(t, 0.0f);
  const std::uint32_t tk = key_of(t);
  candidates c;  // lo = tk + 1 > hi = tk: no candidates, out = key > tk
  classify_all(segs, tk + 1, tk, c, who, what);
}

}  // namespace shrink::prune::detail
