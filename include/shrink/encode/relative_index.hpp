// relative_index.hpp: Deep Compression's relative sparse indices: fixed-width gaps with filler zeros on overflow.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "../core/bits.hpp"
#include "../core/error.hpp"

namespace shrink::encode {

/// Entries of a sparse vector stored as gaps (Han et al. 2016, section 4, figure 3): entry e
/// sits at position pos[e] = pos[e-1] + gap[e] + 1 (pos[-1] = -1), so gap counts the zeros
/// skipped and fits in `bits` bits (0 .. 2^bits - 1; 4 bits for fc layers and 8 for conv
/// in the paper). A larger jump inserts filler entries at gap 2^bits - 1 whose value is
/// `filler` (zero): they cost one slot each and expand to an explicit zero.
template <class V>
struct relative_stream {
  int bits = 4;
  std::vector<std::uint8_t> gaps;  ///< one per entry, fillers included, each < 2^bits
  std::vector<V> values;           ///< one per entry, fillers hold the filler value
  std::size_t fillers = 0;         ///< how many entries are fillers

  /// Gaps packed at `bits` bits each (core/bits.hpp order): the fixed-width index stream.
  [[nodiscard]] std::vector<std::uint8_t> packed_gaps() const {
    std::vector<std::uint8_t> out(packed_bytes(gaps.size(), bits));
    pack_bits(gaps, bits, out);
    return out;
  }
};

inline void check_gap_bits(int bits, const char* who) {
  SHRINK_REQUIRE(bits >= 1 && bits <= 8, errc::invalid_argument, who, ": gap bits must be in [1, 8], got ", bits);
}

/// Encodes strictly increasing `positions` with their `values`.
template <class V>
relative_stream<V> encode_relative(std::span<const std::uint64_t> positions, std::span<const V> values, int bits,
                                   V filler = V{}) {
  check_gap_bits(bits, "encode_relative");
  SHRINK_REQUIRE(positions.size() == values.size(), errc::shape_mismatch, "encode_relative: ", positions.size(),
                 " positions but ", values.size(), " values");
  relative_stream<V> out;
  out.bits = bits;
  const std::uint64_t max_gap = (std::uint64_t{1} << bits) - 1;
  std::uint64_t next = 0;  // first position the next entry may take (prev + 1)
  for (std::size_t i = 0; i < positions.size(); ++i) {
    SHRINK_REQUIRE(positions[i] >= next, errc::invalid_argument,
                   "encode_relative: positions must increase strictly; position ", i, " is ", positions[i]);
    std::uint64_t gap = positions[i] - next;
    while (gap > max_gap) {  // filler entry at next + max_gap
      out.gaps.push_back(static_cast<std::uint8_t>(max_gap));
      out.values.push_back(filler);
      ++out.fillers;
      gap -= max_gap + 1;
    }
    out.gaps.push_back(static_cast<std::uint8_t>(gap));
    out.values.push_back(values[i]);
    next = positions[i] + 1;
  }
  return out;
}

/// The non-zeros of a dense vector (exact zeros are the pruned weights).
inline relative_stream<float> encode_relative(std::span<const float> dense, int bits) {
  std::vector<std::uint64_t> pos;
  std::vector<float> val;
  for (std::size_t i = 0; i < dense.size(); ++i)
    if (dense[i] != 0.0f) {
      pos.push_back(i);
      val.push_back(dense[i]);
    }
  return encode_relative<float>(pos, val, bits, 0.0f);
}

/// Positions of every entry (fillers included) from the gaps.
inline std::vector<std::uint64_t> relative_positions(std::span<const std::uint8_t> gaps, int bits) {
  check_gap_bits(bits, "relative_positions");
  std::vector<std::uint64_t> pos(gaps.size());
  std::uint64_t next = 0;
  for (std::size_t i = 0; i < gaps.size(); ++i) {
    SHRINK_REQUIRE(gaps[i] < (1u << bits), errc::format, "relative_positions: gap ", int(gaps[i]), " at entry ", i,
                   " does not fit in ", bits, " bits");
    pos[i] = next + gaps[i];
    next = pos[i] + 1;
  }
  return pos;
}

/// Writes the entries into `dense` (which the caller zeroed); a position past its end is
/// errc::format (a corrupt stream).
template <class V>
void scatter_relative(const relative_stream<V>& s, std::span<V> dense) {
  SHRINK_REQUIRE(s.gaps.size() == s.values.size(), errc::shape_mismatch, "scatter_relative: ", s.gaps.size(),
                 " gaps but ", s.values.size(), " values");
  const auto pos = relative_positions(s.gaps, s.bits);
  for (std::size_t i = 0; i < pos.size(); ++i) {
    SHRINK_REQUIRE(pos[i] < dense.size(), errc::format, "scatter_relative: entry ", i, " at position ", pos[i],
                   " is outside the ", dense.size(), " outputs");
    dense[static_cast<std::size_t>(pos[i])] = s.values[i];
  }
}

}  // namespace shrink::encode
