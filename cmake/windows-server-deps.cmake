# ember-server's HTTP library for a Windows build (the MinGW cross build; included by apps/server/app.cmake).
# Debian's libcpp-httplib-dev splits httplib.h from a compiled Linux library, so Windows uses the single header of
# the same version from Debian's source package, which scripts/setup unpacks at EMBER_HTTPLIB_SOURCE. It is copied
# into a folder of its own so that nothing else of the host's /usr/include reaches the cross compiler; nlohmann-json
# comes the same way (cmake/cross/nlohmann_json).
set(EMBER_HTTPLIB_SOURCE /usr/local/src/cpp-httplib CACHE PATH
    "folder with cpp-httplib's single-header httplib.h (Windows builds of ember-server; scripts/setup fills it)")

set(_httplib ${EMBER_HTTPLIB_SOURCE}/httplib.h)
if(NOT EXISTS ${_httplib})
  message(FATAL_ERROR "ember-server for Windows needs cpp-httplib's single header: ${_httplib} is missing "
                      "(run scripts/setup as root, or pass -DEMBER_HTTPLIB_SOURCE=<folder with httplib.h>)")
endif()
# The split header declares Server::listen_after_bind without defining it; the single header defines it inline.
file(STRINGS ${_httplib} _httplib_impl REGEX "^inline bool Server::listen_after_bind\\(\\)")
if(NOT _httplib_impl)
  message(FATAL_ERROR "${_httplib} is a split header without the implementation (expected the single-header "
                      "cpp-httplib, as in Debian's source package; run scripts/setup)")
endif()
find_package(nlohmann_json REQUIRED)

set(_inc ${CMAKE_BINARY_DIR}/cross-include/httplib)
file(COPY ${_httplib} DESTINATION ${_inc})
add_library(ember-httplib INTERFACE)
target_include_directories(ember-httplib SYSTEM INTERFACE ${_inc})
# Winsock; Windows 10 APIs (httplib uses the Vista+ socket calls).
target_compile_definitions(ember-httplib INTERFACE _WIN32_WINNT=0x0A00)
target_link_libraries(ember-httplib INTERFACE nlohmann_json::nlohmann_json ws2_32)
