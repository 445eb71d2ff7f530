// test_huffman.cpp: canonical Huffman (textbook optima, Kraft equality, length limit), round trips, corrupt streams.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "shrink/encode.hpp"

using namespace shrink;
using namespace shrink::encode;

namespace {
template <class Fn>
errc huff_code_of(Fn&& fn) {
  try {
    fn();
  } catch (const shrink::error& e) {
    return e.code();
  }
  return errc{};
}

double kraft(const std::vector<std::uint8_t>& len) {
  double s = 0;
  for (auto l : len)
    if (l) s += std::ldexp(1.0, -l);
  return s;
}

std::vector<std::uint8_t> skewed(std::size_t n, std::uint64_t seed, double p = 0.6) {
  std::mt19937_64 rng(seed);
  std::geometric_distribution<int> g(p);
  std::vector<std::uint8_t> out(n);
  for (auto& s : out) s = static_cast<std::uint8_t>(std::min(g(rng), 255));
  return out;
}
}  // namespace

TEST_CASE("code lengths equal the textbook optimum") {
  // CLRS 16.3: a:45 b:13 c:12 d:16 e:9 f:5 -> a 1 bit, b c d 3 bits, e f 4 bits (224 bits per 100).
  const std::vector<std::uint64_t> f = {45, 13, 12, 16, 9, 5};
  CHECK(code_lengths(f) == std::vector<std::uint8_t>{1, 3, 3, 3, 4, 4});
  // Dyadic frequencies 1/2, 1/4, 1/8, 1/8 -> lengths 1, 2, 3, 3 (entropy achieved exactly).
  const std::vector<std::uint64_t> d = {4, 2, 1, 1};
  CHECK(code_lengths(d) == std::vector<std::uint8_t>{1, 2, 3, 3});
  // Equal frequencies over 8 symbols -> 3 bits each; unused symbols get 0.
  const std::vector<std::uint64_t> e = {7, 7, 0, 7, 7, 7, 7, 7, 7};
  CHECK(code_lengths(e) == std::vector<std::uint8_t>{3, 3, 0, 3, 3, 3, 3, 3, 3});
  // One symbol: length 1.
  const std::vector<std::uint64_t> one = {0, 0, 9};
  CHECK(code_lengths(one) == std::vector<std::uint8_t>{0, 0, 1});
}

TEST_CASE("Kraft sum is exactly one for random and Fibonacci frequencies under the length limit") {
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<std::uint64_t> f(2 + rng() % 255);
    for (auto& x : f) x = rng() % 1000;
    f[0] = 1;
    f[1] = 1;
    CHECK(kraft(code_lengths(f)) == 1.0);
  }
  // Fibonacci frequencies make Huffman's tree a path: unlimited, 40 symbols need 39 bits.
  std::vector<std::uint64_t> fib(40);
  fib[0] = fib[1] = 1;
  for (std::size_t i = 2; i < fib.size(); ++i) fib[i] = fib[i - 1] + fib[i - 2];
  for (int limit : {24, 11, 8, 6}) {
    const auto len = code_lengths(fib, limit);
    CHECK(kraft(len) == 1.0);
    for (auto l : len) {
      CHECK(l >= 1);
      CHECK(l <= limit);
    }
    // Monotone: a more frequent symbol never gets a longer code.
    for (std::size_t i = 1; i < len.size(); ++i) CHECK(len[i] <= len[i - 1]);
  }
  CHECK(huff_code_of([&] { (void)code_lengths(fib, 5); }) == errc::invalid_argument);  // 40 > 2^5
}

TEST_CASE("round trips: skewed, one-symbol, all-distinct, empty and long-code streams") {
  std::vector<std::vector<std::uint8_t>> cases;
  cases.push_back(skewed(100000, 1));
  cases.push_back(std::vector<std::uint8_t>(1000, 7));
  cases.push_back(std::vector<std::uint8_t>{42});
  std::vector<std::uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(255 - i);
  cases.push_back(all);
  cases.push_back({});
  // Fibonacci counts over 24 symbols: codes up to 23 bits, exercising the slow path.
  std::vector<std::uint8_t> fib;
  std::uint64_t a = 1, b = 1;
  for (int s = 0; s < 24; ++s) {
    for (std::uint64_t i = 0; i < a; ++i) fib.push_back(static_cast<std::uint8_t>(s * 7 % 256));
    const std::uint64_t c = a + b;
    a = b;
    b = c;
  }
  std::shuffle(fib.begin(), fib.end(), std::mt19937_64(5));
  cases.push_back(fib);
  for (const auto& c : cases) {
    const auto stream = huffman_encode(c);
    CHECK(huffman_decode(stream) == c);
  }
  // The long-code case really has codes above the lookup width.
  const huffman_decoder d(huffman_encode(fib));
  int longest = 0;
  for (auto l : d.lengths()) longest = std::max<int>(longest, l);
  CHECK(longest > k_lookup_bits);
}

TEST_CASE("payload size is the frequency-weighted code length, within one bit of the entropy") {
  const auto s = skewed(200000, 2, 0.3);
  std::map<int, double> count;
  for (auto x : s) count[x] += 1;
  double entropy = 0;
  for (auto& [sym, c] : count) entropy -= c / s.size() * std::log2(c / s.size());
  const huffman_decoder d(huffman_encode(s));
  double bits = 0;
  for (auto& [sym, c] : count) bits += c * d.lengths()[static_cast<std::size_t>(sym)];
  const double per_symbol = bits / static_cast<double>(s.size());
  CHECK(per_symbol >= entropy);
  CHECK(per_symbol < entropy + 1);
  const std::size_t table = 22 + d.lengths().size();
  CHECK(huffman_encode(s).size() == table + static_cast<std::size_t>((bits + 7) / 8));
}

TEST_CASE("truncated streams are format errors at every cut") {
  const auto data = skewed(300, 9);
  const auto stream = huffman_encode(data);
  for (std::size_t cut = 0; cut < stream.size(); ++cut) {
    const std::vector<std::uint8_t> part(stream.begin(), stream.begin() + static_cast<std::ptrdiff_t>(cut));
    INFO("cut " << cut);
    CHECK(huff_code_of([&] { (void)huffman_decode(part); }) == errc::format);
  }
}

TEST_CASE("corrupted streams are format errors or decode without reading outside the buffer") {
  const auto data = skewed(2000, 10);
  const auto stream = huffman_encode(data);
  // Corrupt code table: a length above 24, and an incomplete code.
  auto bad = stream;
  bad[14] = 30;
  CHECK(huff_code_of([&] { (void)huffman_decode(bad); }) == errc::format);
  bad = stream;
  bad[14] = static_cast<std::uint8_t>(bad[14] + 1);
  CHECK(huff_code_of([&] { (void)huffman_decode(bad); }) == errc::format);
  bad = stream;
  bad[0] ^= 1;  // magic
  CHECK(huff_code_of([&] { (void)huffman_decode(bad); }) == errc::format);
  bad = stream;
  bad[11] = 0x7f;  // absurd symbol count
  CHECK(huff_code_of([&] { (void)huffman_decode(bad); }) == errc::format);
  // Every single-byte payload flip: either a format error or some n-symbol output (a complete
  // prefix code decodes any bit string); never another failure (ASan checks the reads).
  const std::size_t start = stream.size() - (stream.size() - 22 - huffman_decoder(stream).lengths().size());
  for (std::size_t i = start; i < stream.size(); i += 7) {
    bad = stream;
    bad[i] ^= 0x5a;
    std::size_t decoded = data.size();
    errc code = errc{};
    try {
      decoded = huffman_decode(bad).size();
    } catch (const shrink::error& e) {
      code = e.code();
    }
    CHECK((code == errc::format || code == errc{}));
    CHECK(decoded == data.size());
  }
}

TEST_CASE("relative index gaps reproduce the filler rule by hand") {
  // 3-bit gaps (largest gap 7 zeros): entries at 1, 4, 15. Gaps: 1 (skip position 0), 2
  // (skip 2, 3), then 15 - 5 = 10 > 7: a filler at 5 + 7 = 12 (gap 7), then gap 2 to 15.
  const std::vector<std::uint64_t> pos = {1, 4, 15};
  const std::vector<float> val = {3.4f, 0.9f, 1.7f};
  const auto s = encode_relative<float>(pos, val, 3);
  CHECK(s.gaps == std::vector<std::uint8_t>{1, 2, 7, 2});
  CHECK(s.values == std::vector<float>{3.4f, 0.9f, 0.0f, 1.7f});
  CHECK(s.fillers == 1);
  CHECK(relative_positions(s.gaps, 3) == std::vector<std::uint64_t>{1, 4, 12, 15});
  std::vector<float> dense(16, 0.0f);
  scatter_relative<float>(s, dense);
  CHECK(dense[1] == 3.4f);
  CHECK(dense[4] == 0.9f);
  CHECK(dense[12] == 0.0f);
  CHECK(dense[15] == 1.7f);
  // 4 gaps at 3 bits = 12 bits = 2 bytes
  CHECK(s.packed_gaps().size() == 2);
}

TEST_CASE("relative index round trips a sparse vector and its gaps through Huffman") {
  std::mt19937_64 rng(4);
  std::vector<float> w(50000, 0.0f);
  for (auto& x : w)
    if (rng() % 10 == 0) x = static_cast<float>(static_cast<int>(rng() % 200) - 100) / 10.0f + 0.05f;
  w[49999] = 1.0f;
  for (int bits : {4, 5, 8, 1}) {
    const auto s = encode_relative(w, bits);
    std::vector<float> back(w.size(), 0.0f);
    scatter_relative<float>(s, back);
    CHECK(back == w);
    const auto huff = huffman_encode(s.gaps);
    CHECK(huffman_decode(huff) == s.gaps);
    // Huffman over gaps never costs more payload than the fixed width (plus its table).
    CHECK(huff.size() <= s.packed_gaps().size() + 22 + 256);
  }
}

TEST_CASE("relative index rejects bad input") {
  const std::vector<std::uint64_t> pos = {3, 3};
  const std::vector<float> val = {1, 2};
  CHECK(huff_code_of([&] { (void)encode_relative<float>(pos, val, 4); }) == errc::invalid_argument);
  CHECK(huff_code_of([&] { (void)encode_relative<float>(std::vector<std::uint64_t>{1}, val, 4); }) ==
        errc::shape_mismatch);
  CHECK(huff_code_of([&] { (void)encode_relative<float>(std::vector<std::uint64_t>{}, std::vector<float>{}, 9); }) ==
        errc::invalid_argument);
  CHECK(huff_code_of([&] { (void)relative_positions(std::vector<std::uint8_t>{16}, 4); }) == errc::format);
  relative_stream<float> s;
  s.bits = 4;
  s.gaps = {15, 15};
  s.values = {1, 2};
  std::vector<float> small(20, 0.0f);
  CHECK(huff_code_of([&] { scatter_relative<float>(s, small); }) == errc::format);
}
