// The llama family on the GPU, for every placement the planner makes (engine/placement.h): all layers in VRAM,
// dense layer offload (-ngl), and hybrid execution, where per layer the GPU runs attention, the predictor and the
// hot neurons while the CPU workers run the predicted-active cold neurons from host memory at the same time.
//
// One decode step of a split FFN layer (hot neurons in VRAM, cold ones in host RAM), all on one CUDA stream:
//   GPU: RMSNorm -> xn; predictor scores (fc2's rows ordered hot first, then cold); write xn as the host's dot
//        products take it and one bit per cold neuron (score above the threshold) to pinned host memory and signal
//        the host; hot active list; hot gate/up and down -> y_hot
//   CPU: wait for the signal; cold active list from the bits; sparse gate/up and down on the cold rows -> y_cold
//        in pinned memory; signal the stream
//   GPU: wait for the host's signal; x += y_hot + y_cold, reading y_cold straight from pinned memory
// Both sides run at once; only activations cross PCIe. The signals are counters in pinned memory
// (kernels-gpu/host-sync.h), so the stream can be queued before the host work it waits for. The step's GPU work is
// captured once as a CUDA graph and replayed: the position is read on the device and the counters restart from 0
// every step, so only logits wanted or not, and the attention's split count (every 128 positions), capture again.
// One launch per step; the GPU runs the kernels back to back, and the thread that runs the CPU's share never spends
// time launching kernels. Traced steps (llama_gpu_trace) are queued launch by launch around their events, by a
// second host thread at most 4 layers ahead of the host's part, or, when the host never waits for the stream, by
// the calling thread after its own part.
// Layers whose attention or FFN the placement leaves on the CPU run the CPU code (models/llama.h) on the session's
// host state, the residual moving between host and device where the placement switches sides.
// Built only with CUDA (EMBER_CUDA); nothing in this header needs CUDA's headers.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/placement.h"
#include "models/llama.h"

namespace ember {

// Device 0 as the planner sees it.
struct GpuDeviceInfo {
    std::string name;
    uint64_t free_bytes = 0;   // cudaMemGetInfo after the context is made
    uint64_t total_bytes = 0;
    double bandwidth = 0;      // bytes/s read, measured by a device-to-device copy (counting its reads)
};
// Throws ember::Error when there is no CUDA device.
GpuDeviceInfo gpu_device_info();

// Device memory one session's activations and attention scratch take for contexts of n_ctx positions; batch: with
// room for prompts in batches (cuBLAS workspaces, kBatch rows of activations).
uint64_t llama_gpu_scratch_bytes(const ModelInfo& info, const LlamaModel& m, int n_ctx, bool batch);

// The model's device copies, as the placement says (opaque). Made once per Model.
struct LlamaGpu;
// Copies what p puts in VRAM: dense tensors as stored (wk, wv and wq back to back, w_gate and w_up too), predictors
// with fc2's rows reordered hot first, the hot neurons' gate and up rows and down columns (the latter from the
// transposed copy m.sparse[l].w_down_t) gathered into contiguous matrices. Needs m.sparse for any layer with
// predictor_gpu. batch: the plan reserved the scratch of llama_gpu_scratch_bytes(..., true), so sessions run prompts in
// batches. Throws ember::Error (CUDA's message, or the tensor that does not fit) on failure; nothing is left allocated
// then.
std::shared_ptr<LlamaGpu> llama_gpu_upload(const ModelInfo& info, const LlamaModel& m, const Placement& p,
                                           bool batch);
// Device bytes the upload holds (weights).
uint64_t llama_gpu_weight_bytes(const LlamaGpu& g);

// One session's device state: KV caches of the layers whose attention is in VRAM (n_ctx rows of k_type keys and
// v_type values, F32 or F16), activations, pinned host buffers, the stream and events.
struct LlamaGpuState;
std::shared_ptr<LlamaGpuState> llama_gpu_state_create(const ModelInfo& info, const LlamaModel& m, const LlamaGpu& g,
                                                      int n_ctx, DType k_type = DType::DTYPE_F32,
                                                      DType v_type = DType::DTYPE_F32);

// Runs n tokens at positions pos0 .. pos0+n-1 like llama_forward, with the GPU's share of the work on the GPU.
// st is the session's host state (its KV cache serves the layers whose attention stays on the CPU); logits land in
// st.logits as llama_forward leaves them. With batch scratch a prompt runs in batches of up to 32 tokens (cuBLAS
// GEMMs, causal attention over the batch; the CPU's layers through their batch code; a split FFN layer computes its
// hot neurons on the GPU, float rows through GEMMs masked to each token's predicted set and quantized ones through
// the decode step's kernels per token, while the CPU reads each cold row the batch predicted once, for all its
// tokens); single tokens, and prompts without batch scratch, run one token at a time through the decode step.
// Counts in st.sparse_stats like the CPU path; decode_weight_bytes counts host reads and decode_gpu_weight_bytes
// VRAM reads (hot neurons counted at their predicted rows: gate, up and down).
void llama_gpu_forward(const ModelInfo& info, const LlamaModel& m, const LlamaGpu& g, LlamaGpuState& gs,
                       LlamaState& st, const int32_t* tokens, int n, int pos0, LlamaLogits logits, ThreadPool& pool);

// True when gs can show an FFN observer every layer (batches, and no split layer): then every forward pass with an
// FFN observer in st runs in batches, and the observer sees each layer's FFN inputs and activations, those of the
// GPU's layers copied back. A split layer's FFN is never assembled in one place, so it has no observer.
bool llama_gpu_observes_ffn(const LlamaGpuState& gs);

// Matvec launches a decode step of gs spends on the layer's q, k and v: 1 when the upload stored wk, wv and wq back
// to back (the same type and width) and the state's k, v and q follow each other, else 3; 0 when its attention is
// on the CPU. Throws ember::Error for a layer outside the model.
int llama_gpu_qkv_matvecs(const LlamaGpu& g, const LlamaGpuState& gs, int layer);
// Matvec launches a decode step spends on the layer's dense FFN gate and up: 1 when the upload stored w_gate and w_up
// back to back (the same type and width; the products land in the state's gate scratch, gate then up), else 2; 0
// when the layer's FFN is not dense on the GPU. Throws ember::Error for a layer outside the model.
int llama_gpu_gate_up_matvecs(const LlamaGpu& g, int layer);

// Turns tracing on or off for the next decode steps of gs (costs a few event records per layer); the last traced
// step's timeline is returned by llama_gpu_timeline.
void llama_gpu_trace(LlamaGpuState& gs, bool on);
const DecodeTimeline& llama_gpu_timeline(const LlamaGpuState& gs);

}  // namespace ember
