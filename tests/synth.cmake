# ember-synth (models/synth.h): sparsity and hot share of synthetic ReLU models measured through the engine, the
# gate's low-rank structure, determinism, parameter errors and the binary's flags.
ember_gtest(test-synth SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/synth-test.cpp LABELS unit)
target_compile_definitions(test-synth PRIVATE EMBER_SYNTH_BIN="$<TARGET_FILE:ember-synth>")
add_dependencies(test-synth ember-synth)
