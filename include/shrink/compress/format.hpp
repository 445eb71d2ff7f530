// format.hpp: the compressed-file format (docs/format.md): per-tensor records in safetensors __metadata__, their strict reader and writer.
#pragma once

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

/// How one original tensor was stored and how to expand it.
struct record {
  std::string name;                  ///< original tensor name
  std::string scheme;                ///< "int8" or "int" (see docs/format.md)
  std::vector<std::int64_t> shape;   ///< original shape
  io::dtype dtype = io::dtype::f32;  ///< original dtype (a floating type)
  int bits = 8;                      ///< code width
  int axis = 0;                      ///< int8: the channel axis (0); int: 1 (groups run along the row)
  std::int64_t group = 0;            ///< int: elements per scale along a row; 0 for per-channel
  io::dtype scale_dtype = io::dtype::f32;
  std::map<std::string, std::string> entries;  ///< role ("codes", "scales") -> entry name

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
  j["bits"] = r.bits;
  j["axis"] = r.axis;
  j["group"] = r.group;
  j["scale_dtype"] = std::string(io::name(r.scale_dtype));
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
  SHRINK_REQUIRE(r.scheme == "int8" || r.scheme == "int", errc::format, who, ": unknown scheme '", r.scheme,
                 "'; this reader knows int8 and int (format version 1)");
  const auto& shape = field(j, "shape", who);
  SHRINK_REQUIRE(shape.is_array() && shape.size() <= 16, errc::format, who, ": \"shape\" must be an array of at most 16 extents");
  for (const auto& e : shape) r.shape.push_back(io::safetensors_impl::json_int(e, who, "a shape extent"));
  io::checked_count(r.shape, who);
  SHRINK_REQUIRE(r.shape.size() >= 1, errc::format, who, ": \"shape\" must have at least one extent");
  const auto& dt = field(j, "dtype", who);
  SHRINK_REQUIRE(dt.is_string(), errc::format, who, ": \"dtype\" must be a string");
  r.dtype = io::parse_dtype(dt.get<std::string>(), who);
  SHRINK_REQUIRE(io::is_floating(r.dtype), errc::format, who, ": \"dtype\" must be a floating type, got ", io::name(r.dtype));
  r.bits = static_cast<int>(small_int(j, "bits", 2, 8, who));
  r.axis = static_cast<int>(small_int(j, "axis", 0, 1, who));
  r.group = small_int(j, "group", 0, std::int64_t{1} << 40, who);
  const auto& sd = field(j, "scale_dtype", who);
  SHRINK_REQUIRE(sd.is_string(), errc::format, who, ": \"scale_dtype\" must be a string");
  r.scale_dtype = io::parse_dtype(sd.get<std::string>(), who);
  SHRINK_REQUIRE(r.scale_dtype == io::dtype::f32 || r.scale_dtype == io::dtype::f16, errc::format, who,
                 ": \"scale_dtype\" must be F32 or F16");
  const auto& entries = field(j, "entries", who);
  SHRINK_REQUIRE(entries.is_object(), errc::format, who, ": \"entries\" must be an object");
  for (const auto& [role, entry] : entries.items()) {
    SHRINK_REQUIRE(entry.is_string(), errc::format, who, ": entry '", role, "' must name a tensor");
    r.entries.emplace(role, entry.get<std::string>());
  }
  if (r.scheme == "int8") {
    SHRINK_REQUIRE(r.bits == 8 && r.axis == 0 && r.group == 0, errc::format, who,
                   ": int8 needs bits 8, axis 0, group 0");
  } else {
    SHRINK_REQUIRE(r.axis == 1 && r.group >= 1, errc::format, who, ": int needs axis 1 and group >= 1");
  }
  SHRINK_REQUIRE(r.entries.size() == 2 && r.entries.count("codes") && r.entries.count("scales"), errc::format, who,
                 ": needs exactly the entries \"codes\" and \"scales\"");
  return r;
}

/// Expected number of bytes of the packed codes and number of scales for a record.
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

/// Checks a record against the file's entries: both exist, with the expected dtype and size.
inline void validate(const record& r, const io::safetensors_header& h) {
  const std::string who = "compressed record '" + r.name + "'";
  auto find = [&](const std::string& n) -> const io::tensor_entry* {
    for (const auto& t : h.tensors)
      if (t.name == n) return &t;
    return nullptr;
  };
  const record_sizes s = sizes_of(r);
  const io::tensor_entry* codes = find(r.entries.at("codes"));
  const io::tensor_entry* scales = find(r.entries.at("scales"));
  SHRINK_REQUIRE(codes && scales, errc::format, who, ": its entries '", r.entries.at("codes"), "' and '",
                 r.entries.at("scales"), "' must both exist in the file");
  const io::dtype code_type = r.scheme == "int8" ? io::dtype::i8 : io::dtype::u8;
  SHRINK_REQUIRE(codes->type == code_type && codes->nbytes() == s.code_bytes, errc::format, who, ": codes must be ",
                 io::name(code_type), " of ", s.code_bytes, " bytes, got ", io::name(codes->type), " of ", codes->nbytes());
  SHRINK_REQUIRE(scales->type == r.scale_dtype && scales->count() == s.scales, errc::format, who, ": scales must be ",
                 s.scales, " values of ", io::name(r.scale_dtype), ", got ", scales->count(), " of ",
                 io::name(scales->type));
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
