// isa.hpp: test helper that runs a check under every ISA path this machine (or the emulated build) has.
#pragma once

#include <catch2/catch.hpp>
#include <shrink/kernels/dispatch.hpp>
#include <string>
#include <vector>

namespace shrink::testing {

/// The paths to check. In the emulated build (SHRINK_EMULATE_AVX512) only the paths that
/// SIMDe emulates are listed; the native build checks the rest.
inline std::vector<kernels::isa> isas_under_test() {
  std::vector<kernels::isa> out;
  for (kernels::isa path : kernels::available_isas()) {
#if defined(SHRINK_EMULATE_AVX512)
    if (path != kernels::isa::avx_vnni && path != kernels::isa::avx512 && path != kernels::isa::avx512_vnni) continue;
#endif
    out.push_back(path);
  }
  return out;
}

/// Calls check(path) once per path with that path forced (kernels::scoped_isa); a failing
/// assertion names the path.
template <class Check>
void for_each_isa(Check&& check) {
  for (kernels::isa path : isas_under_test()) {
    kernels::scoped_isa forced(path);
    INFO("ISA path: " << std::string(kernels::name(path)));
    check(path);
  }
}

}  // namespace shrink::testing
