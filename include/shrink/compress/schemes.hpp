// schemes.hpp: the storage schemes of format version 1 (int8 per channel, b-bit per group): encode a float tensor into entries, decode entries back.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "../core/aligned_buffer.hpp"
#include "../core/error.hpp"
#include "../io/dtype.hpp"
#include "../io/half.hpp"
#include "format.hpp"

namespace shrink::compress {

/// One safetensors entry produced by encoding.
struct entry {
  std::string name;
  io::dtype type;
  std::vector<std::int64_t> shape;
  aligned_buffer<std::byte> bytes;
};

/// An encoded tensor: its record and the entries it owns.
struct encoded {
  record rec;
  std::vector<entry> entries;
  [[nodiscard]] std::uint64_t bytes() const {
    std::uint64_t n = 0;
    for (const auto& e : entries) n += e.bytes.size();
    return n;
  }
};

/// Options of the schemes (see docs/format.md and docs/tool.md).
struct scheme_options {
  std::string scheme = "int8";  ///< "float" (keep), "int8", "int"
  int bits = 8;                 ///< "int": 2..8
  std::int64_t group = 128;     ///< "int": elements per scale along a row
};

namespace scheme_impl {

template <class T>
aligned_buffer<std::byte> to_bytes(std::span<const T> v) {
  return aligned_buffer<std::byte>(std::as_bytes(v));
}

inline std::vector<std::int64_t> as_2d(const std::vector<std::int64_t>& shape) {
  std::int64_t cols = 1;
  for (std::size_t i = 1; i < shape.size(); ++i) cols *= shape[i];
  return {shape.empty() ? 1 : shape[0], cols};
}

}  // namespace scheme_impl

/// int8, symmetric, per output channel (axis 0), min-max range, round half to even: the
/// exact arithmetic of PyTorch's PerChannelMinMaxObserver(qint8, per_channel_symmetric)
/// followed by quantize_per_channel (docs/format.md, "int8"):
///   amax_c  = max(-min(min_c, 0), max(max_c, 0))
///   scale_c = max(amax_c / 127.5f, FLT_EPSILON)          (127.5 = (127 - (-128)) / 2)
///   q       = clamp(nearbyint(x * (1.0f / scale_c)), -128, 127)
///   x'      = q * scale_c
inline encoded encode_int8(const std::string& name, std::span<const float> x, const std::vector<std::int64_t>& shape,
                           io::dtype original) {
  const auto rc = scheme_impl::as_2d(shape);
  const auto rows = static_cast<std::size_t>(rc[0]), cols = static_cast<std::size_t>(rc[1]);
  SHRINK_REQUIRE(rows * cols == x.size(), errc::shape_mismatch, "encode_int8: '", name, "' has ", x.size(),
                 " values for ", rows, " x ", cols);
  aligned_buffer<std::int8_t> codes(rows * cols);
  aligned_buffer<float> scales(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* row = x.data() + r * cols;
    float lo = 0.0f, hi = 0.0f;
    for (std::size_t c = 0; c < cols; ++c) {
      SHRINK_REQUIRE(std::isfinite(row[c]), errc::non_finite, "encode_int8: '", name, "' holds a non-finite value at row ",
                     r, ", column ", c);
      lo = std::min(lo, row[c]);
      hi = std::max(hi, row[c]);
    }
    const float amax = std::max(-lo, hi);
    const float scale = std::max(amax / 127.5f, std::numeric_limits<float>::epsilon());
    const float inv = 1.0f / scale;
    scales[r] = scale;
    for (std::size_t c = 0; c < cols; ++c) {
      const float q = std::nearbyint(row[c] * inv);
      codes[r * cols + c] = static_cast<std::int8_t>(std::clamp(q, -128.0f, 127.0f));
    }
  }
  encoded e;
  e.rec = {name, "int8", shape, original, 8, 0, 0, io::dtype::f32, {}};
  e.rec.entries = {{"codes", name + ".__q8.codes"}, {"scales", name + ".__q8.scales"}};
  e.entries.push_back({name + ".__q8.codes", io::dtype::i8, rc, scheme_impl::to_bytes<std::int8_t>(codes.span())});
  e.entries.push_back({name + ".__q8.scales", io::dtype::f32, {rc[0]}, scheme_impl::to_bytes<float>(scales.span())});
  return e;
}

/// b-bit symmetric, one scale per `group` consecutive elements of a row:
///   scale = amax_group / (2^(b-1) - 1), rounded to the stored scale dtype (F16 when every
///   scale is a finite normal F16 or zero, else F32); q = clamp(nearbyint(x / scale), -qmax, qmax);
///   codes are stored offset by 2^(b-1) as unsigned b-bit fields, packed LSB-first, each row
///   starting on a byte boundary.
inline encoded encode_int(const std::string& name, std::span<const float> x, const std::vector<std::int64_t>& shape,
                          io::dtype original, int bits, std::int64_t group) {
  SHRINK_REQUIRE(bits >= 2 && bits <= 8, errc::invalid_argument, "encode_int: bits must be in [2, 8], got ", bits);
  SHRINK_REQUIRE(group >= 1, errc::invalid_argument, "encode_int: group must be >= 1, got ", group);
  const auto rc = scheme_impl::as_2d(shape);
  const auto rows = static_cast<std::size_t>(rc[0]), cols = static_cast<std::size_t>(rc[1]);
  SHRINK_REQUIRE(rows * cols == x.size(), errc::shape_mismatch, "encode_int: '", name, "' has ", x.size(),
                 " values for ", rows, " x ", cols);
  const auto g = static_cast<std::size_t>(group);
  const std::size_t groups = (cols + g - 1) / g;
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
  std::vector<float> scales(rows * groups);
  bool fits_f16 = true;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t k = 0; k < groups; ++k) {
      float amax = 0.0f;
      for (std::size_t c = k * g; c < std::min(cols, (k + 1) * g); ++c) {
        const float v = x[r * cols + c];
        SHRINK_REQUIRE(std::isfinite(v), errc::non_finite, "encode_int: '", name, "' holds a non-finite value at row ",
                       r, ", column ", c);
        amax = std::max(amax, std::fabs(v));
      }
      const float s = amax / qmax;
      scales[r * groups + k] = s;
      if (s != 0.0f && !(std::fabs(s) >= 6.103515625e-05f && std::fabs(s) <= 65504.0f)) fits_f16 = false;
    }
  const io::dtype scale_type = fits_f16 ? io::dtype::f16 : io::dtype::f32;
  std::vector<std::uint16_t> scales16;
  if (fits_f16) {
    scales16.resize(scales.size());
    io::convert_fp32_to_fp16(scales, scales16);
    io::convert_fp16_to_fp32(scales16, scales);  // quantize with the scale the reader will see
  }
  const std::size_t row_bytes = (cols * static_cast<std::size_t>(bits) + 7) / 8;
  aligned_buffer<std::uint8_t> codes(rows * row_bytes);
  const auto offset = static_cast<std::uint32_t>(1u << (bits - 1));
  for (std::size_t r = 0; r < rows; ++r) {
    std::uint8_t* out = codes.data() + r * row_bytes;
    std::size_t bit = 0;
    for (std::size_t c = 0; c < cols; ++c) {
      const float s = scales[r * groups + c / g];
      const float q = s == 0.0f ? 0.0f : std::clamp(std::nearbyint(x[r * cols + c] / s), -qmax, qmax);
      const std::uint32_t u = static_cast<std::uint32_t>(static_cast<std::int32_t>(q) + static_cast<std::int32_t>(offset));
      for (int b = 0; b < bits; ++b, ++bit)
        if ((u >> b) & 1u) out[bit / 8] = static_cast<std::uint8_t>(out[bit / 8] | (1u << (bit % 8)));
    }
  }
  encoded e;
  const std::string tag = ".__q" + std::to_string(bits) + "g" + std::to_string(group);
  e.rec = {name, "int", shape, original, bits, 1, group, scale_type, {}};
  e.rec.entries = {{"codes", name + tag + ".codes"}, {"scales", name + tag + ".scales"}};
  e.entries.push_back({name + tag + ".codes", io::dtype::u8, {static_cast<std::int64_t>(codes.size())},
                       scheme_impl::to_bytes<std::uint8_t>(codes.span())});
  if (fits_f16)
    e.entries.push_back({name + tag + ".scales", io::dtype::f16, {static_cast<std::int64_t>(scales.size())},
                         scheme_impl::to_bytes<std::uint16_t>(scales16)});
  else
    e.entries.push_back({name + tag + ".scales", io::dtype::f32, {static_cast<std::int64_t>(scales.size())},
                         scheme_impl::to_bytes<float>(scales)});
  return e;
}

/// Encodes with the options' scheme ("int8" or "int").
inline encoded encode(const std::string& name, std::span<const float> x, const std::vector<std::int64_t>& shape,
                      io::dtype original, const scheme_options& o) {
  if (o.scheme == "int8") return encode_int8(name, x, shape, original);
  if (o.scheme == "int") return encode_int(name, x, shape, original, o.bits, o.group);
  detail::raise(errc::invalid_argument, "encode: unknown scheme '", o.scheme, "'; expected int8 or int");
}

/// Expands a validated record (see `validate`) from its entries' raw bytes to floats in
/// row-major order of the original shape.
inline aligned_buffer<float> decode(const record& r, std::span<const std::byte> codes, std::span<const std::byte> scales) {
  const record_sizes s = sizes_of(r);
  SHRINK_REQUIRE(codes.size() == s.code_bytes && scales.size() == s.scales * io::size_of(r.scale_dtype), errc::format,
                 "decode: entries of '", r.name, "' have the wrong size");
  const auto rows = static_cast<std::size_t>(r.rows()), cols = static_cast<std::size_t>(r.cols());
  aligned_buffer<float> sc(static_cast<std::size_t>(s.scales));
  io::to_float(r.scale_dtype, scales.data(), sc.size(), sc.data());
  for (float v : sc)
    SHRINK_REQUIRE(std::isfinite(v), errc::format, "decode: '", r.name, "' has a non-finite scale");
  aligned_buffer<float> out(rows * cols);
  if (r.scheme == "int8") {
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t c = 0; c < cols; ++c) {
        const auto q = static_cast<std::int8_t>(codes[i * cols + c]);
        out[i * cols + c] = static_cast<float>(q) * sc[i];
      }
    return out;
  }
  const auto g = static_cast<std::size_t>(r.group);
  const std::size_t groups = (cols + g - 1) / g;
  const std::size_t row_bytes = (cols * static_cast<std::size_t>(r.bits) + 7) / 8;
  const auto offset = static_cast<std::int32_t>(1 << (r.bits - 1));
  for (std::size_t i = 0; i < rows; ++i) {
    const auto* in = reinterpret_cast<const std::uint8_t*>(codes.data()) + i * row_bytes;
    std::size_t bit = 0;
    for (std::size_t c = 0; c < cols; ++c) {
      std::uint32_t u = 0;
      for (int b = 0; b < r.bits; ++b, ++bit) u |= static_cast<std::uint32_t>((in[bit / 8] >> (bit % 8)) & 1u) << b;
      out[i * cols + c] = static_cast<float>(static_cast<std::int32_t>(u) - offset) * sc[i * groups + c / g];
    }
  }
  return out;
}

}  // namespace shrink::compress
