#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

#include "apps/cli/cli.h"

namespace ember {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void print_out(const std::string& s) {
    if (s.empty()) return;
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Length of the longest suffix of s that is a proper prefix of one of the stop strings: text that must be held
// back because the next tokens may complete a stop string.
size_t held_suffix(const std::string& s, const std::vector<std::string>& stops) {
    size_t best = 0;
    for (const std::string& stop : stops) {
        if (stop.empty()) continue;
        for (size_t n = std::min(s.size(), stop.size() - 1); n > best; n--)
            if (s.compare(s.size() - n, n, stop, 0, n) == 0) {
                best = n;
                break;
            }
    }
    return best;
}

}  // namespace

Generator::Generator(const Model& model, Session& session, Sampler& sampler, const CliParams& params)
    : model_(model), session_(session), sampler_(sampler), params_(params) {}

void Generator::eval_timed(const std::vector<int32_t>& tokens, bool is_prompt) {
    const auto t0 = std::chrono::steady_clock::now();
    session_.eval(tokens, false);
    const double ms = ms_since(t0);
    if (is_prompt) {
        prompt_ms_ += ms;
        n_prompt_ += (int)tokens.size();
    } else {
        eval_ms_ += ms;
        n_eval_ += (int)tokens.size();
    }
    evaluated_.insert(evaluated_.end(), tokens.begin(), tokens.end());
}

std::vector<int32_t> Generator::context() const {
    std::vector<int32_t> c = evaluated_;
    if (unevaluated_ >= 0) c.push_back(unevaluated_);
    return c;
}

bool Generator::sync(const std::vector<int32_t>& tokens) {
    unevaluated_ = -1;
    if (tokens.empty()) return true;
    if ((int)tokens.size() > session_.n_ctx()) {
        std::fprintf(stderr, "\ncontext full: %zu tokens do not fit n_ctx = %d; stopping\n", tokens.size(),
                     session_.n_ctx());
        return false;
    }
    size_t keep = 0;
    while (keep < evaluated_.size() && keep < tokens.size() && evaluated_[keep] == tokens[keep]) keep++;
    keep = std::min(keep, tokens.size() - 1);  // evaluate at least one token, for its logits
    session_.truncate((int)keep);
    evaluated_.resize(keep);
    const std::vector<int32_t> rest(tokens.begin() + keep, tokens.end());
    for (int32_t t : rest) sampler_.accept(t);
    eval_timed(rest, true);
    return true;
}

GenerateResult Generator::generate(int n_predict, const std::vector<std::string>& stops) {
    const Tokenizer& tok = model_.tokenizer();
    const int n_vocab = model_.info().n_vocab;
    GenerateResult res{"", StopReason::STOP_LENGTH};
    std::string pending;  // printed text held back while it may be the start of a stop string
    int n_gen = 0;
    unevaluated_ = -1;
    while (n_predict < 0 || n_gen < n_predict) {
        const auto t0 = std::chrono::steady_clock::now();
        const float* logits = session_.logits(-1);
        if (params_.ignore_eos) {
            logits_buf_.assign(logits, logits + n_vocab);
            for (int32_t id : {tok.eos(), tok.eot()})
                if (id >= 0 && id < n_vocab) logits_buf_[id] = -std::numeric_limits<float>::infinity();
            logits = logits_buf_.data();
        }
        const int32_t t = sampler_.sample(logits);
        sampler_.accept(t);
        sample_ms_ += ms_since(t0);
        n_sample_++;

        if (tok.is_eog(t) && !params_.ignore_eos) {
            res.reason = StopReason::STOP_EOG;
            break;
        }
        n_gen++;
        const std::string piece = tok.token_to_piece(t, false);
        if (piece.empty()) {
            // A control token: it ends the turn when the format names it as a stop string.
            const std::string special = tok.token_to_piece(t, true);
            if (!special.empty() && std::find(stops.begin(), stops.end(), special) != stops.end()) {
                res.reason = StopReason::STOP_STRING;
                break;
            }
        }
        pending += piece;
        bool stopped = false;
        for (const std::string& stop : stops)
            if (ends_with(pending, stop)) {
                pending.resize(pending.size() - stop.size());
                stopped = true;
                break;
            }
        if (stopped) {
            res.reason = StopReason::STOP_STRING;
            break;
        }
        const size_t hold = held_suffix(pending, stops);
        const std::string out = pending.substr(0, pending.size() - hold);
        print_out(out);
        res.text += out;
        pending.erase(0, out.size());

        if (n_predict >= 0 && n_gen >= n_predict) {  // the last token need not be evaluated
            unevaluated_ = t;
            break;
        }
        if (session_.n_past() >= session_.n_ctx()) {
            unevaluated_ = t;
            res.reason = StopReason::STOP_CONTEXT_FULL;
            break;
        }
        eval_timed({t}, false);
    }
    if (res.reason != StopReason::STOP_STRING) {
        print_out(pending);
        res.text += pending;
    }
    if (res.reason == StopReason::STOP_CONTEXT_FULL)
        std::fprintf(stderr, "\ncontext full (n_ctx = %d tokens): stopping\n", session_.n_ctx());
    return res;
}

void Generator::print_timings(double load_ms) const {
    auto rate = [](const char* what, double ms, int n, const char* unit) {
        std::fprintf(stderr, "ember: %16s = %10.2f ms / %5d %-6s (%8.2f ms per token, %8.2f tokens per second)\n",
                     what, ms, n, unit, n ? ms / n : 0.0, ms > 0 ? 1e3 * n / ms : 0.0);
    };
    std::fprintf(stderr, "\n");
    std::fprintf(stderr, "ember: %16s = %10.2f ms\n", "load time", load_ms);
    rate("sampling time", sample_ms_, n_sample_, "runs");
    rate("prompt eval time", prompt_ms_, n_prompt_, "tokens");
    rate("eval time", eval_ms_, n_eval_, "runs");
    std::fprintf(stderr, "ember: %16s = %10.2f ms / %5d tokens\n", "total time", prompt_ms_ + eval_ms_ + sample_ms_,
                 n_prompt_ + n_eval_);
}

}  // namespace ember
