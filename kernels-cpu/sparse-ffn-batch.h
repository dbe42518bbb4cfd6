// The neuron-aware sparse FFN for a batch of tokens (a prompt), each token with its own predicted active set.
// The batch's sets are merged into one list of neurons, each with a mask of the tokens that use it; every listed
// neuron's gate, up and down rows are read from memory once for the whole batch, and each token's dot products and
// axpys run on the rows while they sit in cache. So a batch reads the union of its tokens' rows, not the sum, and
// computes only what each token's own set asks for:
//   h[j][t] = act(gate_{rows[j]} . x_t) * (up_{rows[j]} . x_t)   if token t uses neuron rows[j], else 0
//   y[t]    = sum_j h[j][t] * W_down[:, rows[j]]
// Per token this is exactly sparse_gate_up then sparse_down over that token's own list (sparse-ffn.h): same dot
// products, same FMAs in the same order, so the same bits.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels-cpu/sparse-ffn.h"
#include "kernels-cpu/thread-pool.h"

namespace ember {

// Tokens per batch: one bit each in a neuron's mask.
constexpr int kSparseBatchMaxTokens = 32;

// rows (k): neuron indices in [0, n_ff), ascending for the best memory order (not checked: the caller validates, as
// for sparse_gate_up); masks (k): bit t set when token t (< n) uses rows[j]. A neuron with an empty mask costs a
// look at its mask only.
// xq: the n tokens prepared by dot_prepare_vec(w.wt, ...), token t at byte offset t * xq_stride.
// h (k * n): h[j * n + t] as above (0 where the mask has no bit t; with ReLU also where the gate is not positive,
// and then the up row is not read for that token). w_down_t (n_ff, w.dim) of type down_t: the transposed down
// projection (sparse_down_transpose). y (n * w.dim): token t's sum at y + t * w.dim, overwritten.
// 1 <= n <= kSparseBatchMaxTokens; throws std::invalid_argument otherwise. The bits do not depend on the pool size.
// Work: gate/up split across the pool by blocks of listed neurons, each row against all the tokens that use it at
// once (dot_row_xs where the SIMD table has it: the row's vectors loaded once, one accumulator pair per token). Down
// split by slices of y: per slice, each token adds the segments of the neurons it fired in list order, in
// sparse_down's groups of its list (a group after the first into a partial, then added, as sparse_down); a segment
// comes from DRAM for the first token and from cache for the others.
// 16-core Xeon, 7B F16 layer, 10 % of the neurons per token, 32 tokens (97 % of the rows in the union): 0.21 ms per
// token, against 0.34 ms for sparse_ffn on one token (ember-sparse-ffn-bench --ops fused,batch).
void sparse_ffn_batch(const SparseGateUpWeights& w, const void* xq, size_t xq_stride, int n, DType down_t,
                      const void* w_down_t, const int32_t* rows, const uint32_t* masks, int64_t k, float* h, float* y,
                      ThreadPool& pool);

// The scalar reference: per token, its list through sparse_gate_up_ref and sparse_down_ref.
void sparse_ffn_batch_ref(const SparseGateUpWeights& w, const void* xq, size_t xq_stride, int n, DType down_t,
                          const void* w_down_t, const int32_t* rows, const uint32_t* masks, int64_t k, float* h,
                          float* y);

}  // namespace ember
