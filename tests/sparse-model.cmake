# The sparse FFN inside the model: constructed profiles on stories260K made ReGLU (label "model").
ember_gtest(test-sparse-model SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/sparse-model-test.cpp LABELS model)
