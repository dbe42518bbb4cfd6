// Perplexity as llama.cpp's perplexity tool measures it: the text is cut into chunks of n_ctx tokens, each chunk
// is evaluated from an empty context with its first token replaced by BOS, and only the second half is scored
// (the logits at positions n_ctx/2 .. n_ctx-2 predict tokens n_ctx/2+1 .. n_ctx-1), so every scored token has at
// least n_ctx/2 tokens of context. PPL = exp(mean NLL); its uncertainty propagates the standard error of the mean
// NLL: ppl * sqrt((E[nll^2] - E[nll]^2) / (count - 1)).
#pragma once
#include <cstdint>

namespace ember {

// log softmax(logits)[token], computed stably (max subtracted, sums in double).
double perplexity_log_prob(const float* logits, int n_vocab, int32_t token);

// Running sums of the negative log-likelihoods of scored tokens.
struct PerplexityStats {
    double nll = 0;    // sum of -log p
    double nll2 = 0;   // sum of (-log p)^2
    int64_t count = 0;

    void add(double neg_log_prob) {
        nll += neg_log_prob;
        nll2 += neg_log_prob * neg_log_prob;
        count++;
    }
    double ppl() const;         // exp(nll / count); NaN when count == 0
    double ppl_stderr() const;  // ppl * standard error of the mean nll; NaN when count < 2 or the variance is <= 0
};

// Scores positions first .. n-2 of one evaluated chunk: logits row i (n_vocab floats, row-major) predicts
// tokens[i + 1]. Adds n - 1 - first values to stats.
void perplexity_score(const float* logits, int n_vocab, const int32_t* tokens, int n, int first,
                      PerplexityStats& stats);

}  // namespace ember
