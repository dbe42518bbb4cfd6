#include "models/llama-gpu.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <thread>

#include "engine/job-thread.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/sparse-ffn-batch.h"
#include "kernels-cpu/sparse-ffn.h"
#include "kernels-gpu/attention.h"
#include "kernels-gpu/cublas-check.h"
#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/dot.h"
#include "kernels-gpu/elementwise.h"
#include "kernels-gpu/host-sync.h"
#include "kernels-gpu/matmul.h"
#include "kernels-gpu/norm.h"
#include "kernels-gpu/predictor.h"
#include "kernels-gpu/rope.h"
#include "kernels-gpu/sparse-ffn.h"
#include "models/llama-sparse.h"

namespace ember {

namespace {

constexpr size_t kAlign = 256;

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// One cudaMalloc for many pieces: offsets are reserved first, the block is allocated once (so the driver's 2 MiB
// granularity is paid once, not per tensor, and the VRAM used is what the planner counted), then filled.
class DeviceArena {
public:
    DeviceArena() = default;
    DeviceArena(const DeviceArena&) = delete;
    DeviceArena& operator=(const DeviceArena&) = delete;
    size_t reserve(size_t bytes) {
        const size_t off = size_;
        size_ += align_up(bytes);
        return off;
    }
    void allocate() {
        if (size_ > 0) CUDA_CHECK(cudaMalloc(&base_, size_));
    }
    template <typename T = void>
    T* at(size_t off) const {
        return reinterpret_cast<T*>(static_cast<uint8_t*>(base_) + off);
    }
    size_t size() const { return size_; }
    ~DeviceArena() {
        if (base_) cudaFree(base_);
    }

private:
    void* base_ = nullptr;
    size_t size_ = 0;
};

// A weight matrix in VRAM.
struct DeviceWeight {
    const void* data = nullptr;
    DType type = DType::DTYPE_F32;
    int64_t n_rows = 0;
    int64_t n_cols = 0;
    uint64_t bytes() const { return dtype_row_bytes(type, n_cols) * (uint64_t)n_rows; }
};

}  // namespace

struct LlamaGpuLayer {
    bool attn = false, ffn_dense = false, split = false;
    const float* attn_norm = nullptr;  // (dim)
    DeviceWeight wq, wk, wv, wo;
    const float* ffn_norm = nullptr;   // (dim)
    DeviceWeight gate, up, down;       // dense FFN
    gpu::PredictorGpuWeights predictor;  // split: fc2's rows ordered hot neurons first, then cold ones
    int n_hot = 0;
    DeviceWeight hot_gate, hot_up, hot_down_t;  // (n_hot, dim) each: row j = neuron hot[j]
    std::vector<int32_t> cold;         // split: the cold neurons, ascending; scores[n_hot + c] belongs to cold[c]
};

struct LlamaGpu {
    Placement placement;
    std::vector<LlamaGpuLayer> layers;
    bool output = false;
    const float* output_norm = nullptr;
    DeviceWeight output_w;
    int max_rank = 0;
    bool batch = false;  // sessions run prompts in batches (the plan reserved their scratch)
    bool split = false;  // some layer splits its FFN between the GPU and the CPU
    DeviceArena arena;
};

namespace {

// Where the pieces go: reserved on the first pass, copied on the second.
struct Upload {
    DeviceArena& arena;
    std::vector<std::function<void()>> copies;

    // A host block copied as is; its offset until fixed up.
    const void* put(const void* host, size_t bytes) { return put_back_to_back({{host, bytes}})[0]; }
    // Host blocks copied back to back into one reservation; each block's offset, until fixed up.
    std::vector<const void*> put_back_to_back(const std::vector<std::pair<const void*, size_t>>& blocks) {
        size_t total = 0;
        for (const auto& b : blocks) total += b.second;
        size_t off = arena.reserve(total);
        std::vector<const void*> at;
        for (const auto& b : blocks) {
            const void* host = b.first;
            const size_t bytes = b.second;
            copies.push_back([this, off, host, bytes] {
                CUDA_CHECK(cudaMemcpy(arena.at<uint8_t>(off), host, bytes, cudaMemcpyHostToDevice));
            });
            at.push_back(reinterpret_cast<const void*>(off));
            off += bytes;
        }
        return at;
    }
    // Rows rows[0..n) of a (?, row_bytes) host matrix, gathered into one contiguous device matrix.
    const void* put_rows(const void* host, size_t row_bytes, std::vector<int32_t> rows) {
        const size_t off = arena.reserve(row_bytes * rows.size());
        copies.push_back([this, off, host, row_bytes, rows] {
            const size_t chunk_rows = std::max<size_t>(1, (64u << 20) / std::max<size_t>(row_bytes, 1));
            std::vector<uint8_t> staging(std::min(rows.size(), chunk_rows) * row_bytes);
            for (size_t b = 0; b < rows.size(); b += chunk_rows) {
                const size_t e = std::min(rows.size(), b + chunk_rows);
                for (size_t j = b; j < e; j++)
                    std::memcpy(staging.data() + (j - b) * row_bytes,
                                static_cast<const uint8_t*>(host) + (size_t)rows[j] * row_bytes, row_bytes);
                CUDA_CHECK(cudaMemcpy(arena.at<uint8_t>(off) + b * row_bytes, staging.data(), (e - b) * row_bytes,
                                      cudaMemcpyHostToDevice));
            }
        });
        return reinterpret_cast<const void*>(off);
    }
};

// Offsets recorded by Upload become pointers once the arena exists.
template <typename T>
void fix(T*& p, const DeviceArena& a) {
    p = reinterpret_cast<T*>(a.at<uint8_t>(reinterpret_cast<size_t>(p)));
}

// w's shape and type at `data` (a device pointer, or an offset until fixed up).
DeviceWeight device_weight(const Weight& w, const void* data) {
    DeviceWeight d;
    d.type = w.type;
    d.n_rows = w.n_rows;
    d.n_cols = w.n_cols;
    d.data = data;
    return d;
}

DeviceWeight put_weight(Upload& up, const Weight& w) { return device_weight(w, up.put(w.data, w.bytes())); }

// Matrices that share a decode step's input, back to back in one device block when they are of one type and width
// (then one matvec reads them as one matrix, see rows_follow); each on its own otherwise.
std::vector<DeviceWeight> put_stacked(Upload& up, const std::vector<const Weight*>& ws) {
    bool one_matrix = true;
    for (const Weight* w : ws) one_matrix = one_matrix && w->type == ws[0]->type && w->n_cols == ws[0]->n_cols;
    std::vector<DeviceWeight> d;
    if (!one_matrix) {
        for (const Weight* w : ws) d.push_back(put_weight(up, *w));
        return d;
    }
    std::vector<std::pair<const void*, size_t>> blocks;
    for (const Weight* w : ws) blocks.push_back({w->data, w->bytes()});
    const std::vector<const void*> at = up.put_back_to_back(blocks);
    for (size_t i = 0; i < ws.size(); i++) d.push_back(device_weight(*ws[i], at[i]));
    return d;
}

const float* put_floats(Upload& up, const std::vector<float>& v) {
    return static_cast<const float*>(up.put(v.data(), v.size() * sizeof(float)));
}

void fix_weight(DeviceWeight& w, const DeviceArena& a) {
    if (w.n_rows > 0) fix(w.data, a);
}

// Whether b's rows follow a's in VRAM, of the same type and width: one matvec reads both as one matrix.
bool rows_follow(const DeviceWeight& a, const DeviceWeight& b) {
    return a.n_rows > 0 && a.type == b.type && a.n_cols == b.n_cols &&
           static_cast<const uint8_t*>(a.data) + a.bytes() == b.data;
}

// Whether a decode token's k, v and q come from one matvec: wk, wv and wq back to back in VRAM, and the outputs k, v
// and q too. (The matvec picks its split of each row by the row count, so a row's sum may round differently than in
// three launches; every launch of a model takes the same path.)
bool kvq_in_one_matvec(const LlamaGpuLayer& G, const float* k, const float* v, const float* q) {
    return rows_follow(G.wk, G.wv) && rows_follow(G.wv, G.wq) && k + G.wk.n_rows == v && v + G.wv.n_rows == q;
}

}  // namespace

std::shared_ptr<LlamaGpu> llama_gpu_upload(const ModelInfo& info, const LlamaModel& m, const Placement& p,
                                           bool batch) {
    auto g = std::make_shared<LlamaGpu>();
    g->placement = p;
    g->batch = batch;
    for (const LayerPlacement& lp : p.layers) g->split |= lp.predictor_gpu;
    g->layers.resize(info.n_layers);
    if ((int)p.layers.size() != info.n_layers)
        throw Error("GPU upload: the placement has " + std::to_string(p.layers.size()) + " layers, the model " +
                    std::to_string(info.n_layers));
    Upload up{g->arena, {}};
    for (int l = 0; l < info.n_layers; l++) {
        const LayerPlacement& lp = p.layers[l];
        const LlamaLayer& L = m.layers[l];
        LlamaGpuLayer& G = g->layers[l];
        G.attn = lp.attn_gpu;
        G.ffn_dense = lp.ffn_gpu_dense;
        G.split = lp.predictor_gpu;
        if (G.attn) {
            G.attn_norm = put_floats(up, L.attn_norm);
            const std::vector<DeviceWeight> kvq = put_stacked(up, {&L.wk, &L.wv, &L.wq});
            G.wk = kvq[0], G.wv = kvq[1], G.wq = kvq[2];
            G.wo = put_weight(up, L.wo);
        }
        if (G.ffn_dense || G.split) G.ffn_norm = put_floats(up, L.ffn_norm);
        if (G.ffn_dense) {
            const std::vector<DeviceWeight> gate_up = put_stacked(up, {&L.w_gate, &L.w_up});
            G.gate = gate_up[0], G.up = gate_up[1];
            G.down = put_weight(up, L.w_down);
        }
        if (G.split) {
            if (m.sparse.empty())
                throw Error("GPU upload: layer " + std::to_string(l) + " splits its FFN, which needs a profile");
            const LlamaSparseFfn& S = m.sparse[l];
            const PredictorWeights& pw = S.predictor;
            std::vector<bool> is_hot(info.n_ff, false);
            for (int32_t i : lp.hot) {
                if (i < 0 || i >= info.n_ff)
                    throw Error("GPU upload: layer " + std::to_string(l) + ": hot neuron " + std::to_string(i) +
                                " outside [0, " + std::to_string(info.n_ff) + ")");
                is_hot[i] = true;
            }
            G.n_hot = (int)lp.hot.size();
            std::vector<int32_t> order = lp.hot;  // fc2 rows: hot first, then cold
            for (int i = 0; i < info.n_ff; i++)
                if (!is_hot[i]) G.cold.push_back(i), order.push_back(i);
            G.predictor.type = pw.type;
            G.predictor.dim = pw.dim;
            G.predictor.rank = pw.rank;
            G.predictor.n_ff = pw.n_ff;
            G.predictor.hidden_relu = pw.hidden == PredictorHidden::PREDICTOR_HIDDEN_RELU;
            G.predictor.threshold = pw.threshold;
            G.predictor.fc1 = up.put(pw.fc1.data(), pw.fc1.size());
            G.predictor.fc2 = up.put_rows(pw.fc2.data(), dtype_row_bytes(pw.type, pw.rank), order);
            g->max_rank = std::max(g->max_rank, pw.rank);
            if (G.n_hot > 0) {
                auto rows_of = [&](const Weight& w, DeviceWeight& d) {
                    d.type = w.type;
                    d.n_rows = G.n_hot;
                    d.n_cols = w.n_cols;
                    d.data = up.put_rows(w.data, dtype_row_bytes(w.type, w.n_cols), lp.hot);
                };
                rows_of(L.w_gate, G.hot_gate);
                rows_of(L.w_up, G.hot_up);
                rows_of(S.w_down_t, G.hot_down_t);
            }
        }
    }
    g->output = p.output_gpu;
    if (g->output) {
        g->output_norm = put_floats(up, m.output_norm);
        g->output_w = put_weight(up, m.output);
    }

    g->arena.allocate();
    for (LlamaGpuLayer& G : g->layers) {
        if (G.attn) {
            fix(G.attn_norm, g->arena);
            for (DeviceWeight* w : {&G.wq, &G.wk, &G.wv, &G.wo}) fix_weight(*w, g->arena);
        }
        if (G.ffn_dense || G.split) fix(G.ffn_norm, g->arena);
        for (DeviceWeight* w : {&G.gate, &G.up, &G.down, &G.hot_gate, &G.hot_up, &G.hot_down_t}) fix_weight(*w, g->arena);
        if (G.split) {
            fix(G.predictor.fc1, g->arena);
            fix(G.predictor.fc2, g->arena);
        }
    }
    if (g->output) {
        fix(g->output_norm, g->arena);
        fix_weight(g->output_w, g->arena);
    }
    for (const auto& c : up.copies) c();
    // Copies from pageable memory may return before the data has landed; the sessions' streams do not wait for the
    // legacy stream.
    CUDA_CHECK(cudaDeviceSynchronize());
    return g;
}

uint64_t llama_gpu_weight_bytes(const LlamaGpu& g) { return g.arena.size(); }

GpuDeviceInfo gpu_device_info() {
    if (gpu::cuda_device_count() == 0) throw Error("no CUDA device");
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaFree(nullptr));  // makes the context, so that free memory is what is left after it
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    GpuDeviceInfo d;
    d.name = prop.name;
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    d.free_bytes = free_b;
    d.total_bytes = total_b;
    // Bandwidth: a 128 MiB device-to-device copy (it reads and writes each byte: 2x its size moves), best of 3.
    const size_t bytes = std::min<size_t>(128u << 20, free_b / 4);
    void* a = nullptr;
    void* b = nullptr;
    d.bandwidth = 1.0e12;  // fallback where the probe cannot run
    const bool have_buffers =
        bytes >= (16u << 20) && cudaMalloc(&a, bytes) == cudaSuccess && cudaMalloc(&b, bytes) == cudaSuccess;
    if (!have_buffers) cudaGetLastError();  // a failed allocation must not surface at the next launch check
    if (have_buffers) {
        cudaEvent_t e0, e1;
        CUDA_CHECK(cudaEventCreate(&e0));
        CUDA_CHECK(cudaEventCreate(&e1));
        float best = 1e30f;
        for (int r = 0; r < 4; r++) {
            CUDA_CHECK(cudaEventRecord(e0));
            CUDA_CHECK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
            CUDA_CHECK(cudaEventRecord(e1));
            CUDA_CHECK(cudaEventSynchronize(e1));
            float ms = 0;
            CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
            if (r > 0) best = std::min(best, ms);  // the first copy warms up
        }
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
        if (best > 0 && best < 1e29f) d.bandwidth = 2.0 * (double)bytes / (best * 1e-3);
    }
    if (a) cudaFree(a);
    if (b) cudaFree(b);
    return d;
}

// ---- Session state ----

namespace {

// The device scratch of one session, laid out in one arena (llama_gpu_scratch_bytes sums the same layout).
// Prompts run in batches of kBatch tokens (dense layers through cuBLAS, split layers as BatchStep says); their logits
// come out kOutRows rows at a time.
constexpr int kBatch = 32;
static_assert(kBatch <= kSparseBatchMaxTokens, "a split layer's batch masks hold one bit per token");
constexpr int kOutRows = 8;
constexpr int64_t kSlabRows = 256;              // Q8_0/Q4_0 weight rows dequantized per GEMM slab
constexpr size_t kCublasWorkspace = 4u << 20;   // cuBLAS's own workspace, given to it so that it allocates none

struct ScratchLayout {
    size_t x, xn, q, k, v, attn, tmp, gate, up, scores, h, y_hot, down_scratch, att_scratch, logits, xq,
        pred_xq, pred_hidden, hot_active, counts, pos, batch_counts = 0, batch_scores = 0, gemm = 0, cublas = 0;
    size_t gemm_bytes = 0;
    size_t total = 0;
};

// batch: room for prompts in batches (kBatch rows of activations, GEMM and cuBLAS workspaces); else one token.
ScratchLayout scratch_layout(const ModelInfo& info, const LlamaModel& m, int n_ctx, bool batch, DeviceArena* arena) {
    DeviceArena local;
    DeviceArena& a = arena ? *arena : local;
    const int64_t q_dim = (int64_t)info.n_heads * info.head_dim;
    const size_t f = sizeof(float);
    const size_t rows = batch ? kBatch : 1;
    int max_rank = 0;
    for (const LlamaSparseFfn& S : m.sparse) max_rank = std::max(max_rank, S.predictor.rank);
    // Activations prepared for any weight type: the largest of F32 floats and Q8_0 quants, for the widest input.
    const int64_t widest = std::max<int64_t>({(int64_t)info.dim, q_dim, (int64_t)info.n_ff});
    const size_t xq_bytes = std::max(gpu::dot_vec_bytes(DType::DTYPE_F32, widest),
                                     widest % 32 == 0 ? gpu::dot_vec_bytes(DType::DTYPE_Q8_0, widest) : 0);
    const int64_t pred_in = std::max<int64_t>(info.dim, max_rank);
    // The GEMM workspace for kBatch tokens over the widest input, for the model's weight types.
    size_t gemm = 0;
    auto account = [&](const Weight& w) {
        gemm = std::max(gemm, gpu::matmul_workspace_bytes(w.type, rows, w.n_cols, std::min<int64_t>(kSlabRows, w.n_rows)));
    };
    account(m.output);
    for (const LlamaLayer& L : m.layers)
        for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) account(*w);
    ScratchLayout s;
    s.x = a.reserve(rows * info.dim * f);
    s.xn = a.reserve(rows * info.dim * f);
    // A decode token's key and value (before they go to the cache), then the queries, back to back as the upload
    // stores wk, wv and wq: one matvec writes all three.
    s.k = a.reserve((2 * (size_t)info.kv_dim + rows * q_dim) * f);
    s.v = s.k + info.kv_dim * f;
    s.q = s.v + info.kv_dim * f;
    s.attn = a.reserve(rows * q_dim * f);
    s.tmp = a.reserve(rows * info.dim * f);
    // gate, then up: a decode token's gate and up products come from one matvec into gate[0, 2 n_ff).
    s.gate = a.reserve(2 * rows * info.n_ff * f);
    s.up = s.gate + rows * info.n_ff * f;
    s.scores = a.reserve(info.n_ff * f);
    s.h = a.reserve(info.n_ff * f);
    s.y_hot = a.reserve(info.dim * f);
    s.down_scratch = a.reserve(gpu::sparse_down_scratch_floats(info.dim) * f);
    s.att_scratch = a.reserve(gpu::attention_scratch_floats(n_ctx, info.n_heads, info.head_dim, (int)rows) * f);
    s.logits = a.reserve((size_t)(batch ? kOutRows : 1) * info.n_vocab * f);
    s.xq = a.reserve(xq_bytes);
    s.pred_xq = a.reserve(std::max(pred_in * f, pred_in % 32 == 0 ? gpu::dot_vec_bytes(DType::DTYPE_Q8_0, pred_in) : 0));
    s.pred_hidden = a.reserve(std::max(max_rank, 1) * f);
    s.hot_active = a.reserve(info.n_ff * sizeof(int32_t));
    s.counts = a.reserve((size_t)2 * info.n_layers * sizeof(int32_t));
    s.pos = a.reserve(sizeof(int32_t));  // the decode token's position, copied up at the step's start
    if (batch) {
        s.batch_counts = a.reserve((size_t)2 * kBatch * sizeof(int32_t));  // a split layer's hot counts per token
        s.batch_scores = a.reserve(rows * info.n_ff * f);                   // its predictor scores per token
        s.gemm_bytes = std::max<size_t>(gemm, 256);
        s.gemm = a.reserve(s.gemm_bytes);
        s.cublas = a.reserve(kCublasWorkspace);
    }
    s.total = a.size();
    return s;
}

using Clock = std::chrono::steady_clock;

}  // namespace

uint64_t llama_gpu_scratch_bytes(const ModelInfo& info, const LlamaModel& m, int n_ctx, bool batch) {
    return scratch_layout(info, m, n_ctx, batch, nullptr).total;
}

struct LlamaGpuState {
    int n_ctx = 0;
    cudaStream_t stream = nullptr;
    bool batch = false;                // prompts in batches: the scratch has room for them
    bool split = false;                // some layer splits its FFN (no FFN observer)
    cublasHandle_t cublas = nullptr;   // with batch: gpu::matmul's handle
    JobThread queue;                   // queues decode steps' GPU work (DecodeStep)
    DeviceArena kv;                    // K and V caches of the layers whose attention runs on the GPU
    std::vector<void*> k_cache, v_cache;  // (n_layers) (n_ctx, kv_dim) each, null for CPU-attention layers
    DType k_type = DType::DTYPE_F32, v_type = DType::DTYPE_F32;  // their elements: F32 or F16
    DeviceArena arena;
    ScratchLayout lay;
    // Pinned host buffers.
    // Rows: kBatch with batch, else 1.
    float* h_x = nullptr;       // (rows, dim)
    float* h_xn = nullptr;      // (rows, dim) a split FFN's input: floats, or a decode token's Q8_0 blocks
    float* h_scores = nullptr;  // with batch and split: (kBatch, n_ff) a batch's cold scores
    uint32_t* h_cold_bits = nullptr;  // (n_ff / 32 + 1) a decode token's cold neurons predicted active, as bits
    float* h_y = nullptr;       // (rows, dim) the CPU's part of a split FFN
    float* h_logits = nullptr;  // (kOutRows, n_vocab)
    int32_t* h_counts = nullptr;  // (2, n_layers) hot neurons predicted, then fired, per layer
    int32_t* h_batch_counts = nullptr;  // with batch and split: (n_layers, 2, kBatch) the same per batch token
    uint32_t* h_sync = nullptr;   // handoff counters: host to device at [0], device to host at [kSyncStride]
    int32_t* h_pos = nullptr;     // the decode token's position
    // Decode steps captured as CUDA graphs, without and with logits; each replays for positions whose attention
    // splits into graph_splits chunks (gpu::attention_splits).
    cudaGraphExec_t graphs[2] = {nullptr, nullptr};
    int graph_splits[2] = {0, 0};
    bool graphs_warm = false;  // a step ran launch by launch first: every kernel's module is loaded before a capture
    bool graphs_off = false;   // a capture failed: this session's steps run launch by launch
    // The CPU's cold work: a decode token's list and h; a batch's list, token masks, h (k, rows) and prepared rows.
    std::vector<int32_t> cold_active;
    std::vector<float> cold_h;
    std::vector<uint32_t> batch_masks;
    std::vector<float> batch_h;
    std::vector<uint8_t> batch_xq;
    cudaEvent_t ev_batch = nullptr;  // a batch's FFN inputs and cold scores have reached the host
    // Tracing.
    bool trace = false;
    std::vector<cudaEvent_t> events;
    size_t events_used = 0;
    cudaEvent_t ev_ref = nullptr;
    Clock::time_point t_ref;
    struct PendingGpuSpan {
        int layer;
        const char* what;
        cudaEvent_t b, e;
    };
    std::vector<PendingGpuSpan> gpu_spans;
    DecodeTimeline timeline;

    ~LlamaGpuState() {
        if (cublas) cublasDestroy(cublas);
        if (stream) cudaStreamDestroy(stream);
        if (ev_ref) cudaEventDestroy(ev_ref);
        if (ev_batch) cudaEventDestroy(ev_batch);
        for (cudaGraphExec_t g : graphs)
            if (g) cudaGraphExecDestroy(g);
        for (cudaEvent_t e : events) cudaEventDestroy(e);
        for (void* p : {(void*)h_x, (void*)h_xn, (void*)h_scores, (void*)h_cold_bits, (void*)h_y, (void*)h_logits,
                        (void*)h_counts, (void*)h_batch_counts, (void*)h_sync, (void*)h_pos})
            if (p) cudaFreeHost(p);
    }
    template <typename T>
    T* dev(size_t off) const {
        return arena.at<T>(off);
    }
    // The host stores the first, the stream the second; on separate cache lines.
    static constexpr size_t kSyncStride = 64 / sizeof(uint32_t);
    volatile uint32_t* h2d_counter() const { return h_sync; }
    volatile uint32_t* d2h_counter() const { return h_sync + kSyncStride; }
    cudaEvent_t next_event() {
        if (events_used == events.size()) {
            cudaEvent_t e;
            CUDA_CHECK(cudaEventCreate(&e));
            events.push_back(e);
        }
        return events[events_used++];
    }
};

std::shared_ptr<LlamaGpuState> llama_gpu_state_create(const ModelInfo& info, const LlamaModel& m, const LlamaGpu& g,
                                                      int n_ctx, DType k_type, DType v_type) {
    if (!kv_cache_type_supported(k_type) || !kv_cache_type_supported(v_type))
        throw Error(std::string("GPU KV cache: ") + dtype_name(k_type) + " keys and " + dtype_name(v_type) +
                    " values, expected f32 or f16 for each");
    // A prompt batch's F16 keys and values are computed in the gate and up scratch first (see BatchStep::attention).
    const bool half = k_type == DType::DTYPE_F16 || v_type == DType::DTYPE_F16;
    if (g.batch && half && info.kv_dim > info.n_ff)
        throw Error("GPU KV cache: f16 keys or values need kv_dim (" + std::to_string(info.kv_dim) +
                    ") at most n_ff (" + std::to_string(info.n_ff) + ") for prompt batches");
    auto gs = std::make_shared<LlamaGpuState>();
    gs->n_ctx = n_ctx;
    gs->k_type = k_type;
    gs->v_type = v_type;
    CUDA_CHECK(cudaStreamCreateWithFlags(&gs->stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreate(&gs->ev_ref));
    const size_t k_bytes = dtype_row_bytes(k_type, (int64_t)n_ctx * info.kv_dim);
    const size_t v_bytes = dtype_row_bytes(v_type, (int64_t)n_ctx * info.kv_dim);
    std::vector<size_t> k_off(info.n_layers, SIZE_MAX), v_off(info.n_layers, SIZE_MAX);
    for (int l = 0; l < info.n_layers; l++)
        if (g.layers[l].attn) k_off[l] = gs->kv.reserve(k_bytes), v_off[l] = gs->kv.reserve(v_bytes);
    gs->kv.allocate();
    gs->k_cache.assign(info.n_layers, nullptr);
    gs->v_cache.assign(info.n_layers, nullptr);
    for (int l = 0; l < info.n_layers; l++)
        if (k_off[l] != SIZE_MAX) gs->k_cache[l] = gs->kv.at(k_off[l]), gs->v_cache[l] = gs->kv.at(v_off[l]);
    const bool batch = g.batch;
    gs->batch = batch;
    gs->split = g.split;
    gs->lay = scratch_layout(info, m, n_ctx, batch, &gs->arena);
    gs->arena.allocate();
    const size_t rows = batch ? kBatch : 1;
    CUDA_CHECK(cudaMallocHost(&gs->h_x, rows * info.dim * sizeof(float)));
    CUDA_CHECK(cudaMallocHost(&gs->h_xn, rows * info.dim * sizeof(float)));
    CUDA_CHECK(cudaMallocHost(&gs->h_cold_bits, ((size_t)info.n_ff / 32 + 1) * sizeof(uint32_t)));
    CUDA_CHECK(cudaMallocHost(&gs->h_y, rows * info.dim * sizeof(float)));
    CUDA_CHECK(cudaMallocHost(&gs->h_logits, (size_t)(batch ? kOutRows : 1) * info.n_vocab * sizeof(float)));
    if (batch) {
        // The stream first: setting a stream resets the workspace to cuBLAS's own pool, which nothing counts.
        CUBLAS_CHECK(cublasCreate(&gs->cublas));
        CUBLAS_CHECK(cublasSetStream(gs->cublas, gs->stream));
        CUBLAS_CHECK(cublasSetWorkspace(gs->cublas, gs->arena.at(gs->lay.cublas), kCublasWorkspace));
    }
    CUDA_CHECK(cudaMallocHost(&gs->h_counts, (size_t)2 * info.n_layers * sizeof(int32_t)));
    CUDA_CHECK(cudaMallocHost(&gs->h_sync, 2 * LlamaGpuState::kSyncStride * sizeof(uint32_t)));
    std::memset(gs->h_sync, 0, 2 * LlamaGpuState::kSyncStride * sizeof(uint32_t));
    CUDA_CHECK(cudaMallocHost(&gs->h_pos, sizeof(int32_t)));
    *gs->h_pos = 0;
    gs->cold_active.assign(info.n_ff, 0);
    gs->cold_h.assign(info.n_ff, 0.0f);
    if (batch && g.split) {
        CUDA_CHECK(cudaMallocHost(&gs->h_scores, (size_t)kBatch * info.n_ff * sizeof(float)));
        CUDA_CHECK(cudaMallocHost(&gs->h_batch_counts, (size_t)info.n_layers * 2 * kBatch * sizeof(int32_t)));
        CUDA_CHECK(cudaEventCreateWithFlags(&gs->ev_batch, cudaEventDisableTiming));
        gs->batch_masks.assign(info.n_ff, 0);
        gs->batch_h.assign((size_t)info.n_ff * kBatch, 0.0f);
        size_t stride = 0;
        for (const LlamaLayer& L : m.layers) stride = std::max(stride, dot_vec_bytes(L.w_gate.type, info.dim));
        gs->batch_xq.assign(stride * kBatch, 0);
    }
    return gs;
}

bool llama_gpu_observes_ffn(const LlamaGpuState& gs) { return gs.batch && !gs.split; }

namespace {

// g's layer `layer`; `what` names the caller in the error for a layer outside the model.
const LlamaGpuLayer& layer_of(const LlamaGpu& g, int layer, const char* what) {
    if (layer < 0 || layer >= (int)g.layers.size())
        throw Error(std::string(what) + ": layer " + std::to_string(layer) + " outside [0, " +
                    std::to_string(g.layers.size()) + ")");
    return g.layers[layer];
}

}  // namespace

int llama_gpu_qkv_matvecs(const LlamaGpu& g, const LlamaGpuState& gs, int layer) {
    const LlamaGpuLayer& G = layer_of(g, layer, "llama_gpu_qkv_matvecs");
    if (!G.attn) return 0;
    return kvq_in_one_matvec(G, gs.dev<float>(gs.lay.k), gs.dev<float>(gs.lay.v), gs.dev<float>(gs.lay.q)) ? 1 : 3;
}

int llama_gpu_gate_up_matvecs(const LlamaGpu& g, int layer) {
    const LlamaGpuLayer& G = layer_of(g, layer, "llama_gpu_gate_up_matvecs");
    if (!G.ffn_dense) return 0;
    return rows_follow(G.gate, G.up) ? 1 : 2;
}

void llama_gpu_trace(LlamaGpuState& gs, bool on) { gs.trace = on; }
const DecodeTimeline& llama_gpu_timeline(const LlamaGpuState& gs) { return gs.timeline; }

// ---- The decode step ----

namespace {

double union_ms(std::vector<std::pair<double, double>> iv) {
    std::sort(iv.begin(), iv.end());
    double total = 0, b = -1e300, e = -1e300;
    for (const auto& [s, t] : iv) {
        if (s > e) {
            if (e > b) total += e - b;
            b = s, e = t;
        } else {
            e = std::max(e, t);
        }
    }
    if (e > b) total += e - b;
    return total;
}

// The residual's first n rows between the session's host state and the device, through the pinned h_x: up is
// queued on the stream, down waits for the stream.
void residual_up(const ModelInfo& info, LlamaGpuState& gs, const LlamaState& st, int n) {
    const size_t bytes = (size_t)n * info.dim * sizeof(float);
    std::memcpy(gs.h_x, st.x.data(), bytes);
    CUDA_CHECK(cudaMemcpyAsync(gs.dev<float>(gs.lay.x), gs.h_x, bytes, cudaMemcpyHostToDevice, gs.stream));
}
void residual_down(const ModelInfo& info, LlamaGpuState& gs, LlamaState& st, int n) {
    const size_t bytes = (size_t)n * info.dim * sizeof(float);
    CUDA_CHECK(cudaMemcpyAsync(gs.h_x, gs.dev<float>(gs.lay.x), bytes, cudaMemcpyDeviceToHost, gs.stream));
    CUDA_CHECK(cudaStreamSynchronize(gs.stream));
    std::memcpy(st.x.data(), gs.h_x, bytes);
}

// x (n floats on the device) as the dot kernels of weight type t take it: x itself for F32 vectors, else converted
// into the scratch's xq (queued on the stream; valid until the next conversion).
const void* prepare_on_device(LlamaGpuState& gs, DType t, const float* x, int64_t n) {
    if (dot_vec_type(t) == DType::DTYPE_F32) return x;
    void* xq = gs.arena.at(gs.lay.xq);
    gpu::dot_prepare_vec(t, x, xq, n, gs.stream);
    return xq;
}

// Layer l's attention over its device cache for queries q, positions 0 .. n_kv-1; out and scores in the scratch.
AttentionArgs device_attention_args(const ModelInfo& info, const LlamaGpuState& gs, int l, const float* q, int n_kv) {
    AttentionArgs a;
    a.q = q;
    a.k_cache = gs.k_cache[l];
    a.v_cache = gs.v_cache[l];
    a.k_type = gs.k_type;
    a.v_type = gs.v_type;
    a.out = gs.dev<float>(gs.lay.attn);
    a.scores = gs.dev<float>(gs.lay.att_scratch);
    a.n_kv = n_kv;
    a.n_heads = info.n_heads;
    a.n_kv_heads = info.n_kv_heads;
    a.head_dim = info.head_dim;
    a.kv_stride = info.kv_dim;
    a.scale = 1.0f / std::sqrt((float)info.head_dim);
    return a;
}

// The sides of a decode step. The host thread runs the CPU's share of the work; the GPU's share is queued on the
// stream by the session's queue thread (when the step hands work between the sides), so that queueing a layer's
// kernels, which costs about as much host time as the layer's cold neurons, is not on the CPU's path. Both sides
// walk the same sequence of layer parts (walk below), and every point where one side needs the other's results is
// a handoff through a counter in pinned memory (kernels-gpu/host-sync.h): device to host, one kernel writes the data
// through to pinned memory and then the counter; host to device, the stream waits for the host's store before it
// reads the host's data (a kernel reading it over the bus, or the residual's copy up).
enum class FfnSide { FFN_GPU_DENSE, FFN_SPLIT, FFN_CPU };

class DecodeStep {
public:
    DecodeStep(const ModelInfo& info, const LlamaModel& m, const LlamaGpu& g, LlamaGpuState& gs, LlamaState& st,
               ThreadPool& pool)
        : info_(info), m_(m), g_(g), gs_(gs), st_(st), pool_(pool), s_(gs.stream) {
        // Whether the host ever waits for the stream (a dry run of the walk): the residual going down, a split
        // layer's cold inputs. Without such a wait the host can run its whole walk first (its stores for the stream
        // never wait) and queue the GPU's work after it, on this thread.
        struct Count {
            const DecodeStep& d;
            int n = 0;
            void layer(int) {}
            void x_up() {}
            void x_down() { n++; }
            void attention(int, bool) {}
            void ffn(int l, FfnSide f) { n += f == FfnSide::FFN_SPLIT && !d.g_.layers[l].cold.empty() ? 1 : 0; }
            void output(bool) {}
        } count{*this};
        walk(count, true);
        host_waits_ = count.n > 0;
    }

    // One token at pos; with want_logits its logits go to logits_out (n_vocab floats).
    void run(int32_t token, int pos, bool want_logits, float* logits_out) {
        const SparseFfnStats before = st_.sparse_stats;
        if (gs_.trace) begin_trace();
        llama_set_positions(st_, 1, pos, want_logits ? LlamaLogits::LLAMA_LOGITS_LAST : LlamaLogits::LLAMA_LOGITS_NONE);
        llama_embed(info_, m_, st_, &token, 1);
        host_bytes_ = dtype_row_bytes(m_.tok_embd.type, info_.dim);
        gpu_bytes_ = 0;
        cpu_sparse_layer0_ = false;
        // The stream is idle between steps: both counters restart from 0, so that a step's handoff targets are the
        // same numbers in every step, and a captured graph replays them.
        *gs_.h2d_counter() = 0;
        *gs_.d2h_counter() = 0;
        *gs_.h_pos = pos;
        // Traced steps are queued launch by launch, around their events; so is a session's first step (older drivers
        // cannot load a kernel's module while a stream captures).
        const bool graph = !gs_.trace && gs_.graphs_warm && !gs_.graphs_off;
        GpuSide gpu{*this, pos, 0, 0, graph};
        HostSide host{*this, 0, 0};
        host_layer_.store(-1, std::memory_order_relaxed);
        auto queue = [this, &gpu, want_logits] {
            try {
                CUDA_CHECK(cudaMemcpyAsync(gs_.dev<int32_t>(gs_.lay.pos), gs_.h_pos, sizeof(int32_t),
                                           cudaMemcpyHostToDevice, s_));
                pending_ = pending_host_ = nullptr;
                walk(gpu, want_logits);
                settle();
                // Hot neurons predicted and fired per layer, written on the device.
                CUDA_CHECK(cudaMemcpyAsync(gs_.h_counts, gs_.dev<int32_t>(gs_.lay.counts),
                                           2 * info_.n_layers * sizeof(int32_t), cudaMemcpyDeviceToHost, s_));
            } catch (...) {
                cudaGetLastError();  // this thread's error state, which the next step's launch checks would see
                throw;
            }
        };
        const bool launched = graph && launch_graph(queue, pos, want_logits);  // the GPU's whole step in one launch
        if (!launched) {  // queued launch by launch; a failed capture queued nothing
            gpu.h2d = gpu.d2h = 0;
            gpu.capture = false;
        }
        if (launched) {
            try {
                walk(host, want_logits);  // then the host's part
            } catch (...) {
                host.publish(kAbandon);  // every wait of the graph passes, so that the stream drains
                cudaStreamSynchronize(s_);
                throw;
            }
        } else if (!host_waits_) {
            walk(host, want_logits);  // the CPU's layers, if any, then its stores for the stream
            queue();
        } else {
            gs_.queue.post(queue);
            try {
                walk(host, want_logits);
            } catch (...) {
                // Let the queue thread finish and every wait the stream has or will have pass, so that it drains;
                // then report the queue's own failure first, if it had one (the host's may only be its consequence).
                host_layer_.store(INT_MAX, std::memory_order_release);
                host.publish(kAbandon);
                gs_.queue.wait();
                throw;
            }
            gs_.queue.wait();
        }
        CUDA_CHECK(cudaStreamSynchronize(s_));
        if (want_logits && g_.output)
            std::memcpy(logits_out, gs_.h_logits, (size_t)info_.n_vocab * sizeof(float));
        else if (want_logits && logits_out != st_.logits.data())
            std::memcpy(logits_out, st_.logits.data(), (size_t)info_.n_vocab * sizeof(float));
        account(before);
        gs_.graphs_warm = true;
        if (gs_.trace) end_trace();
    }

private:
    // A host-to-device target this far ahead releases every wait of an abandoned step.
    static constexpr uint32_t kAbandon = 1u << 30;

    // Launches the step's GPU work as a CUDA graph: captured from `queue` (which queues it) the first time, and again
    // when logits are wanted or not, or when the attention's split count changes (every 128 positions); otherwise
    // the graph replays, reading the position from the device and the handoff targets, the same every step, from
    // its own nodes. One launch instead of a dozen per layer: the GPU runs the kernels back to back.
    // Returns false, with nothing queued, when the capture fails: the session then runs launch by launch (a real
    // error shows up again there).
    template <typename Queue>
    bool launch_graph(Queue& queue, int pos, bool want_logits) {
        const int key = want_logits ? 1 : 0;
        const int splits = gpu::attention_splits(pos + 1);
        cudaGraphExec_t& exec = gs_.graphs[key];
        if (!exec || gs_.graph_splits[key] != splits) {
            if (exec) {
                CUDA_CHECK(cudaGraphExecDestroy(exec));
                exec = nullptr;
            }
            try {
                CUDA_CHECK(cudaStreamBeginCapture(s_, cudaStreamCaptureModeThreadLocal));
                cudaGraph_t g = nullptr;
                try {
                    queue();
                } catch (...) {
                    cudaStreamEndCapture(s_, &g);  // leaves capture mode; the partial graph is dropped
                    if (g) cudaGraphDestroy(g);
                    throw;
                }
                CUDA_CHECK(cudaStreamEndCapture(s_, &g));
                const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
                cudaGraphDestroy(g);
                if (e != cudaSuccess) exec = nullptr;
                CUDA_CHECK(e);
            } catch (const std::exception& e) {
                cudaGetLastError();
                gs_.graphs_off = true;
                std::fprintf(stderr, "warning: the GPU decode step could not be captured as a CUDA graph (%s); its "
                             "kernels are launched one by one\n", e.what());
                return false;
            }
            gs_.graph_splits[key] = splits;
        }
        CUDA_CHECK(cudaGraphLaunch(exec, s_));
        return true;
    }

    // The queue thread stays at most this many layers ahead of the host: enough to keep the stream fed, few enough
    // that the stream's queue never fills (a launch into a full queue blocks inside the driver, which then also
    // blocks the host's stream queries).
    static constexpr int kQueueLead = 4;
    std::atomic<int> host_layer_{-1};  // the layer the host side has reached
    std::atomic<bool> queue_parked_{false};  // the queue thread is waiting for the host, not in a CUDA call
    static constexpr std::chrono::seconds kHandoffTimeout{60};

    const ModelInfo& info_;
    const LlamaModel& m_;
    const LlamaGpu& g_;
    LlamaGpuState& gs_;
    LlamaState& st_;
    ThreadPool& pool_;
    cudaStream_t s_;
    bool host_waits_ = false;
    uint64_t host_bytes_ = 0, gpu_bytes_ = 0;
    uint64_t split_predicted_ = 0, split_fired_ = 0, split_neurons_ = 0;
    std::vector<uint64_t> split_host_bytes_;  // (n_layers) this step's cold rows per split layer, else empty
    bool cpu_sparse_layer0_ = false;

    // The step's parts in order, with the residual moving where the next part runs: side.x_up() / x_down() move
    // it, side.attention(l, on_gpu), side.ffn(l, where), side.output(on_gpu) do (or queue) a part.
    template <typename Side>
    void walk(Side& side, bool want_logits) const {
        bool on_gpu = false;  // the embedding is on the host
        auto move_to = [&](bool gpu) {
            if (gpu == on_gpu) return;
            if (gpu)
                side.x_up();
            else
                side.x_down();
            on_gpu = gpu;
        };
        for (int l = 0; l < info_.n_layers; l++) {
            const LlamaGpuLayer& G = g_.layers[l];
            side.layer(l);
            move_to(G.attn);
            side.attention(l, G.attn);
            const FfnSide f = G.ffn_dense ? FfnSide::FFN_GPU_DENSE : G.split ? FfnSide::FFN_SPLIT : FfnSide::FFN_CPU;
            move_to(f != FfnSide::FFN_CPU);
            side.ffn(l, f);
        }
        if (want_logits) {
            move_to(g_.output);
            side.output(g_.output);
        }
    }

    float* dev(size_t off) const { return gs_.dev<float>(off); }

    // ---- the GPU's side: queues work on the stream ----
    struct GpuSide {
        DecodeStep& d;
        int pos;
        uint32_t h2d, d2h;  // the last handoff targets queued
        bool capture;       // queued into a graph: nothing runs before the whole step is launched

        void layer(int l) {
            if (capture || d.host_layer_.load(std::memory_order_acquire) >= l - kQueueLead) return;
            d.queue_parked_.store(true, std::memory_order_release);  // holds no driver lock while it waits here
            while (d.host_layer_.load(std::memory_order_acquire) < l - kQueueLead) std::this_thread::yield();
            d.queue_parked_.store(false, std::memory_order_release);
        }
        void wait_host() { gpu::wait_host_counter(d.gs_.h2d_counter(), ++h2d, d.s_); }
        void x_up() {
            wait_host();
            CUDA_CHECK(cudaMemcpyAsync(d.dev(d.gs_.lay.x), d.gs_.h_x, d.info_.dim * sizeof(float),
                                       cudaMemcpyHostToDevice, d.s_));
        }
        void x_down() {  // written through to pinned memory and signalled by one kernel, no copy-engine operation
            d.settle();
            gpu::copy_to_host_and_signal(d.gs_.h_x, d.dev(d.gs_.lay.x), d.info_.dim, d.gs_.d2h_counter(), ++d2h,
                                         d.s_);
        }
        void attention(int l, bool on_gpu) {
            if (!on_gpu) return;
            const cudaEvent_t b = d.gpu_mark();
            d.attention(l, d.g_.layers[l], pos);
            d.gpu_span(l, "attention", b);
        }
        void ffn(int l, FfnSide f) {
            const LlamaGpuLayer& G = d.g_.layers[l];
            if (f == FfnSide::FFN_GPU_DENSE) {
                const cudaEvent_t b = d.gpu_mark();
                d.ffn_dense(G);
                d.gpu_span(l, "ffn dense", b);
            } else if (f == FfnSide::FFN_SPLIT) {
                d.ffn_split_gpu(l, G, *this);
            }
        }
        void output(bool on_gpu) {
            if (!on_gpu) return;
            const cudaEvent_t b = d.gpu_mark();
            const DeviceWeight& w = d.g_.output_w;
            const void* xq = d.norm_input(d.g_.output_norm, w.type);
            float* logits = d.dev(d.gs_.lay.logits);
            gpu::matvec(w.type, w.data, xq, logits, w.n_rows, w.n_cols, d.s_);
            d.gpu_span(-1, "output", b);
            CUDA_CHECK(cudaMemcpyAsync(d.gs_.h_logits, logits, d.info_.n_vocab * sizeof(float),
                                       cudaMemcpyDeviceToHost, d.s_));
        }
    };

    // ---- the CPU's side: runs on this thread ----
    struct HostSide {
        DecodeStep& d;
        uint32_t h2d, d2h;  // the last handoff targets passed

        void layer(int l) { d.host_layer_.store(l, std::memory_order_release); }
        void publish(uint32_t v) {
            std::atomic_thread_fence(std::memory_order_release);  // the data before the counter
            *d.gs_.h2d_counter() = v;
        }
        // Until the stream has signalled handoff `target`; throws if the stream or the queue thread failed, or
        // after kHandoffTimeout without a signal (a stream that stopped must not hang the program).
        void await(int layer, uint32_t target) {
            volatile uint32_t* c = d.gs_.d2h_counter();
            if (gpu::counter_reached(*c, target)) {
                std::atomic_thread_fence(std::memory_order_acquire);  // the data after the counter
                return;
            }
            const double t0 = d.now_ms();
            const auto start = Clock::now();
            for (uint32_t i = 1; !gpu::counter_reached(*c, target); i++) {
                if (i % 4096 == 0 && Clock::now() - start > kHandoffTimeout)
                    throw Error("GPU decode step: no handoff from the stream for " +
                                std::to_string(kHandoffTimeout.count()) + " s at layer " + std::to_string(layer));
                // Queries only while the queue thread is in no CUDA call (done, or waiting for the host): a query can
                // wait for a driver lock that a launch holds.
                const bool busy = d.gs_.queue.busy();
                if (i % 4096 == 0 && (!busy || d.queue_parked_.load(std::memory_order_acquire))) {
                    if (d.gs_.queue.failed()) throw Error("GPU decode step: queueing the GPU's work failed");
                    const cudaError_t e = cudaStreamQuery(d.s_);
                    if (e != cudaSuccess && e != cudaErrorNotReady) CUDA_CHECK(e);
                    // An idle stream means the handoff will never come only once everything is queued: a parked
                    // queue thread may already be released by this host and just not have run since (a loaded
                    // CPU), with this layer's work still to queue.
                    const uint32_t seen = *c;
                    if (!busy && e == cudaSuccess && !gpu::counter_reached(seen, target))
                        throw Error("GPU decode step: the stream finished without handing over to the host (layer " +
                                    std::to_string(layer) + ", handoff " + std::to_string(target) + ", counter " +
                                    std::to_string(seen) + ")");
                }
                cpu_pause();
            }
            std::atomic_thread_fence(std::memory_order_acquire);
            d.cpu_span(layer, "wait", t0);
        }
        void x_up() {
            std::memcpy(d.gs_.h_x, d.st_.x.data(), d.info_.dim * sizeof(float));
            publish(++h2d);
        }
        void x_down() {
            await(-1, ++d2h);
            std::memcpy(d.st_.x.data(), d.gs_.h_x, d.info_.dim * sizeof(float));
        }
        void attention(int l, bool on_gpu) {
            const LlamaLayer& L = d.m_.layers[l];
            const uint64_t bytes = L.wq.bytes() + L.wk.bytes() + L.wv.bytes() + L.wo.bytes();
            if (on_gpu) {
                d.gpu_bytes_ += bytes;
                return;
            }
            const double t0 = d.now_ms();
            llama_attention_block(d.info_, d.m_, l, d.st_, 1, d.pool_);
            d.cpu_span(l, "attention", t0);
            d.host_bytes_ += bytes;
        }
        void ffn(int l, FfnSide f) {
            const LlamaLayer& L = d.m_.layers[l];
            const uint64_t bytes = L.w_gate.bytes() + L.w_up.bytes() + L.w_down.bytes();
            if (f == FfnSide::FFN_GPU_DENSE) {
                d.gpu_bytes_ += bytes;
            } else if (f == FfnSide::FFN_SPLIT) {
                d.ffn_split_host(l, *this);
            } else {
                const double t0 = d.now_ms();
                llama_ffn_block(d.info_, d.m_, l, d.st_, 1, d.pool_);
                d.cpu_span(l, d.m_.sparse.empty() ? "ffn dense" : "ffn cold", t0);
                if (d.m_.sparse.empty()) d.host_bytes_ += bytes;
                if (!d.m_.sparse.empty() && l == 0) d.cpu_sparse_layer0_ = true;
            }
        }
        void output(bool on_gpu) {
            if (on_gpu) {
                d.gpu_bytes_ += d.m_.output.bytes();
                return;
            }
            const double t0 = d.now_ms();
            llama_output(d.info_, d.m_, d.st_, d.pool_);
            d.cpu_span(-1, "output", t0);
            d.host_bytes_ += d.m_.output.bytes();
        }
    };

    static void cpu_pause() {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }

    // x (n floats on the device) prepared for weights of type t: F32/F16/BF16 read it as it is.
    const void* prepare(DType t, const float* x, int64_t n) { return prepare_on_device(gs_, t, x, n); }
    void linear(const DeviceWeight& w, const float* x, float* y) {
        gpu::matvec(w.type, w.data, prepare(w.type, x, w.n_cols), y, w.n_rows, w.n_cols, s_);
    }

    // A part's output that the residual x still lacks: the next part adds it in the launch of its RMSNorm
    // (norm_input), or settle() adds it before x leaves the GPU or the step ends. pending_host_: the host's cold sum
    // of a split FFN, in pinned memory, added after pending_ (as add_from_host does). Queue thread only.
    const float* pending_ = nullptr;
    const float* pending_host_ = nullptr;

    // xn = rmsnorm(x + pending) * w, with x updated, in one launch that also prepares xn as Q8_0 activations
    // (gs_.lay.xq) when weights of type t read those. Returns the input of t's matvec: the Q8_0 vector or xn.
    const void* norm_input(const float* w, DType t) { return norm_input(w, dot_vec_type(t) != DType::DTYPE_F32); }
    const void* norm_input(const float* w, bool q8) {
        float* xn = dev(gs_.lay.xn);
        void* xq = q8 ? gs_.arena.at(gs_.lay.xq) : nullptr;
        gpu::add_rmsnorm(dev(gs_.lay.x), pending_, w, info_.dim, info_.norm_eps, xn, xq, s_, pending_host_);
        pending_ = pending_host_ = nullptr;
        return q8 ? xq : xn;
    }
    void settle() {
        if (pending_host_ != nullptr)
            gpu::add_from_host(dev(gs_.lay.x), pending_, pending_host_, info_.dim, s_);
        else if (pending_ != nullptr)
            gpu::add_inplace(dev(gs_.lay.x), pending_, info_.dim, s_);
        pending_ = pending_host_ = nullptr;
    }

    void attention(int l, const LlamaGpuLayer& G, int pos) {
        const int kv_dim = info_.kv_dim;
        float* xn = dev(gs_.lay.xn);
        float* q = dev(gs_.lay.q);
        float* k = dev(gs_.lay.k);
        float* v = dev(gs_.lay.v);
        const int* d_pos = gs_.dev<int>(gs_.lay.pos);  // the position on the device: graphs replay for any
        const void* xq = norm_input(G.attn_norm, G.wk.type);
        if (kvq_in_one_matvec(G, k, v, q)) {
            const int64_t rows = G.wk.n_rows + G.wv.n_rows + G.wq.n_rows;
            gpu::matvec(G.wk.type, G.wk.data, xq, k, rows, G.wk.n_cols, s_);
        } else {  // types differ: the upload stored them apart
            linear(G.wq, xn, q);
            linear(G.wk, xn, k);
            linear(G.wv, xn, v);
        }
        // RoPE on q and k, k and v into the cache rows at the position.
        gpu::rope_store_kv(q, info_.n_heads, k, v, info_.n_kv_heads, gs_.k_cache[l], gs_.k_type, gs_.v_cache[l],
                           gs_.v_type, kv_dim, d_pos, llama_rope_params(info_), s_);
        const AttentionArgs a = device_attention_args(info_, gs_, l, q, pos + 1);
        // The attention's output prepared for a quantized wo in the same launch, where whole heads make Q8_0 blocks.
        const bool wo_q8 = dot_vec_type(G.wo.type) != DType::DTYPE_F32 && info_.head_dim % 32 == 0;
        void* out_q8 = wo_q8 ? gs_.arena.at(gs_.lay.xq) : nullptr;
        gpu::attention_heads_at(a, d_pos, 0, info_.n_heads, s_, out_q8);
        const void* wo_in = wo_q8 ? out_q8 : prepare(G.wo.type, a.out, G.wo.n_cols);
        float* tmp = dev(gs_.lay.tmp);
        gpu::matvec(G.wo.type, G.wo.data, wo_in, tmp, G.wo.n_rows, G.wo.n_cols, s_);
        pending_ = tmp;
    }

    void ffn_dense(const LlamaGpuLayer& G) {
        float* xn = dev(gs_.lay.xn);
        float* gate = dev(gs_.lay.gate);
        float* up = dev(gs_.lay.up);
        const void* xq = norm_input(G.ffn_norm, G.gate.type);
        if (rows_follow(G.gate, G.up)) {  // gate[0, 2 n_ff) holds the gate products, then the up ones
            up = gate + G.gate.n_rows;
            gpu::matvec(G.gate.type, G.gate.data, xq, gate, G.gate.n_rows + G.up.n_rows, G.gate.n_cols, s_);
        } else {  // types differ: the upload stored them apart
            linear(G.gate, xn, gate);
            linear(G.up, xn, up);
        }
        // The activation prepares the down matvec's input in its own launch.
        void* down_q8 = dot_vec_type(G.down.type) != DType::DTYPE_F32 ? gs_.arena.at(gs_.lay.xq) : nullptr;
        if (info_.ffn_act == "relu")
            gpu::reglu(gate, gate, up, info_.n_ff, s_, down_q8);
        else
            gpu::swiglu(gate, gate, up, info_.n_ff, s_, down_q8);
        float* tmp = dev(gs_.lay.tmp);
        const DeviceWeight& down = G.down;
        gpu::matvec(down.type, down.data, down_q8 ? down_q8 : gate, tmp, down.n_rows, down.n_cols, s_);
        pending_ = tmp;
    }

    // The split FFN's GPU part: the predictor, the cold neurons' inputs handed down, the hot neurons; then, once the
    // host's part is up, the residual additions (see the header).
    void ffn_split_gpu(int l, const LlamaGpuLayer& G, GpuSide& side) {
        const int dim = info_.dim;
        float* xn = dev(gs_.lay.xn);
        float* scores = dev(gs_.lay.scores);
        int32_t* counts = gs_.dev<int32_t>(gs_.lay.counts);
        const int n_cold = (int)G.cold.size();
        const cudaEvent_t b = gpu_mark();
        // One Q8_0 preparation of xn serves the predictor, the hot gate/up rows and the host's cold ones, whichever
        // read one.
        const SparseGateUpWeights w = llama_gate_up_weights(info_, G.hot_gate.type, G.hot_gate.data, G.hot_up.data);
        const bool pred_q8 = dot_vec_type(G.predictor.type) != DType::DTYPE_F32;
        const bool hot_q8 = G.n_hot > 0 && dot_vec_type(w.wt) != DType::DTYPE_F32;
        const bool host_q8 = n_cold > 0 && dot_vec_type(m_.layers[l].w_gate.type) != DType::DTYPE_F32;
        const void* xq = norm_input(G.ffn_norm, pred_q8 || hot_q8 || host_q8);
        gpu::PredictorGpuScratch ps;
        ps.xq = gs_.arena.at(gs_.lay.pred_xq);
        ps.hidden = dev(gs_.lay.pred_hidden);
        gpu::predictor_hidden(G.predictor, xn, ps, s_, pred_q8 ? xq : nullptr);
        // The cold scores first: the host starts on their verdicts while the GPU makes the hot ones.
        gpu::predictor_scores_rows(G.predictor, ps, G.n_hot, G.predictor.n_ff, scores, s_);
        if (n_cold > 0) {  // xn as the host's dot products take it and the cold neurons' verdicts, then the signal
            gpu::SplitFfnHandoff h;
            h.host_x = gs_.h_xn;
            h.x = xn;
            h.x_q8 = host_q8 ? xq : nullptr;
            h.n = dim;
            h.host_bits = gs_.h_cold_bits;
            h.scores = scores + G.n_hot;
            h.n_scores = n_cold;
            h.threshold = G.predictor.threshold;
            gpu::hand_split_ffn_inputs_to_host(h, gs_.d2h_counter(), ++side.d2h, s_);
        }
        gpu::predictor_scores_rows(G.predictor, ps, 0, G.n_hot, scores, s_);
        float* y_hot = dev(gs_.lay.y_hot);
        if (G.n_hot > 0) {
            int32_t* active = gs_.dev<int32_t>(gs_.lay.hot_active);
            float* h = dev(gs_.lay.h);
            gpu::predictor_active(scores, G.n_hot, G.predictor.threshold, active, counts + l, s_);
            gpu::sparse_gate_up(w, hot_q8 ? xq : xn, active, counts + l, G.n_hot, h, s_);
            gpu::count_nonzero(h, counts + l, counts + info_.n_layers + l, s_);
            gpu::sparse_down(G.hot_down_t.type, G.hot_down_t.data, h, active, counts + l, y_hot, dim,
                             dev(gs_.lay.down_scratch), s_);
        } else {
            CUDA_CHECK(cudaMemsetAsync(counts + l, 0, sizeof(int32_t), s_));
            CUDA_CHECK(cudaMemsetAsync(counts + info_.n_layers + l, 0, sizeof(int32_t), s_));
        }
        gpu_span(l, "ffn hot", b);
        // The sums are left for the next part's norm; the cold one is read from pinned memory once the host has
        // stored it.
        pending_ = G.n_hot > 0 ? y_hot : nullptr;
        if (n_cold > 0) {
            side.wait_host();
            pending_host_ = gs_.h_y;
        }
    }

    // The split FFN's host part: the cold neurons the GPU found predicted active, their sum handed up.
    void ffn_split_host(int l, HostSide& side) {
        const LlamaGpuLayer& G = g_.layers[l];
        const LlamaLayer& L = m_.layers[l];
        const LlamaSparseFfn& S = m_.sparse[l];
        const int dim = info_.dim;
        const int n_cold = (int)G.cold.size();
        gpu_bytes_ += S.predictor.bytes();
        split_neurons_ += info_.n_ff;
        if (n_cold == 0) return;
        side.await(l, ++side.d2h);
        const double t0 = now_ms();
        int32_t* active = gs_.cold_active.data();
        const int k = predictor_active_bits(gs_.h_cold_bits, G.cold.data(), n_cold, active);
        // h_xn holds the input prepared for these rows' dot products (ffn_split_gpu).
        const SparseGateUpWeights w = llama_gate_up_weights(info_, L);
        llama_sparse_rows(S, w, gs_.h_xn, active, k, gs_.cold_h.data(), gs_.h_y, st_, pool_);
        side.publish(++side.h2d);
        cpu_span(l, "ffn cold", t0, now_ms());
        int64_t fired = 0;
        for (int j = 0; j < k; j++) fired += gs_.cold_h[j] != 0.0f;
        split_predicted_ += k;
        split_fired_ += fired;
        const uint64_t cold_bytes =
            (uint64_t)k * dtype_row_bytes(L.w_gate.type, dim) +
            (uint64_t)fired * (dtype_row_bytes(L.w_up.type, dim) + dtype_row_bytes(S.w_down_t.type, dim));
        host_bytes_ += cold_bytes;
        split_host_bytes_.resize(info_.n_layers, 0);
        split_host_bytes_[l] += cold_bytes;
    }

    // Counters: tokens and bytes per side. The CPU FFN layers counted themselves through llama_sparse_ffn_token,
    // whose layer 0 also adds the CPU engine's whole dense share: that part is replaced by what each side read.
    void account(const SparseFfnStats& before) {
        if (m_.sparse.empty()) return;
        SparseFfnStats& s = st_.sparse_stats;
        uint64_t cpu_ffn_bytes = s.decode_weight_bytes - before.decode_weight_bytes;
        if (cpu_sparse_layer0_) {
            cpu_ffn_bytes -= info_.weight_bytes_per_token - info_.ffn_bytes_per_token;
            s.tokens -= 1, s.decode_tokens -= 1;
        }
        int64_t hot_predicted = 0, hot_fired = 0;
        if (g_.split) {
            s.decode_split_host_bytes.resize(info_.n_layers, 0);
            s.decode_split_gpu_bytes.resize(info_.n_layers, 0);
        }
        for (int l = 0; l < info_.n_layers; l++) {
            if (!g_.layers[l].split) continue;
            if (l < (int)split_host_bytes_.size()) s.decode_split_host_bytes[l] += split_host_bytes_[l];
            if (g_.layers[l].n_hot == 0) continue;
            hot_predicted += gs_.h_counts[l];
            hot_fired += gs_.h_counts[info_.n_layers + l];
            const LlamaLayer& L = m_.layers[l];
            const uint64_t hot_bytes =
                (uint64_t)gs_.h_counts[l] * dtype_row_bytes(L.w_gate.type, info_.dim) +
                (uint64_t)gs_.h_counts[info_.n_layers + l] *
                    (dtype_row_bytes(L.w_up.type, info_.dim) + dtype_row_bytes(L.w_down.type, info_.dim));
            gpu_bytes_ += hot_bytes;
            s.decode_split_gpu_bytes[l] += hot_bytes;
        }
        split_host_bytes_.clear();
        s.tokens += 1;
        s.decode_tokens += 1;
        s.neurons += split_neurons_;
        s.predicted += split_predicted_ + (uint64_t)hot_predicted;
        s.fired += split_fired_ + (uint64_t)hot_fired;
        s.decode_weight_bytes = before.decode_weight_bytes + cpu_ffn_bytes + host_bytes_;
        s.decode_gpu_weight_bytes += gpu_bytes_;
        split_neurons_ = split_predicted_ = split_fired_ = 0;
    }

    // ---- tracing ----
    double now_ms() const {
        return gs_.trace ? std::chrono::duration<double, std::milli>(Clock::now() - gs_.t_ref).count() : 0.0;
    }
    void begin_trace() {
        CUDA_CHECK(cudaStreamSynchronize(s_));
        gs_.events_used = 0;
        gs_.gpu_spans.clear();
        gs_.timeline = DecodeTimeline();
        CUDA_CHECK(cudaEventRecord(gs_.ev_ref, s_));
        CUDA_CHECK(cudaEventSynchronize(gs_.ev_ref));
        gs_.t_ref = Clock::now();
    }
    cudaEvent_t gpu_mark() {
        if (!gs_.trace) return nullptr;
        const cudaEvent_t e = gs_.next_event();
        CUDA_CHECK(cudaEventRecord(e, s_));
        return e;
    }
    void gpu_span(int layer, const char* what, cudaEvent_t b) {
        if (!gs_.trace) return;
        gs_.gpu_spans.push_back({layer, what, b, gpu_mark()});
    }
    void cpu_span(int layer, const char* what, double t0) { cpu_span(layer, what, t0, now_ms()); }
    void cpu_span(int layer, const char* what, double t0, double t1) {
        if (!gs_.trace) return;
        gs_.timeline.spans.push_back({layer, what, false, t0, t1});
    }
    void end_trace() {
        DecodeTimeline& t = gs_.timeline;
        t.total_ms = now_ms();
        for (const auto& p : gs_.gpu_spans) {
            float b = 0, e = 0;
            CUDA_CHECK(cudaEventElapsedTime(&b, gs_.ev_ref, p.b));
            CUDA_CHECK(cudaEventElapsedTime(&e, gs_.ev_ref, p.e));
            t.spans.push_back({p.layer, p.what, true, b, e});
        }
        std::sort(t.spans.begin(), t.spans.end(),
                  [](const DecodeTimeline::Span& a, const DecodeTimeline::Span& b) { return a.begin_ms < b.begin_ms; });
        std::vector<std::pair<double, double>> gpu, cpu_work;
        for (const auto& s : t.spans) {
            if (s.gpu)
                gpu.emplace_back(s.begin_ms, s.end_ms);
            else if (s.what != "wait")
                cpu_work.emplace_back(s.begin_ms, s.end_ms);
        }
        t.gpu_busy_ms = union_ms(gpu);
        t.cpu_busy_ms = union_ms(cpu_work);
    }
};

// A prompt in batches of up to kBatch tokens: projections through cuBLAS (gpu::matmul), RoPE and causal attention over
// the batch on the GPU, and the CPU's layers through the CPU engine's own batch code. Weights are read once per
// batch, not once per token: dense layers and a split layer's hot rows as GEMMs, while the CPU reads each cold row
// the batch's tokens predicted once for all of them (sparse_ffn_batch; ffn_split).
class BatchStep {
public:
    BatchStep(const ModelInfo& info, const LlamaModel& m, const LlamaGpu& g, LlamaGpuState& gs, LlamaState& st,
              ThreadPool& pool)
        : info_(info), m_(m), g_(g), gs_(gs), st_(st), pool_(pool), s_(gs.stream) {
        ws_.handle = gs.cublas;
        ws_.ptr = gs.arena.at(gs.lay.gemm);
        ws_.bytes = gs.lay.gemm_bytes;
    }

    // n (<= kBatch) tokens at pos0 ..; the logits of `rows` (ascending indices into the n tokens) go to out, one
    // n_vocab row each.
    void run(const int32_t* tokens, int n, int pos0, const std::vector<int>& rows, float* out) {
        llama_set_positions(st_, n, pos0, LlamaLogits::LLAMA_LOGITS_NONE);
        st_.out_rows = rows;
        llama_embed(info_, m_, st_, tokens, n);
        n_ = n;
        on_gpu_ = false;
        // The batch's tokens count once, whichever layer kinds (CPU FFN layers count their own) ran.
        const uint64_t tokens0 = st_.sparse_stats.tokens;
        for (int l = 0; l < info_.n_layers; l++) {
            const LlamaGpuLayer& G = g_.layers[l];
            if (G.attn) {
                to_gpu();
                attention(l, G, pos0);
            } else {
                to_host();
                llama_attention_block(info_, m_, l, st_, n, pool_);
            }
            if (G.ffn_dense) {
                to_gpu();
                ffn_dense(l, G);
            } else if (G.split) {
                to_gpu();
                ffn_split(l, G);
            } else {
                to_host();
                llama_ffn_block(info_, m_, l, st_, n, pool_);
            }
        }
        if (!m_.sparse.empty()) st_.sparse_stats.tokens = tokens0 + (uint64_t)n;
        if (rows.empty()) {
            CUDA_CHECK(cudaStreamSynchronize(s_));
            account_hot();
            return;
        }
        const size_t n_vocab = (size_t)info_.n_vocab;
        if (g_.output) {
            to_gpu();
            float* logits = dev(gs_.lay.logits);
            for (size_t r0 = 0; r0 < rows.size(); r0 += kOutRows) {
                const int cnt = (int)std::min<size_t>(kOutRows, rows.size() - r0);
                float* xn = dev(gs_.lay.xn);
                for (int j = 0; j < cnt; j++)  // rows may not be adjacent: normalise each into place
                    gpu::rmsnorm(xn + (size_t)j * info_.dim, dev(gs_.lay.x) + (size_t)rows[r0 + j] * info_.dim,
                                 g_.output_norm, info_.dim, info_.norm_eps, 1, s_);
                gpu::matmul(g_.output_w.type, g_.output_w.data, xn, logits, cnt, g_.output_w.n_rows,
                            g_.output_w.n_cols, ws_, s_);
                CUDA_CHECK(cudaMemcpyAsync(gs_.h_logits, logits, cnt * n_vocab * sizeof(float),
                                           cudaMemcpyDeviceToHost, s_));
                CUDA_CHECK(cudaStreamSynchronize(s_));
                std::memcpy(out + r0 * n_vocab, gs_.h_logits, cnt * n_vocab * sizeof(float));
            }
        } else {
            to_host();
            llama_output(info_, m_, st_, pool_);
            if (out != st_.logits.data()) std::memcpy(out, st_.logits.data(), rows.size() * n_vocab * sizeof(float));
        }
        CUDA_CHECK(cudaStreamSynchronize(s_));
        account_hot();
    }

private:
    const ModelInfo& info_;
    const LlamaModel& m_;
    const LlamaGpu& g_;
    LlamaGpuState& gs_;
    LlamaState& st_;
    ThreadPool& pool_;
    cudaStream_t s_;
    gpu::GemmWorkspace ws_;
    int n_ = 0;
    bool on_gpu_ = false;
    std::vector<int> hot_layers_;  // split layers whose hot counts are on their way to h_batch_counts

    float* dev(size_t off) const { return gs_.dev<float>(off); }

    void to_gpu() {
        if (on_gpu_) return;
        residual_up(info_, gs_, st_, n_);
        on_gpu_ = true;
    }
    void to_host() {
        if (!on_gpu_) return;
        residual_down(info_, gs_, st_, n_);
        on_gpu_ = false;
    }
    void linear(const DeviceWeight& w, const float* x, float* y) {
        gpu::matmul(w.type, w.data, x, y, n_, w.n_rows, w.n_cols, ws_, s_);
    }

    void attention(int l, const LlamaGpuLayer& G, int pos0) {
        const int kv_dim = info_.kv_dim, n = n_;
        float* x = dev(gs_.lay.x);
        float* xn = dev(gs_.lay.xn);
        float* q = dev(gs_.lay.q);
        // The batch's positions are adjacent cache rows. F32 caches take the keys and values in place; for F16 ones
        // they are computed in the FFN's gate and up scratch (free during attention; n_ff >= kv_dim) and rounded
        // into the cache after RoPE.
        const bool k_f32 = gs_.k_type == DType::DTYPE_F32, v_f32 = gs_.v_type == DType::DTYPE_F32;
        const int64_t before = (int64_t)pos0 * kv_dim;
        uint8_t* k_cache_rows = static_cast<uint8_t*>(gs_.k_cache[l]) + dtype_row_bytes(gs_.k_type, before);
        uint8_t* v_cache_rows = static_cast<uint8_t*>(gs_.v_cache[l]) + dtype_row_bytes(gs_.v_type, before);
        float* k_rows = k_f32 ? reinterpret_cast<float*>(k_cache_rows) : dev(gs_.lay.gate);
        float* v_rows = v_f32 ? reinterpret_cast<float*>(v_cache_rows) : dev(gs_.lay.up);
        gpu::rmsnorm(xn, x, G.attn_norm, info_.dim, info_.norm_eps, n, s_);
        linear(G.wq, xn, q);
        linear(G.wk, xn, k_rows);
        linear(G.wv, xn, v_rows);
        const RopeParams rp = llama_rope_params(info_);
        gpu::rope_tokens(q, n, info_.n_heads, pos0, rp, s_);
        gpu::rope_tokens(k_rows, n, info_.n_kv_heads, pos0, rp, s_);
        if (!k_f32) gpu::f32_to_f16(reinterpret_cast<uint16_t*>(k_cache_rows), k_rows, (int64_t)n * kv_dim, s_);
        if (!v_f32) gpu::f32_to_f16(reinterpret_cast<uint16_t*>(v_cache_rows), v_rows, (int64_t)n * kv_dim, s_);
        const AttentionArgs a = device_attention_args(info_, gs_, l, q, pos0 + n);
        gpu::attention_prefill(a, n, pos0, s_);
        float* tmp = dev(gs_.lay.tmp);
        linear(G.wo, a.out, tmp);
        gpu::add_inplace(x, tmp, (int64_t)n * info_.dim, s_);
    }

    void ffn_dense(int l, const LlamaGpuLayer& G) {
        const int n = n_;
        float* x = dev(gs_.lay.x);
        float* xn = dev(gs_.lay.xn);
        float* gate = dev(gs_.lay.gate);
        float* up = dev(gs_.lay.up);
        gpu::rmsnorm(xn, x, G.ffn_norm, info_.dim, info_.norm_eps, n, s_);
        linear(G.gate, xn, gate);
        linear(G.up, xn, up);
        const int64_t count = (int64_t)n * info_.n_ff;
        if (info_.ffn_act == "relu")
            gpu::reglu(gate, gate, up, count, s_);
        else
            gpu::swiglu(gate, gate, up, count, s_);
        if (st_.ffn_observer) observe(l, xn, gate);
        float* tmp = dev(gs_.lay.tmp);
        linear(G.down, gate, tmp);
        gpu::add_inplace(x, tmp, (int64_t)n * info_.dim, s_);
    }

    // A split FFN over the batch. GPU: per token the decode step's predictor; the FFN inputs and all tokens' cold scores
    // go down to the host; then the hot neurons (hot_ffn: GEMMs or per-token sparse kernels) -> y_hot. CPU, at the
    // same time: the union of the tokens' predicted cold neurons, each with its token mask, through sparse_ffn_batch
    // (y_cold); then x += y_hot + y_cold per token, as the decode step adds them. The GPU's launches (hundreds per
    // layer) are made by the session's queue thread, so that they do not stand before the CPU's work.
    void ffn_split(int l, const LlamaGpuLayer& G) {
        if (st_.ffn_observer)
            throw Error("GPU forward: layer " + std::to_string(l) + " splits its FFN, which has no FFN observer");
        const int n = n_, dim = info_.dim, n_ff = info_.n_ff, n_cold = (int)G.cold.size();
        const float thr = G.predictor.threshold;
        float* x = dev(gs_.lay.x);
        float* xn = dev(gs_.lay.xn);
        float* scores = dev(gs_.lay.batch_scores);  // (n, n_ff)
        float* y_hot = dev(gs_.lay.tmp);            // (n, dim)
        std::atomic<bool> scores_queued{false};
        gs_.queue.post([&] {
            try {
                gpu::rmsnorm(xn, x, G.ffn_norm, dim, info_.norm_eps, n, s_);
                gpu::PredictorGpuScratch ps;
                ps.xq = gs_.arena.at(gs_.lay.pred_xq);
                ps.hidden = dev(gs_.lay.pred_hidden);
                for (int t = 0; t < n; t++)
                    gpu::predictor_scores(G.predictor, xn + (size_t)t * dim, scores + (size_t)t * n_ff, ps, s_);
                if (n_cold > 0) {
                    CUDA_CHECK(cudaMemcpyAsync(gs_.h_xn, xn, (size_t)n * dim * sizeof(float), cudaMemcpyDeviceToHost,
                                               s_));
                    CUDA_CHECK(cudaMemcpy2DAsync(gs_.h_scores, n_cold * sizeof(float), scores + G.n_hot,
                                                 n_ff * sizeof(float), n_cold * sizeof(float), n,
                                                 cudaMemcpyDeviceToHost, s_));
                    CUDA_CHECK(cudaEventRecord(gs_.ev_batch, s_));
                }
                scores_queued.store(true, std::memory_order_release);
                if (G.n_hot > 0) hot_ffn(l, G, xn, scores, y_hot);
            } catch (...) {
                cudaGetLastError();  // this thread's error state, which the next job's launch checks would see
                throw;
            }
        });
        struct Drain {  // the job refers to this frame: it ends before the frame does, even on an exception
            JobThread& q;
            ~Drain() {
                try {
                    q.wait();
                } catch (...) {
                }
            }
        } drain{gs_.queue};
        if (G.n_hot > 0) hot_layers_.push_back(l);
        SparseFfnStats& stats = st_.sparse_stats;
        stats.neurons += (uint64_t)n * n_ff;
        if (n_cold == 0) {
            gs_.queue.wait();
            if (G.n_hot > 0) gpu::add_inplace(x, y_hot, (int64_t)n * dim, s_);
            return;
        }
        while (!scores_queued.load(std::memory_order_acquire) && gs_.queue.busy()) std::this_thread::yield();
        if (!scores_queued.load(std::memory_order_acquire)) gs_.queue.wait();  // rethrows what stopped the job
        CUDA_CHECK(cudaEventSynchronize(gs_.ev_batch));
        const LlamaLayer& L = m_.layers[l];
        const LlamaSparseFfn& S = m_.sparse[l];
        int32_t* rows = gs_.cold_active.data();
        uint32_t* masks = gs_.batch_masks.data();
        const int64_t k = llama_batch_rows(gs_.h_scores, n_cold, n, G.cold.data(), n_cold, thr, rows, masks, pool_);
        const SparseGateUpWeights w = llama_gate_up_weights(info_, L);
        const size_t stride = dot_vec_bytes(w.wt, dim);
        for (int t = 0; t < n; t++)
            dot_prepare_vec(w.wt, gs_.h_xn + (size_t)t * dim, gs_.batch_xq.data() + t * stride, dim);
        float* h = gs_.batch_h.data();
        sparse_ffn_batch(w, gs_.batch_xq.data(), stride, n, S.w_down_t.type, S.w_down_t.data, rows, masks, k, h,
                         gs_.h_y, pool_);
        gs_.queue.wait();  // the hot kernels are queued: the sum goes after them
        gpu::add_from_host(x, G.n_hot > 0 ? y_hot : nullptr, gs_.h_y, (int64_t)n * dim, s_);
        for (int64_t j = 0; j < k; j++) stats.predicted += (uint64_t)__builtin_popcount(masks[j]);
        for (int64_t j = 0; j < k * n; j++) stats.fired += h[j] != 0.0f;
    }

    // A split layer's hot neurons for the batch: y_hot (n, dim); the counts of predicted and fired neurons per token
    // go on to h_batch_counts. Float rows: GEMMs over all hot rows (each read once for the batch), the gate/up
    // products masked to each token's predicted set, which is all the decode step computes. Quantized rows: the
    // decode step's sparse kernels per token, which read only the predicted rows, as they are stored (a GEMM would
    // first expand every hot row to F16: at 70B Q4_0, 24 GiB, prompts ran at 64 t/s that way against 93 per token).
    void hot_ffn(int l, const LlamaGpuLayer& G, const float* xn, const float* scores, float* y_hot) {
        const int n = n_, n_hot = G.n_hot;
        int32_t* counts = gs_.dev<int32_t>(gs_.lay.batch_counts);  // predicted [0, kBatch), fired [kBatch, 2 kBatch)
        if (dtype_block_elems(G.hot_gate.type) > 1) {
            int32_t* active = gs_.dev<int32_t>(gs_.lay.hot_active);
            float* h = dev(gs_.lay.h);
            const SparseGateUpWeights w = llama_gate_up_weights(info_, G.hot_gate.type, G.hot_gate.data, G.hot_up.data);
            const int dim = info_.dim;
            for (int t = 0; t < n; t++) {
                const float* xt = xn + (size_t)t * dim;
                gpu::predictor_active(scores + (size_t)t * info_.n_ff, n_hot, G.predictor.threshold, active,
                                      counts + t, s_);
                gpu::sparse_gate_up(w, prepare_on_device(gs_, w.wt, xt, dim), active, counts + t, n_hot, h, s_);
                gpu::count_nonzero(h, counts + t, counts + kBatch + t, s_);
                gpu::sparse_down(G.hot_down_t.type, G.hot_down_t.data, h, active, counts + t, y_hot + (size_t)t * dim,
                                 dim, dev(gs_.lay.down_scratch), s_);
            }
            CUDA_CHECK(cudaMemcpyAsync(gs_.h_batch_counts + (size_t)l * 2 * kBatch, counts,
                                       2 * kBatch * sizeof(int32_t), cudaMemcpyDeviceToHost, s_));
            return;
        }
        float* gate = dev(gs_.lay.gate);  // (n, n_hot)
        float* up = dev(gs_.lay.up);      // (n, n_hot)
        linear(G.hot_gate, xn, gate);
        linear(G.hot_up, xn, up);
        if (info_.ffn_act == "relu")
            gpu::reglu(gate, gate, up, (int64_t)n * n_hot, s_);
        else
            gpu::swiglu(gate, gate, up, (int64_t)n * n_hot, s_);
        gpu::mask_predicted(gate, n_hot, scores, info_.n_ff, n, n_hot, G.predictor.threshold, counts,
                            counts + kBatch, s_);
        gpu::matmul_by_rows(G.hot_down_t.type, G.hot_down_t.data, gate, y_hot, n, n_hot, info_.dim, ws_, s_);
        CUDA_CHECK(cudaMemcpyAsync(gs_.h_batch_counts + (size_t)l * 2 * kBatch, counts, 2 * kBatch * sizeof(int32_t),
                                   cudaMemcpyDeviceToHost, s_));
    }

    // The hot neurons' counts of the batch's split layers, once the stream is done.
    void account_hot() {
        SparseFfnStats& stats = st_.sparse_stats;
        for (int l : hot_layers_) {
            const int32_t* c = gs_.h_batch_counts + (size_t)l * 2 * kBatch;
            for (int t = 0; t < n_; t++) stats.predicted += (uint64_t)c[t], stats.fired += (uint64_t)c[kBatch + t];
        }
        hot_layers_.clear();
    }

    // Hands the batch's FFN inputs and activations to the session's observer through its host rows, as the CPU
    // engine's batch code does.
    void observe(int l, const float* xn, const float* h) {
        const size_t dim = (size_t)info_.dim, n_ff = (size_t)info_.n_ff, n = (size_t)n_;
        if (st_.xn.size() < n * dim || st_.gate.size() < n * n_ff)
            throw Error("GPU forward: the session's host rows hold fewer than the batch's " + std::to_string(n) +
                        " tokens for the FFN observer");
        CUDA_CHECK(cudaMemcpyAsync(st_.xn.data(), xn, n * dim * sizeof(float), cudaMemcpyDeviceToHost, s_));
        CUDA_CHECK(cudaMemcpyAsync(st_.gate.data(), h, n * n_ff * sizeof(float), cudaMemcpyDeviceToHost, s_));
        CUDA_CHECK(cudaStreamSynchronize(s_));
        st_.ffn_observer(l, st_.xn.data(), info_.dim, st_.gate.data(), n_, info_.n_ff);
    }
};

}  // namespace

void llama_gpu_forward(const ModelInfo& info, const LlamaModel& m, const LlamaGpu& g, LlamaGpuState& gs,
                       LlamaState& st, const int32_t* tokens, int n, int pos0, LlamaLogits logits, ThreadPool& pool) {
    if (pos0 + n > gs.n_ctx)
        throw Error("GPU forward: positions up to " + std::to_string(pos0 + n) + " exceed the context of " +
                    std::to_string(gs.n_ctx));
    const size_t n_vocab = (size_t)info.n_vocab;
    const bool all = logits == LlamaLogits::LLAMA_LOGITS_ALL;
    if (all && st.logits.size() < (size_t)n * n_vocab) st.logits.resize((size_t)n * n_vocab);
    if (!all && st.logits.size() < n_vocab) st.logits.resize(n_vocab);
    // Rows of all-logits land in a separate buffer: the CPU output step writes st.logits' first rows.
    std::vector<float> rows;
    if (all && n > 1) rows.resize((size_t)n * n_vocab);
    const SparseFfnStats stats_before = st.sparse_stats;
    try {
        if ((n > 1 || st.ffn_observer) && gs.batch) {  // the decode step does not show the FFN to an observer
            BatchStep step(info, m, g, gs, st, pool);
            for (int b = 0; b < n; b += kBatch) {
                const int nb = std::min(kBatch, n - b);
                std::vector<int> want;
                if (all)
                    for (int i = 0; i < nb; i++) want.push_back(i);
                else if (logits == LlamaLogits::LLAMA_LOGITS_LAST && b + nb == n)
                    want.push_back(nb - 1);
                float* out = all ? rows.data() + (size_t)b * n_vocab : st.logits.data();
                step.run(tokens + b, nb, pos0 + b, want, out);
            }
        } else {
            DecodeStep step(info, m, g, gs, st, pool);
            for (int i = 0; i < n; i++) {
                const bool want = all || (logits == LlamaLogits::LLAMA_LOGITS_LAST && i == n - 1);
                float* out = all && n > 1 ? rows.data() + (size_t)i * n_vocab : st.logits.data();
                step.run(tokens[i], pos0 + i, want, out);
            }
        }
    } catch (...) {
        // Nothing queued may still write the pinned buffers when the next call fills them; counters of a failed
        // call are dropped.
        cudaStreamSynchronize(gs.stream);
        cudaGetLastError();
        st.sparse_stats = stats_before;
        throw;
    }
    if (all && n > 1) std::memcpy(st.logits.data(), rows.data(), rows.size() * sizeof(float));
}

}  // namespace ember
