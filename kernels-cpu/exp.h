// exp for loops that should vectorize: std::exp is a library call, which keeps a loop scalar.
#pragma once
#include <cstdint>
#include <cstring>

namespace ember {

// exp(x) for x <= 0 in plain float arithmetic: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by a degree-6 polynomial
// (Cephes' expf coefficients), times 2^n written into the exponent bits. Within 2 float ulps of exp over [-87, 0];
// inputs below -87 (and -inf) give exp(-87), 1.6e-38. x > 0 and NaN are outside the contract.
inline float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x;
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest: 1.5 * 2^23
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;              // ln2 in two parts
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

}  // namespace ember
