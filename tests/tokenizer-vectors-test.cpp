// llama.cpp's tokenizer test vectors (models/ggml-vocab-*.gguf.inp/.out) must come out id for id, one ctest per
// string; the stories260K prompts must give llama.cpp's prompt tokens; decode must round-trip the same strings.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/tokenizer.h"

namespace {

const std::string kDir = std::string(EMBER_SHARED_DIR) + "/testdata/tokenizer/";

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct VectorCase {
    std::string vocab;  // file name under testdata/tokenizer
    size_t index;
    std::string text;
    std::vector<int32_t> ids;
};

// Shown in test names (ctest uses the printed parameter): the case's position in the .inp file.
void PrintTo(const VectorCase& c, std::ostream* os) { *os << c.index; }

// Test strings end with "\n__ggml_vocab_test__\n"; .out has one line of ids per string (README of testdata/).
std::vector<VectorCase> load_cases(const std::string& vocab) {
    const std::string inp = read_file(kDir + vocab + ".inp");
    const std::string out = read_file(kDir + vocab + ".out");
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> texts;
    for (size_t pos = 0; pos < inp.size();) {
        const size_t end = inp.find(sep, pos);
        if (end == std::string::npos) break;
        texts.push_back(inp.substr(pos, end - pos));
        pos = end + sep.size();
    }
    std::vector<VectorCase> cases;
    std::istringstream lines(out);
    std::string line;
    for (size_t i = 0; i < texts.size() && std::getline(lines, line); i++) {
        VectorCase c{vocab, i, texts[i], {}};
        std::istringstream ids(line);
        int32_t id;
        while (ids >> id) c.ids.push_back(id);
        cases.push_back(c);
    }
    return cases;
}

const ember::Tokenizer& vocab_tokenizer(const std::string& vocab) {
    static std::map<std::string, std::pair<std::unique_ptr<ember::GGUFFile>, std::unique_ptr<ember::Tokenizer>>> cache;
    auto& entry = cache[vocab];
    if (!entry.second) {
        entry.first = ember::GGUFFile::open(kDir + vocab);
        entry.second = ember::Tokenizer::from_gguf(*entry.first);
    }
    return *entry.second;
}

std::string show(const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
        if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else out += char(c);
    }
    return out;
}

// Whether llama.cpp's clean_spaces pass (BPE decode) changes `s`; such strings do not round-trip in llama.cpp either.
bool cleaned_by_decode(const std::string& s) {
    for (const char* p : {" ?", " !", " .", " ,", " '"})
        if (s.find(p) != std::string::npos) return true;
    return false;
}

class TokenizerVectors : public ::testing::TestWithParam<VectorCase> {};

TEST_P(TokenizerVectors, EncodeMatchesLlamaCpp) {
    const VectorCase& c = GetParam();
    const ember::Tokenizer& tok = vocab_tokenizer(c.vocab);
    EXPECT_EQ(tok.encode(c.text, /*add_bos=*/false, /*parse_special=*/false), c.ids)
        << "text: '" << show(c.text) << "'";
}

TEST_P(TokenizerVectors, DecodeRoundTrips) {
    const VectorCase& c = GetParam();
    const ember::Tokenizer& tok = vocab_tokenizer(c.vocab);
    const std::vector<int32_t> ids = tok.encode(c.text, false, false);
    std::string pieces;
    for (int32_t id : ids) pieces += tok.token_to_piece(id);
    if (tok.model_name() == "gpt2") {
        EXPECT_EQ(pieces, c.text);  // byte-level BPE: the pieces are the text's bytes
        if (!cleaned_by_decode(c.text)) {
            EXPECT_EQ(tok.decode(ids), c.text);
        }
    } else {
        EXPECT_EQ(tok.decode(ids), c.text);
        if (tok.bos() >= 0) {
            EXPECT_EQ(tok.decode(tok.encode(c.text, true, false)), c.text);
        }
    }
}

std::string case_name(const ::testing::TestParamInfo<VectorCase>& info) { return std::to_string(info.param.index); }

INSTANTIATE_TEST_SUITE_P(LlamaSpm, TokenizerVectors, ::testing::ValuesIn(load_cases("ggml-vocab-llama-spm.gguf")),
                         case_name);
INSTANTIATE_TEST_SUITE_P(Gpt2, TokenizerVectors, ::testing::ValuesIn(load_cases("ggml-vocab-gpt-2.gguf")), case_name);

// The parameterised suites above are silently empty if the files cannot be read; this one is not.
TEST(TokenizerVectorFiles, AllCasesLoaded) {
    for (const char* vocab : {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"}) {
        const auto cases = load_cases(vocab);
        EXPECT_EQ(cases.size(), 46u) << vocab;
    }
}

TEST(TokenizerVocab, LlamaSpmMetadata) {
    const ember::Tokenizer& tok = vocab_tokenizer("ggml-vocab-llama-spm.gguf");
    EXPECT_EQ(tok.model_name(), "llama");
    EXPECT_EQ(tok.n_vocab(), 32000);
    EXPECT_EQ(tok.bos(), 1);
    EXPECT_EQ(tok.eos(), 2);
    EXPECT_EQ(tok.unk(), 0);
    EXPECT_TRUE(tok.add_bos_default());
    EXPECT_TRUE(tok.add_space_prefix());
    EXPECT_TRUE(tok.is_eog(2));
    EXPECT_FALSE(tok.is_eog(1));
    EXPECT_EQ(tok.token_to_piece(1), "");
    EXPECT_EQ(tok.token_to_piece(1, true), "<s>");
    EXPECT_EQ(tok.token_to_piece(13), "\n");           // <0x0A>
    EXPECT_EQ(tok.token_to_piece(15043), " Hello");    // ▁Hello
    EXPECT_THROW(tok.token_to_piece(32000), ember::Error);
    EXPECT_THROW(tok.token_to_piece(-1), ember::Error);
}

TEST(TokenizerVocab, Gpt2Metadata) {
    const ember::Tokenizer& tok = vocab_tokenizer("ggml-vocab-gpt-2.gguf");
    EXPECT_EQ(tok.model_name(), "gpt2");
    EXPECT_EQ(tok.pre_name(), "gpt-2");
    EXPECT_EQ(tok.n_vocab(), 50257);
    EXPECT_EQ(tok.bos(), 50256);
    EXPECT_EQ(tok.eos(), 50256);
    EXPECT_FALSE(tok.add_bos_default());
    EXPECT_FALSE(tok.add_space_prefix());
    EXPECT_TRUE(tok.is_eog(50256));
    EXPECT_EQ(tok.token_to_piece(18435), " Hello");  // ĠHello
    EXPECT_EQ(tok.token_to_piece(198), "\n");        // Ċ
    EXPECT_EQ(tok.token_to_piece(50256), "");
    EXPECT_EQ(tok.token_to_piece(50256, true), "<|endoftext|>");
}

// llama.cpp's prompt tokens for stories260K (reference/stories260K.llama-cpp.json), and the greedy continuation's
// text as the concatenation of token pieces.
TEST(TokenizerStories260K, PromptTokensAndGreedyTextMatchLlamaCpp) {
    const auto ref = nlohmann::json::parse(read_file(std::string(EMBER_SHARED_DIR) +
                                                     "/testdata/reference/stories260K.llama-cpp.json"));
    auto file = ember::GGUFFile::open(std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf");
    auto tok = ember::Tokenizer::from_gguf(*file);
    EXPECT_EQ(tok->n_vocab(), ref["n_vocab"].get<int>());
    ASSERT_EQ(ref["cases"].size(), 3u);
    for (const auto& c : ref["cases"]) {
        const std::string prompt = c["prompt"];
        SCOPED_TRACE(prompt);
        ASSERT_TRUE(c["add_bos"].get<bool>());
        EXPECT_TRUE(tok->add_bos_default());
        const auto want = c["tokens"].get<std::vector<int32_t>>();
        EXPECT_EQ(tok->encode(prompt, tok->add_bos_default(), true), want);
        EXPECT_EQ(tok->encode(prompt, true, false), want);
        EXPECT_EQ(tok->decode(want), prompt);
        std::string text;
        for (int32_t id : c["greedy_tokens"].get<std::vector<int32_t>>()) text += tok->token_to_piece(id);
        EXPECT_EQ(text, c["greedy_text"].get<std::string>());
    }
}

// A megabyte of text: SentencePiece's merge loop is a priority queue, so this stays well under a second.
TEST(TokenizerSpeed, OneMegabyte) {
    std::string unit =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park; "
        "Füße, 東京, 🦙 and   spaces\tand\nnewlines 12345. ";
    std::string text;
    while (text.size() < (1u << 20)) text += unit;
    for (const char* vocab : {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"}) {
        const ember::Tokenizer& tok = vocab_tokenizer(vocab);
        const auto t0 = std::chrono::steady_clock::now();
        const std::vector<int32_t> ids = tok.encode(text, false, true);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        printf("[speed] %s: %zu bytes -> %zu tokens in %.3f s (%.1f MB/s)\n", vocab, text.size(), ids.size(), s,
               text.size() / s / 1e6);
        EXPECT_LT(s, 3.0) << vocab;  // generous: the machine is shared; typical is a fraction of a second
        EXPECT_EQ(tok.decode(ids).size(), text.size());
    }
}

}  // namespace
