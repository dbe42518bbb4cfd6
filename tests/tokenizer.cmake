# Tokenizers: llama.cpp's test vectors (SentencePiece and GPT-2 BPE), the stories260K prompts, special tokens,
# pre-tokenizer splits and bad metadata.
ember_gtest(test-tokenizer
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer-vectors-test.cpp
          ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer-special-test.cpp
          ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer-pre-test.cpp
          ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer-errors-test.cpp
  LABELS "unit")
