#include "engine/perplexity.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ember {

double perplexity_log_prob(const float* logits, int n_vocab, int32_t token) {
    float max_logit = logits[0];
    for (int i = 1; i < n_vocab; i++) max_logit = std::max(max_logit, logits[i]);
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) sum += std::exp((double)logits[i] - max_logit);
    return (double)logits[token] - max_logit - std::log(sum);
}

double PerplexityStats::ppl() const {
    if (count == 0) return std::numeric_limits<double>::quiet_NaN();
    return std::exp(nll / (double)count);
}

double PerplexityStats::ppl_stderr() const {
    if (count < 2) return std::numeric_limits<double>::quiet_NaN();
    const double mean = nll / (double)count;
    const double var = nll2 / (double)count - mean * mean;  // population variance of the nll values
    if (!(var > 0.0)) return std::numeric_limits<double>::quiet_NaN();
    return ppl() * std::sqrt(var / (double)(count - 1));
}

void perplexity_score(const float* logits, int n_vocab, const int32_t* tokens, int n, int first,
                      PerplexityStats& stats) {
    for (int i = first; i < n - 1; i++)
        stats.add(-perplexity_log_prob(logits + (size_t)i * n_vocab, n_vocab, tokens[i + 1]));
}

}  // namespace ember
