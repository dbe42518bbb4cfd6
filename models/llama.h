// The llama architecture family (Llama 1/2/3, Mistral, ReluLLaMA / ProSparse with a ReGLU FFN):
// hyper-parameters, tensor names and shapes, and the layer recipe.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ember.h"
#include "kernels-cpu/attention.h"
#include "kernels-cpu/dtype.h"
#include "kernels-cpu/rope.h"
#include "kernels-cpu/thread-pool.h"
#include "predictor/predictor.h"

namespace ember {

// A weight matrix in place in the mapped file: (n_rows, n_cols), row r = output r, n_cols contiguous elements.
struct Weight {
    const void* data = nullptr;
    DType type = DType::DTYPE_F32;
    int64_t n_rows = 0;
    int64_t n_cols = 0;
    size_t bytes() const { return dtype_row_bytes(type, n_cols) * (size_t)n_rows; }
};

struct LlamaLayer {
    std::vector<float> attn_norm;  // (dim)
    Weight wq;                     // (n_heads * head_dim, dim)
    Weight wk;                     // (kv_dim, dim)
    Weight wv;                     // (kv_dim, dim)
    Weight wo;                     // (dim, n_heads * head_dim)
    std::vector<float> ffn_norm;   // (dim)
    Weight w_gate;                 // (n_ff, dim), row i = neuron i
    Weight w_up;                   // (n_ff, dim), row i = neuron i
    Weight w_down;                 // (dim, n_ff), column i = neuron i
};

struct LlamaSparseFfn;  // models/llama-sparse.h

struct LlamaModel {
    Weight tok_embd;                 // (n_vocab, dim), row t = token t
    std::vector<float> output_norm;  // (dim)
    Weight output;                   // (n_vocab, dim); the embedding table when tied
    std::vector<LlamaLayer> layers;
    std::vector<LlamaSparseFfn> sparse;  // (n_layers) with a profile: the sparse FFN per layer; empty = dense
    LlamaModel();
    ~LlamaModel();
    LlamaModel(LlamaModel&&) noexcept;
    LlamaModel& operator=(LlamaModel&&) noexcept;
};

// Reads hyper-parameters from `file` into info (info.arch already set) and binds and validates every tensor:
// name, dtype, shape. Throws ember::Error naming the file, tensor or key, expected vs found.
LlamaModel llama_load(const GGUFFile& file, ModelInfo& info, int n_vocab_tokenizer);

// Writes the hyper-parameter keys llama_load reads (llama.*; ember.ffn_activation when it is "relu"), for tools that
// write llama models. Reads dim, n_layers, n_ff, n_heads, n_kv_heads, n_rot, n_ctx_train, n_vocab (when > 0),
// rope_freq_base, norm_eps and ffn_act.
void llama_write_hparams(GGUFWriter& w, const ModelInfo& info);

// Scratch and KV cache of one session (engine/session.cpp owns it); sizes fixed at creation.
struct LlamaState {
    int n_ctx = 0;
    int n_batch = 0;
    DType k_type = DType::DTYPE_F32;  // the KV cache's element types: F32 or F16
    DType v_type = DType::DTYPE_F32;
    std::vector<uint8_t> k_cache;  // (n_layers, n_ctx, kv_dim) of k_type
    std::vector<uint8_t> v_cache;  // (n_layers, n_ctx, kv_dim) of v_type
    std::vector<float> x;        // (n_batch, dim) residual stream
    std::vector<float> xn;       // (n_batch, dim) normed input of the current block
    std::vector<float> q;        // (n_batch, n_heads * head_dim)
    std::vector<float> k;        // (n_batch, kv_dim)
    std::vector<float> v;        // (n_batch, kv_dim)
    std::vector<float> attn;     // (n_batch, n_heads * head_dim)
    std::vector<AttentionArgs> attn_args;  // (n_batch) each token's attention (attention_tokens)
    std::vector<float> attn_partials;      // a decode step's attention split by ranges of positions: per token, every
                                           // head's partials (kernels-cpu/attention.h), grown on first use
    std::vector<float> gate;     // (n_batch, n_ff)
    std::vector<float> up;       // (n_batch, n_ff)
    std::vector<float> gemm_scratch;    // batched matmul's scratch (its dot path's converted activations)
    std::vector<uint8_t> vec_scratch;   // one activation row converted for dot_row
    std::vector<float> logits;          // (n_out, n_vocab)
    FfnObserver ffn_observer;           // optional: sees each layer's FFN activations (profiling, statistics)
    // Per token of the current forward pass: whose KV cache it appends to and at which position (one sequence:
    // this state and pos0 + i; several: see llama_forward_seqs), and which tokens get logits.
    std::vector<int32_t> batch_tokens;  // (n) the sequences' tokens in one row (llama_forward_seqs)
    std::vector<LlamaState*> batch_kv;  // (n)
    std::vector<int> batch_pos;         // (n)
    std::vector<int> out_rows;          // token indices whose logits are computed, ascending
    // Sparse FFN only (models/llama-sparse.h): sized by llama_sparse_state_init.
    PredictorScratch predictor;         // the predictors' scratch
    std::vector<float> pred_scores;     // (n_batch, n_ff) predictor scores
    std::vector<int32_t> active;        // (n_ff) one token's predicted-active neurons, ascending
    std::vector<float> h_active;        // (n_ff) their activations, compact: h_active[j] belongs to active[j]
    std::vector<int64_t> mask_counts;   // (2, n_batch) a batch's predicted and fired neurons per token
    std::vector<float> ffn_scratch;     // sparse_ffn's or sparse_down's partial sums (llama_sparse_rows)
    std::vector<int32_t> batch_rows;    // (n_ff) a batch's union of predicted neurons (llama_sparse_ffn_batch)
    std::vector<uint32_t> batch_masks;  // (n_ff) their token masks
    std::vector<float> batch_h;         // (n_ff, 32) their activations per token
    std::vector<uint8_t> batch_xq;      // (32) the batch's rows converted for dot_row
    SparseFfnStats sparse_stats;
};

void llama_state_init(const ModelInfo& info, const LlamaModel& m, int n_ctx, int n_batch, int n_threads,
                      LlamaState& st, DType k_type = DType::DTYPE_F32, DType v_type = DType::DTYPE_F32);

// Which tokens of a forward pass get logits (the output projection is the largest single matrix).
enum class LlamaLogits { LLAMA_LOGITS_NONE, LLAMA_LOGITS_LAST, LLAMA_LOGITS_ALL };

// Runs n tokens (n <= n_batch) at positions pos0 .. pos0+n-1, appending to the KV cache, and writes to st.logits
// the logits of every token, of the last one, or none.
void llama_forward(const ModelInfo& info, const LlamaModel& m, LlamaState& st, const int32_t* tokens, int n,
                   int pos0, LlamaLogits logits, ThreadPool& pool);

// The forward pass's steps, for executors that run some of them elsewhere (models/llama-gpu.h). They work on st's
// rows 0 .. n-1 with the positions, caches and logit rows llama_set_positions (or llama_forward_seqs) set up.
// llama_forward is: llama_set_positions, llama_embed, per layer llama_attention_block then llama_ffn_block,
// llama_output.
void llama_set_positions(LlamaState& st, int n, int pos0, LlamaLogits logits);  // one sequence: st's own cache
RopeParams llama_rope_params(const ModelInfo& info);  // the model's rotary embedding, for the rope kernels
void llama_embed(const ModelInfo& info, const LlamaModel& m, LlamaState& st, const int32_t* tokens, int n);  // st.x
// st.x += attention of layer l (RMSNorm, q/k/v, RoPE, KV append, causal attention, output projection).
void llama_attention_block(const ModelInfo& info, const LlamaModel& m, int l, LlamaState& st, int n,
                           ThreadPool& pool);
// st.x += FFN of layer l: dense, or with a profile sparse (one token) or dense with the predictor's mask (a batch).
void llama_ffn_block(const ModelInfo& info, const LlamaModel& m, int l, LlamaState& st, int n, ThreadPool& pool);
// st.logits rows = output projection of RMSNorm(st.x) for the rows in st.out_rows.
void llama_output(const ModelInfo& info, const LlamaModel& m, LlamaState& st, ThreadPool& pool);

// One sequence of a multi-sequence forward pass: n tokens appended to kv's cache at positions pos0 .. pos0+n-1.
struct LlamaSeq {
    LlamaState* kv = nullptr;         // the sequence's own state: its KV cache; its logits row goes to kv->logits
    const int32_t* tokens = nullptr;  // (n)
    int n = 0;
    int pos0 = 0;
};

// Several sequences in one pass (continuous batching): the projections and the FFN run on all their tokens
// together, attention per token over its own sequence's cache. `scratch` holds the activations (its n_batch must
// be at least the total token count; its own KV cache is not touched unless it is one of the sequences). Afterwards
// each seq.kv->logits holds the logits of that sequence's last token.
void llama_forward_seqs(const ModelInfo& info, const LlamaModel& m, LlamaState& scratch,
                        const std::vector<LlamaSeq>& seqs, ThreadPool& pool);

}  // namespace ember
