# Profile file (predictor/profile.h): write/read round trips (F32, F16), PowerInfer predictors, corruptions, and the
# model check against stories260K.
ember_gtest(test-profile SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/profile-test.cpp LABELS unit)
