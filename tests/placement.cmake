# Placement planner (engine/placement.h): budgets, modes, greedy against exhaustive search, placement files.
ember_gtest(test-placement SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/placement-test.cpp LABELS unit)
