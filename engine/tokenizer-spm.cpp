// SentencePiece-style tokenizer (tokenizer.ggml.model = "llama"), llama.cpp's llm_tokenizer_spm: spaces become
// U+2581, a space is put in front of the text (add_space_prefix), the text is split into UTF-8 characters, and the
// adjacent pair whose concatenation is the best-scoring token is merged until no pair is a token (ties go to the
// leftmost pair). Pieces that are not tokens fall back to their bytes as <0xXX> tokens.
#include <array>
#include <cstdio>
#include <cstring>
#include <optional>
#include <unordered_set>

#include "engine/error.h"
#include "engine/tokenizer-merge.h"
#include "engine/tokenizer.h"
#include "engine/utf8.h"

namespace ember {

namespace {

const char* const kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

class SpmTokenizer final : public Tokenizer {
public:
    explicit SpmTokenizer(const GGUFFile& f) {
        VocabDefaults defaults;
        defaults.add_bos = true;
        defaults.add_space_prefix = true;
        load_vocab(f, defaults);
        clean_spaces_ = false;

        load_pieces(f, [](const std::string& t) {  // U+2581 back to a space
            std::string p;
            for (size_t k = 0; k < t.size();) {
                if (t.compare(k, 3, kSpace) == 0) {
                    p += ' ';
                    k += 3;
                } else {
                    p += t[k++];
                }
            }
            return p;
        });
        // Adjacent character pairs inside tokens. Where the text has a pair no token contains, no merge can ever
        // cross, so the merge loop runs on each side alone: same result, small queues.
        for (const std::string& t : tokens_) {
            uint32_t prev = 0;
            for (size_t k = 0; k < t.size();) {
                const size_t n = std::min(utf8_len(t[k]), t.size() - k);
                const uint32_t cur = pack_char(t.data() + k, n);
                if (k > 0) inner_pairs_.insert(pair_key(prev, cur));
                prev = cur;
                k += n;
            }
        }
        // Byte fallback: the <0xXX> token, else a token that is that one byte (llama.cpp's byte_to_token).
        for (int b = 0; b < 256; b++) {
            static const char* hex = "0123456789ABCDEF";
            const char name[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
            int32_t id = find_token(name);
            if (id < 0) id = find_token(std::string(1, char(b)));
            byte_token_[b] = id;
        }
    }

    std::vector<int32_t> encode(const std::string& text, bool add_bos, bool parse_special) const override {
        std::vector<int32_t> out;
        if (add_bos) {
            if (bos_ < 0)
                throw Error("tokenizer (llama): BOS requested but tokenizer.ggml.bos_token_id names no token");
            out.push_back(bos_);
        }
        bool prev_special = true;  // the text start counts as following a special token
        for (const Fragment& fr : partition(text, parse_special)) {
            if (fr.token >= 0) {
                out.push_back(fr.token);
                prev_special = true;
                continue;
            }
            std::string escaped;
            escaped.reserve(fr.length + fr.length / 2 + 3);
            if (add_space_prefix_ && prev_special) escaped += kSpace;
            for (size_t k = fr.offset; k < fr.offset + fr.length; k++) {
                if (text[k] == ' ')
                    escaped += kSpace;
                else
                    escaped += text[k];
            }
            segment(escaped, out);
            prev_special = false;
        }
        return out;
    }

    std::string token_to_piece(int32_t id, bool render_special) const override { return piece(id, render_special); }

    std::string decode(const std::vector<int32_t>& ids, bool render_special) const override {
        return detokenize(ids, render_special);
    }

private:
    static uint32_t pack_char(const char* p, size_t n) {
        uint32_t v = 0;
        std::memcpy(&v, p, n);
        return v;
    }
    static uint64_t pair_key(uint32_t a, uint32_t b) { return (uint64_t(a) << 32) | b; }

    // Splits the text where no token can span and merges each part.
    void segment(const std::string& text, std::vector<int32_t>& out) const {
        size_t begin = 0;
        uint32_t prev = 0;
        for (size_t k = 0; k < text.size();) {
            const size_t n = std::min(utf8_len(text[k]), text.size() - k);
            const uint32_t cur = pack_char(text.data() + k, n);
            if (k > begin && !inner_pairs_.count(pair_key(prev, cur))) {
                merge(text, begin, k, out);
                begin = k;
            }
            prev = cur;
            k += n;
        }
        merge(text, begin, text.size(), out);
    }

    // llama.cpp's llm_tokenizer_spm_session::tokenize on text[begin, end): a pair merges when it forms a token,
    // the best-scoring first.
    void merge(const std::string& text, size_t begin, size_t end, std::vector<int32_t>& out) const {
        if (begin >= end) return;
        auto score = [this](std::string_view l, std::string_view r) -> std::optional<float> {
            const int32_t id = find_token(std::string_view(l.data(), l.size() + r.size()));  // l, r adjacent
            if (id < 0) return std::nullopt;
            return scores_[id];
        };
        // Merged symbols are tokens by construction; single characters that are not fall back to bytes.
        auto emit = [this, &out](std::string_view piece) {
            const int32_t id = find_token(piece);
            if (id >= 0) {
                out.push_back(id);
                return;
            }
            for (char c : piece) {
                int32_t b = byte_token_[uint8_t(c)];
                if (b < 0) b = unk_;
                if (b < 0) {
                    char hex[3];
                    std::snprintf(hex, sizeof(hex), "%02X", unsigned(uint8_t(c)));
                    throw Error(std::string("tokenizer (llama): byte 0x") + hex +
                                " has no <0xXX> token and the vocabulary has no unknown token");
                }
                out.push_back(b);
            }
        };
        tokenizer_merge(std::string_view(text.data() + begin, end - begin), score, emit);
    }

    std::array<int32_t, 256> byte_token_{};
    std::unordered_set<uint64_t> inner_pairs_;  // pair_key of each two adjacent characters in some token
};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::create_spm(const GGUFFile& file) { return std::make_unique<SpmTokenizer>(file); }

}  // namespace ember
