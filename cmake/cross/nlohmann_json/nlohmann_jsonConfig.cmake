# nlohmann-json for cross builds (cmake/mingw-w64-x86_64.cmake points nlohmann_json_DIR here): Debian's
# header-only copy (nlohmann-json3-dev), copied into a folder of its own, so that the host's /usr/include, whose C
# library headers are not the target's, never reaches the cross compiler.
set(EMBER_JSON_INCLUDE /usr/include CACHE PATH "folder holding nlohmann/json.hpp, for cross builds")
if(NOT EXISTS ${EMBER_JSON_INCLUDE}/nlohmann/json.hpp)
  set(nlohmann_json_FOUND FALSE)
  set(nlohmann_json_NOT_FOUND_MESSAGE "${EMBER_JSON_INCLUDE}/nlohmann/json.hpp is missing (install nlohmann-json3-dev)")
  return()
endif()
if(NOT TARGET nlohmann_json::nlohmann_json)
  set(_json_copy ${CMAKE_BINARY_DIR}/cross-include/json)
  file(COPY ${EMBER_JSON_INCLUDE}/nlohmann DESTINATION ${_json_copy})
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED GLOBAL)
  target_include_directories(nlohmann_json::nlohmann_json SYSTEM INTERFACE ${_json_copy})
endif()
set(nlohmann_json_FOUND TRUE)
