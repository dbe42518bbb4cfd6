#include "engine/batch-eval.h"

#include <set>
#include <string>

#include "engine/session-state.h"

namespace ember {

void sessions_eval(const std::vector<BatchEvalItem>& items) {
    if (items.empty()) return;
    if (!items[0].session) throw Error("sessions_eval: item 0: no session");
    const Model& model = items[0].session->model_;
    std::set<const Session*> seen;
    for (size_t i = 0; i < items.size(); i++) {
        const BatchEvalItem& it = items[i];
        const std::string where = "sessions_eval: item " + std::to_string(i);
        if (!it.session) throw Error(where + ": no session");
        if (&it.session->model_ != &model) throw Error(where + ": its session belongs to another model");
        if (it.n_tokens < 1 || !it.tokens) throw Error(where + ": expected at least one token");
        if (!seen.insert(it.session).second) throw Error(where + ": its session is already in the batch");
        session_check_tokens(*it.session->state_, it.tokens, (size_t)it.n_tokens, model.info().n_vocab, where);
    }
    // With a GPU placement each session runs its own steps on its device state.
    if (model.gpu()) {
        for (const BatchEvalItem& it : items) it.session->eval(std::vector<int32_t>(it.tokens, it.tokens + it.n_tokens));
        return;
    }
    // Groups of consecutive items whose tokens fit the first one's batch: that session's scratch and threads run
    // the group in one forward pass. An item longer than a batch runs alone, through its session's own batches.
    size_t i = 0;
    while (i < items.size()) {
        Session& lead = *items[i].session;
        SessionState& ls = *lead.state_;
        if (items[i].n_tokens > ls.params.n_batch) {
            lead.eval(std::vector<int32_t>(items[i].tokens, items[i].tokens + items[i].n_tokens));
            i++;
            continue;
        }
        std::vector<LlamaSeq> seqs;
        int total = 0;
        size_t j = i;
        for (; j < items.size() && total + items[j].n_tokens <= ls.params.n_batch; j++) {
            SessionState& s = *items[j].session->state_;
            LlamaSeq q;
            q.kv = &s.llama;
            q.tokens = items[j].tokens;
            q.n = items[j].n_tokens;
            q.pos0 = s.n_past;
            seqs.push_back(q);
            total += q.n;
        }
        llama_forward_seqs(model.info(), model.llama(), ls.llama, seqs, *ls.pool);
        for (size_t k = i; k < j; k++) {
            SessionState& s = *items[k].session->state_;
            s.n_past += items[k].n_tokens;
            s.n_logits = 1;
        }
        i = j;
    }
}

}  // namespace ember
