// ember-tiny-logits: ember's logits for a token sequence, for the parity check of models/tiny-relu against the
// PyTorch model that trained it.
//   ember-tiny-logits -m MODEL --tokens 1,450,... -o OUT.f32   all positions' logits, (n_tokens, n_vocab) float32
//   ember-tiny-logits -m MODEL --check REFERENCE.json [--variant f32|q8_0] [--tol 1e-3]
//       compares with the reference train.py wrote: at every position the stored logits (a fixed subset of the
//       vocabulary), log-sum-exp over the whole vocabulary and the argmax; prints max errors, exit 1 above --tol.
// The prompt is evaluated as one batch, as ember-perplexity and prompt processing do.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "apps/app-args.h"
#include "engine/ember.h"
#include "kernels-cpu/matmul.h"

using nlohmann::json;

namespace {

struct Args {
    std::string model, out, check, variant = "f32";
    std::vector<int32_t> tokens;
    double tol = 1e-3;
    int threads = 0;
};

std::vector<int32_t> parse_ids(const std::string& s) {
    std::vector<int32_t> ids;
    size_t pos = 0;
    while (pos < s.size()) {
        size_t end = s.find(',', pos);
        if (end == std::string::npos) end = s.size();
        const std::string item = s.substr(pos, end - pos);
        char* stop = nullptr;
        const long v = std::strtol(item.c_str(), &stop, 10);
        if (item.empty() || *stop != '\0' || v < 0) throw ember::Error("--tokens: invalid id '" + item + "'");
        ids.push_back((int32_t)v);
        pos = end + 1;
    }
    if (ids.empty()) throw ember::Error("--tokens: no ids");
    return ids;
}

// Returns false when the tool should exit 0 (--help, --version).
bool parse_args(int argc, char** argv, Args& a) {
    std::string tokens;
    ember::ArgParser args("ember-tiny-logits",
                          "ember's logits for a token sequence: -m MODEL (--tokens IDS -o OUT.f32 | --check REF.json\n"
                          "[--variant V] [--tol X]), for the parity check against the PyTorch model.");
    args.add_string({"-m"}, &a.model, "MODEL", "model path");
    args.add_string({"--tokens"}, &tokens, "IDS", "comma-separated token ids to evaluate");
    args.add_string({"-o"}, &a.out, "OUT.f32", "output: (n_tokens, n_vocab) float32 logits");
    args.add_string({"--check"}, &a.check, "REF.json", "compare with the reference train.py wrote");
    args.add_string({"--variant"}, &a.variant, "V", "the reference's variant, f32 or q8_0");
    args.add_double({"--tol"}, &a.tol, "largest |diff| of a logit or log-sum-exp that passes --check");
    args.add_int({"-t"}, &a.threads, "threads (0 = physical cores)");
    if (!ember::app_parse_args(args, argc, argv)) return false;
    if (args.seen("--tokens")) a.tokens = parse_ids(tokens);
    if (a.model.empty()) throw ember::Error("-m MODEL is required");
    if (a.check.empty() == (a.out.empty() || a.tokens.empty()))
        throw ember::Error("give either --tokens and -o, or --check (see --help)");
    return true;
}

// Evaluates tokens as one batch through the float GEMM path (PyTorch's arithmetic: dequantized weights, float
// activations), padded to that path's threshold: causal attention leaves the first rows as they are. Returns
// (n, n_vocab) logits.
std::vector<float> eval_logits(const ember::Model& model, const std::vector<int32_t>& tokens, int threads) {
    std::vector<int32_t> padded = tokens;
    while ((int64_t)padded.size() < ember::matmul_blas_min_tokens()) padded.push_back(tokens.back());
    ember::SessionParams sp;
    sp.n_ctx = std::max<int>((int)padded.size(), 8);
    sp.n_batch = sp.n_ctx;
    sp.n_threads = threads;
    ember::Session s(model, sp);
    s.eval(padded, true);
    const int n_vocab = model.info().n_vocab;
    std::vector<float> out((size_t)tokens.size() * n_vocab);
    for (size_t i = 0; i < tokens.size(); i++)
        std::memcpy(out.data() + i * n_vocab, s.logits((int)i), sizeof(float) * n_vocab);
    return out;
}

double log_sum_exp(const float* x, int n) {
    const float mx = *std::max_element(x, x + n);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += std::exp((double)x[i] - mx);
    return mx + std::log(sum);
}

int check(const ember::Model& model, const Args& a) {
    std::ifstream in(a.check);
    if (!in) throw ember::Error(a.check + ": cannot open: " + std::strerror(errno));
    const json ref = json::parse(in);
    if (ref.value("format", "") != "ember-tiny-relu-reference")
        throw ember::Error(a.check + ": expected format 'ember-tiny-relu-reference'");
    if (!ref["variants"].contains(a.variant))
        throw ember::Error(a.check + ": no variant '" + a.variant + "' (expected f32 or q8_0)");
    const std::vector<int32_t> tokens = ref.at("tokens").get<std::vector<int32_t>>();
    const std::vector<int32_t> ids = ref.at("ids").get<std::vector<int32_t>>();
    const json& v = ref["variants"][a.variant];
    const int n_vocab = model.info().n_vocab;
    const std::vector<float> logits = eval_logits(model, tokens, a.threads);

    double max_diff = 0, max_lse = 0;
    int argmax_mismatch = 0;
    for (size_t p = 0; p < tokens.size(); p++) {
        const float* row = logits.data() + p * n_vocab;
        const std::vector<double> want = v.at("logits").at(p).get<std::vector<double>>();
        if (want.size() != ids.size())
            throw ember::Error(a.check + ": logits row " + std::to_string(p) + ": " + std::to_string(want.size()) +
                               " values, expected one per id (" + std::to_string(ids.size()) + ")");
        double row_diff = 0;
        for (size_t k = 0; k < ids.size(); k++) row_diff = std::max(row_diff, std::fabs(row[ids[k]] - want[k]));
        const double lse = std::fabs(log_sum_exp(row, n_vocab) - v.at("logsumexp").at(p).get<double>());
        const int ref_arg = v.at("argmax").at(p).get<int>();
        const int arg = (int)(std::max_element(row, row + n_vocab) - row);
        // An argmax differing only by a near tie (within the tolerance) is not a mismatch.
        if (arg != ref_arg && row[arg] - row[ref_arg] > 2 * a.tol) argmax_mismatch++;
        std::printf("pos %3zu token %5d: max |diff| %.3e over %zu logits, |logsumexp diff| %.3e, argmax %d (ref %d)\n",
                    p, tokens[p], row_diff, ids.size(), lse, arg, ref_arg);
        max_diff = std::max(max_diff, row_diff);
        max_lse = std::max(max_lse, lse);
    }
    const bool ok = max_diff <= a.tol && max_lse <= a.tol && argmax_mismatch == 0;
    std::printf("{\"variant\": \"%s\", \"positions\": %zu, \"max_abs_diff\": %.6e, \"max_logsumexp_diff\": %.6e, "
                "\"argmax_mismatches\": %d, \"tol\": %g, \"pass\": %s}\n",
                a.variant.c_str(), tokens.size(), max_diff, max_lse, argmax_mismatch, a.tol, ok ? "true" : "false");
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    return ember::app_run([&] {
        Args a;
        if (!parse_args(argc, argv, a)) return 0;
        ember::ModelParams mp;
        mp.path = a.model;
        auto model = ember::Model::load(mp);
        if (!a.check.empty()) return check(*model, a);
        const std::vector<float> logits = eval_logits(*model, a.tokens, a.threads);
        std::FILE* f = std::fopen(a.out.c_str(), "wb");
        if (!f) throw ember::Error(a.out + ": cannot create: " + std::strerror(errno));
        const size_t n = std::fwrite(logits.data(), sizeof(float), logits.size(), f);
        if (std::fclose(f) != 0 || n != logits.size()) throw ember::Error(a.out + ": write failed");
        std::printf("{\"tokens\": %zu, \"n_vocab\": %d, \"file\": \"%s\"}\n", a.tokens.size(), model->info().n_vocab,
                    a.out.c_str());
        return 0;
    });
}
