// bits.hpp: packing and unpacking of 1- to 8-bit fields into bytes (LSB first), and popcount helpers.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

#include "config.hpp"
#include "error.hpp"

namespace shrink {

/// Bytes needed to hold `count` fields of `bits` bits each.
constexpr std::size_t packed_bytes(std::size_t count, int bits) noexcept {
  return (count * static_cast<std::size_t>(bits) + 7) / 8;
}

namespace detail {
inline void check_field_bits(int bits, const char* who) {
  SHRINK_REQUIRE(bits >= 1 && bits <= 8, errc::invalid_argument, who, ": bits must be in [1, 8], got ", bits);
}
}  // namespace detail

/// Packs the low `bits` bits of each value into `out`, little-endian bit order: field i
/// occupies bits [i*bits, (i+1)*bits) of the stream, bit 0 being the LSB of out[0]. So for
/// 4 bits, value 0 is the low nibble of byte 0 and value 1 its high nibble (ggml's and
/// ONNX's int4 order). Values wider than `bits` are an error; unused high bits of the last
/// byte are zero.
inline void pack_bits(std::span<const std::uint8_t> values, int bits, std::span<std::uint8_t> out) {
  detail::check_field_bits(bits, "pack_bits");
  SHRINK_REQUIRE(out.size() >= packed_bytes(values.size(), bits), errc::out_of_range, "pack_bits: ",
                 values.size(), " fields of ", bits, " bits need ", packed_bytes(values.size(), bits),
                 " bytes, the output holds ", out.size());
  const unsigned limit = 1u << bits;
  std::fill(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(packed_bytes(values.size(), bits)), 0);
  if (bits == 8) {
    std::copy(values.begin(), values.end(), out.begin());
    return;
  }
  std::size_t bit = 0;
  for (std::size_t i = 0; i < values.size(); ++i, bit += static_cast<std::size_t>(bits)) {
    const unsigned v = values[i];
    SHRINK_REQUIRE(v < limit, errc::invalid_argument, "pack_bits: value ", v, " at index ", i,
                   " does not fit in ", bits, " bits");
    const std::size_t byte = bit >> 3, shift = bit & 7;
    out[byte] = static_cast<std::uint8_t>(out[byte] | (v << shift));
    if (shift + static_cast<std::size_t>(bits) > 8) out[byte + 1] = static_cast<std::uint8_t>(v >> (8 - shift));
  }
}

/// Inverse of pack_bits: reads `out.size()` fields of `bits` bits.
inline void unpack_bits(std::span<const std::uint8_t> packed, int bits, std::span<std::uint8_t> out) {
  detail::check_field_bits(bits, "unpack_bits");
  SHRINK_REQUIRE(packed.size() >= packed_bytes(out.size(), bits), errc::out_of_range, "unpack_bits: ",
                 out.size(), " fields of ", bits, " bits need ", packed_bytes(out.size(), bits),
                 " bytes, the input holds ", packed.size());
  if (bits == 8) {
    std::copy(packed.begin(), packed.begin() + static_cast<std::ptrdiff_t>(out.size()), out.begin());
    return;
  }
  const unsigned mask = (1u << bits) - 1;
  std::size_t bit = 0;
  for (std::size_t i = 0; i < out.size(); ++i, bit += static_cast<std::size_t>(bits)) {
    const std::size_t byte = bit >> 3, shift = bit & 7;
    unsigned v = static_cast<unsigned>(packed[byte]) >> shift;
    if (shift + static_cast<std::size_t>(bits) > 8) v |= static_cast<unsigned>(packed[byte + 1]) << (8 - shift);
    out[i] = static_cast<std::uint8_t>(v & mask);
  }
}

/// Number of set bits in a span of 64-bit words.
inline std::uint64_t popcount(std::span<const std::uint64_t> words) noexcept {
  std::uint64_t n = 0;
  for (std::uint64_t w : words) n += static_cast<std::uint64_t>(std::popcount(w));
  return n;
}

/// Smallest number of bits that can index `count` distinct values (ceil(log2(count)), at least 1).
constexpr int bits_for(std::size_t count) noexcept {
  return count <= 2 ? 1 : static_cast<int>(std::bit_width(count - 1));
}

}  // namespace shrink
