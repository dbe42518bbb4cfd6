// A session's state (engine/ember.h's Session), shared by the files that drive the forward pass on it.
#pragma once
#include <memory>

#include "engine/ember.h"
#include "kernels-cpu/thread-pool.h"
#include "models/llama.h"

namespace ember {

struct SessionState {
    SessionParams params;
    LlamaState llama;                  // KV cache and scratch
    std::unique_ptr<ThreadPool> pool;
    int n_past = 0;
    int n_logits = 0;  // rows in llama.logits from the last eval
};

}  // namespace ember
