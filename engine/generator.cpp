#include "engine/generator.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "engine/text-stream.h"

namespace ember {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

const char* finish_reason_name(FinishReason reason) {
    switch (reason) {
        case FinishReason::FINISH_EOG:
        case FinishReason::FINISH_STOP_STRING: return "stop";
        case FinishReason::FINISH_LENGTH:
        case FinishReason::FINISH_CONTEXT_FULL: return "length";
        case FinishReason::FINISH_CANCELLED: return "cancelled";
    }
    throw Error("finish_reason_name: unknown reason " + std::to_string((int)reason));
}

GenerateTimings& GenerateTimings::operator+=(const GenerateTimings& o) {
    n_prompt += o.n_prompt;
    n_cached += o.n_cached;
    n_prompt_eval += o.n_prompt_eval;
    prompt_ms += o.prompt_ms;
    n_generated += o.n_generated;
    n_sample += o.n_sample;
    sample_ms += o.sample_ms;
    n_eval += o.n_eval;
    eval_ms += o.eval_ms;
    return *this;
}

Generator::Generator(const Model& model, Session& session, Sampler& sampler)
    : model_(model), session_(session), sampler_(&sampler), biased_(model.info().n_vocab), step_(1) {}

std::vector<int32_t> Generator::tokens() const {
    std::vector<int32_t> t = cached_;
    if (unevaluated_ >= 0) t.push_back(unevaluated_);
    return t;
}

void Generator::eval_prompt(const std::vector<int32_t>& prompt, GenerateTimings& t) {
    if (prompt.empty()) throw Error("generate: empty prompt (expected at least one token, e.g. BOS)");
    if ((int64_t)prompt.size() > session_.n_ctx())
        throw Error("generate: the prompt has " + std::to_string(prompt.size()) +
                    " tokens, more than the context holds (n_ctx = " + std::to_string(session_.n_ctx()) + ")");
    unevaluated_ = -1;
    if (session_.n_past() != (int)cached_.size()) {  // the session was used elsewhere: its cache is unknown
        session_.reset();
        cached_.clear();
    }
    size_t keep = 0;
    while (keep < cached_.size() && keep < prompt.size() && cached_[keep] == prompt[keep]) keep++;
    keep = std::min(keep, prompt.size() - 1);  // evaluate at least one token, for its logits
    session_.truncate((int)keep);
    cached_.resize(keep);
    for (int32_t tok : prompt) sampler_->accept(tok);

    const std::vector<int32_t> rest(prompt.begin() + keep, prompt.end());
    const auto t0 = std::chrono::steady_clock::now();
    session_.eval(rest, false);
    t.prompt_ms = ms_since(t0);
    cached_.insert(cached_.end(), rest.begin(), rest.end());
    t.n_prompt = (int)prompt.size();
    t.n_cached = (int)keep;
    t.n_prompt_eval = (int)rest.size();
}

int32_t Generator::sample(const GenerateParams& params, GenerateTimings& t) {
    const auto t0 = std::chrono::steady_clock::now();
    const float* logits = session_.logits(-1);
    if (params.ignore_eos || !params.logit_bias.empty()) {
        std::copy(logits, logits + biased_.size(), biased_.begin());
        for (const auto& [id, bias] : params.logit_bias) biased_[id] += bias;
        if (params.ignore_eos)
            for (int32_t id : model_.tokenizer().eog_ids())
                if (id < (int32_t)biased_.size()) biased_[id] = -std::numeric_limits<float>::infinity();
        logits = biased_.data();
    }
    const int32_t id = sampler_->sample(logits);
    sampler_->accept(id);
    t.sample_ms += ms_since(t0);
    t.n_sample++;
    return id;
}

GenerateResult Generator::generate(const std::vector<int32_t>& prompt, const GenerateParams& params,
                                   const TextCallback& on_text) {
    const Tokenizer& tok = model_.tokenizer();
    const int n_vocab = model_.info().n_vocab;
    GenerateResult res;
    GenerateTimings& t = res.timings;
    for (const auto& [id, bias] : params.logit_bias)
        if (id < 0 || id >= n_vocab)
            throw Error("generate: logit_bias names token " + std::to_string(id) + ", outside the vocabulary [0, " +
                        std::to_string(n_vocab) + ")");
    eval_prompt(prompt, t);

    TextStream stream(params.stop);
    bool cancelled = false;
    auto emit = [&](const std::string& text) {
        if (text.empty() || cancelled) return;
        res.text += text;
        if (on_text && !on_text(text)) cancelled = true;
    };
    res.finish = FinishReason::FINISH_LENGTH;
    while (params.n_predict < 0 || t.n_generated < params.n_predict) {
        const int32_t id = sample(params, t);
        if (tok.is_eog(id)) {
            res.finish = FinishReason::FINISH_EOG;
            break;
        }
        t.n_generated++;
        unevaluated_ = id;

        std::string piece = tok.token_to_piece(id, false);
        if (piece.empty() && !params.stop.empty()) {
            // A control token (rendered as ""): it ends the text when a stop string names it ("<|im_end|>", ...),
            // so it goes to the stream as that text, which emits what it held before it and stops.
            std::string special = tok.token_to_piece(id, true);
            if (std::find(params.stop.begin(), params.stop.end(), special) != params.stop.end()) piece.swap(special);
        }
        emit(stream.push(piece));
        if (stream.stopped()) {
            res.finish = FinishReason::FINISH_STOP_STRING;
            res.stop = stream.stop_string();
            break;
        }
        if (cancelled) {
            res.finish = FinishReason::FINISH_CANCELLED;
            break;
        }
        if (params.n_predict >= 0 && t.n_generated >= params.n_predict) break;  // the last token needs no eval
        if (session_.n_past() >= session_.n_ctx()) {
            res.finish = FinishReason::FINISH_CONTEXT_FULL;
            break;
        }
        const auto t1 = std::chrono::steady_clock::now();
        step_[0] = id;
        session_.eval(step_, false);
        t.eval_ms += ms_since(t1);
        t.n_eval++;
        cached_.push_back(id);
        unevaluated_ = -1;
    }
    if (res.finish != FinishReason::FINISH_CANCELLED) emit(stream.flush());  // "" after a stop string
    return res;
}

}  // namespace ember
