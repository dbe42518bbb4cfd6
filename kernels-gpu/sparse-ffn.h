// Neuron-aware sparse FFN on the GPU; mirrors kernels-cpu/sparse-ffn.h (same formulas, same compact h, same
// transposed down matrix) with device pointers. The active list and its count k are device memory, written by
// gpu::predictor_active: the kernels read k there, so no host round trip sits between predictor and FFN.
// As on the CPU, indices are not checked (hot path): each must lie in [0, rows of the weights).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels-cpu/sparse-ffn.h"

namespace ember::gpu {

// h (*k) = act(gate_{active[j]} . x) * (up_{active[j]} . x), compact: h[j] belongs to neuron active[j].
// xq: x (w.dim) prepared by gpu::dot_prepare_vec(w.wt, ...). k_max: a host bound on *k (n_ff) that sizes the grid.
// One warp per neuron; with ReLU a neuron whose gate is not positive gets h = 0 and its up row is never read.
void sparse_gate_up(const SparseGateUpWeights& w, const void* xq, const int32_t* active, const int32_t* k,
                    int64_t k_max, float* h, cudaStream_t stream);

// Scratch floats of sparse_down for rows of dim elements.
size_t sparse_down_scratch_floats(int64_t dim);

// y (dim) = sum_j h[j] * row active[j] of w_down_t (n_ff, dim) of type wt, for j < *k; y is overwritten (zeros for
// *k == 0). Rows with h[j] == 0 are not read. Blocks cover (a slice of y, a fixed part of the list); each adds its
// part's rows and writes the partial slice into `scratch`, and a second kernel adds the partials in a fixed order: no
// atomics, so the result is the same on every run. Rows of 32-element units (dim % 32 == 0) whose length in bytes is
// a multiple of 16 go through shared memory a slice at a time (64 quant blocks, or 1024 F32/F16/BF16 elements), a
// unit of it per thread; other rows are read by the threads directly, 8 elements (or 1) each.
void sparse_down(DType wt, const void* w_down_t, const float* h, const int32_t* active, const int32_t* k, float* y,
                 int64_t dim, float* scratch, cudaStream_t stream);

}  // namespace ember::gpu
