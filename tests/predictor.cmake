# Activation predictor (predictor/): inference against a double reference, active lists, training on a learnable
# synthetic rule to the recall target, metrics through the packed weights, the rank chosen by expected bytes,
# determinism, input checks.
ember_gtest(test-predictor SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/predictor-test.cpp LABELS unit)

# ember-predictor-train-bench: training time per rank and for the rank search of one 7B-shaped layer.
add_executable(ember-predictor-train-bench ${CMAKE_CURRENT_SOURCE_DIR}/bench/predictor-train-bench.cpp)
ember_target_defaults(ember-predictor-train-bench)
target_link_libraries(ember-predictor-train-bench PRIVATE ember-engine)
