// GPU execution of whole models against the CPU engine (label "gpu"; each test skips with a message where no CUDA
// device exists): hybrid placements on the shipped tiny ReLU model with its profile, every kind of layer split
// through a placement file, dense stories260K all on the GPU and with -ngl layer offload, the VRAM budget measured
// with cudaMemGetInfo, prompts in batches on hybrid placements, the decode timeline, and the FFN observer and offline
// profiler on the GPU; q, k and v (and gate and up) in one matvec.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/ember.h"
#include "engine/placement.h"
#include "kernels-cpu/dtype.h"
#include "kernels-gpu/cuda-check.h"
#include "models/llama-gpu.h"
#include "models/llama-placement.h"
#include "models/synth.h"
#include "offline-profiler/profiler.h"
#include "predictor/profile.h"

namespace {

// Kernels load when the context is made, not at their first launch, so that the VRAM measured around a model's
// load and run is the model's own.
const int kEagerModules = setenv("CUDA_MODULE_LOADING", "EAGER", 0);

const std::string kTiny = std::string(EMBER_SOURCE_DIR) + "/models/tiny-relu-q8_0.gguf";
const std::string kTinyProfile = std::string(EMBER_SOURCE_DIR) + "/models/tiny-relu-q8_0.profile.gguf";
const std::string kStories = std::string(EMBER_SOURCE_DIR) + "/models/stories260K.gguf";

class LlamaGpu : public ::testing::Test {
protected:
    void SetUp() override {
        (void)kEagerModules;
        if (ember::gpu::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine: GPU test skipped";
    }
};

std::unique_ptr<ember::Model> load(const std::string& path, const std::string& profile, int ngl,
                                   double budget_gib = -1, const std::string& placement = "", int prompt_batch = -1,
                                   ember::KvType kv = ember::KvType::KV_TYPE_F32) {
    ember::ModelParams mp;
    mp.cache_type_k = mp.cache_type_v = kv;
    mp.path = path;
    mp.profile_path = profile;
    mp.n_gpu_layers = ngl;
    mp.vram_budget_gib = budget_gib;
    mp.placement_path = placement;
    mp.n_ctx = 128;
    mp.gpu_prompt_batch = prompt_batch;
    mp.cpu_bandwidth_gbs = 20;  // fixed, so that plans do not depend on a measurement
    return ember::Model::load(mp);
}

int argmax(const float* v, int n) { return (int)(std::max_element(v, v + n) - v); }

// Greedy continuation of a prompt, and the logits of the prompt's last token.
struct Greedy {
    std::vector<int32_t> tokens;
    std::vector<float> first_logits;
    ember::SparseFfnStats stats;
};
// one_by_one: the prompt's tokens are evaluated one at a time, as decode steps (the GPU runs prompts that way; on
// the CPU a sparse model's batch computes every neuron and masks, with the original down projection, while a decode
// step reads the transposed copy, which for Q8_0 is quantized again along the other axis).
// traced: every step launched kernel by kernel from the queue thread (Session::set_trace), never as a graph.
Greedy greedy(const ember::Model& m, const std::string& prompt, int n, bool one_by_one = true,
              ember::KvType kv = ember::KvType::KV_TYPE_F32, bool traced = false) {
    ember::SessionParams sp;
    sp.n_ctx = 128;
    sp.n_threads = 2;
    sp.cache_type_k = sp.cache_type_v = kv;
    ember::Session s(m, sp);
    s.set_trace(traced);
    Greedy g;
    const std::vector<int32_t> toks = m.tokenizer().encode(prompt, true, false);
    if (one_by_one)
        for (int32_t t : toks) s.eval({t});
    else
        s.eval(toks);
    const int n_vocab = m.info().n_vocab;
    g.first_logits.assign(s.logits(), s.logits() + n_vocab);
    for (int i = 0; i < n; i++) {
        const int32_t t = argmax(s.logits(), n_vocab);
        g.tokens.push_back(t);
        s.eval({t});
    }
    g.stats = s.sparse_stats();
    return g;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    float d = 0;
    for (size_t i = 0; i < a.size(); i++) d = std::max(d, std::fabs(a[i] - b[i]));
    return d;
}

const char* kPrompts[] = {"Once upon a time", "The little dog", "She opened the door and"};

// On a Q8_0 model every matrix product quantizes its input vector to 8 bits, so a float sum taken in another order
// (the GPU's down projection, the hot and cold halves added separately) can move an input across a rounding step and
// the logits by a few hundredths; the F16 test below shows the engines otherwise agree to float rounding. The bar
// on Q8_0: hybrid stays closer to CPU-only sparse than sparse is to dense, and the first tokens agree.
void expect_close_to_cpu_sparse(const std::vector<float>& cpu_sparse, const std::vector<float>& gpu,
                                const std::vector<float>& cpu_dense, const std::string& what) {
    const float d_gpu = max_abs_diff(cpu_sparse, gpu), d_sparse = max_abs_diff(cpu_sparse, cpu_dense);
    std::printf("%s: max |logit diff| GPU vs CPU sparse %.5f, CPU sparse vs dense %.4f\n", what.c_str(), d_gpu,
                d_sparse);
    EXPECT_LT(d_gpu, d_sparse) << what;
}

// Greedy tokens of b that equal a's, from the start; at least `min_equal` of them, all printed.
void expect_same_start(const std::vector<int32_t>& a, const std::vector<int32_t>& b, size_t min_equal,
                       const std::string& what) {
    size_t n = 0;
    while (n < a.size() && n < b.size() && a[n] == b[n]) n++;
    std::printf("%s: %zu of %zu greedy tokens equal before the first difference\n", what.c_str(), n, a.size());
    EXPECT_GE(n, min_equal) << what;
}

// A budget smaller than the model: hot neurons in VRAM, cold ones on the CPU, on the tiny Q8_0 model.
TEST_F(LlamaGpu, TinyHybridTracksCpuSparse) {
    auto dense = load(kTiny, "", 0);
    auto cpu = load(kTiny, kTinyProfile, 0);
    auto hybrid = load(kTiny, kTinyProfile, -1, 12.0 / 1024);
    ASSERT_EQ(cpu->backend(), "CPU");
    ASSERT_EQ(hybrid->placement().mode, ember::PlacementMode::PLACEMENT_HYBRID) << hybrid->backend();
    EXPECT_LE(hybrid->placement().vram_total, (uint64_t)(12.0 / 1024 * (1ull << 30)));
    for (const char* prompt : kPrompts) {
        const Greedy a = greedy(*cpu, prompt, 32), b = greedy(*hybrid, prompt, 32), d = greedy(*dense, prompt, 0);
        expect_same_start(a.tokens, b.tokens, 4, prompt);
        expect_close_to_cpu_sparse(a.first_logits, b.first_logits, d.first_logits, prompt);
        // Both sides read weights: the host the cold rows, VRAM the dense tensors, predictors and hot rows.
        EXPECT_GT(b.stats.decode_weight_bytes, 0u);
        EXPECT_GT(b.stats.decode_gpu_weight_bytes, 0u);
        EXPECT_EQ(b.stats.decode_tokens, a.stats.decode_tokens);  // the prompt's tokens and the 32 generated
        EXPECT_GT(b.stats.decode_tokens, 32u);
        EXPECT_NEAR(b.stats.predicted_share(), a.stats.predicted_share(), 0.02) << prompt;
        // Per layer, the split FFN's halves that run side by side (engine/decode-bound.h): parts of each side's
        // total. On the CPU alone nothing splits.
        const std::vector<uint64_t>& sh = b.stats.decode_split_host_bytes;
        const std::vector<uint64_t>& sg = b.stats.decode_split_gpu_bytes;
        ASSERT_EQ(sh.size(), (size_t)hybrid->info().n_layers);
        ASSERT_EQ(sg.size(), sh.size());
        uint64_t host = 0, gpu = 0;
        for (size_t l = 0; l < sh.size(); l++) host += sh[l], gpu += sg[l];
        EXPECT_GT(host, 0u);
        EXPECT_GT(gpu, 0u);
        EXPECT_LT(host, b.stats.decode_weight_bytes);
        EXPECT_LT(gpu, b.stats.decode_gpu_weight_bytes);
        EXPECT_TRUE(a.stats.decode_split_host_bytes.empty());
    }
}

// A small model of type t with F32 construction predictors (ember-synth) at model, and its profile at profile.
void make_synth(ember::DType t, const std::string& model, const std::string& profile, int n_layers = 4) {
    ember::SynthParams p;
    p.dim = 256;
    p.n_layers = n_layers;
    p.n_ff = 1024;
    p.n_heads = 8;
    p.n_kv_heads = 4;
    p.type = t;
    p.seed = 11;
    p.vocab_from = std::string(EMBER_SOURCE_DIR) + "/models/ggml-vocab-llama-spm.gguf";
    p.n_threads = 2;
    p.construction_predictors = true;
    const ember::SynthReport r = ember::synth_write(p, model);
    ember::profile_write(ember::synth_construction_profile(p, r), profile, ember::DType::DTYPE_F32);
}

// An F16 model with F32 predictors: activations stay floats, so the GPU and the CPU differ only by the order of
// float sums, and the hybrid engine's greedy text and logits equal CPU-only sparse for every split the planner makes
// at three budgets.
TEST_F(LlamaGpu, SynthF16HybridEqualsCpuSparse) {
    const std::string model = testing::TempDir() + "ember-gpu-synth-f16.gguf";
    const std::string profile = testing::TempDir() + "ember-gpu-synth-f16.profile.gguf";
    make_synth(ember::DType::DTYPE_F16, model, profile);
    auto cpu = load(model, profile, 0);
    const double weights_mib = cpu->info().weight_bytes / 1048576.0;
    for (double share : {0.3, 0.5, 0.7}) {
        auto gpu = load(model, profile, -1, share * weights_mib / 1024);
        ASSERT_EQ(gpu->placement().mode, ember::PlacementMode::PLACEMENT_HYBRID) << share;
        for (const char* prompt : kPrompts) {
            const Greedy a = greedy(*cpu, prompt, 32), b = greedy(*gpu, prompt, 32);
            const float d = max_abs_diff(a.first_logits, b.first_logits);
            std::printf("F16, %.0f%% of the weights' size in VRAM, %s: max |logit diff| %.2e\n", 100 * share, prompt, d);
            EXPECT_EQ(a.tokens, b.tokens) << prompt << ", budget share " << share;
            EXPECT_LT(d, 1e-3f) << prompt << ", budget share " << share;
        }
    }
    std::remove(model.c_str());
    std::remove(profile.c_str());
}

// Under CPU load the queue thread, parked while it is kQueueLead layers ahead of the host, can stay asleep long after
// the host has released it: the host then finds the stream idle before a handoff whose work is not queued yet, which
// must not count as a failure. Ten layers (so the queue thread parks), every step launched kernel by kernel (traced:
// the thread queues each step), twice as many spinning threads as cores: the hybrid still gives the CPU's text.
TEST_F(LlamaGpu, HybridDecodesUnderCpuLoad) {
    const std::string model = testing::TempDir() + "ember-gpu-synth-10.gguf";
    const std::string profile = testing::TempDir() + "ember-gpu-synth-10.profile.gguf";
    make_synth(ember::DType::DTYPE_F16, model, profile, 10);
    auto cpu = load(model, profile, 0);
    auto gpu = load(model, profile, -1, 0.5 * cpu->info().weight_bytes / 1048576.0 / 1024);
    ASSERT_EQ(gpu->placement().mode, ember::PlacementMode::PLACEMENT_HYBRID);
    const Greedy want = greedy(*cpu, kPrompts[0], 16);
    std::atomic<bool> stop{false};
    std::vector<std::thread> hogs;
    for (unsigned i = 0; i < 2 * std::max(1u, std::thread::hardware_concurrency()); i++)
        hogs.emplace_back([&stop] {
            while (!stop.load(std::memory_order_relaxed)) {
            }
        });
    Greedy got;
    std::string error;
    try {
        for (int round = 0; round < 3; round++)
            got = greedy(*gpu, kPrompts[0], 16, true, ember::KvType::KV_TYPE_F32, /*traced=*/true);
    } catch (const std::exception& e) {
        error = e.what();
    }
    stop = true;
    for (std::thread& t : hogs) t.join();
    ASSERT_EQ(error, "");
    EXPECT_EQ(want.tokens, got.tokens);
    std::remove(model.c_str());
    std::remove(profile.c_str());
}

// A placement file with every kind of layer: attention on either side, FFN split with some, all or no neurons hot,
// FFN on the CPU; the output on the GPU. Loaded back as written, and it runs close to CPU-only sparse.
TEST_F(LlamaGpu, PlacementFileWithEveryLayerKind) {
    auto cpu = load(kTiny, kTinyProfile, 0);
    const ember::ModelInfo& info = cpu->info();
    ASSERT_EQ(info.n_layers, 6);
    const ember::ModelProfile prof = ember::profile_read(kTinyProfile);
    const ember::PlacementModel pm = ember::llama_placement_model(info, cpu->llama(), &prof, 128, 1, 1 << 20);
    ember::Placement p;
    p.mode = ember::PlacementMode::PLACEMENT_HYBRID;
    p.layers.resize(6);
    p.output_gpu = true;
    auto range = [](int b, int e, int step) {
        std::vector<int32_t> v;
        for (int i = b; i < e; i += step) v.push_back(i);
        return v;
    };
    p.layers[0] = {true, false, true, range(0, info.n_ff, 2)};      // GPU attention, every other neuron hot
    p.layers[1] = {false, false, true, range(0, info.n_ff / 2, 1)};  // CPU attention, first half hot
    p.layers[2] = {true, false, false, {}};                         // GPU attention, FFN on the CPU
    p.layers[3] = {false, false, true, range(0, info.n_ff, 1)};      // CPU attention, every neuron hot
    p.layers[4] = {true, false, true, {}};                          // GPU attention, predictor only: all cold
    p.layers[5] = {false, false, false, {}};                        // all on the CPU
    const std::string path = testing::TempDir() + "ember-every-kind.placement.json";
    std::remove(path.c_str());
    ember::placement_save(p, pm, path);
    auto gpu = load(kTiny, kTinyProfile, -1, -1, path);
    const ember::Placement& got = gpu->placement();
    ASSERT_EQ(got.layers.size(), 6u);
    for (int l = 0; l < 6; l++) {
        EXPECT_EQ(got.layers[l].attn_gpu, p.layers[l].attn_gpu) << l;
        EXPECT_EQ(got.layers[l].predictor_gpu, p.layers[l].predictor_gpu) << l;
        EXPECT_EQ(got.layers[l].hot, p.layers[l].hot) << l;
    }
    EXPECT_TRUE(got.output_gpu);
    auto dense = load(kTiny, "", 0);
    for (const char* prompt : kPrompts) {
        const Greedy a = greedy(*cpu, prompt, 32), b = greedy(*gpu, prompt, 32), d = greedy(*dense, prompt, 0);
        expect_same_start(a.tokens, b.tokens, 4, prompt);
        expect_close_to_cpu_sparse(a.first_logits, b.first_logits, d.first_logits, prompt);
    }
    std::remove(path.c_str());
}

// Dense stories260K: all on the GPU when it fits, and -ngl layer offload, both equal the CPU's greedy text.
TEST_F(LlamaGpu, DenseStoriesAllGpuAndLayerOffloadEqualCpu) {
    auto cpu = load(kStories, "", 0);
    auto all = load(kStories, "", -1);
    auto layers = load(kStories, "", 3);
    EXPECT_EQ(all->placement().mode, ember::PlacementMode::PLACEMENT_GPU);
    EXPECT_EQ(layers->placement().mode, ember::PlacementMode::PLACEMENT_LAYERS);
    int n_gpu = 0;
    for (const ember::LayerPlacement& l : layers->placement().layers) n_gpu += l.attn_gpu && l.ffn_gpu_dense;
    EXPECT_EQ(n_gpu, 3);
    EXPECT_TRUE(layers->placement().layers.back().attn_gpu) << "-ngl offloads the last layers";
    for (const char* prompt : kPrompts) {
        const Greedy a = greedy(*cpu, prompt, 32), b = greedy(*all, prompt, 32), c = greedy(*layers, prompt, 32);
        EXPECT_EQ(a.tokens, b.tokens) << prompt;
        EXPECT_EQ(a.tokens, c.tokens) << prompt;
        EXPECT_LT(max_abs_diff(a.first_logits, b.first_logits), 1e-3f) << prompt;
        EXPECT_LT(max_abs_diff(a.first_logits, c.first_logits), 1e-3f) << prompt;
    }
}

// A decode step makes q, k and v with one matvec, and a dense FFN's gate and up products with another: the upload
// stores wk, wv and wq back to back (w_gate and w_up too) and the state keeps k, v and q so
// (DenseStoriesAllGpuAndLayerOffloadEqualCpu and TinyDenseAllGpuEqualsCpu check such steps' tokens and logits against
// the CPU). Layers that -ngl leaves on the CPU have none; a layer outside the model is an error.
TEST_F(LlamaGpu, DecodeStepMakesQkvAndGateUpInOneMatvecEach) {
    for (const std::string& path : {kStories, kTiny}) {
        auto all = load(path, "", -1);
        auto layers = load(path, "", 1);
        const int n_layers = all->info().n_layers;
        auto all_state = ember::llama_gpu_state_create(all->info(), all->llama(), *all->gpu(), 128);
        auto layers_state = ember::llama_gpu_state_create(layers->info(), layers->llama(), *layers->gpu(), 128);
        for (int l = 0; l < n_layers; l++) {
            EXPECT_EQ(ember::llama_gpu_qkv_matvecs(*all->gpu(), *all_state, l), 1) << path << " layer " << l;
            EXPECT_EQ(ember::llama_gpu_qkv_matvecs(*layers->gpu(), *layers_state, l), l == n_layers - 1 ? 1 : 0)
                << path << " -ngl 1, layer " << l;
            EXPECT_EQ(ember::llama_gpu_gate_up_matvecs(*all->gpu(), l), 1) << path << " layer " << l;
            EXPECT_EQ(ember::llama_gpu_gate_up_matvecs(*layers->gpu(), l), l == n_layers - 1 ? 1 : 0)
                << path << " -ngl 1, layer " << l;
        }
        EXPECT_THROW(ember::llama_gpu_qkv_matvecs(*all->gpu(), *all_state, n_layers), ember::Error);
        EXPECT_THROW(ember::llama_gpu_qkv_matvecs(*all->gpu(), *all_state, -1), ember::Error);
        EXPECT_THROW(ember::llama_gpu_gate_up_matvecs(*all->gpu(), n_layers), ember::Error);
    }
}

// An F16 KV cache on GPU placements. A model planned for it reserves half the F32 plan's KV VRAM; its sessions
// give the greedy text of a CPU session with the same cache, prompts as decode steps and as batches, all on the GPU
// and with -ngl layer offload (whose CPU layers keep their caches in the session's host state). The two engines
// round their own keys and values to halves, so logits agree to 1e-2 here, not to the F32 caches' 1e-3. A session
// asking for a wider cache than its model's plan reserved is refused, naming the flags; a narrower one runs.
TEST_F(LlamaGpu, F16KvCacheOnGpuPlacementsMatchesCpu) {
    const ember::KvType f16 = ember::KvType::KV_TYPE_F16;
    auto cpu = load(kStories, "", 0), all32 = load(kStories, "", -1);
    auto all16 = load(kStories, "", -1, -1, "", -1, f16), layers16 = load(kStories, "", 3, -1, "", -1, f16);
    ASSERT_EQ(all16->placement().mode, ember::PlacementMode::PLACEMENT_GPU);
    ASSERT_EQ(layers16->placement().mode, ember::PlacementMode::PLACEMENT_LAYERS);
    EXPECT_GT(all16->placement().vram_kv, 0u);
    EXPECT_EQ(2 * all16->placement().vram_kv, all32->placement().vram_kv);
    for (const char* prompt : kPrompts) {
        const Greedy a = greedy(*cpu, prompt, 32, true, f16);
        const Greedy b = greedy(*all16, prompt, 32, true, f16), c = greedy(*all16, prompt, 32, false, f16);
        const Greedy d = greedy(*layers16, prompt, 32, true, f16);
        EXPECT_EQ(a.tokens, b.tokens) << prompt;
        EXPECT_EQ(a.tokens, c.tokens) << prompt << " (prompt in a batch)";
        EXPECT_EQ(a.tokens, d.tokens) << prompt << " (-ngl 3)";
        EXPECT_LT(max_abs_diff(a.first_logits, b.first_logits), 1e-2f) << prompt;
        EXPECT_LT(max_abs_diff(a.first_logits, c.first_logits), 1e-2f) << prompt;
        EXPECT_LT(max_abs_diff(a.first_logits, d.first_logits), 1e-2f) << prompt;
        // The halves are really used: an F32 cache on the GPU gives other logits.
        EXPECT_GT(max_abs_diff(greedy(*all32, prompt, 0).first_logits, b.first_logits), 0.0f) << prompt;
    }
    ember::SessionParams sp;
    sp.n_ctx = 64;
    sp.n_threads = 2;
    try {
        ember::Session s(*all16, sp);  // f32 caches on a plan for f16 ones
        FAIL() << "an f32 cache was accepted on a placement planned for f16";
    } catch (const ember::Error& e) {
        EXPECT_NE(std::string(e.what()).find("-ctk"), std::string::npos) << e.what();
    }
    sp.cache_type_k = f16;  // f16 keys, f32 values on the f32 plan
    ember::Session s(*all32, sp);
    s.eval({1, 400, 31});
    EXPECT_EQ(s.n_past(), 3);
}

// The tiny Q8_0 model dense, all on the GPU, against the CPU: the same greedy text, logits within float rounding.
TEST_F(LlamaGpu, TinyDenseAllGpuEqualsCpu) {
    auto cpu = load(kTiny, "", 0);
    auto gpu = load(kTiny, "", -1);
    ASSERT_EQ(gpu->placement().mode, ember::PlacementMode::PLACEMENT_GPU);
    for (const char* prompt : kPrompts) {
        const Greedy a = greedy(*cpu, prompt, 32), b = greedy(*gpu, prompt, 32);
        std::printf("%s: dense GPU vs CPU max |logit diff| %.5f\n", prompt, max_abs_diff(a.first_logits, b.first_logits));
        EXPECT_EQ(a.tokens, b.tokens) << prompt;
        EXPECT_LT(max_abs_diff(a.first_logits, b.first_logits), 2e-2f) << prompt;
    }
}

// Splits with nothing hot (the GPU only normalizes and scores: the same bits as the CPU, so the same text) and with
// everything hot (the CPU only waits).
TEST_F(LlamaGpu, TinySplitExtremesEqualCpuSparse) {
    auto cpu = load(kTiny, kTinyProfile, 0);
    auto dense = load(kTiny, "", 0);
    const ember::ModelInfo& info = cpu->info();
    const ember::ModelProfile prof = ember::profile_read(kTinyProfile);
    const ember::PlacementModel pm = ember::llama_placement_model(info, cpu->llama(), &prof, 128, 1, 1 << 20);
    for (bool all_hot : {false, true}) {
        ember::Placement p;
        p.mode = ember::PlacementMode::PLACEMENT_HYBRID;
        p.layers.resize(info.n_layers);
        for (ember::LayerPlacement& l : p.layers) {
            l.predictor_gpu = true;
            if (all_hot)
                for (int i = 0; i < info.n_ff; i++) l.hot.push_back(i);
        }
        const std::string path = testing::TempDir() + "ember-split-extreme.placement.json";
        std::remove(path.c_str());
        ember::placement_save(p, pm, path);
        auto gpu = load(kTiny, kTinyProfile, -1, -1, path);
        for (const char* prompt : kPrompts) {
            const Greedy a = greedy(*cpu, prompt, 32), b = greedy(*gpu, prompt, 32), d = greedy(*dense, prompt, 0);
            const std::string what = std::string(prompt) + (all_hot ? " (all hot)" : " (all cold)");
            if (all_hot) {
                expect_same_start(a.tokens, b.tokens, 4, what);
                expect_close_to_cpu_sparse(a.first_logits, b.first_logits, d.first_logits, what);
            } else {
                EXPECT_EQ(a.tokens, b.tokens) << what;
                EXPECT_EQ(a.first_logits, b.first_logits) << what;
            }
        }
        std::remove(path.c_str());
    }
}

const char* kLongPrompt =
    "Once upon a time there was a little girl named Lily. She loved to play outside in the sun with her friends, and "
    "one day she found a shiny red ball under a big tree.";

// Prompts on hybrid placements run in batches too: each split layer's hot neurons per token on the GPU, the batch's
// predicted cold rows read once for all its tokens on the CPU. All logits of a 41-token prompt (two batches) in one
// call against the same placement's decode steps token by token, on small synthetic models with part of their
// weights' size as the budget (room for the batch scratch, but not for the whole model): F16 (attention on the GPU through F16-rounded GEMMs) close to float rounding; Q8_0, whose
// decode steps quantize activations to 8 bits and GEMMs round them to F16, to the top tokens. The neurons predicted
// and fired are counted as the decode steps count them.
TEST_F(LlamaGpu, SplitBatchedPromptMatchesTokenByToken) {
    struct Case {
        ember::DType type;
        double share;
        float tol;
    };
    for (const Case& c : {Case{ember::DType::DTYPE_F16, 0.5, 0.01f}, Case{ember::DType::DTYPE_Q8_0, 0.75, 0.5f}}) {
        const std::string path = testing::TempDir() + "ember-gpu-batch.gguf";
        const std::string profile = testing::TempDir() + "ember-gpu-batch.profile.gguf";
        make_synth(c.type, path, profile);
        const double budget_gib = c.share * load(path, profile, 0)->info().weight_bytes / (double)(1ull << 30);
        auto gpu = load(path, profile, -1, budget_gib, "", 1);
        ASSERT_EQ(gpu->placement().mode, ember::PlacementMode::PLACEMENT_HYBRID) << path;
        ember::SessionParams sp;
        sp.n_ctx = 128;
        sp.n_threads = 2;
        ember::Session one(*gpu, sp), many(*gpu, sp);
        const std::vector<int32_t> toks = gpu->tokenizer().encode(kLongPrompt, true, false);
        ASSERT_GT(toks.size(), 33u) << "two batches";
        const int n_vocab = gpu->info().n_vocab;
        many.eval(toks, true);
        int same_top = 0;
        float worst = 0;
        for (size_t i = 0; i < toks.size(); i++) {
            one.eval({toks[i]});
            const std::vector<float> a(one.logits(), one.logits() + n_vocab);
            const std::vector<float> b(many.logits((int)i), many.logits((int)i) + n_vocab);
            worst = std::max(worst, max_abs_diff(a, b));
            same_top += argmax(a.data(), n_vocab) == argmax(b.data(), n_vocab);
        }
        const ember::SparseFfnStats so = one.sparse_stats(), sm = many.sparse_stats();
        auto fired = [](const ember::SparseFfnStats& s) { return s.neurons ? (double)s.fired / s.neurons : 0.0; };
        const std::string what = std::string(ember::dtype_name(c.type)) + " hybrid";
        std::printf("%s: %zu rows in one call vs token by token: max |logit diff| %.5f, same top token in %d; "
                    "predicted %.4f vs %.4f, fired %.4f vs %.4f\n",
                    what.c_str(), toks.size(), worst, same_top, sm.predicted_share(), so.predicted_share(),
                    fired(sm), fired(so));
        EXPECT_LT(worst, c.tol) << what;
        EXPECT_GE(same_top, (int)(0.9 * toks.size())) << what;
        EXPECT_EQ(sm.tokens, so.tokens) << what;
        EXPECT_EQ(sm.neurons, so.neurons) << what;
        EXPECT_NEAR(sm.predicted_share(), so.predicted_share(), 0.01) << what;
        EXPECT_NEAR(fired(sm), fired(so), 0.01) << what;
        // The session goes on from the batched prompt as from the one fed token by token.
        one.eval({toks[0]});
        many.eval({toks[0]});
        EXPECT_EQ(argmax(one.logits(), n_vocab), argmax(many.logits(), n_vocab)) << what;
        std::remove(path.c_str());  // unlinked while mapped: the next case writes new files under the same names
        std::remove(profile.c_str());
    }
}

// Prompts on placements without split layers run in batches through cuBLAS: all logits of a 45-token prompt (two
// batches) match the CPU engine's token-by-token rows. F32 weights (stories260K) take SGEMM, so the rows agree to
// float rounding; the tiny Q8_0 model's GEMMs round activations to F16, so there only the top tokens are compared.
TEST_F(LlamaGpu, BatchedPromptMatchesTokenByToken) {
    struct Case {
        std::string path;
        int ngl;
        float tol;
    };
    for (const Case& c : {Case{kStories, -1, 1e-3f}, Case{kStories, 3, 1e-3f}, Case{kTiny, -1, 0.5f}}) {
        auto cpu = load(c.path, "", 0);
        auto gpu = load(c.path, "", c.ngl);
        ASSERT_NE(gpu->placement().mode, ember::PlacementMode::PLACEMENT_CPU);
        ember::SessionParams sp;
        sp.n_ctx = 128;
        sp.n_threads = 2;
        ember::Session a(*cpu, sp), b(*gpu, sp);
        std::vector<int32_t> toks = cpu->tokenizer().encode(
            "Once upon a time there was a little girl named Lily. She loved to play outside in the sun with her "
            "friends, and one day she found a shiny red ball under a big tree.", true, false);
        ASSERT_GT(toks.size(), 33u) << "two batches";
        const int n_vocab = cpu->info().n_vocab;
        b.eval(toks, true);
        int same_top = 0;
        float worst = 0;
        for (size_t i = 0; i < toks.size(); i++) {
            a.eval({toks[i]});
            const std::vector<float> ra(a.logits(), a.logits() + n_vocab), rb(b.logits((int)i), b.logits((int)i) + n_vocab);
            worst = std::max(worst, max_abs_diff(ra, rb));
            same_top += argmax(ra.data(), n_vocab) == argmax(rb.data(), n_vocab);
        }
        std::printf("%s, -ngl %d: %zu rows, max |logit diff| %.5f, same top token in %d\n", c.path.c_str(), c.ngl,
                    toks.size(), worst, same_top);
        EXPECT_LT(worst, c.tol) << c.path << " -ngl " << c.ngl;
        EXPECT_GE(same_top, (int)(0.9 * toks.size())) << c.path << " -ngl " << c.ngl;
        // The session goes on from the batched prompt as from one fed token by token.
        b.eval({toks[0]});
        a.eval({toks[0]});
        EXPECT_EQ(argmax(a.logits(), n_vocab), argmax(b.logits(), n_vocab)) << c.path;
    }
}

// The VRAM the model and a session really take (cudaMemGetInfo before the load and after a prompt and decode
// steps) stays within the budget, for three budgets.
TEST_F(LlamaGpu, MeasuredVramStaysWithinBudget) {
    for (double mib : {10.0, 14.0, 24.0}) {
        CUDA_CHECK(cudaFree(nullptr));
        size_t free0 = 0, free1 = 0, total = 0;
        CUDA_CHECK(cudaMemGetInfo(&free0, &total));
        {
            auto m = load(kTiny, kTinyProfile, -1, mib / 1024);
            ember::SessionParams sp;
            sp.n_ctx = 128;
            sp.n_threads = 2;
            ember::Session s(*m, sp);
            s.eval(m->tokenizer().encode("Once upon a time there was", true, false));
            for (int i = 0; i < 8; i++) s.eval({argmax(s.logits(), m->info().n_vocab)});
            CUDA_CHECK(cudaMemGetInfo(&free1, &total));
            const double used = (double)free0 - (double)free1;
            std::printf("budget %.0f MiB: %s, planned %.2f MiB, measured %.2f MiB\n", mib, m->backend().c_str(),
                        m->placement().vram_total / 1048576.0, used / 1048576.0);
            EXPECT_NE(m->placement().mode, ember::PlacementMode::PLACEMENT_CPU);
            EXPECT_LE(used, mib * 1048576.0) << "budget " << mib << " MiB";
            EXPECT_LE(m->placement().vram_total, (uint64_t)(mib * 1048576.0));
        }
    }
}

// One traced decode step in hybrid mode: spans of both sides for every split layer, busy times within the step.
TEST_F(LlamaGpu, TimelineRecordsBothSides) {
    auto m = load(kTiny, kTinyProfile, -1, 12.0 / 1024);
    ASSERT_EQ(m->placement().mode, ember::PlacementMode::PLACEMENT_HYBRID);
    ember::SessionParams sp;
    sp.n_ctx = 64;
    sp.n_threads = 2;
    ember::Session s(*m, sp);
    s.eval(m->tokenizer().encode("Once upon a time", true, false));
    s.set_trace(true);
    s.eval({42});
    const ember::DecodeTimeline* t = s.timeline();
    ASSERT_NE(t, nullptr);
    ASSERT_FALSE(t->spans.empty());
    int gpu_spans = 0, cpu_spans = 0;
    for (const auto& sp2 : t->spans) {
        EXPECT_LE(sp2.begin_ms, sp2.end_ms) << sp2.what;
        EXPECT_GE(sp2.begin_ms, -0.05) << sp2.what;
        EXPECT_LE(sp2.end_ms, t->total_ms + 0.05) << sp2.what;
        (sp2.gpu ? gpu_spans : cpu_spans)++;
    }
    EXPECT_GT(gpu_spans, 0);
    EXPECT_GT(cpu_spans, 0);
    EXPECT_GT(t->gpu_busy_ms, 0.0);
    EXPECT_GT(t->cpu_busy_ms, 0.0);
    EXPECT_LE(t->gpu_busy_ms, t->total_ms + 0.05);
    EXPECT_LE(t->cpu_busy_ms, t->total_ms + 0.05);
}

// What an FFN observer sees of one prompt: per layer the FFN inputs and the firing masks, token after token.
struct Observed {
    std::vector<std::vector<float>> x_in;
    std::vector<std::vector<uint8_t>> fired;
};
Observed observe(const ember::Model& m, const std::vector<int32_t>& tokens) {
    ember::SessionParams sp;
    sp.n_ctx = 128;
    sp.n_batch = 64;
    sp.n_threads = 2;
    ember::Session s(m, sp);
    const int n_layers = m.info().n_layers;
    Observed o;
    o.x_in.resize(n_layers);
    o.fired.resize(n_layers);
    s.set_ffn_observer([&](int l, const float* x, int dim, const float* h, int n, int n_ff) {
        o.x_in[l].insert(o.x_in[l].end(), x, x + (size_t)n * dim);
        for (size_t j = 0; j < (size_t)n * n_ff; j++) o.fired[l].push_back(h[j] != 0.0f);
    });
    s.eval(tokens, false);
    s.eval({tokens[0]}, false);  // a single token goes through the observer too
    return o;
}

// The observer on the GPU (all layers there, and -ngl layer offload with some on the CPU) sees the CPU's FFN inputs
// up to the GPU's float rounding and the same neurons firing but for a few near zero, across batches of 32.
TEST_F(LlamaGpu, FfnObserverOnGpuSeesWhatTheCpuSees) {
    auto cpu = load(kTiny, "", 0);
    const std::vector<int32_t> tokens =
        cpu->tokenizer().encode("The little dog ran to the door and barked at the cat that sat on the wall all day "
                                "long while the sun went down over the hills and the wind blew cold.", true, false);
    ASSERT_GT(tokens.size(), 33u) << "two batches wanted";
    const Observed want = observe(*cpu, tokens);
    for (int ngl : {-1, 2}) {
        auto gpu = load(kTiny, "", ngl);
        ASSERT_TRUE(gpu->gpu() != nullptr);
        const Observed got = observe(*gpu, tokens);
        for (int l = 0; l < cpu->info().n_layers; l++) {
            SCOPED_TRACE("ngl " + std::to_string(ngl) + ", layer " + std::to_string(l));
            ASSERT_EQ(got.x_in[l].size(), want.x_in[l].size());
            ASSERT_EQ(got.fired[l].size(), want.fired[l].size());
            float scale = 0.0f;
            for (float v : want.x_in[l]) scale = std::max(scale, std::fabs(v));
            EXPECT_LT(max_abs_diff(got.x_in[l], want.x_in[l]), 2e-2f * scale);
            size_t differ = 0, fired = 0;
            for (size_t j = 0; j < want.fired[l].size(); j++) {
                differ += got.fired[l][j] != want.fired[l][j];
                fired += want.fired[l][j];
            }
            EXPECT_GT(fired, 0u);
            EXPECT_LT(differ, want.fired[l].size() / 200) << differ << " of " << want.fired[l].size() << " differ";
        }
    }
    // Split layers run token by token through the decode step, which has no observer: refused, naming why.
    auto hybrid = load(kTiny, kTinyProfile, -1, 12.0 / 1024);
    ASSERT_EQ(hybrid->placement().mode, ember::PlacementMode::PLACEMENT_HYBRID);
    ember::SessionParams sp;
    sp.n_ctx = 64;
    ember::Session s(*hybrid, sp);
    try {
        s.set_ffn_observer([](int, const float*, int, const float*, int, int) {});
        ADD_FAILURE() << "an observer on split layers was accepted";
    } catch (const ember::Error& e) {
        EXPECT_NE(std::string(e.what()).find("splits FFN layers"), std::string::npos) << e.what();
    }
}

// ember-profile's library on the GPU (dense pass and predictor training there) against the CPU on the profiler
// test's corpus: the same firing frequencies but for near-zero neurons, and predictors that reach the recall target
// on their held-out tokens skipping about as many neurons as the CPU's. Single layers' training runs part (Adam
// amplifies the rounding of sums taken in another order), so the sparsity is compared over all layers.
TEST_F(LlamaGpu, ProfilerOnGpuMatchesCpu) {
    auto cpu = load(kTiny, "", 0);
    auto gpu = load(kTiny, "", -1);
    std::FILE* f = std::fopen((std::string(EMBER_SOURCE_DIR) + "/docs/user-guide.md").c_str(), "rb");
    ASSERT_TRUE(f != nullptr);
    std::string text;
    char buf[4096];
    for (size_t got; (got = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, got);
    std::fclose(f);
    std::vector<int32_t> tokens = cpu->tokenizer().encode(text, true, false);
    ASSERT_GE(tokens.size(), 1024u);
    tokens.resize(1024);
    ember::ProfileParams p;
    p.n_ctx = 128;  // the context the models were planned for
    p.max_tokens = (int64_t)tokens.size();
    p.max_samples = p.max_tokens;
    p.n_threads = 2;
    p.auto_rank = false;
    p.train.rank = 32;
    p.train.epochs = 30;  // the CPU reaches a predicted sparsity of about 0.3 per layer
    const ember::ModelProfile a = ember::profile_model(*cpu, tokens, p);
    p.train.gpu = true;
    const ember::ModelProfile b = ember::profile_model(*gpu, tokens, p);
    ASSERT_EQ(a.n_layers, b.n_layers);
    EXPECT_EQ(a.n_tokens, b.n_tokens);
    double sparsity_cpu = 0.0, sparsity_gpu = 0.0;
    for (int l = 0; l < a.n_layers; l++) {
        SCOPED_TRACE("layer " + std::to_string(l));
        double mean = 0.0, worst = 0.0;
        for (size_t i = 0; i < a.layers[l].freq.size(); i++) {
            const double d = std::fabs((double)a.layers[l].freq[i] - b.layers[l].freq[i]);
            mean += d / a.layers[l].freq.size();
            worst = std::max(worst, d);
        }
        EXPECT_LT(mean, 0.005);
        EXPECT_LT(worst, 0.05);
        EXPECT_GE(b.layers[l].recall, 0.97f);
        sparsity_cpu += a.layers[l].sparsity / a.n_layers;
        sparsity_gpu += b.layers[l].sparsity / a.n_layers;
        std::printf("layer %d: sparsity CPU %.3f GPU %.3f, recall CPU %.3f GPU %.3f, freq diff mean %.4f max %.3f\n",
                    l, a.layers[l].sparsity, b.layers[l].sparsity, a.layers[l].recall, b.layers[l].recall, mean,
                    worst);
    }
    EXPECT_GT(sparsity_cpu, 0.2);
    EXPECT_NEAR(sparsity_gpu, sparsity_cpu, 0.1);
}

}  // namespace
