// structured.hpp: structured masks: whole output/input channels by L1/L2 norm, N:M groups along the input dimension, r×c blocks.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../core/tensor_view.hpp"
#include "mask.hpp"
#include "select.hpp"
#include "unstructured.hpp"

namespace shrink::prune {

/// Norm used to score a channel or a block.
enum class norm { l1, l2 };

/// Which channels a structured prune removes: output channels (rows of a Linear weight
/// [out, in], filters of a Conv weight [out, in, kh, kw]) or input channels (columns of a
/// Linear weight, the [:, c, :, :] slices of a Conv weight).
enum class channel_axis { output, input };

/// The result of channel pruning: the kept channel indices (ascending) and the element mask.
struct channel_selection {
  std::vector<index_t> kept;
  prune::mask mask;
};

namespace detail {
// Views any rank >= 2 as [d0, d1, rest] where rest is the product of the trailing extents.
template <std::size_t Rank>
index_t trailing(const shape<Rank>& s) {
  index_t r = 1;
  for (std::size_t a = 2; a < Rank; ++a) r *= s.dims[a];
  return r;
}

inline void check_finite_at(float x, index_t i, const char* who) {
  SHRINK_REQUIRE(!std::isnan(x), errc::non_finite, who, ": weight is NaN at index ", i, "; expected finite values");
}

// Selects among a small score vector with the shared rule; returns a keep byte per score.
inline std::vector<std::uint8_t> select_scores(const std::vector<float>& scores, const target& t, const char* who) {
  std::vector<std::uint8_t> keep(scores.size());
  const auto n = static_cast<index_t>(scores.size());
  if (t.by == target::kind::sparsity)
    select_prune({{scores.data(), n, keep.data()}}, prune_count(t.value, n), who, "score");
  else
    select_threshold({{scores.data(), n, keep.data()}}, t.value, who, "score");
  return keep;
}
}  // namespace detail

/// Structured pruning of whole channels ranked by their L1 or L2 norm (Li et al. 2017,
/// "Pruning Filters for Efficient ConvNets"). By sparsity: prune_count(s, channels) channels,
/// ties by lower channel index pruned first; by threshold: kept iff norm > threshold.
/// Rank 2 ([out, in]) or higher ([out, in, kh, kw], …). Feed `kept` to thin_* (thinning.hpp).
template <std::size_t Rank>
channel_selection channels(tensor_view<const float, Rank> weights, channel_axis axis, norm nrm, const target& t) {
  static_assert(Rank >= 2, "prune::channels: weights need rank >= 2 ([out, in, ...])");
  const char* who = "prune::channels";
  detail::check_target(t, who);
  const index_t d0 = weights.extent(0), d1 = weights.extent(1), rest = detail::trailing(weights.shape());
  detail::contiguous<Rank> w(weights);
  const index_t nch = axis == channel_axis::output ? d0 : d1;
  std::vector<double> acc(static_cast<std::size_t>(nch), 0.0);
  for (index_t o = 0; o < d0; ++o)
    for (index_t c = 0; c < d1; ++c)
      for (index_t r = 0; r < rest; ++r) {
        const index_t i = (o * d1 + c) * rest + r;
        const float x = w.data[i];
        detail::check_finite_at(x, i, who);
        const double a = std::fabs(static_cast<double>(x));
        acc[static_cast<std::size_t>(axis == channel_axis::output ? o : c)] += nrm == norm::l1 ? a : a * a;
      }
  std::vector<float> scores(acc.size());
  for (std::size_t c = 0; c < acc.size(); ++c)
    scores[c] = static_cast<float>(nrm == norm::l1 ? acc[c] : std::sqrt(acc[c]));
  const std::vector<std::uint8_t> keep = detail::select_scores(scores, t, who);
  channel_selection out{{}, mask(weights.shape(), 0)};
  for (index_t c = 0; c < nch; ++c)
    if (keep[static_cast<std::size_t>(c)] != 0) out.kept.push_back(c);
  for (index_t o = 0; o < d0; ++o)
    for (index_t c = 0; c < d1; ++c) {
      const std::uint8_t k = keep[static_cast<std::size_t>(axis == channel_axis::output ? o : c)];
      std::fill_n(out.mask.data() + (o * d1 + c) * rest, rest, k);
    }
  return out;
}

namespace detail {
// Index of the first NaN in x[0, n), or -1. Integer compares on the bit patterns vectorise.
inline index_t first_nan(const float* x, index_t n) {
  constexpr index_t k_chunk = 1024;
  for (index_t b = 0; b < n; b += k_chunk) {
    const index_t e = std::min(n, b + k_chunk);
    bool any = false;
    for (index_t i = b; i < e; ++i) any |= key_of(x[i]) > k_inf_key;
    if (any)
      for (index_t i = b; i < e; ++i)
        if (std::isnan(x[i])) return i;
  }
  return -1;
}

// Keeps the n highest-ranked of m scores read at p[0], p[step], …: element j is kept iff fewer
// than n elements outrank it, where "outranks" is (score, index) greater, so among equal
// scores the lower index is pruned first (the shared tie rule). M > 0 fixes m at compile time.
template <int M>
inline void keep_n_of_m(const float* p, index_t step, int n, int m, std::uint8_t* out, index_t ostep, float* tmp) {
  if constexpr (M > 0) m = M;
  int above[M > 0 ? M : 256];
#pragma GCC unroll 8
  for (int j = 0; j < m; ++j) {
    tmp[j] = std::fabs(p[j * step]);
    above[j] = 0;
  }
  // One compare per pair i < j: j outranks i unless tmp[i] > tmp[j] (equal -> higher index wins).
#pragma GCC unroll 8
  for (int i = 0; i < m; ++i)
#pragma GCC unroll 8
    for (int j = i + 1; j < m; ++j) {
      const int gt = tmp[i] > tmp[j];
      above[j] += gt;
      above[i] += 1 - gt;
    }
#pragma GCC unroll 8
  for (int j = 0; j < m; ++j) out[j * ostep] = static_cast<std::uint8_t>(above[j] < n);
}

template <int M>
void n_m_all(const float* w, index_t d0, index_t d1, index_t rest, int n, int m, std::uint8_t* out) {
  float tmp[M > 0 ? M : 256];
  for (index_t o = 0; o < d0; ++o)
    for (index_t g = 0; g < d1; g += m)
      for (index_t r = 0; r < rest; ++r) {
        const index_t base = (o * d1 + g) * rest + r;
        keep_n_of_m<M>(w + base, rest, n, m, out + base, rest, tmp);
      }
}

// N:4 over contiguous groups (a matrix [out, in]): the scalar path and an AVX2 path that ranks
// 8 groups per step. Keys are |w| bit patterns (NaN excluded beforehand), so integer compares
// order them like the floats.
using n_of_4_fn = void (*)(const float*, index_t, int, std::uint8_t*);

inline void n_of_4_reference(const float* w, index_t groups, int n, std::uint8_t* out) {
  float tmp[4];
  for (index_t g = 0; g < groups; ++g) keep_n_of_m<4>(w + 4 * g, 1, n, 4, out + 4 * g, 1, tmp);
}

#if SHRINK_HAS_X86_PATHS
SHRINK_TARGET_AVX2 inline void n_of_4_avx2(const float* w, index_t groups, int n, std::uint8_t* out) {
  // A 128-bit lane holds one group. Rotating it by k puts a[(j+k)%4] beside a[j]; that element
  // outranks a[j] if larger, or equal with a higher index, i.e. (j+k)%4 > j, i.e. j < 4-k.
  const __m256i abs_bits = _mm256_set1_epi32(0x7fffffff), vn = _mm256_set1_epi32(n);
  const __m256i later1 = _mm256_setr_epi32(-1, -1, -1, 0, -1, -1, -1, 0);
  const __m256i later2 = _mm256_setr_epi32(-1, -1, 0, 0, -1, -1, 0, 0);
  const __m256i later3 = _mm256_setr_epi32(-1, 0, 0, 0, -1, 0, 0, 0);
  index_t g = 0;
  for (; g + 8 <= groups; g += 8) {
    __m256i keep[4];
#pragma GCC unroll 4
    for (int h = 0; h < 4; ++h) {
      const __m256i a = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 4 * g + 8 * h)), abs_bits);
      const __m256i r1 = _mm256_shuffle_epi32(a, _MM_SHUFFLE(0, 3, 2, 1));
      const __m256i r2 = _mm256_shuffle_epi32(a, _MM_SHUFFLE(1, 0, 3, 2));
      const __m256i r3 = _mm256_shuffle_epi32(a, _MM_SHUFFLE(2, 1, 0, 3));
      const __m256i o1 = _mm256_or_si256(_mm256_cmpgt_epi32(r1, a), _mm256_and_si256(_mm256_cmpeq_epi32(r1, a), later1));
      const __m256i o2 = _mm256_or_si256(_mm256_cmpgt_epi32(r2, a), _mm256_and_si256(_mm256_cmpeq_epi32(r2, a), later2));
      const __m256i o3 = _mm256_or_si256(_mm256_cmpgt_epi32(r3, a), _mm256_and_si256(_mm256_cmpeq_epi32(r3, a), later3));
      const __m256i above = _mm256_sub_epi32(_mm256_sub_epi32(_mm256_setzero_si256(), o1), _mm256_add_epi32(o2, o3));
      keep[h] = _mm256_cmpgt_epi32(vn, above);
    }
    const __m256i p8 = _mm256_packs_epi16(_mm256_packs_epi32(keep[0], keep[1]), _mm256_packs_epi32(keep[2], keep[3]));
    const __m256i bytes = _mm256_and_si256(_mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)),
                                           _mm256_set1_epi8(1));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 4 * g), bytes);
  }
  n_of_4_reference(w + 4 * g, groups - g, n, out + 4 * g);
}
#endif

inline n_of_4_fn select_n_of_4() {
  using kernels::isa;
  static constexpr std::array<kernels::implementation<n_of_4_fn>, 2> impls{{
      {isa::reference, 0, &n_of_4_reference},
#if SHRINK_HAS_X86_PATHS
      {isa::avx2, 0, &n_of_4_avx2},
#else
      {isa::reference, 0, &n_of_4_reference},
#endif
  }};
  return kernels::select(impls);
}
}  // namespace detail

/// N:M semi-structured pruning (NVIDIA Ampere 2:4 sparsity; Mishra et al. 2021): in every group
/// of M consecutive input-dimension elements, keep the N with the largest |w| (ties: lower
/// index pruned first). Groups run along axis 1: consecutive columns of a Linear weight
/// [out, in], and for a Conv weight [out, in, kh, kw] consecutive input channels at a fixed
/// (out, ky, kx), the layout sparse tensor cores use. Needs 1 <= N < M and M dividing `in`.
template <std::size_t Rank>
mask n_m(tensor_view<const float, Rank> weights, int n, int m) {
  static_assert(Rank >= 2, "prune::n_m: weights need rank >= 2 ([out, in, ...])");
  const char* who = "prune::n_m";
  SHRINK_REQUIRE(m >= 2 && m <= 256, errc::invalid_argument, who, ": M must be in [2, 256], got ", m);
  SHRINK_REQUIRE(n >= 1 && n < m, errc::invalid_argument, who, ": N must satisfy 1 <= N < M, got N = ", n,
                 ", M = ", m);
  const index_t d0 = weights.extent(0), d1 = weights.extent(1), rest = detail::trailing(weights.shape());
  SHRINK_REQUIRE(d1 % m == 0, errc::shape_mismatch, who, ": M = ", m, " must divide the input dimension ", d1,
                 " (pad the weights or choose another M)");
  detail::contiguous<Rank> w(weights);
  const index_t bad = detail::first_nan(w.data, weights.size());
  if (bad >= 0) detail::check_finite_at(w.data[bad], bad, who);
  mask out(weights.shape(), mask::uninitialized{});
  if (m == 4 && rest == 1)
    detail::select_n_of_4()(w.data, weights.size() / 4, n, out.data());
  else if (m == 4)
    detail::n_m_all<4>(w.data, d0, d1, rest, n, m, out.data());
  else if (m == 8)
    detail::n_m_all<8>(w.data, d0, d1, rest, n, m, out.data());
  else
    detail::n_m_all<0>(w.data, d0, d1, rest, n, m, out.data());
  return out;
}

/// Options of block pruning: block extent, the norm that ranks blocks, and whether edge blocks
/// may be partial (scored over the elements present, i.e. as if zero-padded) when the block
/// does not divide the shape; otherwise that is an error.
struct block_options {
  index_t rows = 4;
  index_t cols = 4;
  prune::norm norm = norm::l2;
  bool allow_partial = false;
};

/// Block pruning of a matrix [out, in] (reshape a conv weight to [out, in·kh·kw] first): whole
/// rows×cols blocks ranked by their L2 (or L1) norm; by sparsity prune_count(s, blocks)
/// blocks (ties: lower block index in row-major block order pruned first); by threshold kept
/// iff norm > threshold.
inline mask block(tensor_view<const float, 2> weights, const block_options& opt, const target& t) {
  const char* who = "prune::block";
  detail::check_target(t, who);
  SHRINK_REQUIRE(opt.rows >= 1 && opt.cols >= 1, errc::invalid_argument, who, ": block must be at least 1x1, got ",
                 opt.rows, "x", opt.cols);
  const index_t r = weights.extent(0), c = weights.extent(1);
  SHRINK_REQUIRE(opt.allow_partial || (r % opt.rows == 0 && c % opt.cols == 0), errc::shape_mismatch, who,
                 ": block ", opt.rows, "x", opt.cols, " does not divide the shape ", weights.shape(),
                 "; expected multiples, or set allow_partial");
  detail::contiguous<2> w(weights);
  const index_t br = (r + opt.rows - 1) / opt.rows, bc = (c + opt.cols - 1) / opt.cols;
  std::vector<float> scores(static_cast<std::size_t>(br * bc));
  std::vector<float> col(static_cast<std::size_t>(c));  // per-column partial sums of one block row
  const bool l1 = opt.norm == norm::l1;
  for (index_t bi = 0; bi < br; ++bi) {
    std::fill(col.begin(), col.end(), 0.0f);
    for (index_t i = bi * opt.rows; i < std::min(r, (bi + 1) * opt.rows); ++i) {
      const float* row = w.data + i * c;
      float* cp = col.data();
      if (l1)
        for (index_t j = 0; j < c; ++j) cp[j] += std::fabs(row[j]);
      else
        for (index_t j = 0; j < c; ++j) cp[j] += row[j] * row[j];
    }
    for (index_t bj = 0; bj < bc; ++bj) {
      double a = 0.0;
      for (index_t j = bj * opt.cols, e = std::min(c, (bj + 1) * opt.cols); j < e; ++j) a += col[static_cast<std::size_t>(j)];
      if (std::isnan(a)) {  // NaN propagates into its block's sum; report the first NaN element
        const index_t i0 = bi * opt.rows;
        const index_t bad = detail::first_nan(w.data + i0 * c, (std::min(r, i0 + opt.rows) - i0) * c);
        detail::check_finite_at(std::nanf(""), i0 * c + bad, who);
      }
      scores[static_cast<std::size_t>(bi * bc + bj)] = static_cast<float>(l1 ? a : std::sqrt(a));
    }
  }
  const std::vector<std::uint8_t> keep = detail::select_scores(scores, t, who);
  mask out(weights.shape(), mask::uninitialized{});
  std::vector<std::uint8_t> pattern(static_cast<std::size_t>(c));  // one block row's mask row
  for (index_t bi = 0; bi < br; ++bi) {
    for (index_t bj = 0; bj < bc; ++bj) {
      const index_t j0 = bj * opt.cols;
      std::fill_n(pattern.data() + j0, std::min(opt.cols, c - j0), keep[static_cast<std::size_t>(bi * bc + bj)]);
    }
    for (index_t i = bi * opt.rows; i < std::min(r, (bi + 1) * opt.rows); ++i)
      std::memcpy(out.data() + i * c, pattern.data(), static_cast<std::size_t>(c));
  }
  return out;
}

}  // namespace shrink::prune
