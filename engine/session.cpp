#include <algorithm>
#include <cctype>

#include "engine/cpu-info.h"
#include "engine/ember.h"
#include "kernels-cpu/thread-pool.h"
#include "engine/session-state.h"
#include "models/llama.h"
#if defined(EMBER_CUDA)
#include "models/llama-gpu.h"
#endif

namespace ember {


void session_check_tokens(const SessionState& s, const int32_t* tokens, size_t n, int n_vocab,
                          const std::string& where) {
    if (s.n_past + (int64_t)n > s.params.n_ctx)
        throw Error(where + ": context full: " + std::to_string(s.n_past) + " tokens in the cache + " +
                    std::to_string(n) + " new > n_ctx " + std::to_string(s.params.n_ctx));
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            throw Error(where + ": token " + std::to_string(i) + " has id " + std::to_string(tokens[i]) +
                        ", outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
}

KvType kv_type_from_name(const std::string& name, const std::string& what) {
    std::string n = name;
    for (char& c : n) c = (char)std::tolower((unsigned char)c);
    if (n == "f32") return KvType::KV_TYPE_F32;
    if (n == "f16") return KvType::KV_TYPE_F16;
    throw Error(what + ": invalid value '" + name + "' (expected f32 or f16)");
}

const char* kv_type_name(KvType t) { return t == KvType::KV_TYPE_F16 ? "f16" : "f32"; }

DType kv_dtype(KvType t) { return t == KvType::KV_TYPE_F16 ? DType::DTYPE_F16 : DType::DTYPE_F32; }

Session::Session(const Model& model, const SessionParams& params) : model_(model), state_(new SessionState()) {
    const ModelInfo& info = model.info();
    SessionParams p = params;
    if (p.n_ctx < 0) throw Error("n_ctx: expected a value >= 0, found " + std::to_string(p.n_ctx));
    if (p.n_ctx == 0) p.n_ctx = std::min(info.n_ctx_train, 4096);
    if (p.n_threads < 0) throw Error("n_threads: expected a value >= 0, found " + std::to_string(p.n_threads));
    if (p.n_threads == 0) p.n_threads = cpu_physical_cores();
    if (p.n_batch <= 0) throw Error("n_batch: expected a value > 0, found " + std::to_string(p.n_batch));
    p.n_batch = std::min(p.n_batch, p.n_ctx);
    state_->params = p;
    state_->pool = std::make_unique<ThreadPool>(p.n_threads, p.cpu_strict ? cpu_core_leaders() : std::vector<int>{});
    llama_state_init(info, model.llama(), p.n_ctx, p.n_batch, p.n_threads, state_->llama, kv_dtype(p.cache_type_k),
                     kv_dtype(p.cache_type_v));
#if defined(EMBER_CUDA)
    if (model.gpu()) {
        // The placement reserved VRAM for caches of its planned types: a session may use those or narrower ones.
        const auto wider = [](KvType asked, KvType planned) {
            return dtype_row_bytes(kv_dtype(asked), 1) > dtype_row_bytes(kv_dtype(planned), 1);
        };
        if (wider(p.cache_type_k, model.planned_cache_type_k()) || wider(p.cache_type_v, model.planned_cache_type_v()))
            throw Error(std::string("KV cache type ") + kv_type_name(p.cache_type_k) + " / " +
                        kv_type_name(p.cache_type_v) + ": the GPU placement (" + model.backend() +
                        ") reserved VRAM for a " + kv_type_name(model.planned_cache_type_k()) + " / " +
                        kv_type_name(model.planned_cache_type_v()) +
                        " cache (load the model with the session's cache types, -ctk / -ctv)");
        if (p.n_ctx > model.planned_n_ctx())
            throw Error("n_ctx: " + std::to_string(p.n_ctx) + " positions asked, the GPU placement reserved KV cache "
                        "for " + std::to_string(model.planned_n_ctx()) + " (load the model with a larger n_ctx / -c)");
        state_->gpu = llama_gpu_state_create(info, model.llama(), *model.gpu(), p.n_ctx, kv_dtype(p.cache_type_k),
                                             kv_dtype(p.cache_type_v));
    }
#endif
}

void Session::forward(const int32_t* tokens, int n, LlamaLogits which) {
    SessionState& s = *state_;
#if defined(EMBER_CUDA)
    if (s.gpu) {
        llama_gpu_forward(model_.info(), model_.llama(), *model_.gpu(), *s.gpu, s.llama, tokens, n, s.n_past, which,
                          *s.pool);
        return;
    }
#endif
    llama_forward(model_.info(), model_.llama(), s.llama, tokens, n, s.n_past, which, *s.pool);
}

Session::~Session() = default;

void Session::eval(const std::vector<int32_t>& tokens, bool all_logits) {
    SessionState& s = *state_;
    const ModelInfo& info = model_.info();
    if (tokens.empty()) throw Error("eval: no tokens given");
    session_check_tokens(s, tokens.data(), tokens.size(), info.n_vocab, "eval");
    // Logits of every batch are gathered in order when all_logits; otherwise only the last batch computes any, for
    // its last token.
    std::vector<float> all;
    if (all_logits) all.reserve(tokens.size() * (size_t)info.n_vocab);
    for (size_t b = 0; b < tokens.size(); b += s.params.n_batch) {
        const int n = (int)std::min<size_t>(s.params.n_batch, tokens.size() - b);
        const bool last_batch = b + n == tokens.size();
        const LlamaLogits which = all_logits ? LlamaLogits::LLAMA_LOGITS_ALL
                                  : last_batch ? LlamaLogits::LLAMA_LOGITS_LAST
                                               : LlamaLogits::LLAMA_LOGITS_NONE;
        forward(tokens.data() + b, n, which);
        s.n_past += n;
        if (all_logits) all.insert(all.end(), s.llama.logits.begin(), s.llama.logits.begin() + (size_t)n * info.n_vocab);
    }
    if (all_logits) {
        s.llama.logits.swap(all);
        s.n_logits = (int)tokens.size();
    } else {
        s.n_logits = 1;
    }
}

const float* Session::logits(int i) const {
    const SessionState& s = *state_;
    if (i < 0) i = s.n_logits - 1;
    if (i < 0 || i >= s.n_logits)
        throw Error("logits: row " + std::to_string(i) + " requested, the last eval produced " +
                    std::to_string(s.n_logits));
    return s.llama.logits.data() + (size_t)i * model_.info().n_vocab;
}

void Session::set_ffn_observer(FfnObserver observer) {
#if defined(EMBER_CUDA)
    if (observer && state_->gpu && !llama_gpu_observes_ffn(*state_->gpu))
        throw Error("set_ffn_observer: this session's GPU placement cannot show an FFN observer every layer: it splits "
                    "FFN layers between GPU and CPU, or runs prompts token by token (gpu_prompt_batch = 0); load the "
                    "model without a profile, or with n_gpu_layers = 0 / -ngl 0, and without gpu_prompt_batch = 0");
#endif
    state_->llama.ffn_observer = std::move(observer);
}

bool Session::on_gpu() const { return state_->gpu != nullptr; }

void Session::set_trace(bool on) {
#if defined(EMBER_CUDA)
    if (state_->gpu) llama_gpu_trace(*state_->gpu, on);
#else
    (void)on;
#endif
}

const DecodeTimeline* Session::timeline() const {
#if defined(EMBER_CUDA)
    if (state_->gpu) return &llama_gpu_timeline(*state_->gpu);
#endif
    return nullptr;
}

const SparseFfnStats& Session::sparse_stats() const { return state_->llama.sparse_stats; }
void Session::reset_sparse_stats() { state_->llama.sparse_stats = SparseFfnStats(); }

int Session::n_past() const { return state_->n_past; }
int Session::n_ctx() const { return state_->params.n_ctx; }
int Session::n_threads() const { return state_->params.n_threads; }

void Session::truncate(int n_past) {
    if (n_past < 0 || n_past > state_->n_past)
        throw Error("truncate: position " + std::to_string(n_past) + " outside [0, " +
                    std::to_string(state_->n_past) + "]");
    state_->n_past = n_past;  // later positions are overwritten by the next eval
    state_->n_logits = 0;
}

}  // namespace ember
