# ShrinkDependencies.cmake: find_package wrappers that name the Debian package to install when one is missing.
include_guard(GLOBAL)
include(GNUInstallDirs)

# shrink_require_package(<Package> <debian-package> <min-version>)
# Finds <Package> in CONFIG mode; when it is missing, configure fails with the install command.
function(shrink_require_package package debian_package min_version)
  find_package(${package} ${min_version} CONFIG QUIET)
  if(NOT ${package}_FOUND)
    message(FATAL_ERROR
      "shrink needs ${package} >= ${min_version}, which was not found.\n"
      "On Debian/Ubuntu install it with:\n"
      "    sudo apt-get install -y ${debian_package}\n"
      "or point CMake at an installed copy with -D${package}_DIR=<dir containing ${package}Config.cmake>.")
  endif()
endfunction()

# shrink_optional_package(<Package> <debian-package> [CONFIG|MODULE])
# Looks for a peer library used by benchmarks; reports what it found either way.
function(shrink_optional_package package debian_package)
  find_package(${package} ${ARGN} QUIET)
  if(${package}_FOUND)
    message(STATUS "shrink: found ${package} (benchmarks compare against it)")
  else()
    message(STATUS "shrink: ${package} not found; its benchmarks are skipped (apt-get install ${debian_package})")
  endif()
  set(${package}_FOUND ${${package}_FOUND} PARENT_SCOPE)
endfunction()

# Debian's xsimd 8.1 exports a link to a bare "xtl" even though shrink uses no xtl feature;
# give that name an empty imported target so linking does not look for a libxtl.
macro(shrink_patch_xsimd_xtl)
  if(TARGET xsimd AND NOT TARGET xtl)
    get_target_property(_shrink_xsimd_links xsimd INTERFACE_LINK_LIBRARIES)
    if(_shrink_xsimd_links MATCHES "(^|;)xtl(;|$)")
      add_library(xtl INTERFACE IMPORTED)
    endif()
  endif()
endmacro()
