#include "models/synth-builder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <string>

#include "engine/error.h"
#include "predictor/train.h"
#include "kernels-cpu/activation.h"
#include "kernels-cpu/attention.h"
#include "kernels-cpu/matmul.h"
#include "kernels-cpu/norm.h"
#include "kernels-cpu/quant.h"
#include "kernels-cpu/rope.h"

namespace ember {

namespace {

// Share of the token embedding's norm along u: the FFN input's stable projection on u that gate thresholds use.
constexpr double kEmbdAlignment = 0.5;
constexpr int kCalibSeqLen = 128;  // calibration sequences: long enough for attention to mix, like a prompt
constexpr float kNormEps = 1e-5f;
constexpr float kRopeBase = 10000.0f;
constexpr int64_t kGemmTileRows = 64;  // weight rows per calibration GEMM tile

// Stream ids: one per tensor (layer l's at ID_LAYERS + 16 l + LID_*), rows are sub-streams.
enum : uint64_t {
    ID_TOKEN_EMBD = 1,
    ID_OUTPUT = 2,
    ID_U = 3,
    ID_CALIB = 4,
    ID_LAYERS = 16,
};
enum : uint64_t { LID_Q, LID_K, LID_V, LID_O, LID_GATE_A, LID_GATE_BT, LID_GATE_E, LID_UP, LID_DOWN, LID_PERM };
uint64_t layer_id(int l, uint64_t k) { return ID_LAYERS + 16 * (uint64_t)l + k; }

// SplitMix64's output function (Steele, Lea, Flood 2014).
uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Standard normal quantile by bisection on erfc (once per model, n_ff values).
double normal_quantile(double p) {
    double lo = -40, hi = 40;
    for (int it = 0; it < 200 && hi - lo > 1e-12; it++) {
        const double mid = 0.5 * (lo + hi);
        (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
    }
    return 0.5 * (lo + hi);
}

double mean_sq(const float* x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return n ? s / (double)n : 0.0;
}

}  // namespace

// SplitMix64 (Steele, Lea, Flood 2014): one stream per (tensor, row), so the bytes do not depend on threads.
struct SynthBuilder::Stream {
    uint64_t s;
    uint64_t next() { return mix64(s += 0x9E3779B97F4A7C15ull); }
    // n uniform values of standard deviation sd (two per draw).
    void uniform(float* x, int64_t n, float sd) {
        const float a = sd * std::sqrt(3.0f) / 2147483648.0f;
        for (int64_t i = 0; i < n; i += 2) {
            const uint64_t r = next();
            x[i] = a * (float)(int32_t)(uint32_t)r;
            if (i + 1 < n) x[i + 1] = a * (float)(int32_t)(uint32_t)(r >> 32);
        }
    }
};

SynthBuilder::Stream SynthBuilder::stream(uint64_t tensor, uint64_t row) const {
    const uint64_t key = mix64(mix64(p_.seed ^ 0x5EEDull) + tensor * 0xD1B54A32D192ED03ull);
    return Stream{mix64(key + row * 0x9E3779B97F4A7C15ull)};
}

SynthBuilder::SynthBuilder(const SynthParams& p, int n_vocab, int bos, ThreadPool& pool, SynthLog log)
    : p_(p), n_vocab_(n_vocab), pool_(pool), log_(std::move(log)) {
    const int dim = p.dim;
    head_dim_ = dim / p.n_heads;
    q_dim_ = p.n_heads * head_dim_;
    kv_dim_ = p.n_kv_heads * head_dim_;
    r0_ = p.gate_rank > 0 ? p.gate_rank : std::min(dim / 2, std::max(8, dim / 16));
    // Each FFN adds about beta_ffn * rms(x) in a fresh direction, so over n_layers the residual grows by about
    // (1 + 1/L)^(L/2) ~ 1.6: deep layers keep a clear projection on u. Attention averages values over the
    // context, so its token-specific part shrinks as a sequence grows; kept 4x smaller, it leaves the FFN
    // inputs' distribution (and so the firing statistics) nearly the same at position 30 and at position 2000.
    beta_ffn_ = (float)std::min(0.5, 1.0 / std::sqrt((double)p.n_layers));
    beta_attn_ = beta_ffn_ / 4;

    // u: a random unit direction.
    u_.resize(dim);
    Stream su = stream(ID_U, 0);
    su.uniform(u_.data(), dim, 1.0f);
    double n2 = 0;
    for (float v : u_) n2 += (double)v * v;
    for (float& v : u_) v = (float)(v / std::sqrt(n2));
    // The rest of an embedding has squared norm ~ dim - 1; c makes u's share of the norm kEmbdAlignment.
    c_ = kEmbdAlignment / std::sqrt(1 - kEmbdAlignment * kEmbdAlignment) * std::sqrt((double)dim - 1);

    const std::vector<double> targets = synth_firing_targets(p.n_ff, p.sparsity, p.hot_share);
    z_.resize(targets.size());
    for (size_t j = 0; j < targets.size(); j++) z_[j] = normal_quantile(targets[j]);

    if (p.construction_predictors) {
        predictors_.predictors.resize(p.n_layers);
        predictors_.predictor_recall.assign(p.n_layers, 0.0f);
        predictors_.predictor_precision.assign(p.n_layers, 0.0f);
        predictors_.predictor_sparsity.assign(p.n_layers, 0.0f);
        predictors_.neuron_freq.resize(p.n_layers);
        targets_ = targets;
    }
    // Calibration tokens: sequences of kCalibSeqLen, BOS first, then uniform random ids.
    n_cal_ = p.calib_tokens;
    seq_len_ = std::min(n_cal_, kCalibSeqLen);
    cal_tokens_.resize(n_cal_);
    Stream sc = stream(ID_CALIB, 0);
    for (int t = 0; t < n_cal_; t++)
        cal_tokens_[t] = (t % seq_len_ == 0 && bos >= 0) ? bos : (int32_t)(sc.next() % (uint64_t)n_vocab);
    // Their embeddings as the engine reads them: stored (rounded) rows, dequantized.
    x_.resize((size_t)n_cal_ * dim);
    {
        std::vector<float> row(dim);
        std::vector<uint8_t> q(dtype_row_bytes(p.type, dim));
        for (int t = 0; t < n_cal_; t++) {
            embedding_row(cal_tokens_[t], row.data());
            quantize_row(p.type, row.data(), q.data(), dim);
            dequantize_row(p.type, q.data(), x_.data() + (size_t)t * dim, dim);
        }
    }
    w_.resize((size_t)std::max<int64_t>((int64_t)p.n_ff * dim, (int64_t)dim * q_dim_));
}

// token_embd row t = c u + (noise orthogonal to u), noise uniform with unit variance per element.
void SynthBuilder::embedding_row(int64_t token, float* out) const {
    const int dim = p_.dim;
    Stream s = stream(ID_TOKEN_EMBD, (uint64_t)token);
    s.uniform(out, dim, 1.0f);
    double d = 0;
    for (int j = 0; j < dim; j++) d += (double)out[j] * u_[j];
    const float k = (float)(c_ - d);
    for (int j = 0; j < dim; j++) out[j] += k * u_[j];
}

void SynthBuilder::quantize_rows(const float* w, int64_t n_rows, int64_t n_cols, std::vector<uint8_t>& out) {
    const size_t rb = dtype_row_bytes(p_.type, n_cols);
    out.resize(rb * (size_t)n_rows);
    pool_.parallel_for(n_rows, 16, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; r++) quantize_row(p_.type, w + r * n_cols, out.data() + rb * r, n_cols);
    });
}

void SynthBuilder::random_matrix(uint64_t id, int64_t n_rows, int64_t n_cols, float sd, std::vector<uint8_t>& out) {
    const size_t rb = dtype_row_bytes(p_.type, n_cols);
    out.resize(rb * (size_t)n_rows);
    pool_.parallel_for(n_rows, 16, [&](int64_t b, int64_t e) {
        std::vector<float> row(n_cols);
        for (int64_t r = b; r < e; r++) {
            Stream s = stream(id, (uint64_t)r);
            s.uniform(row.data(), n_cols, sd);
            quantize_row(p_.type, row.data(), out.data() + rb * r, n_cols);
        }
    });
}

// W (n_rows = dim, n_cols): W -= u (u^T W), so W y has no component along u for any y.
void SynthBuilder::random_matrix_orth_u(uint64_t id, int64_t n_rows, int64_t n_cols, float sd,
                                        std::vector<uint8_t>& out) {
    float* w = w_.data();
    pool_.parallel_for(n_rows, 16, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; r++) {
            Stream s = stream(id, (uint64_t)r);
            s.uniform(w + r * n_cols, n_cols, sd);
        }
    });
    std::vector<float> ut(n_cols);  // u^T W, each column summed over all rows in order by one thread
    pool_.parallel_for(n_cols, 256, [&](int64_t b, int64_t e) {
        std::vector<double> acc(e - b, 0.0);
        for (int64_t r = 0; r < n_rows; r++) {
            const float* row = w + r * n_cols;
            for (int64_t c = b; c < e; c++) acc[c - b] += (double)u_[r] * row[c];
        }
        for (int64_t c = b; c < e; c++) ut[c] = (float)acc[c - b];
    });
    pool_.parallel_for(n_rows, 16, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; r++)
            for (int64_t c = 0; c < n_cols; c++) w[r * n_cols + c] -= u_[r] * ut[c];
    });
    quantize_rows(w, n_rows, n_cols, out);
}

// matmul's tiles (and so BLAS's summation order) follow the pool's size; fixed tiles of kGemmTileRows weight rows,
// each a single-threaded matmul, give the same floats, and so the same file, for any thread count.
void SynthBuilder::gemm(DType wt, const void* w, const float* x, float* y, int64_t n_tokens, int64_t n_rows,
                        int64_t n_cols) {
    const size_t rb = dtype_row_bytes(wt, n_cols);
    const int64_t n_tiles = (n_rows + kGemmTileRows - 1) / kGemmTileRows;
    pool_.parallel_for(n_tiles, 1, [&](int64_t b, int64_t e) {
        thread_local ThreadPool solo(1);
        std::vector<float> scratch((size_t)matmul_scratch_floats(kGemmTileRows, n_cols));
        std::vector<float> tile((size_t)n_tokens * kGemmTileRows);
        for (int64_t k = b; k < e; k++) {
            const int64_t r0 = k * kGemmTileRows, nr = std::min(kGemmTileRows, n_rows - r0);
            matmul(wt, (const uint8_t*)w + rb * r0, x, tile.data(), n_tokens, nr, n_cols, scratch.data(), solo);
            for (int64_t t = 0; t < n_tokens; t++)
                std::memcpy(y + t * n_rows + r0, tile.data() + t * nr, sizeof(float) * nr);
        }
    });
}

void SynthBuilder::linear(const std::vector<uint8_t>& w, const float* x, float* y, int64_t n_rows, int64_t n_cols) {
    gemm(p_.type, w.data(), x, y, n_cal_, n_rows, n_cols);
}

SynthBuilder::~SynthBuilder() {
    if (pending_.valid()) pending_.wait();  // a failed write leaves a build running; it must not outlive us
}

// The writer writes layer l while layer l + 1 is built: the file's bytes go out while the cores compute.
void SynthBuilder::start_build(int l) {
    pending_layer_ = l;
    pending_ = std::async(std::launch::async, [this, l] { build_layer(l); });
}

void SynthBuilder::wait_build() {
    if (!pending_.valid()) return;
    const int l = pending_layer_;
    pending_layer_ = -1;
    pending_.get();  // rethrows the build's exception
    built_ = l;
}

void SynthBuilder::fill_token_embd(uint8_t* dst) {
    wait_build();
    const size_t rb = dtype_row_bytes(p_.type, p_.dim);
    pool_.parallel_for(n_vocab_, 64, [&](int64_t b, int64_t e) {
        std::vector<float> row(p_.dim);
        for (int64_t t = b; t < e; t++) {
            embedding_row(t, row.data());
            quantize_row(p_.type, row.data(), dst + rb * t, p_.dim);
        }
    });
    if (built_ < 0) start_build(0);
}

// Logits ~ N(0, 1) for a normed input (norm sqrt(dim)).
void SynthBuilder::fill_output(uint8_t* dst) {
    wait_build();
    const size_t rb = dtype_row_bytes(p_.type, p_.dim);
    pool_.parallel_for(n_vocab_, 64, [&](int64_t b, int64_t e) {
        std::vector<float> row(p_.dim);
        for (int64_t t = b; t < e; t++) {
            Stream s = stream(ID_OUTPUT, (uint64_t)t);
            s.uniform(row.data(), p_.dim, 1.0f / std::sqrt((float)p_.dim));
            quantize_row(p_.type, row.data(), dst + rb * t, p_.dim);
        }
    });
}

void SynthBuilder::fill_layer(int l, SynthTensor t, uint8_t* dst) {
    if (l < built_)
        throw Error("synth: tensor of layer " + std::to_string(l) + " requested after layer " +
                    std::to_string(built_) + " was built (layers are generated in order)");
    if (built_ < l) wait_build();
    for (; built_ < l; built_++) build_layer(built_ + 1);
    // Layer l - 1 is written out, so its slot can take layer l + 1.
    if (!pending_.valid() && l + 1 < p_.n_layers) start_build(l + 1);
    std::vector<uint8_t>& bytes = slots_[l % 2][(size_t)t];
    if (bytes.empty())
        throw Error("synth: tensor " + std::to_string((int)t) + " of layer " + std::to_string(l) + " requested twice");
    std::memcpy(dst, bytes.data(), bytes.size());
    std::vector<uint8_t>().swap(bytes);  // memory: two layers at most
}

// W_gate = A·B + E, then row i += a_i u with a_i set from the calibration tokens' FFN inputs xn (n_cal, dim).
// gate (n_cal, n_ff): the stored gate's pre-activations. Records how well the low-rank part alone predicts firing.
void SynthBuilder::build_gate(int l, const float* xn, float* gate, SynthLayerStats& st) {
    const int dim = p_.dim, n_ff = p_.n_ff, r0 = r0_, n = n_cal_;
    const float nu = p_.gate_noise;
    // B^T (dim, r0): rows of B nearly orthonormal; A (n_ff, r0): |A_i B|^2 ~ 1 - nu; E: |E_i|^2 ~ nu.
    std::vector<float> bt((size_t)dim * r0), a((size_t)n_ff * r0);
    pool_.parallel_for(dim, 64, [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; j++) {
            Stream s = stream(layer_id(l, LID_GATE_BT), (uint64_t)j);
            s.uniform(bt.data() + j * r0, r0, 1.0f / std::sqrt((float)dim));
        }
    });
    pool_.parallel_for(n_ff, 64, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++) {
            Stream s = stream(layer_id(l, LID_GATE_A), (uint64_t)i);
            s.uniform(a.data() + i * r0, r0, std::sqrt((1.0f - nu) / (float)r0));
        }
    });
    float* w = w_.data();  // (n_ff, dim)
    gemm(DType::DTYPE_F32, bt.data(), a.data(), w, n_ff, dim, r0);
    pool_.parallel_for(n_ff, 16, [&](int64_t b, int64_t e) {
        std::vector<float> noise(dim);
        for (int64_t i = b; i < e; i++) {
            Stream s = stream(layer_id(l, LID_GATE_E), (uint64_t)i);
            s.uniform(noise.data(), dim, std::sqrt(nu / (float)dim));
            float* row = w + i * dim;
            for (int j = 0; j < dim; j++) row[j] += noise[j];
        }
    });

    // Pre-activations without the threshold, r (n, n_ff), and each token's projection on u, s_t > 0 since the
    // residual's u-component is the embedding's c. Neuron i fires when a_i s_t + r_ti > 0, i.e. y_ti = r_ti / s_t
    // > -a_i. With y_i ~ N(mu_i, sd_i) over tokens: p_i = Phi((a_i + mu_i) / sd_i), a_i = sd_i z_i - mu_i.
    // A normal fit, not the empirical quantile: a few hundred tokens say little about a 1% tail directly.
    std::vector<float> r((size_t)n * n_ff);
    gemm(DType::DTYPE_F32, w, xn, r.data(), n, n_ff, dim);
    std::vector<double> s(n);
    for (int t = 0; t < n; t++) {
        double d = 0;
        for (int j = 0; j < dim; j++) d += (double)xn[(size_t)t * dim + j] * u_[j];
        if (!(d > 0))
            throw Error("synth: layer " + std::to_string(l) + ": calibration token " + std::to_string(t) +
                        " has no positive projection on u (" + std::to_string(d) + ")");
        s[t] = d;
    }
    // Which rank (target probability) each neuron takes: a seeded shuffle, so hot neurons differ per layer.
    std::vector<int> rank(n_ff);
    for (int i = 0; i < n_ff; i++) rank[i] = i;
    Stream sp = stream(layer_id(l, LID_PERM), 0);
    for (int i = n_ff - 1; i > 0; i--) std::swap(rank[i], rank[sp.next() % (uint64_t)(i + 1)]);
    // Per neuron: mean and sd of y over all calibration tokens, and over each half.
    std::vector<double> mu(n_ff), sd(n_ff), d_mu(n_ff), d_sd(n_ff);
    const int half = n / 2;
    pool_.parallel_for(n_ff, 64, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++) {
            double m[2] = {0, 0}, m2[2] = {0, 0};
            for (int t = 0; t < n; t++) {
                const double y = r[(size_t)t * n_ff + i] / s[t];
                m[t >= half] += y;
                m2[t >= half] += y * y;
            }
            const double cnt[2] = {(double)half, (double)(n - half)};
            auto sd_of = [](double sum, double sum2, double k) {
                return std::sqrt(std::max(sum2 / k - (sum / k) * (sum / k), 1e-30));
            };
            mu[i] = (m[0] + m[1]) / n;
            sd[i] = sd_of(m[0] + m[1], m2[0] + m2[1], n);
            d_mu[i] = (m[0] / cnt[0] - m[1] / cnt[1]) / sd[i];
            d_sd[i] = std::log(sd_of(m[0], m2[0], cnt[0]) / sd_of(m[1], m2[1], cnt[1]));
        }
    });
    // The estimates are off by e_mu (in sds) and e_sd (relative); on new tokens neuron i aiming at z' fires with
    // E[Phi(z' (1 + e_sd) + e_mu)] = Phi(z' / sqrt(1 + V_mu + z'^2 V_sd)), every rate pulled toward 1/2: cold
    // neurons fire more, hot ones less (a ~1-point drop of the hot share at 256 tokens). The two halves' estimates
    // differ by twice the variance of their own errors, four times the full sample's; that includes errors common
    // to all neurons (through the gate's few latent directions), which an iid formula would miss. So
    // V = mean((half A - half B)^2) / 4, and z' = z sqrt((1 + V_mu) / (1 - z^2 V_sd)) undoes the pull.
    double v_mu = 0, v_sd = 0;
    for (int i = 0; i < n_ff; i++) v_mu += d_mu[i] * d_mu[i], v_sd += d_sd[i] * d_sd[i];
    v_mu /= 4.0 * n_ff;
    v_sd /= 4.0 * n_ff;
    std::vector<float> a_shift(n_ff);  // a_i
    for (int i = 0; i < n_ff; i++) {
        const double z = z_[rank[i]];
        const double zc = z * std::sqrt((1 + v_mu) / std::max(0.25, 1 - z * z * v_sd));
        a_shift[i] = (float)(sd[i] * zc - mu[i]);
    }
    pool_.parallel_for(n_ff, 64, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++) {
            float* row = w + i * dim;
            for (int j = 0; j < dim; j++) row[j] += a_shift[i] * u_[j];
        }
    });
    std::vector<uint8_t>& stored = slots_[l % 2][(size_t)SynthTensor::SYNTH_FFN_GATE];
    quantize_rows(w, n_ff, dim, stored);
    linear(stored, xn, gate, n_ff, dim);

    // Property 2 (DESIGN.md): the rank-(r0 + 1) part alone, (xn B^T) A^T + a s, against the stored gate's firing.
    std::vector<float> b((size_t)r0 * dim), xb((size_t)n * r0);
    for (int j = 0; j < dim; j++)
        for (int k = 0; k < r0; k++) b[(size_t)k * dim + j] = bt[(size_t)j * r0 + k];
    gemm(DType::DTYPE_F32, b.data(), xn, xb.data(), n, r0, dim);
    gemm(DType::DTYPE_F32, a.data(), xb.data(), r.data(), n, n_ff, r0);
    const int n_top = synth_hot_count(n_ff);
    int64_t fired = 0, fired_cold = 0, hit = 0, hit_cold = 0, predicted = 0;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < n_ff; i++) {
            const bool pred = r[(size_t)t * n_ff + i] + a_shift[i] * s[t] > 0;
            const bool fire = gate[(size_t)t * n_ff + i] > 0;
            const bool cold = rank[i] >= n_top;
            predicted += pred;
            fired += fire;
            hit += pred && fire;
            fired_cold += fire && cold;
            hit_cold += pred && fire && cold;
        }
    st.lowrank_recall = fired ? (double)hit / fired : 0.0;
    st.lowrank_recall_cold = fired_cold ? (double)hit_cold / fired_cold : 0.0;
    st.lowrank_precision = predicted ? (double)hit / predicted : 0.0;
    if (p_.construction_predictors) {
        record_predictor(l, b, a, a_shift, r, s, gate);
        std::vector<float>& freq = predictors_.neuron_freq[l];  // each neuron's target firing probability
        freq.resize(n_ff);
        for (int i = 0; i < n_ff; i++) freq[i] = (float)targets_[rank[i]];
    }
}

// The construction predictor of layer l (SynthReport::predictors). b: B (r0, dim); a: A (n_ff, r0); a_shift: a_i;
// r: (n, n_ff) = (xn B^T) A^T; s: xn . u per token; gate: the stored gate's pre-activations (the truth).
void SynthBuilder::record_predictor(int l, const std::vector<float>& b, const std::vector<float>& a,
                                    const std::vector<float>& a_shift, const std::vector<float>& r,
                                    const std::vector<double>& s, const float* gate) {
    const int dim = p_.dim, n_ff = p_.n_ff, r0 = r0_, n = n_cal_;
    const int half = r0 + 1;  // B's rows and u
    const bool relu = p_.predictor_hidden == PredictorHidden::PREDICTOR_HIDDEN_RELU;
    Predictor pr;
    pr.dim = dim;
    pr.n_ff = n_ff;
    pr.hidden = p_.predictor_hidden;
    pr.rank = ((relu ? 2 : 1) * half + 31) / 32 * 32;
    pr.fc1.assign((size_t)pr.rank * dim, 0.0f);
    pr.fc2.assign((size_t)n_ff * pr.rank, 0.0f);
    // Hidden unit k < half is row k of B (u for k = r0); with a ReLU, unit half + k is its negation.
    for (int k = 0; k < half; k++) {
        const float* src = k < r0 ? b.data() + (size_t)k * dim : u_.data();
        float* plus = pr.fc1.data() + (size_t)k * dim;
        for (int j = 0; j < dim; j++) plus[j] = src[j];
        if (relu) {
            float* minus = pr.fc1.data() + (size_t)(half + k) * dim;
            for (int j = 0; j < dim; j++) minus[j] = -src[j];
        }
    }
    for (int i = 0; i < n_ff; i++) {
        float* row = pr.fc2.data() + (size_t)i * pr.rank;
        for (int k = 0; k < half; k++) {
            const float c = k < r0 ? a[(size_t)i * r0 + k] : a_shift[i];
            row[k] = c;
            if (relu) row[half + k] = -c;
        }
    }
    // Threshold for recall 0.99 on the calibration tokens, from the same scores the rule gives.
    std::vector<float> positive;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < n_ff; i++)
            if (gate[(size_t)t * n_ff + i] > 0) positive.push_back(r[(size_t)t * n_ff + i] + a_shift[i] * (float)s[t]);
    pr.threshold = positive.empty() ? 0.0f : predictor_choose_threshold(positive, 0.99f);
    int64_t fired = 0, hit = 0, predicted = 0;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < n_ff; i++) {
            const bool pred = r[(size_t)t * n_ff + i] + a_shift[i] * (float)s[t] > pr.threshold;
            const bool fire = gate[(size_t)t * n_ff + i] > 0;
            fired += fire, predicted += pred, hit += pred && fire;
        }
    SynthReport& R = predictors_;
    R.predictors[l] = std::move(pr);
    R.predictor_recall[l] = fired ? (float)((double)hit / fired) : 1.0f;
    R.predictor_precision[l] = predicted ? (float)((double)hit / predicted) : 1.0f;
    R.predictor_sparsity[l] = (float)(1.0 - (double)predicted / ((double)n * n_ff));
}

void SynthBuilder::build_layer(int l) {
    const int dim = p_.dim, n_ff = p_.n_ff, n = n_cal_;
    const float sd_in = 1.0f / std::sqrt((float)dim);  // q, k, v, up: unit-variance outputs for a normed input
    auto& T = slots_[l % 2];
    auto at = [&](SynthTensor t) -> std::vector<uint8_t>& { return T[(size_t)t]; };
    std::vector<float> ones(std::max(dim, n_ff), 1.0f);
    std::vector<float> xn((size_t)n * dim);
    auto norm_all = [&] {
        for (int t = 0; t < n; t++) rmsnorm(xn.data() + (size_t)t * dim, x_.data() + (size_t)t * dim, ones.data(),
                                            dim, kNormEps);
    };
    auto residual_ms = [&] { return mean_sq(x_.data(), (int64_t)n * dim); };

    // Attention: xn = RMSNorm(x); q, k, v; RoPE; causal attention within each calibration sequence.
    norm_all();
    random_matrix(layer_id(l, LID_Q), q_dim_, dim, sd_in, at(SynthTensor::SYNTH_ATTN_Q));
    random_matrix(layer_id(l, LID_K), kv_dim_, dim, sd_in, at(SynthTensor::SYNTH_ATTN_K));
    random_matrix(layer_id(l, LID_V), kv_dim_, dim, sd_in, at(SynthTensor::SYNTH_ATTN_V));
    std::vector<float> q((size_t)n * q_dim_), k((size_t)n * kv_dim_), v((size_t)n * kv_dim_), att((size_t)n * q_dim_);
    linear(at(SynthTensor::SYNTH_ATTN_Q), xn.data(), q.data(), q_dim_, dim);
    linear(at(SynthTensor::SYNTH_ATTN_K), xn.data(), k.data(), kv_dim_, dim);
    linear(at(SynthTensor::SYNTH_ATTN_V), xn.data(), v.data(), kv_dim_, dim);
    RopeParams rp;
    rp.head_dim = head_dim_;
    rp.n_rot = head_dim_;
    rp.freq_base = kRopeBase;
    for (int t = 0; t < n; t++) {
        rope(q.data() + (size_t)t * q_dim_, p_.n_heads, t % seq_len_, rp);
        rope(k.data() + (size_t)t * kv_dim_, p_.n_kv_heads, t % seq_len_, rp);
    }
    const int n_heads = p_.n_heads;
    pool_.parallel_for((int64_t)n * n_heads, 1, [&](int64_t b, int64_t e) {
        std::vector<float> scores(seq_len_);
        for (int64_t item = b; item < e; item++) {
            const int t = (int)(item / n_heads), h = (int)(item % n_heads);
            const int start = t / seq_len_ * seq_len_;
            AttentionArgs a;
            a.q = q.data() + (size_t)t * q_dim_;
            a.k_cache = k.data() + (size_t)start * kv_dim_;
            a.v_cache = v.data() + (size_t)start * kv_dim_;
            a.out = att.data() + (size_t)t * q_dim_;
            a.scores = scores.data();
            a.n_kv = t - start + 1;
            a.n_heads = n_heads;
            a.n_kv_heads = p_.n_kv_heads;
            a.head_dim = head_dim_;
            a.kv_stride = kv_dim_;
            a.scale = 1.0f / std::sqrt((float)head_dim_);
            attention_heads(a, h, h + 1);
        }
    });
    // Output projection scaled so the block adds beta * rms(x), orthogonal to u; x += attn wo^T.
    const double att_ms = mean_sq(att.data(), (int64_t)n * q_dim_) * q_dim_;  // mean |attn_t|^2
    const float sd_o = (float)(beta_attn_ * std::sqrt(residual_ms() / std::max(att_ms, 1e-30)));
    random_matrix_orth_u(layer_id(l, LID_O), dim, q_dim_, sd_o, at(SynthTensor::SYNTH_ATTN_OUTPUT));
    std::vector<float> out((size_t)n * dim);
    linear(at(SynthTensor::SYNTH_ATTN_OUTPUT), att.data(), out.data(), dim, q_dim_);
    for (size_t j = 0; j < out.size(); j++) x_[j] += out[j];

    // FFN: xn = RMSNorm(x); the gate calibrated on xn; h = relu(gate) * up; x += h w_down^T.
    norm_all();
    SynthLayerStats st;
    std::vector<float> gate((size_t)n * n_ff), up((size_t)n * n_ff);
    build_gate(l, xn.data(), gate.data(), st);
    random_matrix(layer_id(l, LID_UP), n_ff, dim, sd_in, at(SynthTensor::SYNTH_FFN_UP));
    linear(at(SynthTensor::SYNTH_FFN_UP), xn.data(), up.data(), n_ff, dim);
    reglu(gate.data(), gate.data(), up.data(), (int64_t)n * n_ff);

    std::vector<int64_t> count(n_ff, 0);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < n_ff; i++) count[i] += gate[(size_t)t * n_ff + i] != 0.0f;
    int64_t total = 0;
    for (int64_t c : count) total += c;
    st.sparsity = 1.0 - (double)total / ((double)n * n_ff);
    std::sort(count.begin(), count.end(), std::greater<int64_t>());
    int64_t top = 0;
    for (int i = 0; i < synth_hot_count(n_ff); i++) top += count[i];
    st.hot_share = total ? (double)top / (double)total : 0.0;
    if (total == 0) throw Error("synth: layer " + std::to_string(l) + ": no neuron fired on the calibration tokens");
    double su = 0;
    for (int t = 0; t < n; t++) {
        double d = 0;
        for (int j = 0; j < dim; j++) d += (double)xn[(size_t)t * dim + j] * u_[j];
        su += d;
    }
    st.u_proj = su / n;

    const double h_ms = mean_sq(gate.data(), (int64_t)n * n_ff) * n_ff;  // mean |h_t|^2
    const float sd_d = (float)(beta_ffn_ * std::sqrt(residual_ms() / std::max(h_ms, 1e-30)));
    random_matrix_orth_u(layer_id(l, LID_DOWN), dim, n_ff, sd_d, at(SynthTensor::SYNTH_FFN_DOWN));
    linear(at(SynthTensor::SYNTH_FFN_DOWN), gate.data(), out.data(), dim, n_ff);
    for (size_t j = 0; j < out.size(); j++) x_[j] += out[j];
    st.residual_rms = std::sqrt(residual_ms());

    stats_.push_back(st);
    if (log_) {
        char buf[320];
        std::snprintf(buf, sizeof buf,
                      "layer %3d/%d: calibration sparsity %.3f, hot share %.3f, rank-%d recall %.3f (cold %.3f) "
                      "precision %.3f, u-projection %.2f, residual rms %.3f",
                      l + 1, p_.n_layers, st.sparsity, st.hot_share, r0_ + 1, st.lowrank_recall,
                      st.lowrank_recall_cold, st.lowrank_precision, st.u_proj, st.residual_rms);
        log_(buf);
    }
}

}  // namespace ember
