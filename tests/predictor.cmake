# Activation predictor (predictor/): inference against a double reference, active lists, training on a learnable
# synthetic rule to the recall target, determinism, input checks.
ember_gtest(test-predictor SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/predictor-test.cpp LABELS unit)
