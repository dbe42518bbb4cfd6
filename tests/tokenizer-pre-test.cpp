// Pre-tokenizer splits: every llama.cpp name compiles, and PCRE2 gives the pieces llama.cpp's splitter gives
// (expected pieces below were worked out from llama.cpp's unicode.cpp, including its quirks).
#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/tokenizer-pre.h"

namespace {

std::vector<std::string> pieces(const std::string& pre, const std::string& text) {
    auto p = ember::PreTokenizer::create(pre);
    std::vector<std::string> out;
    for (const auto& s : p->split(text)) out.push_back(text.substr(s.first, s.second));
    return out;
}

using V = std::vector<std::string>;

TEST(PreTokenizer, EveryNameCompilesAndCoversTheText) {
    const std::string text = "Hello  world\n\n  123456 I'm ~~ caf\xC3\xA9 \xE6\x9D\xB1\xE4\xBA\xAC 1,234.5!";
    const auto names = ember::pre_tokenizer_names();
    EXPECT_GE(names.size(), 70u);
    for (const auto& name : names) {
        SCOPED_TRACE(name);
        std::string joined;
        size_t next = 0;
        auto p = ember::PreTokenizer::create(name);
        for (const auto& s : p->split(text)) {
            EXPECT_EQ(s.first, next);
            EXPECT_GT(s.second, 0u);
            next = s.first + s.second;
        }
        EXPECT_EQ(next, text.size());
    }
}

TEST(PreTokenizer, Gpt2) {
    EXPECT_EQ(pieces("gpt-2", "Hello  world\n\n  123456 I'm"),
              (V{"Hello", " ", " world", "\n\n ", " 123456", " I", "'m"}));
    EXPECT_EQ(pieces("gpt-2", "a\tb   "), (V{"a", "\t", "b", "   "}));
    EXPECT_EQ(pieces("gpt-2", "it's 'twas"), (V{"it", "'s", " '", "twas"}));
}

TEST(PreTokenizer, Llama3) {
    EXPECT_EQ(pieces("llama-bpe", "Hello  world\n\n  123456 I'm"),
              (V{"Hello", " ", " world", "\n\n", " ", " ", "123", "456", " I", "'m"}));
    EXPECT_EQ(pieces("llama-bpe", "I'M 1234567!!\n\nok"), (V{"I", "'M", " ", "123", "456", "7", "!!\n\n", "ok"}));
    auto p = ember::PreTokenizer::create("llama3");
    EXPECT_TRUE(p->flags().ignore_merges);
    EXPECT_TRUE(p->flags().add_bos);
}

TEST(PreTokenizer, Qwen2SplitsEveryDigit) {
    EXPECT_EQ(pieces("qwen2", "x 2024"), (V{"x", " ", "2", "0", "2", "4"}));
    EXPECT_FALSE(ember::PreTokenizer::create("qwen2")->flags().clean_spaces);
}

TEST(PreTokenizer, DefaultAndStarcoderDigits) {
    // default: punctuation runs, then GPT-2, then digit runs, then groups of three ASCII digits.
    EXPECT_EQ(pieces("default", "ab 12345,x"), (V{"ab", " ", "123", "45", ",", "x"}));
    EXPECT_EQ(pieces("starcoder", "ab 123"), (V{"ab", " ", "1", "2", "3"}));
    EXPECT_EQ(pieces("", "ab 12345,x"), pieces("default", "ab 12345,x"));
}

TEST(PreTokenizer, SuperBpeSplitsDigitsInThreesFromTheRight) {
    EXPECT_EQ(pieces("superbpe", "x1234567"), (V{"x", "1", "234", "567"}));
}

TEST(PreTokenizer, DeepseekV3TildeIsNeitherPunctuationNorSymbolAsInLlamaCpp) {
    EXPECT_EQ(pieces("deepseek-v3", "a ~~ b"), (V{"a", " ", "~~", " b"}));
    EXPECT_EQ(pieces("deepseek-v3", "a ++ b"), (V{"a", " ++", " b"}));
    EXPECT_EQ(pieces("deepseek-v3", "~abc 12345"), (V{"~abc", " ", "123", "45"}));
}

TEST(PreTokenizer, DeepseekLlmEndsAtPieceEnds) {
    EXPECT_EQ(pieces("deepseek-llm", "ab  cd"), (V{"ab", " ", " cd"}));
    EXPECT_EQ(pieces("deepseek-llm", "ab  \ncd  "), (V{"ab", "  ", "\n", "cd", "  "}));
}

TEST(PreTokenizer, WhitespaceIsUnicodeWhiteSpace) {
    // U+180E is not White_Space (llama.cpp's \s); U+0085, U+2028 and U+3000 are.
    EXPECT_EQ(pieces("gpt-2", "!\xE1\xA0\x8E!"), (V{"!\xE1\xA0\x8E!"}));
    EXPECT_EQ(pieces("gpt-2", "a\xC2\x85" "b"), (V{"a", "\xC2\x85", "b"}));
    EXPECT_EQ(pieces("gpt-2", "a \xE3\x80\x80" "b"), (V{"a", " ", "\xE3\x80\x80", "b"}));
}

TEST(PreTokenizer, UnknownAndUnsupportedNamesAreErrors) {
    try {
        ember::PreTokenizer::create("no-such-pre");
        FAIL();
    } catch (const ember::Error& e) {
        EXPECT_NE(std::string(e.what()).find("no-such-pre"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.pre"), std::string::npos) << e.what();
    }
    try {
        ember::PreTokenizer::create("kimi-k2");
        FAIL();
    } catch (const ember::Error& e) {
        EXPECT_NE(std::string(e.what()).find("kimi-k2"), std::string::npos) << e.what();
    }
}

TEST(PreTokenizer, LongRunsDoNotExhaustPcre2) {
    const std::string spaces(200000, ' ');
    const auto p = pieces("llama-bpe", "a" + spaces + "b");
    ASSERT_EQ(p.size(), 3u);
    EXPECT_EQ(p[1].size(), spaces.size() - 1);
    EXPECT_EQ(p[2], " b");
    // gpt-4o repeats a group per letter: PCRE2's JIT stack has to grow past its first 1 MiB.
    const std::string letters(300000, 'a');
    EXPECT_EQ(pieces("gpt-4o", letters + " b"), (V{letters, " b"}));
}

}  // namespace
