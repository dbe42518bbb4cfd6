#include "models/llama.h"

#include <cmath>
#include <cstring>
#include <initializer_list>
#include <map>
#include <utility>

#include "kernels-cpu/activation.h"
#include "kernels-cpu/attention.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/matmul.h"
#include "kernels-cpu/norm.h"
#include "kernels-cpu/quant.h"
#include "kernels-cpu/rope.h"
#include "models/llama-sparse.h"

namespace ember {

namespace {

std::string shape_str(const GGUFTensorInfo& t) {
    std::string s = "{";
    for (uint32_t d = 0; d < t.n_dims; d++) s += (d ? ", " : "") + std::to_string(t.ne[d]);
    return s + "}";
}

const GGUFTensorInfo& find_required(const GGUFFile& f, const std::string& name) {
    const GGUFTensorInfo* t = f.find_tensor(name);
    if (!t) throw Error(f.path() + ": missing tensor '" + name + "'");
    return *t;
}

void check_dtype(const GGUFFile& f, const GGUFTensorInfo& t) {
    if (!dtype_is_supported(t.type))
        throw Error(f.path() + ": tensor '" + t.name + "': type " + gguf_ggml_type_name(t.type) +
                    " is not supported (expected F32, F16, BF16, Q8_0 or Q4_0)");
}

// A 2-D weight of ne = {n_cols, n_rows}, used in place from the mapping.
Weight bind_matrix(const GGUFFile& f, const std::string& name, int64_t n_rows, int64_t n_cols) {
    const GGUFTensorInfo& t = find_required(f, name);
    check_dtype(f, t);
    if (t.n_dims != 2 || t.ne[0] != n_cols || t.ne[1] != n_rows)
        throw Error(f.path() + ": tensor '" + name + "': expected shape {" + std::to_string(n_cols) + ", " +
                    std::to_string(n_rows) + "}, found " + shape_str(t));
    Weight w;
    w.data = t.data;
    w.type = (DType)t.type;
    w.n_rows = n_rows;
    w.n_cols = n_cols;
    return w;
}

// A 1-D tensor (norm weights) converted to float.
std::vector<float> load_vector(const GGUFFile& f, const std::string& name, int64_t n) {
    const GGUFTensorInfo& t = find_required(f, name);
    check_dtype(f, t);
    if (t.n_dims != 1 || t.ne[0] != n)
        throw Error(f.path() + ": tensor '" + name + "': expected shape {" + std::to_string(n) + "}, found " +
                    shape_str(t));
    std::vector<float> v(n);
    dequantize_row((DType)t.type, t.data, v.data(), n);
    for (int64_t i = 0; i < n; i++)
        if (!std::isfinite(v[i]))
            throw Error(f.path() + ": tensor '" + name + "': element " + std::to_string(i) + " is not finite");
    return v;
}

// Hyper-parameter in range [lo, hi], named by its key in errors.
int read_dim(const GGUFFile& f, const std::string& key, int64_t lo, int64_t hi) {
    const uint32_t v = f.get_u32(key);
    if ((int64_t)v < lo || (int64_t)v > hi)
        throw Error(f.path() + ": key '" + key + "': value " + std::to_string(v) + " outside [" +
                    std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return (int)v;
}

}  // namespace

LlamaModel llama_load(const GGUFFile& f, ModelInfo& info, int n_vocab_tokenizer) {
    const std::string a = info.arch + ".";
    info.n_ctx_train = read_dim(f, a + "context_length", 1, 1 << 24);
    info.dim = read_dim(f, a + "embedding_length", 1, 1 << 16);
    info.n_layers = read_dim(f, a + "block_count", 1, 1024);
    info.n_ff = read_dim(f, a + "feed_forward_length", 1, 1 << 20);
    info.n_heads = read_dim(f, a + "attention.head_count", 1, info.dim);
    info.n_kv_heads = f.has(a + "attention.head_count_kv") ? read_dim(f, a + "attention.head_count_kv", 1, info.n_heads)
                                                          : info.n_heads;
    if (info.dim % info.n_heads != 0)
        throw Error(f.path() + ": embedding_length " + std::to_string(info.dim) + " is not a multiple of head_count " +
                    std::to_string(info.n_heads));
    if (info.n_heads % info.n_kv_heads != 0)
        throw Error(f.path() + ": head_count " + std::to_string(info.n_heads) + " is not a multiple of head_count_kv " +
                    std::to_string(info.n_kv_heads));
    info.head_dim = info.dim / info.n_heads;
    info.kv_dim = info.n_kv_heads * info.head_dim;
    info.n_rot = f.has(a + "rope.dimension_count") ? read_dim(f, a + "rope.dimension_count", 2, info.head_dim)
                                                   : info.head_dim;
    if (info.n_rot % 2 != 0)
        throw Error(f.path() + ": key '" + a + "rope.dimension_count': expected an even value, found " +
                    std::to_string(info.n_rot));
    info.rope_neox = false;  // the llama family rotates adjacent pairs
    info.rope_freq_base = f.get_f32(a + "rope.freq_base", 10000.0f);
    const std::string scaling = f.get_string(a + "rope.scaling.type", "none");
    if (scaling == "linear") {
        const float factor = f.get_f32(a + "rope.scaling.factor", 1.0f);
        if (!(factor > 0.0f)) throw Error(f.path() + ": key '" + a + "rope.scaling.factor' must be > 0");
        info.rope_freq_scale = 1.0f / factor;
    } else if (scaling != "none") {
        throw Error(f.path() + ": key '" + a + "rope.scaling.type': '" + scaling +
                    "' is not supported (expected none or linear)");
    }
    info.norm_eps = f.get_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
    if (!(info.rope_freq_base > 0.0f) || !(info.norm_eps >= 0.0f))
        throw Error(f.path() + ": rope.freq_base must be > 0 and layer_norm_rms_epsilon >= 0");
    // ReLU-fied models (ReluLLaMA, ProSparse, our own) record their FFN activation in ember's own key.
    info.ffn_act = f.get_string("ember.ffn_activation", "silu");
    if (info.ffn_act != "silu" && info.ffn_act != "relu")
        throw Error(f.path() + ": key 'ember.ffn_activation': '" + info.ffn_act + "' (expected silu or relu)");

    LlamaModel m;
    const GGUFTensorInfo& embd = find_required(f, "token_embd.weight");
    info.n_vocab = (int)embd.ne[1];
    if (embd.n_dims == 2 && n_vocab_tokenizer > 0 && embd.ne[1] != n_vocab_tokenizer)
        throw Error(f.path() + ": tensor 'token_embd.weight': " + std::to_string(embd.ne[1]) +
                    " rows, but the tokenizer has " + std::to_string(n_vocab_tokenizer) + " tokens");
    m.tok_embd = bind_matrix(f, "token_embd.weight", embd.ne[1], info.dim);
    m.output_norm = load_vector(f, "output_norm.weight", info.dim);
    m.output = f.find_tensor("output.weight") ? bind_matrix(f, "output.weight", info.n_vocab, info.dim) : m.tok_embd;

    const int64_t q_dim = (int64_t)info.n_heads * info.head_dim;
    m.layers.resize(info.n_layers);
    for (int l = 0; l < info.n_layers; l++) {
        const std::string p = "blk." + std::to_string(l) + ".";
        LlamaLayer& L = m.layers[l];
        L.attn_norm = load_vector(f, p + "attn_norm.weight", info.dim);
        L.wq = bind_matrix(f, p + "attn_q.weight", q_dim, info.dim);
        L.wk = bind_matrix(f, p + "attn_k.weight", info.kv_dim, info.dim);
        L.wv = bind_matrix(f, p + "attn_v.weight", info.kv_dim, info.dim);
        L.wo = bind_matrix(f, p + "attn_output.weight", info.dim, q_dim);
        L.ffn_norm = load_vector(f, p + "ffn_norm.weight", info.dim);
        L.w_gate = bind_matrix(f, p + "ffn_gate.weight", info.n_ff, info.dim);
        L.w_up = bind_matrix(f, p + "ffn_up.weight", info.n_ff, info.dim);
        L.w_down = bind_matrix(f, p + "ffn_down.weight", info.dim, info.n_ff);
    }

    // Sizes for display and for the bandwidth bound: a decode step reads every layer weight, the output
    // matrix and one embedding row.
    std::map<std::string, uint64_t> bytes_by_type;
    info.n_params = 0;
    info.weight_bytes = 0;
    for (const GGUFTensorInfo& t : f.tensors()) {
        info.n_params += (uint64_t)t.n_elements();
        info.weight_bytes += t.n_bytes;
        bytes_by_type[gguf_ggml_type_name(t.type)] += t.n_bytes;
    }
    uint64_t per_token = m.output.bytes() + dtype_row_bytes(m.tok_embd.type, info.dim), ffn = 0;
    for (const LlamaLayer& L : m.layers) {
        per_token += L.wq.bytes() + L.wk.bytes() + L.wv.bytes() + L.wo.bytes();
        ffn += L.w_gate.bytes() + L.w_up.bytes() + L.w_down.bytes();
    }
    info.weight_bytes_per_token = per_token + ffn;
    info.ffn_bytes_per_token = ffn;
    uint64_t best = 0;
    for (const auto& [name, bytes] : bytes_by_type)
        if (bytes > best) best = bytes, info.weight_type = name;
    return m;
}

void llama_write_hparams(GGUFWriter& w, const ModelInfo& info) {
    w.set_u32("llama.context_length", (uint32_t)info.n_ctx_train);
    w.set_u32("llama.embedding_length", (uint32_t)info.dim);
    w.set_u32("llama.block_count", (uint32_t)info.n_layers);
    w.set_u32("llama.feed_forward_length", (uint32_t)info.n_ff);
    w.set_u32("llama.attention.head_count", (uint32_t)info.n_heads);
    w.set_u32("llama.attention.head_count_kv", (uint32_t)info.n_kv_heads);
    w.set_u32("llama.rope.dimension_count", (uint32_t)info.n_rot);
    w.set_f32("llama.rope.freq_base", info.rope_freq_base);
    w.set_f32("llama.attention.layer_norm_rms_epsilon", info.norm_eps);
    if (info.n_vocab > 0) w.set_u32("llama.vocab_size", (uint32_t)info.n_vocab);
    if (info.ffn_act == "relu") w.set_string("ember.ffn_activation", "relu");
}

void llama_state_init(const ModelInfo& info, const LlamaModel& m, int n_ctx, int n_batch, int /*n_threads*/,
                      LlamaState& st, DType k_type, DType v_type) {
    for (DType t : {k_type, v_type})
        if (!kv_cache_type_supported(t))
            throw Error(std::string("KV cache type ") + dtype_name(t) + ": expected f32 or f16");
    st.n_ctx = n_ctx;
    st.n_batch = n_batch;
    const size_t kv = (size_t)info.n_layers * n_ctx * info.kv_dim;
    const int64_t q_dim = (int64_t)info.n_heads * info.head_dim;
    st.k_type = k_type;
    st.v_type = v_type;
    st.k_cache.assign(kv * dtype_row_bytes(k_type, 1), 0);
    st.v_cache.assign(kv * dtype_row_bytes(v_type, 1), 0);
    st.x.assign((size_t)n_batch * info.dim, 0.0f);
    st.xn.assign((size_t)n_batch * info.dim, 0.0f);
    st.q.assign((size_t)n_batch * q_dim, 0.0f);
    st.k.assign((size_t)n_batch * info.kv_dim, 0.0f);
    st.v.assign((size_t)n_batch * info.kv_dim, 0.0f);
    st.attn.assign((size_t)n_batch * q_dim, 0.0f);
    st.gate.assign((size_t)n_batch * info.n_ff, 0.0f);
    st.up.assign((size_t)n_batch * info.n_ff, 0.0f);
    // The largest batched-matmul scratch and activation-row conversion over all weights.
    int64_t gemm = 0;
    size_t vec = 0;
    auto account = [&](const Weight& w) {
        gemm = std::max(gemm, matmul_scratch_floats(w.n_rows, w.n_cols));
        vec = std::max(vec, dot_vec_bytes(w.type, w.n_cols));
    };
    account(m.output);
    for (const LlamaLayer& L : m.layers)
        for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) account(*w);
    if (n_batch > 1) st.gemm_scratch.assign((size_t)gemm, 0.0f);
    st.vec_scratch.assign(vec, 0);
    st.logits.assign((size_t)info.n_vocab, 0.0f);
    llama_sparse_state_init(info, m, n_batch, st);
}

namespace {

// y (n, w.n_rows) = x (n, w.n_cols) * w^T: a matrix-vector product for one token, a GEMM for a batch.
void linear(const Weight& w, const float* x, float* y, int n, LlamaState& st, ThreadPool& pool) {
    if (n == 1) {
        dot_prepare_vec(w.type, x, st.vec_scratch.data(), w.n_cols);
        matvec(w.type, w.data, st.vec_scratch.data(), y, w.n_rows, w.n_cols, pool);
    } else {
        matmul(w.type, w.data, x, y, n, w.n_rows, w.n_cols, st.gemm_scratch.data(), pool);
    }
}

// linear() of one input through several weights: for one token with weights of one type and width, a single
// conversion of x and one matvecs pass (bit for bit the separate products), else one linear() each.
void linear_many(std::initializer_list<std::pair<const Weight*, float*>> outs, const float* x, int n, LlamaState& st,
                 ThreadPool& pool) {
    const Weight& w0 = *outs.begin()->first;
    bool one_pass = n == 1 && outs.size() <= 4;
    for (const auto& o : outs) one_pass = one_pass && o.first->type == w0.type && o.first->n_cols == w0.n_cols;
    if (!one_pass) {
        for (const auto& o : outs) linear(*o.first, x, o.second, n, st, pool);
        return;
    }
    MatvecOut mo[4];
    int k = 0;
    for (const auto& o : outs) mo[k++] = {o.first->data, o.second, o.first->n_rows};
    dot_prepare_vec(w0.type, x, st.vec_scratch.data(), w0.n_cols);
    matvecs(w0.type, mo, k, st.vec_scratch.data(), w0.n_cols, pool);
}

// f(i) for every token i in [0, n), tokens spread over the pool (for a batch; one token runs on the caller).
template <typename F>
void for_each_token(int n, ThreadPool& pool, F&& f) {
    pool.parallel_for(n, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; i++) f((int)i);
    });
}

// f(begin, end) over [0, count) in chunks of at least 16K elements, spread over the pool: elementwise steps on
// whole batches (n x n_ff) would otherwise run single-threaded between the parallel matmuls.
template <typename F>
void for_each_chunk(int64_t count, ThreadPool& pool, F&& f) {
    pool.parallel_for(count, 1 << 14, [&](int64_t begin, int64_t end) { f(begin, end); });
}

// x += y over count elements.
void add_inplace(float* x, const float* y, int64_t count, ThreadPool& pool) {
    for_each_chunk(count, pool, [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; j++) x[j] += y[j];
    });
}

}  // namespace

RopeParams llama_rope_params(const ModelInfo& info) {
    RopeParams rp;
    rp.head_dim = info.head_dim;
    rp.n_rot = info.n_rot;
    rp.freq_base = info.rope_freq_base;
    rp.freq_scale = info.rope_freq_scale;
    rp.neox = info.rope_neox;
    return rp;
}

void llama_embed(const ModelInfo& info, const LlamaModel& m, LlamaState& st, const int32_t* tokens, int n) {
    const int dim = info.dim;
    const size_t embd_row = dtype_row_bytes(m.tok_embd.type, dim);
    for (int i = 0; i < n; i++)
        dequantize_row(m.tok_embd.type, (const uint8_t*)m.tok_embd.data + embd_row * tokens[i],
                       st.x.data() + (int64_t)i * dim, dim);
}

void llama_attention_block(const ModelInfo& info, const LlamaModel& m, int l, LlamaState& st, int n,
                           ThreadPool& pool) {
    const int dim = info.dim, kv_dim = info.kv_dim;
    const int64_t q_dim = (int64_t)info.n_heads * info.head_dim;
    const RopeParams rp = llama_rope_params(info);
    const LlamaLayer& L = m.layers[l];
    float* x = st.x.data();
    float* xn = st.xn.data();
    // Layer l's K and V caches of token i's sequence, (n_ctx, kv_dim) each, and position pos's row in them.
    auto k_cache_of = [&](int i, int pos = 0) {
        LlamaState& s = *st.batch_kv[i];
        return s.k_cache.data() + ((size_t)l * s.n_ctx + pos) * dtype_row_bytes(s.k_type, kv_dim);
    };
    auto v_cache_of = [&](int i, int pos = 0) {
        LlamaState& s = *st.batch_kv[i];
        return s.v_cache.data() + ((size_t)l * s.n_ctx + pos) * dtype_row_bytes(s.v_type, kv_dim);
    };

    // xn = RMSNorm(x); q, k, v projections; RoPE on q and k; append k, v to the cache.
    for_each_token(n, pool, [&](int i) {
        rmsnorm(xn + (int64_t)i * dim, x + (int64_t)i * dim, L.attn_norm.data(), dim, info.norm_eps);
    });
    linear_many({{&L.wq, st.q.data()}, {&L.wk, st.k.data()}, {&L.wv, st.v.data()}}, xn, n, st, pool);
    for_each_token(n, pool, [&](int i) {
        float* k = st.k.data() + (int64_t)i * kv_dim;
        const int pos = st.batch_pos[i];
        rope(st.q.data() + i * q_dim, info.n_heads, pos, rp);
        rope(k, info.n_kv_heads, pos, rp);
        quantize_row(st.batch_kv[i]->k_type, k, k_cache_of(i, pos), kv_dim);
        quantize_row(st.batch_kv[i]->v_type, st.v.data() + (int64_t)i * kv_dim, v_cache_of(i, pos),
                     kv_dim);
    });

    // Causal attention: token i sees positions 0 .. pos_i of its own sequence; the query heads that share a KV head
    // read its keys and values together (attention_tokens).
    std::vector<AttentionArgs>& args = st.attn_args;
    args.resize(n);
    for (int i = 0; i < n; i++) {
        AttentionArgs& a = args[i];
        a.q = st.q.data() + i * q_dim;
        a.k_cache = k_cache_of(i);
        a.v_cache = v_cache_of(i);
        a.k_type = st.batch_kv[i]->k_type;
        a.v_type = st.batch_kv[i]->v_type;
        a.out = st.attn.data() + i * q_dim;
        a.n_kv = st.batch_pos[i] + 1;
        a.n_heads = info.n_heads;
        a.n_kv_heads = info.n_kv_heads;
        a.head_dim = info.head_dim;
        a.kv_stride = kv_dim;
        a.scale = 1.0f / std::sqrt((float)info.head_dim);
    }
    attention_tokens(args.data(), n, st.attn_partials, pool);
    // Output projection and residual: x += attn * wo^T (xn is free again, used as the product).
    linear(L.wo, st.attn.data(), xn, n, st, pool);
    add_inplace(x, xn, (int64_t)n * dim, pool);
}

void llama_ffn_block(const ModelInfo& info, const LlamaModel& m, int l, LlamaState& st, int n, ThreadPool& pool) {
    const int dim = info.dim, n_ff = info.n_ff;
    const LlamaLayer& L = m.layers[l];
    float* x = st.x.data();
    float* xn = st.xn.data();
    // x += w_down (act(w_gate xn) * (w_up xn)), act = SiLU or ReLU.
    for_each_token(n, pool, [&](int i) {
        rmsnorm(xn + (int64_t)i * dim, x + (int64_t)i * dim, L.ffn_norm.data(), dim, info.norm_eps);
    });
    if (!m.sparse.empty() && n == 1) {
        // Decode with a profile: predictor, then only the predicted-active neurons' rows (models/llama-sparse.h).
        float* out = st.attn.data();  // free until the next layer's attention
        llama_sparse_ffn_token(info, m, l, st, out, pool);
        add_inplace(x, out, dim, pool);
        return;
    }
    bool scores_ready = false;
    if (!m.sparse.empty() && !st.ffn_observer) {
        // A batch with a profile: the predicted rows through the sparse operators when the predictor marks few
        // enough neurons, the sum written over xn (each chunk's rows are converted before they are overwritten).
        if (llama_sparse_ffn_batch(info, m, l, st, n, xn, pool)) {
            add_inplace(x, xn, (int64_t)n * dim, pool);
            return;
        }
        scores_ready = true;  // the predictor's scores for the mask below
    }
    linear_many({{&L.w_gate, st.gate.data()}, {&L.w_up, st.up.data()}}, xn, n, st, pool);
    const bool relu = info.ffn_act == "relu";
    for_each_chunk((int64_t)n * n_ff, pool, [&](int64_t b, int64_t e) {
        float* g = st.gate.data() + b;
        const float* u = st.up.data() + b;
        if (relu)
            reglu(g, g, u, e - b);
        else
            swiglu(g, g, u, e - b);
    });
    // A batch with a profile: every neuron computed by the GEMMs, then the predictor's mask per token.
    if (!m.sparse.empty()) llama_sparse_mask_batch(info, m, l, xn, st.gate.data(), n, st, pool, scores_ready);
    if (st.ffn_observer) st.ffn_observer(l, xn, dim, st.gate.data(), n, n_ff);  // xn: the FFN input still
    linear(L.w_down, st.gate.data(), xn, n, st, pool);
    add_inplace(x, xn, (int64_t)n * dim, pool);
}

void llama_output(const ModelInfo& info, const LlamaModel& m, LlamaState& st, ThreadPool& pool) {
    const int dim = info.dim;
    const int n_out = (int)st.out_rows.size();
    if (n_out == 0) return;
    float* xn = st.xn.data();
    for_each_token(n_out, pool, [&](int i) {
        rmsnorm(xn + (int64_t)i * dim, st.x.data() + (int64_t)st.out_rows[i] * dim, m.output_norm.data(), dim,
                info.norm_eps);
    });
    const size_t need = (size_t)n_out * info.n_vocab;
    if (st.logits.size() < need) st.logits.resize(need);
    linear(m.output, xn, st.logits.data(), n_out, st, pool);
}

namespace {

// The forward pass over st.batch_kv / st.batch_pos (set by the callers below); logits of st.out_rows go to
// st.logits, one row each, in order.
void forward_batch(const ModelInfo& info, const LlamaModel& m, LlamaState& st, const int32_t* tokens, int n,
                   ThreadPool& pool) {
    llama_embed(info, m, st, tokens, n);
    for (int l = 0; l < info.n_layers; l++) {
        llama_attention_block(info, m, l, st, n, pool);
        llama_ffn_block(info, m, l, st, n, pool);
    }
    llama_output(info, m, st, pool);
}

}  // namespace

void llama_set_positions(LlamaState& st, int n, int pos0, LlamaLogits logits) {
    st.batch_kv.assign(n, &st);
    st.batch_pos.resize(n);
    for (int i = 0; i < n; i++) st.batch_pos[i] = pos0 + i;
    st.out_rows.clear();
    if (logits == LlamaLogits::LLAMA_LOGITS_ALL)
        for (int i = 0; i < n; i++) st.out_rows.push_back(i);
    else if (logits == LlamaLogits::LLAMA_LOGITS_LAST)
        st.out_rows.push_back(n - 1);
}

void llama_forward(const ModelInfo& info, const LlamaModel& m, LlamaState& st, const int32_t* tokens, int n,
                   int pos0, LlamaLogits logits, ThreadPool& pool) {
    llama_set_positions(st, n, pos0, logits);
    forward_batch(info, m, st, tokens, n, pool);
}

void llama_forward_seqs(const ModelInfo& info, const LlamaModel& m, LlamaState& scratch,
                        const std::vector<LlamaSeq>& seqs, ThreadPool& pool) {
    std::vector<int32_t>& tokens = scratch.batch_tokens;
    tokens.clear();
    scratch.batch_kv.clear();
    scratch.batch_pos.clear();
    scratch.out_rows.clear();
    for (const LlamaSeq& s : seqs) {
        for (int i = 0; i < s.n; i++) {
            tokens.push_back(s.tokens[i]);
            scratch.batch_kv.push_back(s.kv);
            scratch.batch_pos.push_back(s.pos0 + i);
        }
        scratch.out_rows.push_back((int)tokens.size() - 1);
    }
    forward_batch(info, m, scratch, tokens.data(), (int)tokens.size(), pool);
    const size_t n_vocab = (size_t)info.n_vocab;
    for (size_t j = 0; j < seqs.size(); j++) {
        LlamaState& kv = *seqs[j].kv;
        if (&kv == &scratch) continue;  // copied below, after every other row is out
        if (kv.logits.size() < n_vocab) kv.logits.resize(n_vocab);
        std::memcpy(kv.logits.data(), scratch.logits.data() + j * n_vocab, n_vocab * sizeof(float));
    }
    for (size_t j = 0; j < seqs.size(); j++)
        if (seqs[j].kv == &scratch && j > 0)
            std::memmove(scratch.logits.data(), scratch.logits.data() + j * n_vocab, n_vocab * sizeof(float));
}

}  // namespace ember
