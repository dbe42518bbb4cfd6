# The offline profiler (offline-profiler/profiler.h, ember-profile) on the shipped tiny ReLU model: the profile reads
# back, fits the model, its frequencies agree with engine/ffn-stats and its predictors reach the recall target.
ember_gtest(test-profiler SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/profiler-test.cpp LABELS unit)
target_compile_definitions(test-profiler PRIVATE EMBER_PROFILE_BIN="$<TARGET_FILE:ember-profile>")
add_dependencies(test-profiler ember-profile)
