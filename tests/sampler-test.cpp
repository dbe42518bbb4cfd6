// Sampler: greedy, each filter on hand-made distributions, seeding, frequencies against the softmax, penalties.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "engine/error.h"
#include "engine/sampler.h"

using namespace ember;

namespace {

// Logits whose softmax is exactly `probs` (log of each probability).
std::vector<float> logits_of(const std::vector<double>& probs) {
    std::vector<float> l;
    for (double p : probs) l.push_back((float)std::log(p));
    return l;
}

// Only the named filter on: everything else off, temperature 1.
SamplerParams plain_params(uint64_t seed = 1234) {
    SamplerParams p;
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = seed;
    return p;
}

// Counts of each token id over n draws.
std::map<int, int> histogram(Sampler& s, const std::vector<float>& logits, int n) {
    std::map<int, int> h;
    for (int i = 0; i < n; i++) h[s.sample(logits.data())]++;
    return h;
}

std::vector<int> keys(const std::map<int, int>& h) {
    std::vector<int> k;
    for (auto& kv : h) k.push_back(kv.first);
    return k;
}

// Observed counts agree with expected probabilities within 5 binomial standard deviations per token.
void expect_frequencies(const std::map<int, int>& h, const std::vector<double>& expected, int n) {
    for (size_t id = 0; id < expected.size(); id++) {
        const double p = expected[id];
        const int got = h.count((int)id) ? h.at((int)id) : 0;
        const double sigma = std::sqrt(n * p * (1 - p));
        EXPECT_NEAR(got, n * p, 5 * sigma + 1) << "token " << id << " expected p=" << p;
    }
}

const std::vector<double> kProbs = {0.4, 0.3, 0.15, 0.1, 0.05};

}  // namespace

TEST(Sampler, GreedyIsArgmax) {
    SamplerParams p;
    p.temp = 0.0f;
    Sampler s(p, 6);
    std::vector<float> l = {0.1f, -3.0f, 2.5f, 2.4f, -10.0f, 0.0f};
    EXPECT_EQ(s.sample(l.data()), 2);
    l[5] = 7.0f;
    EXPECT_EQ(s.sample(l.data()), 5);
}

TEST(Sampler, GreedyTiesPickLowestId) {
    SamplerParams p;
    p.temp = -1.0f;
    Sampler s(p, 5);
    std::vector<float> l = {1.0f, 3.0f, 0.0f, 3.0f, 3.0f};
    EXPECT_EQ(s.sample(l.data()), 1);
}

TEST(Sampler, NoFiltersKeepsEveryToken) {
    Sampler s(plain_params(), 5);
    auto h = histogram(s, logits_of(kProbs), 20000);
    EXPECT_EQ(keys(h), (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(Sampler, TopKKeepsTheKBest) {
    SamplerParams p = plain_params();
    p.top_k = 2;
    Sampler s(p, 5);
    const int n = 20000;
    auto h = histogram(s, logits_of(kProbs), n);
    EXPECT_EQ(keys(h), (std::vector<int>{0, 1}));
    expect_frequencies(h, {0.4 / 0.7, 0.3 / 0.7}, n);
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
    SamplerParams p = plain_params();
    p.top_p = 0.65f;  // 0.4 < 0.65 <= 0.4 + 0.3
    Sampler s(p, 5);
    EXPECT_EQ(keys(histogram(s, logits_of(kProbs), 5000)), (std::vector<int>{0, 1}));

    p.top_p = 0.75f;  // 0.7 < 0.75 <= 0.85
    Sampler s2(p, 5);
    EXPECT_EQ(keys(histogram(s2, logits_of(kProbs), 5000)), (std::vector<int>{0, 1, 2}));
}

TEST(Sampler, MinPIsRelativeToTheLargestProbability) {
    SamplerParams p = plain_params();
    p.min_p = 0.3f;  // threshold 0.12: keeps 0.4, 0.3, 0.15
    Sampler s(p, 5);
    EXPECT_EQ(keys(histogram(s, logits_of(kProbs), 5000)), (std::vector<int>{0, 1, 2}));

    p.min_p = 0.5f;  // threshold 0.2: keeps 0.4, 0.3
    Sampler s2(p, 5);
    EXPECT_EQ(keys(histogram(s2, logits_of(kProbs), 5000)), (std::vector<int>{0, 1}));
}

TEST(Sampler, TopPRunsOnTheTopKRenormalisedSet) {
    // Alone, top_p = 0.8 keeps {0, 1, 2} (0.7 < 0.8). After top_k = 3 the probabilities are 0.4/0.85 and
    // 0.3/0.85, whose sum 0.82 already reaches 0.8, so only {0, 1} survive: the order top_k -> top_p matters.
    SamplerParams p = plain_params();
    p.top_p = 0.8f;
    Sampler alone(p, 5);
    EXPECT_EQ(keys(histogram(alone, logits_of(kProbs), 5000)), (std::vector<int>{0, 1, 2}));
    p.top_k = 3;
    Sampler chained(p, 5);
    EXPECT_EQ(keys(histogram(chained, logits_of(kProbs), 5000)), (std::vector<int>{0, 1}));
}

TEST(Sampler, TemperatureScalesLogits) {
    const std::vector<float> l = {1.0f, 0.0f, -1.0f};
    for (float temp : {0.5f, 2.0f}) {
        SamplerParams p = plain_params(77);
        p.temp = temp;
        Sampler s(p, 3);
        std::vector<double> expected;
        double z = 0;
        for (float x : l) z += std::exp(x / temp);
        for (float x : l) expected.push_back(std::exp(x / temp) / z);
        const int n = 30000;
        expect_frequencies(histogram(s, l, n), expected, n);
    }
}

TEST(Sampler, FrequenciesMatchTheSoftmax) {
    // 16 tokens with varied logits; the defaults of every filter off.
    std::vector<float> l;
    for (int i = 0; i < 16; i++) l.push_back(std::sin(1.7f * i) * 2.0f);
    double z = 0;
    for (float x : l) z += std::exp(x);
    std::vector<double> expected;
    for (float x : l) expected.push_back(std::exp(x) / z);
    Sampler s(plain_params(2024), 16);
    const int n = 50000;
    auto h = histogram(s, l, n);
    expect_frequencies(h, expected, n);
    // And a chi-square goodness of fit: 15 degrees of freedom, 0.999 quantile is 37.7.
    double chi2 = 0;
    for (int id = 0; id < 16; id++) {
        const double e = n * expected[id];
        const double d = (h.count(id) ? h[id] : 0) - e;
        chi2 += d * d / e;
    }
    EXPECT_LT(chi2, 37.7);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferent) {
    std::vector<float> flat(100, 0.0f);
    auto run = [&](uint64_t seed) {
        Sampler s(plain_params(seed), 100);
        std::vector<int> out;
        for (int i = 0; i < 50; i++) out.push_back(s.sample(flat.data()));
        return out;
    };
    EXPECT_EQ(run(42), run(42));
    EXPECT_NE(run(42), run(43));
    Sampler s(plain_params(42), 100);
    EXPECT_EQ(s.seed(), 42u);
}

TEST(Sampler, ResetRestartsTheSequence) {
    std::vector<float> flat(100, 0.0f);
    Sampler s(plain_params(9), 100);
    std::vector<int> a, b;
    for (int i = 0; i < 20; i++) a.push_back(s.sample(flat.data()));
    s.reset();
    for (int i = 0; i < 20; i++) b.push_back(s.sample(flat.data()));
    EXPECT_EQ(a, b);
}

TEST(Sampler, RandomSeedIsDrawnAndReported) {
    SamplerParams p = plain_params(0xFFFFFFFF);
    Sampler a(p, 10), b(p, 10);
    EXPECT_NE(a.seed(), 0xFFFFFFFFull);
    EXPECT_NE(a.seed(), b.seed());  // 2^-64 chance of a false failure
}

TEST(Sampler, RepeatPenaltyDividesPositiveAndMultipliesNegative) {
    SamplerParams p;
    p.temp = 0.0f;
    p.repeat_penalty = 2.0f;
    Sampler s(p, 4);
    std::vector<float> l = {2.0f, 1.9f, -1.0f, -1.5f};
    EXPECT_EQ(s.sample(l.data()), 0);
    s.accept(0);  // 2.0 -> 1.0, below 1.9
    EXPECT_EQ(s.sample(l.data()), 1);

    std::vector<float> neg = {-5.0f, -5.0f, -1.0f, -1.5f};
    Sampler s2(p, 4);
    s2.accept(2);  // -1.0 -> -2.0, below -1.5
    EXPECT_EQ(s2.sample(neg.data()), 3);
}

TEST(Sampler, RepeatPenaltyOncePerDistinctToken) {
    SamplerParams p;
    p.temp = 0.0f;
    p.repeat_penalty = 2.0f;
    Sampler s(p, 2);
    std::vector<float> l = {2.0f, 0.9f};
    s.accept(0);
    s.accept(0);
    s.accept(0);
    EXPECT_EQ(s.sample(l.data()), 0);  // 2.0 / 2 = 1.0 > 0.9, not 2.0 / 8
}

TEST(Sampler, RepeatPenaltyWindow) {
    SamplerParams p;
    p.temp = 0.0f;
    p.repeat_penalty = 4.0f;
    p.repeat_last_n = 3;
    Sampler s(p, 5);
    std::vector<float> l = {2.0f, 1.0f, -9.0f, -9.0f, -9.0f};
    s.accept(0);
    EXPECT_EQ(s.sample(l.data()), 1);  // 0 penalised to 0.5
    s.accept(2);
    s.accept(3);
    s.accept(4);  // 0 left the window of 3
    EXPECT_EQ(s.sample(l.data()), 0);

    p.repeat_last_n = 0;  // off
    Sampler off(p, 5);
    off.accept(0);
    EXPECT_EQ(off.sample(l.data()), 0);
}

TEST(Sampler, RepeatPenaltyShiftsSampledFrequencies) {
    SamplerParams p = plain_params(5);
    p.repeat_penalty = 2.0f;
    Sampler s(p, 2);
    const std::vector<float> l = {1.0f, 0.0f};
    s.accept(0);  // token 0: logit 1.0 -> 0.5
    const int n = 20000;
    const double p0 = std::exp(0.5) / (std::exp(0.5) + 1.0);
    expect_frequencies(histogram(s, l, n), {p0, 1 - p0}, n);
}

TEST(Sampler, RejectsBadParameters) {
    SamplerParams p;
    EXPECT_THROW(Sampler(p, 0), Error);
    p.repeat_penalty = 0.0f;
    EXPECT_THROW(Sampler(p, 10), Error);
    p = SamplerParams();
    p.repeat_last_n = -1;
    EXPECT_THROW(Sampler(p, 10), Error);
    p = SamplerParams();
    p.temp = NAN;
    EXPECT_THROW(Sampler(p, 10), Error);
    Sampler ok(SamplerParams(), 10);
    EXPECT_THROW(ok.accept(10), Error);
    std::string msg;
    try {
        ok.accept(-3);
    } catch (const Error& e) {
        msg = e.what();
    }
    EXPECT_NE(msg.find("token id -3"), std::string::npos) << msg;
}
