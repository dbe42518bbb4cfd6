#include "models/llama-placement.h"

#include <algorithm>
#include <cmath>

#include "models/llama-sparse.h"

namespace ember {

PlacementModel llama_placement_model(const ModelInfo& info, const LlamaModel& m, const ModelProfile* profile,
                                     int n_ctx, int n_seq, uint64_t gpu_scratch_per_seq, DType k_type,
                                     DType v_type) {
    PlacementModel pm;
    pm.model_name = info.name;
    pm.n_layers = info.n_layers;
    pm.n_ff = info.n_ff;
    pm.dim = info.dim;
    pm.n_vocab = info.n_vocab;
    const uint64_t norm = (uint64_t)info.dim * sizeof(float);
    for (const LlamaLayer& L : m.layers) {
        pm.attn_bytes = std::max<uint64_t>(pm.attn_bytes, L.wq.bytes() + L.wk.bytes() + L.wv.bytes() + L.wo.bytes() + norm);
        pm.ffn_dense_bytes = std::max<uint64_t>(pm.ffn_dense_bytes, L.w_gate.bytes() + L.w_up.bytes() + L.w_down.bytes());
        // A neuron as the GPU holds it: its gate row, up row and down column (a row of the transposed copy).
        const uint64_t gate_row = dtype_row_bytes(L.w_gate.type, info.dim);
        const uint64_t neuron = gate_row + dtype_row_bytes(L.w_up.type, info.dim) + dtype_row_bytes(L.w_down.type, info.dim);
        pm.gate_row_bytes = std::max(pm.gate_row_bytes, gate_row);
        pm.neuron_bytes = std::max(pm.neuron_bytes, neuron);
    }
    pm.ffn_norm_bytes = norm;
    const uint64_t kv_rows = (uint64_t)n_ctx * (uint64_t)n_seq;
    pm.kv_bytes_per_layer = kv_rows * (dtype_row_bytes(k_type, info.kv_dim) + dtype_row_bytes(v_type, info.kv_dim));
    for (const LlamaSparseFfn& S : m.sparse) pm.predictor_bytes = std::max<uint64_t>(pm.predictor_bytes, S.predictor.bytes());
    pm.output_bytes = m.output.bytes() + norm;
    pm.embd_row_bytes = dtype_row_bytes(m.tok_embd.type, info.dim);
    // The driver hands out device memory in 2 MiB pages: each of the model's one allocation and every session's two
    // (KV cache, scratch) may round up by as much.
    const uint64_t page = 2ull << 20;
    pm.gpu_scratch_bytes = (gpu_scratch_per_seq + 2 * page) * (uint64_t)n_seq + page;
    pm.has_profile = !m.sparse.empty();
    if (profile && pm.has_profile) {
        pm.freq.resize(info.n_layers);
        pm.predicted_share.assign(info.n_layers, 0.0f);
        for (int l = 0; l < info.n_layers && l < (int)profile->layers.size(); l++) {
            const LayerProfile& L = profile->layers[l];
            if ((int)L.freq.size() == info.n_ff) pm.freq[l] = L.freq;
            if (std::isfinite(L.sparsity) && L.sparsity >= 0.0f && L.sparsity <= 1.0f)
                pm.predicted_share[l] = 1.0f - L.sparsity;
        }
    }
    return pm;
}

}  // namespace ember
