# The apps and what they use: sampler, chat templates, perplexity math, bench statistics (label "unit"), and
# end-to-end runs of ember-cli, ember-perplexity and ember-bench on stories260K (label "e2e").
ember_gtest(test-sampler SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/sampler-test.cpp LABELS unit)
ember_gtest(test-chat-template SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/chat-template-test.cpp LABELS unit)
ember_gtest(test-apps-perplexity SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/apps-perplexity-test.cpp LABELS unit)
ember_gtest(test-apps-bench-stats SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/apps-bench-stats-test.cpp LABELS unit)
ember_gtest(test-apps-args SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/apps-args-test.cpp LABELS unit)

ember_gtest(test-apps-e2e SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/apps-e2e-test.cpp LABELS e2e)
target_compile_definitions(test-apps-e2e PRIVATE
  EMBER_CLI_BIN="$<TARGET_FILE:ember-cli>"
  EMBER_PERPLEXITY_BIN="$<TARGET_FILE:ember-perplexity>"
  EMBER_BENCH_BIN="$<TARGET_FILE:ember-bench>"
  EMBER_SYNTH_BIN="$<TARGET_FILE:ember-synth>"
  EMBER_SPARSITY_BIN="$<TARGET_FILE:ember-sparsity>"
  EMBER_PROFILE_BIN="$<TARGET_FILE:ember-profile>"
  EMBER_TOKENIZE_BIN="$<TARGET_FILE:ember-tokenize>"
  EMBER_QUANTIZE_BIN="$<TARGET_FILE:ember-quantize>")
add_dependencies(test-apps-e2e ember-cli ember-perplexity ember-bench ember-synth ember-sparsity ember-profile
                 ember-tokenize ember-quantize)
