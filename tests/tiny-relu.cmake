# models/tiny-relu: the tools of the recipe that trains ember's own small ReGLU model (see its README.md), and
# their tests: corpus tokenization, packing train.py's raw weights into GGUF, the logits parity tool.
find_package(nlohmann_json REQUIRED)
foreach(tool tokenize-corpus pack logits)
  set(_target ember-tiny-${tool})
  if(tool STREQUAL "tokenize-corpus")
    set(_target ember-tokenize-corpus)
  endif()
  add_executable(${_target} ${PROJECT_SOURCE_DIR}/models/tiny-relu/${tool}.cpp)
  ember_target_defaults(${_target})
  target_link_libraries(${_target} PRIVATE ember-engine nlohmann_json::nlohmann_json)
endforeach()

ember_gtest(test-tiny-relu SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/tiny-relu-test.cpp LABELS e2e)
target_compile_definitions(test-tiny-relu PRIVATE
  EMBER_TOKENIZE_CORPUS_BIN="$<TARGET_FILE:ember-tokenize-corpus>"
  EMBER_TINY_PACK_BIN="$<TARGET_FILE:ember-tiny-pack>"
  EMBER_TINY_LOGITS_BIN="$<TARGET_FILE:ember-tiny-logits>"
  EMBER_SPARSITY_BIN="$<TARGET_FILE:ember-sparsity>")
add_dependencies(test-tiny-relu ember-tokenize-corpus ember-tiny-pack ember-tiny-logits ember-sparsity)

# The shipped model against the logits PyTorch computed for it on the GPU machine right after training
# (models/tiny-relu/run/reference.json, Q8_0-rounded weights), and its greedy text.
add_test(NAME tiny-relu-shipped-model-matches-training-reference
         COMMAND ember-tiny-logits -m ${PROJECT_SOURCE_DIR}/models/tiny-relu-q8_0.gguf
                 --check ${PROJECT_SOURCE_DIR}/models/tiny-relu/run/reference.json --variant q8_0 -t 2)
set_tests_properties(tiny-relu-shipped-model-matches-training-reference PROPERTIES LABELS golden)
add_test(NAME tiny-relu-shipped-model-writes-english
         COMMAND ember-cli -m ${PROJECT_SOURCE_DIR}/models/tiny-relu-q8_0.gguf -p "In the beginning" -n 24 --temp 0 -t 2)
set_tests_properties(tiny-relu-shipped-model-writes-english PROPERTIES LABELS golden
  PASS_REGULAR_EXPRESSION "In the beginning of the 1990s, the Linux kernel has been written in")
