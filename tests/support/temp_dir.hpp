// temp_dir.hpp: test helper giving each test program (and tag) its own scratch directory under the system temp dir.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>

namespace shrink::testing {

/// <temp>/shrink_test_<tag>_<pid>, created on first use; one per tag and process, so tests
/// running in parallel never share files.
inline std::filesystem::path temp_dir(const std::string& tag) {
  static std::map<std::string, std::filesystem::path> dirs;
  auto [it, fresh] = dirs.try_emplace(tag);
  if (fresh) {
    it->second = std::filesystem::temp_directory_path() / ("shrink_test_" + tag + "_" + std::to_string(::getpid()));
    std::filesystem::create_directories(it->second);
  }
  return it->second;
}

}  // namespace shrink::testing
