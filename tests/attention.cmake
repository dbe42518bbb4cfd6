# ember-attention-bench: one decode token's CPU attention, grouped (the engine's) against per head, in GB/s of the
# cache next to the read bandwidth (engine/memory-bandwidth.h, hence ember-engine).
add_executable(ember-attention-bench bench/attention-bench.cpp)
ember_target_defaults(ember-attention-bench)
target_link_libraries(ember-attention-bench PRIVATE ember-engine)
