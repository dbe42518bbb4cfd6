# Several sessions in one forward pass (engine/batch-eval.h) against each session alone (label "model").
ember_gtest(test-batch-eval SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/batch-eval-test.cpp LABELS model)
