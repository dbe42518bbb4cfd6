# CPU kernel tests and benchmark. They link ember-kernels-cpu alone (not ember-engine): kernels never see engine
# types, and the kernel tests then build while engine files are in progress.
add_executable(ember-kernels-cpu-test
  kernels-dtype-test.cpp
  kernels-quant-test.cpp
  kernels-dot-test.cpp
  kernels-thread-pool-test.cpp
  kernels-matmul-test.cpp
  kernels-gemm-test.cpp
  kernels-exp-test.cpp)
ember_target_defaults(ember-kernels-cpu-test)
target_link_libraries(ember-kernels-cpu-test PRIVATE ember-kernels-cpu GTest::gtest GTest::gtest_main)
gtest_discover_tests(ember-kernels-cpu-test PROPERTIES LABELS "unit" DISCOVERY_TIMEOUT 60)

# ember-kernel-bench: checks matvec/matmul against matmul_ref, then prints GB/s next to the measured peak.
add_executable(ember-kernel-bench bench/kernels-cpu-bench.cpp)
ember_target_defaults(ember-kernel-bench)
target_link_libraries(ember-kernel-bench PRIVATE ember-kernels-cpu)

# ember-pool-bench: what a ThreadPool::parallel_for costs beyond its work, after an idle gap.
add_executable(ember-pool-bench bench/thread-pool-bench.cpp)
ember_target_defaults(ember-pool-bench)
target_link_libraries(ember-pool-bench PRIVATE ember-kernels-cpu)

# ember-gather-bench: the pool reading a sparse FFN layer's gathered rows and nothing else (the host rows' ceiling).
add_executable(ember-gather-bench bench/gather-bench.cpp)
ember_target_defaults(ember-gather-bench)
target_link_libraries(ember-gather-bench PRIVATE ember-kernels-cpu)
