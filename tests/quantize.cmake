# ember-quantize: engine/quantize.h on stories260K (label "unit") and runs of the built binary (label "e2e").
ember_gtest(test-quantize SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/quantize-test.cpp LABELS unit)

ember_gtest(test-quantize-e2e SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/quantize-e2e-test.cpp LABELS e2e)
target_compile_definitions(test-quantize-e2e PRIVATE EMBER_QUANTIZE_BIN="$<TARGET_FILE:ember-quantize>")
add_dependencies(test-quantize-e2e ember-quantize)
