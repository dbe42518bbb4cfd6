#include "kernels-cpu/sparse-ffn.h"

#include <algorithm>
#include <atomic>
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
constexpr int64_t kTile = 64;         // down: y slices are whole tiles; a multiple of every block size (32)
constexpr int64_t kDownGroupNeurons = 256;  // down: listed neurons per group, at least
constexpr int64_t kDownMaxSlices = 256;     // down: slices of y at most
constexpr int64_t kSub = 4096;        // down: y elements (16 KiB) kept in L1 while the neurons' segments stream
constexpr int64_t kBatch = 512;       // down: neurons per axpy_rows call (row pointers and scales on the stack)
constexpr int64_t kChunk = 32;        // fused: neurons per chunk, each with its own partial y; FIXED (not a
                                      // function of the thread count) so the sums, hence the bits, never change
constexpr int64_t kSumTile = 256;     // fused: y elements per work item of the reduction pass
constexpr int64_t kTrTile = 32;       // transpose: neurons per tile; a multiple of every block size
constexpr int64_t kTrRows = 64;       // transpose: source rows per block when copying bits

constexpr int64_t kOwnRowLead = 1024;  // gate/up: with no next row to prefetch, a row's own bytes this far ahead

// ys[i] = dot_row_prefetch(rows[i], nexts[i]) for i < n: several rows at a time where the table can.
void dot_rows_gathered(const DotKernels* kern, DType wt, const uint8_t* const* rows, const uint8_t* const* nexts,
                       const void* xq, float* ys, int64_t n, int64_t dim) {
    if (n <= 0) return;
    if (kern->dot_rows_gather) {
        kern->dot_rows_gather(wt, (const void* const*)rows, (const void* const*)nexts, xq, ys, n, dim);
        return;
    }
    for (int64_t i = 0; i < n; i++) ys[i] = kern->dot_row_prefetch(wt, rows[i], nexts[i], xq, dim);
}

// What every block of gate/up rows reads (sparse_gate_up and sparse_ffn share it).
struct GateUpRows {
    const DotKernels* kern;
    DType wt;
    const uint8_t* gate;  // (n_ff, dim)
    const uint8_t* up;    // (n_ff, dim)
    size_t row_bytes;
    int64_t dim;
    bool relu;
    SparseAct act;
    int64_t ahead;  // prefetch distance in rows
    const void* xq;
    const int32_t* active;
};

GateUpRows gate_up_rows(const SparseGateUpWeights& w, const void* xq, const int32_t* active) {
    const size_t row_bytes = dtype_row_bytes(w.wt, w.dim);
    // Rows are gathered from scattered places: each dot product prefetches the row `ahead` reads further on
    // (about kGateLead bytes ahead), which the hardware prefetcher cannot guess. Where the table reads gathered rows
    // in passes, `ahead` is whole passes: a row prefetching a row of its own pass fetches lines that pass is loading
    // anyway, and leaves the next pass's rows to start cold (F16 rows of 8-10 KiB had 1 or 2 rows ahead).
    int64_t ahead = std::max<int64_t>(1, kGateLead / (int64_t)std::max<size_t>(row_bytes, 1));
    const DotKernels* kern = dot_kernels();
    if (kern->dot_rows_gather) ahead = (ahead + kGatherPassRows - 1) / kGatherPassRows * kGatherPassRows;
    return {kern,
            w.wt,
            static_cast<const uint8_t*>(w.w_gate),
            static_cast<const uint8_t*>(w.w_up),
            row_bytes,
            w.dim,
            w.act == SparseAct::SPARSE_ACT_RELU,
            w.act,
            ahead,
            xq,
            active};
}

// h[b0, b1) (b1 - b0 <= kGateBlock): the block's gate rows, then the up rows of the neurons that need them. Past its
// last gate row, a gate prefetches the up rows of the block's first neurons (most fire when the list is predicted);
// past the last up row, an up row prefetches tail(i, need, n_need), i = 0, 1, ...: the caller's next rows (nullptr
// when there are none); need[0, n_need) are the block positions whose up rows were read (the neurons that may fire).
template <typename Tail>
void gate_up_block(const GateUpRows& g, int64_t b0, int64_t b1, float* h, Tail tail) {
    const DotKernels* kern = g.kern;
    const int32_t* active = g.active;
    const size_t rb = g.row_bytes;
    const uint8_t* rows[kGateBlock];
    const uint8_t* nexts[kGateBlock];
    int32_t need[kGateBlock];  // block positions whose up row is read
    int64_t n_need = 0;
    const int64_t n = b1 - b0;
    for (int64_t j = b0; j < b1; j++) {
        const int64_t q = j + g.ahead;
        rows[j - b0] = g.gate + (size_t)active[j] * rb;
        nexts[j - b0] = q < b1 ? g.gate + (size_t)active[q] * rb
                               : g.up + (size_t)active[std::min(b0 + (q - b1), b1 - 1)] * rb;
    }
    dot_rows_gathered(kern, g.wt, rows, nexts, g.xq, h + b0, n, g.dim);
    for (int64_t j = b0; j < b1; j++) {
        // ReLU: a neuron the predictor wrongly marked active contributes exactly 0; skip its up row.
        if (g.relu && !(h[j] > 0.0f)) {
            h[j] = 0.0f;
        } else {
            need[n_need++] = (int32_t)(j - b0);
        }
    }
    for (int64_t i = 0; i < n_need; i++) {
        const int64_t q = i + g.ahead;
        rows[i] = g.up + (size_t)active[b0 + need[i]] * rb;
        const uint8_t* next = q < n_need ? g.up + (size_t)active[b0 + need[q]] * rb : tail(q - n_need, need, n_need);
        nexts[i] = next ? next : rows[i] + kOwnRowLead;
    }
    float u[kGateBlock];
    dot_rows_gathered(kern, g.wt, rows, nexts, g.xq, u, n_need, g.dim);
    for (int64_t i = 0; i < n_need; i++) {
        const int64_t j = b0 + need[i];
        h[j] = sparse_act(g.act, h[j]) * u[i];
    }
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
    const GateUpRows g = gate_up_rows(w, xq, active);
    pool.parallel_for(k, kNeuronGrain, [&](int64_t j0, int64_t j1) {
        for (int64_t b0 = j0; b0 < j1; b0 += kGateBlock) {
            const int64_t b1 = std::min(b0 + kGateBlock, j1);
            gate_up_block(g, b0, b1, h, [&](int64_t i, const int32_t*, int64_t) {  // the next block's gate rows
                return b1 + i < j1 ? g.gate + (size_t)active[b1 + i] * g.row_bytes : nullptr;
            });
        }
    });
}

int64_t sparse_down_groups(int64_t k) { return std::clamp<int64_t>(k / kDownGroupNeurons, 1, kSparseDownMaxGroups); }

size_t sparse_down_scratch_floats(int64_t k, int64_t dim) {
    const int64_t g = sparse_down_groups(k);
    return g > 1 ? (size_t)g * (size_t)dim : 0;
}

void sparse_down(DType wt, const void* w_down_t, const float* h, const int32_t* active, int64_t k, float* y,
                 int64_t dim, float* scratch, ThreadPool& pool) {
    if (dim <= 0) return;
    const DotKernels* kern = dot_kernels();
    const size_t row_bytes = dtype_row_bytes(wt, dim);
    const auto* base = static_cast<const uint8_t*>(w_down_t);
    // Work items: (slice of y, group of the list). About one item per thread, so that each reads segments of rows
    // as long as the groups allow; the groups depend on k alone, the slices on the thread count.
    const int64_t n_groups = sparse_down_groups(k);
    const int64_t n_tiles = (dim + kTile - 1) / kTile;
    const int64_t want_slices = std::min(((int64_t)pool.size() + n_groups - 1) / n_groups, kDownMaxSlices);
    const int64_t tiles_per_slice = (n_tiles + want_slices - 1) / want_slices;
    const int64_t n_slices = (n_tiles + tiles_per_slice - 1) / tiles_per_slice;
    std::atomic<int> arrived[kDownMaxSlices];  // per slice: groups done
    for (int64_t s = 0; s < n_slices; s++) arrived[s].store(0, std::memory_order_relaxed);
    pool.parallel_for(n_slices * n_groups, 1, [&](int64_t i0, int64_t i1) {
        const void* rows[kBatch];
        float a[kBatch];
        for (int64_t item = i0; item < i1; item++) {
            const int64_t sl = item / n_groups, g = item % n_groups;
            const int64_t e0 = sl * tiles_per_slice * kTile, e1 = std::min(dim, e0 + tiles_per_slice * kTile);
            const int64_t j0 = sparse_down_group_begin(k, n_groups, g);
            const int64_t j1 = sparse_down_group_begin(k, n_groups, g + 1);
            float* out = n_groups == 1 ? y : scratch + g * dim;
            for (int64_t s0 = e0; s0 < e1; s0 += kSub) {
                // Sub-slice [s0, s0 + len) stays in L1 while the group's segments stream through it.
                const int64_t len = std::min(kSub, e1 - s0);
                float* ys = out + s0;
                std::fill(ys, ys + len, 0.0f);
                const size_t off = dtype_row_bytes(wt, s0);  // s0 is a multiple of kTile, hence of the block size
                int64_t n = 0;
                for (int64_t j = j0; j < j1; j++) {
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
            // The slice's last group to finish adds the groups' partials in group order (acq_rel: it sees theirs).
            if (n_groups > 1 && arrived[sl].fetch_add(1, std::memory_order_acq_rel) == n_groups - 1) {
                std::copy(scratch + e0, scratch + e1, y + e0);
                for (int64_t q = 1; q < n_groups; q++) {
                    const float* part = scratch + q * dim;
                    for (int64_t e = e0; e < e1; e++) y[e] += part[e];
                }
            }
        }
    });
}

size_t sparse_ffn_scratch_floats(int64_t k, int64_t dim) {
    return k <= 0 ? 0 : (size_t)((k + kChunk - 1) / kChunk) * (size_t)dim;
}

void sparse_ffn(const SparseGateUpWeights& w, const void* xq, DType down_t, const void* w_down_t,
                const int32_t* active, int64_t k, float* h, float* y, float* scratch, ThreadPool& pool) {
    const int64_t dim = w.dim;
    if (k <= 0) {
        std::fill(y, y + dim, 0.0f);
        return;
    }
    const GateUpRows g = gate_up_rows(w, xq, active);
    const DotKernels* kern = g.kern;
    const size_t down_row = dtype_row_bytes(down_t, dim);
    const auto* down = static_cast<const uint8_t*>(w_down_t);
    const int64_t n_chunks = (k + kChunk - 1) / kChunk;
    // Pass 1, per chunk of kChunk neurons: h as sparse_gate_up computes it, then the fired neurons' whole down rows
    // into the chunk's partial y (axpy_rows keeps the partial in L1/L2 while each row streams in one piece).
    pool.parallel_for(n_chunks, 1, [&](int64_t c0, int64_t c1) {
        const void* rows[kChunk];
        float a[kChunk];
        for (int64_t c = c0; c < c1; c++) {
            const int64_t j0 = c * kChunk, j1 = std::min(j0 + kChunk, k);
            // The last up rows prefetch the first down rows of the neurons that may fire.
            gate_up_block(g, j0, j1, h, [&](int64_t i, const int32_t* need, int64_t n_need) {
                return i < n_need ? down + (size_t)active[j0 + need[i]] * down_row : nullptr;
            });
            int64_t n = 0;
            for (int64_t j = j0; j < j1; j++) {
                if (h[j] == 0.0f) continue;  // ReLU zeros: their down rows are never read
                rows[n] = down + (size_t)active[j] * down_row;
                a[n++] = h[j];
            }
            float* part = scratch + c * dim;
            std::fill(part, part + dim, 0.0f);
            if (n > 0) kern->axpy_rows(down_t, rows, a, n, part, dim);
        }
    });
    // Pass 2: y = partial 0 + partial 1 + ... in chunk order, split by tiles of y.
    const int64_t n_tiles = (dim + kSumTile - 1) / kSumTile;
    pool.parallel_for(n_tiles, 1, [&](int64_t t0, int64_t t1) {
        const int64_t e0 = t0 * kSumTile, e1 = std::min(t1 * kSumTile, dim);
        std::copy(scratch + e0, scratch + e1, y + e0);
        for (int64_t c = 1; c < n_chunks; c++) {
            const float* part = scratch + c * dim;
            for (int64_t e = e0; e < e1; e++) y[e] += part[e];
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
        h[j] = sparse_act(w.act, g) * u;
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
