// error.hpp: shrink::error, the one exception type, with a stable code and a message saying what was expected.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace shrink {

/// Stable error codes; docs/errors.md lists them. Values never change once released.
enum class errc : int {
  invalid_argument = 1,  ///< an option or argument outside its documented range
  shape_mismatch = 2,    ///< shapes, ranks or strides that do not fit together
  out_of_range = 3,      ///< an index or a view that reaches outside its buffer
  empty_input = 4,       ///< an empty tensor where data is needed
  non_finite = 5,        ///< NaN or Inf where finite numbers are needed
  unsupported = 6,       ///< a valid request this build or CPU cannot serve (e.g. an ISA path)
  io = 7,                ///< a file could not be opened, read or written
  format = 8,            ///< a file or stream that breaks its format (truncated, corrupt, hostile)
  overflow = 9,          ///< a size whose computation would overflow
};

/// Stable, lower-case name of a code ("shape_mismatch"), as used in docs/errors.md.
constexpr std::string_view to_string(errc code) noexcept {
  switch (code) {
    case errc::invalid_argument: return "invalid_argument";
    case errc::shape_mismatch: return "shape_mismatch";
    case errc::out_of_range: return "out_of_range";
    case errc::empty_input: return "empty_input";
    case errc::non_finite: return "non_finite";
    case errc::unsupported: return "unsupported";
    case errc::io: return "io";
    case errc::format: return "format";
    case errc::overflow: return "overflow";
  }
  return "unknown";
}

/// The exception every shrink function throws on bad input. `what()` reads
/// "context: what was wrong, what was expected", e.g. "quantize: bits must be in [2, 8], got 9".
class error : public std::runtime_error {
 public:
  error(errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  [[nodiscard]] errc code() const noexcept { return code_; }

 private:
  errc code_;
};

namespace detail {

template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

template <class... Parts>
[[noreturn]] void raise(errc code, const Parts&... parts) {
  throw error(code, concat(parts...));
}

}  // namespace detail
}  // namespace shrink

/// Throws shrink::error(code, message parts...) when `cond` is false. The parts are only
/// evaluated on failure, so building the message costs nothing on the good path.
#define SHRINK_REQUIRE(cond, code, ...)                             \
  do {                                                              \
    if (!(cond)) [[unlikely]] ::shrink::detail::raise((code), __VA_ARGS__); \
  } while (false)
