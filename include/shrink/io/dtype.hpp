// dtype.hpp: element types of model files (safetensors names), their sizes, and conversion of raw bytes to and from float.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "half.hpp"

namespace shrink::io {

/// Element types shrink reads and writes; names are the safetensors spellings.
enum class dtype : int { f32, f16, bf16, f64, i8, u8, i16, i32, i64, boolean };

struct dtype_info {
  dtype type;
  std::string_view name;
  std::size_t size;
};

inline constexpr std::array<dtype_info, 10> k_dtypes{{
    {dtype::f32, "F32", 4},
    {dtype::f16, "F16", 2},
    {dtype::bf16, "BF16", 2},
    {dtype::f64, "F64", 8},
    {dtype::i8, "I8", 1},
    {dtype::u8, "U8", 1},
    {dtype::i16, "I16", 2},
    {dtype::i32, "I32", 4},
    {dtype::i64, "I64", 8},
    {dtype::boolean, "BOOL", 1},
}};

constexpr std::string_view name(dtype t) noexcept { return k_dtypes[static_cast<std::size_t>(t)].name; }
constexpr std::size_t size_of(dtype t) noexcept { return k_dtypes[static_cast<std::size_t>(t)].size; }
constexpr bool is_floating(dtype t) noexcept {
  return t == dtype::f32 || t == dtype::f16 || t == dtype::bf16 || t == dtype::f64;
}

/// The dtype named `text`, or nullopt.
constexpr std::optional<dtype> find_dtype(std::string_view text) noexcept {
  for (const auto& d : k_dtypes)
    if (d.name == text) return d.type;
  return std::nullopt;
}

/// The dtype named `text`; an unknown name is errc::format listing the known ones.
inline dtype parse_dtype(std::string_view text, std::string_view who) {
  if (auto t = find_dtype(text)) return *t;
  std::string all;
  for (const auto& d : k_dtypes) (all += all.empty() ? "" : ", ") += d.name;
  detail::raise(errc::format, who, ": unknown dtype '", text, "'; expected one of ", all);
}

/// Product of `shape` times `element_size`, checked: negative extents are errc::format and
/// products beyond 2^63 errc::overflow.
inline std::uint64_t checked_byte_size(std::span<const std::int64_t> shape, std::size_t element_size,
                                       std::string_view who) {
  std::uint64_t n = element_size;
  constexpr std::uint64_t limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  for (std::int64_t e : shape) {
    SHRINK_REQUIRE(e >= 0, errc::format, who, ": shape extents must be >= 0, got ", e);
    const auto u = static_cast<std::uint64_t>(e);
    SHRINK_REQUIRE(u == 0 || n <= limit / u, errc::overflow, who, ": shape's byte size overflows 63 bits");
    n *= u;
  }
  return n;
}

/// Element count of a shape (checked like checked_byte_size).
inline std::uint64_t checked_count(std::span<const std::int64_t> shape, std::string_view who) {
  return checked_byte_size(shape, 1, who);
}

/// Converts `count` little-endian elements of type `t` at `bytes` to float. Integers and
/// booleans convert by value; F64 rounds to nearest.
inline void to_float(dtype t, const std::byte* bytes, std::size_t count, float* out) {
  auto each = [&]<class T>(T) {
    for (std::size_t i = 0; i < count; ++i) {
      T v;
      std::memcpy(&v, bytes + i * sizeof(T), sizeof(T));
      out[i] = static_cast<float>(v);
    }
  };
  switch (t) {
    case dtype::f32: if (count) std::memcpy(out, bytes, count * 4); return;
    case dtype::f16:
    case dtype::bf16: {
      // The source may be unaligned (safetensors does not align offsets): bounce via a small buffer.
      std::array<std::uint16_t, 1024> tmp;
      for (std::size_t i = 0; i < count; i += tmp.size()) {
        const std::size_t k = std::min(tmp.size(), count - i);
        std::memcpy(tmp.data(), bytes + 2 * i, 2 * k);
        if (t == dtype::f16)
          convert_fp16_to_fp32({tmp.data(), k}, {out + i, k});
        else
          convert_bf16_to_fp32({tmp.data(), k}, {out + i, k});
      }
      return;
    }
    case dtype::f64: each(double{}); return;
    case dtype::i8: each(std::int8_t{}); return;
    case dtype::u8: each(std::uint8_t{}); return;
    case dtype::i16: each(std::int16_t{}); return;
    case dtype::i32: each(std::int32_t{}); return;
    case dtype::i64: each(std::int64_t{}); return;
    case dtype::boolean:
      for (std::size_t i = 0; i < count; ++i) out[i] = bytes[i] != std::byte{0} ? 1.0f : 0.0f;
      return;
  }
}

/// Converts floats to `t` (little-endian bytes at `out`, count * size_of(t) of them).
/// Floating targets round to nearest even; integer targets round half to even and saturate;
/// BOOL is (x != 0). NaN into an integer type is errc::non_finite.
inline void from_float(dtype t, const float* in, std::size_t count, std::byte* out) {
  auto each_int = [&]<class T>(T) {
    for (std::size_t i = 0; i < count; ++i) {
      SHRINK_REQUIRE(in[i] == in[i], errc::non_finite, "from_float: NaN cannot be stored as ", name(t));
      const double r = std::nearbyint(static_cast<double>(in[i]));
      const double lo = static_cast<double>(std::numeric_limits<T>::min());
      const double hi = static_cast<double>(std::numeric_limits<T>::max());
      const T v = r <= lo ? std::numeric_limits<T>::min() : r >= hi ? std::numeric_limits<T>::max() : static_cast<T>(r);
      std::memcpy(out + i * sizeof(T), &v, sizeof(T));
    }
  };
  switch (t) {
    case dtype::f32: if (count) std::memcpy(out, in, count * 4); return;
    case dtype::f16:
    case dtype::bf16: {
      std::array<std::uint16_t, 1024> tmp;
      for (std::size_t i = 0; i < count; i += tmp.size()) {
        const std::size_t k = std::min(tmp.size(), count - i);
        if (t == dtype::f16)
          convert_fp32_to_fp16({in + i, k}, {tmp.data(), k});
        else
          convert_fp32_to_bf16({in + i, k}, {tmp.data(), k});
        std::memcpy(out + 2 * i, tmp.data(), 2 * k);
      }
      return;
    }
    case dtype::f64:
      for (std::size_t i = 0; i < count; ++i) {
        const double v = in[i];
        std::memcpy(out + 8 * i, &v, 8);
      }
      return;
    case dtype::i8: each_int(std::int8_t{}); return;
    case dtype::u8: each_int(std::uint8_t{}); return;
    case dtype::i16: each_int(std::int16_t{}); return;
    case dtype::i32: each_int(std::int32_t{}); return;
    case dtype::i64: each_int(std::int64_t{}); return;
    case dtype::boolean:
      for (std::size_t i = 0; i < count; ++i) out[i] = in[i] != 0.0f ? std::byte{1} : std::byte{0};
      return;
  }
}

}  // namespace shrink::io
