#include "models/llama-sparse.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "engine/error.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/sparse-ffn-batch.h"
#include "kernels-cpu/sparse-ffn.h"

namespace ember {

LlamaModel::LlamaModel() = default;
LlamaModel::~LlamaModel() = default;
LlamaModel::LlamaModel(LlamaModel&&) noexcept = default;
LlamaModel& LlamaModel::operator=(LlamaModel&&) noexcept = default;

void llama_sparse_init(const ModelInfo& info, LlamaModel& m, const ModelProfile& profile,
                       const std::string& profile_path, ThreadPool& pool) {
    const std::string where = profile_path + ": ";
    try {
        profile_check_model(profile, info);
    } catch (const Error& e) {
        throw Error(where + e.what());
    }
    std::vector<LlamaSparseFfn> sparse(info.n_layers);
    for (int l = 0; l < info.n_layers; l++) {
        const LlamaLayer& L = m.layers[l];
        LlamaSparseFfn& S = sparse[l];
        try {
            S.predictor = predictor_pack(profile.layers[l].predictor, profile.weight_type);
        } catch (const Error& e) {
            throw Error(where + "layer " + std::to_string(l) + ": " + e.what());
        }
        // The down projection's columns become rows of the same type: one contiguous read per active neuron.
        S.w_down_t.type = L.w_down.type;
        S.w_down_t.n_rows = info.n_ff;
        S.w_down_t.n_cols = info.dim;
        if (info.n_ff % dtype_block_elems(L.w_down.type) != 0 || info.dim % dtype_block_elems(L.w_down.type) != 0)
            throw Error(where + "blk." + std::to_string(l) + ".ffn_down.weight: type " + dtype_name(L.w_down.type) +
                        " needs dim and n_ff to be multiples of " + std::to_string(dtype_block_elems(L.w_down.type)) +
                        " for the sparse FFN");
        S.storage.resize(S.w_down_t.bytes());
        sparse_down_transpose(L.w_down.type, L.w_down.data, S.w_down_t.type, S.storage.data(), info.dim, info.n_ff,
                              pool);
        S.w_down_t.data = S.storage.data();
    }
    m.sparse = std::move(sparse);
}

void llama_sparse_state_init(const ModelInfo& info, const LlamaModel& m, int n_batch, LlamaState& st) {
    if (m.sparse.empty()) return;
    std::vector<const PredictorWeights*> ps;
    for (const LlamaSparseFfn& S : m.sparse) ps.push_back(&S.predictor);
    predictor_scratch_init(ps, n_batch, st.predictor);
    st.pred_scores.assign((size_t)n_batch * info.n_ff, 0.0f);
    st.active.assign(info.n_ff, 0);
    st.h_active.assign(info.n_ff, 0.0f);
    st.mask_counts.assign((size_t)2 * n_batch, 0);
    const size_t ffn_scratch = sparse_ffn_scratch_floats(info.n_ff, info.dim);
    st.ffn_scratch.assign(std::max(ffn_scratch, sparse_down_scratch_floats(info.n_ff, info.dim)), 0.0f);
    if (n_batch > 1) {
        st.batch_rows.assign(info.n_ff, 0);
        st.batch_masks.assign(info.n_ff, 0);
        st.batch_h.assign((size_t)info.n_ff * kSparseBatchMaxTokens, 0.0f);
        size_t stride = 0;
        for (const LlamaLayer& L : m.layers) stride = std::max(stride, dot_vec_bytes(L.w_gate.type, info.dim));
        st.batch_xq.assign(stride * kSparseBatchMaxTokens, 0);
    }
}

namespace {

// How many i in [0, n) satisfy pred(i), counted over the pool.
template <typename Pred>
int64_t count_where(int64_t n, ThreadPool& pool, const Pred& pred) {
    std::atomic<int64_t> total{0};
    pool.parallel_for(n, 1 << 15, [&](int64_t i0, int64_t i1) {
        int64_t c = 0;
        for (int64_t i = i0; i < i1; i++) c += pred(i);
        total.fetch_add(c, std::memory_order_relaxed);
    });
    return total.load();
}

}  // namespace

int64_t llama_batch_rows(const float* scores, int64_t ld, int n, const int32_t* ids, int64_t n_ids, float threshold,
                         int32_t* rows, uint32_t* masks, ThreadPool& pool) {
    pool.parallel_for(n_ids, 256, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; c++) {
            uint32_t mask = 0;
            for (int t = 0; t < n; t++) mask |= (uint32_t)(scores[t * ld + c] > threshold) << t;
            masks[c] = mask;
        }
    });
    int64_t k = 0;
    for (int64_t c = 0; c < n_ids; c++)  // in place: k <= c
        if (masks[c] != 0) rows[k] = ids ? ids[c] : (int32_t)c, masks[k++] = masks[c];
    return k;
}

bool llama_sparse_ffn_batch(const ModelInfo& info, const LlamaModel& m, int l, LlamaState& st, int n, float* y,
                            ThreadPool& pool) {
    const LlamaSparseFfn& S = m.sparse[l];
    const int dim = info.dim, n_ff = info.n_ff;
    if (st.batch_rows.size() < (size_t)n_ff) throw Error("sparse FFN batch: scratch not sized");
    const float* xn = st.xn.data();
    const float* scores = st.pred_scores.data();
    predictor_scores(S.predictor, xn, n, st.pred_scores.data(), st.predictor, pool);
    const float thr = S.predictor.threshold;
    const int64_t predicted = count_where((int64_t)n * n_ff, pool, [&](int64_t i) { return scores[i] > thr; });
    if (2 * predicted >= (int64_t)n * n_ff) return false;
    const SparseGateUpWeights gw = llama_gate_up_weights(info, m.layers[l]);
    const size_t stride = dot_vec_bytes(gw.wt, dim);
    int64_t fired = 0;
    for (int c0 = 0; c0 < n; c0 += kSparseBatchMaxTokens) {
        const int nt = std::min(kSparseBatchMaxTokens, n - c0);
        const int64_t k = llama_batch_rows(scores + (size_t)c0 * n_ff, n_ff, nt, nullptr, n_ff, thr,
                                           st.batch_rows.data(), st.batch_masks.data(), pool);
        for (int t = 0; t < nt; t++) dot_prepare_vec(gw.wt, xn + (size_t)(c0 + t) * dim, st.batch_xq.data() + t * stride, dim);
        sparse_ffn_batch(gw, st.batch_xq.data(), stride, nt, S.w_down_t.type, S.w_down_t.data, st.batch_rows.data(),
                         st.batch_masks.data(), k, st.batch_h.data(), y + (size_t)c0 * dim, pool);
        const float* h = st.batch_h.data();
        fired += count_where(k * nt, pool, [&](int64_t j) { return h[j] != 0.0f; });
    }
    SparseFfnStats& s = st.sparse_stats;
    if (l == 0) s.tokens += n;
    s.neurons += (uint64_t)n * n_ff;
    s.predicted += (uint64_t)predicted;
    s.fired += (uint64_t)fired;
    return true;
}

// Quantized rows take the one pass only when the predicted gate rows are at least this many bytes: its partial sums
// and reduction cost about as much as the longer reads save at 10 % of a 7B Q4_0 layer (2.4 MiB), it gains 21 % at
// 15 % (3.6 MiB), and a 70B hybrid's cold share (about 1.5 MiB a layer) ran 3-6 % slower with it.
constexpr int64_t kOnePassMinQuantGateBytes = 3 << 20;

bool llama_sparse_rows_one_pass(DType t, int64_t dim, int64_t k, int n_threads) {
    const bool float_rows = t == DType::DTYPE_F32 || t == DType::DTYPE_F16 || t == DType::DTYPE_BF16;
    const bool enough_rows = k * (int64_t)dtype_row_bytes(t, dim) >= kOnePassMinQuantGateBytes;
    return n_threads >= 8 && (float_rows || enough_rows);
}

void llama_sparse_rows(const LlamaSparseFfn& S, const SparseGateUpWeights& gw, const void* xq, const int32_t* active,
                       int k, float* h, float* y, LlamaState& st, ThreadPool& pool) {
    const bool one_pass = llama_sparse_rows_one_pass(gw.wt, gw.dim, k, pool.size());
    const size_t scratch = one_pass ? sparse_ffn_scratch_floats(k, gw.dim) : sparse_down_scratch_floats(k, gw.dim);
    if (st.ffn_scratch.size() < scratch)
        throw Error("sparse FFN: scratch for " + std::to_string(k) + " neurons not sized");
    if (one_pass) {
        sparse_ffn(gw, xq, S.w_down_t.type, S.w_down_t.data, active, k, h, y, st.ffn_scratch.data(), pool);
        return;
    }
    sparse_gate_up(gw, xq, active, k, h, pool);
    sparse_down(S.w_down_t.type, S.w_down_t.data, h, active, k, y, gw.dim, st.ffn_scratch.data(), pool);
}

SparseGateUpWeights llama_gate_up_weights(const ModelInfo& info, DType type, const void* gate, const void* up) {
    SparseGateUpWeights w;
    w.wt = type;
    w.w_gate = gate;
    w.w_up = up;
    w.dim = info.dim;
    w.act = info.ffn_act == "relu" ? SparseAct::SPARSE_ACT_RELU : SparseAct::SPARSE_ACT_SILU;
    return w;
}

SparseGateUpWeights llama_gate_up_weights(const ModelInfo& info, const LlamaLayer& L) {
    return llama_gate_up_weights(info, L.w_gate.type, L.w_gate.data, L.w_up.data);
}

void llama_sparse_ffn_token(const ModelInfo& info, const LlamaModel& m, int l, LlamaState& st, float* x_out,
                            ThreadPool& pool) {
    const LlamaLayer& L = m.layers[l];
    const LlamaSparseFfn& S = m.sparse[l];
    const int dim = info.dim, n_ff = info.n_ff;
    const float* xn = st.xn.data();

    // 1. Predict: scores = fc2 · relu(fc1 · xn); active = neurons scoring above the threshold.
    predictor_scores(S.predictor, xn, 1, st.pred_scores.data(), st.predictor, pool);
    const int k = predictor_active(st.pred_scores.data(), n_ff, S.predictor.threshold, st.active.data(), pool);

    // 2. Gate and up rows of the active neurons only: h_active[j] = act(gate . xn) * (up . xn); then the down
    // columns of the neurons that fired: x_out = sum_j h_active[j] * w_down[:, active[j]].
    const SparseGateUpWeights gw = llama_gate_up_weights(info, L);
    dot_prepare_vec(gw.wt, xn, st.vec_scratch.data(), dim);
    llama_sparse_rows(S, gw, st.vec_scratch.data(), st.active.data(), k, st.h_active.data(), x_out, st, pool);

    // Counters: a ReLU neuron predicted active but silent costs its gate row only (sparse_gate_up skips the rest).
    int64_t fired = 0;
    for (int j = 0; j < k; j++) fired += st.h_active[j] != 0.0f;
    SparseFfnStats& s = st.sparse_stats;
    if (l == 0) {
        s.tokens++;
        s.decode_tokens++;
        s.decode_weight_bytes += info.weight_bytes_per_token - info.ffn_bytes_per_token;
    }
    s.neurons += n_ff;
    s.predicted += k;
    s.fired += fired;
    s.decode_weight_bytes += S.predictor.bytes() + (uint64_t)k * dtype_row_bytes(L.w_gate.type, dim) +
                             (uint64_t)fired * (dtype_row_bytes(L.w_up.type, dim) + dtype_row_bytes(S.w_down_t.type, dim));

    if (st.ffn_observer) {
        float* h = st.gate.data();
        std::fill(h, h + n_ff, 0.0f);
        for (int j = 0; j < k; j++) h[st.active[j]] = st.h_active[j];
        st.ffn_observer(l, xn, dim, h, 1, n_ff);
    }
}

void llama_sparse_mask_batch(const ModelInfo& info, const LlamaModel& m, int l, const float* xn, float* h, int n,
                             LlamaState& st, ThreadPool& pool, bool scores_ready) {
    const LlamaSparseFfn& S = m.sparse[l];
    const int n_ff = info.n_ff;
    if (!scores_ready) predictor_scores(S.predictor, xn, n, st.pred_scores.data(), st.predictor, pool);
    const float thr = S.predictor.threshold;
    int64_t* predicted = st.mask_counts.data();  // (n) per token, then fired (n)
    int64_t* fired = predicted + n;
    pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++) {
            const float* sc = st.pred_scores.data() + i * n_ff;
            float* hi = h + i * n_ff;
            predicted[i] = fired[i] = 0;
            for (int j = 0; j < n_ff; j++) {
                if (sc[j] > thr) {
                    predicted[i]++;
                    fired[i] += hi[j] != 0.0f;
                } else {
                    hi[j] = 0.0f;
                }
            }
        }
    });
    SparseFfnStats& s = st.sparse_stats;
    if (l == 0) s.tokens += n;
    s.neurons += (uint64_t)n * n_ff;
    for (int i = 0; i < n; i++) s.predicted += predicted[i], s.fired += fired[i];
}

}  // namespace ember
