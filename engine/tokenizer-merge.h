// The merge loop both tokenizer models run (llama.cpp's llm_tokenizer_spm_session and llm_tokenizer_bpe_session):
// the text is split into UTF-8 characters held in a linked list, and the adjacent pair with the best priority is
// merged, one pair at a time, until no adjacent pair has a priority. Ties go to the leftmost pair. SentencePiece
// ranks a pair by the score of the token it forms, BPE by its merge rank; each model handles pieces that are not
// tokens its own way.
#pragma once
#include <algorithm>
#include <cstddef>
#include <optional>
#include <queue>
#include <string_view>
#include <type_traits>
#include <vector>

#include "engine/utf8.h"

namespace ember {

// Merges the characters of `text` and calls emit(piece) on each final piece, left to right (views into `text`).
// priority(left, right) -> std::optional<P>: how eager two adjacent pieces are to merge, the highest first, or
// std::nullopt when they never merge. P is any totally ordered type (float scores, negated int ranks).
template <class PriorityFn, class EmitFn>
void tokenizer_merge(std::string_view text, PriorityFn&& priority, EmitFn&& emit) {
    using Priority = typename std::invoke_result_t<PriorityFn&, std::string_view, std::string_view>::value_type;
    struct Symbol {
        size_t start, n;  // bytes of the text; n = 0 once merged into its left neighbour
        int prev, next;   // neighbours in the chain, -1 at the ends
    };
    struct Bigram {
        Priority priority;
        int left, right;
        size_t size;  // bytes of left + right when queued; a different sum means the entry is stale
    };
    struct BigramOrder {  // priority_queue puts the "largest" on top: highest priority, then leftmost
        bool operator()(const Bigram& a, const Bigram& b) const {
            return a.priority < b.priority || (a.priority == b.priority && a.left > b.left);
        }
    };
    if (text.empty()) return;

    std::vector<Symbol> sym;
    for (size_t off = 0; off < text.size();) {
        const size_t n = std::min(utf8_len(text[off]), text.size() - off);
        const int idx = int(sym.size());
        sym.push_back({off, n, idx - 1, off + n == text.size() ? -1 : idx + 1});
        off += n;
    }
    auto piece = [&](const Symbol& s) { return std::string_view(text.data() + s.start, s.n); };
    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
    auto try_add = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        const Symbol& l = sym[left];
        const Symbol& r = sym[right];
        const size_t size = l.n + r.n;
        const std::optional<Priority> p = priority(piece(l), piece(r));
        if (p) queue.push({*p, left, right, size});
    };
    for (int i = 1; i < int(sym.size()); i++) try_add(i - 1, i);

    while (!queue.empty()) {
        const Bigram bg = queue.top();
        queue.pop();
        Symbol& l = sym[bg.left];
        Symbol& r = sym[bg.right];
        if (l.n == 0 || r.n == 0 || l.n + r.n != bg.size) continue;  // one side already merged elsewhere
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) sym[r.next].prev = bg.left;
        try_add(l.prev, bg.left);
        try_add(bg.left, l.next);
    }
    for (int i = 0; i != -1; i = sym[i].next) emit(piece(sym[i]));
}

}  // namespace ember
