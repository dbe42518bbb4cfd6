#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "engine/ember.h"
#include "kernels-cpu/dot.h"
#include "engine/cpu-info.h"
#include "engine/memory-bandwidth.h"
#include "engine/placement.h"
#include "engine/session-state.h"
#include "models/llama-placement.h"
#include "models/llama-sparse.h"
#include "models/llama.h"
#include "predictor/profile.h"
#if defined(EMBER_CUDA)
#include "kernels-gpu/cuda-check.h"
#include "models/llama-gpu.h"
#endif

namespace ember {

Model::~Model() = default;

std::unique_ptr<Model> Model::load(const ModelParams& params) {
    std::unique_ptr<Model> model(new Model());
    model->file_ = GGUFFile::open(params.path);
    const GGUFFile& f = *model->file_;
    ModelInfo& info = model->info_;
    info.arch = f.get_string("general.architecture");
    info.name = f.get_string("general.name", "");
    if (info.arch != "llama")
        throw Error(f.path() + ": key 'general.architecture': unknown architecture '" + info.arch +
                    "' (supported: llama)");
    model->tokenizer_ = Tokenizer::from_gguf(f);
    model->llama_ = std::make_unique<LlamaModel>(llama_load(f, info, model->tokenizer_->n_vocab()));
    if (params.n_gpu_layers < -1)
        throw Error("n_gpu_layers: expected a value >= 0 (or -1: automatic), found " +
                    std::to_string(params.n_gpu_layers));
    if (params.n_seq < 1) throw Error("n_seq: expected a value >= 1, found " + std::to_string(params.n_seq));
    if (params.n_ctx < 0) throw Error("n_ctx: expected a value >= 0, found " + std::to_string(params.n_ctx));
    if (!(params.cpu_bandwidth_gbs >= 0))
        throw Error("cpu_bandwidth_gbs: expected a value >= 0, found " + std::to_string(params.cpu_bandwidth_gbs));
    ModelProfile profile;
    if (!params.profile_path.empty()) {
        profile = profile_read(params.profile_path);
        if (info.ffn_act != "relu")
            std::fprintf(stderr, "warning: %s: the FFN activation is %s, which is never exactly zero: neurons the "
                         "predictors skip change the output\n", params.profile_path.c_str(), info.ffn_act.c_str());
        ThreadPool pool(cpu_physical_cores());
        llama_sparse_init(info, *model->llama_, profile, params.profile_path, pool);
    }
    model->planned_n_ctx_ = params.n_ctx > 0 ? params.n_ctx : std::min(info.n_ctx_train, 4096);
    model->planned_cache_type_k_ = params.cache_type_k;
    model->planned_cache_type_v_ = params.cache_type_v;
    model->placement_ = std::make_unique<Placement>(plan_placement(*model, params, profile));
    return model;
}

Placement Model::plan_placement(Model& model, const ModelParams& params, const ModelProfile& profile) {
    const ModelInfo& info = model.info_;
    Placement cpu_only;
    cpu_only.layers.resize(info.n_layers);
    int n_devices = 0;
#if defined(EMBER_CUDA)
    n_devices = gpu::cuda_device_count();
#endif
    if (n_devices == 0 || params.n_gpu_layers == 0) {
        if (params.n_gpu_layers > 0)
            std::fprintf(stderr, "warning: -ngl %d: no CUDA device (or a build without CUDA); all layers run on the "
                         "CPU\n", params.n_gpu_layers);
        if (params.print_placement)
            std::fprintf(stderr, "placement: cpu (%s)\n",
                         params.n_gpu_layers == 0 ? "-ngl 0" : "no CUDA device, or a build without CUDA");
        return cpu_only;
    }
#if defined(EMBER_CUDA)
    const LlamaModel& m = *model.llama_;
    const GpuDeviceInfo dev = gpu_device_info();
    PlacementRequest req;
    const uint64_t margin = 512ull << 20;
    req.vram_budget = params.vram_budget_gib >= 0 ? (uint64_t)(params.vram_budget_gib * (double)(1ull << 30))
                      : dev.free_bytes > margin ? dev.free_bytes - margin
                                                : 0;
    if (req.vram_budget > dev.free_bytes)
        throw Error("--vram-budget " + std::to_string(params.vram_budget_gib) + " GiB: the GPU (" + dev.name +
                    ") has only " + std::to_string((double)dev.free_bytes / (1ull << 30)) + " GiB free");
    req.gpu_bandwidth = dev.bandwidth;
    req.cpu_bandwidth = params.cpu_bandwidth_gbs > 0
                            ? params.cpu_bandwidth_gbs * 1e9
                            : memory_bandwidth_probe(256u << 20, cpu_physical_cores(), 3) * 1e9;
    req.n_gpu_layers = params.n_gpu_layers;
    // Prompts in batches need their scratch in the plan, once per session. Without a profile or with -ngl the plan
    // always reserves it; a plan that may split FFN layers gives it up by default when it would take more than 1/16
    // of the budget (budgets under 16 times the batch scratch, tens of MiB for small models, where the hot neurons
    // it would displace matter more): prompts then run token by token.
    const uint64_t batch_extra = (llama_gpu_scratch_bytes(info, m, model.planned_n_ctx_, true) -
                                  llama_gpu_scratch_bytes(info, m, model.planned_n_ctx_, false)) *
                                 (uint64_t)std::max(1, params.n_seq);
    const bool batch = params.gpu_prompt_batch == 1 ||
                       (params.gpu_prompt_batch < 0 &&
                        (params.profile_path.empty() || params.n_gpu_layers >= 0 || batch_extra * 16 <= req.vram_budget));
    const PlacementModel pm =
        llama_placement_model(info, m, params.profile_path.empty() ? nullptr : &profile, model.planned_n_ctx_,
                              params.n_seq, llama_gpu_scratch_bytes(info, m, model.planned_n_ctx_, batch),
                              kv_dtype(params.cache_type_k), kv_dtype(params.cache_type_v));
    Placement p;
    bool loaded = false;
    std::error_code ec;  // an existing file the process cannot read is loaded, and refused naming why, not replaced
    if (!params.placement_path.empty() && std::filesystem::exists(params.placement_path, ec)) {
        p = placement_load(params.placement_path, pm, req);
        loaded = true;
        if (params.n_gpu_layers >= 0)
            std::fprintf(stderr, "warning: -ngl %d ignored: the placement comes from %s\n", params.n_gpu_layers,
                         params.placement_path.c_str());
        if (p.mode != PlacementMode::PLACEMENT_CPU && p.vram_total > req.vram_budget)
            throw Error(params.placement_path + ": the placement needs " + std::to_string(p.vram_total >> 20) +
                        " MiB of VRAM, more than the budget of " + std::to_string(req.vram_budget >> 20) +
                        " MiB (plan again: remove the file, or raise --vram-budget)");
    } else {
        p = placement_plan(pm, req);
    }
    if (params.print_placement) {
        std::fprintf(stderr, "placement (%s, %s, %.0f GB/s host, %.0f GB/s device):\n%s",
                     loaded ? ("from " + params.placement_path).c_str() : "planned", dev.name.c_str(),
                     req.cpu_bandwidth / 1e9, req.gpu_bandwidth / 1e9, placement_describe(pm, p).c_str());
    }
    if (p.mode != PlacementMode::PLACEMENT_CPU && p.vram_total > dev.free_bytes)
        throw Error("placement: needs " + std::to_string(p.vram_total >> 20) + " MiB of VRAM, the GPU (" + dev.name +
                    ") has " + std::to_string(dev.free_bytes >> 20) + " MiB free (lower -ngl or --vram-budget)");
    if (p.mode != PlacementMode::PLACEMENT_CPU) model.gpu_ = llama_gpu_upload(info, m, p, batch);
    // Saved once it has loaded: a plan the GPU cannot hold is never kept for the next run.
    if (!loaded && !params.placement_path.empty()) placement_save(p, pm, params.placement_path);
    return p;
#else
    (void)profile;
    return cpu_only;
#endif
}

std::string Model::backend() const {
    if (!gpu_) return "CPU";
    return std::string("CUDA ") + placement_mode_name(placement_->mode);
}

bool Model::sparse() const { return !llama_->sparse.empty() && placement_ffn_sparse(*placement_); }

uint64_t Model::predictor_bytes() const {
    uint64_t b = 0;
    for (const LlamaSparseFfn& s : llama_->sparse) b += s.predictor.bytes();
    return b;
}

std::string Model::chat_template() const { return file_->get_string("tokenizer.chat_template", ""); }

std::string version_string() {
    std::string s = "ember 0.1.0 (cpu: ";
    s += dot_simd_level();
    s += std::string(", prefetch to ") + dot_prefetch_level_name();
#if defined(EMBER_OPENBLAS)
    s += ", blas: openblas";
#elif defined(EMBER_ONEDNN)
    s += ", blas: onednn";
#else
    s += ", blas: none";
#endif
#if defined(EMBER_CUDA)
    s += ", cuda: built";
#else
    s += ", cuda: off";
#endif
    return s + ")";
}

}  // namespace ember
