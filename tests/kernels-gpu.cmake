# GPU kernels against the CPU reference; each test skips with a message where no CUDA device exists.
# ember-kernels-gpu-test links the kernel libraries alone (not ember-engine), as kernels-cpu.cmake does; the
# predictor test compares with predictor/predictor.h, which lives in ember-engine.
if(EMBER_CUDA)
  add_executable(ember-kernels-gpu-test kernels-gpu-test.cpp kernels-gpu-matmul-test.cpp kernels-gpu-sparse-test.cpp
                 kernels-gpu-host-sync-test.cpp)
  ember_target_defaults(ember-kernels-gpu-test)
  target_link_libraries(ember-kernels-gpu-test PRIVATE ember-kernels-gpu GTest::gtest GTest::gtest_main)
  gtest_discover_tests(ember-kernels-gpu-test PROPERTIES LABELS "gpu" DISCOVERY_TIMEOUT 60)

  ember_gtest(test-kernels-gpu-predictor SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/kernels-gpu-predictor-test.cpp
              LABELS "gpu" LIBS ember-kernels-gpu)

  # ember-gpu-bench: checks each kernel against its CPU reference at 7B shapes, then prints GB/s (TFLOP/s for GEMM)
  # next to the card's peak.
  add_executable(ember-gpu-bench bench/kernels-gpu-bench.cpp)
  ember_target_defaults(ember-gpu-bench)
  target_link_libraries(ember-gpu-bench PRIVATE ember-kernels-gpu)
endif()

# Predictor training on the GPU: its kernels against the CPU loop's formulas, and whole runs against the CPU's.
if(EMBER_CUDA)
  ember_gtest(test-predictor-train-gpu SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/predictor-train-gpu-test.cpp
              LABELS "gpu" LIBS ember-kernels-gpu)
endif()

# The chained-launch rule on the kernel sources (no GPU needed).
ember_gtest(test-kernels-gpu-chained-source SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/kernels-gpu-chained-source-test.cpp
            LABELS unit)
