// spmm_csr.hpp: y = W·x (SpMV) and Y = W·X (SpMM) for fp32 and codebook-valued sparse plans (CSR, N:M, BSR) on every ISA path.
#pragma once

#include <array>
#include <cstdint>
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

template <class V>
SHRINK_TARGET_AVX2 inline void rows_avx2(const sparse_plan<V>& p, const float* x, index_t ldx, float* y, index_t ldy,
                                         index_t batch, index_t r0, index_t r1) {
  if (batch == 1 && ldx == 1) return spmv_rows_avx2(p, x, y, r0, r1);
  const float* table = p.table.data();
  for (index_t i = r0; i < r1; ++i) {
    const index_t k0 = p.row_ptr[static_cast<std::size_t>(i)], n = p.row_ptr[static_cast<std::size_t>(i) + 1] - k0;
    const std::uint32_t* col = p.col.data() + k0;
    const V* val = p.values.data() + k0;
    float* yr = y + i * ldy;
    index_t b = 0;
    for (; b + 64 <= batch; b += 64) tile_avx2<8>(col, val, table, n, x + b, ldx, yr + b);
    for (; b + 32 <= batch; b += 32) tile_avx2<4>(col, val, table, n, x + b, ldx, yr + b);
    for (; b + 8 <= batch; b += 8) tile_avx2<1>(col, val, table, n, x + b, ldx, yr + b);
    scalar_columns(col, val, table, n, x, ldx, yr, b, batch);
  }
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

template <class V>
SHRINK_TARGET_AVX512 inline void rows_avx512(const sparse_plan<V>& p, const float* x, index_t ldx, float* y,
                                             index_t ldy, index_t batch, index_t r0, index_t r1) {
  if (batch == 1 && ldx == 1) return spmv_rows_avx2(p, x, y, r0, r1);
  const float* table = p.table.data();
  for (index_t i = r0; i < r1; ++i) {
    const index_t k0 = p.row_ptr[static_cast<std::size_t>(i)], n = p.row_ptr[static_cast<std::size_t>(i) + 1] - k0;
    const std::uint32_t* col = p.col.data() + k0;
    const V* val = p.values.data() + k0;
    float* yr = y + i * ldy;
    index_t b = 0;
    for (; b + 128 <= batch; b += 128) tile_avx512<8>(col, val, table, n, x + b, ldx, yr + b);
    for (; b + 64 <= batch; b += 64) tile_avx512<4>(col, val, table, n, x + b, ldx, yr + b);
    for (; b + 16 <= batch; b += 16) tile_avx512<1>(col, val, table, n, x + b, ldx, yr + b);
    for (; b + 8 <= batch; b += 8) tile_avx2<1>(col, val, table, n, x + b, ldx, yr + b);
    scalar_columns(col, val, table, n, x, ldx, yr, b, batch);
  }
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

template <class V>
concept float_valued_plan = std::is_same_v<V, float> || std::is_same_v<V, std::uint8_t>;

/// y = W·x for an fp32 or codebook plan (make_plan of csr_f32, nm_f32, bsr_f32, csr_codebook).
/// x has W.cols elements, y W.rows. Never allocates with one thread.
template <float_valued_plan V>
void spmv(const sparse_plan<V>& w, std::span<const float> x, std::span<float> y, const context& ctx = {}) {
  SHRINK_REQUIRE(x.size() == static_cast<std::size_t>(w.cols) && y.size() == static_cast<std::size_t>(w.rows),
                 errc::shape_mismatch, "spmv: W is ", w.rows, "x", w.cols, ", so x needs ", w.cols, " and y ", w.rows,
                 " elements; got ", x.size(), " and ", y.size());
  spmm_impl::run(w, x.data(), 1, y.data(), 1, 1, ctx);
}

/// Y = W·X with X stored [K, batch] and Y [N, batch], each row contiguous (stride 1 along
/// the batch axis; any row stride). batch may be 1 to 256 or more.
template <float_valued_plan V>
void spmm(const sparse_plan<V>& w, const_view<float, 2> x, tensor_view<float, 2> y, const context& ctx = {}) {
  SHRINK_REQUIRE(x.extent(0) == w.cols && y.extent(0) == w.rows && x.extent(1) == y.extent(1), errc::shape_mismatch,
                 "spmm: W is ", w.rows, "x", w.cols, "; expected X [", w.cols, ", batch] and Y [", w.rows,
                 ", batch], got X ", x.shape(), " and Y ", y.shape());
  SHRINK_REQUIRE((x.extent(1) <= 1 || x.stride(1) == 1) && (y.extent(1) <= 1 || y.stride(1) == 1),
                 errc::invalid_argument, "spmm: X and Y rows must be contiguous (stride 1 along the batch axis)");
  if (x.extent(1) == 0 || w.rows == 0) return;
  spmm_impl::run(w, x.data(), x.stride(0), y.data(), y.stride(0), x.extent(1), ctx);
}

}  // namespace shrink::kernels
