// lut_gemv.hpp: lookup GEMVs: codebook indices (≤ 8 bits, per-tensor or per-row centroids) and product-quantization codes through per-input lookup tables.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>

#include <xsimd/xsimd.hpp>

#include "../core/aligned_buffer.hpp"
#include "../core/bits.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor_view.hpp"
#include "dispatch.hpp"
#include "x86_reduce.hpp"

namespace shrink::kernels {

/// W[N, K] as b-bit indices (1 ≤ b ≤ 8) into 2^b centroids, one codebook for the tensor or
/// one per row. Each row's indices are in pack_bits order, the row padded to a multiple of
/// 8 indices (so 8 indices are exactly b whole bytes), plus 8 spare bytes at the end so a
/// 4-byte read of the last step never leaves the buffer.
struct packed_codebook_weights {
  index_t rows = 0, depth = 0;
  int bits = 0;
  bool per_row = false;
  index_t row_bytes = 0;
  aligned_buffer<std::uint8_t> indices;
  aligned_buffer<float> centroids;  ///< (per_row ? rows : 1) · 2^bits

  [[nodiscard]] index_t codebook_size() const noexcept { return index_t{1} << bits; }
  [[nodiscard]] const float* codebook(index_t n) const noexcept {
    return centroids.data() + (per_row ? n * codebook_size() : 0);
  }
  [[nodiscard]] unsigned index(index_t n, index_t k) const noexcept {
    const std::uint8_t* row = indices.data() + n * row_bytes;
    const index_t bit = k * bits;
    unsigned v = row[bit / 8] >> (bit % 8);
    if (bit % 8 + bits > 8) v |= static_cast<unsigned>(row[bit / 8 + 1]) << (8 - bit % 8);
    return v & ((1u << bits) - 1);
  }
};

/// Packs indices given in pack_bits order over the whole tensor (index n·K + k is field
/// n·K + k of `bits` bits) with `centroids` of 2^bits (per tensor) or rows·2^bits (per row).
inline packed_codebook_weights pack_codebook_weights(std::span<const std::uint8_t> packed_indices, int bits,
                                                     index_t rows, index_t depth, std::span<const float> centroids) {
  SHRINK_REQUIRE(bits >= 1 && bits <= 8, errc::invalid_argument, "pack_codebook_weights: bits must be in [1, 8], got ",
                 bits);
  SHRINK_REQUIRE(rows > 0 && depth > 0, errc::empty_input, "pack_codebook_weights: weights must be non-empty, got ",
                 rows, "x", depth);
  const std::size_t need = packed_bytes(static_cast<std::size_t>(rows * depth), bits);
  SHRINK_REQUIRE(packed_indices.size() >= need && packed_indices.data() != nullptr, errc::shape_mismatch,
                 "pack_codebook_weights: ", rows, "x", depth, " indices of ", bits, " bits need ", need,
                 " bytes, got ", packed_indices.size());
  const auto cb = static_cast<std::size_t>(1) << bits;
  SHRINK_REQUIRE(centroids.size() == cb || centroids.size() == cb * static_cast<std::size_t>(rows),
                 errc::shape_mismatch, "pack_codebook_weights: expected ", cb, " (per tensor) or ",
                 cb * static_cast<std::size_t>(rows), " (per row) centroids, got ", centroids.size());
  for (float c : centroids)
    SHRINK_REQUIRE(std::isfinite(c), errc::non_finite, "pack_codebook_weights: centroid must be finite, got ", c);
  packed_codebook_weights p;
  p.rows = rows;
  p.depth = depth;
  p.bits = bits;
  p.per_row = centroids.size() != cb;
  p.row_bytes = (depth + 7) / 8 * bits;
  p.indices = aligned_buffer<std::uint8_t>(static_cast<std::size_t>(rows * p.row_bytes + 8));
  p.centroids = aligned_buffer<float>(centroids);
  const unsigned mask = (1u << bits) - 1;
  for (index_t n = 0; n < rows; ++n) {
    std::uint8_t* row = p.indices.data() + n * p.row_bytes;
    for (index_t k = 0; k < depth; ++k) {
      const auto src = static_cast<std::size_t>(n * depth + k) * static_cast<std::size_t>(bits);
      unsigned v = packed_indices[src / 8] >> (src % 8);
      if (src % 8 + static_cast<std::size_t>(bits) > 8) v |= static_cast<unsigned>(packed_indices[src / 8 + 1]) << (8 - src % 8);
      v &= mask;
      const index_t dst = k * bits;
      row[dst / 8] = static_cast<std::uint8_t>(row[dst / 8] | (v << (dst % 8)));
      if (dst % 8 + bits > 8) row[dst / 8 + 1] = static_cast<std::uint8_t>(row[dst / 8 + 1] | (v >> (8 - dst % 8)));
    }
  }
  return p;
}

namespace lut_detail {

using codebook_fn = void (*)(const float* x, const packed_codebook_weights& w, index_t n0, index_t n1, float* y);

inline void codebook_reference(const float* x, const packed_codebook_weights& w, index_t n0, index_t n1, float* y) {
  for (index_t n = n0; n < n1; ++n) {
    const float* cb = w.codebook(n);
    double sum = 0.0;
    for (index_t k = 0; k < w.depth; ++k) sum += static_cast<double>(cb[w.index(n, k)]) * static_cast<double>(x[k]);
    y[n] = static_cast<float>(sum);
  }
}

inline void codebook_generic(const float* x, const packed_codebook_weights& w, index_t n0, index_t n1, float* y) {
  using bf = xsimd::batch<float>;
  constexpr index_t lanes = static_cast<index_t>(bf::size);
  alignas(64) float block[256];
  for (index_t n = n0; n < n1; ++n) {
    const float* cb = w.codebook(n);
    bf acc(0.0f);
    float sum = 0.0f;
    for (index_t k0 = 0; k0 < w.depth; k0 += 256) {
      const index_t len = std::min<index_t>(256, w.depth - k0);
      for (index_t i = 0; i < len; ++i) block[i] = cb[w.index(n, k0 + i)];
      index_t i = 0;
      for (; i + lanes <= len; i += lanes) acc = xsimd::fma(bf::load_aligned(block + i), bf::load_unaligned(x + k0 + i), acc);
      for (; i < len; ++i) sum += block[i] * x[k0 + i];
    }
    y[n] = xsimd::hadd(acc) + sum;
  }
}

#if SHRINK_HAS_X86_PATHS
// ---- avx2: 8 indices of b ≤ 4 bits are one 32-bit word: broadcast, vpsrlvd by b·lane,
// then vpermps looks up 8 centroids in a register (for b = 4, two tables blended on bit 3).
// b ≥ 5: indices extracted in scalar, vgatherdps from the codebook (in L1).
// Eight centroids for the indices at depth k (a multiple of 8) of one row.
template <int Bits>
SHRINK_TARGET_AVX2 inline __m256 lookup8(const std::uint8_t* row, index_t k, __m256i shifts, __m256i mask, __m256 t_lo,
                                         __m256 t_hi, const float* cb) {
  if constexpr (Bits <= 4) {
    std::int32_t word;
    std::memcpy(&word, row + k / 8 * Bits, 4);
    const __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(word), shifts), mask);
    if constexpr (Bits < 4) {
      return _mm256_permutevar8x32_ps(t_lo, idx);
    } else {
      const __m256 lo = _mm256_permutevar8x32_ps(t_lo, idx), hi = _mm256_permutevar8x32_ps(t_hi, idx);
      return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
    }
  } else {
    std::uint64_t bitsword;
    std::memcpy(&bitsword, row + k / 8 * Bits, 8);
    alignas(32) std::int32_t ids[8];
    for (int i = 0; i < 8; ++i) ids[i] = static_cast<std::int32_t>((bitsword >> (i * Bits)) & ((1u << Bits) - 1));
    return _mm256_i32gather_ps(cb, _mm256_load_si256(reinterpret_cast<const __m256i*>(ids)), 4);
  }
}

template <int Bits>
SHRINK_TARGET_AVX2 inline void codebook_avx2_bits(const float* x, const packed_codebook_weights& w, index_t n0,
                                                  index_t n1, float* y) {
  const __m256i shifts = _mm256_setr_epi32(0, Bits, 2 * Bits, 3 * Bits, 4 * Bits, 5 * Bits, 6 * Bits, 7 * Bits);
  const __m256i mask = _mm256_set1_epi32((1 << Bits) - 1);
  const index_t vec_end = w.depth / 8 * 8;
  for (index_t n = n0; n < n1; ++n) {
    const float* cb = w.codebook(n);
    const std::uint8_t* row = w.indices.data() + n * w.row_bytes;
    alignas(32) float table[16] = {};
    for (index_t c = 0; c < std::min<index_t>(16, w.codebook_size()); ++c) table[c] = cb[c];
    const __m256 t_lo = _mm256_load_ps(table), t_hi = _mm256_load_ps(table + 8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    index_t k = 0;
    for (; k + 16 <= vec_end; k += 16) {
      acc0 = _mm256_fmadd_ps(lookup8<Bits>(row, k, shifts, mask, t_lo, t_hi, cb), _mm256_loadu_ps(x + k), acc0);
      acc1 = _mm256_fmadd_ps(lookup8<Bits>(row, k + 8, shifts, mask, t_lo, t_hi, cb), _mm256_loadu_ps(x + k + 8), acc1);
    }
    for (; k < vec_end; k += 8) acc0 = _mm256_fmadd_ps(lookup8<Bits>(row, k, shifts, mask, t_lo, t_hi, cb), _mm256_loadu_ps(x + k), acc0);
    float tail = 0.0f;
    for (; k < w.depth; ++k) tail += cb[w.index(n, k)] * x[k];
    y[n] = x86::hsum(_mm256_add_ps(acc0, acc1)) + tail;
  }
}

inline void codebook_avx2(const float* x, const packed_codebook_weights& w, index_t n0, index_t n1, float* y) {
  switch (w.bits) {
    case 1: codebook_avx2_bits<1>(x, w, n0, n1, y); break;
    case 2: codebook_avx2_bits<2>(x, w, n0, n1, y); break;
    case 3: codebook_avx2_bits<3>(x, w, n0, n1, y); break;
    case 4: codebook_avx2_bits<4>(x, w, n0, n1, y); break;
    case 5: codebook_avx2_bits<5>(x, w, n0, n1, y); break;
    case 6: codebook_avx2_bits<6>(x, w, n0, n1, y); break;
    case 7: codebook_avx2_bits<7>(x, w, n0, n1, y); break;
    default: codebook_avx2_bits<8>(x, w, n0, n1, y); break;
  }
}

// ---- avx512, b ≤ 4: 16 indices per step, one vpermps over a 16-float table (any b ≤ 4, no
// blend). Lanes 0–7 take their indices from the 32-bit word at the step's first byte, lanes
// 8–15 from the word b bytes on (bit 8·b), each shifted by b·(lane mod 8) with one vpsrlvd.
// b ≥ 5 runs the AVX2 kernel (vgatherdps): SIMDe, which the emulated tests use, has no
// 512-bit gathers. GCC 12's vpsrlvd / vpermps intrinsics pass an undefined vector that trips
// -Wmaybe-uninitialized inside its own headers, hence the pragma (as in weight_only_gemv.hpp).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
template <int Bits>
SHRINK_TARGET_AVX512 inline void codebook_avx512_bits(const float* x, const packed_codebook_weights& w, index_t n0,
                                                      index_t n1, float* y) {
  static_assert(Bits <= 4);
  const __m512i shifts = _mm512_setr_epi32(0, Bits, 2 * Bits, 3 * Bits, 4 * Bits, 5 * Bits, 6 * Bits, 7 * Bits, 0, Bits,
                                           2 * Bits, 3 * Bits, 4 * Bits, 5 * Bits, 6 * Bits, 7 * Bits);
  const __m512i mask = _mm512_set1_epi32((1 << Bits) - 1);
  const auto lookup16 = [&](const std::uint8_t* row, index_t k, __m512 table) SHRINK_TARGET_AVX512 {
    std::int32_t lo, hi;
    std::memcpy(&lo, row + k / 8 * Bits, 4);
    std::memcpy(&hi, row + k / 8 * Bits + Bits, 4);
    const __m512i words = _mm512_mask_set1_epi32(_mm512_set1_epi32(lo), 0xFF00, hi);
    const __m512i idx = _mm512_and_si512(_mm512_srlv_epi32(words, shifts), mask);
    return _mm512_permutexvar_ps(idx, table);
  };
  const index_t vec_end = w.depth / 16 * 16;
  for (index_t n = n0; n < n1; ++n) {
    const float* cb = w.codebook(n);
    const std::uint8_t* row = w.indices.data() + n * w.row_bytes;
    alignas(64) float entries[16] = {};
    std::memcpy(entries, cb, sizeof(float) * static_cast<std::size_t>(w.codebook_size()));
    const __m512 table = _mm512_load_ps(entries);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    index_t k = 0;
    for (; k + 32 <= vec_end; k += 32) {
      acc0 = _mm512_fmadd_ps(lookup16(row, k, table), _mm512_loadu_ps(x + k), acc0);
      acc1 = _mm512_fmadd_ps(lookup16(row, k + 16, table), _mm512_loadu_ps(x + k + 16), acc1);
    }
    if (k < vec_end) acc0 = _mm512_fmadd_ps(lookup16(row, k, table), _mm512_loadu_ps(x + k), acc0);
    float tail = 0.0f;
    for (k = vec_end; k < w.depth; ++k) tail += cb[w.index(n, k)] * x[k];
    y[n] = x86::hsum(_mm512_add_ps(acc0, acc1)) + tail;
  }
}
#pragma GCC diagnostic pop

inline void codebook_avx512(const float* x, const packed_codebook_weights& w, index_t n0, index_t n1, float* y) {
  switch (w.bits) {
    case 1: codebook_avx512_bits<1>(x, w, n0, n1, y); break;
    case 2: codebook_avx512_bits<2>(x, w, n0, n1, y); break;
    case 3: codebook_avx512_bits<3>(x, w, n0, n1, y); break;
    case 4: codebook_avx512_bits<4>(x, w, n0, n1, y); break;
    default: codebook_avx2(x, w, n0, n1, y); break;
  }
}
#endif

inline const std::array<implementation<codebook_fn>, SHRINK_HAS_X86_PATHS ? 4 : 2> k_codebook{{
    {isa::reference, 0, codebook_reference},
    {isa::generic, 0, codebook_generic},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, codebook_avx2},
    {isa::avx512, 0, codebook_avx512},
#endif
}};

}  // namespace lut_detail

/// y[N] = W·x with W a codebook-indexed matrix. Rows split over threads; deterministic.
inline void codebook_gemv(std::span<const float> x, const packed_codebook_weights& w, std::span<float> y,
                          const context& ctx = {}) {
  SHRINK_REQUIRE(w.rows > 0 && w.bits >= 1 && w.bits <= 8 &&
                     w.indices.size() == static_cast<std::size_t>(w.rows * w.row_bytes + 8) &&
                     w.centroids.size() == static_cast<std::size_t>((w.per_row ? w.rows : 1) * w.codebook_size()),
                 errc::invalid_argument, "codebook_gemv: packed weights are empty or inconsistent; use pack_codebook_weights");
  SHRINK_REQUIRE(static_cast<index_t>(x.size()) == w.depth, errc::shape_mismatch, "codebook_gemv: x has ", x.size(),
                 " elements, the weights depth ", w.depth);
  SHRINK_REQUIRE(static_cast<index_t>(y.size()) == w.rows, errc::shape_mismatch, "codebook_gemv: y has ", y.size(),
                 " elements, expected ", w.rows);
  SHRINK_REQUIRE(x.data() != nullptr && y.data() != nullptr, errc::invalid_argument, "codebook_gemv: null pointer");
  const auto fn = select(lut_detail::k_codebook);
  parallel_for(ctx, 0, w.rows, 16, [&](index_t n0, index_t n1) { fn(x.data(), w, n0, n1, y.data()); });
}

// ---------------------------------------------------------------------------------------
// Product quantization: W's row n is the concatenation over M subspaces of centroid
// codes[n, m] of codebook m (256 centroids of d = K / M floats). For an input x,
// lut[m][c] = <codebook_m[c], x_m> is built once (256·K multiply-adds), then each output is
// M table lookups: y[n] = Σ_m lut[m][codes[n, m]], summed in float in the order m = 0..M−1
// on every path, so the GEMV is bit-exact across paths.

/// PQ codes [N, M] re-laid as blocks of 8 rows: [N/8][M][8] bytes (rows padded with code 0),
/// so one 8-byte load feeds an 8-lane gather.
struct packed_pq_codes {
  index_t rows = 0, subspaces = 0;
  aligned_buffer<std::uint8_t> codes;
};

inline packed_pq_codes pack_pq_codes(tensor_view<const std::uint8_t, 2> codes) {
  const index_t n = codes.extent(0), m = codes.extent(1);
  SHRINK_REQUIRE(n > 0 && m > 0, errc::empty_input, "pack_pq_codes: codes must be non-empty, got ", n, "x", m);
  packed_pq_codes p;
  p.rows = n;
  p.subspaces = m;
  p.codes = aligned_buffer<std::uint8_t>(static_cast<std::size_t>((n + 7) / 8 * 8 * m));
  for (index_t r = 0; r < n; ++r)
    for (index_t s = 0; s < m; ++s) p.codes[static_cast<std::size_t>(((r / 8) * m + s) * 8 + r % 8)] = codes(r, s);
  return p;
}

/// lut[m·256 + c] = Σ_j codebooks[(m·256 + c)·d + j] · x[m·d + j] with d = K / M; the sums
/// are exact products accumulated in double and rounded once (the same on every path).
inline void pq_build_lut(std::span<const float> x, std::span<const float> codebooks, index_t subspaces,
                         std::span<float> lut) {
  SHRINK_REQUIRE(subspaces > 0 && !x.empty() && static_cast<index_t>(x.size()) % subspaces == 0,
                 errc::shape_mismatch, "pq_build_lut: K = ", x.size(), " must be a positive multiple of M = ",
                 subspaces);
  const index_t d = static_cast<index_t>(x.size()) / subspaces;
  SHRINK_REQUIRE(static_cast<index_t>(codebooks.size()) == subspaces * 256 * d, errc::shape_mismatch,
                 "pq_build_lut: expected ", subspaces * 256 * d, " codebook floats (M·256·d), got ", codebooks.size());
  SHRINK_REQUIRE(static_cast<index_t>(lut.size()) == subspaces * 256, errc::shape_mismatch,
                 "pq_build_lut: lut must hold M·256 = ", subspaces * 256, " floats, got ", lut.size());
  for (index_t s = 0; s < subspaces; ++s)
    for (index_t c = 0; c < 256; ++c) {
      double sum = 0.0;
      const float* cw = codebooks.data() + (s * 256 + c) * d;
      for (index_t j = 0; j < d; ++j) sum += static_cast<double>(cw[j]) * static_cast<double>(x[static_cast<std::size_t>(s * d + j)]);
      lut[static_cast<std::size_t>(s * 256 + c)] = static_cast<float>(sum);
    }
}

namespace lut_detail {

using pq_fn = void (*)(const packed_pq_codes& c, const float* lut, index_t b0, index_t b1, float* y);

inline void pq_reference(const packed_pq_codes& c, const float* lut, index_t b0, index_t b1, float* y) {
  for (index_t n = b0 * 8; n < std::min(c.rows, b1 * 8); ++n) {
    float sum = 0.0f;
    for (index_t s = 0; s < c.subspaces; ++s)
      sum += lut[s * 256 + c.codes[static_cast<std::size_t>(((n / 8) * c.subspaces + s) * 8 + n % 8)]];
    y[n] = sum;
  }
}

// generic: eight rows in the lanes of a float batch (the lookups are scalar; the adds are
// vector when the batch has 8 lanes, else two halves), same order as the reference.
inline void pq_generic(const packed_pq_codes& c, const float* lut, index_t b0, index_t b1, float* y) {
  alignas(64) float lanes[8];
  for (index_t b = b0; b < b1; ++b) {
    float acc[8] = {};
    const std::uint8_t* codes = c.codes.data() + b * c.subspaces * 8;
    for (index_t s = 0; s < c.subspaces; ++s) {
      const float* t = lut + s * 256;
      for (int i = 0; i < 8; ++i) lanes[i] = t[codes[s * 8 + i]];
      for (int i = 0; i < 8; ++i) acc[i] += lanes[i];
    }
    for (index_t i = 0; i < 8 && b * 8 + i < c.rows; ++i) y[b * 8 + i] = acc[i];
  }
}

#if SHRINK_HAS_X86_PATHS
SHRINK_TARGET_AVX2 inline void pq_avx2(const packed_pq_codes& c, const float* lut, index_t b0, index_t b1, float* y) {
  for (index_t b = b0; b < b1; ++b) {
    const std::uint8_t* codes = c.codes.data() + b * c.subspaces * 8;
    __m256 acc = _mm256_setzero_ps();
    for (index_t s = 0; s < c.subspaces; ++s) {
      const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + s * 8)));
      acc = _mm256_add_ps(acc, _mm256_i32gather_ps(lut + s * 256, idx, 4));
    }
    alignas(32) float out[8];
    _mm256_store_ps(out, acc);
    for (index_t i = 0; i < 8 && b * 8 + i < c.rows; ++i) y[b * 8 + i] = out[i];
  }
}
#endif

inline const std::array<implementation<pq_fn>, SHRINK_HAS_X86_PATHS ? 3 : 2> k_pq{{
    {isa::reference, 0, pq_reference},
    {isa::generic, 0, pq_generic},
#if SHRINK_HAS_X86_PATHS
    {isa::avx2, 0, pq_avx2},
#endif
}};

}  // namespace lut_detail

/// y[n] = Σ_m lut[m][codes[n, m]] with lut from pq_build_lut. Bit-exact on every path.
inline void pq_gemv(const packed_pq_codes& codes, std::span<const float> lut, std::span<float> y,
                    const context& ctx = {}) {
  SHRINK_REQUIRE(codes.rows > 0 && codes.codes.size() == static_cast<std::size_t>((codes.rows + 7) / 8 * 8 * codes.subspaces),
                 errc::invalid_argument, "pq_gemv: packed codes are empty or inconsistent; use pack_pq_codes");
  SHRINK_REQUIRE(static_cast<index_t>(lut.size()) == codes.subspaces * 256, errc::shape_mismatch, "pq_gemv: lut has ",
                 lut.size(), " floats, expected M·256 = ", codes.subspaces * 256);
  SHRINK_REQUIRE(static_cast<index_t>(y.size()) == codes.rows, errc::shape_mismatch, "pq_gemv: y has ", y.size(),
                 " elements, expected ", codes.rows);
  SHRINK_REQUIRE(lut.data() != nullptr && y.data() != nullptr, errc::invalid_argument, "pq_gemv: null pointer");
  const auto fn = select(lut_detail::k_pq);
  parallel_for(ctx, 0, (codes.rows + 7) / 8, 1, [&](index_t b0, index_t b1) { fn(codes, lut.data(), b0, b1, y.data()); });
}

}  // namespace shrink::kernels
