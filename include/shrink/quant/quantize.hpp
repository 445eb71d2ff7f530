// quantize.hpp: quantize / dequantize a float tensor under a scheme x granularity x rounding, with min-max or given parameters.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"
#include "../kernels/dispatch.hpp"
#include "quantized.hpp"
#include "scheme.hpp"

namespace shrink::quant {

/// A quantizer: scheme x granularity x rounding (+ the seed of stochastic rounding and what
/// to do with NaN/Inf). Plain fields; the defaults are PyTorch's qint8 symmetric per tensor.
struct options {
  scheme quant_scheme = k_qint8_symmetric;
  granularity quant_granularity = granularity::per_tensor();
  rounding round = rounding::half_even;
  std::uint64_t seed = 0;
  non_finite_policy non_finite = non_finite_policy::error;
};

namespace detail {

/// Observed range of a run of values; `bad` is the offset of the first non-finite value or -1.
struct run_range {
  float min = std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();
  index_t bad = -1;
};

// ---- per-path row operations -------------------------------------------------------------
// range: min/max of n floats (non-finite values are skipped, the first one's offset reported).
// encode: fields[i] = low 8 bits of saturate(round_half_even(x[i] / scale) + zp), inputs finite.
// pack4: out[j] = (f[2j] & 15) | (f[2j+1] & 15) << 4, n even or odd.
struct row_ops {
  run_range (*range)(const float* x, index_t n);
  void (*encode)(const float* x, index_t n, params p, int qmin, int qmax, std::uint8_t* fields);
  void (*pack4)(const std::uint8_t* fields, index_t n, std::uint8_t* out);
};

inline run_range range_reference(const float* x, index_t n) {
  run_range r;
  for (index_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (!std::isfinite(v)) {
      if (r.bad < 0) r.bad = i;
      continue;
    }
    r.min = std::min(r.min, v);
    r.max = std::max(r.max, v);
  }
  return r;
}

inline void encode_reference(const float* x, index_t n, params p, int qmin, int qmax, std::uint8_t* fields) {
  const float lo = static_cast<float>(qmin - p.zero_point), hi = static_cast<float>(qmax - p.zero_point);
  for (index_t i = 0; i < n; ++i) {
    float v = x[i] / p.scale;
    v = v < lo ? lo : (v > hi ? hi : v);
    fields[i] = static_cast<std::uint8_t>(static_cast<std::int32_t>(std::nearbyint(v)) + p.zero_point);
  }
}

inline void pack4_reference(const std::uint8_t* f, index_t n, std::uint8_t* out) {
  index_t j = 0;
  for (; j + 1 < n; j += 2) out[j / 2] = static_cast<std::uint8_t>((f[j] & 15u) | ((f[j + 1] & 15u) << 4));
  if (j < n) out[j / 2] = static_cast<std::uint8_t>(f[j] & 15u);
}

inline constexpr row_ops k_reference_ops{range_reference, encode_reference, pack4_reference};

#if SHRINK_HAS_X86_PATHS
SHRINK_TARGET_AVX2 inline run_range range_avx2(const float* x, index_t n) {
  __m256 lo = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  __m256 hi = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 poison = _mm256_setzero_ps();  // stays 0 unless some x*0 is NaN (x is Inf or NaN)
  const __m256 zero = _mm256_setzero_ps();
  index_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    lo = _mm256_min_ps(lo, _mm256_min_ps(a, b));
    hi = _mm256_max_ps(hi, _mm256_max_ps(a, b));
    poison = _mm256_fmadd_ps(a, zero, _mm256_fmadd_ps(b, zero, poison));
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_loadu_ps(x + i);
    lo = _mm256_min_ps(lo, a);
    hi = _mm256_max_ps(hi, a);
    poison = _mm256_fmadd_ps(a, zero, poison);
  }
  alignas(32) float l[8], h[8], p[8];
  _mm256_store_ps(l, lo);
  _mm256_store_ps(h, hi);
  _mm256_store_ps(p, poison);
  bool clean = true;
  for (int k = 0; k < 8; ++k) clean = clean && p[k] == 0.0f;
  if (!clean) return range_reference(x, n);  // rare: let the scalar pass skip and locate the bad value
  run_range r;
  for (int k = 0; k < 8; ++k) {
    r.min = std::min(r.min, l[k]);
    r.max = std::max(r.max, h[k]);
  }
  const run_range tail = range_reference(x + i, n - i);
  r.min = std::min(r.min, tail.min);
  r.max = std::max(r.max, tail.max);
  if (tail.bad >= 0) r.bad = i + tail.bad;
  return r;
}

SHRINK_TARGET_AVX2 inline void encode_avx2(const float* x, index_t n, params p, int qmin, int qmax, std::uint8_t* fields) {
  // Same operations as encode_reference: IEEE division (not a reciprocal multiply), clamp to
  // integer bounds, cvtps2dq under the default MXCSR (round to nearest even), + zero point.
  const __m256 vs = _mm256_set1_ps(p.scale);
  const __m256 vlo = _mm256_set1_ps(static_cast<float>(qmin - p.zero_point));
  const __m256 vhi = _mm256_set1_ps(static_cast<float>(qmax - p.zero_point));
  const __m256i vzp = _mm256_set1_epi32(p.zero_point);
  const __m256i low_byte = _mm256_set1_epi16(0xff);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i q[4];
    for (int k = 0; k < 4; ++k) {
      __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i + 8 * k), vs);
      v = _mm256_min_ps(_mm256_max_ps(v, vlo), vhi);
      q[k] = _mm256_add_epi32(_mm256_cvtps_epi32(v), vzp);
    }
    const __m256i a = _mm256_and_si256(_mm256_packs_epi32(q[0], q[1]), low_byte);
    const __m256i b = _mm256_and_si256(_mm256_packs_epi32(q[2], q[3]), low_byte);
    const __m256i c = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(fields + i), c);
  }
  encode_reference(x + i, n - i, p, qmin, qmax, fields + i);
}

SHRINK_TARGET_AVX2 inline void pack4_avx2(const std::uint8_t* f, index_t n, std::uint8_t* out) {
  const __m256i nibble = _mm256_set1_epi16(0x000f);
  index_t j = 0;
  for (; j + 64 <= n; j += 64) {
    const __m256i f0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(f + j));
    const __m256i f1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(f + j + 32));
    const __m256i w0 = _mm256_or_si256(_mm256_and_si256(f0, nibble),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(f0, 8), nibble), 4));
    const __m256i w1 = _mm256_or_si256(_mm256_and_si256(f1, nibble),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(f1, 8), nibble), 4));
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi16(w0, w1), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j / 2), packed);
  }
  pack4_reference(f + j, n - j, out + j / 2);
}

inline constexpr row_ops k_avx2_ops{range_avx2, encode_avx2, pack4_avx2};
#endif

inline const std::array<kernels::implementation<const row_ops*>, SHRINK_HAS_X86_PATHS ? 2 : 1> k_row_ops{{
    {kernels::isa::reference, 0, &k_reference_ops},
#if SHRINK_HAS_X86_PATHS
    {kernels::isa::avx2, 0, &k_avx2_ops},
#endif
}};

inline void pack_fields(const std::uint8_t* fields, index_t n, int storage_bits, const row_ops& ops, std::uint8_t* out) {
  if (storage_bits == 8) {
    std::copy(fields, fields + n, out);
  } else if (storage_bits == 4) {
    ops.pack4(fields, n, out);
  } else {
    index_t j = 0;
    for (; j + 3 < n; j += 4)
      out[j / 4] = static_cast<std::uint8_t>((fields[j] & 3u) | (fields[j + 1] & 3u) << 2 | (fields[j + 2] & 3u) << 4 |
                                             (fields[j + 3] & 3u) << 6);
    if (j < n) {
      unsigned b = 0;
      for (index_t k = 0; j + k < n; ++k) b |= (fields[j + k] & 3u) << (2 * k);
      out[j / 4] = static_cast<std::uint8_t>(b);
    }
  }
}

/// A granularity with its axis resolved to [0, rank) and checked against the shape.
inline granularity resolve(const granularity& g, const std::vector<index_t>& dims, const char* who) {
  const auto rank = static_cast<index_t>(dims.size());
  granularity r = g;
  switch (g.kind) {
    case granularity_kind::per_tensor: r.axis = 0; r.group_size = 0; break;
    case granularity_kind::per_channel:
      SHRINK_REQUIRE(g.axis >= -rank && g.axis < rank, errc::out_of_range, who, ": axis ", g.axis,
                     " is outside [", -rank, ", ", rank, ") for a rank-", rank, " tensor");
      r.axis = g.axis < 0 ? g.axis + rank : g.axis;
      r.group_size = 0;
      break;
    case granularity_kind::per_group:
      SHRINK_REQUIRE(g.group_size > 0, errc::invalid_argument, who, ": group size must be > 0, got ", g.group_size);
      SHRINK_REQUIRE(g.axis == -1 || g.axis == rank - 1, errc::invalid_argument, who,
                     ": groups run along the last (reduction) axis; axis must be -1 or ", rank - 1, ", got ", g.axis,
                     " (reshape so the reduction axis is last)");
      r.axis = rank - 1;
      break;
  }
  return r;
}

[[noreturn]] inline void raise_non_finite(const char* who, index_t flat, float value) {
  ::shrink::detail::raise(errc::non_finite, who, ": weights must be finite; element ", flat, " is ", value,
                          " (pass non_finite_policy::clamp to saturate Inf and map NaN to zero)");
}

inline void check_params(std::span<const params> p, std::size_t expected, const scheme& s) {
  SHRINK_REQUIRE(p.size() == expected, errc::shape_mismatch, "quantize: ", p.size(), " parameter sets given, this granularity needs ",
                 expected);
  for (std::size_t i = 0; i < p.size(); ++i) {
    SHRINK_REQUIRE(std::isfinite(p[i].scale) && p[i].scale > 0.0f, errc::invalid_argument, "quantize: scale ", i,
                   " must be finite and > 0, got ", p[i].scale);
    SHRINK_REQUIRE(p[i].zero_point >= s.qmin() && p[i].zero_point <= s.qmax(), errc::out_of_range, "quantize: zero point ", i,
                   " = ", p[i].zero_point, " is outside [", s.qmin(), ", ", s.qmax(), "]");
  }
}

/// The engine: contiguous row-major data, dims, resolved granularity; `given` empty means
/// min-max parameters (fused with encoding where a parameter's elements are contiguous).
inline quantized quantize_contiguous(const float* data, std::vector<index_t> dims, const options& o, std::span<const params> given) {
  const char* who = "quantize";
  const scheme s = o.quant_scheme;
  s.validate(who);
  const granularity g = resolve(o.quant_granularity, dims, who);
  quantized out(dims, s, g);
  SHRINK_REQUIRE(out.size() > 0, errc::empty_input, who, ": the tensor is empty; expected at least one element");
  const index_t rows = out.rows(), cols = out.cols(), rank = static_cast<index_t>(dims.size());
  const int qmin = s.qmin(), qmax = s.qmax(), sb = s.storage_bits();
  const bool clamp_bad = o.non_finite == non_finite_policy::clamp;
  const row_ops& ops = (o.round == rounding::half_even && !clamp_bad) ? *kernels::select(k_row_ops) : k_reference_ops;
  auto scales = out.scales();
  auto zps = out.zero_points();
  const auto n_params = scales.size();

  if (!given.empty()) {
    check_params(given, n_params, s);
    for (std::size_t i = 0; i < n_params; ++i) { scales[i] = given[i].scale; zps[i] = given[i].zero_point; }
    if (!clamp_bad) {
      const run_range r = ops.range(data, out.size());
      if (r.bad >= 0) raise_non_finite(who, r.bad, data[r.bad]);
    }
  }
  auto set_params = [&](std::size_t idx, const run_range& r) {
    const params p = (r.min <= r.max) ? compute_params(r.min, r.max, s) : compute_params(0.0f, 0.0f, s);
    scales[idx] = p.scale;
    zps[idx] = p.zero_point;
  };
  auto merge = [](run_range& into, const run_range& r, index_t offset) {
    into.min = std::min(into.min, r.min);
    into.max = std::max(into.max, r.max);
    if (into.bad < 0 && r.bad >= 0) into.bad = offset + r.bad;
  };

  std::vector<std::uint8_t> fields(static_cast<std::size_t>(cols));
  // Encodes a run of one parameter set into `fields` at column `c0` of row data `x`.
  auto encode_run = [&](const float* x, index_t flat0, index_t n, std::size_t pidx, std::uint8_t* f) {
    const params p{scales[pidx], zps[pidx]};
    if (&ops != &k_reference_ops || (o.round == rounding::half_even && !clamp_bad)) {
      ops.encode(x, n, p, qmin, qmax, f);
      return;
    }
    for (index_t i = 0; i < n; ++i)
      f[i] = static_cast<std::uint8_t>(quantize_value(x[i], p, s, o.round, o.seed, static_cast<std::uint64_t>(flat0 + i)));
  };
  auto emit_row = [&](index_t r) { pack_fields(fields.data(), cols, sb, ops, out.codes().data() + r * out.row_bytes()); };

  if (g.kind == granularity_kind::per_group) {
    const index_t gs = g.group_size, gpr = out.groups_per_row();
    for (index_t r = 0; r < rows; ++r) {
      const float* x = data + r * cols;
      for (index_t k = 0; k < gpr; ++k) {
        const index_t c0 = k * gs, n = std::min(gs, cols - c0);
        const auto pidx = static_cast<std::size_t>(r * gpr + k);
        if (given.empty()) {
          const run_range rr = ops.range(x + c0, n);
          if (rr.bad >= 0 && !clamp_bad) raise_non_finite(who, r * cols + c0 + rr.bad, x[c0 + rr.bad]);
          set_params(pidx, rr);
        }
        encode_run(x + c0, r * cols + c0, n, pidx, fields.data() + c0);
      }
      emit_row(r);
    }
    return out;
  }

  const bool channel_last = g.kind == granularity_kind::per_channel && g.axis == rank - 1;
  if (g.kind == granularity_kind::per_channel && g.axis == 0 && rank >= 2) {
    // Each channel is a contiguous block of rows: observe it, then encode it while it is hot.
    const index_t block_rows = rows / dims[0];
    for (index_t ch = 0; ch < dims[0]; ++ch) {
      const float* x = data + ch * block_rows * cols;
      if (given.empty()) {
        const run_range rr = ops.range(x, block_rows * cols);
        if (rr.bad >= 0 && !clamp_bad) raise_non_finite(who, ch * block_rows * cols + rr.bad, x[rr.bad]);
        set_params(static_cast<std::size_t>(ch), rr);
      }
      for (index_t br = 0; br < block_rows; ++br) {
        const index_t r = ch * block_rows + br;
        encode_run(data + r * cols, r * cols, cols, static_cast<std::size_t>(ch), fields.data());
        emit_row(r);
      }
    }
    return out;
  }

  if (given.empty()) {
    // Two passes: ranges for every parameter set, then encoding.
    std::vector<run_range> ranges(n_params);
    for (index_t r = 0; r < rows; ++r) {
      const float* x = data + r * cols;
      if (channel_last) {
        for (index_t c = 0; c < cols; ++c) {
          const float v = x[c];
          if (!std::isfinite(v)) {
            if (!clamp_bad) raise_non_finite(who, r * cols + c, v);
            continue;
          }
          run_range& into = ranges[static_cast<std::size_t>(c)];
          into.min = std::min(into.min, v);
          into.max = std::max(into.max, v);
        }
      } else {
        const run_range rr = ops.range(x, cols);
        if (rr.bad >= 0 && !clamp_bad) raise_non_finite(who, r * cols + rr.bad, x[rr.bad]);
        merge(ranges[static_cast<std::size_t>(out.param_index(r, 0))], rr, r * cols);
      }
    }
    for (std::size_t i = 0; i < n_params; ++i) set_params(i, ranges[i]);
  }
  for (index_t r = 0; r < rows; ++r) {
    const float* x = data + r * cols;
    if (channel_last) {
      for (index_t c = 0; c < cols; ++c) encode_run(x + c, r * cols + c, 1, static_cast<std::size_t>(c), fields.data() + c);
    } else {
      encode_run(x, r * cols, cols, static_cast<std::size_t>(out.param_index(r, 0)), fields.data());
    }
    emit_row(r);
  }
  return out;
}

template <class T, std::size_t R>
std::vector<index_t> dims_of(const tensor_view<T, R>& x) {
  return std::vector<index_t>(x.shape().dims.begin(), x.shape().dims.end());
}

}  // namespace detail

/// Quantizes `x` with min-max parameters (PyTorch MinMaxObserver / PerChannelMinMaxObserver
/// semantics per parameter set) and encodes it as ONNX QuantizeLinear does. Strided views are
/// copied first. Errors: bits outside [2, 8], an empty tensor, an axis out of range, group
/// size 0, or a NaN/Inf weight (unless options::non_finite is clamp).
template <class T, std::size_t R>
  requires std::is_same_v<std::remove_const_t<T>, float>
quantized quantize(const tensor_view<T, R>& x, const options& o = {}) {
  if (x.is_contiguous() || x.empty()) return detail::quantize_contiguous(x.data(), detail::dims_of(x), o, {});
  const tensor<float, R> copy{tensor_view<const float, R>(x)};
  return detail::quantize_contiguous(copy.data(), detail::dims_of(x), o, {});
}

/// Quantizes with given parameters, one per parameter set of the granularity (from an
/// observer, or a file), in the order quantized::scales() uses.
template <class T, std::size_t R>
  requires std::is_same_v<std::remove_const_t<T>, float>
quantized quantize(const tensor_view<T, R>& x, const options& o, std::span<const params> given) {
  SHRINK_REQUIRE(!given.empty(), errc::invalid_argument, "quantize: no parameters given; expected one per parameter set");
  if (x.is_contiguous() || x.empty()) return detail::quantize_contiguous(x.data(), detail::dims_of(x), o, given);
  const tensor<float, R> copy{tensor_view<const float, R>(x)};
  return detail::quantize_contiguous(copy.data(), detail::dims_of(x), o, given);
}

/// Convenience for a flat span (rank 1).
inline quantized quantize(std::span<const float> x, const options& o = {}) {
  return quantize(tensor_view<const float, 1>(x.data(), shape<1>{x.size()}), o);
}

/// Expands a quantized tensor back to floats, exactly scale * (q - zero_point).
inline std::vector<float> dequantize(const quantized& q) { return q.dequantize(); }

}  // namespace shrink::quant
