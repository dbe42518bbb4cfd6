# FFN activation statistics (engine/ffn-stats.h, ember-sparsity): hand-checked counts and a ReLU copy of stories260K.
ember_gtest(test-ffn-stats SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/ffn-stats-test.cpp LABELS unit)
