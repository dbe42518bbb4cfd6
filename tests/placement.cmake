# Placement planner (engine/placement.h): budgets, modes, greedy against exhaustive search, placement files.
ember_gtest(test-placement SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/placement-test.cpp LABELS unit)
# The planner's view of a real model (models/llama-placement.h): the shipped tiny ReLU model and its profile.
ember_gtest(test-llama-placement SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/llama-placement-test.cpp LABELS unit)
