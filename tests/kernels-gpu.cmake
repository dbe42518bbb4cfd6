# GPU kernels against the CPU reference; each test skips with a message where no CUDA device exists.
if(EMBER_CUDA)
  ember_gtest(test-kernels-gpu SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/kernels-gpu-test.cpp LABELS "gpu"
              LIBS ember-kernels-gpu)
endif()
