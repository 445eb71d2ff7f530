// npy.hpp: NumPy .npy reader (versions 1, 2, 3; either byte order; C or Fortran order) and writer.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/aligned_buffer.hpp"
#include "../core/error.hpp"
#include "dtype.hpp"
#include "file.hpp"

namespace shrink::io {

/// An array read from .npy: elements in C (row-major) order and little-endian byte order,
/// whatever the file's order was.
struct npy_array {
  dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  aligned_buffer<std::byte> data;

  [[nodiscard]] std::uint64_t count() const { return checked_count(shape, "npy_array"); }
  /// The elements converted to float.
  [[nodiscard]] aligned_buffer<float> to_float() const {
    aligned_buffer<float> out(static_cast<std::size_t>(count()));
    io::to_float(type, data.data(), out.size(), out.data());
    return out;
  }
};

namespace npy_impl {

inline constexpr std::string_view k_magic = "\x93NUMPY";

/// A tiny parser for the header's Python dict literal:
/// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
class literal_parser {
 public:
  explicit literal_parser(std::string_view s) : s_(s) {}

  void skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char c) {
    skip();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    SHRINK_REQUIRE(eat(c), errc::format, "npy: malformed header: expected '", c, "' at offset ", i_);
  }
  std::string string() {
    skip();
    SHRINK_REQUIRE(i_ < s_.size() && (s_[i_] == '\'' || s_[i_] == '"'), errc::format,
                   "npy: malformed header: expected a quoted string at offset ", i_);
    const char q = s_[i_++];
    const std::size_t start = i_;
    while (i_ < s_.size() && s_[i_] != q) {
      SHRINK_REQUIRE(s_[i_] != '\\', errc::format, "npy: malformed header: escapes are not supported");
      ++i_;
    }
    SHRINK_REQUIRE(i_ < s_.size(), errc::format, "npy: malformed header: unterminated string");
    return std::string(s_.substr(start, i_++ - start));
  }
  bool boolean() {
    skip();
    if (s_.substr(i_, 4) == "True") {
      i_ += 4;
      return true;
    }
    if (s_.substr(i_, 5) == "False") {
      i_ += 5;
      return false;
    }
    detail::raise(errc::format, "npy: malformed header: expected True or False at offset ", i_);
  }
  std::int64_t integer() {
    skip();
    std::uint64_t v = 0;
    const std::size_t start = i_;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) {
      const auto d = static_cast<std::uint64_t>(s_[i_] - '0');
      SHRINK_REQUIRE(v <= (static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) - d) / 10,
                     errc::overflow, "npy: shape extent overflows 63 bits");
      v = v * 10 + d;
      ++i_;
    }
    SHRINK_REQUIRE(i_ > start, errc::format, "npy: malformed header: expected a non-negative integer at offset ", i_);
    if (i_ < s_.size() && s_[i_] == 'L') ++i_;  // Python 2 long suffix
    return static_cast<std::int64_t>(v);
  }
  std::vector<std::int64_t> tuple() {
    expect('(');
    std::vector<std::int64_t> out;
    while (!eat(')')) {
      SHRINK_REQUIRE(out.size() < 64, errc::format, "npy: shape has too many dimensions");
      out.push_back(integer());
      if (!eat(',')) {
        expect(')');
        break;
      }
    }
    return out;
  }
  [[nodiscard]] bool at_end() {
    skip();
    return i_ == s_.size();
  }

 private:
  std::string_view s_;
  std::size_t i_ = 0;
};

struct descr {
  dtype type;
  bool big_endian;
};

inline descr parse_descr(const std::string& d) {
  SHRINK_REQUIRE(d.size() >= 3, errc::format, "npy: descr '", d, "' is too short");
  const char order = d[0];
  SHRINK_REQUIRE(order == '<' || order == '>' || order == '|' || order == '=', errc::format, "npy: descr '", d,
                 "' has no byte-order character");
  const std::string kind = d.substr(1);
  std::optional<dtype> t;
  if (kind == "f4") t = dtype::f32;
  else if (kind == "f2") t = dtype::f16;
  else if (kind == "f8") t = dtype::f64;
  else if (kind == "i1") t = dtype::i8;
  else if (kind == "u1") t = dtype::u8;
  else if (kind == "i2") t = dtype::i16;
  else if (kind == "i4") t = dtype::i32;
  else if (kind == "i8") t = dtype::i64;
  else if (kind == "b1") t = dtype::boolean;
  SHRINK_REQUIRE(t.has_value(), errc::unsupported, "npy: descr '", d,
                 "' is not supported; expected f2 f4 f8 i1 u1 i2 i4 i8 b1 with < > | or =");
  const bool big = order == '>' && size_of(*t) > 1;  // '=' is native, which is little-endian here
  return {*t, big};
}

}  // namespace npy_impl

/// Parses a whole .npy file held in memory. Malformed headers, unsupported dtypes and data
/// that is shorter or longer than the shape says are errors (errc::format / unsupported).
inline npy_array parse_npy(std::span<const std::byte> file) {
  const auto* p = reinterpret_cast<const unsigned char*>(file.data());
  SHRINK_REQUIRE(file.size() >= 10 && std::memcmp(p, npy_impl::k_magic.data(), 6) == 0, errc::format,
                 "npy: missing the \\x93NUMPY magic");
  const unsigned major = p[6];
  SHRINK_REQUIRE(major >= 1 && major <= 3, errc::format, "npy: version ", major, ".", unsigned(p[7]),
                 " is not supported; expected 1.0, 2.0 or 3.0");
  std::uint64_t header_len = 0, prefix = 0;
  if (major == 1) {
    header_len = p[8] | (std::uint64_t{p[9]} << 8);
    prefix = 10;
  } else {
    SHRINK_REQUIRE(file.size() >= 12, errc::format, "npy: truncated header length");
    header_len = p[8] | (std::uint64_t{p[9]} << 8) | (std::uint64_t{p[10]} << 16) | (std::uint64_t{p[11]} << 24);
    prefix = 12;
  }
  SHRINK_REQUIRE(header_len <= file.size() - prefix, errc::format, "npy: header length ", header_len,
                 " reaches beyond the file");
  const std::string_view text(reinterpret_cast<const char*>(p + prefix), static_cast<std::size_t>(header_len));
  // Versions 1 and 2 are latin-1; version 3 is UTF-8. The keys and values we accept are ASCII.
  npy_impl::literal_parser lp(text);
  std::optional<std::string> descr_text;
  std::optional<bool> fortran;
  std::optional<std::vector<std::int64_t>> shape;
  lp.expect('{');
  while (!lp.eat('}')) {
    const std::string key = lp.string();
    lp.expect(':');
    if (key == "descr") {
      SHRINK_REQUIRE(!descr_text, errc::format, "npy: duplicate key 'descr'");
      descr_text = lp.string();
    } else if (key == "fortran_order") {
      SHRINK_REQUIRE(!fortran, errc::format, "npy: duplicate key 'fortran_order'");
      fortran = lp.boolean();
    } else if (key == "shape") {
      SHRINK_REQUIRE(!shape, errc::format, "npy: duplicate key 'shape'");
      shape = lp.tuple();
    } else {
      detail::raise(errc::format, "npy: unexpected header key '", key, "'");
    }
    if (!lp.eat(',')) {
      lp.expect('}');
      break;
    }
  }
  SHRINK_REQUIRE(lp.at_end(), errc::format, "npy: trailing characters after the header dict");
  SHRINK_REQUIRE(descr_text && fortran && shape, errc::format, "npy: header needs 'descr', 'fortran_order' and 'shape'");
  const npy_impl::descr d = npy_impl::parse_descr(*descr_text);

  npy_array out;
  out.type = d.type;
  out.shape = *shape;
  const std::size_t es = size_of(d.type);
  const std::uint64_t nbytes = checked_byte_size(out.shape, es, "npy");
  const std::uint64_t start = prefix + header_len;
  SHRINK_REQUIRE(file.size() - start == nbytes, errc::format, "npy: shape ", "and dtype need ", nbytes,
                 " data bytes but the file holds ", file.size() - start);
  out.data = aligned_buffer<std::byte>(static_cast<std::size_t>(nbytes));
  const std::byte* src = file.data() + start;
  const auto count = static_cast<std::size_t>(nbytes / es);
  if (!*fortran || out.shape.size() <= 1) {
    if (nbytes) std::memcpy(out.data.data(), src, static_cast<std::size_t>(nbytes));
  } else {
    // Fortran order: the first index varies fastest. Walk C order, track the F offset.
    const std::size_t rank = out.shape.size();
    std::vector<std::uint64_t> fstride(rank, 1);
    for (std::size_t a = 1; a < rank; ++a) fstride[a] = fstride[a - 1] * static_cast<std::uint64_t>(out.shape[a - 1]);
    std::vector<std::int64_t> idx(rank, 0);
    std::uint64_t off = 0;
    for (std::size_t n = 0; n < count; ++n) {
      std::memcpy(out.data.data() + n * es, src + off * es, es);
      for (std::size_t a = rank; a-- > 0;) {
        if (++idx[a] < out.shape[a]) {
          off += fstride[a];
          break;
        }
        off -= fstride[a] * static_cast<std::uint64_t>(out.shape[a] - 1);
        idx[a] = 0;
      }
    }
  }
  if (d.big_endian)
    for (std::size_t n = 0; n < count; ++n) std::reverse(out.data.data() + n * es, out.data.data() + (n + 1) * es);
  return out;
}

/// Reads a .npy file (memory-mapped while parsing).
inline npy_array read_npy(const std::filesystem::path& path) {
  const mapped_file f(path);
  return parse_npy(f.bytes());
}

/// The bytes of a .npy file (version 1.0, or 2.0 when the header needs it), little-endian,
/// C order. BF16 has no NumPy dtype and is errc::unsupported (convert to F32 first).
inline std::string npy_header(dtype type, std::span<const std::int64_t> shape) {
  const char* descr = nullptr;
  switch (type) {
    case dtype::f32: descr = "<f4"; break;
    case dtype::f16: descr = "<f2"; break;
    case dtype::f64: descr = "<f8"; break;
    case dtype::i8: descr = "|i1"; break;
    case dtype::u8: descr = "|u1"; break;
    case dtype::i16: descr = "<i2"; break;
    case dtype::i32: descr = "<i4"; break;
    case dtype::i64: descr = "<i8"; break;
    case dtype::boolean: descr = "|b1"; break;
    case dtype::bf16:
      detail::raise(errc::unsupported, "write_npy: NumPy has no bfloat16 dtype; convert to F32 first");
  }
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < shape.size(); ++i) dict += std::to_string(shape[i]) + ",";
  if (shape.size() > 1) dict.pop_back();  // (3,) needs the comma, (2, 3) does not
  dict += "), }";
  // Pad with spaces and a final newline so the data starts at a multiple of 64 bytes.
  const bool v2 = dict.size() + 1 + 10 > 65535;
  const std::size_t prefix = v2 ? 12 : 10;
  const std::size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict += '\n';
  std::string out(npy_impl::k_magic);
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  const std::size_t n = dict.size();
  for (std::size_t i = 0; i < (v2 ? 4u : 2u); ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  return out + dict;
}

/// Writes a .npy file atomically (temporary + rename).
inline void write_npy(const std::filesystem::path& path, dtype type, std::span<const std::int64_t> shape,
                      std::span<const std::byte> bytes) {
  const std::uint64_t want = checked_byte_size(shape, size_of(type), "write_npy");
  SHRINK_REQUIRE(want == bytes.size(), errc::shape_mismatch, "write_npy: shape and dtype need ", want, " bytes, got ",
                 bytes.size());
  const std::string header = npy_header(type, shape);
  atomic_output out(path);
  out.write(header);
  out.write(bytes);
  out.commit();
}

}  // namespace shrink::io
