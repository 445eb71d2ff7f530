// test_compress.cpp: compressed-file format: PyTorch-exact int8, b-bit groups, records, hostile metadata, recipes, the allocator, whole-file round trips.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <shrink/compress.hpp>
#include <string>
#include <vector>

#include "support/random.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace shrink;

namespace {

fs::path temp_dir() { return testing::temp_dir("compress"); }

errc code_of_records(const io::safetensors_header& h) {
  try {
    (void)compress::read_records(h);
  } catch (const shrink::error& e) {
    return e.code();
  }
  return errc{};
}

}  // namespace

// Expected values follow PyTorch's published formulas, evaluated in float32 by hand (see
// docs/format.md, "int8"): PerChannelMinMaxObserver(qint8, per_channel_symmetric) gives
// scale = max(max(-min(x_min, 0), max(x_max, 0)) / ((127 - (-128)) / 2), FLT_EPSILON),
// zero_point = 0; quantize_per_channel: q = clamp(nearbyint(x * (1.0f / scale)), -128, 127);
// dequantize: q * scale.
TEST_CASE("int8 preset matches PyTorch per-channel symmetric qint8 quantize and dequantize") {
  const std::vector<float> w{-1.0f, 0.5f, 0.25f, 0.0f,   //
                             0.3f, 0.1f, -0.05f, 0.2f,   //
                             0.0f, 0.0f, 0.0f, 0.0f,     //
                             2.55f, -1.0f, 1.275f, 0.01f};
  const auto e = compress::encode_int8("w", w, {4, 4}, io::dtype::f32);
  // float32(1 / 127.5) = 0x1.010102p-7; float32(0.3f / 127.5) = 0x1.34679cp-9; all-zero row:
  // scale clamps to FLT_EPSILON = 2^-23; float32(2.55f / 127.5) = 0x1.47ae14p-6.
  const std::vector<float> scales{0x1.010102p-7f, 0x1.34679cp-9f, 0x1p-23f, 0x1.47ae14p-6f};
  // Row 0: -1 * (1/scale) = -127.49999 -> -127 (not a tie in float32).
  // Row 1: 0.3f * inv = 127.49999 -> 127, 0.1f -> 42.499996 -> 42.
  // Row 3: 2.55f * inv = 127.5 exactly -> 128 (ties to even) -> clamped to 127; 0.01f -> 0.5 -> 0 (even).
  const std::vector<int> codes{-127, 64, 32, 0, 127, 42, -21, 85, 0, 0, 0, 0, 127, -50, 64, 0};
  REQUIRE(e.entries.size() == 2);
  CHECK(e.entries[0].name == "w.__q8.codes");
  CHECK(e.entries[0].type == io::dtype::i8);
  CHECK(e.entries[1].name == "w.__q8.scales");
  const auto* q = reinterpret_cast<const std::int8_t*>(e.entries[0].bytes.data());
  const auto* s = reinterpret_cast<const float*>(e.entries[1].bytes.data());
  for (std::size_t r = 0; r < 4; ++r) CHECK(s[r] == scales[r]);
  for (std::size_t i = 0; i < 16; ++i) CHECK(static_cast<int>(q[i]) == codes[i]);
  const auto d = compress::decode(e.rec, e.entries[0].bytes.span(), e.entries[1].bytes.span());
  for (std::size_t i = 0; i < 16; ++i) CHECK(d[i] == static_cast<float>(codes[i]) * scales[i / 4]);
  CHECK_THROWS_AS(compress::encode_int8("w", std::vector<float>{NAN, 1}, {1, 2}, io::dtype::f32), shrink::error);
}

TEST_CASE("b-bit group scheme: symmetric grid, F16 scales, error within half a step") {
  const auto w = testing::normal_floats(5 * 70, 3);
  for (int bits : {2, 3, 4, 8}) {
    const auto e = compress::encode_int("w", w, {5, 70}, io::dtype::bf16, bits, 32);
    CHECK(e.rec.scale_dtype == io::dtype::f16);
    const auto sz = compress::sizes_of(e.rec);
    CHECK(sz.code_bytes == 5 * ((70 * static_cast<std::uint64_t>(bits) + 7) / 8));
    CHECK(sz.scales == 5 * 3);
    const auto d = compress::decode(e.rec, e.entries[0].bytes.span(), e.entries[1].bytes.span());
    const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
    for (std::size_t r = 0; r < 5; ++r)
      for (std::size_t k = 0; k < 3; ++k) {
        float amax = 0;
        for (std::size_t c = k * 32; c < std::min<std::size_t>(70, (k + 1) * 32); ++c) amax = std::max(amax, std::fabs(w[r * 70 + c]));
        const float step = io::fp16_to_fp32(io::fp32_to_fp16(amax / qmax));
        for (std::size_t c = k * 32; c < std::min<std::size_t>(70, (k + 1) * 32); ++c) {
          const float code = d[r * 70 + c] / step;
          CHECK(std::fabs(code - std::nearbyint(code)) < 1e-3f);      // on the grid
          CHECK(std::fabs(d[r * 70 + c] - w[r * 70 + c]) <= 0.5f * step * 1.001f + 1e-7f);
        }
      }
  }
}

TEST_CASE("compressed metadata reader rejects malformed records") {
  const auto w = testing::normal_floats(64, 5);
  const auto e = compress::encode_int("w", w, {4, 16}, io::dtype::f32, 4, 8);
  io::safetensors_header h;
  std::uint64_t at = 0;
  for (const auto& en : e.entries) {
    h.tensors.push_back({en.name, en.type, en.shape, at, at + en.bytes.size()});
    at += en.bytes.size();
  }
  h.metadata["shrink.format"] = "1";
  const std::string good = compress::to_json(e.rec);
  h.metadata["shrink.tensor.w"] = good;
  REQUIRE(compress::read_records(h).size() == 1);
  auto with = [&](std::string key, std::string value) {
    auto m = h;
    m.metadata[key] = value;
    return code_of_records(m);
  };
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    const auto pos = s.find(from);
    REQUIRE(pos != std::string::npos);
    s.replace(pos, from.size(), to);
    return with("shrink.tensor.w", s);
  };
  CHECK(with("shrink.format", "2") == errc::format);
  CHECK(with("shrink.tensor.w", "{") == errc::format);
  CHECK(with("shrink.tensor.w", "[]") == errc::format);
  CHECK(with("shrink.tensor.w", "\xff") == errc::format);
  CHECK(with("shrink.tensor.", good) == errc::format);
  CHECK(replaced("\"int\"", "\"int9\"") == errc::format);
  CHECK(replaced("\"bits\":4", "\"bits\":9") == errc::format);
  CHECK(replaced("\"bits\":4", "\"bits\":\"4\"") == errc::format);
  CHECK(replaced("\"group\":8", "\"group\":0") == errc::format);
  CHECK(replaced("\"group\":8", "\"group\":4") == errc::format);      // sizes no longer match
  CHECK(replaced("[4,16]", "[4,17]") == errc::format);
  CHECK(replaced("[4,16]", "[4294967296,4294967296]") == errc::overflow);
  CHECK(replaced("\"dtype\":\"F32\"", "\"dtype\":\"I8\"") == errc::format);
  CHECK(replaced("\"scale_dtype\":\"F16\"", "\"scale_dtype\":\"F32\"") == errc::format);
  CHECK(replaced("w.__q4g8.codes", "missing") == errc::format);
  CHECK(replaced("\"scheme\"", "\"scheme\":\"int\",\"scheme\"") == errc::format);  // duplicate key
  auto no_version = h;
  no_version.metadata.erase("shrink.format");
  CHECK(code_of_records(no_version) == errc::format);
}

TEST_CASE("recipes: presets, JSON overrides by glob, first and last layer") {
  CHECK(compress::preset("int8").base.scheme == "int8");
  const auto r4 = compress::preset("int4-g32");
  CHECK(r4.base.scheme == "int");
  CHECK(r4.base.bits == 4);
  CHECK(r4.base.group == 32);
  CHECK(compress::preset("int4-g128").base.group == 128);
  CHECK_THROWS_AS(compress::preset("int9-g32"), shrink::error);
  CHECK_THROWS_AS(compress::preset("banana"), shrink::error);
  const auto j = compress::parse_recipe_json(
      R"({"preset":"int4-g64","overrides":[{"pattern":"*.embed*","preset":"int8"},{"pattern":"@last","scheme":"float"}]})");
  CHECK(compress::resolve(j, "layers.0.weight", 2, true, false).scheme == "int");
  CHECK(compress::resolve(j, "layers.0.bias", 1, false, false).scheme == "float");  // 1-D kept
  CHECK(compress::resolve(j, "model.embed_tokens", 2, false, false).scheme == "int8");
  CHECK(compress::resolve(j, "lm_head", 2, false, true).scheme == "float");
  CHECK_THROWS_AS(compress::parse_recipe_json(R"({"scheme":"int","bits":1})"), shrink::error);
}

TEST_CASE("greedy allocator takes the cheapest error per byte saved") {
  // Tensor a loses little by going 100 -> 50 bytes (error 1); b loses a lot (error 10).
  std::vector<compress::tensor_costs> t{{"a", {{100, 0}, {50, 1}, {25, 100}}}, {"b", {{100, 0}, {50, 10}}}};
  auto x = compress::allocate_greedy(t, 150);
  CHECK(x.met);
  CHECK(x.choice == std::vector<std::size_t>{1, 0});
  x = compress::allocate_greedy(t, 100);
  CHECK(x.choice == std::vector<std::size_t>{1, 1});
  CHECK(x.bytes == 100);
  CHECK(x.error == 11);
  x = compress::allocate_greedy(t, 10);
  CHECK_FALSE(x.met);
  CHECK(x.choice == std::vector<std::size_t>{2, 1});
}

TEST_CASE("compress then decompress restores names, shapes and dtypes, within the scheme's error") {
  const fs::path in = temp_dir() / "model.safetensors", out = temp_dir() / "model.q.safetensors",
                 back = temp_dir() / "model.back.safetensors";
  const auto w = testing::normal_floats(64 * 48, 11);
  std::vector<std::uint16_t> wb(w.size());
  io::convert_fp32_to_bf16(w, wb);
  const std::vector<float> bias(64, 0.5f);
  const std::vector<std::int64_t> ids{1, 2, 3};
  {
    io::safetensors_writer wr(in);
    wr.add_metadata("format", "pt");
    wr.add<std::uint16_t>("l0.weight", io::dtype::bf16, {64, 48}, wb);
    wr.add<float>("l0.bias", io::dtype::f32, {64}, bias);
    wr.add<float>("l1.weight", io::dtype::f32, {64, 48}, w);
    wr.add<std::int64_t>("ids", io::dtype::i64, {3}, ids);
    wr.finish();
  }
  for (const char* preset : {"int8", "int4-g32"}) {
    compress::compress_options o;
    o.recipe = compress::preset(preset);
    o.threads = 2;
    const auto rep = compress::compress_file(in, out, o);
    CHECK(rep.bytes_after < rep.bytes_before);
    compress::decompress_file(out, back, 1);
    const io::safetensors_reader a(in), b(back);
    REQUIRE(b.tensors().size() == 4);
    CHECK(b.metadata().at("format") == "pt");
    CHECK(b.metadata().count("shrink.format") == 0);
    for (const auto& t : a.tensors()) {
      const auto& u = b.at(t.name);
      CHECK(u.type == t.type);
      CHECK(u.shape == t.shape);
      const auto x = a.read_float(t), y = b.read_float(u);
      const double tol = std::string(preset) == "int8" ? 0.03 : 0.5;
      for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(std::fabs(x[i] - y[i]) <= tol);
    }
    CHECK(b.bytes(b.at("ids")).size() == 24);
    CHECK(std::memcmp(b.bytes(b.at("ids")).data(), ids.data(), 24) == 0);
  }
  // Same bytes whatever the thread count.
  compress::compress_options o;
  o.recipe = compress::preset("int4-g32");
  o.threads = 1;
  compress::compress_file(in, out, o);
  const auto one = io::mapped_file(out);
  std::vector<std::byte> first(one.bytes().begin(), one.bytes().end());
  o.threads = 3;
  compress::compress_file(in, out, o);
  const auto three = io::mapped_file(out);
  CHECK(std::equal(first.begin(), first.end(), three.bytes().begin(), three.bytes().end()));
  // Mixed precision under a budget of 5 bits per weight: met, and smaller than int8.
  o.target_bits = 5.0;
  const auto rep = compress::compress_file(in, out, o);
  REQUIRE(rep.alloc);
  CHECK(rep.alloc->met);
  std::uint64_t weights = 0;
  for (const auto& t : rep.tensors) weights += io::checked_count(t.shape, "");
  CHECK(static_cast<double>(rep.bytes_after) <= 5.0 * static_cast<double>(weights) / 8.0);
  // Compressing a compressed file is refused; a failed compress leaves no output.
  CHECK_THROWS_AS(compress::compress_file(out, temp_dir() / "twice.safetensors", o), shrink::error);
  CHECK_FALSE(fs::exists(temp_dir() / "twice.safetensors"));
}

namespace {

/// Fraction of exact zeros in a tensor of a decompressed file.
double zero_fraction(const io::safetensors_reader& r, const std::string& name) {
  const auto x = r.read_float(r.at(name));
  std::size_t z = 0;
  for (std::size_t i = 0; i < x.size(); ++i) z += x[i] == 0.0f;
  return static_cast<double>(z) / static_cast<double>(x.size());
}

}  // namespace

TEST_CASE("mixed precision of a pruning recipe also chooses each tensor's sparsity") {
  const fs::path in = temp_dir() / "prunable.safetensors", out = temp_dir() / "prunable.q.safetensors",
                 back = temp_dir() / "prunable.back.safetensors";
  // "spiky": 96 % of the weights are tiny (|w| ~ 1e-4), so pruning up to 95 % costs almost
  // nothing. "flat": every |w| is in [0.5, 1], so every pruned weight costs at least 0.25.
  const std::size_t rows = 128, cols = 128;
  auto spiky = testing::normal_floats(rows * cols, 21);
  for (std::size_t i = 0; i < spiky.size(); ++i)
    if (i % 25 != 0) spiky[i] *= 1e-4f;
  auto flat = testing::normal_floats(rows * cols, 22);
  for (float& v : flat) v = std::copysign(0.5f + 0.5f * std::fabs(std::tanh(v)), v);
  {
    io::safetensors_writer wr(in);
    wr.add<float>("spiky.weight", io::dtype::f32, {128, 128}, spiky);
    wr.add<float>("flat.weight", io::dtype::f32, {128, 128}, flat);
    wr.finish();
  }
  compress::compress_options o;
  o.recipe = compress::preset("deep-compression");
  o.threads = 2;
  o.target_bits = 3.0;
  const auto rep = compress::compress_file(in, out, o);
  REQUIRE(rep.alloc);
  CHECK(rep.alloc->met);
  CHECK(static_cast<double>(rep.bytes_after) <= 3.0 * 2.0 * rows * cols / 8.0);
  compress::decompress_file(out, back, 1);
  const io::safetensors_reader b(back);
  // The cheap-to-prune tensor is pruned harder than the expensive one: sparsity was searched.
  const double zs = zero_fraction(b, "spiky.weight"), zf = zero_fraction(b, "flat.weight");
  CHECK(zs >= 0.9);
  CHECK(zs > zf + 0.1);
  bool any_other_sparsity = false;
  for (const auto& t : rep.tensors) any_other_sparsity |= t.scheme.find("sparsity=") != std::string::npos;
  CHECK(any_other_sparsity);

  // N:M: a tensor with exactly one non-zero per group of 4 is stored as 1:4 at no error
  // when the budget asks for fewer bits than 2:4 needs.
  const fs::path in2 = temp_dir() / "nm.safetensors", out2 = temp_dir() / "nm.q.safetensors";
  auto one_of_four = testing::normal_floats(rows * cols, 23);
  for (std::size_t i = 0; i < one_of_four.size(); ++i)
    if (i % 4 != (i / cols) % 4) one_of_four[i] = 0.0f;
  {
    io::safetensors_writer wr(in2);
    wr.add<float>("sparse.weight", io::dtype::f32, {128, 128}, one_of_four);
    wr.finish();
  }
  o.recipe = compress::preset("2:4");
  o.target_bits = 12.0;  // 2:4 with fp16 values needs more than 8 + metadata bits per weight
  const auto rep2 = compress::compress_file(in2, out2, o);
  REQUIRE(rep2.alloc);
  CHECK(rep2.alloc->met);
  REQUIRE(rep2.tensors.size() == 1);
  CHECK(rep2.tensors[0].scheme == "1:4");
  CHECK(rep2.tensors[0].sse == 0.0);
}
