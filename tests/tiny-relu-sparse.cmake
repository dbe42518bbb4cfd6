# The shipped tiny ReLU model with its shipped profile: recall, held-out perplexity and greedy text, sparse against
# dense (label "model").
ember_gtest(test-tiny-relu-sparse SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/tiny-relu-sparse-test.cpp LABELS model)
