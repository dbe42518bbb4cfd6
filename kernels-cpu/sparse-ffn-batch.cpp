#include "kernels-cpu/sparse-ffn-batch.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels-cpu/dot-isa.h"
#include "kernels-cpu/dot.h"

namespace ember {

namespace {

constexpr int64_t kRowGrain = 4;       // gate/up: listed neurons per smallest work item
constexpr int64_t kGateLead = 16384;   // gate/up: prefetch distance in bytes of rows (at least one row)
constexpr int64_t kTile = 64;          // down: y elements per work item; a multiple of every block size (32)
constexpr int64_t kTileGrain = 4;      // down: at least 256 y elements per chunk
constexpr int64_t kSub = 1024;         // down: y elements per axpy_rows call (a token's slice: 4 KiB)

// ys[i] = dot_row(wt, w, xs[i], n) for i < m, prefetching `next` meanwhile; through the table's dot_row_xs where it
// has one.
inline void row_dots(const DotKernels* kern, DType wt, const uint8_t* w, const uint8_t* next, const void* const* xs,
                     int m, float* ys, int64_t n) {
    if (m == 0) return;
    if (kern->dot_row_xs) {
        kern->dot_row_xs(wt, w, next, xs, m, ys, n);
    } else {
        ys[0] = kern->dot_row_prefetch(wt, w, next, xs[0], n);
        for (int i = 1; i < m; i++) ys[i] = kern->dot_row(wt, w, xs[i], n);
    }
}

void check_tokens(int n, const char* what) {
    if (n < 1 || n > kSparseBatchMaxTokens)
        throw std::invalid_argument(std::string(what) + ": " + std::to_string(n) + " tokens, expected 1 to " +
                                    std::to_string(kSparseBatchMaxTokens));
}

}  // namespace

void sparse_ffn_batch(const SparseGateUpWeights& w, const void* xq, size_t xq_stride, int n, DType down_t,
                      const void* w_down_t, const int32_t* rows, const uint32_t* masks, int64_t k, float* h, float* y,
                      ThreadPool& pool) {
    check_tokens(n, "sparse_ffn_batch");
    const int64_t dim = w.dim;
    std::fill(y, y + (size_t)n * dim, 0.0f);
    if (k <= 0) return;
    const DotKernels* kern = dot_kernels();
    const size_t row_bytes = dtype_row_bytes(w.wt, dim);
    const auto* gate = static_cast<const uint8_t*>(w.w_gate);
    const auto* up = static_cast<const uint8_t*>(w.w_up);
    const auto* xb = static_cast<const uint8_t*>(xq);
    const bool relu = w.act == SparseAct::SPARSE_ACT_RELU;
    const int64_t ahead = std::max<int64_t>(1, kGateLead / (int64_t)std::max<size_t>(row_bytes, 1));

    // Gate/up: each listed neuron's gate row against the tokens that use it, then its up row against those whose
    // gate fired (ReLU) or all of them (SiLU): one dot_row_xs call each, the row read from memory once (the rows
    // `ahead` neurons further on are prefetched meanwhile) and its vectors shared by the tokens' products.
    std::vector<uint32_t> fired((size_t)k);  // per listed neuron: the tokens whose h is not 0
    pool.parallel_for(k, kRowGrain, [&](int64_t j0, int64_t j1) {
        const void* xs[kSparseBatchMaxTokens];
        int tok[kSparseBatchMaxTokens];
        float dots[kSparseBatchMaxTokens];
        for (int64_t j = j0; j < j1; j++) {
            float* hj = h + j * n;
            std::fill(hj, hj + n, 0.0f);
            fired[j] = 0;
            const uint32_t mask = masks[j];
            if (mask == 0) continue;
            const int64_t q = std::min(j + ahead, k - 1);
            int m = 0;
            for (uint32_t b = mask; b != 0; b &= b - 1) {
                tok[m] = __builtin_ctz(b);
                xs[m] = xb + (size_t)tok[m] * xq_stride;
                m++;
            }
            row_dots(kern, w.wt, gate + (size_t)rows[j] * row_bytes, gate + (size_t)rows[q] * row_bytes, xs, m, dots,
                     dim);
            int m_up = 0;
            for (int i = 0; i < m; i++) {
                // ReLU: a token whose gate is not positive contributes exactly 0; its up dot product is skipped.
                if (relu && !(dots[i] > 0.0f)) continue;
                hj[tok[i]] = sparse_act(w.act, dots[i]);
                tok[m_up] = tok[i];
                xs[m_up++] = xs[i];
            }
            row_dots(kern, w.wt, up + (size_t)rows[j] * row_bytes, up + (size_t)rows[q] * row_bytes, xs, m_up, dots,
                     dim);
            for (int i = 0; i < m_up; i++) {
                hj[tok[i]] *= dots[i];
                if (hj[tok[i]] != 0.0f) fired[j] |= 1u << tok[i];
            }
        }
    });

    // Each token's fired neurons as positions in the list, ascending (token t's at use[start[t] .. start[t + 1])),
    // from the rows' fired masks: work in proportion to the (neuron, token) pairs, not to k * n.
    std::vector<int64_t> start(n + 1, 0);
    for (int64_t j = 0; j < k; j++)
        for (uint32_t b = fired[j]; b != 0; b &= b - 1) start[__builtin_ctz(b) + 1]++;
    for (int t = 0; t < n; t++) start[t + 1] += start[t];
    std::vector<int32_t> use((size_t)start[n]);
    {
        std::vector<int64_t> fill(start.begin(), start.end() - 1);
        for (int64_t j = 0; j < k; j++)
            for (uint32_t b = fired[j]; b != 0; b &= b - 1) use[(size_t)fill[__builtin_ctz(b)]++] = (int32_t)j;
    }

    // sparse_down's groups of each token's list: token t's k_t listed neurons in sparse_down_groups(k_t) runs of
    // consecutive list positions; group g of token t starts at use[group_at[t * kGroupSlots + g]] (its fired
    // neurons), the slot after its last group at start[t + 1].
    constexpr int kGroupSlots = kSparseDownMaxGroups + 1;
    std::vector<int64_t> listed(n, 0);
    for (int64_t j = 0; j < k; j++)
        for (uint32_t b = masks[j]; b != 0; b &= b - 1) listed[__builtin_ctz(b)]++;
    std::vector<int> n_groups(n);
    std::vector<int64_t> group_at((size_t)n * kGroupSlots);
    {
        std::vector<int64_t> pos(n, 0), fired_seen(n, 0);
        std::vector<int> cur(n, 0);
        for (int t = 0; t < n; t++) {
            n_groups[t] = (int)sparse_down_groups(listed[t]);
            group_at[(size_t)t * kGroupSlots] = start[t];
        }
        for (int64_t j = 0; j < k; j++) {
            for (uint32_t b = masks[j]; b != 0; b &= b - 1) {
                const int t = __builtin_ctz(b);
                const int64_t p = pos[t]++, kt = listed[t];
                while (cur[t] + 1 < n_groups[t] && p >= sparse_down_group_begin(kt, n_groups[t], cur[t] + 1))
                    group_at[(size_t)t * kGroupSlots + ++cur[t]] = start[t] + fired_seen[t];
                if (fired[j] >> t & 1u) fired_seen[t]++;
            }
        }
        for (int t = 0; t < n; t++) group_at[(size_t)t * kGroupSlots + n_groups[t]] = start[t + 1];
    }

    // Down: slices of y. Per slice, each token adds the segments of the neurons it fired, group by group, one
    // axpy_rows call each (list order, as sparse_down; a group after the first into its own partial, then added:
    // the same bits), which prefetches the rows ahead in its list; the first token to touch a segment reads it from
    // DRAM, the others from cache.
    const size_t down_row = dtype_row_bytes(down_t, dim);
    const auto* down = static_cast<const uint8_t*>(w_down_t);
    const int64_t n_tiles = (dim + kTile - 1) / kTile;
    const int64_t grain = std::max<int64_t>(kTileGrain, n_tiles / (2 * (int64_t)pool.size()));
    pool.parallel_for(n_tiles, grain, [&](int64_t t0, int64_t t1) {
        const int64_t c1 = std::min(t1 * kTile, dim);
        int64_t most = 0;
        for (int t = 0; t < n; t++) most = std::max(most, start[t + 1] - start[t]);
        std::vector<const void*> ptrs((size_t)most);
        std::vector<float> a((size_t)most), part((size_t)kSub);
        for (int64_t s0 = t0 * kTile; s0 < c1; s0 += kSub) {
            const int64_t len = std::min(kSub, c1 - s0);
            const size_t off = dtype_row_bytes(down_t, s0);  // s0 is a multiple of kTile, hence of the block size
            for (int t = 0; t < n; t++) {
                float* yt = y + (size_t)t * dim + s0;  // zero here
                for (int g = 0; g < n_groups[t]; g++) {
                    const int64_t u0 = group_at[(size_t)t * kGroupSlots + g];
                    const int64_t u1 = group_at[(size_t)t * kGroupSlots + g + 1];
                    int64_t cnt = 0;
                    for (int64_t u = u0; u < u1; u++, cnt++) {
                        const int64_t j = use[(size_t)u];
                        ptrs[cnt] = down + (size_t)rows[j] * down_row + off;
                        a[cnt] = h[j * n + t];
                    }
                    if (g == 0) {
                        if (cnt > 0) kern->axpy_rows(down_t, ptrs.data(), a.data(), cnt, yt, len);
                        continue;
                    }
                    std::fill(part.begin(), part.begin() + len, 0.0f);
                    if (cnt > 0) kern->axpy_rows(down_t, ptrs.data(), a.data(), cnt, part.data(), len);
                    for (int64_t e = 0; e < len; e++) yt[e] += part[e];
                }
            }
        }
    });
}

void sparse_ffn_batch_ref(const SparseGateUpWeights& w, const void* xq, size_t xq_stride, int n, DType down_t,
                          const void* w_down_t, const int32_t* rows, const uint32_t* masks, int64_t k, float* h,
                          float* y) {
    check_tokens(n, "sparse_ffn_batch_ref");
    std::vector<int32_t> active;
    std::vector<int64_t> where;
    std::vector<float> ht;
    for (int t = 0; t < n; t++) {
        active.clear();
        where.clear();
        for (int64_t j = 0; j < k; j++)
            if (masks[j] >> t & 1u) active.push_back(rows[j]), where.push_back(j);
        ht.assign(active.size(), 0.0f);
        const void* xt = static_cast<const uint8_t*>(xq) + (size_t)t * xq_stride;
        sparse_gate_up_ref(w, xt, active.data(), (int64_t)active.size(), ht.data());
        for (int64_t j = 0; j < k; j++) h[j * n + t] = 0.0f;
        for (size_t i = 0; i < where.size(); i++) h[where[i] * n + t] = ht[i];
        sparse_down_ref(down_t, w_down_t, ht.data(), active.data(), (int64_t)active.size(), y + (size_t)t * w.dim,
                        w.dim);
    }
}

}  // namespace ember
