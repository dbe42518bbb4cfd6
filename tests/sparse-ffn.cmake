# Sparse FFN operators (kernels-cpu/sparse-ffn.h): links ember-kernels-cpu alone, as kernels-cpu.cmake does.
add_executable(ember-sparse-ffn-test sparse-ffn-test.cpp)
ember_target_defaults(ember-sparse-ffn-test)
target_link_libraries(ember-sparse-ffn-test PRIVATE ember-kernels-cpu GTest::gtest GTest::gtest_main)
gtest_discover_tests(ember-sparse-ffn-test PROPERTIES LABELS "unit" DISCOVERY_TIMEOUT 60)

# ember-sparse-ffn-bench: checks sparse against dense, then prints GB/s of weights read, sparse next to dense.
add_executable(ember-sparse-ffn-bench bench/sparse-ffn-bench.cpp)
ember_target_defaults(ember-sparse-ffn-bench)
target_link_libraries(ember-sparse-ffn-bench PRIVATE ember-kernels-cpu)
