// Bad tokenizer metadata: every error is an ember::Error that names the file and the key (and, for lengths and
// ranges, both numbers).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <functional>

#include "engine/tokenizer.h"

namespace {

// A valid three-token SentencePiece vocabulary, changed by `edit`, written and loaded; returns the error message
// ("" when loading succeeds).
std::string load_error(const std::function<void(ember::GGUFWriter&)>& edit) {
    ember::GGUFWriter w;
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"});
    w.set_f32_array("tokenizer.ggml.scores", {0, 0, 0, -1});
    w.set_i32_array("tokenizer.ggml.token_type", {2, 3, 3, 1});
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    edit(w);
    const std::string path = ::testing::TempDir() + "ember-tok-err-" + std::to_string(getpid()) + ".gguf";
    w.write(path);
    std::string msg;
    try {
        auto file = ember::GGUFFile::open(path);
        ember::Tokenizer::from_gguf(*file);
    } catch (const ember::Error& e) {
        msg = e.what();
    }
    std::remove(path.c_str());
    return msg;
}

// Rewrites the file without `key` (GGUFWriter has no erase, so the edit builds the rest again).
std::function<void(ember::GGUFWriter&)> without(const std::string& key) {
    return [key](ember::GGUFWriter& w) {
        ember::GGUFWriter fresh;
        if (key != "tokenizer.ggml.model") fresh.set_string("tokenizer.ggml.model", "llama");
        if (key != "tokenizer.ggml.tokens")
            fresh.set_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"});
        fresh.set_u32("tokenizer.ggml.bos_token_id", 1);
        w = fresh;
    };
}

#define EXPECT_MENTIONS(msg, ...)                                                          \
    do {                                                                                   \
        const std::string m_ = (msg);                                                      \
        EXPECT_FALSE(m_.empty()) << "expected an ember::Error";                            \
        for (const char* s_ : {__VA_ARGS__}) EXPECT_NE(m_.find(s_), std::string::npos) << m_; \
    } while (0)

TEST(TokenizerErrors, ValidVocabularyLoads) { EXPECT_EQ(load_error([](ember::GGUFWriter&) {}), ""); }

TEST(TokenizerErrors, MissingTokens) {
    EXPECT_MENTIONS(load_error(without("tokenizer.ggml.tokens")), "tokenizer.ggml.tokens", ".gguf");
}

TEST(TokenizerErrors, MissingModel) {
    EXPECT_MENTIONS(load_error(without("tokenizer.ggml.model")), "tokenizer.ggml.model");
}

TEST(TokenizerErrors, UnknownModel) {
    EXPECT_MENTIONS(load_error([](ember::GGUFWriter& w) { w.set_string("tokenizer.ggml.model", "t5"); }),
                    "tokenizer.ggml.model", "'t5'");
}

TEST(TokenizerErrors, ScoresLengthMismatch) {
    EXPECT_MENTIONS(load_error([](ember::GGUFWriter& w) { w.set_f32_array("tokenizer.ggml.scores", {0, 0, 0}); }),
                    "tokenizer.ggml.scores", "3", "4");
}

TEST(TokenizerErrors, TokenTypeLengthMismatch) {
    EXPECT_MENTIONS(
        load_error([](ember::GGUFWriter& w) { w.set_i32_array("tokenizer.ggml.token_type", {2, 3, 3, 1, 1}); }),
        "tokenizer.ggml.token_type", "5", "4");
}

TEST(TokenizerErrors, TokenTypeOutOfRange) {
    EXPECT_MENTIONS(
        load_error([](ember::GGUFWriter& w) { w.set_i32_array("tokenizer.ggml.token_type", {2, 3, 3, 9}); }),
        "tokenizer.ggml.token_type", "9");
}

TEST(TokenizerErrors, BosOutOfRange) {
    EXPECT_MENTIONS(load_error([](ember::GGUFWriter& w) { w.set_u32("tokenizer.ggml.bos_token_id", 4); }),
                    "tokenizer.ggml.bos_token_id", "4 ");
    EXPECT_MENTIONS(load_error([](ember::GGUFWriter& w) { w.set_u32("tokenizer.ggml.eos_token_id", 70000); }),
                    "tokenizer.ggml.eos_token_id", "70000");
    EXPECT_MENTIONS(load_error([](ember::GGUFWriter& w) { w.set_string("tokenizer.ggml.bos_token_id", "1"); }),
                    "tokenizer.ggml.bos_token_id", "STRING");
}

TEST(TokenizerErrors, NoneIdsAreAccepted) {
    EXPECT_EQ(load_error([](ember::GGUFWriter& w) {
                  w.set_u32("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);
                  w.set_i32("tokenizer.ggml.eot_token_id", -1);
              }),
              "");
}

TEST(TokenizerErrors, AddBosWithoutBos) {
    EXPECT_MENTIONS(load_error([](ember::GGUFWriter& w) {
                        w.set_u32("tokenizer.ggml.bos_token_id", 0xFFFFFFFFu);
                        w.set_bool("tokenizer.ggml.add_bos_token", true);
                    }),
                    "tokenizer.ggml.add_bos_token", "tokenizer.ggml.bos_token_id");
}

TEST(TokenizerErrors, DuplicateToken) {
    EXPECT_MENTIONS(load_error([](ember::GGUFWriter& w) {
                        w.set_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "<s>"});
                    }),
                    "tokenizer.ggml.tokens", "'<s>'", "1", "3");
}

TEST(TokenizerErrors, ByteTokenNotHex) {
    EXPECT_MENTIONS(
        load_error([](ember::GGUFWriter& w) { w.set_i32_array("tokenizer.ggml.token_type", {2, 3, 3, 6}); }), "BYTE",
        "'a'");
}

// BPE: the merges are required, the pre-tokenizer must be one llama.cpp knows.
std::function<void(ember::GGUFWriter&)> gpt2(const std::function<void(ember::GGUFWriter&)>& more) {
    return [more](ember::GGUFWriter& w) {
        w.set_string("tokenizer.ggml.model", "gpt2");
        w.set_string("tokenizer.ggml.pre", "gpt-2");
        w.set_string_array("tokenizer.ggml.tokens", {"a", "b", "ab", "<|endoftext|>"});
        w.set_f32_array("tokenizer.ggml.scores", {0, 0, 0, 0});
        w.set_i32_array("tokenizer.ggml.token_type", {1, 1, 1, 3});
        w.set_string_array("tokenizer.ggml.merges", {"a b"});
        w.set_u32("tokenizer.ggml.bos_token_id", 3);
        w.set_u32("tokenizer.ggml.eos_token_id", 3);
        more(w);
    };
}

TEST(TokenizerErrors, Gpt2Loads) { EXPECT_EQ(load_error(gpt2([](ember::GGUFWriter&) {})), ""); }

TEST(TokenizerErrors, UnknownPreTokenizer) {
    EXPECT_MENTIONS(load_error(gpt2([](ember::GGUFWriter& w) { w.set_string("tokenizer.ggml.pre", "bogus-pre"); })),
                    "tokenizer.ggml.pre", "'bogus-pre'", ".gguf");
}

TEST(TokenizerErrors, MissingMerges) {
    EXPECT_MENTIONS(load_error([](ember::GGUFWriter& w) {
                        ember::GGUFWriter fresh;
                        fresh.set_string("tokenizer.ggml.model", "gpt2");
                        fresh.set_string("tokenizer.ggml.pre", "gpt-2");
                        fresh.set_string_array("tokenizer.ggml.tokens", {"a", "b"});
                        w = fresh;
                    }),
                    "tokenizer.ggml.merges");
}

TEST(TokenizerErrors, MalformedMerge) {
    EXPECT_MENTIONS(load_error(gpt2([](ember::GGUFWriter& w) { w.set_string_array("tokenizer.ggml.merges", {"ab"}); })),
                    "tokenizer.ggml.merges", "'ab'");
}

// Both models share the BYTE check (Tokenizer::load_pieces): non-hex digits are an ember::Error for BPE too.
TEST(TokenizerErrors, Gpt2ByteTokenNotHex) {
    EXPECT_MENTIONS(load_error(gpt2([](ember::GGUFWriter& w) {
                        w.set_string_array("tokenizer.ggml.tokens", {"a", "b", "ab", "<0xZZ>"});
                        w.set_i32_array("tokenizer.ggml.token_type", {1, 1, 1, 6});
                    })),
                    "tokenizer.ggml.tokens", "BYTE", "'<0xZZ>'", ".gguf");
}

}  // namespace
