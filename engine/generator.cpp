#include "engine/generator.h"

#include <algorithm>
#include <chrono>
#include <limits>

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
    : model_(model), session_(session), sampler_(&sampler), biased_(model.info().n_vocab) {}

std::vector<int32_t> Generator::tokens() const {
    std::vector<int32_t> t = cached_;
    if (unevaluated_ >= 0) t.push_back(unevaluated_);
    return t;
}

void Generator::start(const std::vector<int32_t>& prompt, const GenerateParams& params, TextCallback on_text) {
    const int n_vocab = model_.info().n_vocab;
    if (prompt.empty()) throw Error("generate: empty prompt (expected at least one token, e.g. BOS)");
    if ((int64_t)prompt.size() > session_.n_ctx())
        throw Error("generate: the prompt has " + std::to_string(prompt.size()) +
                    " tokens, more than the context holds (n_ctx = " + std::to_string(session_.n_ctx()) + ")");
    for (size_t i = 0; i < prompt.size(); i++)
        if (prompt[i] < 0 || prompt[i] >= n_vocab)
            throw Error("generate: prompt token " + std::to_string(i) + " has id " + std::to_string(prompt[i]) +
                        ", outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
    for (const auto& [id, bias] : params.logit_bias)
        if (id < 0 || id >= n_vocab)
            throw Error("generate: logit_bias names token " + std::to_string(id) + ", outside the vocabulary [0, " +
                        std::to_string(n_vocab) + ")");

    res_ = GenerateResult();
    params_ = params;
    on_text_ = std::move(on_text);
    stream_ = TextStream(params.stop);
    cancelled_ = false;
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

    pending_.assign(prompt.begin() + keep, prompt.end());
    pending_pos_ = 0;
    step_n_ = 0;
    in_prompt_ = true;
    running_ = true;
    res_.timings.n_prompt = (int)prompt.size();
    res_.timings.n_cached = (int)keep;
    res_.timings.n_prompt_eval = (int)pending_.size();
}

GenerateStep Generator::next(int max_tokens) {
    if (!running_) throw Error("generate: next() called with no generation running (call start() first)");
    const size_t left = pending_.size() - pending_pos_;
    step_n_ = (int)(max_tokens <= 0 ? left : std::min(left, (size_t)max_tokens));
    step_t0_ = std::chrono::steady_clock::now();
    return {pending_.data() + pending_pos_, step_n_};
}

void Generator::advance() {
    if (!running_ || step_n_ == 0) throw Error("generate: advance() called without a step from next()");
    const double ms = ms_since(step_t0_);
    cached_.insert(cached_.end(), pending_.begin() + pending_pos_, pending_.begin() + pending_pos_ + step_n_);
    pending_pos_ += step_n_;
    step_n_ = 0;
    GenerateTimings& t = res_.timings;
    if (in_prompt_) {
        t.prompt_ms += ms;
        if (pending_pos_ < pending_.size()) return;  // more prompt chunks to come
        in_prompt_ = false;
    } else {
        t.eval_ms += ms;
        t.n_eval++;
        unevaluated_ = -1;
    }
    produce();
}

void Generator::cancel() {
    if (!running_) return;
    step_n_ = 0;
    res_.finish = FinishReason::FINISH_CANCELLED;
    running_ = false;
}

void Generator::emit(const std::string& text) {
    if (text.empty() || cancelled_) return;
    res_.text += text;
    if (on_text_ && !on_text_(text)) cancelled_ = true;
}

void Generator::finish(FinishReason reason) {
    res_.finish = reason;
    running_ = false;
    if (reason != FinishReason::FINISH_CANCELLED) emit(stream_.flush());  // "" after a stop string
}

void Generator::produce() {
    const Tokenizer& tok = model_.tokenizer();
    GenerateTimings& t = res_.timings;
    if (params_.n_predict >= 0 && t.n_generated >= params_.n_predict) return finish(FinishReason::FINISH_LENGTH);
    const int32_t id = sample(params_, t);
    if (tok.is_eog(id)) return finish(FinishReason::FINISH_EOG);
    t.n_generated++;
    unevaluated_ = id;

    std::string piece = tok.token_to_piece(id, false);
    if (piece.empty() && !params_.stop.empty()) {
        // A control token (rendered as ""): it ends the text when a stop string names it ("<|im_end|>", ...), so it
        // goes to the stream as that text, which emits what it held before it and stops.
        std::string special = tok.token_to_piece(id, true);
        if (std::find(params_.stop.begin(), params_.stop.end(), special) != params_.stop.end()) piece.swap(special);
    }
    emit(stream_.push(piece));
    if (stream_.stopped()) {
        res_.stop = stream_.stop_string();
        return finish(FinishReason::FINISH_STOP_STRING);
    }
    if (cancelled_) return finish(FinishReason::FINISH_CANCELLED);
    if (params_.n_predict >= 0 && t.n_generated >= params_.n_predict)
        return finish(FinishReason::FINISH_LENGTH);  // the last token needs no eval
    if (session_.n_past() >= session_.n_ctx()) return finish(FinishReason::FINISH_CONTEXT_FULL);
    pending_.assign(1, id);
    pending_pos_ = 0;
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
    start(prompt, params, on_text);
    while (running_) {
        const GenerateStep s = next(0);
        step_.assign(s.tokens, s.tokens + s.n_tokens);
        session_.eval(step_, false);
        advance();
    }
    return res_;
}

}  // namespace ember
