# Generation shared by the apps and the server: text streaming (stop strings, UTF-8 hold-back), the Generator and
# ChatSession on the real stories260K model.
ember_gtest(test-generator SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/generator-test.cpp LABELS "unit")
