// test_io.cpp: fp16/bf16 conversion on every path, safetensors and .npy round trips, and every hostile-file rule.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <shrink/io.hpp>
#include <string>
#include <vector>

#include "support/isa.hpp"
#include "support/random.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace shrink;

namespace {

fs::path temp_dir() { return testing::temp_dir("io"); }

std::vector<std::byte> st_bytes(const std::string& header, std::size_t data_bytes, std::uint64_t claimed_len = ~0ull) {
  const std::uint64_t n = claimed_len == ~0ull ? header.size() : claimed_len;
  std::vector<std::byte> f(8 + header.size() + data_bytes, std::byte{0});
  for (int i = 0; i < 8; ++i) f[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  std::memcpy(f.data() + 8, header.data(), header.size());
  return f;
}

errc code_of(std::span<const std::byte> file) {
  try {
    (void)io::parse_safetensors(file);
  } catch (const shrink::error& e) {
    return e.code();
  }
  return errc{};
}

// An independent fp16 -> double decoder from the definition: (-1)^s 2^(e-15) (1 + m/1024),
// subnormals 2^-14 (m/1024).
double half_value(std::uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  const double mag = e == 0 ? std::ldexp(m / 1024.0, -14) : std::ldexp(1.0 + m / 1024.0, e - 15);
  return s ? -mag : mag;
}

}  // namespace

TEST_CASE("fp16 to fp32 is exact for all 65536 halves on every path") {
  std::vector<std::uint16_t> all(65536);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
  std::vector<float> ref(all.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    const std::uint16_t h = all[i];
    if (((h >> 10) & 31) == 31) continue;
    REQUIRE(static_cast<double>(io::fp16_to_fp32(h)) == half_value(h));
  }
  io::half_impl::fp16_to_fp32_reference(all.data(), ref.data(), all.size());
  testing::for_each_isa([&](kernels::isa) {
    std::vector<float> out(all.size());
    io::convert_fp16_to_fp32(all, out);
    for (std::size_t i = 0; i < all.size(); ++i)
      REQUIRE(std::bit_cast<std::uint32_t>(out[i]) == std::bit_cast<std::uint32_t>(ref[i]));
  });
  CHECK(std::isinf(io::fp16_to_fp32(0x7c00)));
  CHECK(std::isnan(io::fp16_to_fp32(0x7c01)));
}

TEST_CASE("fp32 to fp16 rounds to nearest even and every path agrees bit for bit") {
  // Round trip of every half is the identity (non-NaN).
  for (std::uint32_t h = 0; h < 65536; ++h)
    if (((h >> 10) & 31) != 31 || (h & 1023) == 0)
      REQUIRE(io::fp32_to_fp16(io::fp16_to_fp32(static_cast<std::uint16_t>(h))) == h);
  // Ties: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 -> even (1.0); 1 + 3*2^-11 -> 1 + 2^-9.
  CHECK(io::fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
  CHECK(io::fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
  CHECK(io::fp32_to_fp16(65519.99f) == 0x7bff);
  CHECK(io::fp32_to_fp16(65520.0f) == 0x7c00);  // halfway to 2^16 rounds to inf
  CHECK(io::fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);  // tie to even zero
  CHECK(io::fp32_to_fp16(std::ldexp(1.5f, -25)) == 0x0001);
  CHECK(io::fp32_to_fp16(-std::ldexp(1.0f, -24)) == 0x8001);
  // Many floats: random bit patterns (incl. NaN, inf, subnormals) and every half +- 1 ulp.
  std::vector<float> xs;
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) xs.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(rng())));
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const std::uint32_t b = std::bit_cast<std::uint32_t>(io::fp16_to_fp32(static_cast<std::uint16_t>(h)));
    for (std::uint32_t d : {0x1000u, 0xfffu, 0x1001u}) xs.push_back(std::bit_cast<float>(b + d));
  }
  std::vector<std::uint16_t> ref(xs.size()), bref(xs.size());
  io::half_impl::fp32_to_fp16_reference(xs.data(), ref.data(), xs.size());
  io::half_impl::fp32_to_bf16_reference(xs.data(), bref.data(), xs.size());
  testing::for_each_isa([&](kernels::isa) {
    std::vector<std::uint16_t> out(xs.size());
    io::convert_fp32_to_fp16(xs, out);
    for (std::size_t i = 0; i < xs.size(); ++i) REQUIRE(out[i] == ref[i]);
    io::convert_fp32_to_bf16(xs, out);
    for (std::size_t i = 0; i < xs.size(); ++i) REQUIRE(out[i] == bref[i]);
  });
}

TEST_CASE("bf16 conversion rounds to nearest even and keeps NaN") {
  CHECK(io::fp32_to_bf16(1.0f) == 0x3f80);
  CHECK(io::fp32_to_bf16(std::bit_cast<float>(0x3f808000u)) == 0x3f80);  // tie, even stays
  CHECK(io::fp32_to_bf16(std::bit_cast<float>(0x3f818000u)) == 0x3f82);  // tie, odd rounds up
  CHECK(io::fp32_to_bf16(std::bit_cast<float>(0x3f808001u)) == 0x3f81);
  CHECK(io::fp32_to_bf16(std::bit_cast<float>(0x7f800001u)) == 0x7fc0);  // sNaN stays NaN, quiet
  CHECK(io::fp32_to_bf16(std::bit_cast<float>(0x7f7fffffu)) == 0x7f80);  // max float rounds to inf
  std::vector<std::uint16_t> all(65536);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
  testing::for_each_isa([&](kernels::isa) {
    std::vector<float> out(all.size());
    io::convert_bf16_to_fp32(all, out);
    for (std::size_t i = 0; i < all.size(); ++i) REQUIRE(std::bit_cast<std::uint32_t>(out[i]) == i << 16);
  });
}

TEST_CASE("safetensors round trip keeps names, dtypes, shapes, bytes and metadata") {
  const fs::path p = temp_dir() / "rt.safetensors";
  const auto a = testing::normal_floats(12, 1);
  const std::vector<std::uint16_t> h{1, 2, 3};
  const std::vector<std::int64_t> z;
  {
    io::safetensors_writer w(p);
    w.add_metadata("format", "pt");
    w.add<float>("a", io::dtype::f32, {3, 4}, a);
    w.add<std::uint16_t>("h", io::dtype::bf16, {3}, h);
    w.add<std::int64_t>("empty", io::dtype::i64, {0, 5}, z);
    CHECK_FALSE(fs::exists(p));  // nothing appears before finish
    w.finish();
  }
  const io::safetensors_reader r(p);
  REQUIRE(r.tensors().size() == 3);
  CHECK(r.metadata().at("format") == "pt");
  const auto& ta = r.at("a");
  CHECK(ta.type == io::dtype::f32);
  CHECK(ta.shape == std::vector<std::int64_t>{3, 4});
  const auto v = r.view<float>(ta);  // zero-copy: points into the mapping
  REQUIRE(v.size() == 12);
  for (std::size_t i = 0; i < 12; ++i) CHECK(v[i] == a[i]);
  const auto hb = r.read_float(r.at("h"));
  CHECK(hb[0] == io::bf16_to_fp32(1));
  CHECK(r.at("empty").nbytes() == 0);
  CHECK_THROWS_AS(r.at("missing"), shrink::error);
  // Header is padded to a multiple of 8 so the data section is aligned.
  CHECK(r.header().data_start % 8 == 0);
}

TEST_CASE("safetensors writer rejects duplicates and size mismatches and leaves no output") {
  const fs::path p = temp_dir() / "never.safetensors";
  const std::vector<float> x(4);
  {
    io::safetensors_writer w(p);
    w.add<float>("x", io::dtype::f32, {4}, x);
    CHECK_THROWS_AS(w.add<float>("x", io::dtype::f32, {4}, x), shrink::error);
    CHECK_THROWS_AS(w.add<float>("y", io::dtype::f32, {5}, x), shrink::error);
  }  // destroyed without finish
  CHECK_FALSE(fs::exists(p));
  for (const auto& e : fs::directory_iterator(temp_dir()))
    CHECK(e.path().filename().string().find("never") == std::string::npos);
}

TEST_CASE("hostile safetensors files are format errors, never crashes") {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK(code_of(st_bytes(ok, 8)) == errc{});
  // Truncated: fewer than 8 bytes, and data shorter than the offsets.
  CHECK(code_of(std::vector<std::byte>(5)) == errc::format);
  CHECK(code_of(st_bytes(ok, 4)) == errc::format);
  // Header length beyond the file, and beyond 100 MB.
  CHECK(code_of(st_bytes(ok, 8, ok.size() + 100)) == errc::format);
  CHECK(code_of(st_bytes(ok, 8, 200'000'000)) == errc::format);
  // Offsets out of range, begin after end, overlapping, holes, trailing bytes.
  CHECK(code_of(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", 8)) == errc::format);
  CHECK(code_of(st_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8)) == errc::format);
  CHECK(code_of(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12)) == errc::format);
  CHECK(code_of(st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)) == errc::format);
  CHECK(code_of(st_bytes(ok, 9)) == errc::format);
  // Unknown dtype, shape x dtype != bytes, overflowing shape, negative extent.
  CHECK(code_of(st_bytes(R"({"a":{"dtype":"F8","shape":[2],"data_offsets":[0,8]}})", 8)) == errc::format);
  CHECK(code_of(st_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)) == errc::format);
  CHECK(code_of(st_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8)) == errc::overflow);
  CHECK(code_of(st_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)) == errc::format);
  CHECK(code_of(st_bytes(R"({"a":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}})", 8)) == errc::overflow);
  // Invalid JSON, invalid UTF-8, not an object, duplicate names, bad metadata, missing fields.
  CHECK(code_of(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 8)) == errc::format);
  CHECK(code_of(st_bytes("{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8)) == errc::format);
  CHECK(code_of(st_bytes(R"([1,2])", 0)) == errc::format);
  CHECK(code_of(st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)) == errc::format);
  CHECK(code_of(st_bytes(R"({"__metadata__":{"k":1}})", 0)) == errc::format);
  CHECK(code_of(st_bytes(R"({"a":{"dtype":"F32","shape":[2]}})", 8)) == errc::format);
  CHECK(code_of(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}})", 8)) == errc::format);
  // Metadata is kept; whitespace padding after the JSON is allowed.
  const auto f = st_bytes(R"({"__metadata__":{"k":"v"}}   )", 0);
  CHECK(io::parse_safetensors(f).metadata.at("k") == "v");
  // The reader reports a missing file as an I/O error.
  try {
    io::safetensors_reader r(temp_dir() / "does-not-exist");
    FAIL("no throw");
  } catch (const shrink::error& e) {
    CHECK(e.code() == errc::io);
  }
}

TEST_CASE("npy round trip and every version, byte order and memory order") {
  const fs::path p = temp_dir() / "a.npy";
  const std::vector<std::int64_t> shape{2, 3};
  const std::vector<float> x{1, 2, 3, 4, 5, 6};
  io::write_npy(p, io::dtype::f32, shape, std::as_bytes(std::span(x)));
  const auto a = io::read_npy(p);
  CHECK(a.shape == shape);
  const auto f = a.to_float();
  for (std::size_t i = 0; i < 6; ++i) CHECK(f[i] == x[i]);
  CHECK((fs::file_size(p) - 24) % 64 == 0);  // the data (24 bytes) starts 64-aligned
  auto make = [](int major, const std::string& dict, std::span<const std::byte> data) {
    std::string h = dict;
    const std::size_t prefix = major == 1 ? 10 : 12;
    while ((prefix + h.size() + 1) % 64) h += ' ';
    h += '\n';
    std::vector<std::byte> out;
    for (char c : std::string("\x93NUMPY")) out.push_back(static_cast<std::byte>(c));
    out.push_back(static_cast<std::byte>(major));
    out.push_back(std::byte{0});
    for (std::size_t i = 0; i < prefix - 8; ++i) out.push_back(static_cast<std::byte>((h.size() >> (8 * i)) & 0xff));
    for (char c : h) out.push_back(static_cast<std::byte>(c));
    out.insert(out.end(), data.begin(), data.end());
    return out;
  };
  // Big-endian int16 [[1, 2, 3], [4, 5, 6]] stored in Fortran order: 1 4 2 5 3 6.
  std::vector<std::byte> be;
  for (int v : {1, 4, 2, 5, 3, 6}) {
    be.push_back(std::byte{0});
    be.push_back(static_cast<std::byte>(v));
  }
  for (int major : {1, 2, 3}) {
    const auto file = make(major, "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }", be);
    const auto b = io::parse_npy(file);
    CHECK(b.type == io::dtype::i16);
    const auto bf = b.to_float();
    for (std::size_t i = 0; i < 6; ++i) CHECK(bf[i] == static_cast<float>(i + 1));
  }
  // 3-D Fortran order: element (i, j, k) at i + 2 j + 4 k.
  std::vector<std::byte> f3;
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 2; ++j)
      for (int i = 0; i < 2; ++i) {
        const float v = static_cast<float>(100 * i + 10 * j + k);
        const auto* b = reinterpret_cast<const std::byte*>(&v);
        f3.insert(f3.end(), b, b + 4);
      }
  const auto c3 = io::parse_npy(make(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2, 3)}", f3)).to_float();
  std::size_t n = 0;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 3; ++k) CHECK(c3[n++] == static_cast<float>(100 * i + 10 * j + k));
  // Scalars and 1-tuples.
  const float one = 7;
  CHECK(io::parse_npy(make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}", std::as_bytes(std::span(&one, 1)))).to_float()[0] == 7);
  // Hostile: bad magic, version, truncated, unsupported dtype, wrong size, duplicate keys, overflow.
  auto npy_code = [&](const std::vector<std::byte>& file) {
    try {
      (void)io::parse_npy(file);
    } catch (const shrink::error& e) {
      return e.code();
    }
    return errc{};
  };
  const std::vector<std::byte> six(be);
  CHECK(npy_code(std::vector<std::byte>(8)) == errc::format);
  auto v4 = make(1, "{'descr': '<i2', 'fortran_order': False, 'shape': (6,), }", six);
  v4[6] = std::byte{4};
  CHECK(npy_code(v4) == errc::format);
  CHECK(npy_code(make(1, "{'descr': '<i2', 'fortran_order': False, 'shape': (7,), }", six)) == errc::format);
  CHECK(npy_code(make(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", six)) == errc::unsupported);
  CHECK(npy_code(make(1, "{'descr': '<i2', 'descr': '<i2', 'fortran_order': False, 'shape': (6,), }", six)) == errc::format);
  CHECK(npy_code(make(1, "{'descr': '<i2', 'fortran_order': False, 'shape': (99999999999999999999,), }", six)) == errc::overflow);
  CHECK(npy_code(make(1, "{'descr': '<i2', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", six)) == errc::overflow);
  CHECK(npy_code(make(1, "{'descr': '<i2', 'fortran_order': False, 'shape': (6, }", six)) == errc::format);
  auto trunc = make(1, "{'descr': '<i2', 'fortran_order': False, 'shape': (6,), }", six);
  trunc.resize(30);
  CHECK(npy_code(trunc) == errc::format);
  CHECK_THROWS_AS(io::write_npy(p, io::dtype::bf16, shape, std::as_bytes(std::span(x))), shrink::error);
}

TEST_CASE("dtype conversions from float round half to even and saturate") {
  const std::vector<float> x{2.5f, -2.5f, 3.5f, 300.0f, -300.0f};
  std::vector<std::byte> out(5);
  io::from_float(io::dtype::i8, x.data(), 5, out.data());
  CHECK(static_cast<std::int8_t>(out[0]) == 2);
  CHECK(static_cast<std::int8_t>(out[1]) == -2);
  CHECK(static_cast<std::int8_t>(out[2]) == 4);
  CHECK(static_cast<std::int8_t>(out[3]) == 127);
  CHECK(static_cast<std::int8_t>(out[4]) == -128);
  const float nan = NAN;
  CHECK_THROWS_AS(io::from_float(io::dtype::i32, &nan, 1, out.data()), shrink::error);
}

TEST_CASE("io half conversions are quant/float16.hpp's, with fp16 NaNs made quiet as F16C does") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const auto b = static_cast<std::uint16_t>(h);
    const auto q = std::bit_cast<std::uint32_t>(quant::half_to_float(b));
    const bool nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
    REQUIRE(std::bit_cast<std::uint32_t>(io::fp16_to_fp32(b)) == (nan ? q | 0x00400000u : q));
    REQUIRE(std::bit_cast<std::uint32_t>(io::bf16_to_fp32(b)) == std::bit_cast<std::uint32_t>(quant::bfloat16_to_float(b)));
  }
  // A stride through every float bit pattern (the full 2^32 sweep was run once when the
  // duplicate scalar code was removed: 0 differences).
  for (std::uint64_t x = 0; x < (std::uint64_t{1} << 32); x += 4099) {
    const float f = std::bit_cast<float>(static_cast<std::uint32_t>(x));
    REQUIRE(io::fp32_to_fp16(f) == quant::float_to_half(f));
    REQUIRE(io::fp32_to_bf16(f) == quant::float_to_bfloat16(f));
  }
  // Independent spot values: RNE ties and overflow.
  CHECK(io::fp32_to_fp16(1.0f + 0x1p-11f) == 0x3c00);           // tie -> even (1.0)
  CHECK(io::fp32_to_fp16(1.0f + 3 * 0x1p-11f) == 0x3c02);       // tie -> even (1 + 2^-9)
  CHECK(io::fp32_to_fp16(65520.0f) == 0x7c00);                  // rounds to inf
  CHECK(io::fp32_to_fp16(65519.996f) == 0x7bff);
  CHECK(io::fp32_to_bf16(std::bit_cast<float>(0x3f808000u)) == 0x3f80);  // tie -> even
  CHECK(io::fp32_to_bf16(std::bit_cast<float>(0x3f818000u)) == 0x3f82);
}
