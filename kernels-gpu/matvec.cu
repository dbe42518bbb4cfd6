// GEMV (one token): y = W x. Decode reads every weight byte once, so the kernel is bandwidth-bound: each thread of a
// row's group streams 16-byte units, and the group's partial sums meet in warp shuffles (and shared memory).
// Q8_0/Q4_0 rows go through shared memory a tile at a time (warp_row_dot_quant) where their alignment allows.
#include <algorithm>
#include <string>

#include "engine/error.h"
#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/dot-device.cuh"
#include "kernels-gpu/matmul.h"

namespace ember::gpu {

namespace {

constexpr int kThreads = 128;       // 4 warps per block
constexpr int64_t kFewRows = 1024;  // below this, a whole block per row keeps the GPU busy

// W warps per row (1 or 4), kThreads / (32 W) rows per block.
template <DType T, int U, int W>
__global__ void matvec_kernel(const uint8_t* __restrict__ w, const void* __restrict__ xq, float* __restrict__ y,
                              int64_t n_rows, int64_t n_cols, size_t row_bytes) {
    constexpr int G = 32 * W;
    const int g = threadIdx.x % G;
    const int64_t r = (int64_t)blockIdx.x * (kThreads / G) + threadIdx.x / G;
    float sum = r < n_rows ? row_dot_partial<T, U, G>(w + r * row_bytes, xq, n_cols, g) : 0.0f;
    sum = warp_sum(sum);  // no early return above: every lane takes part
    if constexpr (W > 1) {
        __shared__ float part[kThreads / 32];
        if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = sum;
        __syncthreads();
        if (g == 0) {
            sum = 0.0f;
            for (int i = 0; i < W; i++) sum += part[threadIdx.x / 32 + i];
        }
    }
    if (g == 0 && r < n_rows) y[r] = sum;
}

// Q8_0/Q4_0 rows that can be tiled (see warp_row_dot_quant): a warp per row, the warps striding over the rows, so
// that the grid is one wave of resident blocks (a last, partly filled wave idled a third of the GPU).
template <DType T>
__global__ void __launch_bounds__(kThreads)
    matvec_quant_kernel(const uint8_t* __restrict__ w, const void* __restrict__ xq, float* __restrict__ y,
                        int64_t n_rows, int64_t n_cols, size_t row_bytes) {
    __shared__ uint4 tiles[kThreads / 32][QuantTile<T>::kVecs];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t stride = (int64_t)gridDim.x * (kThreads / 32);
    // r is the same in every lane: the warp goes through the loop, and its warp-wide steps, together.
    for (int64_t r = (int64_t)blockIdx.x * (kThreads / 32) + warp; r < n_rows; r += stride) {
        const float sum = warp_sum(warp_row_dot_quant<T>(w + r * row_bytes, xq, n_cols, lane, tiles[warp]));
        if (lane == 0) y[r] = sum;
    }
}

// Blocks of matvec_quant_kernel<T> the device holds at once (its SMs times blocks per SM), found once.
template <DType T>
int64_t resident_quant_blocks() {
    static const int64_t n = [] {
        int dev = 0, sms = 0, per_sm = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
        CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, matvec_quant_kernel<T>, kThreads, 0));
        return (int64_t)std::max(1, sms) * std::max(1, per_sm);
    }();
    return n;
}

template <DType T, int U>
void launch(const void* w, const void* xq, float* y, int64_t n_rows, int64_t n_cols, cudaStream_t stream) {
    const size_t row_bytes = dtype_row_bytes(T, n_cols);
    const auto* wb = static_cast<const uint8_t*>(w);
    if constexpr (dtype_is_quant(T)) {
        if (n_rows >= kFewRows && quant_rows_tileable(w, row_bytes)) {
            const int64_t rows_per_block = kThreads / 32;
            const int64_t grid = std::min((n_rows + rows_per_block - 1) / rows_per_block, resident_quant_blocks<T>());
            matvec_quant_kernel<T><<<(unsigned)grid, kThreads, 0, stream>>>(wb, xq, y, n_rows, n_cols, row_bytes);
            CUDA_CHECK_LAUNCH();
            return;
        }
    }
    if (n_rows < kFewRows) {
        matvec_kernel<T, U, 4><<<(unsigned)n_rows, kThreads, 0, stream>>>(wb, xq, y, n_rows, n_cols, row_bytes);
    } else {
        const int64_t rows_per_block = kThreads / 32;
        const int64_t grid = (n_rows + rows_per_block - 1) / rows_per_block;
        matvec_kernel<T, U, 1><<<(unsigned)grid, kThreads, 0, stream>>>(wb, xq, y, n_rows, n_cols, row_bytes);
    }
    CUDA_CHECK_LAUNCH();
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// F32/F16/BF16: 16-byte units when every row and x allow them, else one element per thread step.
template <DType T>
void launch_float(const void* w, const void* xq, float* y, int64_t n_rows, int64_t n_cols, cudaStream_t stream) {
    if (n_cols % kUnit == 0 && aligned16(w) && aligned16(xq))
        launch<T, kUnit>(w, xq, y, n_rows, n_cols, stream);
    else
        launch<T, 1>(w, xq, y, n_rows, n_cols, stream);
}

}  // namespace

void matvec(DType wt, const void* w, const void* xq, float* y, int64_t n_rows, int64_t n_cols, cudaStream_t stream) {
    if (n_rows <= 0) return;
    if (n_cols % dtype_block_elems(wt) != 0)
        throw Error(std::string("gpu::matvec: ") + dtype_name(wt) + " rows of " + std::to_string(n_cols) +
                    " columns, expected a multiple of " + std::to_string(dtype_block_elems(wt)));
    switch (wt) {
        case DType::DTYPE_F32:
            return launch_float<DType::DTYPE_F32>(w, xq, y, n_rows, n_cols, stream);
        case DType::DTYPE_F16:
            return launch_float<DType::DTYPE_F16>(w, xq, y, n_rows, n_cols, stream);
        case DType::DTYPE_BF16:
            return launch_float<DType::DTYPE_BF16>(w, xq, y, n_rows, n_cols, stream);
        case DType::DTYPE_Q8_0:
            return launch<DType::DTYPE_Q8_0, kUnit>(w, xq, y, n_rows, n_cols, stream);
        case DType::DTYPE_Q4_0:
            return launch<DType::DTYPE_Q4_0, kUnit>(w, xq, y, n_rows, n_cols, stream);
    }
    throw Error("gpu::matvec: weight type " + std::to_string((uint32_t)wt) +
                " is not supported, expected f32, f16, bf16, q8_0 or q4_0");
}

}  // namespace ember::gpu
