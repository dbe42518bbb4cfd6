// The neuron-aware sparse FFN of the llama family (PowerInfer, SOSP'24, section 5; Deja Vu, ICML'23): per layer, the
// activation predictor marks the neurons likely to fire, and only their gate/up rows and down columns are read.
//   decode (one token):  active = predictor(xn); h = gate/up rows of active; y = their down columns (llama_sparse_rows)
//   batch  (a prompt):   the predictor over the batch (GEMMs); when it marks fewer than half the batch's neurons,
//                        chunks of 32 tokens through sparse_ffn_batch (each predicted row read once per chunk, the
//                        decode step's dot products per token: llama_sparse_ffn_batch); otherwise
//                        h = act(W_gate xn) * (W_up xn) for all neurons (GEMMs), then masked to the predicted set.
//                        Either way a prompt gets the same neurons a decode step would.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels-cpu/sparse-ffn.h"
#include "models/llama.h"
#include "predictor/predictor.h"
#include "predictor/profile.h"

namespace ember {

// One layer's sparse FFN data, made at load from the profile.
struct LlamaSparseFfn {
    PredictorWeights predictor;     // fc1 (rank, dim), fc2 (n_ff, rank) in the profile's weight type
    Weight w_down_t;                // (n_ff, dim): row i = neuron i's column of w_down, same type; data in storage
    std::vector<uint8_t> storage;   // w_down_t's bytes
};

// Checks the profile against the model (layers, dim, n_ff, activation) and builds every layer's sparse FFN: packs
// the predictors and transposes each down projection (threads from pool). Throws ember::Error naming the profile
// file and what disagrees.
void llama_sparse_init(const ModelInfo& info, LlamaModel& m, const ModelProfile& profile,
                       const std::string& profile_path, ThreadPool& pool);

// Sizes the sparse FFN's scratch in st for n_batch tokens (no-op for a dense model).
void llama_sparse_state_init(const ModelInfo& info, const LlamaModel& m, int n_batch, LlamaState& st);

// Gate and up matrices of one type (host or device pointers, as the kernel that takes them runs) as the sparse
// gate/up kernels take them; the activation is the model's.
SparseGateUpWeights llama_gate_up_weights(const ModelInfo& info, DType type, const void* gate, const void* up);
// Layer L's gate and up matrices (in host memory).
SparseGateUpWeights llama_gate_up_weights(const ModelInfo& info, const LlamaLayer& L);

// One token's active rows: h (k) = act(gate . xn) * (up . xn) of the listed neurons (xq: xn prepared by
// dot_prepare_vec for the gate's type) and y (dim) = the sum of their down columns, w_down_t's rows. On a pool of 8
// or more threads float rows, and quantized rows whose predicted gate rows reach 3 MiB, go through sparse_ffn, one
// pass over the pool that reads each down row whole (16-core Xeon, rows from DRAM: 7B F16 CPU-only decode 7 %
// faster, hybrid 4-8 %; 7B Q4_0 CPU-only 14 %); the rest take sparse_gate_up then sparse_down, as fast or faster
// there (every type on 2 cores; a 70B Q4_0 hybrid's small cold share).
// Uses st.ffn_scratch.
void llama_sparse_rows(const LlamaSparseFfn& S, const SparseGateUpWeights& gw, const void* xq, const int32_t* active,
                       int k, float* h, float* y, LlamaState& st, ThreadPool& pool);
// Whether llama_sparse_rows takes the one pass for k listed rows of type t and dim elements on n_threads threads.
bool llama_sparse_rows_one_pass(DType t, int64_t dim, int64_t k, int n_threads);

// One token: x_out (dim) = sparse FFN of st.xn's first row through layer l's predictor and sparse operators.
// Counts neurons and bytes read in st.sparse_stats. When st.ffn_observer is set it sees h scattered to n_ff.
void llama_sparse_ffn_token(const ModelInfo& info, const LlamaModel& m, int l, LlamaState& st, float* x_out,
                            ThreadPool& pool);

// The union of a batch's predicted neurons: for n (<= 32) tokens whose scores for n_ids neurons are rows of
// scores (token t's at scores + t * ld), rows[k] = ids[c] (or c when ids is null) and masks[k] its tokens (bit t:
// scores[t * ld + c] > threshold), for the k columns some token marks, ascending; returns k. rows and masks hold
// n_ids entries.
int64_t llama_batch_rows(const float* scores, int64_t ld, int n, const int32_t* ids, int64_t n_ids, float threshold,
                         int32_t* rows, uint32_t* masks, ThreadPool& pool);

// A batch of n tokens of layer l through the sparse operators, given the FFN input in st.xn: y (n, dim) = the
// sparse FFN of every token, its predicted set through sparse_ffn_batch in chunks of 32 tokens (y may be st.xn:
// each chunk's rows are converted before they are overwritten). The predictor's scores land in st.pred_scores
// first; when it marks half the batch's neurons or more, returns false having done nothing else (the dense GEMMs with
// llama_sparse_mask_batch, given scores_ready, are faster then). Counts neurons in st.sparse_stats.
bool llama_sparse_ffn_batch(const ModelInfo& info, const LlamaModel& m, int l, LlamaState& st, int n, float* y,
                            ThreadPool& pool);

// A batch of n tokens: zeroes h (n, n_ff) where layer l's predictor marks a neuron inactive for that token, given the
// FFN input xn (n, dim); scores_ready: st.pred_scores already holds the predictor's scores for xn. Counts neurons in
// st.sparse_stats.
void llama_sparse_mask_batch(const ModelInfo& info, const LlamaModel& m, int l, const float* xn, float* h, int n,
                             LlamaState& st, ThreadPool& pool, bool scores_ready = false);

}  // namespace ember
