// test_schemes.cpp: the technique schemes of the compressed format (codebook, nm, deep, xnor, lowrank): exact expansion, layouts, hostile records and bytes, file round trips with float fallback.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <shrink/compress.hpp>
#include <shrink/quant/quantize.hpp>
#include <string>
#include <vector>

#include "support/random.hpp"
#include "support/temp_dir.hpp"
#include <support/errors.hpp>

using shrink::testing::code_of;

namespace fs = std::filesystem;
using namespace shrink;

namespace {

fs::path temp_dir() { return testing::temp_dir("schemes"); }

/// A header holding an encoded tensor's entries and its record, as a file would.
io::safetensors_header header_of(const compress::encoded& e, const std::string& record_json) {
  io::safetensors_header h;
  std::uint64_t at = 0;
  for (const auto& en : e.entries) {
    h.tensors.push_back({en.name, en.type, en.shape, at, at + en.bytes.size()});
    at += en.bytes.size();
  }
  h.metadata["shrink.format"] = "1";
  h.metadata["shrink.tensor." + e.rec.name] = record_json;
  return h;
}

errc records_code(const compress::encoded& e, const std::string& from, const std::string& to) {
  std::string s = compress::to_json(e.rec);
  const auto pos = s.find(from);
  REQUIRE(pos != std::string::npos);
  s.replace(pos, from.size(), to);
  return code_of([&] { (void)compress::read_records(header_of(e, s)); });
}

/// Decodes with one entry's bytes changed by `edit`.
template <class Edit>
errc decode_code(const compress::encoded& e, const std::string& role, Edit&& edit) {
  std::vector<std::vector<std::byte>> copies;
  compress::entry_bytes b;
  copies.reserve(e.entries.size());
  for (const auto& [r, name] : e.rec.entries)
    for (const auto& en : e.entries)
      if (en.name == name) {
        copies.emplace_back(en.bytes.begin(), en.bytes.end());
        if (r == role) edit(copies.back());
        b[r] = copies.back();
      }
  return code_of([&] { (void)compress::decode(e.rec, b); });
}

const compress::entry* entry_of(const compress::encoded& e, const std::string& role) {
  for (const auto& en : e.entries)
    if (en.name == e.rec.entries.at(role)) return &en;
  return nullptr;
}

}  // namespace

TEST_CASE("codebook4: at most 16 entries, 4-bit LSB-first indices, expansion is codebook lookup") {
  // Eight distinct values (with zero): k-means with 16 entries represents each exactly.
  const std::vector<float> levels{0.0f, -0.75f, -0.5f, -0.25f, 0.125f, 0.25f, 0.5f, 1.0f};
  std::vector<float> w(6 * 10);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = levels[(i * 5 + i / 7) % levels.size()];
  const auto e = compress::encode_codebook("w", w, {6, 10}, io::dtype::f32, 16);
  CHECK(e.rec.scheme == "codebook");
  CHECK(e.rec.k <= 16);
  CHECK(e.rec.bits == (e.rec.k <= 2 ? 1 : static_cast<int>(std::bit_width(static_cast<unsigned>(e.rec.k - 1)))));
  const auto d = compress::decode(e);
  for (std::size_t i = 0; i < w.size(); ++i) REQUIRE(d[i] == w[i]);
  // Independent expansion from the documented layout: row r starts at byte r*ceil(10*bits/8).
  const auto* book = reinterpret_cast<const float*>(entry_of(e, "codebook")->bytes.data());
  const auto* idx = reinterpret_cast<const std::uint8_t*>(entry_of(e, "indices")->bytes.data());
  const std::size_t row_bytes = (10 * static_cast<std::size_t>(e.rec.bits) + 7) / 8;
  for (std::size_t r = 0; r < 6; ++r)
    for (std::size_t c = 0; c < 10; ++c) {
      unsigned u = 0;
      for (int b = 0; b < e.rec.bits; ++b) {
        const std::size_t bit = c * static_cast<std::size_t>(e.rec.bits) + static_cast<std::size_t>(b);
        u |= ((idx[r * row_bytes + bit / 8] >> (bit % 8)) & 1u) << b;
      }
      REQUIRE(book[u] == w[r * 10 + c]);
    }
  // Random weights: 16 entries, error below the largest gap between neighbouring entries.
  const auto x = testing::normal_floats(32 * 24, 3);
  const auto q = compress::encode_codebook("x", x, {32, 24}, io::dtype::f32, 16);
  CHECK(q.rec.k == 16);
  CHECK(q.rec.bits == 4);
  CHECK(entry_of(q, "indices")->bytes.size() == 32 * 12);
  const auto y = compress::decode(q);
  std::set<float> used(y.begin(), y.end());
  CHECK(used.size() <= 16);
  double sse = 0, sig = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sse += (x[i] - y[i]) * (x[i] - y[i]);
    sig += x[i] * x[i];
  }
  CHECK(10 * std::log10(sig / sse) > 18.0);  // Lloyd-Max 4-bit Gaussian: about 20 dB
}

TEST_CASE("2:4 keeps the two largest magnitudes of every four columns, positions 2 bits each") {
  const std::vector<float> w{1.0f, -3.0f, 2.0f, 0.5f, /**/ -0.1f, 0.2f, -0.4f, 0.3f,  //
                             9.0f, 8.0f, -7.0f, 6.0f, /**/ 0.0f, 0.0f, 1.5f, 0.0f};
  const auto e = compress::encode_nm("w", w, {2, 8}, io::dtype::f32, 2, 4);
  // Row 0: keep (1, 2) and (2, 3); row 1: keep (0, 1), and in the group (0, 0, 1.5, 0) the
  // three zeros tie and the lower index is pruned first, so it keeps (2, 3) = (1.5, 0).
  const std::vector<float> values{-3.0f, 2.0f, -0.4f, 0.3f, 9.0f, 8.0f, 1.5f, 0.0f};
  const auto* v = reinterpret_cast<const float*>(entry_of(e, "values")->bytes.data());
  for (std::size_t i = 0; i < values.size(); ++i) CHECK(v[i] == values[i]);
  // Nibbles: first kept position in the low 2 bits. Row 0: (1 | 2<<2) = 0x9, (2 | 3<<2) = 0xE
  // -> word 0x00E9; row 1: (0 | 1<<2) = 0x4, (2 | 3<<2) = 0xE -> 0x00E4. Little-endian bytes.
  const auto& pos = entry_of(e, "positions")->bytes;
  REQUIRE(pos.size() == 4);
  CHECK(static_cast<int>(pos[0]) == 0xE9);
  CHECK(static_cast<int>(pos[1]) == 0x00);
  CHECK(static_cast<int>(pos[2]) == 0xE4);
  CHECK(static_cast<int>(pos[3]) == 0x00);
  const auto d = compress::decode(e);
  const std::vector<float> dense{0, -3, 2, 0, 0, 0, -0.4f, 0.3f, 9, 8, 0, 0, 0, 0, 1.5f, 0};
  for (std::size_t i = 0; i < dense.size(); ++i) CHECK(d[i] == dense[i]);
  // Random, rank 3: exactly half zero, every kept value is one of the two largest of its group.
  const auto x = testing::normal_floats(4 * 3 * 8, 9);
  const auto q = compress::encode_nm("x", x, {4, 3, 8}, io::dtype::f32, 2, 4);
  const auto y = compress::decode(q);
  for (std::size_t g = 0; g < x.size() / 4; ++g) {
    int kept = 0;
    for (std::size_t p = 0; p < 4; ++p) {
      const std::size_t i = g * 4 + p;
      if (y[i] == 0.0f) continue;
      ++kept;
      REQUIRE(y[i] == x[i]);
      int larger = 0;
      for (std::size_t o = 0; o < 4; ++o) larger += std::fabs(x[g * 4 + o]) > std::fabs(x[i]);
      REQUIRE(larger <= 1);
    }
    REQUIRE(kept == 2);
  }
}

TEST_CASE("deep-compression: 90 percent magnitude pruning, 32-entry codebook with zero code, Huffman streams") {
  const auto x = testing::normal_floats(40 * 50, 21);
  const auto e = compress::encode_deep("x", x, {40, 50}, io::dtype::f32, 0.9, 32);
  CHECK(e.rec.k <= 32);
  CHECK(e.rec.gap_bits == 8);
  const auto y = compress::decode(e);
  // The kept set is the 200 largest |x| (distinct magnitudes almost surely).
  std::vector<float> mags(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) mags[i] = std::fabs(x[i]);
  std::vector<float> sorted = mags;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  const float threshold = sorted[199];
  std::set<float> levels;
  std::size_t nonzero = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (mags[i] >= threshold) {
      REQUIRE(y[i] != 0.0f);
      REQUIRE(std::signbit(y[i]) == std::signbit(x[i]));
      REQUIRE(std::fabs(y[i] - x[i]) < 0.25f * mags[i] + 0.05f);
      ++nonzero;
    } else {
      REQUIRE(y[i] == 0.0f);
    }
    levels.insert(y[i]);
  }
  CHECK(nonzero == 200);
  CHECK(levels.size() <= 32);
  // Stored bytes: well under the 5 bits per kept weight plus the gaps' 8 bits.
  CHECK(e.bytes() < 200 * 13 / 8 + 32 * 4 + 2 * 300);

  // Gaps over 255 need filler entries; the expansion still puts every value in place.
  std::vector<float> far(2 * 3000, 0.001f);
  for (std::size_t i = 0; i < 300; ++i) far[i < 150 ? i : 6000 - 300 + i] = 1.0f + static_cast<float>(i % 7);
  for (std::size_t i = 0; i < 300; ++i) far[3000 + (i < 150 ? i * 7 : 2000 + i)] = -2.0f;
  const auto f = compress::encode_deep("far", far, {2, 3000}, io::dtype::f32, 0.9, 32);
  const auto fy = compress::decode(f);
  for (std::size_t i = 0; i < far.size(); ++i) REQUIRE(fy[i] == (std::fabs(far[i]) >= 1.0f ? far[i] : 0.0f));
}

TEST_CASE("xnor: signs with per-row mean absolute value, bit 1 is negative") {
  const auto x = testing::normal_floats(5 * 70, 4);
  const auto e = compress::encode_xnor("x", x, {5, 70}, io::dtype::f32);
  REQUIRE(entry_of(e, "signs")->bytes.size() == 5 * 16);
  const auto y = compress::decode(e);
  for (std::size_t r = 0; r < 5; ++r) {
    double s = 0;
    for (std::size_t c = 0; c < 70; ++c) s += std::fabs(static_cast<double>(x[r * 70 + c]));
    const auto alpha = static_cast<float>(s / 70.0);
    for (std::size_t c = 0; c < 70; ++c) REQUIRE(y[r * 70 + c] == (x[r * 70 + c] < 0.0f ? -alpha : alpha));
  }
  const auto& signs = entry_of(e, "signs")->bytes;
  CHECK(((static_cast<unsigned>(signs[0]) & 1u) != 0) == (x[0] < 0.0f));
}

TEST_CASE("lowrank: kept energy picks the rank, factors expand in double to the matrix") {
  // W = u1 v1^T * 10 + u2 v2^T * 1 (orthogonal u's and v's): energies 100 and 1.
  const std::size_t m = 12, n = 9;
  std::vector<float> w(m * n);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      const double u1 = 1.0 / std::sqrt(double(m)), u2 = (i % 2 ? 1.0 : -1.0) / std::sqrt(double(m));
      const double v1 = 1.0 / 3.0, v2 = (j < 4 ? 1.0 : (j < 8 ? -1.0 : 0.0)) / std::sqrt(8.0);
      w[i * n + j] = static_cast<float>(10 * u1 * v1 + u2 * v2);
    }
  const auto e1 = compress::encode_lowrank("w", w, {12, 9}, io::dtype::f32, 0.9);
  CHECK(e1.rec.rank == 1);
  const auto e2 = compress::encode_lowrank("w", w, {12, 9}, io::dtype::f32, 0.999);
  CHECK(e2.rec.rank == 2);
  const auto y = compress::decode(e2);
  for (std::size_t i = 0; i < w.size(); ++i) REQUIRE(std::fabs(y[i] - w[i]) < 1e-5f);
  // The expansion is exactly float(sum over t of double(a[i][t]) * double(b[t][j])).
  const auto* a = reinterpret_cast<const float*>(entry_of(e2, "a")->bytes.data());
  const auto* b = reinterpret_cast<const float*>(entry_of(e2, "b")->bytes.data());
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j)
      REQUIRE(y[i * n + j] == static_cast<float>(double(a[i * 2]) * double(b[j]) + double(a[i * 2 + 1]) * double(b[n + j])));
}

TEST_CASE("technique records: malformed metadata and corrupt bytes are format errors") {
  const auto x = testing::normal_floats(8 * 16, 2);
  const std::vector<std::int64_t> shape{8, 16};
  const auto cb = compress::encode_codebook("w", x, shape, io::dtype::f32, 16);
  const auto nm = compress::encode_nm("w", x, shape, io::dtype::f32, 2, 4);
  const auto dp = compress::encode_deep("w", x, shape, io::dtype::f32, 0.9, 32);
  const auto xn = compress::encode_xnor("w", x, shape, io::dtype::f32);
  const auto lr = compress::encode_lowrank("w", x, shape, io::dtype::f32, 0.9);
  for (const auto* e : {&cb, &nm, &dp, &xn, &lr}) {
    CHECK(compress::read_records(header_of(*e, compress::to_json(e->rec))).size() == 1);
    CHECK(records_code(*e, "\"entries\"", "\"extra\":1,\"entries\"") == errc::format);  // unknown field
    CHECK(records_code(*e, "\"scheme\":\"", "\"scheme\":\"x") == errc::format);            // unknown scheme
    if (e != &dp) CHECK(records_code(*e, "[8,16]", "[16,16]") == errc::format);          // sizes mismatch
    CHECK(records_code(*e, ".__", ".missing__") == errc::format);                          // missing entry
    CHECK(records_code(*e, "\"F32\"", "\"I32\"") == errc::format);
  }
  CHECK(records_code(cb, "\"bits\":4", "\"bits\":3") == errc::format);  // 16 codes need 4 bits
  CHECK(records_code(cb, "\"k\":16", "\"k\":0") == errc::format);
  CHECK(records_code(nm, "\"m\":4", "\"m\":3") == errc::format);        // 3 does not divide 16
  CHECK(records_code(nm, "\"n\":2", "\"n\":4") == errc::format);        // n < m
  CHECK(records_code(dp, "\"gap_bits\":8", "\"gap_bits\":9") == errc::format);
  CHECK(records_code(lr, "\"rank\":", "\"rank\":9") == errc::format);   // rank 9x > min(8, 16)
  CHECK(records_code(lr, "\"rank\":", "\"rank\":0") == errc::format);
  CHECK(records_code(xn, "\"entries\":{", "\"entries\":{\"extra\":\"w.__xnor.alpha\",") == errc::format);

  // Corrupt bytes.
  CHECK(decode_code(cb, "codebook", [](auto&) {}) == errc{});
  CHECK(decode_code(cb, "codebook", [](auto& b) { b.pop_back(); }) == errc::format);
  CHECK(decode_code(cb, "codebook", [](auto& b) {
          const float nan = NAN;
          std::memcpy(b.data(), &nan, 4);
        }) == errc::format);
  const auto cb_small = compress::encode_codebook("s", std::vector<float>{0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f}, {2, 3},
                                                   io::dtype::f32, 16);
  REQUIRE(cb_small.rec.k == 6);  // 3 bits; code 7 is outside the codebook
  CHECK(decode_code(cb_small, "indices", [](auto& b) { b[0] = std::byte{0xFF}; }) == errc::format);
  CHECK(decode_code(nm, "positions", [](auto& b) { b[0] = std::byte{0x05}; }) == errc::format);  // positions 1, 1
  CHECK(decode_code(nm, "positions", [](auto& b) { b[0] = std::byte{0x03}; }) == errc::format);  // positions 3, 0
  CHECK(decode_code(dp, "codebook", [](auto& b) { b[3] = std::byte{0x3F}; }) == errc::format);   // entry 0 not zero
  CHECK(decode_code(dp, "gaps", [](auto& b) { b.resize(b.size() / 2); }) == errc::format);
  CHECK(decode_code(dp, "indices", [](auto& b) { b[0] = std::byte{0}; }) == errc::format);       // bad magic
  CHECK(decode_code(xn, "signs", [](auto& b) { b[1] = std::byte{0xFF}; }) == errc{});           // columns 8..15
  CHECK(decode_code(xn, "signs", [](auto& b) { b[2] = std::byte{0x01}; }) == errc::format);      // padding bit 16
  CHECK(decode_code(xn, "signs", [](auto& b) { b[7] = std::byte{0x80}; }) == errc::format);      // padding bit 63
  CHECK(decode_code(lr, "a", [](auto& b) {
          const float inf = INFINITY;
          std::memcpy(b.data(), &inf, 4);
        }) == errc::format);
}

TEST_CASE("technique presets: file round trips with float fallback and notes") {
  const fs::path in = temp_dir() / "m.safetensors", out = temp_dir() / "m.c.safetensors",
                 back = temp_dir() / "m.b.safetensors";
  const auto w = testing::normal_floats(32 * 24, 31);
  const auto odd = testing::normal_floats(8 * 6, 32);
  std::vector<std::uint16_t> wb(w.size());
  io::convert_fp32_to_bf16(w, wb);
  const std::vector<float> bias(32, 0.25f);
  {
    io::safetensors_writer wr(in);
    wr.add<std::uint16_t>("a.weight", io::dtype::bf16, {32, 24}, wb);
    wr.add<float>("a.bias", io::dtype::f32, {32}, bias);
    wr.add<float>("b.weight", io::dtype::f32, {8, 6}, odd);
    wr.finish();
  }
  for (const char* preset : {"codebook4", "2:4", "deep-compression", "xnor", "lowrank:energy=0.9"}) {
    INFO(preset);
    compress::compress_options o;
    o.recipe = compress::preset(preset);
    o.threads = 2;
    const auto rep = compress::compress_file(in, out, o);
    REQUIRE(rep.tensors.size() == 3);
    CHECK(rep.tensors[1].scheme == "float");  // 1-D bias kept by the recipe
    const bool nm = std::string(preset) == "2:4";
    CHECK(rep.tensors[2].scheme == (nm ? "float" : compress::label(o.recipe.base)));
    CHECK(rep.tensors[2].note.empty() == !nm);
    compress::decompress_file(out, back, 1);
    const io::safetensors_reader a(in), c(out), b(back);
    const auto recs = compress::read_records(c.header());
    CHECK(recs.size() == (nm ? 1u : 2u));
    for (const auto& t : a.tensors()) {
      const auto& u = b.at(t.name);
      CHECK(u.type == t.type);
      CHECK(u.shape == t.shape);
      // The decompressed file holds exactly the expansion of the compressed one (rounded to the dtype).
      const auto x = compress::read_expanded(c, recs, t.name);
      const auto y = b.read_float(u);
      REQUIRE(x.size() == y.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        float want = x[i];
        if (t.type == io::dtype::bf16) {
          std::uint16_t h = 0;
          io::convert_fp32_to_bf16(std::span<const float>(&x[i], 1), std::span<std::uint16_t>(&h, 1));
          io::convert_bf16_to_fp32(std::span<const std::uint16_t>(&h, 1), std::span<float>(&want, 1));
        }
        REQUIRE(y[i] == want);
      }
    }
  }
  CHECK_THROWS_AS(compress::preset("lowrank:energy=0"), shrink::error);
  CHECK_THROWS_AS(compress::preset("lowrank:energy=1.5"), shrink::error);
  CHECK_THROWS_AS(compress::preset("lowrank:energy=x"), shrink::error);
}

// PyTorch's quantize_val computes nearbyint(x * (1.0f / scale)); quant::quantize follows ONNX
// QuantizeLinear, nearbyint(x / scale) (docs/quantization.md, "Division"). The two differ in
// about 1 code in 10^4 on random rows (measured: 2451 of 25.6 million), mostly at a row's
// extreme where x / scale is near -127.5. int8 therefore keeps its own reciprocal-multiply
// encoder; this case pins a value where the conventions disagree.
TEST_CASE("int8 follows PyTorch's reciprocal multiply where ONNX division rounds differently") {
  const float x = -0x1.1da544p-5f;
  const std::vector<float> w{x, 0.001f};
  const float scale = std::max(-x / 127.5f, std::numeric_limits<float>::epsilon());
  const float torch = std::nearbyint(x * (1.0f / scale));
  const float onnx = std::nearbyint(x / scale);
  REQUIRE(torch != onnx);  // the case matters
  const auto e = compress::encode_int8("w", w, {1, 2}, io::dtype::f32);
  CHECK(static_cast<float>(reinterpret_cast<const std::int8_t*>(e.entries[0].bytes.data())[0]) == std::clamp(torch, -128.0f, 127.0f));
  quant::options o;
  o.quant_scheme = quant::k_qint8_symmetric;
  o.quant_granularity = quant::granularity::per_channel(0);
  const auto q = quant::quantize(tensor_view<const float, 2>(w.data(), shape<2>{1, 2}), o);
  CHECK(q.scales()[0] == scale);  // same observer
  CHECK(static_cast<float>(q.code(0, 0)) == std::clamp(onnx, -128.0f, 127.0f));
}
