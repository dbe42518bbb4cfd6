#include "kernels-cpu/sparse-ffn.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels-cpu/dot-isa.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/quant.h"

namespace ember {

namespace {

constexpr int64_t kNeuronGrain = 16;  // gate/up: neurons per smallest work item (2 rows of dim each)
constexpr int64_t kTile = 64;         // down: y elements per work item; a multiple of every block size (32)
constexpr int64_t kTileGrain = 4;     // down: at least 256 y elements per chunk
constexpr int64_t kSub = 1024;        // down: elements of one weight row dequantized at once (4 KiB on the stack)

inline float act_apply(SparseAct act, float g) {
    // Same formulas as activation.cpp's reglu / swiglu.
    if (act == SparseAct::SPARSE_ACT_RELU) return g > 0.0f ? g : 0.0f;
    return g / (1.0f + std::exp(-g));
}

inline void axpy(float* y, float a, const float* x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

}  // namespace

void sparse_gate_up(const SparseGateUpWeights& w, const void* xq, const int32_t* active, int64_t k, float* h,
                    ThreadPool& pool) {
    if (k <= 0) return;
    const DotKernels* kern = dot_kernels();
    const size_t row_bytes = dtype_row_bytes(w.wt, w.dim);
    const auto* gate = static_cast<const uint8_t*>(w.w_gate);
    const auto* up = static_cast<const uint8_t*>(w.w_up);
    pool.parallel_for(k, kNeuronGrain, [&](int64_t j0, int64_t j1) {
        for (int64_t j = j0; j < j1; j++) {
            const size_t off = (size_t)active[j] * row_bytes;
            const float g = kern->dot_row(w.wt, gate + off, xq, w.dim);
            // ReLU: a neuron the predictor wrongly marked active contributes exactly 0; skip its up row.
            if (w.act == SparseAct::SPARSE_ACT_RELU && !(g > 0.0f)) {
                h[j] = 0.0f;
                continue;
            }
            h[j] = act_apply(w.act, g) * kern->dot_row(w.wt, up + off, xq, w.dim);
        }
    });
}

void sparse_down(DType wt, const void* w_down_t, const float* h, const int32_t* active, int64_t k, float* y,
                 int64_t dim, ThreadPool& pool) {
    const DotKernels* kern = dot_kernels();
    const size_t row_bytes = dtype_row_bytes(wt, dim);
    const auto* base = static_cast<const uint8_t*>(w_down_t);
    const int64_t n_tiles = (dim + kTile - 1) / kTile;
    pool.parallel_for(n_tiles, kTileGrain, [&](int64_t t0, int64_t t1) {
        const int64_t c1 = std::min(t1 * kTile, dim);
        float buf[kSub];
        for (int64_t s0 = t0 * kTile; s0 < c1; s0 += kSub) {
            // Sub-slice [s0, s0 + len) of y stays in L1 while every active neuron's segment streams through it.
            const int64_t len = std::min(kSub, c1 - s0);
            float* ys = y + s0;
            std::fill(ys, ys + len, 0.0f);
            const size_t off = dtype_row_bytes(wt, s0);  // s0 is a multiple of kTile, hence of the block size
            for (int64_t j = 0; j < k; j++) {
                if (h[j] == 0.0f) continue;  // ReLU zeros: their rows are never read
                const uint8_t* row = base + (size_t)active[j] * row_bytes + off;
                if (wt == DType::DTYPE_F32) {
                    axpy(ys, h[j], reinterpret_cast<const float*>(row), len);
                } else {
                    kern->dequantize_row(wt, row, buf, len);
                    axpy(ys, h[j], buf, len);
                }
            }
        }
    });
}

void sparse_down_transpose(DType src_t, const void* w_down, DType dst_t, void* w_down_t, int64_t dim, int64_t n_ff) {
    if (n_ff % dtype_block_elems(src_t) != 0 || dim % dtype_block_elems(dst_t) != 0) {
        throw std::invalid_argument("sparse_down_transpose: w_down (" + std::to_string(dim) + ", " +
                                    std::to_string(n_ff) + ") " + dtype_name(src_t) + " -> (" +
                                    std::to_string(n_ff) + ", " + std::to_string(dim) + ") " + dtype_name(dst_t) +
                                    ": expected n_ff a multiple of " + std::to_string(dtype_block_elems(src_t)) +
                                    " and dim a multiple of " + std::to_string(dtype_block_elems(dst_t)));
    }
    // Load-time only: the whole matrix as float, then one quantize_row per neuron.
    std::vector<float> full((size_t)dim * n_ff);
    const size_t src_row = dtype_row_bytes(src_t, n_ff);
    for (int64_t r = 0; r < dim; r++) {
        dequantize_row(src_t, static_cast<const uint8_t*>(w_down) + r * src_row, full.data() + r * n_ff, n_ff);
    }
    std::vector<float> col(dim);
    const size_t dst_row = dtype_row_bytes(dst_t, dim);
    for (int64_t i = 0; i < n_ff; i++) {
        for (int64_t r = 0; r < dim; r++) col[r] = full[(size_t)r * n_ff + i];
        quantize_row(dst_t, col.data(), static_cast<uint8_t*>(w_down_t) + i * dst_row, dim);
    }
}

void sparse_ffn_check_active(const int32_t* active, int64_t k, int64_t n_ff) {
    for (int64_t j = 0; j < k; j++) {
        if (active[j] < 0 || active[j] >= n_ff) {
            throw std::out_of_range("sparse FFN active list: entry " + std::to_string(j) + " is neuron " +
                                    std::to_string(active[j]) + ", expected an index in [0, " +
                                    std::to_string(n_ff) + ")");
        }
    }
}

void sparse_gate_up_ref(const SparseGateUpWeights& w, const void* xq, const int32_t* active, int64_t k, float* h) {
    const size_t row_bytes = dtype_row_bytes(w.wt, w.dim);
    for (int64_t j = 0; j < k; j++) {
        const size_t off = (size_t)active[j] * row_bytes;
        const float g = dot_row_ref(w.wt, static_cast<const uint8_t*>(w.w_gate) + off, xq, w.dim);
        const float u = dot_row_ref(w.wt, static_cast<const uint8_t*>(w.w_up) + off, xq, w.dim);
        h[j] = act_apply(w.act, g) * u;
    }
}

void sparse_down_ref(DType wt, const void* w_down_t, const float* h, const int32_t* active, int64_t k, float* y,
                     int64_t dim) {
    const size_t row_bytes = dtype_row_bytes(wt, dim);
    std::vector<double> acc(dim, 0.0);
    std::vector<float> row(dim);
    for (int64_t j = 0; j < k; j++) {
        dequantize_row(wt, static_cast<const uint8_t*>(w_down_t) + (size_t)active[j] * row_bytes, row.data(), dim);
        for (int64_t c = 0; c < dim; c++) acc[c] += (double)h[j] * row[c];
    }
    for (int64_t c = 0; c < dim; c++) y[c] = (float)acc[c];
}

}  // namespace ember
