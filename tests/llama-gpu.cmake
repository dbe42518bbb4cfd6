# Whole models on the GPU against the CPU engine: hybrid and layer-offload placements, placement files, the
# measured VRAM against the budget, the decode timeline (label "gpu"; skipped with a message without a device).
if(EMBER_CUDA)
  ember_gtest(test-llama-gpu SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/llama-gpu-test.cpp LABELS gpu)
endif()
