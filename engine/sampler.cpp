#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/error.h"

namespace ember {

namespace {

void check_finite(const char* name, float v) {
    if (!std::isfinite(v)) throw Error(std::string("sampler: ") + name + " must be a finite number, found " + std::to_string(v));
}

}  // namespace

Sampler::Sampler(const SamplerParams& params, int n_vocab) : params_(params), n_vocab_(n_vocab) {
    if (n_vocab <= 0) throw Error("sampler: n_vocab must be > 0, found " + std::to_string(n_vocab));
    check_finite("temp", params.temp);
    check_finite("top_p", params.top_p);
    check_finite("min_p", params.min_p);
    check_finite("repeat_penalty", params.repeat_penalty);
    if (params.repeat_penalty <= 0.0f)
        throw Error("sampler: repeat_penalty must be > 0, found " + std::to_string(params.repeat_penalty));
    if (params.repeat_last_n < 0)
        throw Error("sampler: repeat_last_n must be >= 0 (the caller maps -1 to the context size), found " +
                    std::to_string(params.repeat_last_n));
    seed_ = params.seed;
    if (seed_ == 0xFFFFFFFFull) {
        std::random_device rd;
        seed_ = ((uint64_t)rd() << 32) | rd();
        if (seed_ == 0xFFFFFFFFull) seed_ = 0;  // keep it reusable with -s
    }
    cand_.resize(n_vocab);
    seen_.assign(n_vocab, 0);
    history_.reserve(params.repeat_last_n);
    reset();
}

void Sampler::reset() {
    rng_.seed(seed_);
    history_.clear();
    history_next_ = 0;
}

void Sampler::accept(int32_t token) {
    if (token < 0 || token >= n_vocab_)
        throw Error("sampler: accepted token id " + std::to_string(token) + " is outside the vocabulary [0, " +
                    std::to_string(n_vocab_) + ")");
    const size_t cap = (size_t)params_.repeat_last_n;
    if (cap == 0) return;
    if (history_.size() < cap) {
        history_.push_back(token);
    } else {
        history_[history_next_] = token;
        history_next_ = (history_next_ + 1) % cap;
    }
}

void Sampler::apply_penalty() {
    if (params_.repeat_penalty == 1.0f || history_.empty()) return;
    if (++stamp_ == 0) {  // the stamp wrapped: forget all old marks
        std::fill(seen_.begin(), seen_.end(), 0u);
        stamp_ = 1;
    }
    for (int32_t t : history_) {
        if (seen_[t] == stamp_) continue;  // once per distinct token, however often it occurred
        seen_[t] = stamp_;
        float& l = cand_[t].logit;  // cand_ is still indexed by id here
        l = l > 0.0f ? l / params_.repeat_penalty : l * params_.repeat_penalty;
    }
}

int32_t Sampler::sample(const float* logits) {
    const int n_vocab = n_vocab_;
    for (int i = 0; i < n_vocab; i++) cand_[i] = {i, logits[i]};
    apply_penalty();

    if (params_.temp <= 0.0f) {
        int32_t best = 0;
        for (int i = 1; i < n_vocab; i++)
            if (cand_[i].logit > cand_[best].logit) best = i;  // strict: the lowest id wins ties
        return best;
    }
    return draw();
}

int32_t Sampler::draw() {
    // Descending logit, then ascending id, so every cut below is deterministic on ties.
    auto before = [](const Candidate& a, const Candidate& b) {
        return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
    };
    auto first = cand_.begin();
    int n = n_vocab_;

    // top-k: an unsorted set of the k best.
    if (params_.top_k > 0 && params_.top_k < n) {
        std::nth_element(first, first + params_.top_k, first + n, before);
        n = params_.top_k;
    }
    // Softmax normaliser of the top-k set, which top-p's probabilities are relative to.
    float max_logit = first->logit;
    for (int i = 1; i < n; i++) max_logit = std::max(max_logit, cand_[i].logit);
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += std::exp((double)cand_[i].logit - max_logit);

    // top-p and min-p each keep a prefix of the same descending order, so applying them in llama.cpp's order
    // (top-p, then min-p) keeps the shorter of the two prefixes. min-p is a threshold, so it is applied first
    // as a partition to sort fewer candidates; it never depends on the normaliser (p_i / p_max).
    int m = n;
    if (params_.min_p > 0.0f) {
        const float threshold = max_logit + std::log(params_.min_p);
        m = (int)(std::partition(first, first + n, [&](const Candidate& c) { return c.logit >= threshold; }) - first);
        m = std::max(m, 1);  // min_p > 1 would keep nothing; keep the best
    }
    std::sort(first, first + m, before);
    if (params_.top_p < 1.0f) {
        double cum = 0.0;
        for (int i = 0; i < m; i++) {
            cum += std::exp((double)cand_[i].logit - max_logit) / sum;
            if (cum >= params_.top_p) {  // keep the token that reaches p
                m = i + 1;
                break;
            }
        }
    }

    // Temperature, then a draw from the softmax of the m survivors (cand_[0] holds the largest logit).
    const double inv_temp = 1.0 / params_.temp;
    double total = 0.0;
    for (int i = 0; i < m; i++) total += std::exp(((double)cand_[i].logit - max_logit) * inv_temp);
    const double u = (double)(rng_() >> 11) * (1.0 / 9007199254740992.0);  // 53 random bits in [0, 1)
    double target = u * total, cum = 0.0;
    for (int i = 0; i < m; i++) {
        cum += std::exp(((double)cand_[i].logit - max_logit) * inv_temp);
        if (target < cum) return cand_[i].id;
    }
    return cand_[m - 1].id;  // rounding left target at the very end
}

}  // namespace ember
