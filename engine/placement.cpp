// The placement planner (engine/placement.h); docs/architecture.md, "Placement planner", explains the algorithm.
#include "engine/placement.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/atomic-file.h"
#include "engine/decode-bound.h"
#include "engine/error.h"

namespace ember {

const char* placement_mode_name(PlacementMode m) {
    switch (m) {
        case PlacementMode::PLACEMENT_CPU: return "cpu";
        case PlacementMode::PLACEMENT_GPU: return "gpu";
        case PlacementMode::PLACEMENT_HYBRID: return "hybrid";
        case PlacementMode::PLACEMENT_LAYERS: return "layers";
    }
    return "?";
}

bool placement_ffn_sparse(const Placement& p) {
    if (p.layers.empty()) return true;
    for (const LayerPlacement& lp : p.layers)
        if (!lp.ffn_gpu_dense) return true;
    return false;
}

int Placement::n_hot_total() const {
    int n = 0;
    for (const LayerPlacement& l : layers) n += (int)l.hot.size();
    return n;
}

namespace {

std::string num(double x) {
    std::ostringstream s;
    s << x;
    return s.str();
}

void validate_request(const PlacementRequest& req, const char* who) {
    if (!(req.cpu_bandwidth > 0) || !std::isfinite(req.cpu_bandwidth))
        throw Error(std::string(who) + ": request.cpu_bandwidth must be > 0 bytes/s, found " + num(req.cpu_bandwidth));
    if (!(req.gpu_bandwidth > 0) || !std::isfinite(req.gpu_bandwidth))
        throw Error(std::string(who) + ": request.gpu_bandwidth must be > 0 bytes/s, found " + num(req.gpu_bandwidth));
    if (req.n_gpu_layers < -1)
        throw Error(std::string(who) + ": request.n_gpu_layers must be >= -1 (-1: automatic), found " +
                    std::to_string(req.n_gpu_layers));
}

void validate_model(const PlacementModel& m, const char* who) {
    const std::string w = std::string(who) + ": model '" + m.model_name + "': ";
    if (m.n_layers < 1) throw Error(w + "n_layers must be > 0, found " + std::to_string(m.n_layers));
    if (m.n_ff < 1) throw Error(w + "n_ff must be > 0, found " + std::to_string(m.n_ff));
    if (m.gate_row_bytes > m.neuron_bytes)
        throw Error(w + "gate_row_bytes " + std::to_string(m.gate_row_bytes) + " exceeds neuron_bytes " +
                    std::to_string(m.neuron_bytes));
    if (!m.freq.empty() && (int)m.freq.size() != m.n_layers)
        throw Error(w + "freq has " + std::to_string(m.freq.size()) + " rows, expected n_layers " +
                    std::to_string(m.n_layers) + " (or none)");
    for (size_t l = 0; l < m.freq.size(); l++) {
        const std::vector<float>& row = m.freq[l];
        if (!row.empty() && (int)row.size() != m.n_ff)
            throw Error(w + "freq[" + std::to_string(l) + "] has " + std::to_string(row.size()) +
                        " values, expected n_ff " + std::to_string(m.n_ff) + " (or none)");
        for (size_t i = 0; i < row.size(); i++)
            if (!(row[i] >= 0.0f && row[i] <= 1.0f))
                throw Error(w + "freq[" + std::to_string(l) + "][" + std::to_string(i) + "] = " + num(row[i]) +
                            " outside [0, 1]");
    }
    if (!m.predicted_share.empty() && (int)m.predicted_share.size() != m.n_layers)
        throw Error(w + "predicted_share has " + std::to_string(m.predicted_share.size()) +
                    " values, expected n_layers " + std::to_string(m.n_layers) + " (or none)");
    for (size_t l = 0; l < m.predicted_share.size(); l++)
        if (!(m.predicted_share[l] >= 0.0f && m.predicted_share[l] <= 1.0f))
            throw Error(w + "predicted_share[" + std::to_string(l) + "] = " + num(m.predicted_share[l]) +
                        " outside [0, 1]");
}

// The layer's predicted share when the profile gives a positive one, else 0.
double predicted_share_of(const PlacementModel& m, int l) {
    if (!m.has_profile || m.predicted_share.empty()) return 0.0;
    return std::max(0.0, (double)m.predicted_share[l]);
}

// e[i]: expected bytes neuron i of layer l costs per token, wherever it runs. The gate row is read when the
// predictor marks the neuron active (pred_i), up row and down column when it truly fires (f_i). The predictor's
// share is spread over the neurons in proportion to their frequency: pred_i = min(1, f_i * share / mean(f)).
void neuron_costs(const PlacementModel& m, int l, std::vector<double>& e) {
    e.resize(m.n_ff);
    const double share = predicted_share_of(m, l);
    const bool has_row = (int)m.freq.size() > l && !m.freq[l].empty();
    const double fill = share > 0 ? share : 1.0;  // f of every neuron when the row is unknown
    double mean = fill;
    if (has_row) {
        double sum = 0;
        for (float f : m.freq[l]) sum += f;
        mean = sum / m.n_ff;
    }
    const double s = share > 0 && mean > 0 ? share / mean : 1.0;
    const double gate = (double)m.gate_row_bytes, rest = (double)(m.neuron_bytes - m.gate_row_bytes);
    for (int i = 0; i < m.n_ff; i++) {
        const double f = has_row ? (double)m.freq[l][i] : fill;
        e[i] = gate * std::min(1.0, f * s) + rest * f;
    }
}

// Whether everything in VRAM runs the FFN sparse (predictor, every neuron hot) rather than dense: with a profile,
// where the FFN's weights take at least a byte each. Below that (Q4_0) the dense matvecs read so few bytes that the
// predictor's and the sparse kernels' fixed costs outweigh the rows they skip: 7B models all on an H200, construction
// profiles (docs/benchmarks.md, 2026-11-27): F16 sparse 302 t/s against dense 230, Q8_0 397 against 356, Q4_0 454
// against 499.
bool gpu_ffn_sparse(const PlacementModel& m) {
    return m.has_profile && (double)m.ffn_dense_bytes >= 3.0 * (double)m.dim * (double)m.n_ff;
}

// Everything in VRAM: the GPU mode's plan (sparse with every neuron hot where gpu_ffn_sparse says so).
Placement all_gpu(const PlacementModel& m) {
    Placement p;
    p.mode = PlacementMode::PLACEMENT_GPU;
    p.layers.resize(m.n_layers);
    const bool sparse = gpu_ffn_sparse(m);
    for (LayerPlacement& lp : p.layers) {
        lp.attn_gpu = true;
        if (sparse) {
            lp.predictor_gpu = true;
            lp.hot.resize(m.n_ff);
            for (int i = 0; i < m.n_ff; i++) lp.hot[i] = i;
        } else {
            lp.ffn_gpu_dense = true;
        }
    }
    p.output_gpu = true;
    return p;
}

// The last n layers whole on the GPU (attention, KV, dense FFN); the output too when `output`.
Placement last_layers(const PlacementModel& m, int n, bool output) {
    Placement p;
    p.mode = n > 0 || output ? PlacementMode::PLACEMENT_LAYERS : PlacementMode::PLACEMENT_CPU;
    p.layers.resize(m.n_layers);
    for (int l = m.n_layers - n; l < m.n_layers; l++) {
        p.layers[l].attn_gpu = true;
        p.layers[l].ffn_gpu_dense = true;
    }
    p.output_gpu = output;
    return p;
}

// One candidate of the hybrid greedy: its density (saving per VRAM byte) and an id whose order is the tie-break:
// kind (output, attention, predictor, neuron), then layer, then neuron index.
struct Item {
    double density;
    uint64_t id;
};
enum ItemKind : uint64_t { ITEM_OUTPUT = 0, ITEM_ATTN = 1, ITEM_PREDICTOR = 2, ITEM_NEURON = 3 };
constexpr int kIdShift = 30;  // layer and neuron index each take 30 bits

uint64_t item_id(ItemKind k, int layer, int index) {
    return ((uint64_t)k << (2 * kIdShift)) | ((uint64_t)layer << kIdShift) | (uint64_t)index;
}

double density_of(double saving, uint64_t vram) {
    return vram == 0 ? std::numeric_limits<double>::infinity() : saving / (double)vram;
}

Placement plan_hybrid(const PlacementModel& m, const PlacementRequest& req) {
    const int L = m.n_layers, F = m.n_ff;
    std::vector<std::vector<double>> e(L);
    double cold = 0, hot = 0;  // expected neuron bytes per token on the CPU / the GPU
    for (int l = 0; l < L; l++) {
        neuron_costs(m, l, e[l]);
        for (double x : e[l]) cold += x;
    }
    const uint64_t attn_vram = m.attn_bytes + m.kv_bytes_per_layer;
    const uint64_t pred_vram = m.predictor_bytes + m.ffn_norm_bytes;

    std::vector<Item> items;
    items.reserve(1 + 2 * (size_t)L + (size_t)L * F);
    items.push_back({density_of((double)m.output_bytes, m.output_bytes), item_id(ITEM_OUTPUT, 0, 0)});
    for (int l = 0; l < L; l++) {
        items.push_back({density_of((double)m.attn_bytes, attn_vram), item_id(ITEM_ATTN, l, 0)});
        items.push_back({density_of((double)m.predictor_bytes, pred_vram), item_id(ITEM_PREDICTOR, l, 0)});
        for (int i = 0; i < F; i++)
            items.push_back({density_of(e[l][i], m.neuron_bytes), item_id(ITEM_NEURON, l, i)});
    }
    std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
        return a.density > b.density || (a.density == b.density && a.id < b.id);
    });

    Placement p;
    p.layers.resize(L);
    uint64_t left = req.vram_budget - m.gpu_scratch_bytes;  // the caller checked budget > scratch
    bool placed = false;
    bool neurons_done = false;  // the hot neurons' GPU time has caught up with the cold ones' CPU time
    const double cbw = req.cpu_bandwidth, gbw = req.gpu_bandwidth;
    for (const Item& it : items) {
        const ItemKind kind = (ItemKind)(it.id >> (2 * kIdShift));
        const int l = (int)((it.id >> kIdShift) & ((1u << kIdShift) - 1));
        const int i = (int)(it.id & ((1u << kIdShift) - 1));
        LayerPlacement& lp = p.layers[l];
        uint64_t vram = 0;
        bool with_predictor = false;  // a neuron that brings its layer's predictor along
        if (kind == ITEM_NEURON && neurons_done) continue;
        switch (kind) {
            case ITEM_OUTPUT: vram = m.output_bytes; break;
            case ITEM_ATTN: vram = attn_vram; break;
            case ITEM_PREDICTOR:
                if (lp.predictor_gpu) continue;  // already brought in by one of its neurons
                vram = pred_vram;
                break;
            case ITEM_NEURON:
                vram = m.neuron_bytes;
                // A neuron needs its layer's predictor in VRAM. When the neuron's density ranks above the
                // predictor's (a neuron that fires for nearly every token), the two go in as one step.
                if (!lp.predictor_gpu) {
                    with_predictor = true;
                    vram += pred_vram;
                }
                break;
        }
        if (vram > left) continue;
        // Attention, predictors and the output run between the FFNs' parallel parts: moving one saves its bytes'
        // time on the CPU and costs it on the GPU, a gain whenever the GPU reads faster.
        if (kind != ITEM_NEURON && !(gbw > cbw)) continue;
        if (kind == ITEM_NEURON && (hot + e[l][i]) / gbw > (cold - e[l][i]) / cbw) {
            neurons_done = true;  // the GPU's share of the FFNs would become the slower one
            continue;
        }
        left -= vram;
        if (kind == ITEM_NEURON) hot += e[l][i], cold -= e[l][i];
        placed = true;
        switch (kind) {
            case ITEM_OUTPUT: p.output_gpu = true; break;
            case ITEM_ATTN: lp.attn_gpu = true; break;
            case ITEM_PREDICTOR: lp.predictor_gpu = true; break;
            case ITEM_NEURON:
                if (with_predictor) lp.predictor_gpu = true;
                lp.hot.push_back(i);
                break;
        }
    }
    if (!placed) return last_layers(m, 0, false);
    p.mode = PlacementMode::PLACEMENT_HYBRID;
    for (LayerPlacement& lp : p.layers) std::sort(lp.hot.begin(), lp.hot.end());
    return p;
}

}  // namespace

void placement_account(const PlacementModel& m, const PlacementRequest& req, Placement& p) {
    validate_request(req, "placement_account");
    validate_model(m, "placement_account");
    if ((int)p.layers.size() != m.n_layers)
        throw Error("placement_account: the placement has " + std::to_string(p.layers.size()) +
                    " layers, model '" + m.model_name + "' has " + std::to_string(m.n_layers));
    uint64_t weights = 0, kv = 0;
    double cpu = (double)m.embd_row_bytes, gpu = 0;
    std::vector<double> e;
    std::vector<double> split_cpu(m.n_layers, 0.0), split_gpu(m.n_layers, 0.0);  // a split FFN's two halves
    for (int l = 0; l < m.n_layers; l++) {
        const LayerPlacement& lp = p.layers[l];
        if (lp.attn_gpu) {
            weights += m.attn_bytes;
            kv += m.kv_bytes_per_layer;
            gpu += (double)m.attn_bytes;
        } else {
            cpu += (double)m.attn_bytes;
        }
        if (!lp.predictor_gpu && !lp.hot.empty())
            throw Error("placement_account: layers[" + std::to_string(l) + "] has hot neurons without predictor_gpu");
        if (lp.ffn_gpu_dense) {
            weights += m.ffn_dense_bytes + m.ffn_norm_bytes;
            gpu += (double)m.ffn_dense_bytes;
            if (lp.predictor_gpu)
                throw Error("placement_account: layers[" + std::to_string(l) +
                            "] sets both ffn_gpu_dense and predictor_gpu");
        } else if (lp.predictor_gpu) {
            neuron_costs(m, l, e);
            weights += m.predictor_bytes + m.ffn_norm_bytes + (uint64_t)lp.hot.size() * m.neuron_bytes;
            double hot = 0, cold = 0;
            size_t h = 0;
            for (int i = 0; i < m.n_ff; i++) {
                if (h < lp.hot.size() && lp.hot[h] == i) {
                    hot += e[i];
                    h++;
                } else {
                    cold += e[i];
                }
            }
            if (h != lp.hot.size())
                throw Error("placement_account: layers[" + std::to_string(l) + "].hot[" + std::to_string(h) +
                            "] = " + std::to_string(lp.hot[h]) + " is not ascending within [0, " +
                            std::to_string(m.n_ff) + ")");
            gpu += (double)m.predictor_bytes + hot;
            cpu += cold;
            split_gpu[l] = hot;
            split_cpu[l] = cold;
        } else if (m.has_profile) {
            neuron_costs(m, l, e);
            cpu += (double)m.predictor_bytes;
            for (double x : e) cpu += x;
        } else {
            cpu += (double)m.ffn_dense_bytes;
        }
    }
    if (p.output_gpu) {
        weights += m.output_bytes;
        gpu += (double)m.output_bytes;
    } else {
        cpu += (double)m.output_bytes;
    }
    p.vram_weights = weights;
    p.vram_kv = kv;
    const bool any_gpu = weights > 0 || kv > 0 || p.output_gpu ||
                         std::any_of(p.layers.begin(), p.layers.end(), [](const LayerPlacement& lp) {
                             return lp.attn_gpu || lp.ffn_gpu_dense || lp.predictor_gpu;
                         });
    p.vram_scratch = any_gpu ? m.gpu_scratch_bytes : 0;
    p.vram_total = p.vram_weights + p.vram_kv + p.vram_scratch;
    p.vram_budget = req.vram_budget;
    p.cpu_bytes_per_token = cpu;
    p.gpu_bytes_per_token = gpu;
    p.cpu_bandwidth = req.cpu_bandwidth;
    p.gpu_bandwidth = req.gpu_bandwidth;
    DecodeBytes b;
    b.host = cpu;
    b.gpu = gpu;
    b.split_host = std::move(split_cpu);
    b.split_gpu = std::move(split_gpu);
    // A plan that reads nothing is bound by nothing.
    auto or_unbounded = [](double ts) { return ts > 0 ? ts : std::numeric_limits<double>::infinity(); };
    p.bound_tokens_per_s = or_unbounded(decode_bound_parallel_ts(b, req.cpu_bandwidth, req.gpu_bandwidth));
    p.layer_order_tokens_per_s = or_unbounded(decode_bound_layer_order_ts(b, req.cpu_bandwidth, req.gpu_bandwidth));
}

Placement placement_plan(const PlacementModel& m, const PlacementRequest& req) {
    validate_request(req, "placement_plan");
    validate_model(m, "placement_plan");
    if ((uint64_t)m.n_layers >= (1u << kIdShift) || (uint64_t)m.n_ff >= (1u << kIdShift))
        throw Error("placement_plan: model '" + m.model_name + "' is too large for the planner (n_layers " +
                    std::to_string(m.n_layers) + ", n_ff " + std::to_string(m.n_ff) + ")");
    Placement p;
    if (req.n_gpu_layers >= 0) {
        // Explicit -ngl N: dense layer offload of the last N layers, the output too past n_layers. Not fitted to the
        // budget: the accounting reports it and the executor refuses what VRAM cannot hold.
        p = last_layers(m, std::min(req.n_gpu_layers, m.n_layers), req.n_gpu_layers > m.n_layers);
    } else if (req.vram_budget == 0) {
        p = last_layers(m, 0, false);
    } else {
        p = all_gpu(m);
        placement_account(m, req, p);
        if (p.vram_total > req.vram_budget) {
            if (!m.has_profile) {
                // Dense layers from the end, as many as the budget holds after scratch.
                const uint64_t per_layer = m.attn_bytes + m.kv_bytes_per_layer + m.ffn_dense_bytes + m.ffn_norm_bytes;
                int n = 0;
                if (req.vram_budget > m.gpu_scratch_bytes) {
                    const uint64_t room = req.vram_budget - m.gpu_scratch_bytes;
                    n = per_layer == 0 ? m.n_layers : (int)std::min<uint64_t>(room / per_layer, m.n_layers);
                }
                p = last_layers(m, n, false);
            } else if (req.vram_budget > m.gpu_scratch_bytes) {
                p = plan_hybrid(m, req);
            } else {
                p = last_layers(m, 0, false);
            }
        }
    }
    placement_account(m, req, p);
    return p;
}

namespace {

std::string gib(uint64_t bytes) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%8.2f GiB (%llu bytes)", (double)bytes / (1024.0 * 1024.0 * 1024.0),
                  (unsigned long long)bytes);
    return buf;
}

}  // namespace

std::string placement_describe(const PlacementModel& m, const Placement& p) {
    std::string s;
    char buf[256];
    s += std::string("placement: ") + placement_mode_name(p.mode) + " (model '" + m.model_name + "', " +
         std::to_string(m.n_layers) + " layers, n_ff " + std::to_string(m.n_ff) + ")\n";
    s += "VRAM budget  " + gib(p.vram_budget) + "\n";
    s += "VRAM total   " + gib(p.vram_total) + "\n";
    s += "  weights    " + gib(p.vram_weights) + "\n";
    s += "  KV cache   " + gib(p.vram_kv) + "\n";
    s += "  scratch    " + gib(p.vram_scratch) + "\n";
    std::snprintf(buf, sizeof buf, "per token: CPU reads %.0f bytes (%.3f GiB), GPU reads %.0f bytes (%.3f GiB)\n",
                  p.cpu_bytes_per_token, p.cpu_bytes_per_token / (1024.0 * 1024.0 * 1024.0), p.gpu_bytes_per_token,
                  p.gpu_bytes_per_token / (1024.0 * 1024.0 * 1024.0));
    s += buf;
    std::snprintf(buf, sizeof buf, "bound: %.2f t/s (%.2f t/s in layer order)\n", p.bound_tokens_per_s,
                  p.layer_order_tokens_per_s);
    s += buf;
    s += std::string("output: ") + (p.output_gpu ? "GPU" : "CPU") + "\n";
    const bool valid = p.layers.size() == (size_t)m.n_layers;
    std::vector<double> e;
    for (size_t l = 0; l < p.layers.size(); l++) {
        const LayerPlacement& lp = p.layers[l];
        std::string ffn;
        if (lp.ffn_gpu_dense) {
            ffn = "gpu dense";
        } else if (lp.predictor_gpu) {
            double hot = 0, all = 0;
            if (valid) {
                neuron_costs(m, (int)l, e);
                for (double x : e) all += x;
                for (int32_t i : lp.hot)
                    if (i >= 0 && i < m.n_ff) hot += e[i];
            }
            std::snprintf(buf, sizeof buf, "split: %zu hot of %d (%.1f%% of expected active bytes)", lp.hot.size(),
                          m.n_ff, all > 0 ? 100.0 * hot / all : 0.0);
            ffn = buf;
        } else {
            ffn = "cpu";
        }
        std::snprintf(buf, sizeof buf, "layer %3zu: attention %s, FFN %s\n", l, lp.attn_gpu ? "GPU" : "CPU",
                      ffn.c_str());
        s += buf;
    }
    return s;
}

// ---- placement files ----

namespace {

using nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr const char* kFormat = "ember-placement";
constexpr int kVersion = 1;

// Half-open ascending ranges [begin, end) of an ascending index list.
std::vector<std::pair<int32_t, int32_t>> to_ranges(const std::vector<int32_t>& hot) {
    std::vector<std::pair<int32_t, int32_t>> r;
    for (int32_t i : hot) {
        if (!r.empty() && r.back().second == i)
            r.back().second = i + 1;
        else
            r.push_back({i, i + 1});
    }
    return r;
}

// Reads one placement file; every complaint names the file and the field path.
struct FileReader {
    std::string file;

    [[noreturn]] void fail(const std::string& field, const std::string& what) const {
        throw Error(file + ": " + (field.empty() ? "" : field + ": ") + what);
    }
    static std::string at(const std::string& path, const std::string& key) {
        return path.empty() ? key : path + "." + key;
    }
    void object_with(const json& j, const std::string& path, std::initializer_list<const char*> keys) const {
        if (!j.is_object())
            fail(path.empty() ? "(top level)" : path, std::string("expected an object, found ") + j.type_name());
        for (const char* k : keys)
            if (!j.contains(k)) fail(at(path, k), "missing");
        for (auto it = j.begin(); it != j.end(); ++it)
            if (std::find_if(keys.begin(), keys.end(), [&](const char* k) { return it.key() == k; }) == keys.end())
                fail(at(path, it.key()), "unknown field");
    }
    bool get_bool(const json& obj, const std::string& path, const char* key) const {
        const json& v = obj.at(key);
        if (!v.is_boolean()) fail(at(path, key), std::string("expected true or false, found ") + v.type_name());
        return v.get<bool>();
    }
    int64_t get_int(const json& v, const std::string& field) const {
        if (!v.is_number_integer()) fail(field, std::string("expected an integer, found ") + v.type_name());
        if (v.is_number_unsigned() && v.get<uint64_t>() > (uint64_t)std::numeric_limits<int64_t>::max())
            fail(field, "integer too large: " + v.dump());
        return v.get<int64_t>();
    }
    std::string get_string(const json& obj, const std::string& path, const char* key) const {
        const json& v = obj.at(key);
        if (!v.is_string()) fail(at(path, key), std::string("expected a string, found ") + v.type_name());
        return v.get<std::string>();
    }
};

// The file's text (docs/architecture.md, "Placement planner"): one line per layer, so that it reads well and diffs
// of two plans line up by layer.
std::string placement_json(const Placement& p, const PlacementModel& m) {
    ordered_json model;
    model["name"] = m.model_name;
    model["n_layers"] = m.n_layers;
    model["n_ff"] = m.n_ff;
    model["dim"] = m.dim;
    std::string text = "{\n";
    text += "  \"format\": " + json(kFormat).dump() + ",\n";
    text += "  \"version\": " + std::to_string(kVersion) + ",\n";
    text += "  \"model\": " + model.dump() + ",\n";
    text += "  \"mode\": " + json(placement_mode_name(p.mode)).dump() + ",\n";
    text += std::string("  \"output_gpu\": ") + (p.output_gpu ? "true" : "false") + ",\n";
    text += "  \"layers\": [";
    for (size_t l = 0; l < p.layers.size(); l++) {
        const LayerPlacement& lp = p.layers[l];
        ordered_json j;
        j["attn_gpu"] = lp.attn_gpu;
        j["ffn_gpu_dense"] = lp.ffn_gpu_dense;
        j["predictor_gpu"] = lp.predictor_gpu;
        j["hot"] = ordered_json::array();
        for (const auto& r : to_ranges(lp.hot)) j["hot"].push_back({r.first, r.second});
        text += (l ? ",\n    " : "\n    ") + j.dump();
    }
    text += "\n  ]\n}\n";
    return text;
}

}  // namespace

void placement_save(const Placement& p, const PlacementModel& m, const std::string& path) {
    if ((int)p.layers.size() != m.n_layers)
        throw Error(path + ": cannot save a placement of " + std::to_string(p.layers.size()) + " layers for model '" +
                    m.model_name + "' of " + std::to_string(m.n_layers));
    for (size_t l = 0; l < p.layers.size(); l++) {
        const std::vector<int32_t>& hot = p.layers[l].hot;
        for (size_t k = 0; k < hot.size(); k++)
            if (hot[k] < 0 || hot[k] >= m.n_ff || (k > 0 && hot[k] <= hot[k - 1]))
                throw Error(path + ": cannot save layers[" + std::to_string(l) + "].hot[" + std::to_string(k) +
                            "] = " + std::to_string(hot[k]) + ": expected ascending indices in [0, " +
                            std::to_string(m.n_ff) + ")");
    }
    std::string text;
    try {
        text = placement_json(p, m);
    } catch (const nlohmann::json::exception& e) {  // a model name that is not UTF-8
        throw Error(path + ": cannot write the placement as JSON: " + e.what());
    }

    write_file_atomically(path, text);
}

Placement placement_load(const std::string& path, const PlacementModel& m, const PlacementRequest& req) {
    const FileReader r{path};
    std::ifstream in(path, std::ios::binary);
    if (!in) r.fail("", std::string("cannot read: ") + std::strerror(errno));
    std::stringstream buf;
    buf << in.rdbuf();
    if (in.bad()) r.fail("", std::string("read failed: ") + std::strerror(errno));
    json j;
    try {
        j = json::parse(buf.str());
    } catch (const json::parse_error& e) {
        r.fail("", "JSON syntax error at byte " + std::to_string(e.byte) + ": " + e.what());
    }

    r.object_with(j, "", {"format", "version", "model", "mode", "output_gpu", "layers"});
    const std::string format = r.get_string(j, "", "format");
    if (format != kFormat) r.fail("format", "expected \"" + std::string(kFormat) + "\", found \"" + format + "\"");
    const int64_t version = r.get_int(j.at("version"), "version");
    if (version != kVersion)
        r.fail("version", "expected " + std::to_string(kVersion) + ", found " + std::to_string(version));

    const json& model = j.at("model");
    r.object_with(model, "model", {"name", "n_layers", "n_ff", "dim"});
    const std::string name = r.get_string(model, "model", "name");
    if (name != m.model_name)
        r.fail("model.name", "planned for \"" + name + "\", this model is \"" + m.model_name + "\"");
    const std::pair<const char*, int> shape[] = {{"n_layers", m.n_layers}, {"n_ff", m.n_ff}, {"dim", m.dim}};
    for (const auto& s : shape) {
        const int64_t v = r.get_int(model.at(s.first), std::string("model.") + s.first);
        if (v != s.second)
            r.fail(std::string("model.") + s.first,
                   "planned for " + std::to_string(v) + ", this model has " + std::to_string(s.second));
    }

    Placement p;
    const std::string mode = r.get_string(j, "", "mode");
    bool known = false;
    for (PlacementMode pm : {PlacementMode::PLACEMENT_CPU, PlacementMode::PLACEMENT_GPU,
                             PlacementMode::PLACEMENT_HYBRID, PlacementMode::PLACEMENT_LAYERS})
        if (mode == placement_mode_name(pm)) p.mode = pm, known = true;
    if (!known) r.fail("mode", "expected cpu, gpu, hybrid or layers, found \"" + mode + "\"");
    p.output_gpu = r.get_bool(j, "", "output_gpu");

    const json& layers = j.at("layers");
    if (!layers.is_array()) r.fail("layers", std::string("expected an array, found ") + layers.type_name());
    if ((int64_t)layers.size() != m.n_layers)
        r.fail("layers", "expected " + std::to_string(m.n_layers) + " entries, found " + std::to_string(layers.size()));
    p.layers.resize(m.n_layers);
    for (int l = 0; l < m.n_layers; l++) {
        const std::string lpath = "layers[" + std::to_string(l) + "]";
        const json& lj = layers[l];
        r.object_with(lj, lpath, {"attn_gpu", "ffn_gpu_dense", "predictor_gpu", "hot"});
        LayerPlacement& lp = p.layers[l];
        lp.attn_gpu = r.get_bool(lj, lpath, "attn_gpu");
        lp.ffn_gpu_dense = r.get_bool(lj, lpath, "ffn_gpu_dense");
        lp.predictor_gpu = r.get_bool(lj, lpath, "predictor_gpu");
        if (lp.ffn_gpu_dense && lp.predictor_gpu)
            r.fail(lpath, "ffn_gpu_dense and predictor_gpu are both true; a layer's FFN is either dense or split");
        if (lp.predictor_gpu && !m.has_profile)
            r.fail(lpath + ".predictor_gpu", "true, but model '" + m.model_name + "' has no profile (no predictor)");
        const json& hot = lj.at("hot");
        const std::string hpath = lpath + ".hot";
        if (!hot.is_array())
            r.fail(hpath, std::string("expected an array of [begin, end] ranges, found ") + hot.type_name());
        if (!hot.empty() && !lp.predictor_gpu) r.fail(hpath, "hot neurons given but predictor_gpu is false");
        int64_t prev_end = 0;
        for (size_t k = 0; k < hot.size(); k++) {
            const std::string rpath = hpath + "[" + std::to_string(k) + "]";
            const json& rg = hot[k];
            if (!rg.is_array() || rg.size() != 2) r.fail(rpath, "expected a [begin, end] pair, found " + rg.dump());
            const int64_t b = r.get_int(rg[0], rpath + "[0]"), e = r.get_int(rg[1], rpath + "[1]");
            if (b < 0 || e > m.n_ff || b >= e)
                r.fail(rpath, "range [" + std::to_string(b) + ", " + std::to_string(e) +
                                  ") is empty or outside [0, n_ff = " + std::to_string(m.n_ff) + ")");
            if (b < prev_end)
                r.fail(rpath, "range [" + std::to_string(b) + ", " + std::to_string(e) +
                                  ") overlaps or precedes the one before, which ends at " + std::to_string(prev_end));
            for (int64_t i = b; i < e; i++) lp.hot.push_back((int32_t)i);
            prev_end = e;
        }
    }

    // The mode must agree with the decisions.
    bool any_gpu = p.output_gpu, all_gpu = p.output_gpu, any_predictor = false;
    for (const LayerPlacement& lp : p.layers) {
        any_gpu = any_gpu || lp.attn_gpu || lp.ffn_gpu_dense || lp.predictor_gpu;
        all_gpu = all_gpu && lp.attn_gpu && (lp.ffn_gpu_dense || (lp.predictor_gpu && (int)lp.hot.size() == m.n_ff));
        any_predictor = any_predictor || lp.predictor_gpu;
    }
    if (p.mode == PlacementMode::PLACEMENT_CPU && any_gpu) r.fail("mode", "\"cpu\", but some parts are on the GPU");
    if (p.mode != PlacementMode::PLACEMENT_CPU && !any_gpu)
        r.fail("mode", "\"" + mode + "\", but nothing is on the GPU");
    if (p.mode == PlacementMode::PLACEMENT_GPU && !all_gpu)
        r.fail("mode", "\"gpu\", but not every layer, neuron and the output are on the GPU");
    if (p.mode == PlacementMode::PLACEMENT_LAYERS && any_predictor)
        r.fail("mode", "\"layers\" (dense layer offload), but some layer has predictor_gpu");

    placement_account(m, req, p);
    return p;
}

}  // namespace ember
