// Perplexity math: log-softmax, which positions a chunk scores, PPL and its uncertainty.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/perplexity.h"

using namespace ember;

TEST(Perplexity, LogProbOfUniformLogits) {
    std::vector<float> l(512, 3.25f);
    EXPECT_NEAR(perplexity_log_prob(l.data(), 512, 17), -std::log(512.0), 1e-12);
}

TEST(Perplexity, LogProbMatchesDirectSoftmax) {
    const std::vector<float> l = {1.0f, 2.0f, -0.5f, 0.25f};
    double z = 0;
    for (float x : l) z += std::exp((double)x);
    for (int t = 0; t < 4; t++) EXPECT_NEAR(perplexity_log_prob(l.data(), 4, t), std::log(std::exp((double)l[t]) / z), 1e-12);
}

TEST(Perplexity, LogProbIsStableForLargeLogits) {
    const std::vector<float> l = {1000.0f, 1000.0f, -1000.0f};
    EXPECT_NEAR(perplexity_log_prob(l.data(), 3, 0), -std::log(2.0), 1e-12);
    EXPECT_TRUE(std::isfinite(perplexity_log_prob(l.data(), 3, 2)));
}

TEST(Perplexity, PplAndUncertainty) {
    PerplexityStats s;
    EXPECT_TRUE(std::isnan(s.ppl()));
    for (double v : {1.0, 2.0, 3.0}) s.add(v);
    EXPECT_EQ(s.count, 3);
    EXPECT_NEAR(s.ppl(), std::exp(2.0), 1e-12);
    // population variance 2/3, standard error of the mean sqrt((2/3) / 2), propagated through exp.
    EXPECT_NEAR(s.ppl_stderr(), std::exp(2.0) * std::sqrt(1.0 / 3.0), 1e-12);

    PerplexityStats constant;
    for (int i = 0; i < 10; i++) constant.add(0.7);
    EXPECT_NEAR(constant.ppl(), std::exp(0.7), 1e-12);
    EXPECT_TRUE(std::isnan(constant.ppl_stderr()));  // no spread: llama.cpp reports no uncertainty either
}

TEST(Perplexity, ScoresSecondHalfPredictingNextToken) {
    // 8 positions, 4-token vocabulary. Row i puts all mass on token (i + 1) % 4 except a little elsewhere.
    const int n = 8, n_vocab = 4, first = n / 2;
    std::vector<int32_t> tokens(n);
    for (int i = 0; i < n; i++) tokens[i] = i % 4;
    std::vector<float> logits(n * n_vocab, 0.0f);
    for (int i = 0; i < n; i++) logits[i * n_vocab + (i + 1) % 4] = 5.0f;
    // Spoil the rows that must not be scored: the first half and the last row.
    for (int i : {0, 1, 2, 3, 7}) logits[i * n_vocab + (i + 1) % 4] = -5.0f;

    PerplexityStats s;
    perplexity_score(logits.data(), n_vocab, tokens.data(), n, first, s);
    EXPECT_EQ(s.count, n - 1 - first);  // positions 4, 5, 6
    const double p = std::exp(5.0) / (std::exp(5.0) + 3.0);
    EXPECT_NEAR(s.ppl(), 1.0 / p, 1e-9);
}
