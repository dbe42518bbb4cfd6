# Writes a C++ header holding a file's bytes, for ember-server's chat page: no files to ship or find at run time.
# cmake -DINPUT=page.html -DOUTPUT=web-page.h -DNAME=kServerWebPage -P embed-file.cmake
# gives `inline constexpr unsigned char NAME[]` (the bytes, then a 0) and `inline constexpr size_t NAME##Size`.
# The header is rewritten only when its content changes, so an unchanged page rebuilds nothing.
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" n_hex)
math(EXPR size "${n_hex} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){24})" "\\1\n" bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
  "// Generated at build time from ${INPUT} by apps/server/embed-file.cmake; do not edit.\n"
  "#pragma once\n#include <cstddef>\n\n"
  "inline constexpr unsigned char ${NAME}[] = {\n${bytes}0x00};\n"
  "inline constexpr size_t ${NAME}Size = ${size};\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
