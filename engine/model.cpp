#include <algorithm>
#include <cstdio>

#include "engine/ember.h"
#include "kernels-cpu/dot.h"
#include "models/llama.h"

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
    return model;
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
