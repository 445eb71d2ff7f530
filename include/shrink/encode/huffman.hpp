// huffman.hpp: length-limited canonical Huffman coding of byte symbols, a self-describing stream, and a table-driven decoder.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace shrink::encode {

/// Longest code the coder emits; the decoder rejects longer ones.
inline constexpr int k_max_code_length = 24;
/// Bits resolved by one table lookup; longer codes take the canonical slow path.
inline constexpr int k_lookup_bits = 11;

/// Code lengths (0 = symbol unused) of an optimal prefix code for `freq`, limited to
/// `max_length` bits. Huffman's algorithm (two-queue form over the sorted frequencies),
/// then, if the tree is deeper than the limit, the rebalancing used by zlib/miniz: clamp
/// to max_length and repay the Kraft excess by lengthening the deepest shorter codes, which
/// always terminates with sum 2^-len = 1 as long as the alphabet has <= 2^max_length symbols.
/// One used symbol gets length 1. Ties break by symbol, so the result is deterministic.
inline std::vector<std::uint8_t> code_lengths(std::span<const std::uint64_t> freq, int max_length = k_max_code_length) {
  SHRINK_REQUIRE(max_length >= 1 && max_length <= k_max_code_length, errc::invalid_argument,
                 "code_lengths: max_length must be in [1, ", k_max_code_length, "], got ", max_length);
  std::vector<std::uint8_t> len(freq.size(), 0);
  std::vector<std::uint32_t> used;
  for (std::uint32_t s = 0; s < freq.size(); ++s)
    if (freq[s] > 0) used.push_back(s);
  if (used.empty()) return len;
  SHRINK_REQUIRE(used.size() <= (std::size_t{1} << max_length), errc::invalid_argument, "code_lengths: ",
                 used.size(), " symbols do not fit codes of at most ", max_length, " bits");
  if (used.size() == 1) {
    len[used[0]] = 1;
    return len;
  }
  std::stable_sort(used.begin(), used.end(), [&](std::uint32_t a, std::uint32_t b) { return freq[a] < freq[b]; });
  const std::size_t n = used.size();
  // Tree nodes: leaves 0..n-1 (in sorted order), internal n..2n-2; parent links give depths.
  std::vector<std::uint64_t> weight(2 * n - 1);
  std::vector<std::size_t> parent(2 * n - 1, 0);
  for (std::size_t i = 0; i < n; ++i) weight[i] = freq[used[i]];
  std::size_t leaf = 0, inner = n, next = n;
  auto pop = [&]() {
    if (leaf < n && (inner >= next || weight[leaf] <= weight[inner])) return leaf++;
    return inner++;
  };
  for (; next < 2 * n - 1; ++next) {
    const std::size_t a = pop(), b = pop();
    weight[next] = weight[a] + weight[b];
    parent[a] = parent[b] = next;
  }
  std::vector<int> depth(2 * n - 1, 0);
  for (std::size_t i = 2 * n - 1; i-- > 0;)
    if (i != 2 * n - 2) depth[i] = depth[parent[i]] + 1;
  // Histogram of lengths, clamped; fix the Kraft sum (in units of 2^-max_length).
  std::vector<std::uint64_t> count(static_cast<std::size_t>(std::max(max_length, 64)) + 1, 0);
  for (std::size_t i = 0; i < n; ++i) ++count[static_cast<std::size_t>(std::min(depth[i], max_length))];
  std::uint64_t kraft = 0;
  for (int l = 1; l <= max_length; ++l) kraft += count[static_cast<std::size_t>(l)] << (max_length - l);
  const std::uint64_t one = std::uint64_t{1} << max_length;
  while (kraft > one) {
    // Take a leaf at the deepest length l < max_length and make it two leaves at l + 1, one
    // of them the leaf removed from max_length. Net Kraft change: -2^-max_length.
    --count[static_cast<std::size_t>(max_length)];
    int l = max_length - 1;
    while (l > 0 && count[static_cast<std::size_t>(l)] == 0) --l;
    SHRINK_REQUIRE(l > 0, errc::invalid_argument, "code_lengths: cannot limit the code to ", max_length, " bits");
    --count[static_cast<std::size_t>(l)];
    count[static_cast<std::size_t>(l) + 1] += 2;
    kraft -= 1;
  }
  // Assign: most frequent symbols (end of `used`) get the shortest lengths.
  std::size_t i = n;
  for (int l = 1; l <= max_length; ++l)
    for (std::uint64_t c = 0; c < count[static_cast<std::size_t>(l)]; ++c) len[used[--i]] = static_cast<std::uint8_t>(l);
  return len;
}

namespace detail {

inline std::uint32_t reverse_bits(std::uint32_t code, int length) noexcept {
  std::uint32_t r = 0;
  for (int i = 0; i < length; ++i, code >>= 1) r = (r << 1) | (code & 1u);
  return r;
}

/// Canonical codes (RFC 1951, 3.2.2): codes of each length are consecutive integers in
/// symbol order; returned bit-reversed, because the stream is written LSB first.
inline std::vector<std::uint32_t> canonical_codes(std::span<const std::uint8_t> len) {
  std::array<std::uint32_t, k_max_code_length + 2> count{}, next{};
  for (auto l : len) ++count[l];
  count[0] = 0;
  std::uint32_t code = 0;
  for (int l = 1; l <= k_max_code_length; ++l) {
    code = (code + count[static_cast<std::size_t>(l) - 1]) << 1;
    next[static_cast<std::size_t>(l)] = code;
  }
  std::vector<std::uint32_t> codes(len.size(), 0);
  for (std::size_t s = 0; s < len.size(); ++s)
    if (len[s]) codes[s] = reverse_bits(next[len[s]]++, len[s]);
  return codes;
}

inline void put_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
inline void put_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
inline std::uint64_t get_le(std::span<const std::uint8_t> in, std::size_t at, int bytes) {
  SHRINK_REQUIRE(at + static_cast<std::size_t>(bytes) <= in.size(), errc::format,
                 "huffman_decode: stream truncated in its header (", in.size(), " bytes)");
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(in[at + static_cast<std::size_t>(i)]) << (8 * i);
  return v;
}

}  // namespace detail

/// Stream layout (little-endian; docs/codebook.md, "Huffman stream"):
///   0  u32  magic 0x46485353 ("SSHF")
///   4  u64  number of symbols n
///  12  u16  alphabet size a (1..256; 0 only when n = 0)
///  14  a    bytes: code length of symbols 0..a-1 (0 = unused, at most 24)
///  14+a u64 payload length in bits
///  22+a     payload: ceil(bits / 8) bytes, codes LSB first, canonical, unused bits zero
inline constexpr std::uint32_t k_huffman_magic = 0x46485353u;

/// Encodes byte symbols with a canonical Huffman code built from their own frequencies.
inline std::vector<std::uint8_t> huffman_encode(std::span<const std::uint8_t> symbols) {
  std::vector<std::uint64_t> freq(256, 0);
  for (auto s : symbols) ++freq[s];
  std::size_t alphabet = 256;
  while (alphabet > 0 && freq[alphabet - 1] == 0) --alphabet;
  freq.resize(alphabet);
  const auto len = code_lengths(freq);
  const auto codes = detail::canonical_codes(len);
  std::vector<std::uint8_t> out;
  detail::put_u32(out, k_huffman_magic);
  detail::put_u64(out, symbols.size());
  out.push_back(static_cast<std::uint8_t>(alphabet & 0xff));
  out.push_back(static_cast<std::uint8_t>(alphabet >> 8));
  out.insert(out.end(), len.begin(), len.end());
  std::uint64_t total_bits = 0;
  for (std::size_t s = 0; s < alphabet; ++s) total_bits += freq[s] * len[s];
  detail::put_u64(out, total_bits);
  const std::size_t start = out.size();
  out.resize(start + static_cast<std::size_t>((total_bits + 7) / 8), 0);
  std::uint8_t* p = out.data() + start;
  std::uint64_t buffer = 0;
  int filled = 0;
  for (auto s : symbols) {
    buffer |= static_cast<std::uint64_t>(codes[s]) << filled;
    filled += len[s];
    while (filled >= 8) {
      *p++ = static_cast<std::uint8_t>(buffer);
      buffer >>= 8;
      filled -= 8;
    }
  }
  if (filled > 0) *p = static_cast<std::uint8_t>(buffer);
  return out;
}

/// A parsed stream: the code table and where the payload lies. Built by huffman_decode.
class huffman_decoder {
 public:
  explicit huffman_decoder(std::span<const std::uint8_t> stream) {
    SHRINK_REQUIRE(detail::get_le(stream, 0, 4) == k_huffman_magic, errc::format,
                   "huffman_decode: bad magic; expected a shrink Huffman stream");
    count_ = detail::get_le(stream, 4, 8);
    const auto alphabet = static_cast<std::size_t>(detail::get_le(stream, 12, 2));
    SHRINK_REQUIRE(alphabet <= 256, errc::format, "huffman_decode: alphabet of ", alphabet, " symbols exceeds 256");
    SHRINK_REQUIRE(14 + alphabet <= stream.size(), errc::format, "huffman_decode: stream truncated in its code table");
    len_.assign(stream.begin() + 14, stream.begin() + 14 + static_cast<std::ptrdiff_t>(alphabet));
    bits_ = detail::get_le(stream, 14 + alphabet, 8);
    const std::size_t start = 22 + alphabet;
    SHRINK_REQUIRE(bits_ / 8 <= stream.size() - std::min(stream.size(), start) &&
                       start + (bits_ + 7) / 8 <= stream.size(),
                   errc::format, "huffman_decode: payload of ", bits_, " bits does not fit the ",
                   stream.size() - std::min(stream.size(), start), " bytes left");
    // Every code is >= 1 bit long, so a count above the payload's bits is corrupt (and
    // would otherwise ask for a huge output buffer).
    SHRINK_REQUIRE(count_ <= bits_, errc::format, "huffman_decode: ", count_, " symbols cannot fit in ", bits_,
                   " bits");
    payload_ = stream.subspan(start, static_cast<std::size_t>((bits_ + 7) / 8));
    build_tables();
  }

  [[nodiscard]] std::uint64_t size() const noexcept { return count_; }
  [[nodiscard]] std::span<const std::uint8_t> lengths() const noexcept { return len_; }

  /// Decodes all symbols into out (size() entries). Corrupt payloads are shrink::error.
  void decode(std::span<std::uint8_t> out) const {
    SHRINK_REQUIRE(out.size() == count_, errc::shape_mismatch, "huffman_decode: output holds ", out.size(),
                   " symbols, the stream ", count_);
    const std::uint8_t* p = payload_.data();
    const std::size_t nbytes = payload_.size();
    std::size_t byte = 0;      // payload bytes moved into the buffer so far
    std::uint64_t buffer = 0;  // bits not yet consumed, LSB first
    int avail = 0;
    std::size_t i = 0;
    const std::size_t n = out.size();
    std::uint8_t* SHRINK_RESTRICT o = out.data();
    // Fast path: while 8 payload bytes remain, refill whole words (each refill leaves >= 56
    // bits) and decode as many symbols as surely fit: 56 / (longest code length).
    const std::size_t per = max_len_ <= 14 ? 4 : max_len_ <= 18 ? 3 : 2;
    const std::uint32_t* SHRINK_RESTRICT table = fast_.data();
    while (i + per <= n && byte + 8 <= nbytes) {
      std::uint64_t word;
      std::memcpy(&word, p + byte, 8);
      buffer |= word << avail;
      byte += static_cast<std::size_t>((63 - avail) >> 3);
      avail |= 56;
      for (std::size_t t = 0; t < per; ++t) {
        std::uint32_t e = table[buffer & k_mask];
        if ((e >> 16) == 0) [[unlikely]] e = slow(buffer, avail);
        const int l = static_cast<int>(e >> 16);
        buffer >>= l;
        avail -= l;
        o[i++] = static_cast<std::uint8_t>(e);
      }
    }
    // Tail: byte-wise refills, never reading past the payload.
    while (i < n) {
      while (avail <= 56 && byte < nbytes) {
        buffer |= static_cast<std::uint64_t>(p[byte++]) << avail;
        avail += 8;
      }
      std::uint32_t e = fast_[buffer & k_mask];
      if ((e >> 16) == 0) e = slow(buffer, avail);
      const int l = static_cast<int>(e >> 16);
      SHRINK_REQUIRE(l <= avail, errc::format, "huffman_decode: stream ends inside symbol ", i);
      buffer >>= l;
      avail -= l;
      out[i++] = static_cast<std::uint8_t>(e);
    }
    const std::uint64_t consumed = static_cast<std::uint64_t>(byte) * 8 - static_cast<std::uint64_t>(avail);
    SHRINK_REQUIRE(consumed == bits_, errc::format, "huffman_decode: decoded ", consumed,
                   " bits but the header says ", bits_);
  }

 private:
  static constexpr std::uint32_t k_mask = (1u << k_lookup_bits) - 1;

  void build_tables() {
    int max_len = 0;
    std::array<std::uint64_t, k_max_code_length + 1> count{};
    for (auto l : len_) {
      SHRINK_REQUIRE(l <= k_max_code_length, errc::format, "huffman_decode: code length ", int(l), " exceeds ",
                     k_max_code_length);
      ++count[l];
      max_len = std::max<int>(max_len, l);
    }
    std::uint64_t kraft = 0, used = 0;
    for (int l = 1; l <= k_max_code_length; ++l) {
      kraft += count[static_cast<std::size_t>(l)] << (k_max_code_length - l);
      used += count[static_cast<std::size_t>(l)];
    }
    const std::uint64_t one = std::uint64_t{1} << k_max_code_length;
    // A complete code (Kraft sum 1), or the single-symbol code of length 1.
    SHRINK_REQUIRE(count_ == 0 || kraft == one || (used == 1 && count[1] == 1), errc::format,
                   "huffman_decode: the code table is not a complete prefix code");
    // Fast table: every k_lookup_bits-bit window that starts with a short code; entries of
    // long codes (and invalid windows of the one-symbol code) hold length 0 -> slow path.
    fast_.assign(std::size_t{1} << k_lookup_bits, 0);
    const auto codes = detail::canonical_codes(len_);
    for (std::size_t s = 0; s < len_.size(); ++s) {
      const int l = len_[s];
      if (l == 0 || l > k_lookup_bits) continue;
      for (std::uint32_t hi = 0; hi < (1u << (k_lookup_bits - l)); ++hi)
        fast_[codes[s] | (hi << l)] = (static_cast<std::uint32_t>(l) << 16) | static_cast<std::uint32_t>(s);
    }
    // Canonical slow-path data (RFC 1951 order): first code and first symbol index per length.
    sorted_.clear();
    for (int l = 1; l <= k_max_code_length; ++l)
      for (std::size_t s = 0; s < len_.size(); ++s)
        if (len_[s] == l) sorted_.push_back(static_cast<std::uint8_t>(s));
    count_per_len_ = count;
    max_len_ = std::max(max_len, 1);
  }

  // Bit-serial canonical decode (puff.c) of a code longer than the lookup, or an error.
  // Returns length << 16 | symbol, like a table entry.
  [[gnu::noinline]] std::uint32_t slow(std::uint64_t buffer, int avail) const {
    std::uint32_t code = 0, first = 0, index = 0;
    for (int l = 1; l <= k_max_code_length; ++l) {
      SHRINK_REQUIRE(l <= avail, errc::format, "huffman_decode: stream ends inside a code");
      code |= static_cast<std::uint32_t>((buffer >> (l - 1)) & 1u);
      const auto c = static_cast<std::uint32_t>(count_per_len_[static_cast<std::size_t>(l)]);
      if (code < first + c) return (static_cast<std::uint32_t>(l) << 16) | sorted_[index + (code - first)];
      index += c;
      first = (first + c) << 1;
      code <<= 1;
    }
    shrink::detail::raise(errc::format, "huffman_decode: invalid code in the payload");
  }

  std::uint64_t count_ = 0, bits_ = 0;
  int max_len_ = 1;
  std::vector<std::uint8_t> len_;
  std::span<const std::uint8_t> payload_;
  std::vector<std::uint32_t> fast_;
  std::vector<std::uint8_t> sorted_;
  std::array<std::uint64_t, k_max_code_length + 1> count_per_len_{};
};

/// Decodes a stream written by huffman_encode. Truncated or corrupt streams are
/// shrink::error(errc::format); the decoder never reads outside `stream`.
inline std::vector<std::uint8_t> huffman_decode(std::span<const std::uint8_t> stream) {
  huffman_decoder d(stream);
  std::vector<std::uint8_t> out(static_cast<std::size_t>(d.size()));
  d.decode(out);
  return out;
}

}  // namespace shrink::encode
