#include "predictor/train.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>
#include <string>

#include "engine/error.h"
#include "kernels-cpu/exp.h"
#include "kernels-cpu/gemm.h"
#include "kernels-cpu/matmul.h"
#include "kernels-cpu/quant.h"
#if defined(EMBER_CUDA)
#include "predictor/train-gpu.h"
#endif

namespace ember {

namespace {

constexpr DType kF32 = DType::DTYPE_F32;
constexpr int64_t kEvalChunk = 256;                      // samples per batched forward pass (float evaluation)
constexpr uint64_t kTrainStream = 0x9e3779b97f4a7c15ull;  // training's draws apart from the split's

// Portable, seeded normal draws (std::normal_distribution differs between standard libraries).
struct Rng {
    std::mt19937_64 gen;
    explicit Rng(uint64_t seed) : gen(seed) {}
    double uniform() { return ((gen() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }  // (0, 1)
    // Box-Muller: both draws of a pair.
    void normal_pair(double& a, double& b) {
        const double r = std::sqrt(-2.0 * std::log(uniform())), t = 6.283185307179586 * uniform();
        a = r * std::cos(t), b = r * std::sin(t);
    }
    uint64_t below(uint64_t n) { return gen() % n; }
    template <class T>
    void shuffle(std::vector<T>& v) {
        for (size_t i = v.size(); i > 1; i--) std::swap(v[i - 1], v[below(i)]);
    }
};

// w (rows, cols) drawn from N(0, scale^2), row r from its own stream (seed, tag, r): the rows fill in parallel
// and the values do not depend on the thread count.
void init_normal_rows(std::vector<float>& w, int64_t rows, int64_t cols, double scale, uint64_t seed, uint64_t tag,
                      ThreadPool& pool) {
    w.resize((size_t)(rows * cols));
    pool.parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; r++) {
            Rng g(seed ^ (tag * 0xbf58476d1ce4e5b9ull) ^ ((uint64_t)r * 0x94d049bb133111ebull));
            float* row = &w[(size_t)(r * cols)];
            for (int64_t c = 0; c < cols; c += 2) {
                double a, b;
                g.normal_pair(a, b);
                row[c] = (float)(a * scale);
                if (c + 1 < cols) row[c + 1] = (float)(b * scale);
            }
        }
    });
}

// Batched float forward pass: hpre (n, rank) = X · fc1^T, h = relu(hpre) (hpre itself for a linear predictor),
// scores (n, n_ff) = h · fc2^T.
struct Forward {
    std::vector<float> hpre, h, scores, scratch;
    Forward(const Predictor& p, int64_t max_n)
        : hpre((size_t)(max_n * p.rank)), h(hpre.size()), scores((size_t)(max_n * p.n_ff)),
          scratch((size_t)std::max(matmul_scratch_floats(p.rank, p.dim), matmul_scratch_floats(p.n_ff, p.rank))) {}
    void run(const Predictor& p, const float* x, int64_t n, ThreadPool& pool) {
        matmul(kF32, p.fc1.data(), x, hpre.data(), n, p.rank, p.dim, scratch.data(), pool);
        const bool relu = p.hidden == PredictorHidden::PREDICTOR_HIDDEN_RELU;
        for (int64_t j = 0; j < n * p.rank; j++) h[j] = !relu || hpre[j] > 0.0f ? hpre[j] : 0.0f;
        matmul(kF32, p.fc2.data(), h.data(), scores.data(), n, p.n_ff, p.rank, scratch.data(), pool);
    }
};

struct Counts {
    int64_t tp = 0, fp = 0, fn = 0, fired = 0;
};

// Adds the TP/FP/FN of n entries at threshold to c.
void count(const float* scores, const uint8_t* fired, int64_t n, float threshold, Counts& c) {
    for (int64_t j = 0; j < n; j++) {
        const bool pred = scores[j] > threshold, truth = fired[j] != 0;
        c.tp += pred && truth;
        c.fp += pred && !truth;
        c.fn += !pred && truth;
        c.fired += truth;
    }
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

void check_shapes(const char* who, int dim, int n_ff, const PredictorSamples& s) {
    if (s.dim != dim || s.n_ff != n_ff)
        throw Error(std::string(who) + ": samples have dim=" + std::to_string(s.dim) + " n_ff=" +
                    std::to_string(s.n_ff) + ", predictor expects dim=" + std::to_string(dim) +
                    " n_ff=" + std::to_string(n_ff));
}

bool runnable_type(DType t) { return t == DType::DTYPE_F32 || t == DType::DTYPE_F16 || t == DType::DTYPE_Q8_0; }

// Bytes of fc1 (rank, dim) and fc2 (n_ff, rank) packed in type t (PredictorWeights::bytes).
size_t packed_bytes(DType t, int dim, int rank, int n_ff) {
    return dtype_row_bytes(t, dim) * (size_t)rank + dtype_row_bytes(t, rank) * (size_t)n_ff;
}

// One Adam step over [0, n) (Kingma & Ba, 2015, algorithm 1); t counts steps from 1.
struct Adam {
    float lr, c1, c2;
    static constexpr float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    Adam(float lr_, int64_t t) : lr(lr_), c1(1.0f - std::pow(b1, (float)t)), c2(1.0f - std::pow(b2, (float)t)) {}
    void step(float* w, const float* g, float* m, float* v, int64_t n) const {
        for (int64_t j = 0; j < n; j++) {
            m[j] = b1 * m[j] + (1.0f - b1) * g[j];
            v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
            w[j] -= lr * (m[j] / c1) / (std::sqrt(v[j] / c2) + eps);
        }
    }
    void step(std::vector<float>& w, const std::vector<float>& g, std::vector<float>& m, std::vector<float>& v,
              ThreadPool& pool) const {
        pool.parallel_for((int64_t)w.size(), 16384, [&](int64_t b, int64_t e) {
            step(w.data() + b, g.data() + b, m.data() + b, v.data() + b, e - b);
        });
    }
};

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
    if (!runnable_type(a.weight_type))
        throw Error(std::string("predictor_train: weight_type must be F32, F16 or Q8_0, found ") +
                    dtype_name(a.weight_type));
}

// The packed type's blocks must tile both products: Q8_0 needs dim and rank to be multiples of 32.
void check_blocks(const char* who, DType t, int dim, int rank) {
    const int block = dtype_block_elems(t);
    if (dim % block != 0 || rank % block != 0)
        throw Error(std::string(who) + ": weight_type " + dtype_name(t) + " needs dim and rank to be multiples of " +
                    std::to_string(block) + ", found dim=" + std::to_string(dim) + " rank=" + std::to_string(rank));
}

struct BceSums {
    double grad = 0.0;  // sum of d/dl over the row
    double loss = 0.0;  // sum of the weighted BCE terms (with_loss only)
};

// One sample's row of the weighted BCE on logit l = score + bias: g = inv * d/dl, with d/dl = pos_weight *
// (sigmoid(l) - 1) if fired else sigmoid(l). One exp per entry: e = exp(-|l|) gives both sigmoid and softplus;
// exp_nonpositive keeps it in the vectorized loop.
// The sums run in kLanes independent float lanes (no chain of dependent double adds) and end in double, in a fixed
// order.
template <bool with_loss>
BceSums bce_row(const float* scores, const uint8_t* fired, int n_ff, float bias, float pw, float inv, float* g) {
    constexpr int kLanes = 16;
    float gl[kLanes] = {}, ll[kLanes] = {};
    auto term = [&](int i, float& gacc, float& lacc) {
        const float l = scores[i] + bias, e = exp_nonpositive(-std::fabs(l));
        const float sig = (l >= 0.0f ? 1.0f : e) / (1.0f + e);
        const bool y = fired[i] != 0;
        const float d = y ? pw * (sig - 1.0f) : sig;
        g[i] = d * inv;
        gacc += d;
        if (with_loss) {  // softplus(l) = max(l, 0) + log1p(e), softplus(-l) = max(-l, 0) + log1p(e)
            const float sp = std::log1p(e);
            lacc += y ? pw * (std::max(-l, 0.0f) + sp) : std::max(l, 0.0f) + sp;
        }
    };
    int i = 0;
    for (; i + kLanes <= n_ff; i += kLanes)
        for (int u = 0; u < kLanes; u++) term(i + u, gl[u], ll[u]);
    for (int u = 0; i < n_ff; i++, u++) term(i, gl[u], ll[u]);
    BceSums out;
    for (int u = 0; u < kLanes; u++) out.grad += gl[u], out.loss += ll[u];
    return out;
}

// Minibatch Adam on the weighted BCE over the samples of s; p holds the initial weights and gets the trained ones.
// Every product goes through gemm_f32 (BLAS where built with it), whose result does not depend on the thread count;
// per-sample sums are reduced in sample order, so training is deterministic for any pool.
float fit(const PredictorSamples& s, const PredictorTrainArgs& a, Rng& rng, float bias, Predictor& p,
          ThreadPool& pool) {
    const int dim = p.dim, rank = p.rank, n_ff = p.n_ff;
    const int64_t n = (int64_t)(s.x.size() / (size_t)dim);
    const int64_t B = std::min<int64_t>(a.batch_size, n);
    std::vector<int64_t> ids((size_t)n);
    std::iota(ids.begin(), ids.end(), 0);
    // Per batch: xb (B, dim); hpre, h and dh (B, rank); scores and g (B, n_ff). The products read their operands
    // transposed in place (gemm_f32), so no transposed copy is made.
    std::vector<float> xb((size_t)(B * dim)), hpre((size_t)(B * rank)), h(hpre.size()), dh(hpre.size()),
        scores((size_t)(B * n_ff)), g(scores.size());
    std::vector<float> g1(p.fc1.size()), g2(p.fc2.size()), m1(g1.size()), v1(g1.size()), m2(g2.size()), v2(g2.size());
    std::vector<double> loss_j((size_t)B), gb_j((size_t)B);
    float mb = 0.0f, vb = 0.0f;
    int64_t step = 0;
    double loss_sum = 0.0;
    auto rows = [](const float* x, int64_t ld) { return GemmOperand{x, ld, false}; };
    auto rows_t = [](const float* x, int64_t ld) { return GemmOperand{x, ld, true}; };
    for (int epoch = 0; epoch < a.epochs; epoch++) {
        rng.shuffle(ids);
        const bool last = epoch == a.epochs - 1;  // the loss is reported for the last epoch only
        for (int64_t b0 = 0; b0 < n; b0 += B) {
            const int64_t nb = std::min(B, n - b0);
            pool.parallel_for(nb, 8, [&](int64_t j0, int64_t j1) {
                for (int64_t j = j0; j < j1; j++)
                    std::copy_n(&s.x[(size_t)(ids[(size_t)(b0 + j)] * dim)], dim, &xb[(size_t)(j * dim)]);
            });
            // Forward: hpre (nb, rank) = xb · fc1^T, h = relu(hpre), scores (nb, n_ff) = h · fc2^T.
            gemm_f32(rows(xb.data(), dim), rows_t(p.fc1.data(), dim), hpre.data(), rank, {nb, rank, dim}, pool);
            for (int64_t j = 0; j < nb * rank; j++) h[(size_t)j] = std::max(hpre[(size_t)j], 0.0f);
            gemm_f32(rows(h.data(), rank), rows_t(p.fc2.data(), rank), scores.data(), n_ff, {nb, n_ff, rank}, pool);
            // Weighted BCE (bce_row), averaged over the nb*n_ff entries; per-sample sums reduced in sample order.
            const float inv = (float)(1.0 / ((double)nb * n_ff)), pw = a.pos_weight;
            pool.parallel_for(nb, 1, [&](int64_t j0, int64_t j1) {
                for (int64_t j = j0; j < j1; j++) {
                    const float* sj = &scores[(size_t)(j * n_ff)];
                    const uint8_t* yj = &s.fired[(size_t)(ids[(size_t)(b0 + j)] * n_ff)];
                    float* gj = &g[(size_t)(j * n_ff)];
                    const BceSums sums = last ? bce_row<true>(sj, yj, n_ff, bias, pw, inv, gj)
                                              : bce_row<false>(sj, yj, n_ff, bias, pw, inv, gj);
                    gb_j[(size_t)j] = sums.grad * inv;
                    loss_j[(size_t)j] = sums.loss / n_ff;
                }
            });
            double gb = 0.0;
            for (int64_t j = 0; j < nb; j++) gb += gb_j[(size_t)j], loss_sum += last ? loss_j[(size_t)j] : 0.0;
            // g2 (n_ff, rank) = g^T · h.
            gemm_f32(rows_t(g.data(), n_ff), rows(h.data(), rank), g2.data(), rank, {n_ff, rank, nb}, pool);
            // dh (nb, rank) = g · fc2, masked by relu'(hpre).
            gemm_f32(rows(g.data(), n_ff), rows(p.fc2.data(), rank), dh.data(), rank, {nb, rank, n_ff}, pool);
            for (int64_t j = 0; j < nb * rank; j++)
                if (hpre[(size_t)j] <= 0.0f) dh[(size_t)j] = 0.0f;
            // g1 (rank, dim) = dh^T · xb.
            gemm_f32(rows_t(dh.data(), rank), rows(xb.data(), dim), g1.data(), dim, {rank, dim, nb}, pool);
            const Adam adam(a.lr, ++step);
            adam.step(p.fc1, g1, m1, v1, pool);
            adam.step(p.fc2, g2, m2, v2, pool);
            const float gbf = (float)gb;
            adam.step(&bias, &gbf, &mb, &vb, 1);
        }
    }
    return (float)(loss_sum / (double)n);
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

void predictor_split(const PredictorSamples& s, float holdout_fraction, uint64_t seed, PredictorSamples* train,
                     PredictorSamples* holdout) {
    const int64_t n = predictor_samples_count(s);
    if (!(holdout_fraction > 0.0f && holdout_fraction < 1.0f))
        throw Error("predictor_split: holdout_fraction must be in (0, 1), found " + std::to_string(holdout_fraction));
    const int64_t n_hold = (int64_t)std::llround((double)n * holdout_fraction), n_train = n - n_hold;
    if (n_hold < 1 || n_train < 1)
        throw Error("predictor_train: " + std::to_string(n) + " samples with holdout_fraction " +
                    std::to_string(holdout_fraction) + " leave an empty train or held-out split");
    std::vector<int64_t> order((size_t)n);
    std::iota(order.begin(), order.end(), 0);
    Rng(seed).shuffle(order);
    const int dim = s.dim, n_ff = s.n_ff;
    auto take = [&](int64_t begin, int64_t count, PredictorSamples* out) {
        out->dim = dim, out->n_ff = n_ff;
        out->x.resize((size_t)(count * dim));
        out->fired.resize((size_t)(count * n_ff));
        for (int64_t j = 0; j < count; j++) {
            const int64_t src = order[(size_t)(begin + j)];
            std::copy_n(&s.x[(size_t)(src * dim)], dim, &out->x[(size_t)(j * dim)]);
            std::copy_n(&s.fired[(size_t)(src * n_ff)], n_ff, &out->fired[(size_t)(j * n_ff)]);
        }
    };
    if (train) take(0, n_train, train);
    if (holdout) take(n_train, n_hold, holdout);
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
    check_shapes("predictor_evaluate", p.dim, p.n_ff, s);
    Forward f(p, std::min(n, kEvalChunk));
    Counts c;
    for (int64_t s0 = 0; s0 < n; s0 += kEvalChunk) {
        const int64_t m = std::min(kEvalChunk, n - s0);
        f.run(p, s.x.data() + s0 * p.dim, m, pool);
        count(f.scores.data(), s.fired.data() + s0 * p.n_ff, m * p.n_ff, p.threshold, c);
    }
    return metrics_from(c, n, p.n_ff);
}

PredictorMetrics predictor_evaluate(const PredictorWeights& p, const PredictorSamples& s, ThreadPool& pool) {
    const int64_t n = predictor_samples_count(s);
    check_shapes("predictor_evaluate", p.dim, p.n_ff, s);
    PredictorScratch scratch;
    predictor_scratch_init(p, 1, scratch);
    std::vector<float> scores((size_t)p.n_ff);
    Counts c;
    for (int64_t j = 0; j < n; j++) {
        predictor_scores(p, s.x.data() + j * p.dim, 1, scores.data(), scratch, pool);
        count(scores.data(), s.fired.data() + j * p.n_ff, p.n_ff, p.threshold, c);
    }
    return metrics_from(c, n, p.n_ff);
}

PredictorTrainResult predictor_train(const PredictorSamples& s, const PredictorTrainArgs& a, ThreadPool& pool) {
    check_args(a);
    predictor_samples_count(s);
    const int dim = s.dim, n_ff = s.n_ff, rank = a.rank;
    check_blocks("predictor_train", a.weight_type, dim, rank);
    PredictorSamples train, hold;
    predictor_split(s, a.holdout_fraction, a.seed, &train, &hold);
    const int64_t n_train = (int64_t)(train.x.size() / (size_t)dim);
    Rng rng(a.seed ^ kTrainStream);

    // He initialisation for fc1 (feeds a ReLU), 1/sqrt(rank) for fc2; the bias starts at the firing rate's logit.
    PredictorTrainResult r;
    Predictor& p = r.predictor;
    p.dim = dim, p.rank = rank, p.n_ff = n_ff;
    init_normal_rows(p.fc1, rank, dim, std::sqrt(2.0 / dim), a.seed, 1, pool);
    init_normal_rows(p.fc2, n_ff, rank, 1.0 / std::sqrt((double)rank), a.seed, 2, pool);
    const int64_t n_fired = std::count(train.fired.begin(), train.fired.end(), 1);
    const double rate = std::min(std::max((double)n_fired / ((double)n_train * n_ff), 1e-4), 1.0 - 1e-4);
    const float bias = (float)std::log(rate / (1.0 - rate));
    PredictorTrainArgs fa = a;
    fa.lr = predictor_step_size(a.lr, dim);
    if (a.gpu) {
#if defined(EMBER_CUDA)
        const Rng before = rng;  // the GPU run draws every epoch's order up front
        try {
            r.final_loss =
                predictor_fit_gpu(train, fa, [&](std::vector<int64_t>& ids) { rng.shuffle(ids); }, bias, p);
        } catch (const GpuTrainingOutOfMemory& e) {
            // Too little VRAM left (a model that fills it, say): the same training on the CPU, from the same draws.
            static std::atomic<bool> warned{false};
            if (!warned.exchange(true))
                std::fprintf(stderr, "warning: %s; predictors that do not fit train on the CPU\n", e.what());
            rng = before;
            r.final_loss = fit(train, fa, rng, bias, p, pool);
        }
#else
        throw Error("predictor_train: training on the GPU needs a build with CUDA");
#endif
    } else {
        r.final_loss = fit(train, fa, rng, bias, p, pool);
    }

    // Pack in the run type; from here on the float weights are the packed values, so that the profile stores
    // exactly what was measured. Threshold: the largest reaching recall_target on the held-out split, scored
    // through predictor_scores one token at a time as decode runs it.
    PredictorWeights w = predictor_pack(p, a.weight_type);
    const size_t row1 = dtype_row_bytes(w.type, dim), row2 = dtype_row_bytes(w.type, rank);
    for (int k = 0; k < rank; k++) dequantize_row(w.type, w.fc1.data() + k * row1, &p.fc1[(size_t)k * dim], dim);
    for (int i = 0; i < n_ff; i++) dequantize_row(w.type, w.fc2.data() + i * row2, &p.fc2[(size_t)i * rank], rank);
    const int64_t n_hold = (int64_t)(hold.x.size() / (size_t)dim);
    std::vector<float> scores((size_t)(n_hold * n_ff)), positives;
    PredictorScratch scratch;
    predictor_scratch_init(w, 1, scratch);
    for (int64_t j = 0; j < n_hold; j++)
        predictor_scores(w, &hold.x[(size_t)(j * dim)], 1, &scores[(size_t)(j * n_ff)], scratch, pool);
    for (size_t j = 0; j < scores.size(); j++)
        if (hold.fired[j]) positives.push_back(scores[j]);
    p.threshold = w.threshold = predictor_choose_threshold(std::move(positives), a.recall_target);
    Counts c;
    count(scores.data(), hold.fired.data(), n_hold * n_ff, p.threshold, c);
    r.holdout = metrics_from(c, n_hold, n_ff);
    r.predictor_bytes = w.bytes();
    return r;
}

float predictor_step_size(float lr, int dim) { return dim > 256 ? lr * (256.0f / (float)dim) : lr; }

std::vector<int> predictor_rank_ladder(int dim, int n_ff) {
    if (dim <= 0 || n_ff <= 0)
        throw Error("predictor_rank_ladder: dim and n_ff must be positive, found dim=" + std::to_string(dim) +
                    " n_ff=" + std::to_string(n_ff));
    const int cap = std::min({1024, dim / 2, n_ff / 2});
    std::vector<int> ranks{32};
    while (ranks.back() * 2 <= cap) ranks.push_back(ranks.back() * 2);
    return ranks;
}

double predictor_expected_bytes(size_t predictor_bytes, const PredictorMetrics& m, double ffn_bytes) {
    return (double)predictor_bytes + (1.0 - m.predicted_sparsity) * ffn_bytes;
}

PredictorRankResult predictor_train_auto(const PredictorSamples& s, const PredictorTrainArgs& a,
                                         const PredictorRankSearch& search, ThreadPool& pool) {
    predictor_samples_count(s);
    if (!(search.ffn_bytes > 0.0) || !std::isfinite(search.ffn_bytes))
        throw Error("predictor_train_auto: ffn_bytes must be positive, found " + std::to_string(search.ffn_bytes));
    const std::vector<int> ranks = search.ranks.empty() ? predictor_rank_ladder(s.dim, s.n_ff) : search.ranks;
    for (size_t k = 0; k < ranks.size(); k++)
        if (ranks[k] <= 0 || (k > 0 && ranks[k] <= ranks[k - 1]))
            throw Error("predictor_train_auto: candidate ranks must be positive and ascending, found " +
                        std::to_string(ranks[k]) + " at position " + std::to_string(k));
    PredictorRankResult out;
    out.stop_reason = "no larger candidate";
    double best = std::numeric_limits<double>::infinity();
    for (int rank : ranks) {
        if (!out.trials.empty()) {
            // Even a predictor of this rank that skipped every silent neuron could not beat the best.
            const double floor = (double)packed_bytes(a.weight_type, s.dim, rank, s.n_ff) +
                                 (1.0 - out.trials.back().holdout.true_sparsity) * search.ffn_bytes;
            if (floor >= best) {
                out.stop_reason = "larger ranks cannot beat it even with exact predictions";
                break;
            }
        }
        PredictorTrainArgs ak = a;
        ak.rank = rank;
        const auto t0 = std::chrono::steady_clock::now();
        PredictorTrainResult r = predictor_train(s, ak, pool);
        PredictorRankTrial t;
        t.rank = rank;
        t.holdout = r.holdout;
        t.threshold = r.predictor.threshold;
        t.predictor_bytes = r.predictor_bytes;
        t.expected_bytes = predictor_expected_bytes(r.predictor_bytes, r.holdout, search.ffn_bytes);
        t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        out.trials.push_back(t);
        if (search.on_trial) search.on_trial(t);
        if (t.expected_bytes < best) {
            best = t.expected_bytes;
            out.best = std::move(r);
            out.best_trial = (int)out.trials.size() - 1;
        } else {
            out.stop_reason = "cost rose";
            break;
        }
    }
    return out;
}

}  // namespace ember
