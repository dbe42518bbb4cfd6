// Test helper: a model's logits at every position of a fixed prompt, and the largest difference between two such
// runs; the yardstick of the dtype and quantizer tests.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/ember.h"
#include "kernels-cpu/matmul.h"

namespace ember_test {

// Logits at every position of a fixed prompt.
inline std::vector<float> prompt_logits(const std::string& path, int n_threads, bool batched) {
    ember::ModelParams mp;
    mp.path = path;
    auto model = ember::Model::load(mp);
    const auto tokens = model->tokenizer().encode("Once upon a time, a little dog", true, true);
    ember::SessionParams sp;
    sp.n_threads = n_threads;
    std::vector<float> out;
    const int n_vocab = model->info().n_vocab;
    if (batched) {
        // One batch through the BLAS path (float activations), padded to its threshold: causal attention leaves the
        // prompt's rows as they are.
        std::vector<int32_t> padded = tokens;
        while ((int64_t)padded.size() < ember::matmul_blas_min_tokens()) padded.push_back(tokens.back());
        sp.n_ctx = std::max<int>(64, (int)padded.size());
        ember::Session s(*model, sp);
        s.eval(padded, true);
        for (size_t i = 0; i < tokens.size(); i++) out.insert(out.end(), s.logits((int)i), s.logits((int)i) + n_vocab);
    } else {
        sp.n_ctx = 64;
        ember::Session s(*model, sp);
        for (int32_t t : tokens) {
            s.eval({t});
            out.insert(out.end(), s.logits(), s.logits() + n_vocab);
        }
    }
    return out;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    double m = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); i++) m = std::max(m, (double)std::fabs(a[i] - b[i]));
    return m;
}

}  // namespace ember_test
