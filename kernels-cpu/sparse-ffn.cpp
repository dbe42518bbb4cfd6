#include "kernels-cpu/sparse-ffn.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels-cpu/dot-isa.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/quant.h"

namespace ember {

namespace {

constexpr int64_t kNeuronGrain = 16;  // gate/up: neurons per smallest work item (2 rows of dim each)
constexpr int64_t kGateBlock = 64;    // gate/up: neurons whose gate rows are read before their up rows
constexpr int64_t kGateLead = 16384;  // gate/up: prefetch distance in bytes of rows (at least one row)
constexpr int64_t kTile = 64;         // down: y elements per work item; a multiple of every block size (32)
constexpr int64_t kTileGrain = 4;     // down: at least 256 y elements per chunk
constexpr int64_t kSub = 4096;        // down: y elements (16 KiB) kept in L1 while the neurons' segments stream
constexpr int64_t kBatch = 512;       // down: neurons per axpy_rows call (row pointers and scales on the stack)
constexpr int64_t kTrTile = 32;       // transpose: neurons per tile; a multiple of every block size
constexpr int64_t kTrRows = 64;       // transpose: source rows per block when copying bits

inline float act_apply(SparseAct act, float g) {
    // Same formulas as activation.cpp's reglu / swiglu.
    if (act == SparseAct::SPARSE_ACT_RELU) return g > 0.0f ? g : 0.0f;
    return g / (1.0f + std::exp(-g));
}

// Neurons [i0, i1) of w_down (dim, n_ff) -> rows i0..i1 of w_down_t (n_ff, dim), as raw elements through fix:
// kTrRows source rows at a time into a small (neuron, row) block, then each output row's part written in one piece
// (scattering single elements over output rows dim elements apart thrashes the cache sets).
template <typename T, typename Fix>
void transpose_bits(const uint8_t* src, uint8_t* dst, int64_t dim, int64_t n_ff, int64_t i0, int64_t i1, Fix fix) {
    T buf[kTrTile * kTrRows];
    for (int64_t b0 = i0; b0 < i1; b0 += kTrTile) {
        const int64_t nb = std::min(kTrTile, i1 - b0);
        for (int64_t r0 = 0; r0 < dim; r0 += kTrRows) {
            const int64_t nr = std::min(kTrRows, dim - r0);
            for (int64_t r = 0; r < nr; r++) {
                const T* s = reinterpret_cast<const T*>(src) + (r0 + r) * n_ff + b0;
                for (int64_t i = 0; i < nb; i++) buf[i * kTrRows + r] = s[i];
            }
            for (int64_t i = 0; i < nb; i++) {
                T* b = buf + i * kTrRows;
                for (int64_t r = 0; r < nr; r++) b[r] = fix(b[r]);  // contiguous: vectorizes
                std::memcpy(dst + ((b0 + i) * dim + r0) * sizeof(T), b, nr * sizeof(T));
            }
        }
    }
}

}  // namespace

void sparse_gate_up(const SparseGateUpWeights& w, const void* xq, const int32_t* active, int64_t k, float* h,
                    ThreadPool& pool) {
    if (k <= 0) return;
    const DotKernels* kern = dot_kernels();
    const size_t row_bytes = dtype_row_bytes(w.wt, w.dim);
    const auto* gate = static_cast<const uint8_t*>(w.w_gate);
    const auto* up = static_cast<const uint8_t*>(w.w_up);
    const bool relu = w.act == SparseAct::SPARSE_ACT_RELU;
    // Rows are gathered from scattered places: each dot product prefetches the row `ahead` reads further on
    // (about kGateLead bytes ahead), which the hardware prefetcher cannot guess.
    const int64_t ahead = std::max<int64_t>(1, kGateLead / (int64_t)std::max<size_t>(row_bytes, 1));
    pool.parallel_for(k, kNeuronGrain, [&](int64_t j0, int64_t j1) {
        int32_t need[kGateBlock];  // block positions whose up row is read
        for (int64_t b0 = j0; b0 < j1; b0 += kGateBlock) {
            const int64_t b1 = std::min(b0 + kGateBlock, j1);
            // The block's gate rows, then the up rows of the neurons that need them. Past its last gate row, a gate
            // prefetches the up rows of the block's first neurons (most fire when the list is predicted).
            int64_t n_need = 0;
            for (int64_t j = b0; j < b1; j++) {
                const int64_t q = j + ahead;
                const uint8_t* next = q < b1 ? gate + (size_t)active[q] * row_bytes
                                             : up + (size_t)active[std::min(b0 + (q - b1), b1 - 1)] * row_bytes;
                h[j] = kern->dot_row_prefetch(w.wt, gate + (size_t)active[j] * row_bytes, next, xq, w.dim);
                // ReLU: a neuron the predictor wrongly marked active contributes exactly 0; skip its up row.
                if (relu && !(h[j] > 0.0f)) {
                    h[j] = 0.0f;
                } else {
                    need[n_need++] = (int32_t)(j - b0);
                }
            }
            for (int64_t i = 0; i < n_need; i++) {
                const int64_t j = b0 + need[i], q = i + ahead;
                const uint8_t* row = up + (size_t)active[j] * row_bytes;
                float u;
                if (q < n_need) {
                    u = kern->dot_row_prefetch(w.wt, row, up + (size_t)active[b0 + need[q]] * row_bytes, xq, w.dim);
                } else if (b1 + (q - n_need) < j1) {  // the next block's gate rows
                    u = kern->dot_row_prefetch(w.wt, row, gate + (size_t)active[b1 + (q - n_need)] * row_bytes, xq,
                                               w.dim);
                } else {
                    u = kern->dot_row(w.wt, row, xq, w.dim);
                }
                h[j] = act_apply(w.act, h[j]) * u;
            }
        }
    });
}

void sparse_down(DType wt, const void* w_down_t, const float* h, const int32_t* active, int64_t k, float* y,
                 int64_t dim, ThreadPool& pool) {
    const DotKernels* kern = dot_kernels();
    const size_t row_bytes = dtype_row_bytes(wt, dim);
    const auto* base = static_cast<const uint8_t*>(w_down_t);
    const int64_t n_tiles = (dim + kTile - 1) / kTile;
    // Chunks as long as the thread count allows: each chunk walks the whole list, reading one segment per neuron,
    // and longer segments stream better. Two chunks per thread leave some room for dynamic balancing.
    const int64_t grain = std::max<int64_t>(kTileGrain, n_tiles / (2 * (int64_t)pool.size()));
    pool.parallel_for(n_tiles, grain, [&](int64_t t0, int64_t t1) {
        const int64_t c1 = std::min(t1 * kTile, dim);
        const void* rows[kBatch];
        float a[kBatch];
        for (int64_t s0 = t0 * kTile; s0 < c1; s0 += kSub) {
            // Sub-slice [s0, s0 + len) of y stays in L1 while every active neuron's segment streams through it.
            const int64_t len = std::min(kSub, c1 - s0);
            float* ys = y + s0;
            std::fill(ys, ys + len, 0.0f);
            const size_t off = dtype_row_bytes(wt, s0);  // s0 is a multiple of kTile, hence of the block size
            int64_t n = 0;
            for (int64_t j = 0; j < k; j++) {
                if (h[j] == 0.0f) continue;  // ReLU zeros: their rows are never read
                rows[n] = base + (size_t)active[j] * row_bytes + off;
                a[n++] = h[j];
                if (n == kBatch) {
                    kern->axpy_rows(wt, rows, a, n, ys, len);
                    n = 0;
                }
            }
            if (n > 0) kern->axpy_rows(wt, rows, a, n, ys, len);
        }
    });
}

void sparse_down_transpose(DType src_t, const void* w_down, DType dst_t, void* w_down_t, int64_t dim, int64_t n_ff,
                           ThreadPool& pool) {
    if (n_ff % dtype_block_elems(src_t) != 0 || dim % dtype_block_elems(dst_t) != 0) {
        throw std::invalid_argument("sparse_down_transpose: w_down (" + std::to_string(dim) + ", " +
                                    std::to_string(n_ff) + ") " + dtype_name(src_t) + " -> (" +
                                    std::to_string(n_ff) + ", " + std::to_string(dim) + ") " + dtype_name(dst_t) +
                                    ": expected n_ff a multiple of " + std::to_string(dtype_block_elems(src_t)) +
                                    " and dim a multiple of " + std::to_string(dtype_block_elems(dst_t)));
    }
    const auto* src = static_cast<const uint8_t*>(w_down);
    auto* dst = static_cast<uint8_t*>(w_down_t);
    const size_t src_row = dtype_row_bytes(src_t, n_ff), dst_row = dtype_row_bytes(dst_t, dim);
    const int64_t n_tiles = (n_ff + kTrTile - 1) / kTrTile;
    // Same type, one element per block: a pure transposition of the stored bits, with the one change the float
    // round trip dequantize_row -> quantize_row makes (NaNs come out quiet), so the output is the same.
    if (src_t == dst_t && dtype_block_elems(src_t) == 1) {
        pool.parallel_for(n_tiles, 1, [&](int64_t t0, int64_t t1) {
            const int64_t i0 = t0 * kTrTile, i1 = std::min(t1 * kTrTile, n_ff);
            if (src_t == DType::DTYPE_F32) {
                transpose_bits<uint32_t>(src, dst, dim, n_ff, i0, i1, [](uint32_t v) { return v; });
            } else if (src_t == DType::DTYPE_F16) {
                transpose_bits<uint16_t>(src, dst, dim, n_ff, i0, i1, [](uint16_t v) {
                    return (v & 0x7c00) == 0x7c00 && (v & 0x03ff) != 0 ? (uint16_t)(v | 0x0200) : v;
                });
            } else {
                transpose_bits<uint16_t>(src, dst, dim, n_ff, i0, i1, [](uint16_t v) {
                    return (v & 0x7f80) == 0x7f80 && (v & 0x007f) != 0 ? (uint16_t)(v | 0x0040) : v;
                });
            }
        });
        return;
    }
    // Otherwise through floats, a tile of kTrTile neurons at a time (2 x 512 KiB for dim 4096, in L2):
    // dequantize the tile's part of every source row, transpose it, quantize one output row per neuron.
    const DotKernels* kern = dot_kernels();
    pool.parallel_for(n_tiles, 1, [&](int64_t t0, int64_t t1) {
        std::vector<float> in((size_t)dim * kTrTile), out((size_t)kTrTile * dim);  // (dim, tile), (tile, dim)
        for (int64_t i0 = t0 * kTrTile; i0 < std::min(t1 * kTrTile, n_ff); i0 += kTrTile) {
            const int64_t w = std::min(kTrTile, n_ff - i0);  // a multiple of src_t's block size
            const size_t off = dtype_row_bytes(src_t, i0);
            for (int64_t r = 0; r < dim; r++) kern->dequantize_row(src_t, src + r * src_row + off, &in[r * w], w);
            for (int64_t r0 = 0; r0 < dim; r0 += 8) {  // 8 source rows at a time: w output streams of 8 floats
                const int64_t r1 = std::min(r0 + 8, dim);
                for (int64_t i = 0; i < w; i++)
                    for (int64_t r = r0; r < r1; r++) out[i * dim + r] = in[r * w + i];
            }
            for (int64_t i = 0; i < w; i++) {
                uint8_t* d = dst + (i0 + i) * dst_row;
                if (dst_t == DType::DTYPE_Q8_0) {
                    kern->quantize_row_q8_0(&out[i * dim], d, dim);  // bit-identical to quantize_row
                } else {
                    quantize_row(dst_t, &out[i * dim], d, dim);
                }
            }
        }
    });
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
