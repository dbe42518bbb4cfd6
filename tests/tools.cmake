# Developer tools used by tests and benchmarks (not installed).
add_executable(ember-make-random-llama ${CMAKE_CURRENT_SOURCE_DIR}/tools/make-random-llama.cpp)
ember_target_defaults(ember-make-random-llama)
target_link_libraries(ember-make-random-llama PRIVATE ember-engine)
