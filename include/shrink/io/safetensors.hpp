// safetensors.hpp: a checked, memory-mapped safetensors reader (zero-copy views) and a streaming writer that publishes its file only when complete.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/aligned_buffer.hpp"
#include "../core/error.hpp"
#include "dtype.hpp"
#include "file.hpp"

namespace shrink::io {

/// Largest header accepted (the limit of the reference implementation, huggingface/safetensors).
inline constexpr std::uint64_t k_max_safetensors_header = 100'000'000;

/// One tensor of a safetensors file. `begin`/`end` are byte offsets into the data section
/// (which starts at `8 + header length` in the file).
struct tensor_entry {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;

  [[nodiscard]] std::uint64_t count() const { return checked_count(shape, "tensor_entry"); }
  [[nodiscard]] std::uint64_t nbytes() const noexcept { return end - begin; }
};

/// The parsed, validated header: tensors in data order, the string->string metadata, and
/// where the data section starts in the file.
struct safetensors_header {
  std::vector<tensor_entry> tensors;
  std::map<std::string, std::string> metadata;
  std::uint64_t data_start = 0;
};

namespace safetensors_impl {

/// JSON parse that rejects duplicate keys in any object (nlohmann would keep the last one).
inline nlohmann::json parse_json_strict(std::string_view text, std::string_view who) {
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  auto callback = [&](int /*depth*/, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using ev = nlohmann::json::parse_event_t;
    if (event == ev::object_start) {
      keys.emplace_back();
    } else if (event == ev::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (event == ev::key && !keys.empty()) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true);
  } catch (const nlohmann::json::exception& e) {
    detail::raise(errc::format, who, ": invalid JSON: ", e.what());
  }
  SHRINK_REQUIRE(duplicate.empty(), errc::format, who, ": duplicate key '", duplicate, "' in JSON header");
  return j;
}

inline std::uint64_t read_u64_le(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint64_t>(p[i]);
  return v;
}

inline std::int64_t json_int(const nlohmann::json& v, std::string_view who, std::string_view what) {
  SHRINK_REQUIRE(v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0), errc::format, who,
                 ": ", what, " must be a non-negative integer, got ", v.dump());
  const auto u = v.get<std::uint64_t>();
  SHRINK_REQUIRE(u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()), errc::overflow, who, ": ",
                 what, " ", u, " exceeds 2^63 - 1");
  return static_cast<std::int64_t>(u);
}

}  // namespace safetensors_impl

/// Parses and validates the header of a whole safetensors file held in `file`: the 8-byte
/// little-endian header length (at most 100 MB, inside the file), a JSON object without
/// duplicate keys, `__metadata__` as string -> string, each tensor's dtype known, shape
/// non-negative without overflow, shape x dtype size == byte length, and data offsets that
/// tile the data section exactly (no overlap, no hole, nothing past the end). Any breach is
/// errc::format (errc::overflow for sizes beyond 63 bits).
inline safetensors_header parse_safetensors(std::span<const std::byte> file) {
  constexpr std::string_view who = "safetensors";
  SHRINK_REQUIRE(file.size() >= 8, errc::format, who, ": file of ", file.size(),
                 " bytes is too short; expected at least the 8-byte header length");
  const std::uint64_t n = safetensors_impl::read_u64_le(file.data());
  SHRINK_REQUIRE(n <= k_max_safetensors_header, errc::format, who, ": header length ", n, " exceeds the limit of ",
                 k_max_safetensors_header, " bytes");
  SHRINK_REQUIRE(n <= file.size() - 8, errc::format, who, ": header length ", n, " reaches beyond the file (",
                 file.size() - 8, " bytes after the length)");
  const std::string_view text(reinterpret_cast<const char*>(file.data() + 8), static_cast<std::size_t>(n));
  SHRINK_REQUIRE(!text.empty() && text.front() == '{', errc::format, who, ": header must be a JSON object starting with '{'");
  const nlohmann::json j = safetensors_impl::parse_json_strict(text, who);
  SHRINK_REQUIRE(j.is_object(), errc::format, who, ": header must be a JSON object");

  safetensors_header h;
  h.data_start = 8 + n;
  const std::uint64_t data_size = file.size() - h.data_start;
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      SHRINK_REQUIRE(value.is_object(), errc::format, who, ": __metadata__ must be an object of strings");
      for (const auto& [mk, mv] : value.items()) {
        SHRINK_REQUIRE(mv.is_string(), errc::format, who, ": __metadata__ value of '", mk, "' must be a string, got ",
                       mv.type_name());
        h.metadata.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    SHRINK_REQUIRE(value.is_object(), errc::format, who, ": entry '", key, "' must be an object");
    const auto dt = value.find("dtype");
    const auto sh = value.find("shape");
    const auto off = value.find("data_offsets");
    SHRINK_REQUIRE(dt != value.end() && dt->is_string(), errc::format, who, ": tensor '", key,
                   "' needs a string \"dtype\"");
    SHRINK_REQUIRE(sh != value.end() && sh->is_array(), errc::format, who, ": tensor '", key,
                   "' needs an array \"shape\"");
    SHRINK_REQUIRE(off != value.end() && off->is_array() && off->size() == 2, errc::format, who, ": tensor '", key,
                   "' needs \"data_offsets\" [begin, end]");
    tensor_entry t;
    t.name = key;
    t.type = parse_dtype(dt->get_ref<const std::string&>(), who);
    for (const auto& e : *sh) t.shape.push_back(safetensors_impl::json_int(e, who, "a shape extent"));
    t.begin = static_cast<std::uint64_t>(safetensors_impl::json_int((*off)[0], who, "data_offsets[0]"));
    t.end = static_cast<std::uint64_t>(safetensors_impl::json_int((*off)[1], who, "data_offsets[1]"));
    SHRINK_REQUIRE(t.begin <= t.end, errc::format, who, ": tensor '", key, "' has data_offsets [", t.begin, ", ",
                   t.end, "] with begin after end");
    SHRINK_REQUIRE(t.end <= data_size, errc::format, who, ": tensor '", key, "' ends at byte ", t.end,
                   " but the data section holds ", data_size, " bytes");
    const std::uint64_t want = checked_byte_size(t.shape, size_of(t.type), who);
    SHRINK_REQUIRE(want == t.nbytes(), errc::format, who, ": tensor '", key, "' of shape and dtype ", name(t.type),
                   " needs ", want, " bytes but data_offsets span ", t.nbytes());
    h.tensors.push_back(std::move(t));
  }
  std::sort(h.tensors.begin(), h.tensors.end(),
            [](const tensor_entry& a, const tensor_entry& b) { return std::pair(a.begin, a.end) < std::pair(b.begin, b.end); });
  std::uint64_t at = 0;
  for (const auto& t : h.tensors) {
    SHRINK_REQUIRE(t.begin == at, errc::format, who, ": tensor '", t.name, "' starts at byte ", t.begin,
                   t.begin < at ? " overlapping the previous tensor" : " leaving a hole after byte ", at,
                   "; data offsets must tile the data section");
    at = t.end;
  }
  SHRINK_REQUIRE(at == data_size, errc::format, who, ": tensors cover ", at, " bytes but the data section holds ",
                 data_size, "; trailing bytes are not allowed");
  return h;
}

/// A safetensors file opened read-only through mmap. Tensors are handed out as byte spans
/// or zero-copy typed spans over the mapping; `read_float` converts any dtype.
class safetensors_reader {
 public:
  explicit safetensors_reader(const std::filesystem::path& path) : file_(path) {
    header_ = parse_safetensors(file_.bytes());
    index();
  }

  [[nodiscard]] const std::vector<tensor_entry>& tensors() const noexcept { return header_.tensors; }
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const noexcept { return header_.metadata; }
  [[nodiscard]] const safetensors_header& header() const noexcept { return header_; }

  [[nodiscard]] const tensor_entry* find(std::string_view name) const {
    const auto it = by_name_.find(std::string(name));
    return it == by_name_.end() ? nullptr : &header_.tensors[it->second];
  }
  [[nodiscard]] const tensor_entry& at(std::string_view name) const {
    const tensor_entry* t = find(name);
    SHRINK_REQUIRE(t != nullptr, errc::invalid_argument, "safetensors_reader: no tensor named '", name, "'");
    return *t;
  }

  /// The tensor's raw little-endian bytes (a view into the mapping).
  [[nodiscard]] std::span<const std::byte> bytes(const tensor_entry& t) const {
    return file_.bytes().subspan(static_cast<std::size_t>(header_.data_start + t.begin), static_cast<std::size_t>(t.nbytes()));
  }

  /// Zero-copy typed view. `T` must match the dtype's size and the data must be aligned for
  /// `T` (writers such as shrink's align every tensor; others may not: then use read_float).
  template <class T>
  [[nodiscard]] std::span<const T> view(const tensor_entry& t) const {
    SHRINK_REQUIRE(sizeof(T) == size_of(t.type), errc::invalid_argument, "safetensors_reader::view: tensor '", t.name,
                   "' has dtype ", name(t.type), " of ", size_of(t.type), " bytes, not ", sizeof(T));
    const auto b = bytes(t);
    SHRINK_REQUIRE(reinterpret_cast<std::uintptr_t>(b.data()) % alignof(T) == 0, errc::unsupported,
                   "safetensors_reader::view: tensor '", t.name, "' is not aligned for a zero-copy view; use read_float");
    return {reinterpret_cast<const T*>(b.data()), b.size() / sizeof(T)};
  }

  /// The tensor's elements converted to float (F16/BF16 on the vector path).
  [[nodiscard]] aligned_buffer<float> read_float(const tensor_entry& t) const {
    aligned_buffer<float> out(static_cast<std::size_t>(t.count()));
    to_float(t.type, bytes(t).data(), out.size(), out.data());
    return out;
  }

  /// Drops the tensor's pages from the resident set (see mapped_file::release).
  void release(const tensor_entry& t) const noexcept {
    file_.release(static_cast<std::size_t>(header_.data_start + t.begin), static_cast<std::size_t>(t.nbytes()));
  }

 private:
  void index() {
    for (std::size_t i = 0; i < header_.tensors.size(); ++i) by_name_.emplace(header_.tensors[i].name, i);
  }
  mapped_file file_;
  safetensors_header header_;
  std::unordered_map<std::string, std::size_t> by_name_;
};

/// Writes a safetensors file tensor by tensor without holding the file in memory: data goes
/// to an unlinked spool file next to the output as it is added; `finish()` writes header +
/// data to a temporary file and renames it onto `path`, so nothing (and never a partial file)
/// appears there before. The header is padded with spaces to a multiple of 8 bytes, as the
/// reference writer does, so the data section starts 8-aligned; tensors follow in the order
/// added with no gaps (the format forbids holes).
class safetensors_writer {
 public:
  explicit safetensors_writer(std::filesystem::path path) : out_(std::move(path)) {
    std::string tmpl = out_.temporary().string() + ".spool.XXXXXX";
    spool_ = ::mkstemp(tmpl.data());
    SHRINK_REQUIRE(spool_ >= 0, errc::io, "safetensors_writer: cannot create spool file: ", std::strerror(errno));
    ::unlink(tmpl.c_str());
  }
  safetensors_writer(const safetensors_writer&) = delete;
  safetensors_writer& operator=(const safetensors_writer&) = delete;
  ~safetensors_writer() {
    if (spool_ >= 0) ::close(spool_);
  }

  void set_metadata(std::map<std::string, std::string> metadata) { metadata_ = std::move(metadata); }
  void add_metadata(const std::string& key, std::string value) { metadata_[key] = std::move(value); }

  /// Appends one tensor. `bytes` must hold exactly shape x dtype bytes, little-endian.
  void add(const std::string& name, dtype type, std::vector<std::int64_t> shape, std::span<const std::byte> bytes) {
    constexpr std::string_view who = "safetensors_writer";
    SHRINK_REQUIRE(!name.empty() && name != "__metadata__", errc::invalid_argument, who,
                   ": tensor name must be non-empty and not __metadata__");
    SHRINK_REQUIRE(names_.insert(name).second, errc::invalid_argument, who, ": duplicate tensor name '", name, "'");
    const std::uint64_t want = checked_byte_size(shape, size_of(type), who);
    SHRINK_REQUIRE(want == bytes.size(), errc::shape_mismatch, who, ": tensor '", name, "' needs ", want,
                   " bytes for its shape and dtype, got ", bytes.size());
    write_all(spool_, bytes);
    entries_.push_back({name, type, std::move(shape), size_, size_ + bytes.size()});
    size_ += bytes.size();
  }
  template <class T>
  void add(const std::string& name, dtype type, std::vector<std::int64_t> shape, std::span<const T> values) {
    add(name, type, std::move(shape), std::as_bytes(values));
  }

  [[nodiscard]] std::uint64_t data_bytes() const noexcept { return size_; }

  /// Writes the file and renames it into place. Nothing appears at `path` before this.
  void finish() {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    if (!metadata_.empty()) {
      nlohmann::ordered_json m = nlohmann::ordered_json::object();
      for (const auto& [k, v] : metadata_) m[k] = v;
      j["__metadata__"] = std::move(m);
    }
    for (const auto& e : entries_)
      j[e.name] = {{"dtype", std::string(name(e.type))}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
    std::string text;
    try {
      text = j.dump();
    } catch (const nlohmann::json::exception& ex) {
      detail::raise(errc::invalid_argument, "safetensors_writer: a name or metadata string is not valid UTF-8: ", ex.what());
    }
    text.append((8 - text.size() % 8) % 8, ' ');
    std::byte len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<std::byte>((text.size() >> (8 * i)) & 0xffu);
    out_.write(std::span<const std::byte>(len, 8));
    out_.write(text);
    copy_spool();
    out_.commit();
  }

 private:
  static void write_all(int fd, std::span<const std::byte> bytes) {
    const std::byte* p = bytes.data();
    std::size_t left = bytes.size();
    while (left > 0) {
      const ssize_t n = ::write(fd, p, std::min<std::size_t>(left, std::size_t{1} << 30));
      if (n < 0 && errno == EINTR) continue;
      SHRINK_REQUIRE(n > 0, errc::io, "safetensors_writer: write failed: ", std::strerror(errno));
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }

  void copy_spool() {
    // Copy in the kernel where possible (copy_file_range); the data never enters user memory.
    off_t in = 0;
    std::uint64_t left = size_;
    while (left > 0) {
      const ssize_t n = ::copy_file_range(spool_, &in, out_.fd(), nullptr, std::min<std::uint64_t>(left, 1u << 30), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      left -= static_cast<std::uint64_t>(n);
    }
    if (left > 0) {  // fallback: a bounded buffer
      std::vector<std::byte> buf(std::size_t{1} << 20);
      while (left > 0) {
        const ssize_t n = ::pread(spool_, buf.data(), std::min<std::uint64_t>(left, buf.size()), in);
        if (n < 0 && errno == EINTR) continue;
        SHRINK_REQUIRE(n > 0, errc::io, "safetensors_writer: reading the spool failed");
        out_.write(std::span<const std::byte>(buf.data(), static_cast<std::size_t>(n)));
        in += n;
        left -= static_cast<std::uint64_t>(n);
      }
    }
  }

  atomic_output out_;
  int spool_ = -1;
  std::map<std::string, std::string> metadata_;
  std::vector<tensor_entry> entries_;
  std::set<std::string> names_;
  std::uint64_t size_ = 0;
};

}  // namespace shrink::io
