// Rotary position embedding (Su et al. 2021, RoFormer, eq. 34), applied in place to n_heads heads of one token.
#pragma once
#include <cstdint>

namespace ember {

struct RopeParams {
    int head_dim = 0;         // elements per head
    int n_rot = 0;            // leading dimensions of each head that rotate (<= head_dim, even)
    float freq_base = 10000;  // theta_i = pos * freq_scale * freq_base^(-2i / n_rot)
    float freq_scale = 1;     // linear position scaling (1 / rope scaling factor)
    bool neox = false;        // pairs (i, i + n_rot/2) (GPT-NeoX) instead of (2i, 2i + 1) (original llama)
};

// x: (n_heads, head_dim) for one token at position pos.
void rope(float* x, int n_heads, int pos, const RopeParams& p);

}  // namespace ember
