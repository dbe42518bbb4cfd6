// Model loading and the model summary every app logs to stderr (header-only, shared by the apps).
#pragma once
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "apps/app-args.h"
#include "engine/ember.h"

namespace ember {

// "1.13 MiB" / "3.56 GiB", as llama-bench prints model sizes.
inline std::string app_format_size(uint64_t bytes) {
    char buf[32];
    if (bytes < (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / 1048576.0);
    else std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / 1073741824.0);
    return buf;
}

// "0.29 M" / "6.74 B", as llama-bench prints parameter counts.
inline std::string app_format_params(uint64_t n) {
    char buf[32];
    if (n < 1000000000ull) std::snprintf(buf, sizeof buf, "%.2f M", n / 1e6);
    else std::snprintf(buf, sizeof buf, "%.2f B", n / 1e9);
    return buf;
}

// A short size label: "292K", "15M", "6.7B".
inline std::string app_params_label(uint64_t n) {
    char buf[32];
    if (n < 1000000ull) std::snprintf(buf, sizeof buf, "%.0fK", n / 1e3);
    else if (n < 1000000000ull) std::snprintf(buf, sizeof buf, "%.0fM", n / 1e6);
    else std::snprintf(buf, sizeof buf, "%.1fB", n / 1e9);
    return buf;
}

// "llama 292K F32": architecture, size, weight type (llama-bench's model column).
inline std::string app_model_description(const ModelInfo& info) {
    return info.arch + " " + app_params_label(info.n_params) + " " + info.weight_type;
}

// The GPU placement flags every app that loads a model takes (engine/placement.h), into mp.
inline void app_add_placement_args(ArgParser& args, ModelParams& mp) {
    args.add_double({"--vram-budget"}, &mp.vram_budget_gib, "GiB of VRAM for weights, KV cache and scratch");
    args.set_default_text("--vram-budget", "free VRAM minus 512 MiB");
    args.add_string({"--placement"}, &mp.placement_path, "FNAME",
                    "load the GPU placement from FNAME when it exists, else plan it and save it there");
    args.add_flag({"--print-placement"}, &mp.print_placement, "print the GPU placement plan when the model loads");
    args.add_double({"--cpu-bw"}, &mp.cpu_bandwidth_gbs, "host memory bandwidth the placement assumes, GB/s");
    args.set_default_text("--cpu-bw", "measured at load");
}

// -ngl: N >= 0 layers, or -1 for the automatic placement; --vram-budget and --cpu-bw, when given, >= 0.
inline void app_check_placement(const ArgParser& args, const ModelParams& mp) {
    if (mp.n_gpu_layers < -1)
        throw Error("-ngl: invalid value '" + std::to_string(mp.n_gpu_layers) +
                    "' (expected >= 0, or -1 for the automatic placement)");
    auto text = [](double v) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", v);
        return std::string(buf);
    };
    if (args.seen("--vram-budget") && !(mp.vram_budget_gib >= 0))
        throw Error("--vram-budget: invalid value '" + text(mp.vram_budget_gib) + "' (expected >= 0 GiB)");
    if (!(mp.cpu_bandwidth_gbs >= 0))
        throw Error("--cpu-bw: invalid value '" + text(mp.cpu_bandwidth_gbs) + "' (expected >= 0 GB/s)");
}

// -ctk / -ctv (llama.cpp's --cache-type-k / --cache-type-v): the KV cache's element types, read into names and
// applied by app_apply_cache_types to a session's parameters and to the model's (whose GPU placement reserves VRAM
// for that cache).
// The apps' default is llama.cpp's: F16 keys and values, half the cache's memory (and VRAM on a GPU placement) and
// half what attention reads per token. The library's own default (SessionParams, ModelParams) stays F32.
struct CacheTypeArgs {
    std::string k = "f16", v = "f16";
};
inline void app_add_cache_type_args(ArgParser& args, CacheTypeArgs& c) {
    args.add_choice({"-ctk", "--cache-type-k"}, &c.k, {"f32", "f16"},
                    "KV cache type of the keys (f32: twice the cache, its VRAM and its reads)");
    args.add_choice({"-ctv", "--cache-type-v"}, &c.v, {"f32", "f16"}, "KV cache type of the values (as -ctk)");
}
inline void app_apply_cache_types(const CacheTypeArgs& c, SessionParams& sp) {
    sp.cache_type_k = kv_type_from_name(c.k, "-ctk");
    sp.cache_type_v = kv_type_from_name(c.v, "-ctv");
}
inline void app_apply_cache_types(const CacheTypeArgs& c, ModelParams& mp) {
    mp.cache_type_k = kv_type_from_name(c.k, "-ctk");
    mp.cache_type_v = kv_type_from_name(c.v, "-ctv");
}

// Loads the model, first checking that the file can be opened so the message names the path plainly.
inline std::unique_ptr<Model> app_load_model(const ModelParams& params, double* load_ms) {
    if (params.path.empty()) throw Error("no model file given (use -m FILE)");
    std::FILE* f = std::fopen(params.path.c_str(), "rb");
    if (!f) throw Error("cannot open model file '" + params.path + "': " + std::strerror(errno));
    std::fclose(f);
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<Model> model = Model::load(params);
    *load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return model;
}

// The model summary, one "key = value" per line on stderr, in the spirit of llama.cpp's print_info.
inline void app_log_model_info(const Model& model, const char* tag) {
    const ModelInfo& i = model.info();
    auto line = [tag](const char* key, const std::string& value) {
        std::fprintf(stderr, "%s: %-16s = %s\n", tag, key, value.c_str());
    };
    line("file", model.file().path());
    line("file size", app_format_size(model.file().file_size()));
    line("arch", i.arch);
    if (!i.name.empty()) line("name", i.name);
    line("n_vocab", std::to_string(i.n_vocab));
    line("n_ctx_train", std::to_string(i.n_ctx_train));
    line("dim", std::to_string(i.dim));
    line("n_layers", std::to_string(i.n_layers));
    line("n_heads", std::to_string(i.n_heads));
    line("n_kv_heads", std::to_string(i.n_kv_heads));
    line("head_dim", std::to_string(i.head_dim));
    line("n_ff", std::to_string(i.n_ff));
    line("n_rot", std::to_string(i.n_rot));
    char rope[64];
    std::snprintf(rope, sizeof rope, "%g (scale %g, %s)", (double)i.rope_freq_base, (double)i.rope_freq_scale,
                  i.rope_neox ? "neox" : "normal");
    line("rope", rope);
    line("ffn_act", i.ffn_act);
    line("weight type", i.weight_type);
    line("n_params", app_format_params(i.n_params) + " (" + std::to_string(i.n_params) + ")");
    line("weights", app_format_size(i.weight_bytes));
    line("tokenizer", model.tokenizer().model_name() +
                          (model.tokenizer().pre_name().empty() ? "" : " (pre: " + model.tokenizer().pre_name() + ")"));
}

}  // namespace ember
