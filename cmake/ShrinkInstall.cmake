# ShrinkInstall.cmake: install rules for the headers, the target export and the package config.
include_guard(GLOBAL)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/shrink" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(TARGETS shrink EXPORT shrinkTargets)
set(SHRINK_CMAKE_DIR "${CMAKE_INSTALL_DATADIR}/cmake/shrink")
install(EXPORT shrinkTargets NAMESPACE shrink:: DESTINATION "${SHRINK_CMAKE_DIR}")
configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/shrinkConfig.cmake.in"
                              "${PROJECT_BINARY_DIR}/shrinkConfig.cmake" INSTALL_DESTINATION "${SHRINK_CMAKE_DIR}")
# ARCH_INDEPENDENT: a header-only package fits any architecture.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/shrinkConfigVersion.cmake" COMPATIBILITY SameMinorVersion
                                 ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/shrinkConfig.cmake" "${PROJECT_BINARY_DIR}/shrinkConfigVersion.cmake"
        DESTINATION "${SHRINK_CMAKE_DIR}")
install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/shrink")
