// Batched products through cuBLAS. cuBLAS is column-major: row-major W (n_rows, n_cols) is a column-major
// (n_cols, n_rows) matrix, so Y^T (n_rows, n_tokens) = op_T(W) * X^T, and row-major Y is that column-major result.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <string>

#include "engine/error.h"
#include "kernels-gpu/cublas-check.h"
#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/dtype-device.cuh"
#include "kernels-gpu/matmul.h"

namespace ember::gpu {

namespace {

constexpr int kThreads = 256;
constexpr size_t kAlign = 256;
constexpr int64_t kMaxGrid = 65535;

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

template <typename H>
__device__ __forceinline__ H to_half_type(float v);
template <>
__device__ __forceinline__ __half to_half_type<__half>(float v) {
    return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 to_half_type<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

// out[i] = x[i] rounded to H, for the n activations of the batch.
template <typename H>
__global__ void round_kernel(const float* __restrict__ x, H* __restrict__ out, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = to_half_type<H>(x[i]);
}

// rows (n_rows, n_cols) of type T -> F16, one 8-element unit per thread step (n_cols % 8 == 0 for Q8_0/Q4_0).
template <DType T>
__global__ void dequant_f16_kernel(const uint8_t* __restrict__ w, __half* __restrict__ out, int64_t n_rows,
                                   int64_t n_cols, size_t row_bytes) {
    const int64_t units_per_row = n_cols / kUnit;
    const int64_t n_units = n_rows * units_per_row;
    for (int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; u < n_units;
         u += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = u / units_per_row, c = (u % units_per_row) * kUnit;
        float v[kUnit];
        load_elems<T, kUnit>(w + r * row_bytes, c, v);
        __align__(16) __half h[kUnit];
#pragma unroll
        for (int e = 0; e < kUnit; e++) h[e] = __float2half_rn(v[e]);
        *reinterpret_cast<uint4*>(out + r * n_cols + c) = *reinterpret_cast<const uint4*>(h);
    }
}

unsigned grid_for(int64_t n) {
    return (unsigned)std::max<int64_t>(1, std::min(kMaxGrid, (n + kThreads - 1) / kThreads));
}

template <typename H>
void round_activations(const float* x, void* out, int64_t n, cudaStream_t stream) {
    round_kernel<H><<<grid_for(n), kThreads, 0, stream>>>(x, static_cast<H*>(out), n);
    CUDA_CHECK_LAUNCH();
}

// C (m = n_rows, n = n_tokens) = A^T B with A = W (k = n_cols by m), B = X^T (k by n), all leading dimensions
// from the row-major shapes; float output and accumulation.
void gemm_ex(cublasHandle_t h, const void* w, cudaDataType wtype, const void* x, float* y, int64_t rows,
             int64_t n_tokens, int64_t n_cols, int64_t ldc) {
    const float alpha = 1.0f, beta = 0.0f;
    CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)n_tokens, (int)n_cols, &alpha, w, wtype,
                              (int)n_cols, x, wtype, (int)n_cols, &beta, y, CUDA_R_32F, (int)ldc, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
}

template <DType T>
void dequant_rows_f16(const uint8_t* w, __half* out, int64_t rows, int64_t n_cols, cudaStream_t stream) {
    dequant_f16_kernel<T>
        <<<grid_for(rows * (n_cols / kUnit)), kThreads, 0, stream>>>(w, out, rows, n_cols, dtype_row_bytes(T, n_cols));
    CUDA_CHECK_LAUNCH();
}

std::string shape_text(DType wt, int64_t n_tokens, int64_t n_rows, int64_t n_cols) {
    return std::string("gpu::matmul (") + dtype_name(wt) + ", " + std::to_string(n_tokens) + " tokens, " +
           std::to_string(n_rows) + "x" + std::to_string(n_cols) + ")";
}

}  // namespace

size_t matmul_workspace_bytes(DType wt, int64_t n_tokens, int64_t n_cols, int64_t slab_rows) {
    switch (wt) {
        case DType::DTYPE_F32:
            return 0;
        case DType::DTYPE_F16:
        case DType::DTYPE_BF16:
            return align_up((size_t)n_tokens * n_cols * 2);
        case DType::DTYPE_Q8_0:
        case DType::DTYPE_Q4_0:
            return align_up((size_t)n_tokens * n_cols * 2) + (size_t)slab_rows * n_cols * 2;
    }
    throw Error("gpu::matmul_workspace_bytes: weight type " + std::to_string((uint32_t)wt) +
                " is not supported, expected f32, f16, bf16, q8_0 or q4_0");
}

void matmul(DType wt, const void* w, const float* x, float* y, int64_t n_tokens, int64_t n_rows, int64_t n_cols,
            const GemmWorkspace& ws, cudaStream_t stream) {
    if (n_tokens <= 0 || n_rows <= 0) return;
    if (n_cols % dtype_block_elems(wt) != 0)
        throw Error(shape_text(wt, n_tokens, n_rows, n_cols) + ": expected columns a multiple of " +
                    std::to_string(dtype_block_elems(wt)));
    const size_t need = matmul_workspace_bytes(wt, n_tokens, n_cols, 1);
    if (ws.bytes < need || (need > 0 && ws.ptr == nullptr))
        throw Error(shape_text(wt, n_tokens, n_rows, n_cols) + ": workspace of " + std::to_string(ws.bytes) +
                    " bytes, expected at least " + std::to_string(need));
    // cublasSetStream also hands the handle back to cuBLAS's own workspace pool (dropping one given with
    // cublasSetWorkspace): set it only when the stream changes.
    cudaStream_t current = nullptr;
    CUBLAS_CHECK(cublasGetStream(ws.handle, &current));
    if (current != stream) CUBLAS_CHECK(cublasSetStream(ws.handle, stream));
    const float alpha = 1.0f, beta = 0.0f;
    switch (wt) {
        case DType::DTYPE_F32:
            CUBLAS_CHECK(cublasSgemm(ws.handle, CUBLAS_OP_T, CUBLAS_OP_N, (int)n_rows, (int)n_tokens, (int)n_cols,
                                     &alpha, static_cast<const float*>(w), (int)n_cols, x, (int)n_cols, &beta, y,
                                     (int)n_rows));
            return;
        case DType::DTYPE_F16:
            round_activations<__half>(x, ws.ptr, n_tokens * n_cols, stream);
            gemm_ex(ws.handle, w, CUDA_R_16F, ws.ptr, y, n_rows, n_tokens, n_cols, n_rows);
            return;
        case DType::DTYPE_BF16:
            round_activations<__nv_bfloat16>(x, ws.ptr, n_tokens * n_cols, stream);
            gemm_ex(ws.handle, w, CUDA_R_16BF, ws.ptr, y, n_rows, n_tokens, n_cols, n_rows);
            return;
        case DType::DTYPE_Q8_0:
        case DType::DTYPE_Q4_0: {
            round_activations<__half>(x, ws.ptr, n_tokens * n_cols, stream);
            const size_t x_bytes = align_up((size_t)n_tokens * n_cols * 2);
            auto* slab = reinterpret_cast<__half*>(static_cast<uint8_t*>(ws.ptr) + x_bytes);
            const int64_t slab_rows = std::min<int64_t>(n_rows, (int64_t)((ws.bytes - x_bytes) / (n_cols * 2)));
            const size_t row_bytes = dtype_row_bytes(wt, n_cols);
            for (int64_t r0 = 0; r0 < n_rows; r0 += slab_rows) {
                // Rows [r0, r0 + rows) become F16, then fill Y's columns [r0, r0 + rows) (column-major rows).
                const int64_t rows = std::min(slab_rows, n_rows - r0);
                const uint8_t* wr = static_cast<const uint8_t*>(w) + r0 * row_bytes;
                if (wt == DType::DTYPE_Q8_0)
                    dequant_rows_f16<DType::DTYPE_Q8_0>(wr, slab, rows, n_cols, stream);
                else
                    dequant_rows_f16<DType::DTYPE_Q4_0>(wr, slab, rows, n_cols, stream);
                gemm_ex(ws.handle, slab, CUDA_R_16F, ws.ptr, y + r0, rows, n_tokens, n_cols, n_rows);
            }
            return;
        }
    }
    throw Error(shape_text(wt, n_tokens, n_rows, n_cols) +
                ": weight type not supported, expected f32, f16, bf16, "
                "q8_0 or q4_0");
}

void matmul_by_rows(DType wt, const void* w, const float* x, float* y, int64_t n_tokens, int64_t n_in, int64_t n_out,
                    const GemmWorkspace& ws, cudaStream_t stream) {
    if (n_tokens <= 0 || n_out <= 0) return;
    const std::string what = std::string("gpu::matmul_by_rows (") + dtype_name(wt) + ", " + std::to_string(n_tokens) +
                             " tokens, " + std::to_string(n_in) + "x" + std::to_string(n_out) + ")";
    if (n_out % dtype_block_elems(wt) != 0)
        throw Error(what + ": expected columns a multiple of " + std::to_string(dtype_block_elems(wt)));
    const bool quant = wt == DType::DTYPE_Q8_0 || wt == DType::DTYPE_Q4_0;
    const size_t x_bytes = matmul_workspace_bytes(wt, n_tokens, n_in, 0);
    const size_t need = x_bytes + (quant ? (size_t)n_out * 2 : 0);
    if (ws.bytes < need || (need > 0 && ws.ptr == nullptr))
        throw Error(what + ": workspace of " + std::to_string(ws.bytes) + " bytes, expected at least " +
                    std::to_string(need));
    if (n_in <= 0) {
        CUDA_CHECK(cudaMemsetAsync(y, 0, (size_t)n_tokens * n_out * sizeof(float), stream));
        return;
    }
    cudaStream_t current = nullptr;
    CUBLAS_CHECK(cublasGetStream(ws.handle, &current));
    if (current != stream) CUBLAS_CHECK(cublasSetStream(ws.handle, stream));
    // Column-major: W is (n_out x n_in) with leading dimension n_out, X^T (n_in x n_tokens), Y^T (n_out x n_tokens).
    auto gemm = [&](const void* a, cudaDataType type, const void* b, int64_t k, float beta) {
        const float alpha = 1.0f;
        CUBLAS_CHECK(cublasGemmEx(ws.handle, CUBLAS_OP_N, CUBLAS_OP_N, (int)n_out, (int)n_tokens, (int)k, &alpha, a,
                                  type, (int)n_out, b, type, (int)n_in, &beta, y, CUDA_R_32F, (int)n_out,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    };
    switch (wt) {
        case DType::DTYPE_F32: {
            const float alpha = 1.0f, beta = 0.0f;
            CUBLAS_CHECK(cublasSgemm(ws.handle, CUBLAS_OP_N, CUBLAS_OP_N, (int)n_out, (int)n_tokens, (int)n_in, &alpha,
                                     static_cast<const float*>(w), (int)n_out, x, (int)n_in, &beta, y, (int)n_out));
            return;
        }
        case DType::DTYPE_F16:
            round_activations<__half>(x, ws.ptr, n_tokens * n_in, stream);
            gemm(w, CUDA_R_16F, ws.ptr, n_in, 0.0f);
            return;
        case DType::DTYPE_BF16:
            round_activations<__nv_bfloat16>(x, ws.ptr, n_tokens * n_in, stream);
            gemm(w, CUDA_R_16BF, ws.ptr, n_in, 0.0f);
            return;
        case DType::DTYPE_Q8_0:
        case DType::DTYPE_Q4_0: {
            round_activations<__half>(x, ws.ptr, n_tokens * n_in, stream);
            auto* slab = reinterpret_cast<__half*>(static_cast<uint8_t*>(ws.ptr) + x_bytes);
            const int64_t slab_rows = std::min<int64_t>(n_in, (int64_t)((ws.bytes - x_bytes) / (n_out * 2)));
            const size_t row_bytes = dtype_row_bytes(wt, n_out);
            const auto* xh = static_cast<const __half*>(ws.ptr);
            for (int64_t r0 = 0; r0 < n_in; r0 += slab_rows) {
                // Inputs [r0, r0 + rows): their rows become F16, and Y^T += slab * X^T's rows [r0, r0 + rows).
                const int64_t rows = std::min(slab_rows, n_in - r0);
                const uint8_t* wr = static_cast<const uint8_t*>(w) + r0 * row_bytes;
                if (wt == DType::DTYPE_Q8_0)
                    dequant_rows_f16<DType::DTYPE_Q8_0>(wr, slab, rows, n_out, stream);
                else
                    dequant_rows_f16<DType::DTYPE_Q4_0>(wr, slab, rows, n_out, stream);
                gemm(slab, CUDA_R_16F, xh + r0, rows, r0 == 0 ? 0.0f : 1.0f);
            }
            return;
        }
    }
    throw Error(what + ": weight type not supported, expected f32, f16, bf16, q8_0 or q4_0");
}

}  // namespace ember::gpu
