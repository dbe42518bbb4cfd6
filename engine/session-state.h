// A session's state (engine/ember.h's Session), shared by the files that drive the forward pass on it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "engine/ember.h"
#include "kernels-cpu/thread-pool.h"
#include "models/llama.h"

namespace ember {

struct LlamaGpuState;  // models/llama-gpu.h

struct SessionState {
    SessionParams params;
    LlamaState llama;                  // KV cache and scratch
    std::shared_ptr<LlamaGpuState> gpu;  // with a GPU placement: the device's KV caches and scratch
    std::unique_ptr<ThreadPool> pool;
    int n_past = 0;
    int n_logits = 0;  // rows in llama.logits from the last eval
};

// The element type of a KV cache of type t.
DType kv_dtype(KvType t);

// Throws ember::Error, its message starting with `where`, when n more tokens would overflow s's context or one of
// them is outside [0, n_vocab). Session::eval and sessions_eval check with it before evaluating anything.
void session_check_tokens(const SessionState& s, const int32_t* tokens, size_t n, int n_vocab,
                          const std::string& where);

}  // namespace ember
