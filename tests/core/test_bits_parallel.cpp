// test_bits_parallel.cpp: bit-field packing against a hand-written layout, popcount, parallel_for determinism.
#include <catch2/catch.hpp>
#include <atomic>
#include <numeric>
#include <shrink/core.hpp>
#include <support/random.hpp>
#include <vector>

TEST_CASE("pack_bits: documented LSB-first layout, hand-checked bytes") {
  // 4 bits: value 0 in the low nibble of byte 0, value 1 in its high nibble.
  std::vector<std::uint8_t> v4{0x1, 0xA, 0xF, 0x3, 0x7};
  std::vector<std::uint8_t> out(3);
  shrink::pack_bits(v4, 4, out);
  CHECK(out == std::vector<std::uint8_t>{0xA1, 0x3F, 0x07});
  // 2 bits: four per byte, first in bits 0-1.
  std::vector<std::uint8_t> v2{3, 0, 1, 2, 1};
  std::vector<std::uint8_t> out2(2);
  shrink::pack_bits(v2, 2, out2);
  CHECK(out2 == std::vector<std::uint8_t>{0b10010011, 0b01});
  // 3 bits straddle bytes: 5 = 101, 6 = 110, 7 = 111 -> bits 101 | 110<<3 | 111<<6.
  std::vector<std::uint8_t> v3{5, 6, 7};
  std::vector<std::uint8_t> out3(2);
  shrink::pack_bits(v3, 3, out3);
  const unsigned stream = 5u | (6u << 3) | (7u << 6);
  CHECK(out3[0] == (stream & 0xFF));
  CHECK(out3[1] == (stream >> 8));
}

TEST_CASE("pack_bits / unpack_bits round trip for every width 1..8") {
  for (int bits = 1; bits <= 8; ++bits) {
    auto raw = shrink::testing::full_range<std::uint8_t>(1001, static_cast<std::uint64_t>(bits));
    for (auto& x : raw) x = static_cast<std::uint8_t>(x & ((1u << bits) - 1));
    std::vector<std::uint8_t> packed(shrink::packed_bytes(raw.size(), bits));
    shrink::pack_bits(raw, bits, packed);
    std::vector<std::uint8_t> back(raw.size());
    shrink::unpack_bits(packed, bits, back);
    INFO("bits = " << bits);
    CHECK(back == raw);
  }
}

TEST_CASE("pack_bits: bad widths, overflowing values and short buffers are errors") {
  std::vector<std::uint8_t> v{1, 2, 16};
  std::vector<std::uint8_t> out(8);
  CHECK_THROWS_AS(shrink::pack_bits(v, 0, out), shrink::error);
  CHECK_THROWS_AS(shrink::pack_bits(v, 9, out), shrink::error);
  CHECK_THROWS_WITH(shrink::pack_bits(v, 4, out), Catch::Contains("value 16 at index 2"));
  std::vector<std::uint8_t> tiny(1);
  CHECK_THROWS_AS(shrink::pack_bits(v, 8, tiny), shrink::error);
  CHECK_THROWS_AS(shrink::unpack_bits(tiny, 8, out), shrink::error);
}

TEST_CASE("popcount and bits_for") {
  std::vector<std::uint64_t> w{0, ~0ull, 0x8000000000000001ull};
  CHECK(shrink::popcount(w) == 66);
  CHECK(shrink::bits_for(2) == 1);
  CHECK(shrink::bits_for(16) == 4);
  CHECK(shrink::bits_for(17) == 5);
  CHECK(shrink::bits_for(256) == 8);
}

TEST_CASE("parallel_for: covers the range once, grain-aligned chunks, same result for any thread count") {
  for (int threads : {1, 2, 3, 8}) {
    std::vector<int> hits(1000, 0);
    std::atomic<int> calls{0};
    shrink::parallel_for(shrink::context{threads}, 0, 1000, 16, [&](shrink::index_t b, shrink::index_t e) {
      CHECK(b % 16 == 0);
      ++calls;
      for (auto i = b; i < e; ++i) hits[static_cast<std::size_t>(i)] += 1;
    });
    CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
    CHECK(calls.load() <= threads);
  }
  CHECK_THROWS_AS(shrink::parallel_for(shrink::context{-1}, 0, 10, 1, [](auto, auto) {}), shrink::error);
  CHECK_THROWS_AS(shrink::parallel_for(shrink::context{2}, 0, 10, 0, [](auto, auto) {}), shrink::error);
  // Exceptions inside a chunk reach the caller.
  CHECK_THROWS_AS(shrink::parallel_for(shrink::context{2}, 0, 100, 1,
                                       [](auto b, auto) {
                                         if (b > 0) throw shrink::error(shrink::errc::invalid_argument, "x");
                                       }),
                  shrink::error);
}

TEST_CASE("balanced_split: parts carry equal weight") {
  // Weights 1,1,1,1,100,1,1,1: the heavy row gets a part of its own.
  std::vector<shrink::index_t> w{1, 1, 1, 1, 100, 1, 1, 1};
  std::vector<shrink::index_t> prefix(w.size() + 1, 0);
  std::partial_sum(w.begin(), w.end(), prefix.begin() + 1);
  auto b = shrink::balanced_split(prefix.data(), 0, 8, 2);
  REQUIRE(b.size() == 3);
  CHECK(b[0] == 0);
  CHECK(b[2] == 8);
  CHECK(b[1] == 5);  // first part ends after the heavy row: 104 of 108
}
