# ember-server (included by apps/CMakeLists.txt after it made the executable from apps/server/*.cpp).
# HTTP through cpp-httplib and JSON through nlohmann-json, both Debian packages (scripts/setup installs them). The
# code but main.cpp is a library, so the tests can run the routes in-process too. The chat page,
# apps/server/web/index.html, is embedded as a generated header; placeholder.html stands in while it is missing.
# Windows (the MinGW cross build) takes httplib's single header instead: cmake/windows-server-deps.cmake.
if(WIN32)
  include(${PROJECT_SOURCE_DIR}/cmake/windows-server-deps.cmake)
  set(_httplib_target ember-httplib)
else()
  pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
  set(_httplib_target PkgConfig::HTTPLIB)
endif()

file(GLOB _server_page CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/web/index.html)
if(NOT _server_page)
  set(_server_page ${CMAKE_CURRENT_LIST_DIR}/placeholder.html)
endif()
set(_server_gen ${CMAKE_CURRENT_BINARY_DIR}/server-generated)
add_custom_command(
  OUTPUT ${_server_gen}/apps/server/web-page.h
  COMMAND ${CMAKE_COMMAND} -DINPUT=${_server_page} -DOUTPUT=${_server_gen}/apps/server/web-page.h
          -DNAME=kServerWebPage -P ${CMAKE_CURRENT_LIST_DIR}/embed-file.cmake
  DEPENDS ${_server_page} ${CMAKE_CURRENT_LIST_DIR}/embed-file.cmake
  COMMENT "Embedding ${_server_page} into ember-server")

file(GLOB _server_src CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.cpp)
list(REMOVE_ITEM _server_src ${CMAKE_CURRENT_LIST_DIR}/main.cpp)
add_library(ember-server-core STATIC ${_server_src} ${_server_gen}/apps/server/web-page.h)
ember_target_defaults(ember-server-core)
target_include_directories(ember-server-core PRIVATE ${_server_gen})
target_link_libraries(ember-server-core PUBLIC ember-engine ${_httplib_target})

set_property(TARGET ember-server PROPERTY SOURCES ${CMAKE_CURRENT_LIST_DIR}/main.cpp)
target_link_libraries(ember-server PRIVATE ember-server-core)
