# What the host CPU offers (engine/cpu-info.h): physical cores, one CPU per core for pinned workers.
ember_gtest(test-cpu-info SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/cpu-info-test.cpp LABELS "unit")
