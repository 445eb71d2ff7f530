// spmm_csr.hpp: y = W·x (SpMV) and Y = W·X (SpMM) for fp32 and codebook-valued sparse plans (CSR, N:M, BSR) on every ISA path.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "../core/config.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor_view.hpp"
#include "dispatch.hpp"
#include "sparse_plan.hpp"
#include "x86_reduce.hpp"

namespace shrink::kernels {

namespace spmm_impl {

// Batch layout (docs/sparse.md, "Batch layout"): X is [K, batch] row-major, so every stored
// weight w(i, j) is broadcast against the contiguous row X[j, 0:batch] (XNNPACK's SpMM
// layout); Y is [N, batch]. Summation order: SpMM sums each output in stored-entry order
// (column order) with one FMA per entry; SpMV keeps 8 or 16 lane sums over entries k ≡ lane
// (mod width), adds them pairwise, then adds the tail in order. Both are within
// n·u·Σ|w·x| of the exact sum (u = 2^-24), the bound the tests check.

template <class V>
using rows_fn = void (*)(const sparse_plan<V>&, const float*, index_t, float*, index_t, index_t, index_t, index_t);

SHRINK_ALWAYS_INLINE float weight_of(float v, const float*) noexcept { return v; }
SHRINK_ALWAYS_INLINE float weight_of(std::uint8_t v, const float* table) noexcept { return table[v]; }

// ---- reference: double accumulation in entry order, rounded once (the oracle).
template <class V>
void rows_reference(const sparse_plan<V>& p, const float* x, index_t ldx, float* y, index_t ldy, index_t batch,
                    index_t r0, index_t r1) {
  const float* table = p.table.data();
  for (index_t i = r0; i < r1; ++i)
    for (index_t b = 0; b < batch; ++b) {
      double s = 0.0;
      for (std::uint32_t k = p.row_ptr[static_cast<std::size_t>(i)]; k < p.row_ptr[static_cast<std::size_t>(i) + 1];
           ++k)
        s += static_cast<double>(weight_of(p.values[k], table)) * static_cast<double>(x[p.col[k] * ldx + b]);
      y[i * ldy + b] = static_cast<float>(s);
    }
}

// ---- generic: xsimd over the batch columns; SpMV with four scalar lane sums.
template <class V>
void rows_generic(const sparse_plan<V>& p, const float* x, index_t ldx, float* y, index_t ldy, index_t batch,
                  index_t r0, index_t r1) {
  using vec = xsimd::batch<float>;
  constexpr index_t w = static_cast<index_t>(vec::size);
  const std::uint32_t* col = p.col.data();
  const V* val = p.values.data();
  const float* table = p.table.data();
  for (index_t i = r0; i < r1; ++i) {
    const index_t k0 = p.row_ptr[static_cast<std::size_t>(i)], k1 = p.row_ptr[static_cast<std::size_t>(i) + 1];
    float* yr = y + i * ldy;
    index_t b = 0;
    for (; b + 4 * w <= batch; b += 4 * w) {
      vec a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
      for (index_t k = k0; k < k1; ++k) {
        const vec wk(weight_of(val[k], table));
        const float* xr = x + col[k] * ldx + b;
        a0 = xsimd::fma(wk, vec::load_unaligned(xr), a0);
        a1 = xsimd::fma(wk, vec::load_unaligned(xr + w), a1);
        a2 = xsimd::fma(wk, vec::load_unaligned(xr + 2 * w), a2);
        a3 = xsimd::fma(wk, vec::load_unaligned(xr + 3 * w), a3);
      }
      a0.store_unaligned(yr + b);
      a1.store_unaligned(yr + b + w);
      a2.store_unaligned(yr + b + 2 * w);
      a3.store_unaligned(yr + b + 3 * w);
    }
    for (; b + w <= batch; b += w) {
      vec a0(0.0f);
      for (index_t k = k0; k < k1; ++k)
        a0 = xsimd::fma(vec(weight_of(val[k], table)), vec::load_unaligned(x + col[k] * ldx + b), a0);
      a0.store_unaligned(yr + b);
    }
    if (batch == 1) {  // SpMV: four lane sums
      float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      index_t k = k0;
      for (; k + 4 <= k1; k += 4)
        for (int l = 0; l < 4; ++l) s[l] += weight_of(val[k + l], table) * x[col[k + l] * ldx];
      float sum = (s[0] + s[1]) + (s[2] + s[3]);
      for (; k < k1; ++k) sum += weight_of(val[k], table) * x[col[k] * ldx];
      yr[0] = sum;
      continue;
    }
    for (; b < batch; ++b) {
      float s = 0.0f;
      for (index_t k = k0; k < k1; ++k) s += weight_of(val[k], table) * x[col[k] * ldx + b];
      yr[b] = s;
    }
  }
}

#if SHRINK_HAS_X86_PATHS
// Eight weights from entry k: fp32 values load directly; codebook indices are decoded in
// registers, EIE-style: one vpermps for <= 8 centroids, two and a blend for <= 16, a
// gather from the (L1-resident) table beyond.
SHRINK_TARGET_AVX2 inline __m256 weights8_avx2(const float* val, const float*, int, __m256, __m256) {
  return _mm256_loadu_ps(val);
}
SHRINK_TARGET_AVX2 inline __m256 weights8_avx2(const std::uint8_t* val, const float* table, int mode, __m256 t0,
                                               __m256 t1) {
  const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(val)));
  if (mode == 0) return _mm256_permutevar8x32_ps(t0, idx);
  if (mode == 1)
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, idx), _mm256_permutevar8x32_ps(t1, idx),
                            _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7))));
  return _mm256_i32gather_ps(table, idx, 4);
}

// SpMV over runs of 4 consecutive columns (BSR plans with c % 4 == 0): x for a run is one
// 128-bit load, two runs fill a register, no gather. Lane l of the sum takes entries
// k ≡ l (mod 8), the same order as the gather path.
SHRINK_TARGET_AVX2 inline void spmv_runs4_avx2(const sparse_plan<float>& p, const float* x, float* y, index_t r0,
                                               index_t r1) {
  const std::uint32_t* col = p.col.data();
  const float* val = p.values.data();
  for (index_t i = r0; i < r1; ++i) {
    index_t k = p.row_ptr[static_cast<std::size_t>(i)];
    const index_t k1 = p.row_ptr[static_cast<std::size_t>(i) + 1];
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; k + 16 <= k1; k += 16) {
      const __m256 x0 = _mm256_loadu2_m128(x + col[k + 4], x + col[k]);
      const __m256 x1 = _mm256_loadu2_m128(x + col[k + 12], x + col[k + 8]);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + k), x0, a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(val + k + 8), x1, a1);
    }
    if (k + 8 <= k1) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + k), _mm256_loadu2_m128(x + col[k + 4], x + col[k]), a0);
      k += 8;
    }
    float s = x86::hsum(_mm256_add_ps(a0, a1));
    for (; k < k1; ++k) s += val[k] * x[col[k]];
    y[i] = s;
  }
}

// SpMV for T rows sharing one column list (rows of a BSR r x 1 or r x c block row): each
// gather of x serves T rows. Per row, the arithmetic is the gather path's exactly (two
// 8-lane sums over 16-entry steps, one more 8-entry step, pairwise sum, tail in order),
// and T = 1 is the same template, so splitting a group between threads changes no bit.
template <int T>
SHRINK_TARGET_AVX2 inline void spmv_shared_rows_avx2(const std::uint32_t* col, const float* const* val, index_t n,
                                                     const float* x, float* y) {
  __m256 a0[T], a1[T];
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) a0[t] = a1[t] = _mm256_setzero_ps();
  index_t k = 0;
  for (; k + 16 <= n; k += 16) {
    const __m256 x0 = _mm256_i32gather_ps(x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + k)), 4);
    const __m256 x1 = _mm256_i32gather_ps(x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + k + 8)), 4);
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      a0[t] = _mm256_fmadd_ps(_mm256_loadu_ps(val[t] + k), x0, a0[t]);
      a1[t] = _mm256_fmadd_ps(_mm256_loadu_ps(val[t] + k + 8), x1, a1[t]);
    }
  }
  if (k + 8 <= n) {
    const __m256 x0 = _mm256_i32gather_ps(x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + k)), 4);
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) a0[t] = _mm256_fmadd_ps(_mm256_loadu_ps(val[t] + k), x0, a0[t]);
    k += 8;
  }
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) {
    float s = x86::hsum(_mm256_add_ps(a0[t], a1[t]));
    for (index_t j = k; j < n; ++j) s += val[t][j] * x[col[j]];
    y[t] = s;
  }
}

SHRINK_TARGET_AVX2 inline void spmv_row_groups_avx2(const sparse_plan<float>& p, const float* x, float* y, index_t r0,
                                                    index_t r1) {
  const std::uint32_t* rp = p.row_ptr.data();
  index_t i = r0;
  while (i < r1) {
    const float* val[4];
    if (i % 4 == 0 && i + 4 <= r1) {  // row_group % 4 == 0, so rows i..i+3 share columns
      for (int t = 0; t < 4; ++t) val[t] = p.values.data() + rp[i + t];
      spmv_shared_rows_avx2<4>(p.col.data() + rp[i], val, rp[i + 1] - rp[i], x, y + i);
      i += 4;
    } else {
      val[0] = p.values.data() + rp[i];
      spmv_shared_rows_avx2<1>(p.col.data() + rp[i], val, rp[i + 1] - rp[i], x, y + i);
      ++i;
    }
  }
}

template <class V>
SHRINK_TARGET_AVX2 inline void spmv_rows_avx2(const sparse_plan<V>& p, const float* x, float* y, index_t r0,
                                              index_t r1) {
  const std::uint32_t* col = p.col.data();
  const V* val = p.values.data();
  const float* table = p.table.data();
  const int mode = p.table_size <= 8 ? 0 : (p.table_size <= 16 ? 1 : 2);
  if constexpr (std::is_same_v<V, float>) {
    if (p.run % 4 == 0) return spmv_runs4_avx2(p, x, y, r0, r1);
    if (p.row_group % 4 == 0) return spmv_row_groups_avx2(p, x, y, r0, r1);
  }
  __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
  if constexpr (std::is_same_v<V, std::uint8_t>) {
    t0 = _mm256_loadu_ps(table);
    t1 = _mm256_loadu_ps(table + 8);
  }
  for (index_t i = r0; i < r1; ++i) {
    index_t k = p.row_ptr[static_cast<std::size_t>(i)];
    const index_t k1 = p.row_ptr[static_cast<std::size_t>(i) + 1];
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; k + 16 <= k1; k += 16) {
      const __m256i i0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + k));
      const __m256i i1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + k + 8));
      a0 = _mm256_fmadd_ps(weights8_avx2(val + k, table, mode, t0, t1), _mm256_i32gather_ps(x, i0, 4), a0);
      a1 = _mm256_fmadd_ps(weights8_avx2(val + k + 8, table, mode, t0, t1), _mm256_i32gather_ps(x, i1, 4), a1);
    }
    if (k + 8 <= k1) {
      const __m256i i0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col + k));
      a0 = _mm256_fmadd_ps(weights8_avx2(val + k, table, mode, t0, t1), _mm256_i32gather_ps(x, i0, 4), a0);
      k += 8;
    }
    float s = x86::hsum(_mm256_add_ps(a0, a1));
    for (; k < k1; ++k) s += weight_of(val[k], table) * x[col[k]];
    y[i] = s;
  }
}

// One row, R registers of 8 batch columns: each entry's weight is broadcast and FMA'd
// against R loads of the contiguous X row.
template <int R, class V>
SHRINK_TARGET_AVX2 inline void tile_avx2(const std::uint32_t* col, const V* val, const float* table, index_t n,
                                         const float* x, index_t ldx, float* y) {
  __m256 acc[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (index_t k = 0; k < n; ++k) {
    const __m256 w = _mm256_set1_ps(weight_of(val[k], table));
    const float* xr = x + col[k] * ldx;
    if (k + 8 < n) {  // X rows are random L2 accesses: fetch the one 8 entries ahead
      const char* ahead = reinterpret_cast<const char*>(x + col[k + 8] * ldx);
#pragma GCC unroll 8
      for (int r = 0; r < R; r += 2) _mm_prefetch(ahead + 32 * r, _MM_HINT_T0);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(w, _mm256_loadu_ps(xr + 8 * r), acc[r]);
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) _mm256_storeu_ps(y + 8 * r, acc[r]);
}

template <class V>
SHRINK_ALWAYS_INLINE void scalar_columns(const std::uint32_t* col, const V* val, const float* table, index_t n,
                                         const float* x, index_t ldx, float* y, index_t b, index_t batch) {
  for (; b < batch; ++b) {
    float s = 0.0f;
    for (index_t k = 0; k < n; ++k) s += weight_of(val[k], table) * x[col[k] * ldx + b];
    y[b] = s;
  }
}

// Cache-blocked SpMM (docs/sparse.md, "Blocked SpMM"). Row-at-a-time SpMM streams all of X
// (1 MiB for 4096 x 64) from L2/L3 once per output row. Here k_block_rows output rows walk
// X together in blocks of k_block_cols rows of X (k_block_cols x 64 columns = 16 KiB, an L1
// block), so each X block comes from L2 once per row block; each row's accumulators pass
// through Y (L1) between column blocks. Per output the same FMAs run in the same order
// (entry order, starting from 0), so results are bit-identical to the row-at-a-time tile.
inline constexpr index_t k_block_rows = 64;
inline constexpr index_t k_block_cols = 64;

/// Entries of the row with cursor k (ending at k1) whose columns are < cend.
template <class V>
SHRINK_ALWAYS_INLINE std::uint32_t block_end(const sparse_plan<V>& p, std::uint32_t k, std::uint32_t k1,
                                             index_t cend, index_t per_block) {
  if (per_block > 0) return std::min<std::uint32_t>(k1, k + static_cast<std::uint32_t>(per_block));
  const std::uint32_t* col = p.col.data();
  while (k < k1 && col[k] < static_cast<std::uint32_t>(cend)) ++k;
  return k;
}

/// Entries per column block when the plan's groups tile it exactly (N:M), else 0 (scan).
template <class V>
SHRINK_ALWAYS_INLINE index_t entries_per_block(const sparse_plan<V>& p) {
  return p.group_cols > 0 && k_block_cols % p.group_cols == 0 ? k_block_cols / p.group_cols * p.group_entries : 0;
}

template <int R, class V>
SHRINK_TARGET_AVX2 inline void blocked_avx2(const sparse_plan<V>& p, const float* x, index_t ldx, float* y,
                                            index_t ldy, index_t b, index_t r0, index_t r1) {
  const float* table = p.table.data();
  const std::uint32_t* rp = p.row_ptr.data();
  const std::uint32_t* col = p.col.data();
  const V* val = p.values.data();
  const index_t per_block = entries_per_block(p);
  std::uint32_t cur[k_block_rows];
  for (index_t i0 = r0; i0 < r1; i0 += k_block_rows) {
    const index_t nr = std::min(k_block_rows, r1 - i0);
    for (index_t t = 0; t < nr; ++t) cur[t] = rp[i0 + t];
    for (index_t c0 = 0; c0 < p.cols; c0 += k_block_cols) {
      const index_t cend = std::min(p.cols, c0 + k_block_cols);
      for (index_t t = 0; t < nr; ++t) {
        float* yr = y + (i0 + t) * ldy + b;
        __m256 acc[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r] = c0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(yr + 8 * r);
        std::uint32_t k = cur[t];
        const std::uint32_t k1 = rp[i0 + t + 1], ke = block_end(p, k, k1, cend, per_block);
        // This row's next block of weights: its own stream, one of k_block_rows interleaved.
        _mm_prefetch(reinterpret_cast<const char*>(val + ke), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(val + ke + 16), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(col + ke), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(col + ke + 16), _MM_HINT_T0);
        for (; k < ke; ++k) {
          const __m256 w = _mm256_set1_ps(weight_of(val[k], table));
          const float* xr = x + col[k] * ldx + b;
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(w, _mm256_loadu_ps(xr + 8 * r), acc[r]);
        }
        cur[t] = k;
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) _mm256_storeu_ps(yr + 8 * r, acc[r]);
      }
    }
  }
}

/// The blocked SpMM pays off where each row's entries reuse X blocks: N:M plans (dense
/// enough) and anything with a wide batch; rows-at-a-time stays for the rest.
template <class V>
SHRINK_ALWAYS_INLINE bool use_blocked(const sparse_plan<V>& p, index_t batch) {
  return batch >= 32 && p.cols > 0 && p.group_cols > 0;
}

template <class V>
SHRINK_TARGET_AVX2 inline void rows_avx2(const sparse_plan<V>& p, const float* x, index_t ldx, float* y, index_t ldy,
                                         index_t batch, index_t r0, index_t r1) {
  if (batch == 1 && ldx == 1) return spmv_rows_avx2(p, x, y, r0, r1);
  const float* table = p.table.data();
  index_t b0 = 0;
  if (use_blocked(p, batch)) {
    for (; b0 + 64 <= batch; b0 += 64) blocked_avx2<8>(p, x, ldx, y, ldy, b0, r0, r1);
    for (; b0 + 32 <= batch; b0 += 32) blocked_avx2<4>(p, x, ldx, y, ldy, b0, r0, r1);
  }
  sparse_detail::for_each_row(p, r0, r1, [&](const std::uint32_t* col, const V* val, index_t n, index_t i) {
    float* yr = y + i * ldy;
    index_t b = b0;
    for (; b + 64 <= batch; b += 64) tile_avx2<8>(col, val, table, n, x + b, ldx, yr + b);
    for (; b + 32 <= batch; b += 32) tile_avx2<4>(col, val, table, n, x + b, ldx, yr + b);
    for (; b + 8 <= batch; b += 8) tile_avx2<1>(col, val, table, n, x + b, ldx, yr + b);
    scalar_columns(col, val, table, n, x, ldx, yr, b, batch);
  });
}

// ---- avx512: 16-wide SpMM tiles. SpMV uses the AVX2 rows: a 16-wide gather issues as two
// 8-wide ones on current cores, and SIMDe (the emulated test build) lacks _mm512 gathers.
template <int R, class V>
SHRINK_TARGET_AVX512 inline void tile_avx512(const std::uint32_t* col, const V* val, const float* table, index_t n,
                                             const float* x, index_t ldx, float* y) {
  __m512 acc[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (index_t k = 0; k < n; ++k) {
    const __m512 w = _mm512_set1_ps(weight_of(val[k], table));
    const float* xr = x + col[k] * ldx;
    if (k + 8 < n) {
      const char* ahead = reinterpret_cast<const char*>(x + col[k + 8] * ldx);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) _mm_prefetch(ahead + 64 * r, _MM_HINT_T0);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(w, _mm512_loadu_ps(xr + 16 * r), acc[r]);
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(y + 16 * r, acc[r]);
}

template <int R, class V>
SHRINK_TARGET_AVX512 inline void blocked_avx512(const sparse_plan<V>& p, const float* x, index_t ldx, float* y,
                                                index_t ldy, index_t b, index_t r0, index_t r1) {
  const float* table = p.table.data();
  const std::uint32_t* rp = p.row_ptr.data();
  const std::uint32_t* col = p.col.data();
  const V* val = p.values.data();
  const index_t per_block = entries_per_block(p);
  std::uint32_t cur[k_block_rows];
  for (index_t i0 = r0; i0 < r1; i0 += k_block_rows) {
    const index_t nr = std::min(k_block_rows, r1 - i0);
    for (index_t t = 0; t < nr; ++t) cur[t] = rp[i0 + t];
    for (index_t c0 = 0; c0 < p.cols; c0 += k_block_cols) {
      const index_t cend = std::min(p.cols, c0 + k_block_cols);
      for (index_t t = 0; t < nr; ++t) {
        float* yr = y + (i0 + t) * ldy + b;
        __m512 acc[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r] = c0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(yr + 16 * r);
        std::uint32_t k = cur[t];
        const std::uint32_t k1 = rp[i0 + t + 1], ke = block_end(p, k, k1, cend, per_block);
        _mm_prefetch(reinterpret_cast<const char*>(val + ke), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(val + ke + 16), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(col + ke), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(col + ke + 16), _MM_HINT_T0);
        for (; k < ke; ++k) {
          const __m512 w = _mm512_set1_ps(weight_of(val[k], table));
          const float* xr = x + col[k] * ldx + b;
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(w, _mm512_loadu_ps(xr + 16 * r), acc[r]);
        }
        cur[t] = k;
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) _mm512_storeu_ps(yr + 16 * r, acc[r]);
      }
    }
  }
}

template <class V>
SHRINK_TARGET_AVX512 inline void rows_avx512(const sparse_plan<V>& p, const float* x, index_t ldx, float* y,
                                             index_t ldy, index_t batch, index_t r0, index_t r1) {
  if (batch == 1 && ldx == 1) return spmv_rows_avx2(p, x, y, r0, r1);
  const float* table = p.table.data();
  index_t b0 = 0;
  if (use_blocked(p, batch)) {
    for (; b0 + 64 <= batch; b0 += 64) blocked_avx512<4>(p, x, ldx, y, ldy, b0, r0, r1);
    for (; b0 + 32 <= batch; b0 += 32) blocked_avx512<2>(p, x, ldx, y, ldy, b0, r0, r1);
  }
  sparse_detail::for_each_row(p, r0, r1, [&](const std::uint32_t* col, const V* val, index_t n, index_t i) {
    float* yr = y + i * ldy;
    index_t b = b0;
    for (; b + 128 <= batch; b += 128) tile_avx512<8>(col, val, table, n, x + b, ldx, yr + b);
    for (; b + 64 <= batch; b += 64) tile_avx512<4>(col, val, table, n, x + b, ldx, yr + b);
    for (; b + 16 <= batch; b += 16) tile_avx512<1>(col, val, table, n, x + b, ldx, yr + b);
    for (; b + 8 <= batch; b += 8) tile_avx2<1>(col, val, table, n, x + b, ldx, yr + b);
    scalar_columns(col, val, table, n, x, ldx, yr, b, batch);
  });
}
#endif

template <class V>
inline const std::array<implementation<rows_fn<V>>, SHRINK_HAS_X86_PATHS ? 4 : 2> k_rows{{
    {isa::reference, 0, rows_reference<V>},
    {isa::generic, 0, rows_generic<V>},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, rows_avx2<V>},
    {isa::avx512, 0, rows_avx512<V>},
#endif
}};

template <class V>
void run(const sparse_plan<V>& p, const float* x, index_t ldx, float* y, index_t ldy, index_t batch,
         const context& ctx) {
  const rows_fn<V> fn = select(k_rows<V>);
  sparse_detail::for_row_ranges(ctx, p, [&](index_t r0, index_t r1) { fn(p, x, ldx, y, ldy, batch, r0, r1); });
}

}  // namespace spmm_impl

// ---- batch-1 plans (make_spmv_plan). Summation order, every path and layout: index
// and delta8 layouts keep 8 lane sums over entries k ≡ lane (mod 8) in two registers (even and odd
// 8-entry steps), add them, then add the last n mod 8 entries in order (so delta8 and
// index16 give the same bits on each path); bitmap keeps 8
// lane sums over columns j ≡ lane (mod 8) in two registers (even and odd 8-column groups),
// then adds the last partial 64-column word in column order. The reference sums in double.
namespace spmv_impl {

using rows_fn = void (*)(const spmv_plan_f32&, const float*, float*, index_t, index_t);

/// Calls fn(column, value) for row i's entries in column order, whatever the layout.
template <class Fn>
SHRINK_ALWAYS_INLINE void for_each_entry(const spmv_plan_f32& p, index_t i, Fn&& fn) {
  const auto r = static_cast<std::size_t>(i);
  if (p.layout == spmv_layout::delta8 && p.escape[r] == 0) {
    const auto* b = reinterpret_cast<const unsigned char*>(p.stream.data() + p.row_ptr[r]);
    const std::ptrdiff_t n = 2 * static_cast<std::ptrdiff_t>(p.row_ptr[r + 1] - p.row_ptr[r]) / 5;
    index_t c = 0;
    for (std::ptrdiff_t k = 0; k < n; k += 16) {
      const auto t = std::min<std::ptrdiff_t>(16, n - k);
      for (std::ptrdiff_t e = 0; e < t; ++e) {
        float v;
        std::memcpy(&v, b + t + 4 * e, sizeof v);
        c += b[sparse_detail::delta8_slot(static_cast<index_t>(e), static_cast<index_t>(t))];
        fn(c, v);
      }
      b += 5 * t;
    }
  } else if (p.layout == spmv_layout::index16 || p.layout == spmv_layout::delta8) {
    const std::uint16_t* s = p.stream.data() + p.row_ptr[r];
    const std::uint16_t* end = p.stream.data() + p.row_ptr[r + 1];
    while (s < end) {
      const auto t = std::min<std::ptrdiff_t>(16, (end - s) / 3);
      for (std::ptrdiff_t e = 0; e < t; ++e) {
        float v;
        std::memcpy(&v, s + t + 2 * e, sizeof v);
        fn(index_t{s[e]}, v);
      }
      s += 3 * t;
    }
  } else if (p.layout == spmv_layout::index32) {
    for (std::uint32_t k = p.row_ptr[r]; k < p.row_ptr[r + 1]; ++k) fn(index_t{p.col[k]}, p.values[k]);
  } else {
    const float* v = p.values.data() + p.row_ptr[r];
    for (index_t w = 0; w < p.words; ++w)
      for (std::uint64_t q = p.bits[static_cast<std::size_t>(i * p.words + w)]; q != 0; q &= q - 1)
        fn(64 * w + std::countr_zero(q), *v++);
  }
}

inline void rows_reference(const spmv_plan_f32& p, const float* x, float* y, index_t r0, index_t r1) {
  for (index_t i = r0; i < r1; ++i) {
    double s = 0.0;
    for_each_entry(p, i, [&](index_t j, float v) { s += static_cast<double>(v) * static_cast<double>(x[j]); });
    y[i] = static_cast<float>(s);
  }
}

// generic: four scalar lane sums over entries k ≡ lane (mod 4), any layout.
inline void rows_generic(const spmv_plan_f32& p, const float* x, float* y, index_t r0, index_t r1) {
  for (index_t i = r0; i < r1; ++i) {
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    unsigned k = 0;
    for_each_entry(p, i, [&](index_t j, float v) { s[k++ & 3] += v * x[j]; });
    y[i] = (s[0] + s[1]) + (s[2] + s[3]);
  }
}

#if SHRINK_HAS_X86_PATHS
// x at 8 columns, built with scalar loads inserted into lanes: on Zen 4 vgatherdps costs
// ~10 cycles per 8 lanes; 8 vinsertps with memory operands issue on the 3 load ports and
// cost ~6 (benchmarks/results/sparse.md). u16 columns come 4 per 64-bit load.
/// x at 8 columns given as 2 x 4 u16 fields, a's relative to xa and b's to xb (delta8
/// passes each group's base column through the pointer; index16 passes x twice).
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE __m256 x8_avx2(const float* xa, std::uint64_t a, const float* xb,
                                                       std::uint64_t b) {
  const auto ld = [](const float* q) SHRINK_TARGET_AVX2 {
    int v;
    std::memcpy(&v, q, 4);
    return v;
  };
  __m128i lo = _mm_cvtsi32_si128(ld(xa + (a & 0xFFFF)));
  lo = _mm_insert_epi32(lo, ld(xa + ((a >> 16) & 0xFFFF)), 1);
  lo = _mm_insert_epi32(lo, ld(xa + ((a >> 32) & 0xFFFF)), 2);
  lo = _mm_insert_epi32(lo, ld(xa + (a >> 48)), 3);
  __m128i hi = _mm_cvtsi32_si128(ld(xb + (b & 0xFFFF)));
  hi = _mm_insert_epi32(hi, ld(xb + ((b >> 16) & 0xFFFF)), 1);
  hi = _mm_insert_epi32(hi, ld(xb + ((b >> 32) & 0xFFFF)), 2);
  hi = _mm_insert_epi32(hi, ld(xb + (b >> 48)), 3);
  return _mm256_castsi256_ps(_mm256_set_m128i(hi, lo));
}
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE __m256 x8_avx2(const float* x, const std::uint16_t* c) {
  std::uint64_t a, b;
  std::memcpy(&a, c, 8);
  std::memcpy(&b, c + 4, 8);
  return x8_avx2(x, a, x, b);
}
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE __m256 x8_avx2(const float* x, const std::uint32_t* c) {
  __m128 lo = _mm_load_ss(x + c[0]);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + c[1]), 0x10);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + c[2]), 0x20);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + c[3]), 0x30);
  __m128 hi = _mm_load_ss(x + c[4]);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + c[5]), 0x10);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + c[6]), 0x20);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + c[7]), 0x30);
  return _mm256_set_m128(hi, lo);
}

/// One index16 row (stream units [s, end)): index16 rows and delta8's escape rows.
SHRINK_TARGET_AVX2 SHRINK_ALWAYS_INLINE float index16_row_avx2(const std::uint16_t* s, const std::uint16_t* end,
                                                             const float* x) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (; end - s >= 48; s += 48) {  // a full chunk: 16 columns, 16 values
    const auto* v = reinterpret_cast<const float*>(s + 16);
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(v), x8_avx2(x, s), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(v + 8), x8_avx2(x, s + 8), a1);
  }
  const std::ptrdiff_t t = (end - s) / 3;  // the tail chunk: t columns, t values
  std::ptrdiff_t e = 0;
  if (t >= 8) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(reinterpret_cast<const float*>(s + t)), x8_avx2(x, s), a0);
    e = 8;
  }
  float sum = x86::hsum(_mm256_add_ps(a0, a1));
  for (; e < t; ++e) {
    float w;
    std::memcpy(&w, s + t + 2 * e, sizeof w);
    sum += w * x[s[e]];
  }
  return sum;
}

SHRINK_TARGET_AVX2 inline void index16_avx2(const spmv_plan_f32& p, const float* x, float* y, index_t r0, index_t r1) {
  for (index_t i = r0; i < r1; ++i)
    y[i] = index16_row_avx2(p.stream.data() + p.row_ptr[static_cast<std::size_t>(i)],
                            p.stream.data() + p.row_ptr[static_cast<std::size_t>(i) + 1], x);
}

// delta8 rows: per full chunk (80 bytes) two u64 loads of the 16 steps give four u64 of 4
// u16 in-group column offsets (sparse_detail::delta8_columns: a mask, a shift and a
// multiply per 4 entries); each group's x base pointer is the previous one plus the
// previous group's total, and the lane inserts are index16's. The tail chunk's first 8
// entries take the same route, the rest run scalar. The accumulation is index16's step
// for step (same bits).
SHRINK_TARGET_AVX2 inline void delta8_avx2(const spmv_plan_f32& p, const float* x, float* y, index_t r0, index_t r1) {
  using sparse_detail::delta8_columns;
  const std::uint64_t ones = sparse_detail::delta8_ones();
  for (index_t i = r0; i < r1; ++i) {
    const auto r = static_cast<std::size_t>(i);
    if (p.escape[r] != 0) {
      y[i] = index16_row_avx2(p.stream.data() + p.row_ptr[r], p.stream.data() + p.row_ptr[r + 1], x);
      continue;
    }
    const auto* s = reinterpret_cast<const unsigned char*>(p.stream.data() + p.row_ptr[r]);
    std::ptrdiff_t n = 2 * static_cast<std::ptrdiff_t>(p.row_ptr[r + 1] - p.row_ptr[r]) / 5;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    const float* xc = x;  // x at the last column so far (column 0 before the first entry)
    for (; n >= 16; n -= 16, s += 80) {
      std::uint64_t d0, d1, g0, g1, g2, g3;
      std::memcpy(&d0, s, 8);
      std::memcpy(&d1, s + 8, 8);
      delta8_columns(d0, ones, g0, g1);
      delta8_columns(d1, ones, g2, g3);
      const float* x1 = xc + (g0 >> 48);
      const float* x2 = x1 + (g1 >> 48);
      const float* x3 = x2 + (g2 >> 48);
      const auto* v = reinterpret_cast<const float*>(s + 16);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(v), x8_avx2(xc, g0, x1, g1), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(v + 8), x8_avx2(x2, g2, x3, g3), a1);
      xc = x3 + (g3 >> 48);
    }
    const auto t = n;  // the tail chunk: t < 16 steps, then t values
    std::ptrdiff_t e = 0;
    if (t >= 8) {
      std::uint64_t d0, g0, g1;
      std::memcpy(&d0, s, 8);
      delta8_columns(d0, ones, g0, g1);
      const float* x1 = xc + (g0 >> 48);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(reinterpret_cast<const float*>(s + t)), x8_avx2(xc, g0, x1, g1), a0);
      xc = x1 + (g1 >> 48);
      e = 8;
    }
    float sum = x86::hsum(_mm256_add_ps(a0, a1));
    for (; e < t; ++e) {  // steps past the last group of 8 are stored in order
      float w;
      std::memcpy(&w, s + t + 4 * e, sizeof w);
      xc += s[e];
      sum += w * *xc;
    }
    y[i] = sum;
  }
}

SHRINK_TARGET_AVX2 inline void index32_avx2(const spmv_plan_f32& p, const float* x, float* y, index_t r0, index_t r1) {
  const std::uint32_t* col = p.col.data();
  const float* val = p.values.data();
  for (index_t i = r0; i < r1; ++i) {
    index_t k = p.row_ptr[static_cast<std::size_t>(i)];
    const index_t k1 = p.row_ptr[static_cast<std::size_t>(i) + 1];
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; k + 16 <= k1; k += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + k), x8_avx2(x, col + k), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(val + k + 8), x8_avx2(x, col + k + 8), a1);
    }
    if (k + 8 <= k1) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + k), x8_avx2(x, col + k), a0);
      k += 8;
    }
    float sum = x86::hsum(_mm256_add_ps(a0, a1));
    for (; k < k1; ++k) sum += val[k] * x[col[k]];
    y[i] = sum;
  }
}

/// Lane l of mask byte m: bit 7 set when bit l of m is set (the lane is kept), bits 0-2
/// the position of l among m's set bits (the vpermps index; vpermps reads only those
/// bits). One vpmovsxbd of an 8-byte entry gives both the permutation and the vblendvps
/// selector (the sign bit).
struct expand_bytes_table {
  alignas(64) std::uint8_t lane[256][8];
};
consteval expand_bytes_table make_expand_bytes_table() {
  expand_bytes_table t{};
  for (int m = 0; m < 256; ++m) {
    int at = 0;
    for (int l = 0; l < 8; ++l) t.lane[m][l] = (m >> l & 1) ? static_cast<std::uint8_t>(0x80 | at++) : 0;
  }
  return t;
}
inline constexpr expand_bytes_table k_expand_bytes = make_expand_bytes_table();

// Bitmap rows: per 8 columns, the kept values (packed, starting at the popcount of the
// lower bits) are spread to their lanes with vpermps, and x is loaded contiguously with
// the cleared lanes zeroed (x, not w: a 0·inf in a pruned column must not make NaN; the
// spread value there is another finite weight or the plan's zero padding). Per 8 columns:
// one mask byte load, popcnt + add, and four vector ops taking their other operand from
// memory (vpmovsxbd of the lane entry, vblendvps with x, vpermps of the values, the FMA).
// The previous kernel (a 32-byte int32 lane table indexed by shifted mask bytes, popcounts
// of the masked-off word) was ~15-20 % slower at s50 (benchmarks/results/sparse.md).
SHRINK_TARGET_AVX2 inline void bitmap_avx2(const spmv_plan_f32& p, const float* x, float* y, index_t r0, index_t r1) {
  const index_t full = p.cols / 64;
  __m256 zero = _mm256_setzero_ps();
  // Opaque to the compiler: with a known zero GCC turns vblendvps into vpcmpgtd + vandps.
  __asm__("" : "+x"(zero));
  for (index_t i = r0; i < r1; ++i) {
    const std::uint64_t* bw = p.bits.data() + i * p.words;
    const auto* mb = reinterpret_cast<const std::uint8_t*>(bw);  // little-endian: byte g = columns 8g..8g+7
    const float* v = p.values.data() + p.row_ptr[static_cast<std::size_t>(i)];
    __m256 a[2] = {zero, zero};  // even and odd 8-column groups (the documented order)
    for (index_t w = 0; w < full; ++w) {
      const float* xp = x + 64 * w;
#pragma GCC unroll 8
      for (int g = 0; g < 8; ++g) {
        const unsigned m = mb[8 * w + g];
        const __m256i l = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(k_expand_bytes.lane[m])));
        const __m256 xg = _mm256_blendv_ps(zero, _mm256_loadu_ps(xp + 8 * g), _mm256_castsi256_ps(l));
        a[g & 1] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(v), l), xg, a[g & 1]);
        v += _mm_popcnt_u32(m);
      }
      // The hardware prefetcher stops at page ends (4 KiB unless the plan got 2 MiB
      // pages): fetch 2 KiB ahead (1-8 KiB tried, within noise of each other).
      _mm_prefetch(reinterpret_cast<const char*>(v + 512), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(v + 528), _MM_HINT_T0);
    }
    float sum = x86::hsum(_mm256_add_ps(a[0], a[1]));
    if (full < p.words)
      for (std::uint64_t q = bw[full]; q != 0; q &= q - 1) sum += *v++ * x[64 * full + std::countr_zero(q)];
    y[i] = sum;
  }
}

SHRINK_TARGET_AVX2 inline void rows_avx2(const spmv_plan_f32& p, const float* x, float* y, index_t r0, index_t r1) {
  if (p.layout == spmv_layout::index16) return index16_avx2(p, x, y, r0, r1);
  if (p.layout == spmv_layout::index32) return index32_avx2(p, x, y, r0, r1);
  if (p.layout == spmv_layout::delta8) return delta8_avx2(p, x, y, r0, r1);
  bitmap_avx2(p, x, y, r0, r1);
}
#endif

// AVX-512 runs the AVX2 rows: the work is x loads and lane inserts, not arithmetic width
// (and SIMDe, the emulated test build, lacks the 512-bit gathers/expands one would use).
inline const std::array<implementation<rows_fn>, SHRINK_HAS_X86_PATHS ? 4 : 2> k_rows{{
    {isa::reference, 0, rows_reference},
    {isa::generic, 0, rows_generic},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, rows_avx2},
    {isa::avx512, 0, rows_avx2},
#endif
}};

/// Row ranges balanced by stored entries (index16: by stream units, 3 per entry; delta8:
/// 2.5 units per entry, 3 in escape rows).
template <class Fn>
void for_row_ranges(const context& ctx, const spmv_plan_f32& p, Fn&& fn) {
  const index_t parts = std::min<index_t>(ctx.resolved_threads(), std::max<index_t>(p.rows, 1));
  if (parts <= 1) {
    fn(index_t{0}, p.rows);
    return;
  }
  parallel_for(ctx, 0, parts, 1, [&](index_t b, index_t e) {
    for (index_t part = b; part < e; ++part) {
      const index_t r0 = sparse_detail::balanced_row(p.row_ptr.span(), p.rows, part, parts);
      const index_t r1 = sparse_detail::balanced_row(p.row_ptr.span(), p.rows, part + 1, parts);
      if (r0 < r1) fn(r0, r1);
    }
  });
}

}  // namespace spmv_impl

template <class V>
concept float_valued_plan = std::is_same_v<V, float> || std::is_same_v<V, std::uint8_t>;

/// y = W·x for an fp32 or codebook plan (make_plan of csr_f32, nm_f32, bsr_f32, csr_codebook).
/// x has W.cols elements, y W.rows. Never allocates with one thread.
template <float_valued_plan V>
void spmv(const sparse_plan<V>& w, std::span<const float> x, std::span<float> y, const context& ctx = {}) {
  sparse_detail::check_spmv(w.rows, w.cols, x.size(), y.size());
  spmm_impl::run(w, x.data(), 1, y.data(), 1, 1, ctx);
}

/// Y = W·X with X stored [K, batch] and Y [N, batch], each row contiguous (stride 1 along
/// the batch axis; any row stride). batch may be 1 to 256 or more.
template <float_valued_plan V>
void spmm(const sparse_plan<V>& w, const_view<float, 2> x, tensor_view<float, 2> y, const context& ctx = {}) {
  if (!sparse_detail::check_spmm(w.rows, w.cols, x, y)) return;
  spmm_impl::run(w, x.data(), x.stride(0), y.data(), y.stride(0), x.extent(1), ctx);
}

/// y = W·x for a batch-1 plan (make_spmv_plan of csr_f32). Never allocates with one thread.
inline void spmv(const spmv_plan_f32& w, std::span<const float> x, std::span<float> y, const context& ctx = {}) {
  sparse_detail::check_spmv(w.rows, w.cols, x.size(), y.size());
  const auto fn = select(spmv_impl::k_rows);
  spmv_impl::for_row_ranges(ctx, w, [&](index_t r0, index_t r1) { fn(w, x.data(), y.data(), r0, r1); });
}

}  // namespace shrink::kernels
