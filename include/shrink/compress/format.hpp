// format.hpp: the compressed-file format (docs/format.md): per-tensor records in safetensors __metadata__, their strict reader and writer.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../io/dtype.hpp"
#include "../io/safetensors.hpp"

namespace shrink::compress {

/// Metadata key holding the format version, and its value.
inline constexpr std::string_view k_format_key = "shrink.format";
inline constexpr std::string_view k_format_version = "1";
/// Per-tensor records live under "shrink.tensor.<original name>".
inline constexpr std::string_view k_record_prefix = "shrink.tensor.";

/// The schemes this reader knows (format version 1; docs/format.md).
inline constexpr std::string_view k_schemes[] = {"int8", "int", "codebook", "nm", "deep", "xnor", "lowrank"};

/// How one original tensor was stored and how to expand it. Fields that a scheme does not
/// use keep their defaults and are not written.
struct record {
  std::string name;                  ///< original tensor name
  std::string scheme;                ///< one of k_schemes (see docs/format.md)
  std::vector<std::int64_t> shape;   ///< original shape
  io::dtype dtype = io::dtype::f32;  ///< original dtype (a floating type)
  int bits = 8;                      ///< int8 / int / codebook: code width
  int axis = 0;                      ///< int8: the channel axis (0); int: 1 (groups run along the row)
  std::int64_t group = 0;            ///< int: elements per scale along a row; 0 for per-channel
  io::dtype scale_dtype = io::dtype::f32;
  int k = 0;                         ///< codebook / deep: codebook entries
  int n = 0, m = 0;                  ///< nm: n kept in every group of m columns
  int gap_bits = 0;                  ///< deep: width of a relative gap
  std::int64_t rank = 0;             ///< lowrank: inner dimension of the factors
  std::map<std::string, std::string> entries;  ///< role ("codes", "scales", ...) -> entry name

  /// Rows and columns of the 2-D view: rows = shape[0], cols = product of the rest.
  [[nodiscard]] std::int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  [[nodiscard]] std::int64_t cols() const {
    std::int64_t c = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) c *= shape[i];
    return c;
  }
};

inline std::string to_json(const record& r) {
  nlohmann::ordered_json j;
  j["scheme"] = r.scheme;
  j["shape"] = r.shape;
  j["dtype"] = std::string(io::name(r.dtype));
  if (r.scheme == "int8" || r.scheme == "int") {
    j["bits"] = r.bits;
    j["axis"] = r.axis;
    j["group"] = r.group;
    j["scale_dtype"] = std::string(io::name(r.scale_dtype));
  } else if (r.scheme == "codebook") {
    j["k"] = r.k;
    j["bits"] = r.bits;
  } else if (r.scheme == "nm") {
    j["n"] = r.n;
    j["m"] = r.m;
  } else if (r.scheme == "deep") {
    j["k"] = r.k;
    j["gap_bits"] = r.gap_bits;
  } else if (r.scheme == "lowrank") {
    j["rank"] = r.rank;
  }
  j["entries"] = r.entries;
  return j.dump();
}

namespace format_impl {

inline const nlohmann::json& field(const nlohmann::json& j, const char* key, const std::string& who) {
  const auto it = j.find(key);
  SHRINK_REQUIRE(it != j.end(), errc::format, who, ": record lacks \"", key, "\"");
  return *it;
}
inline std::int64_t small_int(const nlohmann::json& j, const char* key, std::int64_t lo, std::int64_t hi,
                              const std::string& who) {
  const auto& v = field(j, key, who);
  SHRINK_REQUIRE(v.is_number_integer(), errc::format, who, ": \"", key, "\" must be an integer");
  const auto x = v.get<std::int64_t>();
  SHRINK_REQUIRE(x >= lo && x <= hi, errc::format, who, ": \"", key, "\" must be in [", lo, ", ", hi, "], got ", x);
  return x;
}

}  // namespace format_impl

/// Parses one record's JSON text strictly: every field present with its type and range.
/// It does not look at the file; `validate` checks the record against the entries.
inline record parse_record(const std::string& name, std::string_view text) {
  using namespace format_impl;
  const std::string who = "compressed record '" + name + "'";
  SHRINK_REQUIRE(!name.empty(), errc::format, "compressed record: empty tensor name");
  const nlohmann::json j = io::safetensors_impl::parse_json_strict(text, who);
  SHRINK_REQUIRE(j.is_object(), errc::format, who, ": must be a JSON object");
  record r;
  r.name = name;
  const auto& scheme = field(j, "scheme", who);
  SHRINK_REQUIRE(scheme.is_string(), errc::format, who, ": \"scheme\" must be a string");
  r.scheme = scheme.get<std::string>();
  bool known = false;
  for (auto s : k_schemes) known = known || r.scheme == s;
  SHRINK_REQUIRE(known, errc::format, who, ": unknown scheme '", r.scheme,
                 "'; this reader knows int8, int, codebook, nm, deep, xnor and lowrank (format version 1)");
  const auto& shape = field(j, "shape", who);
  SHRINK_REQUIRE(shape.is_array() && shape.size() <= 16, errc::format, who, ": \"shape\" must be an array of at most 16 extents");
  for (const auto& e : shape) r.shape.push_back(io::safetensors_impl::json_int(e, who, "a shape extent"));
  io::checked_count(r.shape, who);
  SHRINK_REQUIRE(r.shape.size() >= 1, errc::format, who, ": \"shape\" must have at least one extent");
  const auto& dt = field(j, "dtype", who);
  SHRINK_REQUIRE(dt.is_string(), errc::format, who, ": \"dtype\" must be a string");
  r.dtype = io::parse_dtype(dt.get<std::string>(), who);
  SHRINK_REQUIRE(io::is_floating(r.dtype), errc::format, who, ": \"dtype\" must be a floating type, got ", io::name(r.dtype));
  // The fields of each scheme, and no others (a reader must not guess at unknown fields).
  std::vector<std::string> allowed{"scheme", "shape", "dtype", "entries"};
  std::vector<std::string> roles;
  if (r.scheme == "int8" || r.scheme == "int") {
    allowed.insert(allowed.end(), {"bits", "axis", "group", "scale_dtype"});
    r.bits = static_cast<int>(small_int(j, "bits", 2, 8, who));
    r.axis = static_cast<int>(small_int(j, "axis", 0, 1, who));
    r.group = small_int(j, "group", 0, std::int64_t{1} << 40, who);
    const auto& sd = field(j, "scale_dtype", who);
    SHRINK_REQUIRE(sd.is_string(), errc::format, who, ": \"scale_dtype\" must be a string");
    r.scale_dtype = io::parse_dtype(sd.get<std::string>(), who);
    SHRINK_REQUIRE(r.scale_dtype == io::dtype::f32 || r.scale_dtype == io::dtype::f16, errc::format, who,
                   ": \"scale_dtype\" must be F32 or F16");
    if (r.scheme == "int8") {
      SHRINK_REQUIRE(r.bits == 8 && r.axis == 0 && r.group == 0, errc::format, who,
                     ": int8 needs bits 8, axis 0, group 0");
    } else {
      SHRINK_REQUIRE(r.axis == 1 && r.group >= 1, errc::format, who, ": int needs axis 1 and group >= 1");
    }
    roles = {"codes", "scales"};
  } else if (r.scheme == "codebook") {
    allowed.insert(allowed.end(), {"k", "bits"});
    r.k = static_cast<int>(small_int(j, "k", 1, 256, who));
    r.bits = static_cast<int>(small_int(j, "bits", 1, 8, who));
    SHRINK_REQUIRE(r.k <= (1 << r.bits), errc::format, who, ": k = ", r.k, " codes do not fit in ", r.bits, " bits");
    roles = {"codebook", "indices"};
  } else if (r.scheme == "nm") {
    allowed.insert(allowed.end(), {"n", "m"});
    r.m = static_cast<int>(small_int(j, "m", 2, 256, who));
    r.n = static_cast<int>(small_int(j, "n", 1, 255, who));
    SHRINK_REQUIRE(r.n < r.m, errc::format, who, ": nm needs 1 <= n < m, got n = ", r.n, ", m = ", r.m);
    SHRINK_REQUIRE(r.shape.size() >= 2 && r.cols() % r.m == 0, errc::format, who, ": nm needs rank >= 2 and m = ",
                   r.m, " dividing the ", r.cols(), " columns");
    roles = {"positions", "values"};
  } else if (r.scheme == "deep") {
    allowed.insert(allowed.end(), {"k", "gap_bits"});
    r.k = static_cast<int>(small_int(j, "k", 1, 256, who));
    r.gap_bits = static_cast<int>(small_int(j, "gap_bits", 1, 8, who));
    roles = {"codebook", "gaps", "indices"};
  } else if (r.scheme == "xnor") {
    roles = {"alpha", "signs"};
  } else {  // lowrank
    allowed.insert(allowed.end(), {"rank"});
    SHRINK_REQUIRE(r.shape.size() >= 2, errc::format, who, ": lowrank needs rank >= 2 shapes");
    r.rank = small_int(j, "rank", 1, std::min(r.rows(), r.cols()), who);
    roles = {"a", "b"};
  }
  for (const auto& [key, value] : j.items())
    SHRINK_REQUIRE(std::find(allowed.begin(), allowed.end(), key) != allowed.end(), errc::format, who,
                   ": field \"", key, "\" does not belong to scheme ", r.scheme);
  const auto& entries = field(j, "entries", who);
  SHRINK_REQUIRE(entries.is_object(), errc::format, who, ": \"entries\" must be an object");
  for (const auto& [role, entry] : entries.items()) {
    SHRINK_REQUIRE(entry.is_string(), errc::format, who, ": entry '", role, "' must name a tensor");
    r.entries.emplace(role, entry.get<std::string>());
  }
  bool exact = r.entries.size() == roles.size();
  for (const auto& role : roles) exact = exact && r.entries.count(role) == 1;
  std::string want;
  for (const auto& role : roles) want += (want.empty() ? "\"" : ", \"") + role + "\"";
  SHRINK_REQUIRE(exact, errc::format, who, ": scheme ", r.scheme, " needs exactly the entries ", want);
  return r;
}

/// Expected number of bytes of the packed codes and number of scales for an int8 / int record.
struct record_sizes {
  std::uint64_t code_bytes;
  std::uint64_t scales;
};
inline record_sizes sizes_of(const record& r) {
  const auto rows = static_cast<std::uint64_t>(r.rows());
  const auto cols = static_cast<std::uint64_t>(r.cols());
  if (r.scheme == "int8") return {rows * cols, rows};
  const auto g = static_cast<std::uint64_t>(r.group);
  const std::uint64_t groups_per_row = (cols + g - 1) / g;
  // Each row's codes start on a byte boundary: ceil(cols * bits / 8) bytes per row.
  const std::uint64_t row_bytes = (cols * static_cast<std::uint64_t>(r.bits) + 7) / 8;
  return {rows * row_bytes, rows * groups_per_row};
}

/// What one entry of a record must be: its dtype and byte length (0 = any length, for
/// self-delimiting streams whose decoder checks them).
struct entry_spec {
  std::string role;
  io::dtype type;
  std::uint64_t bytes;
};

/// The entries a validated record needs (docs/format.md, one table per scheme).
inline std::vector<entry_spec> entry_specs(const record& r) {
  const auto rows = static_cast<std::uint64_t>(r.rows());
  const auto cols = static_cast<std::uint64_t>(r.cols());
  if (r.scheme == "int8" || r.scheme == "int") {
    const record_sizes s = sizes_of(r);
    return {{"codes", r.scheme == "int8" ? io::dtype::i8 : io::dtype::u8, s.code_bytes},
            {"scales", r.scale_dtype, s.scales * io::size_of(r.scale_dtype)}};
  }
  if (r.scheme == "codebook")
    return {{"codebook", io::dtype::f32, static_cast<std::uint64_t>(r.k) * 4},
            {"indices", io::dtype::u8, rows * ((cols * static_cast<std::uint64_t>(r.bits) + 7) / 8)}};
  if (r.scheme == "nm") {
    const std::uint64_t kept = cols / static_cast<std::uint64_t>(r.m) * static_cast<std::uint64_t>(r.n);
    const auto pbits = static_cast<std::uint64_t>(std::bit_width(static_cast<unsigned>(r.m - 1)));
    return {{"values", io::dtype::f32, rows * kept * 4}, {"positions", io::dtype::u8, rows * ((kept * pbits + 15) / 16) * 2}};
  }
  if (r.scheme == "deep")
    return {{"codebook", io::dtype::f32, static_cast<std::uint64_t>(r.k) * 4}, {"indices", io::dtype::u8, 0},
            {"gaps", io::dtype::u8, 0}};
  if (r.scheme == "xnor") return {{"signs", io::dtype::u8, rows * ((cols + 63) / 64) * 8}, {"alpha", io::dtype::f32, rows * 4}};
  const auto rk = static_cast<std::uint64_t>(r.rank);
  return {{"a", io::dtype::f32, rows * rk * 4}, {"b", io::dtype::f32, rk * cols * 4}};
}

/// Checks a record against the file's entries: each exists with the expected dtype and size.
inline void validate(const record& r, const io::safetensors_header& h) {
  const std::string who = "compressed record '" + r.name + "'";
  auto find = [&](const std::string& n) -> const io::tensor_entry* {
    for (const auto& t : h.tensors)
      if (t.name == n) return &t;
    return nullptr;
  };
  for (const auto& spec : entry_specs(r)) {
    const std::string& name = r.entries.at(spec.role);
    const io::tensor_entry* e = find(name);
    SHRINK_REQUIRE(e != nullptr, errc::format, who, ": its ", spec.role, " entry '", name, "' does not exist in the file");
    SHRINK_REQUIRE(e->type == spec.type && (spec.bytes == 0 || e->nbytes() == spec.bytes), errc::format, who, ": ",
                   spec.role, " must be ", io::name(spec.type), spec.bytes ? " of " + std::to_string(spec.bytes) + " bytes" : "",
                   ", got ", io::name(e->type), " of ", e->nbytes(), " bytes");
  }
  SHRINK_REQUIRE(find(r.name) == nullptr, errc::format, who, ": the original name is also a plain entry");
}

/// Reads every record of a compressed file's metadata, validated against its entries.
/// A file without "shrink.format" is not compressed: the result is empty. Any other
/// version, or any malformed record, is errc::format.
inline std::vector<record> read_records(const io::safetensors_header& h) {
  const auto version = h.metadata.find(std::string(k_format_key));
  std::vector<record> out;
  if (version == h.metadata.end()) {
    for (const auto& [k, v] : h.metadata)
      SHRINK_REQUIRE(k.rfind(k_record_prefix, 0) != 0, errc::format, "compressed file: record '", k,
                     "' present but \"shrink.format\" is missing");
    return out;
  }
  SHRINK_REQUIRE(version->second == k_format_version, errc::format, "compressed file: format version '",
                 version->second, "' is not supported; this reader knows version ", k_format_version);
  for (const auto& [k, v] : h.metadata) {
    if (k.rfind(k_record_prefix, 0) != 0) continue;
    record r = parse_record(k.substr(k_record_prefix.size()), v);
    validate(r, h);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace shrink::compress
