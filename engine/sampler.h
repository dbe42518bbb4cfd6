// Token sampling from logits with llama.cpp's default chain and defaults (common/sampling: penalties, top_k, top_p,
// min_p, temperature, dist). Filters run in that order; each works on what the one before kept:
//   1. repeat penalty over the last repeat_last_n accepted tokens: a positive logit is divided by the penalty,
//      a negative one multiplied (CTRL, Keskar et al. 2019, sec. 4.1, as llama.cpp applies it), once per
//      distinct token;
//   2. top-k: the k largest logits (k <= 0: all);
//   3. top-p (nucleus, Holtzman et al. 2019): the smallest prefix, by descending probability, whose mass
//      reaches p (p >= 1: all);
//   4. min-p: tokens whose probability is at least min_p times the largest one (min_p <= 0: all);
//   5. temperature: logits divided by temp;
//   6. a draw from the softmax of what is left, with a seeded generator.
// temp <= 0 is greedy: the repeat penalty still applies (as in llama.cpp), then the argmax, lowest id on ties.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace ember {

struct SamplerParams {
    float temp = 0.8f;            // <= 0: greedy
    int top_k = 40;               // <= 0: off
    float top_p = 0.95f;          // >= 1: off
    float min_p = 0.05f;          // <= 0: off
    float repeat_penalty = 1.0f;  // 1: off
    int repeat_last_n = 64;       // tokens of history the penalty looks at; 0: off
    uint64_t seed = 0xFFFFFFFF;   // 0xFFFFFFFF (llama.cpp's LLAMA_DEFAULT_SEED): a random seed
};

class Sampler {
public:
    // Throws ember::Error on n_vocab <= 0, repeat_last_n < 0 or a non-finite or negative parameter.
    Sampler(const SamplerParams& params, int n_vocab);

    // Picks a token from n_vocab logits (not modified). Does not accept it: call accept() with what was used.
    int32_t sample(const float* logits);
    // Adds a token to the repeat-penalty history (prompt tokens too, as llama.cpp does).
    void accept(int32_t token);
    // Clears the history and restarts the generator from the seed.
    void reset();

    uint64_t seed() const { return seed_; }  // the seed in use (drawn at construction when params.seed was random)
    const SamplerParams& params() const { return params_; }

private:
    struct Candidate {
        int32_t id;
        float logit;
    };
    void apply_penalty();
    int32_t draw();

    SamplerParams params_;
    int n_vocab_;
    uint64_t seed_;
    std::mt19937_64 rng_;
    std::vector<int32_t> history_;     // ring buffer of the last repeat_last_n accepted tokens
    size_t history_next_ = 0;          // next slot to overwrite once history_ is full
    std::vector<Candidate> cand_;      // (n_vocab) reused work buffer
    std::vector<uint32_t> seen_;       // (n_vocab) stamp per token: penalised in the call with this stamp
    uint32_t stamp_ = 0;
};

}  // namespace ember
