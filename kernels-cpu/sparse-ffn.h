// Neuron-aware sparse FFN operators (PowerInfer, Song et al. 2023, section 5; Deja Vu, Liu et al. 2023):
// with a predicted active set of FFN neurons, only their gate/up rows and their down columns are read.
//   h_j = act(gate_{a_j} . x) * (up_{a_j} . x)     for j in [0, k), a = active list   (sparse_gate_up)
//   y   = sum_j h_j * W_down[:, a_j]                                                  (sparse_down)
// With the true active set of a ReLU model (the neurons where relu(gate . x) > 0) this equals the dense FFN.
//
// Active list: k int32 neuron indices, each in [0, n_ff). Indices are NOT checked here (hot path); the caller
// (the predictor, or the engine after it) validates them once, e.g. with sparse_ffn_check_active. An index out of
// range reads outside the weights (undefined behaviour). Duplicates are allowed (the neuron then counts twice in y),
// and any order works, though ascending order reads memory more sequentially.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels-cpu/dtype.h"
#include "kernels-cpu/thread-pool.h"

namespace ember {

enum class SparseAct {
    SPARSE_ACT_RELU,  // ReGLU: ReluLLaMA, ProSparse, ReluFalcon
    SPARSE_ACT_SILU,  // SwiGLU: for thresholded sparsity (CATS, TEAL) on SiLU models
};

// act(g) for one gate value: the formulas of activation.cpp's reglu / swiglu.
inline float sparse_act(SparseAct act, float g) {
    if (act == SparseAct::SPARSE_ACT_RELU) return g > 0.0f ? g : 0.0f;
    return g / (1.0f + std::exp(-g));
}

// The gate and up projections, stored as ggml stores them.
struct SparseGateUpWeights {
    DType wt;            // type of both matrices (F32, F16, BF16, Q8_0, Q4_0)
    const void* w_gate;  // (n_ff, dim) row-major, row i = neuron i
    const void* w_up;    // (n_ff, dim) row-major, row i = neuron i
    int64_t dim;         // row length; a multiple of dtype_block_elems(wt)
    SparseAct act;
};

// h (k) = act(gate_{active[j]} . x) * (up_{active[j]} . x): a COMPACT vector, h[j] belongs to neuron active[j].
// Compact rather than dense n_ff: sparse_down walks the same list, and no n_ff-wide zero fill is paid per token.
// xq: x (dim) prepared by dot_prepare_vec(w.wt, ...), as for matvec. Neurons are split across the pool in blocks
// claimed dynamically, so the work balances whatever the list looks like. k == 0 writes nothing.
// Each worker reads the gate rows of up to 64 listed neurons, then the up rows of those that need them, every dot
// product prefetching the row about 16 KiB further on in that order (the rows are scattered: without this, each
// row start waits on DRAM latency).
void sparse_gate_up(const SparseGateUpWeights& w, const void* xq, const int32_t* active, int64_t k, float* h,
                    ThreadPool& pool);

// y (dim) = sum_j h[j] * row active[j] of w_down_t, the TRANSPOSED down projection (see sparse_down_transpose):
// w_down_t is (n_ff, dim) row-major of type wt (F32, F16, BF16, Q8_0, Q4_0), row i = neuron i's down column, so each
// active neuron is one contiguous axpy. y is overwritten (k == 0 gives zeros). dim: a multiple of
// dtype_block_elems(wt). scratch: sparse_down_scratch_floats(k, dim) floats (none below 512 neurons).
// The list is cut into sparse_down_groups(k) groups of consecutive entries (1 to 4, at least 256 neurons each) and y
// into slices, one work item per (slice, group), about one item per thread: each item adds its group's neurons into
// its slice of a partial y, and the slice's last group to finish sums the partials in group order. Each element thus
// sums every group's neurons in list order, then the groups in order: the bits depend on k, never on the thread
// count. A thread reads one segment of each of its group's rows: without groups, 16 threads cut a 7B Q4_0 row into
// segments of 144 bytes and the call ran at 30-38 GB/s (0.068-0.081 ms at 10 % active on a 16-core Xeon); in four
// groups the segments are four times longer: 0.043-0.047 ms.
// The inner loop is the dispatch table's axpy_rows (dot-isa.h): rows dequantized on the fly, 8 neurons per pass
// over the slice, the next neurons' segments prefetched. Close to sparse_down_ref: one FMA per neuron and element.
void sparse_down(DType wt, const void* w_down_t, const float* h, const int32_t* active, int64_t k, float* y,
                 int64_t dim, float* scratch, ThreadPool& pool);

// Groups sparse_down cuts a list of k neurons into (1 to kSparseDownMaxGroups), the list position where group g of
// n_groups begins (g == n_groups: k), and the scratch floats it needs for them (rows of dim).
constexpr int64_t kSparseDownMaxGroups = 4;
int64_t sparse_down_groups(int64_t k);
inline int64_t sparse_down_group_begin(int64_t k, int64_t n_groups, int64_t g) { return k * g / n_groups; }
size_t sparse_down_scratch_floats(int64_t k, int64_t dim);

// Scratch floats sparse_ffn needs for up to k active neurons and rows of dim elements: one partial y per chunk.
size_t sparse_ffn_scratch_floats(int64_t k, int64_t dim);

// The whole sparse FFN of one token: sparse_gate_up then sparse_down in one pass over the pool, then a short
// reduction pass. h (k) = exactly what sparse_gate_up writes (same code, same bits); y (w.dim) = sum_j h[j] * row
// active[j] of w_down_t (n_ff, w.dim) of type down_t, as sparse_down (to float rounding, not bit for bit).
// scratch: sparse_ffn_scratch_floats(k, w.dim) floats. k == 0 gives y = 0 and writes no h.
// The list is cut into chunks of a fixed 32 neurons, handed out whole: a worker computes a chunk's h, then adds the
// fired neurons' whole down rows into that chunk's partial sum (each row read contiguously in full, while its h is
// fresh; sparse_down instead reads a short segment of every row per y slice); the second pass sums the partials in
// chunk order. The chunking does not depend on the thread count, so neither do the bits.
// The engine takes it on 8 or more threads (models/llama-sparse.h, llama_sparse_rows): on a 16-core Xeon with rows
// from DRAM it reads F16 at 107-123 GB/s against the two calls' 101-112, and at 15 % active takes 0.155 against
// 0.197 ms for Q4_0 and 0.181 against 0.246 ms for Q8_0 (equal at 10 %); on 2 cores the two calls measured as fast
// or faster (the partial sums cost more than the longer reads save).
void sparse_ffn(const SparseGateUpWeights& w, const void* xq, DType down_t, const void* w_down_t,
                const int32_t* active, int64_t k, float* h, float* y, float* scratch, ThreadPool& pool);

// Makes w_down_t (n_ff, dim) of type dst_t from ggml's w_down (dim, n_ff) of type src_t (row r = output r).
// Done once at load. Exact when src_t == dst_t for F32/F16/BF16 and when dst_t holds src_t exactly (F16/BF16->F32);
// quantizing to Q8_0/Q4_0 rounds as quantize_row does (from a quantized source it quantizes the dequantized values
// again, which adds a second rounding: prefer an F32/F16 source). n_ff must be a multiple of src_t's block size,
// dim of dst_t's; throws std::invalid_argument otherwise.
// The output is the same as dequantizing the whole matrix, gathering each neuron's column and quantize_row on it,
// for any thread count; the work goes in tiles of 32 neurons (whole cache lines of each source row) split across
// the pool. Same-type F32/F16/BF16 copies the stored bits (NaNs made quiet, as the float round trip does).
void sparse_down_transpose(DType src_t, const void* w_down, DType dst_t, void* w_down_t, int64_t dim, int64_t n_ff,
                           ThreadPool& pool);

// Throws std::out_of_range naming the first index outside [0, n_ff) and its position. For load/predictor checks.
void sparse_ffn_check_active(const int32_t* active, int64_t k, int64_t n_ff);

// Plain scalar references (dot_row_ref per row; double accumulation in sparse_down_ref).
void sparse_gate_up_ref(const SparseGateUpWeights& w, const void* xq, const int32_t* active, int64_t k, float* h);
void sparse_down_ref(DType wt, const void* w_down_t, const float* h, const int32_t* active, int64_t k, float* y,
                     int64_t dim);

}  // namespace ember
