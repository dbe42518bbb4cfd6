# End-to-end numerics on real models: llama.cpp's logits and greedy tokens for stories260K, and every weight dtype.
ember_gtest(test-golden SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/golden-stories260k-test.cpp LABELS "golden")
ember_gtest(test-model-dtypes SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/model-dtypes-test.cpp LABELS "golden")
ember_gtest(test-model-load SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/model-load-test.cpp LABELS "unit")
ember_gtest(test-kernels-layer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/kernels-layer-test.cpp LABELS "unit")
