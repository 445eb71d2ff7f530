// errors.hpp: test helper returning the shrink::errc a call throws (errc{} = 0, no valid code, when it throws nothing).
#pragma once

#include <shrink/core/error.hpp>

namespace shrink::testing {

/// The code of the shrink::error that fn() throws; errc{} when it returns normally, so a
/// CHECK(code_of(...) == errc::x) fails on a missing error.
template <class Fn>
errc code_of(Fn&& fn) {
  try {
    fn();
  } catch (const shrink::error& e) {
    return e.code();
  }
  return errc{};
}

}  // namespace shrink::testing
