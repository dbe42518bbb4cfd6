// What the placement planner (engine/placement.h) needs to know of a llama-family model: the bytes of each part
// as stored and as copied to VRAM, and the profile's neuron frequencies.
#pragma once
#include <cstdint>

#include "engine/placement.h"
#include "models/llama.h"
#include "predictor/profile.h"

namespace ember {

// Sizes of m's parts for n_seq sessions of n_ctx positions (KV cache, gpu_scratch_per_seq each, plus the driver's
// 2 MiB allocation granularity for the model's and each session's device allocations). Layers of one model
// share their shapes; where they differ (a predictor's rank per layer) the largest layer is counted, so a plan
// never needs more VRAM than it reports. profile may be null (a dense model). k_type, v_type: the KV cache's element
// types (F32 or F16).
PlacementModel llama_placement_model(const ModelInfo& info, const LlamaModel& m, const ModelProfile* profile,
                                     int n_ctx, int n_seq, uint64_t gpu_scratch_per_seq,
                                     DType k_type = DType::DTYPE_F32, DType v_type = DType::DTYPE_F32);

}  // namespace ember
