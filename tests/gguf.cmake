# GGUF reader/writer: unit tests, and the libFuzzer run of the reader (label "fuzz").
ember_gtest(test-gguf
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/gguf-reader-test.cpp
          ${CMAKE_CURRENT_SOURCE_DIR}/gguf-writer-test.cpp
          ${CMAKE_CURRENT_SOURCE_DIR}/gguf-corrupt-test.cpp
  LABELS unit)

# The fuzzer is compiled by clang directly from engine/gguf.cpp (which depends on headers only), whatever
# compiler builds the rest, because libFuzzer and the sanitizers need clang's runtime.
set(_gguf_fuzz_skip "")
if(NOT EMBER_FUZZ)
  set(_gguf_fuzz_skip "EMBER_FUZZ is OFF")
else()
  find_program(EMBER_FUZZ_CLANGXX NAMES clang++ clang++-18 clang++-17 clang++-16 clang++-15 clang++-14
               DOC "clang++ with libFuzzer, for the GGUF fuzzer")
  if(NOT EMBER_FUZZ_CLANGXX)
    set(_gguf_fuzz_skip "no clang++ found (install clang and libclang-rt-14-dev: scripts/setup)")
  elseif(NOT EMBER_FUZZ_CLANG_WORKS)
    # clang without its runtime (libclang-rt-*-dev) compiles but cannot link -fsanitize=fuzzer: probe until it can.
    set(_probe ${CMAKE_CURRENT_BINARY_DIR}/gguf-fuzz-probe)
    file(WRITE ${_probe}.cpp
         "#include <cstdint>\n#include <cstddef>\nextern \"C\" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n")
    execute_process(COMMAND ${EMBER_FUZZ_CLANGXX} -fsanitize=fuzzer,address,undefined ${_probe}.cpp -o ${_probe}
                    RESULT_VARIABLE _rc OUTPUT_QUIET ERROR_QUIET)
    if(_rc EQUAL 0)
      set(EMBER_FUZZ_CLANG_WORKS ON CACHE INTERNAL "")
    endif()
  endif()
  if(EMBER_FUZZ_CLANGXX AND NOT EMBER_FUZZ_CLANG_WORKS)
    set(_gguf_fuzz_skip "${EMBER_FUZZ_CLANGXX} cannot link -fsanitize=fuzzer (install libclang-rt-14-dev)")
  endif()
endif()

if(_gguf_fuzz_skip STREQUAL "")
  set(_fuzz_bin ${CMAKE_BINARY_DIR}/bin/gguf-fuzz)
  set(_fuzz_src ${PROJECT_SOURCE_DIR}/engine/gguf.cpp ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/gguf-fuzz.cpp)
  add_custom_command(
    OUTPUT ${_fuzz_bin}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/bin
    COMMAND ${EMBER_FUZZ_CLANGXX} -std=c++17 -g -O1 -Wall -Wextra -fno-omit-frame-pointer
            -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I${PROJECT_SOURCE_DIR}
            ${_fuzz_src} -o ${_fuzz_bin}
    DEPENDS ${_fuzz_src} ${PROJECT_SOURCE_DIR}/engine/gguf.h ${PROJECT_SOURCE_DIR}/engine/error.h
    COMMENT "Building the GGUF fuzzer with ${EMBER_FUZZ_CLANGXX}"
    VERBATIM)
  add_custom_target(gguf-fuzz ALL DEPENDS ${_fuzz_bin})
  add_test(NAME gguf-fuzz
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run-gguf-fuzz.sh ${_fuzz_bin} ${PROJECT_SOURCE_DIR}
                   ${CMAKE_BINARY_DIR}/gguf-fuzz-artifacts 45)
  set_tests_properties(gguf-fuzz PROPERTIES LABELS fuzz TIMEOUT 300)
else()
  message(STATUS "gguf-fuzz: skipped: ${_gguf_fuzz_skip}")
  add_test(NAME gguf-fuzz COMMAND sh -c "echo 'gguf-fuzz skipped: ${_gguf_fuzz_skip}'; exit 77")
  set_tests_properties(gguf-fuzz PROPERTIES LABELS fuzz SKIP_RETURN_CODE 77)
endif()
