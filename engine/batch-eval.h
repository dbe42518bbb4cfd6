// Evaluation of several sessions' tokens in one step, for a server decoding many sequences at once (continuous
// batching, Orca, OSDI'22): every item appends its tokens to its own session's KV cache at that session's n_past.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/ember.h"

namespace ember {

struct BatchEvalItem {
    Session* session = nullptr;       // distinct sessions, all over the same Model
    const int32_t* tokens = nullptr;  // n_tokens token ids, evaluated at positions n_past() .. n_past()+n_tokens-1
    int n_tokens = 0;                 // >= 1
};

// Afterwards each session's logits() holds the logits of its last token, as after session.eval(tokens) (equal up
// to float rounding: a batch runs GEMMs where one token runs matvecs). Consecutive items whose tokens fit the first
// one's n_batch run as one forward pass on that session's scratch and threads (the sparse FFN counters of the pass
// go to it); an item longer than n_batch runs alone. Throws ember::Error naming the item when a session's context
// would overflow, a token is out of range, two items share a session or sessions belong to different models;
// nothing is evaluated then.
void sessions_eval(const std::vector<BatchEvalItem>& items);

}  // namespace ember
