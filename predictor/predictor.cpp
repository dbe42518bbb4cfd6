#include "predictor/predictor.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "engine/error.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/matmul.h"
#include "kernels-cpu/quant.h"

namespace ember {

const char* predictor_hidden_name(PredictorHidden h) {
    return h == PredictorHidden::PREDICTOR_HIDDEN_LINEAR ? "linear" : "relu";
}

void predictor_validate(const Predictor& p) {
    if (p.dim <= 0 || p.rank <= 0 || p.n_ff <= 0)
        throw Error("predictor: dim, rank and n_ff must be positive, found dim=" + std::to_string(p.dim) +
                    " rank=" + std::to_string(p.rank) + " n_ff=" + std::to_string(p.n_ff));
    const size_t want1 = (size_t)p.rank * (size_t)p.dim, want2 = (size_t)p.n_ff * (size_t)p.rank;
    if (p.fc1.size() != want1)
        throw Error("predictor: fc1 has " + std::to_string(p.fc1.size()) + " floats, expected rank*dim = " +
                    std::to_string(want1));
    if (p.fc2.size() != want2)
        throw Error("predictor: fc2 has " + std::to_string(p.fc2.size()) + " floats, expected n_ff*rank = " +
                    std::to_string(want2));
}

void predictor_run(const Predictor& p, const float* x, float* scores, float* hidden, ThreadPool& pool) {
    constexpr DType wt = DType::DTYPE_F32;
    // F32 weights take F32 activations (dot_vec_type(F32) == F32), for which dot_prepare_vec is a plain copy:
    // x and hidden are already in prepared form, so no extra scratch is needed.
    matvec(wt, p.fc1.data(), x, hidden, p.rank, p.dim, pool);       // hidden (rank) = fc1 · x
    if (p.hidden == PredictorHidden::PREDICTOR_HIDDEN_RELU)
        for (int k = 0; k < p.rank; k++) hidden[k] = hidden[k] > 0.0f ? hidden[k] : 0.0f;
    matvec(wt, p.fc2.data(), hidden, scores, p.n_ff, p.rank, pool);  // scores (n_ff) = fc2 · hidden
}

PredictorWeights predictor_pack(const Predictor& p, DType type) {
    predictor_validate(p);
    if (type != DType::DTYPE_F32 && type != DType::DTYPE_F16 && type != DType::DTYPE_Q8_0)
        throw Error(std::string("predictor: weight type ") + dtype_name(type) +
                    " is not supported (expected F32, F16 or Q8_0)");
    const int64_t block = dtype_block_elems(type);
    if (p.dim % block != 0 || p.rank % block != 0)
        throw Error(std::string("predictor: weight type ") + dtype_name(type) + " needs dim and rank to be multiples of " +
                    std::to_string(block) + ", found dim=" + std::to_string(p.dim) + " rank=" + std::to_string(p.rank));
    PredictorWeights w;
    w.type = type;
    w.dim = p.dim;
    w.rank = p.rank;
    w.n_ff = p.n_ff;
    w.hidden = p.hidden;
    w.threshold = p.threshold;
    const size_t row1 = dtype_row_bytes(type, p.dim), row2 = dtype_row_bytes(type, p.rank);
    w.fc1.resize(row1 * (size_t)p.rank);
    w.fc2.resize(row2 * (size_t)p.n_ff);
    for (int k = 0; k < p.rank; k++) quantize_row(type, p.fc1.data() + (size_t)k * p.dim, w.fc1.data() + k * row1, p.dim);
    for (int i = 0; i < p.n_ff; i++)
        quantize_row(type, p.fc2.data() + (size_t)i * p.rank, w.fc2.data() + i * row2, p.rank);
    return w;
}

void predictor_scratch_init(const std::vector<const PredictorWeights*>& ps, int n_tokens, PredictorScratch& s) {
    size_t hidden = 0, xq = 0;
    int64_t gemm = 0;
    for (const PredictorWeights* p : ps) {
        hidden = std::max(hidden, (size_t)n_tokens * p->rank);
        xq = std::max(xq, dot_vec_bytes(p->type, std::max(p->dim, p->rank)));
        if (n_tokens > 1)
            gemm = std::max({gemm, matmul_scratch_floats(p->rank, p->dim), matmul_scratch_floats(p->n_ff, p->rank)});
    }
    s.hidden.assign(hidden, 0.0f);
    s.xq.assign(xq, 0);
    s.gemm.assign((size_t)gemm, 0.0f);
}

void predictor_scratch_init(const PredictorWeights& p, int n_tokens, PredictorScratch& s) {
    predictor_scratch_init(std::vector<const PredictorWeights*>{&p}, n_tokens, s);
}

void predictor_scores(const PredictorWeights& p, const float* x, int n_tokens, float* scores, PredictorScratch& s,
                      ThreadPool& pool) {
    float* hidden = s.hidden.data();
    if (n_tokens == 1) {
        dot_prepare_vec(p.type, x, s.xq.data(), p.dim);
        matvec(p.type, p.fc1.data(), s.xq.data(), hidden, p.rank, p.dim, pool);  // hidden (rank) = fc1 · x
    } else {
        matmul(p.type, p.fc1.data(), x, hidden, n_tokens, p.rank, p.dim, s.gemm.data(), pool);
    }
    const int64_t n_hidden = (int64_t)n_tokens * p.rank;
    if (p.hidden == PredictorHidden::PREDICTOR_HIDDEN_RELU)
        for (int64_t k = 0; k < n_hidden; k++) hidden[k] = hidden[k] > 0.0f ? hidden[k] : 0.0f;
    if (n_tokens == 1) {
        dot_prepare_vec(p.type, hidden, s.xq.data(), p.rank);
        matvec(p.type, p.fc2.data(), s.xq.data(), scores, p.n_ff, p.rank, pool);  // scores (n_ff) = fc2 · hidden
    } else {
        matmul(p.type, p.fc2.data(), hidden, scores, n_tokens, p.n_ff, p.rank, s.gemm.data(), pool);
    }
}

namespace {

// Appends every i in [i0, i1) with scores[i] > threshold to out; returns how many. Branch-free: every index is
// written at the end of the list and kept only when it scores above the threshold (a branch per neuron mispredicts
// on about one neuron in five), so out needs room for i1 - i0 entries.
int append_above(const float* scores, int i0, int i1, float threshold, int32_t* out) {
    int k = 0;
    for (int i = i0; i < i1; i++) {
        out[k] = (int32_t)i;
        k += scores[i] > threshold;
    }
    return k;
}

constexpr int kActiveMinChunk = 1024;  // scores per work item, at least
constexpr int kActiveMaxChunks = 64;

// append_above over [0, n) on the pool: chunk c writes its list into its own stretch of active, from c * chunk
// (active has room for n); then the chunks' lists move down, in order, to follow one another. Small lists (or one
// thread) run on the caller.
int active_over_pool(const float* scores, int n, float threshold, int32_t* active, ThreadPool& pool) {
    if (pool.size() == 1 || n < 2 * kActiveMinChunk) return append_above(scores, 0, n, threshold, active);
    const int chunk = std::max(kActiveMinChunk, (n + kActiveMaxChunks - 1) / kActiveMaxChunks);
    const int n_chunks = (n + chunk - 1) / chunk;
    int counts[kActiveMaxChunks];
    pool.parallel_for(n_chunks, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; c++) {
            const int i0 = (int)c * chunk;
            counts[c] = append_above(scores, i0, std::min(n, i0 + chunk), threshold, active + i0);
        }
    });
    int k = counts[0];
    for (int c = 1; c < n_chunks; c++) {
        std::memmove(active + k, active + (size_t)c * chunk, (size_t)counts[c] * sizeof(int32_t));
        k += counts[c];
    }
    return k;
}

}  // namespace

int predictor_active(const float* scores, int n_ff, float threshold, int32_t* active) {
    return append_above(scores, 0, n_ff, threshold, active);
}

int predictor_active(const float* scores, int n_ff, float threshold, int32_t* active, ThreadPool& pool) {
    return active_over_pool(scores, n_ff, threshold, active, pool);
}

int predictor_active_bits(const uint32_t* bits, const int32_t* ids, int n, int32_t* active) {
    int k = 0;
    for (int w = 0; w * 32 < n; w++) {
        uint32_t m = bits[w];
        if ((w + 1) * 32 > n) m &= (1u << (n - w * 32)) - 1u;  // n - 32 w < 32 here
        for (; m != 0; m &= m - 1) active[k++] = ids[w * 32 + __builtin_ctz(m)];
    }
    return k;
}

}  // namespace ember
