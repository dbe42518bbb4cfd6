# The host thread that queues a decode step's GPU work while the CPU runs its share (engine/job-thread.h).
ember_gtest(test-job-thread SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/job-thread-test.cpp LABELS "unit")
