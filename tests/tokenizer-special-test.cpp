// Special tokens, merge order, byte fallback, space prefix and decode on small vocabularies written with
// GGUFWriter, and special-token handling on the real GPT-2 vocabulary.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>

#include "engine/tokenizer.h"

namespace {

using ember::TokenType;

struct TokenSpec {
    std::string text;
    float score;
    TokenType type;
};

// A SentencePiece-style vocabulary: <unk>, <s>, </s>, the 256 byte tokens (ids 3..258), then `extra`.
std::vector<TokenSpec> spm_tokens(const std::vector<TokenSpec>& extra) {
    std::vector<TokenSpec> t = {{"<unk>", 0, TokenType::TOKEN_TYPE_UNKNOWN},
                                {"<s>", 0, TokenType::TOKEN_TYPE_CONTROL},
                                {"</s>", 0, TokenType::TOKEN_TYPE_CONTROL}};
    for (int b = 0; b < 256; b++) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        t.push_back({name, 0, TokenType::TOKEN_TYPE_BYTE});
    }
    t.insert(t.end(), extra.begin(), extra.end());
    return t;
}

// Writes the vocabulary (plus whatever `more` sets) to a temporary GGUF file and loads its tokenizer.
std::unique_ptr<ember::Tokenizer> load(const std::vector<TokenSpec>& tokens,
                                       const std::function<void(ember::GGUFWriter&)>& more = nullptr,
                                       const std::string& model = "llama") {
    ember::GGUFWriter w;
    w.set_string("tokenizer.ggml.model", model);
    std::vector<std::string> texts;
    std::vector<float> scores;
    std::vector<int32_t> types;
    for (const auto& t : tokens) {
        texts.push_back(t.text);
        scores.push_back(t.score);
        types.push_back(int32_t(t.type));
    }
    w.set_string_array("tokenizer.ggml.tokens", texts);
    w.set_f32_array("tokenizer.ggml.scores", scores);
    w.set_i32_array("tokenizer.ggml.token_type", types);
    if (model == "llama") {
        w.set_u32("tokenizer.ggml.bos_token_id", 1);
        w.set_u32("tokenizer.ggml.eos_token_id", 2);
        w.set_u32("tokenizer.ggml.unknown_token_id", 0);
    }
    if (more) more(w);
    const std::string path = ::testing::TempDir() + "ember-tok-" + std::to_string(getpid()) + ".gguf";
    w.write(path);
    auto file = ember::GGUFFile::open(path);
    auto tok = ember::Tokenizer::from_gguf(*file);
    std::remove(path.c_str());
    return tok;
}

const TokenType N = TokenType::TOKEN_TYPE_NORMAL;
const std::string S = "\xE2\x96\x81";  // ▁

int32_t id_of(const ember::Tokenizer& tok, const std::string& text) {
    const int32_t id = tok.token_id(text);
    EXPECT_GE(id, 0) << text;
    return id;
}

TEST(TokenizerSpm, BestScoringPairMergesFirst) {
    // "abc": "bc" scores higher than "ab", so the result is a + bc.
    auto tok = load(spm_tokens({{S, -1, N}, {"a", -2, N}, {"b", -2, N}, {"c", -2, N}, {"ab", -1.5f, N},
                                {"bc", -0.5f, N}}),
                    [](ember::GGUFWriter& w) { w.set_bool("tokenizer.ggml.add_space_prefix", false); });
    EXPECT_EQ(tok->encode("abc", false, false), (std::vector<int32_t>{id_of(*tok, "a"), id_of(*tok, "bc")}));
}

TEST(TokenizerSpm, EqualScoresMergeLeftmostFirst) {
    auto tok = load(spm_tokens({{"a", -2, N}, {"b", -2, N}, {"c", -2, N}, {"ab", -1, N}, {"bc", -1, N}}),
                    [](ember::GGUFWriter& w) { w.set_bool("tokenizer.ggml.add_space_prefix", false); });
    EXPECT_EQ(tok->encode("abc", false, false), (std::vector<int32_t>{id_of(*tok, "ab"), id_of(*tok, "c")}));
}

TEST(TokenizerSpm, UnknownCharactersFallBackToBytes) {
    auto tok = load(spm_tokens({{S, -1, N}, {"a", -2, N}}));
    // "é" is C3 A9; byte token <0xXX> has id 3 + XX.
    EXPECT_EQ(tok->encode("\xC3\xA9", false, false), (std::vector<int32_t>{id_of(*tok, S), 3 + 0xC3, 3 + 0xA9}));
    EXPECT_EQ(tok->decode(tok->encode("\xC3\xA9", false, false)), "\xC3\xA9");
    // Invalid UTF-8 goes byte by byte too.
    EXPECT_EQ(tok->encode("\xFF", false, false), (std::vector<int32_t>{id_of(*tok, S), 3 + 0xFF}));
    EXPECT_EQ(tok->decode(tok->encode("a\xFF", true, false)), "a\xFF");
}

TEST(TokenizerSpm, SpacePrefixAfterSpecialTokens) {
    auto tok = load(spm_tokens({{S, -1, N}, {"a", -2, N}, {"b", -2, N}, {S + "a", -1, N}, {S + "b", -1, N},
                                {"<|user|>", 0, TokenType::TOKEN_TYPE_USER_DEFINED}}));
    const int32_t sa = id_of(*tok, S + "a"), sb = id_of(*tok, S + "b"), user = id_of(*tok, "<|user|>");
    // A user-defined token splits the text even without parse_special, and the text after it gets a space prefix.
    EXPECT_EQ(tok->encode("a<|user|>b", false, false), (std::vector<int32_t>{sa, user, sb}));
    // Control tokens only with parse_special.
    EXPECT_EQ(tok->encode("a</s>b", false, true), (std::vector<int32_t>{sa, 2, sb}));
    const auto plain = tok->encode("a</s>b", false, false);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
    EXPECT_EQ(tok->encode("<s>a", true, true), (std::vector<int32_t>{1, 1, sa}));
    EXPECT_EQ(tok->encode("", true, true), (std::vector<int32_t>{1}));
    EXPECT_EQ(tok->encode("", false, true), (std::vector<int32_t>{}));
}

TEST(TokenizerSpm, NoSpacePrefixWhenDisabled) {
    auto tok = load(spm_tokens({{S, -1, N}, {"a", -2, N}, {S + "a", -1, N}}),
                    [](ember::GGUFWriter& w) { w.set_bool("tokenizer.ggml.add_space_prefix", false); });
    EXPECT_FALSE(tok->add_space_prefix());
    EXPECT_EQ(tok->encode("a", false, false), (std::vector<int32_t>{id_of(*tok, "a")}));
    EXPECT_EQ(tok->encode(" a", false, false), (std::vector<int32_t>{id_of(*tok, S + "a")}));
    EXPECT_EQ(tok->decode({id_of(*tok, S + "a")}), " a");  // no prefix was added, so none is removed
}

TEST(TokenizerSpm, DecodeDropsTheSpaceAfterBos) {
    auto tok = load(spm_tokens({{S, -1, N}, {"a", -2, N}, {"b", -2, N}, {S + "a", -1, N}, {S + "b", -1, N}}));
    const int32_t sa = id_of(*tok, S + "a"), sb = id_of(*tok, S + "b");
    EXPECT_EQ(tok->decode({1, sa, sb}), "a b");
    EXPECT_EQ(tok->decode({sa, sb}), "a b");
    EXPECT_EQ(tok->decode({1, sa, sb}, true), "<s>a b");
    EXPECT_EQ(tok->decode({sa, 2}), "a");
    EXPECT_EQ(tok->decode({sa, 2}, true), "a</s>");
    EXPECT_EQ(tok->token_to_piece(0), "");
    EXPECT_EQ(tok->token_to_piece(0, true), "<unk>");
    EXPECT_THROW(tok->decode({sa, 100000}), ember::Error);
}

TEST(TokenizerSpm, EndOfGenerationTokensFoundByText) {
    auto tok = load(spm_tokens({{"<|im_end|>", 0, N}, {"<|im_start|>", 0, TokenType::TOKEN_TYPE_CONTROL},
                                {"<end_of_turn>", 0, TokenType::TOKEN_TYPE_CONTROL}}));
    const int32_t im_end = tok->token_id("<|im_end|>");
    EXPECT_EQ(tok->eot(), im_end);  // first match in id order
    EXPECT_TRUE(tok->is_eog(im_end));
    EXPECT_TRUE(tok->is_eog(tok->token_id("<end_of_turn>")));
    EXPECT_TRUE(tok->is_eog(2));
    EXPECT_FALSE(tok->is_eog(tok->token_id("<|im_start|>")));
    EXPECT_FALSE(tok->is_eog(-1));
    // A normal-typed end-of-turn token becomes control, as in llama.cpp: hidden unless rendered.
    EXPECT_EQ(tok->token_type(im_end), TokenType::TOKEN_TYPE_CONTROL);
    EXPECT_EQ(tok->token_to_piece(im_end), "");
    EXPECT_EQ(tok->token_to_piece(im_end, true), "<|im_end|>");
}

TEST(TokenizerSpm, EotFromMetadataWins) {
    auto tok = load(spm_tokens({{"<|im_end|>", 0, N}, {"<|eot_id|>", 0, N}}),
                    [](ember::GGUFWriter& w) { w.set_u32("tokenizer.ggml.eot_token_id", 260); });
    EXPECT_EQ(tok->eot(), 260);
    EXPECT_TRUE(tok->is_eog(259));
    EXPECT_TRUE(tok->is_eog(260));
}

TEST(TokenizerSpm, Phi3StripsSpacesAfterSpecialTokens) {
    const auto tokens = spm_tokens({{S, -1, N}, {"a", -2, N}, {"b", -2, N}, {S + "a", -1, N}, {S + "b", -1, N},
                                    {"<|user|>", 0, TokenType::TOKEN_TYPE_USER_DEFINED}});
    auto phi3 = load(tokens, [](ember::GGUFWriter& w) { w.set_string("general.name", "Phi-3 mini"); });
    const int32_t sa = id_of(*phi3, S + "a"), sb = id_of(*phi3, S + "b"), user = id_of(*phi3, "<|user|>");
    EXPECT_EQ(phi3->encode("a<|user|>  \n b", false, true), (std::vector<int32_t>{sa, user, sb}));
    auto other = load(tokens);
    EXPECT_NE(other->encode("a<|user|>  \n b", false, true), (std::vector<int32_t>{sa, user, sb}));
}

TEST(TokenizerSpm, NoBosKeyMeansNoBos) {
    auto tok = load(spm_tokens({{"a", 0, N}}),
                    [](ember::GGUFWriter& w) { w.set_u32("tokenizer.ggml.bos_token_id", 0xFFFFFFFFu); });
    EXPECT_EQ(tok->bos(), -1);
    EXPECT_FALSE(tok->add_bos_default());
    EXPECT_THROW(tok->encode("a", true, false), ember::Error);
}

TEST(TokenizerBpe, LowestRankMergesFirstAndLlama3IgnoresMerges) {
    const std::vector<TokenSpec> tokens = {{"a", 0, N}, {"b", 0, N}, {"c", 0, N}, {"ab", 0, N}, {"bc", 0, N},
                                           {"abc", 0, N}, {"\xC4\xA0", 0, N}};  // Ġ, the mapped space
    auto with_pre = [](const std::string& pre) {
        return [pre](ember::GGUFWriter& w) {
            w.set_string("tokenizer.ggml.pre", pre);
            w.set_string_array("tokenizer.ggml.merges", {"b c", "a b"});
        };
    };
    auto gpt2 = load(tokens, with_pre("gpt-2"), "gpt2");
    EXPECT_EQ(gpt2->encode("abc", false, false), (std::vector<int32_t>{0, 4}));  // "b c" has rank 0: a + bc
    EXPECT_EQ(gpt2->encode("ab c", false, false), (std::vector<int32_t>{3, 6, 2}));
    EXPECT_EQ(gpt2->decode({3, 6, 2}), "ab c");
    EXPECT_FALSE(gpt2->add_bos_default());
    auto llama3 = load(tokens, with_pre("llama-bpe"), "gpt2");
    EXPECT_EQ(llama3->encode("abc", false, false), (std::vector<int32_t>{5}));  // a whole-word token wins
    EXPECT_FALSE(llama3->add_bos_default());  // llama3 wants BOS, but this vocabulary names none
}

// The real GPT-2 vocabulary: <|endoftext|> is a control token.
class TokenizerGpt2 : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        file_ = ember::GGUFFile::open(std::string(EMBER_SHARED_DIR) + "/testdata/tokenizer/ggml-vocab-gpt-2.gguf");
        tok_ = ember::Tokenizer::from_gguf(*file_).release();
    }
    static void TearDownTestSuite() {
        delete tok_;
        file_.reset();
    }
    static std::unique_ptr<ember::GGUFFile> file_;
    static ember::Tokenizer* tok_;
};
std::unique_ptr<ember::GGUFFile> TokenizerGpt2::file_;
ember::Tokenizer* TokenizerGpt2::tok_ = nullptr;

TEST_F(TokenizerGpt2, SpecialTokensOnlyWithParseSpecial) {
    const int32_t hello = tok_->token_id("Hello"), world = tok_->token_id("world");
    EXPECT_EQ(tok_->encode("Hello<|endoftext|>world", false, true), (std::vector<int32_t>{hello, 50256, world}));
    const auto plain = tok_->encode("Hello<|endoftext|>world", false, false);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), 50256), 0);
    EXPECT_EQ(tok_->decode(plain), "Hello<|endoftext|>world");
    EXPECT_EQ(tok_->encode("Hello", true, false), (std::vector<int32_t>{50256, hello}));
}

TEST_F(TokenizerGpt2, DecodeCleansSpacesLikeLlamaCpp) {
    EXPECT_EQ(tok_->decode(tok_->encode("Hello , world ! It 's", false, false)), "Hello, world! It's");
    EXPECT_EQ(tok_->decode(tok_->encode("don 't", false, false)), "don 't");
    EXPECT_EQ(tok_->decode(tok_->encode("a ' b", false, false)), "a'b");
}

TEST_F(TokenizerGpt2, InvalidUtf8BecomesReplacementCharacter) {
    // llama.cpp decodes the text to code points first; a stray byte becomes U+FFFD.
    const auto ids = tok_->encode("a\xFF" "b", false, false);
    std::string pieces;
    for (int32_t id : ids) pieces += tok_->token_to_piece(id);
    EXPECT_EQ(pieces, "a\xEF\xBF\xBD" "b");
}

}  // namespace
