#include "predictor/profile.h"

#include <cmath>
#include <limits>
#include <utility>

#include "engine/error.h"
#include "kernels-cpu/quant.h"

namespace ember {

namespace {

constexpr const char* kArch = "ember-profile";
// Version 1: ReLU predictors. Version 2 adds the key predictor_hidden ("relu" or "linear"); linear predictors are
// written as version 2 so that a reader without them rejects the file instead of running them with a ReLU. ReLU
// profiles stay version 1 (with the key too), which every reader takes.
constexpr uint32_t kVersionRelu = 1;
constexpr uint32_t kVersionHidden = 2;
// PowerInfer's single, model-wide predictor threshold (gguf-py constants, PowerInfer.SPARSE_THRESHOLD).
constexpr const char* kPowerInferThreshold = "powerinfer.sparse_threshold";

std::string key(const char* name) { return std::string("ember.profile.") + name; }
std::string tensor_name(int layer, const char* what) { return "blk." + std::to_string(layer) + "." + what; }

std::string shape_str(const int64_t* ne, uint32_t n_dims) {
    std::string s = "{";
    for (uint32_t d = 0; d < n_dims; d++) s += (d ? ", " : "") + std::to_string(ne[d]);
    return s + "}";
}

// Index of the first non-finite element, or -1.
int64_t first_non_finite(const std::vector<float>& v) {
    for (size_t i = 0; i < v.size(); i++)
        if (!std::isfinite(v[i])) return (int64_t)i;
    return -1;
}

bool is_unit(float x) { return std::isfinite(x) && x >= 0.0f && x <= 1.0f; }

// Shared by write and read: everything a profile must satisfy once its tensors are floats. `where` prefixes errors.
void check_layer(const LayerProfile& lp, int l, int dim, int n_ff, bool measured, const std::string& where) {
    const Predictor& pr = lp.predictor;
    const std::string lw = where + "layer " + std::to_string(l) + ": ";
    if (pr.dim != dim || pr.n_ff != n_ff)
        throw Error(lw + "predictor (dim, n_ff) expected (" + std::to_string(dim) + ", " + std::to_string(n_ff) +
                    "), found (" + std::to_string(pr.dim) + ", " + std::to_string(pr.n_ff) + ")");
    try {
        predictor_validate(pr);
    } catch (const Error& e) {
        throw Error(lw + e.what());
    }
    if (!std::isfinite(pr.threshold)) throw Error(lw + "threshold expected finite, found " + std::to_string(pr.threshold));
    if (int64_t i = first_non_finite(pr.fc1); i >= 0)
        throw Error(lw + tensor_name(l, "fc1.weight") + ": expected finite values, found " +
                    std::to_string(pr.fc1[i]) + " at element " + std::to_string(i));
    if (int64_t i = first_non_finite(pr.fc2); i >= 0)
        throw Error(lw + tensor_name(l, "fc2.weight") + ": expected finite values, found " +
                    std::to_string(pr.fc2[i]) + " at element " + std::to_string(i));
    if (!lp.freq.empty()) {
        if ((int)lp.freq.size() != n_ff)
            throw Error(lw + tensor_name(l, "ffn_freq") + ": expected " + std::to_string(n_ff) + " values, found " +
                        std::to_string(lp.freq.size()));
        for (size_t i = 0; i < lp.freq.size(); i++)
            if (!is_unit(lp.freq[i]))
                throw Error(lw + tensor_name(l, "ffn_freq") + ": expected values in [0, 1], found " +
                            std::to_string(lp.freq[i]) + " at element " + std::to_string(i));
    }
    if (measured) {
        const std::pair<const char*, float> m[] = {
            {"sparsity", lp.sparsity}, {"recall", lp.recall}, {"precision", lp.precision}};
        for (const auto& [name, v] : m)
            if (!is_unit(v))
                throw Error(lw + key(name) + ": expected a value in [0, 1], found " + std::to_string(v));
    }
}

void check_dims(const ModelProfile& p, const std::string& where) {
    if (p.n_layers <= 0 || p.dim <= 0 || p.n_ff <= 0)
        throw Error(where + "n_layers, dim and n_ff expected positive, found " + std::to_string(p.n_layers) + ", " +
                    std::to_string(p.dim) + ", " + std::to_string(p.n_ff));
}

bool is_weight_type(DType t) { return t == DType::DTYPE_F32 || t == DType::DTYPE_F16 || t == DType::DTYPE_Q8_0; }

// Stores v (rows of `cols` floats) as type t (F32, F16 or Q8_0; cols a multiple of t's block).
void add_weight(GGUFWriter& w, const std::string& name, DType t, const std::vector<float>& v, int64_t cols,
                int64_t rows) {
    if (t == DType::DTYPE_F32) {
        w.add_tensor(name, (uint32_t)t, {cols, rows}, v.data(), v.size() * sizeof(float));
        return;
    }
    std::vector<uint8_t> q(dtype_row_bytes(t, cols) * (size_t)rows);
    quantize_row(t, v.data(), q.data(), (int64_t)v.size());  // rows hold whole blocks: one call converts them all
    w.add_tensor(name, (uint32_t)t, {cols, rows}, q.data(), q.size());
}

// ---- read ----

class Reader {
public:
    explicit Reader(const GGUFFile& f) : f_(f) {}

    [[noreturn]] void fail(const std::string& msg) const { throw Error("profile " + f_.path() + ": " + msg); }

    // A 2-D F32/F16/Q8_0 tensor with ne[0] == cols (when cols > 0) and ne[1] == rows (when rows > 0), as floats;
    // its type goes to *type.
    std::vector<float> weight(int l, const char* what, int64_t cols, int64_t rows, const char* cols_name,
                              const char* rows_name, int64_t* cols_out, int64_t* rows_out, DType* type) const {
        const std::string name = tensor_name(l, what);
        const GGUFTensorInfo* t = f_.find_tensor(name);
        if (!t) fail("layer " + std::to_string(l) + ": missing tensor " + name);
        if (t->n_dims != 2)
            fail("tensor " + name + ": expected 2 dimensions, found " + std::to_string(t->n_dims) + " " +
                 shape_str(t->ne, t->n_dims));
        if (!dtype_is_supported(t->type) || !is_weight_type((DType)t->type))
            fail(std::string("tensor ") + name + ": expected type F32, F16 or Q8_0, found " +
                 gguf_ggml_type_name(t->type));
        if (cols > 0 && t->ne[0] != cols)
            fail("tensor " + name + ": expected ne[0] = " + cols_name + " = " + std::to_string(cols) + ", found " +
                 std::to_string(t->ne[0]) + " (shape " + shape_str(t->ne, 2) + ")");
        if (rows > 0 && t->ne[1] != rows)
            fail("tensor " + name + ": expected ne[1] = " + rows_name + " = " + std::to_string(rows) + ", found " +
                 std::to_string(t->ne[1]) + " (shape " + shape_str(t->ne, 2) + ")");
        if (t->ne[0] <= 0 || t->ne[1] <= 0 || t->ne[0] > std::numeric_limits<int>::max() ||
            t->ne[1] > std::numeric_limits<int>::max())
            fail("tensor " + name + ": expected positive int-sized dimensions, found " + shape_str(t->ne, 2));
        *cols_out = t->ne[0];
        *rows_out = t->ne[1];
        *type = (DType)t->type;
        std::vector<float> v((size_t)t->n_elements());
        dequantize_row((DType)t->type, t->data, v.data(), t->n_elements());
        if (int64_t i = first_non_finite(v); i >= 0)
            fail("tensor " + name + ": expected finite values, found " + std::to_string(v[i]) + " at element " +
                 std::to_string(i));
        return v;
    }

    std::vector<float> freq(int l, int n_ff, bool required) const {
        const std::string name = tensor_name(l, "ffn_freq");
        const GGUFTensorInfo* t = f_.find_tensor(name);
        if (!t) {
            if (required) fail("layer " + std::to_string(l) + ": missing tensor " + name);
            return {};
        }
        if (t->type != (uint32_t)DType::DTYPE_F32 || t->n_dims != 1 || t->ne[0] != n_ff)
            fail("tensor " + name + ": expected F32 {" + std::to_string(n_ff) + "}, found " +
                 gguf_ggml_type_name(t->type) + " " + shape_str(t->ne, t->n_dims));
        const float* d = static_cast<const float*>(t->data);
        return std::vector<float>(d, d + n_ff);
    }

    // A per-layer f32 array key holding exactly n values.
    std::vector<float> per_layer(const char* name, int n) const {
        std::vector<float> v = f_.get_f32_array(key(name));
        if ((int)v.size() != n)
            fail("key " + key(name) + ": expected " + std::to_string(n) + " values (one per layer), found " +
                 std::to_string(v.size()));
        return v;
    }

    // The hidden activation of every layer's predictor: key predictor_hidden, required from version 2; a version 1
    // file that has it must say "relu".
    PredictorHidden predictor_hidden(uint32_t version) const {
        const std::string k = key("predictor_hidden");
        if (!f_.has(k)) {
            if (version == kVersionRelu) return PredictorHidden::PREDICTOR_HIDDEN_RELU;
            fail("missing key " + k + " (required by version " + std::to_string(version) + ")");
        }
        const std::string v = f_.get_string(k);
        if (v == "relu") return PredictorHidden::PREDICTOR_HIDDEN_RELU;
        if (v == "linear" && version == kVersionHidden) return PredictorHidden::PREDICTOR_HIDDEN_LINEAR;
        fail("key " + k + ": expected \"relu\"" + (version == kVersionHidden ? " or \"linear\"" : "") +
             " (version " + std::to_string(version) + "), found \"" + v + "\"");
    }

    int positive(const std::string& k) const {
        const uint32_t v = f_.get_u32(k);
        if (v == 0 || v > (uint32_t)std::numeric_limits<int>::max())
            fail("key " + k + ": expected a positive value, found " + std::to_string(v));
        return (int)v;
    }

    ModelProfile read_ember() const {
        const uint32_t version = f_.get_u32(key("version"));
        if (version != kVersionRelu && version != kVersionHidden)
            fail("key " + key("version") + ": expected " + std::to_string(kVersionRelu) + " or " +
                 std::to_string(kVersionHidden) + ", found " + std::to_string(version));
        const PredictorHidden hidden = predictor_hidden(version);
        ModelProfile p;
        p.model_name = f_.get_string(key("model_name"));
        p.n_layers = positive(key("n_layers"));
        p.dim = positive(key("dim"));
        p.n_ff = positive(key("n_ff"));
        p.n_tokens = f_.get_u64(key("n_tokens"));
        const std::vector<float> threshold = per_layer("threshold", p.n_layers);
        const std::vector<float> sparsity = per_layer("sparsity", p.n_layers);
        const std::vector<float> recall = per_layer("recall", p.n_layers);
        const std::vector<float> precision = per_layer("precision", p.n_layers);
        p.layers.resize(p.n_layers);
        for (int l = 0; l < p.n_layers; l++) {
            LayerProfile& lp = p.layers[l];
            read_predictor(l, p.dim, p.n_ff, threshold[l], &lp.predictor, &p.weight_type);
            lp.predictor.hidden = hidden;
            lp.freq = freq(l, p.n_ff, false);
            lp.sparsity = sparsity[l];
            lp.recall = recall[l];
            lp.precision = precision[l];
            check_layer(lp, l, p.dim, p.n_ff, true, "profile " + f_.path() + ": ");
        }
        return p;
    }

    // Predictors of a PowerInfer (or PowerInfer-converted) model file. Layer count and widths come from
    // <arch>.block_count / embedding_length / feed_forward_length when present, else from the tensors.
    ModelProfile read_powerinfer() const {
        ModelProfile p;
        const std::string arch = f_.get_string("general.architecture", "");
        p.model_name = f_.get_string("general.name", "");
        if (!f_.has(kPowerInferThreshold)) fail("missing key " + std::string(kPowerInferThreshold));
        const float threshold = f_.get_f32(kPowerInferThreshold);
        if (!std::isfinite(threshold))
            fail(std::string("key ") + kPowerInferThreshold + ": expected finite, found " + std::to_string(threshold));
        if (!arch.empty() && f_.has(arch + ".block_count")) {
            p.n_layers = positive(arch + ".block_count");
        } else {
            while (f_.find_tensor(tensor_name(p.n_layers, "fc1.weight"))) p.n_layers++;
            if (p.n_layers == 0) fail("missing tensor " + tensor_name(0, "fc1.weight"));
        }
        p.dim = !arch.empty() && f_.has(arch + ".embedding_length") ? positive(arch + ".embedding_length") : 0;
        p.n_ff = !arch.empty() && f_.has(arch + ".feed_forward_length") ? positive(arch + ".feed_forward_length") : 0;
        p.layers.resize(p.n_layers);
        for (int l = 0; l < p.n_layers; l++) {
            LayerProfile& lp = p.layers[l];
            read_predictor(l, p.dim, p.n_ff, threshold, &lp.predictor, &p.weight_type);
            p.dim = lp.predictor.dim;  // widths not given by keys are fixed by layer 0
            p.n_ff = lp.predictor.n_ff;
            lp.freq = freq(l, p.n_ff, false);
            const float nan = std::numeric_limits<float>::quiet_NaN();
            lp.sparsity = lp.recall = lp.precision = nan;
            check_layer(lp, l, p.dim, p.n_ff, false, "profile " + f_.path() + ": ");
        }
        return p;
    }

private:
    // fc1 ne = {dim, rank}, fc2 ne = {rank, n_ff}; dim / n_ff of 0 mean "take from the tensor". Layer 0's fc1 sets
    // *type (the profile's weight type); every other fc1 and fc2 must have it, as the engine runs them all in it.
    void read_predictor(int l, int dim, int n_ff, float threshold, Predictor* pr, DType* type) const {
        int64_t c1 = 0, rank = 0, c2 = 0, r2 = 0;
        DType t1 = DType::DTYPE_F32, t2 = DType::DTYPE_F32;
        pr->fc1 = weight(l, "fc1.weight", dim, 0, "dim", "rank", &c1, &rank, &t1);
        pr->fc2 = weight(l, "fc2.weight", rank, n_ff, "rank (fc1.weight ne[1])", "n_ff", &c2, &r2, &t2);
        if (l == 0) *type = t1;
        for (const auto& [what, t] : {std::pair{"fc1.weight", t1}, std::pair{"fc2.weight", t2}})
            if (t != *type)
                fail("layer " + std::to_string(l) + ": tensor " + tensor_name(l, what) + ": expected type " +
                     gguf_ggml_type_name((uint32_t)*type) + " (that of " + tensor_name(0, "fc1.weight") +
                     ": a profile's predictors share one type), found " + gguf_ggml_type_name((uint32_t)t));
        pr->dim = (int)c1;
        pr->rank = (int)rank;
        pr->n_ff = (int)r2;
        pr->threshold = threshold;
    }

    const GGUFFile& f_;
};

}  // namespace

void profile_write(const ModelProfile& p, const std::string& path, DType weight_type) {
    ModelProfile q = p;
    q.weight_type = weight_type;
    profile_write(q, path);
}

void profile_write(const ModelProfile& p, const std::string& path) {
    const std::string where = "profile_write " + path + ": ";
    const DType weight_type = p.weight_type;
    if (!is_weight_type(weight_type))
        throw Error(where + "weight type expected F32, F16 or Q8_0, found dtype id " +
                    std::to_string((uint32_t)weight_type));
    check_dims(p, where);
    if ((int)p.layers.size() != p.n_layers)
        throw Error(where + "expected " + std::to_string(p.n_layers) + " layers, found " +
                    std::to_string(p.layers.size()));
    const int block = dtype_block_elems(weight_type);
    for (int l = 0; l < p.n_layers; l++) {
        check_layer(p.layers[l], l, p.dim, p.n_ff, true, where);
        const Predictor& pr = p.layers[l].predictor;
        if (pr.dim % block != 0 || pr.rank % block != 0)
            throw Error(where + "layer " + std::to_string(l) + ": " + tensor_name(l, "fc1.weight") + " / " +
                        tensor_name(l, "fc2.weight") + " in " + dtype_name(weight_type) +
                        " need dim and rank to be multiples of " + std::to_string(block) + ", found dim=" +
                        std::to_string(pr.dim) + " rank=" + std::to_string(pr.rank));
    }

    const PredictorHidden hidden = p.layers.empty() ? PredictorHidden::PREDICTOR_HIDDEN_RELU
                                                    : p.layers[0].predictor.hidden;
    for (int l = 1; l < p.n_layers; l++)
        if (p.layers[l].predictor.hidden != hidden)
            throw Error(where + "layer " + std::to_string(l) + ": predictor hidden activation " +
                        predictor_hidden_name(p.layers[l].predictor.hidden) + ", expected " +
                        predictor_hidden_name(hidden) + " (that of layer 0: a profile's predictors share one)");

    GGUFWriter w;
    w.set_string("general.architecture", kArch);
    w.set_string("general.name", p.model_name + " profile");
    w.set_u32(key("version"), hidden == PredictorHidden::PREDICTOR_HIDDEN_RELU ? kVersionRelu : kVersionHidden);
    w.set_string(key("predictor_hidden"), predictor_hidden_name(hidden));
    w.set_string(key("model_name"), p.model_name);
    w.set_u32(key("n_layers"), (uint32_t)p.n_layers);
    w.set_u32(key("dim"), (uint32_t)p.dim);
    w.set_u32(key("n_ff"), (uint32_t)p.n_ff);
    w.set_u64(key("n_tokens"), p.n_tokens);
    std::vector<float> threshold, sparsity, recall, precision;
    for (const LayerProfile& lp : p.layers) {
        threshold.push_back(lp.predictor.threshold);
        sparsity.push_back(lp.sparsity);
        recall.push_back(lp.recall);
        precision.push_back(lp.precision);
    }
    w.set_f32_array(key("threshold"), threshold);
    w.set_f32_array(key("sparsity"), sparsity);
    w.set_f32_array(key("recall"), recall);
    w.set_f32_array(key("precision"), precision);
    // PowerInfer has one threshold for the whole model; ours are per layer and win when present.
    w.set_f32(kPowerInferThreshold, threshold[0]);
    for (int l = 0; l < p.n_layers; l++) {
        const LayerProfile& lp = p.layers[l];
        const Predictor& pr = lp.predictor;
        if (!lp.freq.empty())
            w.add_tensor(tensor_name(l, "ffn_freq"), (uint32_t)DType::DTYPE_F32, {p.n_ff}, lp.freq.data(),
                         lp.freq.size() * sizeof(float));
        add_weight(w, tensor_name(l, "fc1.weight"), weight_type, pr.fc1, pr.dim, pr.rank);
        add_weight(w, tensor_name(l, "fc2.weight"), weight_type, pr.fc2, pr.rank, pr.n_ff);
    }
    w.write(path);
}

ModelProfile profile_read(const GGUFFile& f) {
    Reader r(f);
    if (f.get_string("general.architecture", "") == kArch) return r.read_ember();
    if (f.is_powerinfer() || f.find_tensor(tensor_name(0, "fc1.weight"))) return r.read_powerinfer();
    r.fail(std::string("expected general.architecture \"") + kArch +
           "\", a PowerInfer file or blk.0.fc1.weight, found architecture \"" +
           f.get_string("general.architecture", "") + "\" without predictor tensors");
}

ModelProfile profile_read(const std::string& path) { return profile_read(*GGUFFile::open(path)); }

void profile_check_model(const ModelProfile& p, const ModelInfo& model) {
    const std::pair<const char*, std::pair<int, int>> dims[] = {
        {"n_layers", {model.n_layers, p.n_layers}}, {"dim", {model.dim, p.dim}}, {"n_ff", {model.n_ff, p.n_ff}}};
    for (const auto& [name, v] : dims)
        if (v.first != v.second)
            throw Error("profile of \"" + p.model_name + "\" does not fit model \"" + model.name + "\": " + name +
                        " expected " + std::to_string(v.first) + " (model), found " + std::to_string(v.second) +
                        " (profile)");
}

}  // namespace ember
