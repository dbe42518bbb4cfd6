// Element types of weight tensors, numbered as GGUF (ggml_type) numbers them, and scalar conversions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ember {

// Values are GGUF's ggml_type ids; only the types ember computes with are named.
enum class DType : uint32_t {
    DTYPE_F32 = 0,
    DTYPE_F16 = 1,
    DTYPE_Q4_0 = 2,
    DTYPE_Q8_0 = 8,
    DTYPE_BF16 = 30,
};

constexpr int QK8_0 = 32;  // elements per Q8_0 block
constexpr int QK4_0 = 32;  // elements per Q4_0 block

// llama.cpp's block layouts: d is an IEEE half scale.
struct block_q8_0 {
    uint16_t d;        // scale (fp16)
    int8_t qs[QK8_0];  // x[i] = d * qs[i]
};
struct block_q4_0 {
    uint16_t d;             // scale (fp16)
    uint8_t qs[QK4_0 / 2];  // x[i] = d * ((qs[i] & 15) - 8), x[i+16] = d * ((qs[i] >> 4) - 8)
};
static_assert(sizeof(block_q8_0) == 34, "Q8_0 block is 34 bytes");
static_assert(sizeof(block_q4_0) == 18, "Q4_0 block is 18 bytes");

// True for the five types above.
bool dtype_is_supported(uint32_t ggml_type);
const char* dtype_name(DType t);
int dtype_block_elems(DType t);   // 1 for F32/F16/BF16, 32 for Q8_0/Q4_0
size_t dtype_block_bytes(DType t);
// Bytes of one row of n elements; n must be a multiple of dtype_block_elems.
inline size_t dtype_row_bytes(DType t, int64_t n) {
    return (size_t)(n / dtype_block_elems(t)) * dtype_block_bytes(t);
}

// IEEE half <-> float, round to nearest even; bf16 <-> float (round to nearest even, NaN kept).
float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);
inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
uint16_t f32_to_bf16(float f);

}  // namespace ember
