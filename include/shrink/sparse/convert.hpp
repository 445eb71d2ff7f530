// convert.hpp: the row kernels behind dense -> CSR / BSR / N:M conversion (generic and AVX2 paths, picked at run time).
#pragma once

// The formats keep their original element-by-element loops as the `reference` path (the
// oracle, and the path that raises every error). The faster paths below never raise: they
// report "something is wrong in this row" (a mask byte above 1, a kept non-finite weight, an
// over-full N:M group, a codebook index out of range) and the format then reruns the
// reference conversion, so results AND errors (code, message, reported position) are the
// reference's by construction. Every kernel writes outputs in the order the reference does.
//
// Compression of kept entries (AVX2): 8 lanes at a time, the keep bits b (8 bits) index a
// 256-entry table of lane numbers; vpermps moves the kept lanes to the front, one unaligned
// 8-wide store writes them and the output cursor advances by popcount(b). The lanes past the
// cursor are overwritten by the next store; near the end of an output buffer (fewer than 8
// slots left) the store goes through a small stack buffer instead.

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../core/config.hpp"
#include "../kernels/dispatch.hpp"

namespace shrink::sparse::convert_impl {

/// k_compress_lanes[b]: byte t is the lane number of the t-th set bit of b.
inline constexpr std::array<std::uint64_t, 256> k_compress_lanes = [] {
  std::array<std::uint64_t, 256> t{};
  for (unsigned b = 0; b < 256; ++b) {
    unsigned k = 0;
    std::uint64_t v = 0;
    for (unsigned lane = 0; lane < 8; ++lane)
      if ((b >> lane) & 1u) v |= static_cast<std::uint64_t>(lane) << (8 * k++);
    t[b] = v;
  }
  return t;
}();

/// What a CSR row kernel produces its values from.
enum class csr_value : int { f32 = 0, q8 = 1, byte = 2 };

/// One CSR row: inputs, and where its entries go. `room` is how many value/index slots are
/// writable from `values` / `cols` on (the rest of the output buffers).
struct csr_row {
  const float* w = nullptr;           ///< f32 / q8 source; also the keep predicate w != 0 when mask is null
  const std::uint8_t* bytes = nullptr;  ///< byte source (codebook indices, int8 codes)
  const std::uint8_t* mask = nullptr;   ///< keep where mask != 0; null: keep w != 0
  index_t n = 0;
  float scale = 1.0f;  ///< q8: q = clamp(nearbyint(w / scale), -127, 127)
  unsigned limit = 256;  ///< byte: kept values must be < limit
  void* values = nullptr;
  void* cols = nullptr;
  index_t room = 0;
};

/// One N:M row's lookup: for each 8-bit keep pattern of 8 consecutive lanes (8/M groups),
/// the lanes to store (in order), their packed positions, and whether every group keeps <= N.
struct nm_table {
  struct entry {
    std::uint64_t lanes;
    std::uint32_t meta;
    std::uint32_t valid;
  };
  std::array<entry, 256> e{};
  index_t m = 4, n = 2;
  int bits = 2;
  index_t per8 = 4;   ///< values stored per 8 lanes: 8 / M * N
  int meta_bits = 8;  ///< metadata bits per 8 lanes: per8 * bits
};

/// Builds the table with exactly the reference's selection rule: the masked-in positions,
/// plus the lowest masked-out ones while the group has fewer than N.
inline void make_nm_table(nm_table& t, index_t n, index_t m) {
  t.m = m;
  t.n = n;
  t.bits = std::bit_width(static_cast<unsigned>(m - 1));
  t.per8 = 8 / m * n;
  t.meta_bits = static_cast<int>(t.per8) * t.bits;
  for (unsigned b = 0; b < 256; ++b) {
    std::uint64_t lanes = 0;
    std::uint32_t meta = 0, valid = 1;
    unsigned k = 0;
    for (index_t g = 0; g < 8 / m; ++g) {
      const unsigned gm = (b >> (g * m)) & ((1u << m) - 1u);
      const index_t in = std::popcount(gm);
      if (in > n) valid = 0;
      index_t pad = in > n ? 0 : n - in, slot = 0;
      for (index_t p = 0; p < m && slot < n; ++p) {
        const bool on = ((gm >> p) & 1u) != 0;
        if (!on && pad == 0) continue;
        if (!on) --pad;
        lanes |= static_cast<std::uint64_t>(g * m + p) << (8 * k);
        meta |= static_cast<std::uint32_t>(p) << (static_cast<int>(k) * t.bits);
        ++k;
        ++slot;
      }
    }
    t.e[b] = {lanes, meta, valid && k == static_cast<unsigned>(t.per8) ? 1u : 0u};
  }
}

/// The fast paths' entry points; one instance per ISA path.
struct ops {
  /// Sum of n mask bytes; *max_byte gets their maximum (> 1 means an invalid mask).
  index_t (*mask_count)(const std::uint8_t* m, index_t n, unsigned* max_byte);
  /// Number of w[j] != 0 (NaN counts: the reference keeps it, then rejects it).
  index_t (*nonzero_count)(const float* w, index_t n);
  /// Writes one CSR row; false when a kept value is non-finite / out of range.
  /// Index [v][narrow]: v = csr_value.
  bool (*csr_fill[3][2])(const csr_row& r);
  /// One bitmask row: bit j of bits (ceil(n / 64) words, all written) = mask[j] != 0, kept
  /// values packed in order; false when a kept value is non-finite.
  bool (*bitmask_row)(const float* w, const std::uint8_t* m, index_t n, std::uint64_t* bits, float* values,
                      index_t room);
  /// Largest |w| over kept (mask != 0) entries; false when one of them is non-finite.
  bool (*kept_peak)(const float* w, const std::uint8_t* m, index_t n, float* peak);
  /// out[j] = w[j] != 0 (as 0/1 bytes).
  void (*nonzero_bytes)(const float* w, index_t n, std::uint8_t* out);
  /// Bit j of nz (words of 64) = OR over y < r of m[y * stride + j] != 0; *max_byte as above.
  void (*or_rows_bits)(const std::uint8_t* m, index_t stride, index_t r, index_t n, std::uint64_t* nz,
                       unsigned* max_byte);
  /// flags (bit bc, zeroed first) = any of bits [bc * c, bc * c + c) of nz, for bc < cols / c.
  void (*block_flags)(const std::uint64_t* nz, index_t cols, index_t c, std::uint64_t* flags);
  /// Copies the listed r x c blocks (block columns kept[0..count)) of one block row, masked
  /// entries as 0; false when a kept weight is non-finite.
  /// `stream`: the output is large (far beyond the caches) and 64-byte aligned; a path may
  /// write it with non-temporal stores (no read-for-ownership of lines it overwrites whole).
  bool (*bsr_copy)(const float* w, index_t ws, const std::uint8_t* m, index_t ms, index_t r, index_t c,
                   const std::uint32_t* kept, index_t count, float* out, bool stream);
  /// One N:M row (M in {2, 4, 8}); false on an invalid mask byte, an over-full group or a
  /// kept non-finite weight.
  bool (*nm_row)(const float* w, const std::uint8_t* m, index_t cols, const nm_table& t, float* values,
                 std::uint16_t* meta, index_t room, bool stream);
};

// ---------------------------------------------------------------- generic (portable C++)
namespace generic {

inline index_t mask_count(const std::uint8_t* m, index_t n, unsigned* max_byte) {
  index_t sum = 0;
  unsigned mx = 0;
  for (index_t j = 0; j < n; ++j) {
    sum += m[j];
    mx |= m[j];  // OR, not max: only "> 1" matters to the caller
  }
  *max_byte = mx;
  return sum;
}

inline index_t nonzero_count(const float* w, index_t n) {
  index_t sum = 0;
  for (index_t j = 0; j < n; ++j) sum += w[j] != 0.0f ? 1 : 0;
  return sum;
}

template <int V, class Idx>
bool csr_fill(const csr_row& r) {
  Idx* cols = static_cast<Idx*>(r.cols);
  bool ok = true;
  index_t k = 0;
  for (index_t j = 0; j < r.n; ++j) {
    const bool keep = r.mask != nullptr ? r.mask[j] != 0 : r.w[j] != 0.0f;
    if (!keep) continue;
    cols[k] = static_cast<Idx>(j);
    if constexpr (V == static_cast<int>(csr_value::f32)) {
      ok &= std::isfinite(r.w[j]);
      static_cast<float*>(r.values)[k] = r.w[j];
    } else if constexpr (V == static_cast<int>(csr_value::q8)) {
      const float q = std::nearbyint(r.w[j] / r.scale);
      static_cast<std::int8_t*>(r.values)[k] = static_cast<std::int8_t>(q < -127.0f ? -127.0f : q > 127.0f ? 127.0f : q);
    } else {
      ok &= r.bytes[j] < r.limit;
      static_cast<std::uint8_t*>(r.values)[k] = r.bytes[j];
    }
    ++k;
  }
  return ok;
}

inline bool bitmask_row(const float* w, const std::uint8_t* m, index_t n, std::uint64_t* bits, float* values,
                        index_t /*room*/) {
  bool ok = true;
  index_t k = 0;
  for (index_t i = 0; i < (n + 63) / 64; ++i) bits[i] = 0;
  for (index_t j = 0; j < n; ++j)
    if (m[j] != 0) {
      bits[j / 64] |= std::uint64_t{1} << (j % 64);
      ok &= std::isfinite(w[j]);
      values[k++] = w[j];
    }
  return ok;
}

inline bool kept_peak(const float* w, const std::uint8_t* m, index_t n, float* peak) {
  float p = 0.0f;
  bool ok = true;
  for (index_t j = 0; j < n; ++j)
    if (m[j] != 0) {
      ok &= std::isfinite(w[j]);
      p = std::max(p, std::abs(w[j]));
    }
  *peak = p;
  return ok;
}

inline void nonzero_bytes(const float* w, index_t n, std::uint8_t* out) {
  for (index_t j = 0; j < n; ++j) out[j] = w[j] != 0.0f ? 1 : 0;
}

inline void or_rows_bits(const std::uint8_t* m, index_t stride, index_t r, index_t n, std::uint64_t* nz,
                         unsigned* max_byte) {
  unsigned mx = 0;
  for (index_t w = 0; w < (n + 63) / 64; ++w) nz[w] = 0;
  for (index_t j = 0; j < n; ++j) {
    unsigned any = 0;
    for (index_t y = 0; y < r; ++y) any |= m[y * stride + j];
    mx |= any;
    if (any != 0) nz[j / 64] |= std::uint64_t{1} << (j % 64);
  }
  *max_byte = mx;
}

/// Any bit set in [pos, pos + c) of the bit array nz.
inline bool any_bit(const std::uint64_t* nz, index_t pos, index_t c) {
  std::uint64_t any = 0;
  for (index_t p = pos; p < pos + c;) {  // up to 64 - p % 64 bits at a time
    const index_t off = p % 64, take = std::min<index_t>(64 - off, pos + c - p);
    const std::uint64_t bits = nz[p / 64] >> off;
    any |= take == 64 ? bits : bits & ((std::uint64_t{1} << take) - 1);
    p += take;
  }
  return any != 0;
}

inline void block_flags(const std::uint64_t* nz, index_t cols, index_t c, std::uint64_t* flags) {
  const index_t bcols = cols / c;
  for (index_t k = 0; k < (bcols + 63) / 64; ++k) flags[k] = 0;
  for (index_t bc = 0; bc < bcols; ++bc)
    flags[bc / 64] |= static_cast<std::uint64_t>(any_bit(nz, bc * c, c)) << (bc % 64);
}

inline bool bsr_copy(const float* w, index_t ws, const std::uint8_t* m, index_t ms, index_t r, index_t c,
                     const std::uint32_t* kept, index_t count, float* out, bool /*stream*/) {
  bool ok = true;
  for (index_t t = 0; t < count; ++t) {
    const index_t x0 = static_cast<index_t>(kept[t]) * c;
    for (index_t y = 0; y < r; ++y)
      for (index_t x = 0; x < c; ++x) {
        const bool on = m[y * ms + x0 + x] != 0;
        const float v = w[y * ws + x0 + x];
        ok &= !on || std::isfinite(v);
        *out++ = on ? v : 0.0f;
      }
  }
  return ok;
}

inline bool nm_row(const float* w, const std::uint8_t* m, index_t cols, const nm_table& t, float* values,
                   std::uint16_t* meta, index_t /*room*/, bool /*stream*/) {
  bool ok = true;
  std::uint64_t acc = 0;
  int nacc = 0;
  index_t k = 0;
  for (index_t j = 0; j < cols; j += 8) {
    const index_t len = std::min<index_t>(8, cols - j);  // a whole number of groups
    unsigned b = 0, mx = 0;
    for (index_t l = 0; l < len; ++l) {
      b |= (m[j + l] != 0 ? 1u : 0u) << l;
      mx |= m[j + l];
    }
    const auto& e = t.e[b];
    ok &= mx <= 1 && e.valid != 0;
    const index_t count = len / t.m * t.n;
    for (index_t s = 0; s < count; ++s) {
      const auto lane = static_cast<index_t>((e.lanes >> (8 * s)) & 0xFF);
      const bool on = ((b >> lane) & 1u) != 0;
      ok &= !on || std::isfinite(w[j + lane]);
      values[k++] = on ? w[j + lane] : 0.0f;
    }
    const int mb = static_cast<int>(count) * t.bits;
    acc |= static_cast<std::uint64_t>(e.meta & ((1u << mb) - 1u)) << nacc;
    nacc += mb;
    while (nacc >= 16) {
      *meta++ = static_cast<std::uint16_t>(acc);
      acc >>= 16;
      nacc -= 16;
    }
  }
  if (nacc > 0) *meta = static_cast<std::uint16_t>(acc);
  return ok;
}

inline const ops k_ops{mask_count,
                       nonzero_count,
                       {{csr_fill<0, std::uint32_t>, csr_fill<0, std::uint16_t>},
                        {csr_fill<1, std::uint32_t>, csr_fill<1, std::uint16_t>},
                        {csr_fill<2, std::uint32_t>, csr_fill<2, std::uint16_t>}},
                       bitmask_row,
                       kept_peak,
                       nonzero_bytes,
                       or_rows_bits,
                       block_flags,
                       bsr_copy,
                       nm_row};

}  // namespace generic

// ---------------------------------------------------------------- AVX2
#if SHRINK_HAS_X86_PATHS
namespace avx2 {

/// Lanes whose exponent is all ones (Inf or NaN), as 8 bits.
SHRINK_TARGET_AVX2 inline unsigned non_finite_bits(__m256 v) {
  const __m256i e = _mm256_set1_epi32(0x7F800000);
  return static_cast<unsigned>(
      _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(v), e), e))));
}

/// 8 mask bytes as 8 lane masks (all ones where the byte is non-zero).
SHRINK_TARGET_AVX2 inline __m256 lane_mask(__m128i bytes8) {
  return _mm256_castsi256_ps(
      _mm256_xor_si256(_mm256_cmpeq_epi32(_mm256_cvtepu8_epi32(bytes8), _mm256_setzero_si256()), _mm256_set1_epi32(-1)));
}

SHRINK_TARGET_AVX2 inline unsigned keep_bits8(__m128i bytes8) {
  return ~static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(bytes8, _mm_setzero_si128()))) & 0xFFu;
}

/// 8 bytes / 8 floats from p, or the first len of them and zeros (never reads past p + len).
SHRINK_TARGET_AVX2 inline __m128i load_bytes8(const std::uint8_t* p, index_t len) {
  if (len >= 8) return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  alignas(16) std::uint8_t t[16] = {};
  std::memcpy(t, p, static_cast<std::size_t>(len));
  return _mm_load_si128(reinterpret_cast<const __m128i*>(t));
}
SHRINK_TARGET_AVX2 inline __m256 load_floats8(const float* p, index_t len) {
  if (len >= 8) return _mm256_loadu_ps(p);
  alignas(32) float t[8] = {};
  std::memcpy(t, p, sizeof(float) * static_cast<std::size_t>(len));
  return _mm256_load_ps(t);
}

SHRINK_TARGET_AVX2 inline index_t mask_count(const std::uint8_t* m, index_t n, unsigned* max_byte) {
  __m256i sum = _mm256_setzero_si256(), mx = _mm256_setzero_si256();
  index_t j = 0;
  for (; j + 32 <= n; j += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + j));
    sum = _mm256_add_epi64(sum, _mm256_sad_epu8(v, _mm256_setzero_si256()));
    mx = _mm256_or_si256(mx, v);
  }
  alignas(32) std::uint64_t s[4];
  alignas(32) std::uint8_t b[32];
  _mm256_store_si256(reinterpret_cast<__m256i*>(s), sum);
  _mm256_store_si256(reinterpret_cast<__m256i*>(b), mx);
  index_t total = static_cast<index_t>(s[0] + s[1] + s[2] + s[3]);
  unsigned o = 0;
  for (std::uint8_t x : b) o |= x;
  for (; j < n; ++j) {
    total += m[j];
    o |= m[j];
  }
  *max_byte = o;
  return total;
}

SHRINK_TARGET_AVX2 inline index_t nonzero_count(const float* w, index_t n) {
  index_t total = 0;
  index_t j = 0;
  for (; j + 8 <= n; j += 8)
    total += std::popcount(static_cast<unsigned>(
        _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(w + j), _mm256_setzero_ps(), _CMP_NEQ_UQ))));
  for (; j < n; ++j) total += w[j] != 0.0f ? 1 : 0;
  return total;
}

/// Compresses 8 lanes (keep bits b) of one CSR row chunk starting at column j.
/// w and bytes point at the chunk's first column (either may be unused by V).
template <int V, class Idx>
SHRINK_TARGET_AVX2 inline void csr_chunk(const float* w, const std::uint8_t* bytes, unsigned b, index_t j, float scale,
                                         void* values, Idx* cols, index_t k, bool fits, unsigned& bad,
                                         __m128i& kept_max, __m128i keep_bytes) {
  const __m128i lanes8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(&k_compress_lanes[b]));
  const int cnt = std::popcount(b);
  // column indices
  if constexpr (sizeof(Idx) == 2) {
    const __m128i idx = _mm_add_epi16(_mm_cvtepu8_epi16(lanes8), _mm_set1_epi16(static_cast<short>(j)));
    if (fits)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(cols + k), idx);
    else {
      alignas(16) Idx tmp[8];
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp), idx);
      if (cnt > 0) std::memcpy(cols + k, tmp, sizeof(Idx) * static_cast<std::size_t>(cnt));
    }
  } else {
    const __m256i idx = _mm256_add_epi32(_mm256_cvtepu8_epi32(lanes8), _mm256_set1_epi32(static_cast<int>(j)));
    if (fits)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(cols + k), idx);
    else {
      alignas(32) Idx tmp[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), idx);
      if (cnt > 0) std::memcpy(cols + k, tmp, sizeof(Idx) * static_cast<std::size_t>(cnt));
    }
  }
  if constexpr (V == static_cast<int>(csr_value::f32)) {
    const __m256 v = _mm256_loadu_ps(w);
    bad |= non_finite_bits(v) & b;
    const __m256 p = _mm256_permutevar8x32_ps(v, _mm256_cvtepu8_epi32(lanes8));
    float* out = static_cast<float*>(values) + k;
    if (fits)
      _mm256_storeu_ps(out, p);
    else {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, p);
      if (cnt > 0) std::memcpy(out, tmp, sizeof(float) * static_cast<std::size_t>(cnt));
    }
  } else if constexpr (V == static_cast<int>(csr_value::q8)) {
    // Exactly the reference: a true division (not a reciprocal product), nearbyint in the
    // current rounding mode, clamp to [-127, 127].
    __m256 q = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(w), _mm256_set1_ps(scale)), _MM_FROUND_CUR_DIRECTION);
    q = _mm256_min_ps(_mm256_max_ps(q, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    const __m256i p = _mm256_permutevar8x32_epi32(_mm256_cvtps_epi32(q), _mm256_cvtepu8_epi32(lanes8));
    const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    const __m128i p8 = _mm_packs_epi16(p16, p16);
    auto* out = static_cast<std::int8_t*>(values) + k;
    if (fits)
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out), p8);
    else {
      alignas(16) std::int8_t tmp[16];
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp), p8);
      if (cnt > 0) std::memcpy(out, tmp, static_cast<std::size_t>(cnt));
    }
  } else {
    const __m128i src = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes));
    kept_max = _mm_max_epu8(kept_max, _mm_and_si128(src, keep_bytes));
    const __m128i p8 = _mm_shuffle_epi8(src, lanes8);
    auto* out = static_cast<std::uint8_t*>(values) + k;
    if (fits)
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out), p8);
    else {
      alignas(16) std::uint8_t tmp[16];
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp), p8);
      if (cnt > 0) std::memcpy(out, tmp, static_cast<std::size_t>(cnt));
    }
  }
}

template <int V, class Idx>
SHRINK_TARGET_AVX2 bool csr_fill(const csr_row& r) {
  Idx* cols = static_cast<Idx*>(r.cols);
  unsigned bad = 0;
  __m128i kept_max = _mm_setzero_si128();
  index_t k = 0, j = 0;
  for (; j + 8 <= r.n; j += 8) {
    unsigned b;
    __m128i keep_bytes = _mm_setzero_si128();
    if (r.mask != nullptr) {
      const __m128i mb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(r.mask + j));
      keep_bytes = _mm_xor_si128(_mm_cmpeq_epi8(mb, _mm_setzero_si128()), _mm_set1_epi8(-1));
      b = static_cast<unsigned>(_mm_movemask_epi8(keep_bytes)) & 0xFFu;
    } else {
      b = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(r.w + j), _mm256_setzero_ps(), _CMP_NEQ_UQ)));
    }
    csr_chunk<V, Idx>(r.w != nullptr ? r.w + j : nullptr, r.bytes != nullptr ? r.bytes + j : nullptr, b, j, r.scale,
                      r.values, cols, k, k + 8 <= r.room, bad, kept_max, keep_bytes);
    k += std::popcount(b);
  }
  if (j < r.n) {  // the last n % 8 columns through zero-padded copies (padding is never kept)
    const index_t len = r.n - j;
    alignas(32) float wt[8] = {};
    alignas(16) std::uint8_t mt[16] = {}, bt[16] = {};
    if (r.w != nullptr) std::memcpy(wt, r.w + j, sizeof(float) * static_cast<std::size_t>(len));
    if (r.bytes != nullptr) std::memcpy(bt, r.bytes + j, static_cast<std::size_t>(len));
    unsigned b;
    __m128i keep_bytes = _mm_setzero_si128();
    if (r.mask != nullptr) {
      std::memcpy(mt, r.mask + j, static_cast<std::size_t>(len));
      const __m128i mb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(mt));
      keep_bytes = _mm_xor_si128(_mm_cmpeq_epi8(mb, _mm_setzero_si128()), _mm_set1_epi8(-1));
      b = static_cast<unsigned>(_mm_movemask_epi8(keep_bytes)) & 0xFFu;
    } else {
      b = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_load_ps(wt), _mm256_setzero_ps(), _CMP_NEQ_UQ)));
    }
    csr_chunk<V, Idx>(wt, bt, b, j, r.scale, r.values, cols, k, k + 8 <= r.room, bad, kept_max, keep_bytes);
  }
  if constexpr (V == static_cast<int>(csr_value::byte)) {
    alignas(16) std::uint8_t mx[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(mx), kept_max);
    for (std::uint8_t x : mx)
      if (x >= r.limit) return false;
  }
  return bad == 0;
}

SHRINK_TARGET_AVX2 inline bool bitmask_row(const float* w, const std::uint8_t* m, index_t n, std::uint64_t* bits,
                                           float* values, index_t room) {
  unsigned bad = 0;
  index_t k = 0;
  std::uint64_t word = 0;
  for (index_t j = 0; j < n; j += 8) {
    const index_t len = std::min<index_t>(8, n - j);
    const __m128i mb = load_bytes8(m + j, len);  // zero-padded past n: never kept
    const __m256 v = load_floats8(w + j, len);
    const unsigned b = keep_bits8(mb);
    bad |= non_finite_bits(v) & b;
    word |= static_cast<std::uint64_t>(b) << (j % 64);
    if (j % 64 == 56 || j + 8 >= n) {
      bits[j / 64] = word;
      word = 0;
    }
    const __m256 p = _mm256_permutevar8x32_ps(
        v, _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(&k_compress_lanes[b]))));
    const int cnt = std::popcount(b);
    if (k + 8 <= room) {
      _mm256_storeu_ps(values + k, p);
    } else if (cnt > 0) {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, p);
      std::memcpy(values + k, tmp, sizeof(float) * static_cast<std::size_t>(cnt));
    }
    k += cnt;
  }
  return bad == 0;
}

SHRINK_TARGET_AVX2 inline bool kept_peak(const float* w, const std::uint8_t* m, index_t n, float* peak) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 p = _mm256_setzero_ps();
  unsigned bad = 0;
  index_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m128i mb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(m + j));
    const __m256 v = _mm256_loadu_ps(w + j);
    bad |= non_finite_bits(v) & keep_bits8(mb);
    p = _mm256_max_ps(p, _mm256_and_ps(_mm256_and_ps(v, abs_mask), lane_mask(mb)));
  }
  alignas(32) float l[8];
  _mm256_store_ps(l, p);
  float r = 0.0f;
  for (float x : l) r = std::max(r, x);
  for (; j < n; ++j)
    if (m[j] != 0) {
      if (!std::isfinite(w[j])) bad = 1;
      r = std::max(r, std::abs(w[j]));
    }
  *peak = r;
  return bad == 0;
}

SHRINK_TARGET_AVX2 inline void nonzero_bytes(const float* w, index_t n, std::uint8_t* out) {
  index_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const unsigned b = static_cast<unsigned>(
        _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(w + j), _mm256_setzero_ps(), _CMP_NEQ_UQ)));
    // spread 8 bits into 8 bytes of 0/1
    const std::uint64_t spread = _pdep_u64(b, 0x0101010101010101ull);
    std::memcpy(out + j, &spread, 8);
  }
  for (; j < n; ++j) out[j] = w[j] != 0.0f ? 1 : 0;
}

SHRINK_TARGET_AVX2 inline void or_rows_bits(const std::uint8_t* m, index_t stride, index_t r, index_t n,
                                            std::uint64_t* nz, unsigned* max_byte) {
  for (index_t w = 0; w < (n + 63) / 64; ++w) nz[w] = 0;
  __m256i mx = _mm256_setzero_si256();
  index_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m256i acc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + j));
    for (index_t y = 1; y < r; ++y)
      acc = _mm256_or_si256(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + y * stride + j)));
    mx = _mm256_or_si256(mx, acc);
    const auto bits = ~static_cast<std::uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(acc, _mm256_setzero_si256())));
    nz[j / 64] |= static_cast<std::uint64_t>(bits) << (j % 64);
  }
  alignas(32) std::uint8_t b[32];
  _mm256_store_si256(reinterpret_cast<__m256i*>(b), mx);
  unsigned o = 0;
  for (std::uint8_t x : b) o |= x;
  for (; j < n; ++j) {
    unsigned any = 0;
    for (index_t y = 0; y < r; ++y) any |= m[y * stride + j];
    o |= any;
    if (any != 0) nz[j / 64] |= std::uint64_t{1} << (j % 64);
  }
  *max_byte = o;
}

/// For c a power of two up to 64, each 64-bit word of nz gives 64 / c flags: OR the c bits of
/// each run into its lowest bit (log2 c shift-ors), then pext gathers those bits.
SHRINK_TARGET_AVX2 inline void block_flags(const std::uint64_t* nz, index_t cols, index_t c, std::uint64_t* flags) {
  if (c > 64 || (c & (c - 1)) != 0) {
    generic::block_flags(nz, cols, c, flags);
    return;
  }
  const index_t bcols = cols / c, per_word = 64 / c;
  for (index_t k = 0; k < (bcols + 63) / 64; ++k) flags[k] = 0;
  std::uint64_t lowest = 0;  // bit 0 of every run of c
  for (index_t b = 0; b < per_word; ++b) lowest |= std::uint64_t{1} << (b * c);
  for (index_t k = 0; k < (cols + 63) / 64; ++k) {
    std::uint64_t x = nz[k];
    for (index_t s = 1; s < c; s <<= 1) x |= x >> s;
    const std::uint64_t f = _pext_u64(x, lowest);  // bits past cols are zero in nz
    const index_t at = k * per_word;
    flags[at / 64] |= f << (at % 64);
  }
}

template <bool Stream>
SHRINK_TARGET_AVX2 inline bool bsr_copy4(const float* w, index_t ws, const std::uint8_t* m, index_t ms, index_t r,
                                         index_t c, const std::uint32_t* kept, index_t count, float* out) {
  // c % 4 == 0, so every 4-value piece of the output is 16-byte aligned (out is 64-aligned).
  unsigned bad = 0;
  const __m128i e4 = _mm_set1_epi32(0x7F800000);
  if (c == 4 && r % 2 == 0) {
    // Rows y and y + 1 of a 4-wide block are adjacent in the output: one 8-lane step for both
    // (and 32-byte aligned, so the store can be one 256-bit store).
    for (index_t t = 0; t < count; ++t) {
      const index_t x0 = static_cast<index_t>(kept[t]) * 4;
      for (index_t y = 0; y < r; y += 2) {
        const float* wr = w + y * ws + x0;
        const std::uint8_t* mr = m + y * ms + x0;
        std::uint32_t m0, m1;
        std::memcpy(&m0, mr, 4);
        std::memcpy(&m1, mr + ms, 4);
        const __m128i mb = _mm_cvtsi64_si128(static_cast<long long>(m0 | (static_cast<std::uint64_t>(m1) << 32)));
        const __m256 v = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(wr)), _mm_loadu_ps(wr + ws), 1);
        bad |= non_finite_bits(v) & keep_bits8(mb);
        const __m256 kept_v = _mm256_and_ps(v, lane_mask(mb));
        if constexpr (Stream)
          _mm256_stream_ps(out, kept_v);
        else
          _mm256_storeu_ps(out, kept_v);
        out += 8;
      }
    }
    if constexpr (Stream) _mm_sfence();
    return bad == 0;
  }
  for (index_t t = 0; t < count; ++t) {
    const index_t x0 = static_cast<index_t>(kept[t]) * c;
    for (index_t y = 0; y < r; ++y) {
      const float* wr = w + y * ws + x0;
      const std::uint8_t* mr = m + y * ms + x0;
      for (index_t x = 0; x < c; x += 4) {
        std::uint32_t m4;
        std::memcpy(&m4, mr + x, 4);
        const __m128i keep = _mm_xor_si128(
            _mm_cmpeq_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(static_cast<int>(m4))), _mm_setzero_si128()),
            _mm_set1_epi32(-1));
        const __m128 v = _mm_loadu_ps(wr + x);
        const __m128i nf = _mm_cmpeq_epi32(_mm_and_si128(_mm_castps_si128(v), e4), e4);
        bad |= static_cast<unsigned>(_mm_movemask_epi8(_mm_and_si128(nf, keep)));
        if constexpr (Stream)
          _mm_stream_ps(out, _mm_and_ps(v, _mm_castsi128_ps(keep)));
        else
          _mm_storeu_ps(out, _mm_and_ps(v, _mm_castsi128_ps(keep)));
        out += 4;
      }
    }
  }
  if constexpr (Stream) _mm_sfence();
  return bad == 0;
}

/// dst row i (8 floats, dst + i * dst_stride) = column i of the 8 x 8 tile at src.
template <bool Stream>
SHRINK_TARGET_AVX2 inline void transpose8(const float* src, index_t src_stride, float* dst, index_t dst_stride) {
  const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + src_stride),
               r2 = _mm256_loadu_ps(src + 2 * src_stride), r3 = _mm256_loadu_ps(src + 3 * src_stride),
               r4 = _mm256_loadu_ps(src + 4 * src_stride), r5 = _mm256_loadu_ps(src + 5 * src_stride),
               r6 = _mm256_loadu_ps(src + 6 * src_stride), r7 = _mm256_loadu_ps(src + 7 * src_stride);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
               t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE),
               s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE),
               s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE),
               s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  const __m256 d[8] = {_mm256_permute2f128_ps(s0, s4, 0x20), _mm256_permute2f128_ps(s1, s5, 0x20),
                       _mm256_permute2f128_ps(s2, s6, 0x20), _mm256_permute2f128_ps(s3, s7, 0x20),
                       _mm256_permute2f128_ps(s0, s4, 0x31), _mm256_permute2f128_ps(s1, s5, 0x31),
                       _mm256_permute2f128_ps(s2, s6, 0x31), _mm256_permute2f128_ps(s3, s7, 0x31)};
  for (int i = 0; i < 8; ++i) {
    if constexpr (Stream)
      _mm256_stream_ps(dst + i * dst_stride, d[i]);
    else
      _mm256_storeu_ps(dst + i * dst_stride, d[i]);
  }
}

/// r x 1 blocks (r a multiple of 8, at most 32): a block is a column piece, so instead of r
/// strided reads per block, each of the r rows is compressed (vpermps, as in CSR) to the
/// kept columns of a 256-column window, and 8 x 8 transposes turn those r short rows into
/// the blocks' r values each.
template <bool Stream>
SHRINK_TARGET_AVX2 inline bool bsr_copy_columns(const float* w, index_t ws, const std::uint8_t* m, index_t ms,
                                                index_t r, const std::uint32_t* kept, index_t count, float* out) {
  constexpr index_t k_window = 256, k_pitch = k_window + 8;
  alignas(32) float tmp[32 * k_pitch];  // 33 KiB
  unsigned fb[k_window / 8];
  unsigned bad = 0;
  const index_t ncols = static_cast<index_t>(kept[count - 1]) + 1;
  index_t done = 0;
  for (index_t j0 = 0; j0 < ncols; j0 += k_window) {
    const index_t jn = std::min(k_window, ncols - j0), subs = (jn + 7) / 8;
    std::fill(fb, fb + subs, 0u);
    for (index_t y = 0; y < r; ++y)
      for (index_t sw = 0; sw < subs; ++sw) fb[sw] |= keep_bits8(load_bytes8(m + y * ms + j0 + 8 * sw, jn - 8 * sw));
    index_t nk = 0;
    for (index_t y = 0; y < r; ++y) {
      float* row = tmp + y * k_pitch;
      index_t k = 0;
      // The r rows are r concurrent streams, too many for the hardware prefetcher: fetch the
      // next window of this row while compressing this one.
      if (j0 + 2 * k_window <= ncols) {
        for (index_t p = 0; p < k_window; p += 16) _mm_prefetch(reinterpret_cast<const char*>(w + y * ws + j0 + k_window + p), _MM_HINT_T0);
        for (index_t p = 0; p < k_window; p += 64) _mm_prefetch(reinterpret_cast<const char*>(m + y * ms + j0 + k_window + p), _MM_HINT_T0);
      }
      for (index_t sw = 0; sw < subs; ++sw) {
        const __m128i mb = load_bytes8(m + y * ms + j0 + 8 * sw, jn - 8 * sw);
        const __m256 v = load_floats8(w + y * ws + j0 + 8 * sw, jn - 8 * sw);
        bad |= non_finite_bits(v) & keep_bits8(mb);
        const __m128i lanes8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(&k_compress_lanes[fb[sw]]));
        _mm256_storeu_ps(row + k, _mm256_permutevar8x32_ps(_mm256_and_ps(v, lane_mask(mb)), _mm256_cvtepu8_epi32(lanes8)));
        k += std::popcount(fb[sw]);
      }
      nk = k;
    }
    index_t t = 0;
    for (; t + 8 <= nk; t += 8)
      for (index_t y0 = 0; y0 < r; y0 += 8) transpose8<Stream>(tmp + y0 * k_pitch + t, k_pitch, out + (done + t) * r + y0, r);
    for (; t < nk; ++t)
      for (index_t y = 0; y < r; ++y) out[(done + t) * r + y] = tmp[y * k_pitch + t];
    done += nk;
  }
  if constexpr (Stream) _mm_sfence();
  return bad == 0;
}

SHRINK_TARGET_AVX2 inline bool bsr_copy(const float* w, index_t ws, const std::uint8_t* m, index_t ms, index_t r,
                                        index_t c, const std::uint32_t* kept, index_t count, float* out,
                                        bool stream) {
  unsigned bad = 0;
  if (count == 0) return true;
  if (c == 1 && r % 8 == 0 && r <= 32) {
    if (stream && reinterpret_cast<std::uintptr_t>(out) % 32 == 0)
      return bsr_copy_columns<true>(w, ws, m, ms, r, kept, count, out);
    return bsr_copy_columns<false>(w, ws, m, ms, r, kept, count, out);
  }
  if (c % 4 == 0 && stream && reinterpret_cast<std::uintptr_t>(out) % 32 == 0)
    return bsr_copy4<true>(w, ws, m, ms, r, c, kept, count, out);
  if (c == 4 && r % 2 == 0) return bsr_copy4<false>(w, ws, m, ms, r, c, kept, count, out);
  if (c % 4 == 0) {
    const __m128i e4 = _mm_set1_epi32(0x7F800000);
    for (index_t t = 0; t < count; ++t) {
      const index_t x0 = static_cast<index_t>(kept[t]) * c;
      for (index_t y = 0; y < r; ++y) {
        const float* wr = w + y * ws + x0;
        const std::uint8_t* mr = m + y * ms + x0;
        index_t x = 0;
        for (; x + 8 <= c; x += 8) {
          const __m128i mb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(mr + x));
          const __m256 v = _mm256_loadu_ps(wr + x);
          bad |= non_finite_bits(v) & keep_bits8(mb);
          _mm256_storeu_ps(out, _mm256_and_ps(v, lane_mask(mb)));
          out += 8;
        }
        for (; x < c; x += 4) {
          std::uint32_t m4;
          std::memcpy(&m4, mr + x, 4);
          const __m128i keep = _mm_xor_si128(
              _mm_cmpeq_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(static_cast<int>(m4))), _mm_setzero_si128()),
              _mm_set1_epi32(-1));
          const __m128 v = _mm_loadu_ps(wr + x);
          const __m128i nf = _mm_cmpeq_epi32(_mm_and_si128(_mm_castps_si128(v), e4), e4);
          bad |= static_cast<unsigned>(_mm_movemask_epi8(_mm_and_si128(nf, keep)));
          _mm_storeu_ps(out, _mm_and_ps(v, _mm_castsi128_ps(keep)));
          out += 4;
        }
      }
    }
    return bad == 0;
  }
  // Other widths (c = 1, 2, 3, 5, ...): element by element, branch-free.
  for (index_t t = 0; t < count; ++t) {
    const index_t x0 = static_cast<index_t>(kept[t]) * c;
    for (index_t y = 0; y < r; ++y) {
      const float* wr = w + y * ws + x0;
      const std::uint8_t* mr = m + y * ms + x0;
      for (index_t x = 0; x < c; ++x) {
        std::uint32_t bitsv;
        std::memcpy(&bitsv, wr + x, 4);
        const std::uint32_t on = mr[x] != 0 ? 0xFFFFFFFFu : 0u;
        bad |= on & static_cast<std::uint32_t>((bitsv & 0x7F800000u) == 0x7F800000u);
        bitsv &= on;
        std::memcpy(out++, &bitsv, 4);
      }
    }
  }
  return bad == 0;
}

struct nm_state {
  unsigned bad = 0, valid = 1;
  __m128i mx;
  std::uint64_t acc = 0;
  int nacc = 0;
  index_t k = 0;
  std::uint16_t* meta;
};

/// One chunk of 8 lanes (8 / M groups): `count` values and `meta_bits` metadata bits are kept
/// (fewer than the full chunk for the zero-padded tail of a row).
template <bool Stream4 = false>
SHRINK_TARGET_AVX2 inline void nm_chunk(nm_state& s, const float* wp, const std::uint8_t* mp, const nm_table& t,
                                        float* values, index_t room, index_t count, int meta_bits) {
  const __m128i mb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(mp));
  s.mx = _mm_or_si128(s.mx, mb);
  const unsigned b = keep_bits8(mb);
  const auto& e = t.e[b];
  s.valid &= e.valid;
  const __m256 v = _mm256_loadu_ps(wp);
  s.bad |= non_finite_bits(v) & b;
  // masked-out lanes become 0 first, so the padding positions a short group stores read 0
  const __m256 p = _mm256_permutevar8x32_ps(
      _mm256_and_ps(v, lane_mask(mb)), _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(&e.lanes))));
  if constexpr (Stream4) {  // 4 values per chunk, 16-byte aligned: a non-temporal store
    _mm_stream_ps(values + s.k, _mm256_castps256_ps128(p));
  } else if (s.k + 8 <= room) {
    _mm256_storeu_ps(values + s.k, p);
  } else {
    alignas(32) float tmp[8];
    _mm256_store_ps(tmp, p);
    std::memcpy(values + s.k, tmp, sizeof(float) * static_cast<std::size_t>(count));
  }
  s.k += count;
  s.acc |= static_cast<std::uint64_t>(e.meta & ((std::uint64_t{1} << meta_bits) - 1)) << s.nacc;
  s.nacc += meta_bits;
  while (s.nacc >= 16) {
    *s.meta++ = static_cast<std::uint16_t>(s.acc);
    s.acc >>= 16;
    s.nacc -= 16;
  }
}

SHRINK_TARGET_AVX2 inline bool nm_row(const float* w, const std::uint8_t* m, index_t cols, const nm_table& t,
                                      float* values, std::uint16_t* meta, index_t room, bool stream) {
  nm_state s;
  s.mx = _mm_setzero_si128();
  s.meta = meta;
  index_t j = 0;
  if (stream && t.per8 == 4 && reinterpret_cast<std::uintptr_t>(values) % 16 == 0) {  // 2:4, 4:8, 1:2
    for (; j + 8 <= cols; j += 8) nm_chunk<true>(s, w + j, m + j, t, values, room, 4, t.meta_bits);
    _mm_sfence();
  }
  for (; j + 8 <= cols; j += 8) nm_chunk(s, w + j, m + j, t, values, room, t.per8, t.meta_bits);
  if (j < cols) {
    const index_t len = cols - j;  // a whole number of groups (M divides cols)
    alignas(32) float wt[8] = {};
    alignas(16) std::uint8_t mt[16] = {};
    std::memcpy(wt, w + j, sizeof(float) * static_cast<std::size_t>(len));
    std::memcpy(mt, m + j, static_cast<std::size_t>(len));
    const index_t count = len / t.m * t.n;
    nm_chunk(s, wt, mt, t, values, room, count, static_cast<int>(count) * t.bits);
  }
  if (s.nacc > 0) *s.meta = static_cast<std::uint16_t>(s.acc);
  alignas(16) std::uint8_t o[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(o), s.mx);
  unsigned ob = 0;
  for (std::uint8_t x : o) ob |= x;
  return s.bad == 0 && s.valid != 0 && ob <= 1;
}

inline const ops k_ops{mask_count,
                       nonzero_count,
                       {{csr_fill<0, std::uint32_t>, csr_fill<0, std::uint16_t>},
                        {csr_fill<1, std::uint32_t>, csr_fill<1, std::uint16_t>},
                        {csr_fill<2, std::uint32_t>, csr_fill<2, std::uint16_t>}},
                       bitmask_row,
                       kept_peak,
                       nonzero_bytes,
                       or_rows_bits,
                       block_flags,
                       bsr_copy,
                       nm_row};

}  // namespace avx2
#endif

/// The implementations; `reference` is null: the format runs its own element loops.
inline const std::array<kernels::implementation<const ops*>, SHRINK_HAS_X86_PATHS ? 3 : 2> k_impls{{
    {kernels::isa::reference, 0, nullptr},
    {kernels::isa::generic, 0, &generic::k_ops},
#if SHRINK_HAS_X86_PATHS
    {kernels::isa::avx2, 0, &avx2::k_ops},
#endif
}};

/// How many conversions a fast path handed back to the reference (bad input, or a shape it
/// does not take after all). Tests read it to prove valid inputs never take the slow road.
inline std::atomic<std::uint64_t>& fallbacks() noexcept {
  static std::atomic<std::uint64_t> count{0};
  return count;
}

/// Outputs of at least this many bytes (default 32 MiB, beyond the last-level cache) are
/// written with non-temporal stores where a path can. Tests lower it to cover those stores.
inline std::atomic<std::size_t>& stream_min_bytes() noexcept {
  static std::atomic<std::size_t> bytes{std::size_t{32} << 20};
  return bytes;
}

/// The fast path for the selected ISA, or null for the reference loops.
inline const ops* selected() { return kernels::select(k_impls); }

}  // namespace shrink::sparse::convert_impl
