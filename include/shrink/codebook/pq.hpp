// pq.hpp: product quantization (Jegou et al. 2011): per-sub-space k-means (k-means++ init), encode, decode, ADC lookup tables.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "../core/aligned_buffer.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"
#include "../kernels/cpu_features.hpp"
#include "kmeans1d.hpp"

#if SHRINK_HAS_X86_PATHS
#include <immintrin.h>
#endif

namespace shrink::codebook {

struct pq_options {
  index_t sub_dim = 8;     ///< d: dimension of a sub-vector; must divide the row length
  int k = 256;             ///< centroids per sub-space, in [2, 256]
  int iterations = 25;     ///< Lloyd iterations per sub-space (Faiss's default)
  std::uint64_t seed = 0;  ///< k-means++ seeding
};

/// m = dim / d sub-quantizers of k centroids each. centroids() is m*k*d floats: sub-space s,
/// centroid j, component t at [(s*k + j)*d + t].
struct pq_codebook {
  index_t dim = 0, sub_dim = 0, m = 0;
  int k = 0;
  aligned_buffer<float> centroids;

  [[nodiscard]] std::span<const float> centroid(index_t s, int j) const {
    return centroids.span().subspan(static_cast<std::size_t>((s * k + j) * sub_dim), static_cast<std::size_t>(sub_dim));
  }
};

/// rows x m codes, one byte each (k <= 256), row-major.
struct pq_codes {
  index_t rows = 0, m = 0;
  aligned_buffer<std::uint8_t> codes;
  [[nodiscard]] std::uint8_t operator()(index_t r, index_t s) const noexcept {
    return codes[static_cast<std::size_t>(r * m + s)];
  }
};

namespace detail {

// Points of one sub-space stored component-major (xt[t*n + p]) so that 8 points load as one
// AVX2 register. The distance ranking uses ||c||^2 - 2 x.c (||x||^2 is the same for every
// centroid), accumulated as acc = fma(x_t, -2 c_t, acc) from acc = ||c||^2 in order t = 0..d-1.
// The scalar path uses std::fma in the same order, so both paths give bit-identical codes.

inline void assign_scalar(const float* xt, std::size_t n, std::size_t d, const float* m2c, const float* cnorm,
                          std::size_t k, std::uint8_t* codes, std::size_t p0, std::size_t p1) {
  for (std::size_t p = p0; p < p1; ++p) {
    float best = std::numeric_limits<float>::infinity();
    std::size_t arg = 0;
    for (std::size_t j = 0; j < k; ++j) {
      float acc = cnorm[j];
      for (std::size_t t = 0; t < d; ++t) acc = std::fma(xt[t * n + p], m2c[j * d + t], acc);
      if (acc < best) {
        best = acc;
        arg = j;
      }
    }
    codes[p] = static_cast<std::uint8_t>(arg);
  }
}

#if SHRINK_HAS_X86_PATHS
SHRINK_TARGET_AVX2 inline void assign_avx2(const float* xt, std::size_t n, std::size_t d, const float* m2c,
                                           const float* cnorm, std::size_t k, std::uint8_t* codes, std::size_t p0,
                                           std::size_t p1) {
  std::size_t p = p0;
  for (; p + 16 <= p1; p += 16) {
    __m256 best0 = _mm256_set1_ps(std::numeric_limits<float>::infinity()), best1 = best0;
    __m256i arg0 = _mm256_setzero_si256(), arg1 = arg0;
    for (std::size_t j = 0; j < k; ++j) {
      __m256 acc0 = _mm256_set1_ps(cnorm[j]), acc1 = acc0;
      for (std::size_t t = 0; t < d; ++t) {
        const __m256 c = _mm256_set1_ps(m2c[j * d + t]);
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(xt + t * n + p), c, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(xt + t * n + p + 8), c, acc1);
      }
      const __m256i jj = _mm256_set1_epi32(static_cast<int>(j));
      const __m256 lt0 = _mm256_cmp_ps(acc0, best0, _CMP_LT_OQ), lt1 = _mm256_cmp_ps(acc1, best1, _CMP_LT_OQ);
      best0 = _mm256_blendv_ps(best0, acc0, lt0);
      best1 = _mm256_blendv_ps(best1, acc1, lt1);
      arg0 = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(arg0), _mm256_castsi256_ps(jj), lt0));
      arg1 = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(arg1), _mm256_castsi256_ps(jj), lt1));
    }
    alignas(32) std::int32_t a[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(a), arg0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(a + 8), arg1);
    for (int i = 0; i < 16; ++i) codes[p + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(a[i]);
  }
  assign_scalar(xt, n, d, m2c, cnorm, k, codes, p, p1);
}
#endif

inline bool use_avx2() noexcept {
#if SHRINK_HAS_X86_PATHS
  const auto f = kernels::cpu_features();
  return (f & kernels::avx2) && (f & kernels::fma);
#else
  return false;
#endif
}

/// Codes of n component-major points against k centroids (row-major k x d).
inline void assign_points(const float* xt, std::size_t n, std::size_t d, std::span<const float> cents, std::size_t k,
                          std::uint8_t* codes) {
  std::vector<float> m2c(k * d), cnorm(k);
  for (std::size_t j = 0; j < k; ++j) {
    float s = 0;
    for (std::size_t t = 0; t < d; ++t) {
      const float c = cents[j * d + t];
      s = std::fma(c, c, s);
      m2c[j * d + t] = -2.0f * c;
    }
    cnorm[j] = s;
  }
#if SHRINK_HAS_X86_PATHS
  if (use_avx2()) {
    assign_avx2(xt, n, d, m2c.data(), cnorm.data(), k, codes, 0, n);
    return;
  }
#endif
  assign_scalar(xt, n, d, m2c.data(), cnorm.data(), k, codes, 0, n);
}

// min(d2[p], ||x_p - c||^2) for all points; the squared distance in fixed order t = 0..d-1.
inline void update_d2(const float* xt, std::size_t n, std::size_t d, const float* c, float* d2) {
  for (std::size_t p = 0; p < n; ++p) {
    float s = 0;
    for (std::size_t t = 0; t < d; ++t) {
      const float diff = xt[t * n + p] - c[t];
      s = std::fma(diff, diff, s);
    }
    d2[p] = std::min(d2[p], s);
  }
}

#if SHRINK_HAS_X86_PATHS
SHRINK_TARGET_AVX2 inline void update_d2_avx2(const float* xt, std::size_t n, std::size_t d, const float* c,
                                              float* d2) {
  std::size_t p = 0;
  for (; p + 8 <= n; p += 8) {
    __m256 s = _mm256_setzero_ps();
    for (std::size_t t = 0; t < d; ++t) {
      const __m256 diff = _mm256_sub_ps(_mm256_loadu_ps(xt + t * n + p), _mm256_set1_ps(c[t]));
      s = _mm256_fmadd_ps(diff, diff, s);
    }
    _mm256_storeu_ps(d2 + p, _mm256_min_ps(_mm256_loadu_ps(d2 + p), s));
  }
  for (; p < n; ++p) {
    float s = 0;
    for (std::size_t t = 0; t < d; ++t) {
      const float diff = xt[t * n + p] - c[t];
      s = std::fma(diff, diff, s);
    }
    d2[p] = std::min(d2[p], s);
  }
}
#endif

/// k-means with k-means++ seeding on n component-major points; returns k x d centroids.
inline std::vector<float> kmeans_subspace(const float* xt, std::size_t n, std::size_t d, std::size_t k, int iterations,
                                          std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> c(k * d);
  std::vector<float> d2(n, std::numeric_limits<float>::infinity());
  auto take = [&](std::size_t j, std::size_t p) {
    for (std::size_t t = 0; t < d; ++t) c[j * d + t] = xt[t * n + p];
  };
  take(0, std::min(n - 1, static_cast<std::size_t>(unit(rng) * static_cast<double>(n))));
  for (std::size_t j = 1; j < k; ++j) {
#if SHRINK_HAS_X86_PATHS
    if (use_avx2())
      update_d2_avx2(xt, n, d, c.data() + (j - 1) * d, d2.data());
    else
#endif
      update_d2(xt, n, d, c.data() + (j - 1) * d, d2.data());
    double total = 0;
    for (float v : d2) total += v;
    std::size_t pick = n - 1;
    if (total > 0) {
      const double r = unit(rng) * total;
      double acc = 0;
      for (std::size_t p = 0; p < n; ++p) {
        acc += d2[p];
        if (acc > r && d2[p] > 0) {
          pick = p;
          break;
        }
      }
    } else {
      pick = static_cast<std::size_t>(unit(rng) * static_cast<double>(n)) % n;  // all points coincide with centroids
    }
    take(j, pick);
  }
  std::vector<std::uint8_t> codes(n);
  std::vector<double> sum(k * d);
  std::vector<std::size_t> count(k);
  for (int it = 0; it < iterations; ++it) {
    assign_points(xt, n, d, c, k, codes.data());
    std::fill(sum.begin(), sum.end(), 0.0);
    std::fill(count.begin(), count.end(), 0);
    for (std::size_t p = 0; p < n; ++p) {
      const std::size_t j = codes[p];
      ++count[j];
    }
    for (std::size_t t = 0; t < d; ++t)
      for (std::size_t p = 0; p < n; ++p) sum[codes[p] * d + t] += xt[t * n + p];
    for (std::size_t j = 0; j < k; ++j)
      if (count[j] > 0)
        for (std::size_t t = 0; t < d; ++t) c[j * d + t] = static_cast<float>(sum[j * d + t] / static_cast<double>(count[j]));
    // Empty clusters: split the most populous one in two slightly perturbed copies (as Faiss).
    for (std::size_t j = 0; j < k; ++j) {
      if (count[j] != 0) continue;
      const std::size_t big = static_cast<std::size_t>(std::max_element(count.begin(), count.end()) - count.begin());
      if (count[big] < 2) break;
      constexpr float eps = 1.0f / 1024;
      for (std::size_t t = 0; t < d; ++t) {
        const float v = c[big * d + t];
        c[j * d + t] = v * (t % 2 == 0 ? 1 + eps : 1 - eps);
        c[big * d + t] = v * (t % 2 == 0 ? 1 - eps : 1 + eps);
      }
      count[j] = count[big] / 2;
      count[big] -= count[j];
    }
  }
  return c;
}

inline void check_pq_input(tensor_view<const float, 2> data, index_t sub_dim, const char* who) {
  SHRINK_REQUIRE(!data.empty(), errc::empty_input, who, ": empty data of shape ", data.shape());
  SHRINK_REQUIRE(sub_dim >= 1 && data.extent(1) % sub_dim == 0, errc::shape_mismatch, who,
                 ": sub-vector dimension ", sub_dim, " must divide the row length ", data.extent(1));
}

// Component-major copy of sub-space s: out[t*n + p] = data(p, s*d + t). Checks finiteness.
inline void gather_subspace(tensor_view<const float, 2> data, index_t s, index_t d, std::vector<float>& out,
                            const char* who) {
  const index_t n = data.extent(0);
  out.resize(static_cast<std::size_t>(n * d));
  for (index_t p = 0; p < n; ++p)
    for (index_t t = 0; t < d; ++t) {
      const float v = data(p, s * d + t);
      SHRINK_REQUIRE(std::isfinite(v), errc::non_finite, who, ": value at (", p, ", ", s * d + t, ") is ", v);
      out[static_cast<std::size_t>(t * n + p)] = v;
    }
}

}  // namespace detail

/// Trains a product quantizer on the rows of `data` (n x dim): m = dim / d sub-spaces, each
/// with k-means (k-means++ seeding, `iterations` Lloyd steps). Sub-spaces train in parallel;
/// the result does not depend on ctx. k larger than the number of rows is an error.
inline pq_codebook train_pq(tensor_view<const float, 2> data, const pq_options& o, const context& ctx = {}) {
  detail::check_pq_input(data, o.sub_dim, "train_pq");
  SHRINK_REQUIRE(o.k >= 2 && o.k <= 256, errc::invalid_argument, "train_pq: k must be in [2, 256], got ", o.k);
  SHRINK_REQUIRE(o.iterations >= 0, errc::invalid_argument, "train_pq: iterations must be >= 0, got ", o.iterations);
  SHRINK_REQUIRE(data.extent(0) >= o.k, errc::invalid_argument, "train_pq: need at least k = ", o.k,
                 " training rows, got ", data.extent(0));
  pq_codebook pq;
  pq.dim = data.extent(1);
  pq.sub_dim = o.sub_dim;
  pq.m = pq.dim / o.sub_dim;
  pq.k = o.k;
  pq.centroids = aligned_buffer<float>(static_cast<std::size_t>(pq.m * o.k * o.sub_dim));
  const auto n = static_cast<std::size_t>(data.extent(0));
  const auto d = static_cast<std::size_t>(o.sub_dim), k = static_cast<std::size_t>(o.k);
  parallel_for(ctx, 0, pq.m, 1, [&](index_t s0, index_t s1) {
    std::vector<float> xt;
    for (index_t s = s0; s < s1; ++s) {
      detail::gather_subspace(data, s, o.sub_dim, xt, "train_pq");
      const auto c = detail::kmeans_subspace(xt.data(), n, d, k, o.iterations, o.seed + static_cast<std::uint64_t>(s));
      std::copy(c.begin(), c.end(), pq.centroids.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(s) * k * d));
    }
  });
  return pq;
}

/// Nearest centroid per sub-space for every row of `data`.
inline pq_codes encode_pq(const pq_codebook& pq, tensor_view<const float, 2> data, const context& ctx = {}) {
  detail::check_pq_input(data, pq.sub_dim, "encode_pq");
  SHRINK_REQUIRE(data.extent(1) == pq.dim, errc::shape_mismatch, "encode_pq: rows have ", data.extent(1),
                 " values, the quantizer expects ", pq.dim);
  pq_codes out;
  out.rows = data.extent(0);
  out.m = pq.m;
  out.codes = aligned_buffer<std::uint8_t>(static_cast<std::size_t>(out.rows * pq.m));
  const auto n = static_cast<std::size_t>(out.rows), d = static_cast<std::size_t>(pq.sub_dim);
  const auto k = static_cast<std::size_t>(pq.k);
  parallel_for(ctx, 0, pq.m, 1, [&](index_t s0, index_t s1) {
    std::vector<float> xt;
    std::vector<std::uint8_t> c(n);
    for (index_t s = s0; s < s1; ++s) {
      detail::gather_subspace(data, s, pq.sub_dim, xt, "encode_pq");
      detail::assign_points(xt.data(), n, d, pq.centroids.span().subspan(static_cast<std::size_t>(s) * k * d, k * d), k,
                            c.data());
      for (std::size_t p = 0; p < n; ++p) out.codes[p * static_cast<std::size_t>(pq.m) + static_cast<std::size_t>(s)] = c[p];
    }
  });
  return out;
}

/// Rows rebuilt from their codes (each sub-vector exactly its centroid).
inline tensor<float, 2> decode_pq(const pq_codebook& pq, const pq_codes& codes) {
  SHRINK_REQUIRE(codes.m == pq.m, errc::shape_mismatch, "decode_pq: codes have ", codes.m,
                 " sub-spaces, the quantizer ", pq.m);
  tensor<float, 2> out(shape<2>{codes.rows, pq.dim});
  for (index_t r = 0; r < codes.rows; ++r)
    for (index_t s = 0; s < pq.m; ++s) {
      const int j = codes(r, s);
      SHRINK_REQUIRE(j < pq.k, errc::out_of_range, "decode_pq: code ", j, " at (", r, ", ", s, ") >= k = ", pq.k);
      const auto c = pq.centroid(s, j);
      std::copy(c.begin(), c.end(), out.data() + r * pq.dim + s * pq.sub_dim);
    }
  return out;
}

/// Asymmetric-distance lookup table for the LUT GEMV kernel: lut[s*k + j] = x_s . c_{s,j},
/// so for a weight row W_r encoded as codes, W_r . x ~= sum_s lut[s*k + code(r, s)].
inline void pq_lut(const pq_codebook& pq, std::span<const float> x, std::span<float> lut) {
  SHRINK_REQUIRE(x.size() == static_cast<std::size_t>(pq.dim), errc::shape_mismatch, "pq_lut: x has ", x.size(),
                 " values, the quantizer expects ", pq.dim);
  SHRINK_REQUIRE(lut.size() == static_cast<std::size_t>(pq.m * pq.k), errc::shape_mismatch, "pq_lut: lut holds ",
                 lut.size(), " values, expected m*k = ", pq.m * pq.k);
  for (index_t s = 0; s < pq.m; ++s)
    for (int j = 0; j < pq.k; ++j) {
      const auto c = pq.centroid(s, j);
      float acc = 0;
      for (index_t t = 0; t < pq.sub_dim; ++t) acc += x[static_cast<std::size_t>(s * pq.sub_dim + t)] * c[static_cast<std::size_t>(t)];
      lut[static_cast<std::size_t>(s * pq.k + j)] = acc;
    }
}

}  // namespace shrink::codebook
