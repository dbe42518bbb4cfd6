#include "predictor/train.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>

#include "engine/error.h"
#include "kernels-cpu/matmul.h"

namespace ember {

namespace {

constexpr DType kF32 = DType::DTYPE_F32;
constexpr int64_t kEvalChunk = 256;  // samples scored per batched forward pass in evaluation

// Portable, seeded normal draws (std::normal_distribution differs between standard libraries).
struct Rng {
    std::mt19937_64 gen;
    explicit Rng(uint64_t seed) : gen(seed) {}
    double uniform() { return ((gen() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }  // (0, 1)
    double normal() { return std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform()); }
    uint64_t below(uint64_t n) { return gen() % n; }
    template <class T>
    void shuffle(std::vector<T>& v) {
        for (size_t i = v.size(); i > 1; i--) std::swap(v[i - 1], v[below(i)]);
    }
};

// Batched forward pass: hpre (n, rank) = X · fc1^T, h = relu(hpre), scores (n, n_ff) = h · fc2^T.
struct Forward {
    std::vector<float> hpre, h, scores, scratch;
    Forward(const Predictor& p, int64_t max_n)
        : hpre((size_t)(max_n * p.rank)), h(hpre.size()), scores((size_t)(max_n * p.n_ff)),
          scratch((size_t)std::max(matmul_scratch_floats(p.rank, p.dim), matmul_scratch_floats(p.n_ff, p.rank))) {}
    void run(const Predictor& p, const float* x, int64_t n, ThreadPool& pool) {
        matmul(kF32, p.fc1.data(), x, hpre.data(), n, p.rank, p.dim, scratch.data(), pool);
        for (int64_t j = 0; j < n * p.rank; j++) h[j] = hpre[j] > 0.0f ? hpre[j] : 0.0f;
        matmul(kF32, p.fc2.data(), h.data(), scores.data(), n, p.n_ff, p.rank, scratch.data(), pool);
    }
};

struct Counts {
    int64_t tp = 0, fp = 0, fn = 0, fired = 0;
};

// Counts TP/FP/FN at p.threshold over n samples; appends the scores of fired entries to positive_scores if given.
Counts score_samples(const Predictor& p, const float* x, const uint8_t* fired, int64_t n, ThreadPool& pool,
                     std::vector<float>* positive_scores) {
    Forward f(p, std::min(n, kEvalChunk));
    Counts c;
    for (int64_t s0 = 0; s0 < n; s0 += kEvalChunk) {
        const int64_t m = std::min(kEvalChunk, n - s0);
        f.run(p, x + s0 * p.dim, m, pool);
        const uint8_t* y = fired + s0 * p.n_ff;
        for (int64_t j = 0; j < m * p.n_ff; j++) {
            const bool pred = f.scores[j] > p.threshold, truth = y[j] != 0;
            c.tp += pred && truth;
            c.fp += pred && !truth;
            c.fn += !pred && truth;
            c.fired += truth;
            if (truth && positive_scores) positive_scores->push_back(f.scores[j]);
        }
    }
    return c;
}

PredictorMetrics metrics_from(const Counts& c, int64_t n_samples, int n_ff) {
    PredictorMetrics m;
    const double total = (double)n_samples * n_ff;
    m.n_samples = n_samples;
    m.recall = c.tp + c.fn > 0 ? (double)c.tp / (double)(c.tp + c.fn) : 1.0;
    m.precision = c.tp + c.fp > 0 ? (double)c.tp / (double)(c.tp + c.fp) : 1.0;
    m.predicted_sparsity = total > 0 ? 1.0 - (double)(c.tp + c.fp) / total : 0.0;
    m.true_sparsity = total > 0 ? 1.0 - (double)c.fired / total : 0.0;
    return m;
}

// log(1 + exp(z)) without overflow.
inline double softplus(double z) { return std::max(z, 0.0) + std::log1p(std::exp(-std::fabs(z))); }

// One Adam step over n parameters (Kingma & Ba, 2015, algorithm 1); t counts steps from 1.
void adam_step(float* w, const float* g, float* m, float* v, size_t n, float lr, int64_t t) {
    constexpr float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    const float c1 = 1.0f - std::pow(b1, (float)t), c2 = 1.0f - std::pow(b2, (float)t);
    for (size_t j = 0; j < n; j++) {
        m[j] = b1 * m[j] + (1.0f - b1) * g[j];
        v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
        w[j] -= lr * (m[j] / c1) / (std::sqrt(v[j] / c2) + eps);
    }
}

void check_args(const PredictorTrainArgs& a) {
    auto bad = [](const std::string& field, const std::string& want, double found) {
        throw Error("predictor_train: " + field + " must be " + want + ", found " + std::to_string(found));
    };
    if (a.rank <= 0) bad("rank", "> 0", a.rank);
    if (a.epochs <= 0) bad("epochs", "> 0", a.epochs);
    if (a.batch_size <= 0) bad("batch_size", "> 0", a.batch_size);
    if (!(a.lr > 0.0f)) bad("lr", "> 0", a.lr);
    if (!(a.pos_weight > 0.0f)) bad("pos_weight", "> 0", a.pos_weight);
    if (!(a.holdout_fraction > 0.0f && a.holdout_fraction < 1.0f))
        bad("holdout_fraction", "in (0, 1)", a.holdout_fraction);
    if (!(a.recall_target > 0.0f && a.recall_target <= 1.0f)) bad("recall_target", "in (0, 1]", a.recall_target);
}

}  // namespace

int64_t predictor_samples_count(const PredictorSamples& s) {
    if (s.dim <= 0 || s.n_ff <= 0)
        throw Error("predictor samples: dim and n_ff must be positive, found dim=" + std::to_string(s.dim) +
                    " n_ff=" + std::to_string(s.n_ff));
    if (s.x.size() % (size_t)s.dim != 0)
        throw Error("predictor samples: x has " + std::to_string(s.x.size()) + " floats, not a multiple of dim = " +
                    std::to_string(s.dim));
    const int64_t n = (int64_t)(s.x.size() / (size_t)s.dim);
    if (s.fired.size() != (size_t)n * (size_t)s.n_ff)
        throw Error("predictor samples: fired has " + std::to_string(s.fired.size()) +
                    " entries, expected n_samples*n_ff = " + std::to_string(n) + "*" + std::to_string(s.n_ff) +
                    " = " + std::to_string((size_t)n * (size_t)s.n_ff));
    return n;
}

float predictor_choose_threshold(std::vector<float> positive_scores, float recall_target) {
    if (!(recall_target > 0.0f && recall_target <= 1.0f))
        throw Error("predictor_choose_threshold: recall_target must be in (0, 1], found " +
                    std::to_string(recall_target));
    const int64_t n_pos = (int64_t)positive_scores.size();
    if (n_pos == 0) return std::numeric_limits<float>::max();  // nothing fires: predicting nothing has recall 1
    // k positives must score above the threshold; the 1e-6 slack keeps 0.99f * 100 from rounding up to 100.
    int64_t k = (int64_t)std::ceil((double)recall_target * (double)n_pos - 1e-6 * (double)n_pos);
    k = std::min(std::max(k, (int64_t)1), n_pos);
    std::nth_element(positive_scores.begin(), positive_scores.begin() + (k - 1), positive_scores.end(),
                     std::greater<float>());
    // The k-th largest positive score must stay strictly above: the largest float below it.
    return std::nextafter(positive_scores[(size_t)(k - 1)], -std::numeric_limits<float>::infinity());
}

PredictorMetrics predictor_evaluate(const Predictor& p, const PredictorSamples& s, ThreadPool& pool) {
    predictor_validate(p);
    const int64_t n = predictor_samples_count(s);
    if (s.dim != p.dim || s.n_ff != p.n_ff)
        throw Error("predictor_evaluate: samples have dim=" + std::to_string(s.dim) + " n_ff=" +
                    std::to_string(s.n_ff) + ", predictor expects dim=" + std::to_string(p.dim) +
                    " n_ff=" + std::to_string(p.n_ff));
    return metrics_from(score_samples(p, s.x.data(), s.fired.data(), n, pool, nullptr), n, p.n_ff);
}

PredictorTrainResult predictor_train(const PredictorSamples& s, const PredictorTrainArgs& a, ThreadPool& pool) {
    check_args(a);
    const int64_t n = predictor_samples_count(s);
    const int64_t n_hold = (int64_t)std::llround((double)n * a.holdout_fraction), n_train = n - n_hold;
    if (n_hold < 1 || n_train < 1)
        throw Error("predictor_train: " + std::to_string(n) + " samples with holdout_fraction " +
                    std::to_string(a.holdout_fraction) + " leave an empty train or held-out split");
    const int dim = s.dim, n_ff = s.n_ff, rank = a.rank;
    Rng rng(a.seed);

    // Shuffle once, then split: the last n_hold samples of the permutation are held out.
    std::vector<int64_t> order((size_t)n);
    std::iota(order.begin(), order.end(), 0);
    rng.shuffle(order);
    std::vector<int64_t> train_ids(order.begin(), order.begin() + n_train);
    std::vector<float> hold_x((size_t)(n_hold * dim));
    std::vector<uint8_t> hold_y((size_t)(n_hold * n_ff));
    for (int64_t j = 0; j < n_hold; j++) {
        const int64_t src = order[(size_t)(n_train + j)];
        std::copy_n(&s.x[(size_t)(src * dim)], dim, &hold_x[(size_t)(j * dim)]);
        std::copy_n(&s.fired[(size_t)(src * n_ff)], n_ff, &hold_y[(size_t)(j * n_ff)]);
    }

    // He initialisation for fc1 (feeds a ReLU), 1/sqrt(rank) for fc2; the bias starts at the firing rate's logit.
    PredictorTrainResult r;
    Predictor& p = r.predictor;
    p.dim = dim, p.rank = rank, p.n_ff = n_ff;
    p.fc1.resize((size_t)rank * dim);
    p.fc2.resize((size_t)n_ff * rank);
    for (float& w : p.fc1) w = (float)(rng.normal() * std::sqrt(2.0 / dim));
    for (float& w : p.fc2) w = (float)(rng.normal() / std::sqrt((double)rank));
    int64_t n_fired = 0;
    for (int64_t id : train_ids) {
        const uint8_t* y = &s.fired[(size_t)(id * n_ff)];
        n_fired += std::count(y, y + n_ff, 1);
    }
    const double rate = std::min(std::max((double)n_fired / ((double)n_train * n_ff), 1e-4), 1.0 - 1e-4);
    float bias = (float)std::log(rate / (1.0 - rate));

    const int64_t B = std::min<int64_t>(a.batch_size, n_train);
    Forward f(p, B);
    std::vector<float> xb((size_t)(B * dim)), g((size_t)(B * n_ff)), dh((size_t)(B * rank));
    std::vector<float> g1(p.fc1.size()), g2(p.fc2.size()), m1(g1.size()), v1(g1.size()), m2(g2.size()), v2(g2.size());
    float mb = 0.0f, vb = 0.0f;
    int64_t step = 0;
    for (int epoch = 0; epoch < a.epochs; epoch++) {
        rng.shuffle(train_ids);
        double loss_sum = 0.0;
        for (int64_t b0 = 0; b0 < n_train; b0 += B) {
            const int64_t nb = std::min(B, n_train - b0);
            for (int64_t j = 0; j < nb; j++)
                std::copy_n(&s.x[(size_t)(train_ids[(size_t)(b0 + j)] * dim)], dim, &xb[(size_t)(j * dim)]);
            f.run(p, xb.data(), nb, pool);
            // Weighted BCE on logit l = score + bias: d/dl = pos_weight*(sigmoid(l)-1) if fired else sigmoid(l),
            // averaged over the nb*n_ff entries.
            const double inv = 1.0 / ((double)nb * n_ff);
            double gb = 0.0;
            for (int64_t j = 0; j < nb; j++) {
                const uint8_t* y = &s.fired[(size_t)(train_ids[(size_t)(b0 + j)] * n_ff)];
                for (int i = 0; i < n_ff; i++) {
                    const double l = (double)f.scores[(size_t)(j * n_ff + i)] + bias;
                    const double sig = 1.0 / (1.0 + std::exp(-l));
                    const double d = y[i] ? a.pos_weight * (sig - 1.0) : sig;
                    loss_sum += (y[i] ? a.pos_weight * softplus(-l) : softplus(l)) * inv * nb;
                    g[(size_t)(j * n_ff + i)] = (float)(d * inv);
                    gb += d * inv;
                }
            }
            // g2 (n_ff, rank) = g^T · h; each row of g2 is one worker's, summed in sample order (deterministic).
            pool.parallel_for(n_ff, 16, [&](int64_t i0, int64_t i1) {
                for (int64_t i = i0; i < i1; i++) {
                    float* gi = &g2[(size_t)(i * rank)];
                    std::fill(gi, gi + rank, 0.0f);
                    for (int64_t j = 0; j < nb; j++) {
                        const float gj = g[(size_t)(j * n_ff + i)];
                        const float* hj = &f.h[(size_t)(j * rank)];
                        for (int k = 0; k < rank; k++) gi[k] += gj * hj[k];
                    }
                }
            });
            // dh (nb, rank) = g · fc2, masked by relu'(hpre).
            for (int64_t j = 0; j < nb; j++) {
                float* dj = &dh[(size_t)(j * rank)];
                std::fill(dj, dj + rank, 0.0f);
                for (int i = 0; i < n_ff; i++) {
                    const float gj = g[(size_t)(j * n_ff + i)];
                    const float* wi = &p.fc2[(size_t)i * rank];
                    for (int k = 0; k < rank; k++) dj[k] += gj * wi[k];
                }
                for (int k = 0; k < rank; k++)
                    if (f.hpre[(size_t)(j * rank + k)] <= 0.0f) dj[k] = 0.0f;
            }
            // g1 (rank, dim) = dh^T · x.
            std::fill(g1.begin(), g1.end(), 0.0f);
            for (int64_t j = 0; j < nb; j++) {
                const float* xj = &xb[(size_t)(j * dim)];
                for (int k = 0; k < rank; k++) {
                    const float d = dh[(size_t)(j * rank + k)];
                    if (d == 0.0f) continue;
                    float* gk = &g1[(size_t)k * dim];
                    for (int c = 0; c < dim; c++) gk[c] += d * xj[c];
                }
            }
            step++;
            adam_step(p.fc1.data(), g1.data(), m1.data(), v1.data(), g1.size(), a.lr, step);
            adam_step(p.fc2.data(), g2.data(), m2.data(), v2.data(), g2.size(), a.lr, step);
            const float gbf = (float)gb;
            adam_step(&bias, &gbf, &mb, &vb, 1, a.lr, step);
        }
        r.final_loss = (float)(loss_sum / (double)n_train);
    }

    // Threshold: the largest reaching recall_target on the held-out split, then measure there.
    std::vector<float> positive_scores;
    p.threshold = 0.0f;
    score_samples(p, hold_x.data(), hold_y.data(), n_hold, pool, &positive_scores);
    p.threshold = predictor_choose_threshold(std::move(positive_scores), a.recall_target);
    r.holdout = metrics_from(score_samples(p, hold_x.data(), hold_y.data(), n_hold, pool, nullptr), n_hold, n_ff);
    return r;
}

}  // namespace ember
