#include <algorithm>
#include <cstdio>

#include "engine/ember.h"
#include "kernels-cpu/dot.h"
#include "engine/cpu-info.h"
#include "models/llama-sparse.h"
#include "models/llama.h"
#include "predictor/profile.h"

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
    if (params.n_gpu_layers < 0)
        throw Error("n_gpu_layers: expected a value >= 0, found " + std::to_string(params.n_gpu_layers));
    if (params.n_gpu_layers > 0)
        std::fprintf(stderr, "warning: -ngl %d: GPU offload is not available in this version; all layers run on the CPU\n",
                     params.n_gpu_layers);
    if (!params.profile_path.empty()) {
        const ModelProfile profile = profile_read(params.profile_path);
        if (info.ffn_act != "relu")
            std::fprintf(stderr, "warning: %s: the FFN activation is %s, which is never exactly zero: neurons the "
                         "predictors skip change the output\n", params.profile_path.c_str(), info.ffn_act.c_str());
        ThreadPool pool(cpu_physical_cores());
        llama_sparse_init(info, *model->llama_, profile, params.profile_path, pool);
    }
    return model;
}

bool Model::sparse() const { return !llama_->sparse.empty(); }

uint64_t Model::predictor_bytes() const {
    uint64_t b = 0;
    for (const LlamaSparseFfn& s : llama_->sparse) b += s.predictor.bytes();
    return b;
}

std::string Model::chat_template() const { return file_->get_string("tokenizer.chat_template", ""); }

std::string version_string() {
    std::string s = "ember 0.1.0 (cpu: ";
    s += dot_simd_level();
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
