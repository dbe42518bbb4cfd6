// SentencePiece-style tokenizer (tokenizer.ggml.model = "llama"), llama.cpp's llm_tokenizer_spm: spaces become
// U+2581, a space is put in front of the text (add_space_prefix), the text is split into UTF-8 characters, and the
// adjacent pair whose concatenation is the best-scoring token is merged until no pair is a token (ties go to the
// leftmost pair). Pieces that are not tokens fall back to their bytes as <0xXX> tokens.
#include <array>
#include <cstdio>
#include <cstring>
#include <queue>
#include <unordered_set>

#include "engine/error.h"
#include "engine/tokenizer.h"
#include "engine/utf8.h"

namespace ember {

namespace {

const char* const kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// "<0xXX>" -> XX, -1 when `text` is not of that form.
int parse_byte_token(const std::string& text) {
    auto hex = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    if (text.size() != 6 || text.compare(0, 3, "<0x") != 0 || text[5] != '>') return -1;
    const int hi = hex(text[3]), lo = hex(text[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

class SpmTokenizer final : public Tokenizer {
public:
    explicit SpmTokenizer(const GGUFFile& f) {
        VocabDefaults defaults;
        defaults.add_bos = true;
        defaults.add_space_prefix = true;
        load_vocab(f, defaults);
        clean_spaces_ = false;

        pieces_.resize(tokens_.size());
        for (size_t i = 0; i < tokens_.size(); i++) {
            const std::string& t = tokens_[i];
            switch (types_[i]) {
                case TokenType::TOKEN_TYPE_CONTROL:
                case TokenType::TOKEN_TYPE_UNKNOWN:
                case TokenType::TOKEN_TYPE_USER_DEFINED: pieces_[i] = t; break;
                case TokenType::TOKEN_TYPE_NORMAL: {
                    std::string p;
                    for (size_t k = 0; k < t.size();) {
                        if (t.compare(k, 3, kSpace) == 0) {
                            p += ' ';
                            k += 3;
                        } else {
                            p += t[k++];
                        }
                    }
                    pieces_[i] = p;
                    break;
                }
                case TokenType::TOKEN_TYPE_BYTE: {
                    const int b = parse_byte_token(t);
                    if (b < 0)
                        throw Error(f.path() + ": key 'tokenizer.ggml.tokens': token " + std::to_string(i) + " '" + t +
                                    "' has type BYTE in tokenizer.ggml.token_type but is not of the form <0xXX>");
                    pieces_[i] = std::string(1, char(b));
                    break;
                }
                default: break;  // unused and undefined tokens print nothing, as in llama.cpp
            }
        }
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
    struct Symbol {
        size_t start, n;  // bytes of the text; n = 0 once merged into its left neighbour
        int prev, next;   // neighbours in the chain, -1 at the ends
    };
    struct Bigram {
        float score;
        int left, right;
        size_t size;  // bytes of left + right when queued; a different sum means the entry is stale
    };
    struct BigramOrder {  // priority_queue puts the "largest" on top: best score, then leftmost
        bool operator()(const Bigram& a, const Bigram& b) const {
            return a.score < b.score || (a.score == b.score && a.left > b.left);
        }
    };

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

    // llama.cpp's llm_tokenizer_spm_session::tokenize on text[begin, end).
    void merge(const std::string& text, size_t begin, size_t end, std::vector<int32_t>& out) const {
        if (begin >= end) return;
        std::vector<Symbol> sym;
        for (size_t off = begin; off < end;) {
            const size_t n = std::min(utf8_len(text[off]), end - off);
            const int idx = int(sym.size());
            sym.push_back({off, n, idx - 1, off + n == end ? -1 : idx + 1});
            off += n;
        }
        std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
        auto try_add = [&](int left, int right) {
            if (left < 0 || right < 0) return;
            const size_t size = sym[left].n + sym[right].n;
            const int32_t id = find_token(std::string_view(text.data() + sym[left].start, size));
            if (id < 0) return;
            queue.push({scores_[id], left, right, size});
        };
        for (int i = 1; i < int(sym.size()); i++) try_add(i - 1, i);

        while (!queue.empty()) {
            const Bigram bg = queue.top();
            queue.pop();
            Symbol& l = sym[bg.left];
            Symbol& r = sym[bg.right];
            if (l.n == 0 || r.n == 0 || l.n + r.n != bg.size) continue;
            l.n += r.n;
            r.n = 0;
            l.next = r.next;
            if (r.next >= 0) sym[r.next].prev = bg.left;
            try_add(l.prev, bg.left);
            try_add(bg.left, l.next);
        }

        // Merged symbols are tokens by construction; single characters that are not fall back to bytes.
        for (int i = 0; i != -1; i = sym[i].next) {
            const std::string_view piece(text.data() + sym[i].start, sym[i].n);
            const int32_t id = find_token(piece);
            if (id >= 0) {
                out.push_back(id);
                continue;
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
        }
    }

    std::array<int32_t, 256> byte_token_{};
    std::unordered_set<uint64_t> inner_pairs_;  // pair_key of each two adjacent characters in some token
};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::create_spm(const GGUFFile& file) { return std::make_unique<SpmTokenizer>(file); }

}  // namespace ember
