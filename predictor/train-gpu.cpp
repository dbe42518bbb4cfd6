#include "predictor/train-gpu.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/error.h"
#include "kernels-gpu/cublas-check.h"
#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/predictor-train.h"

namespace ember {

namespace {

// Device allocations of one training run, freed together.
class DeviceBuffers {
public:
    DeviceBuffers() = default;
    DeviceBuffers(const DeviceBuffers&) = delete;
    DeviceBuffers& operator=(const DeviceBuffers&) = delete;
    ~DeviceBuffers() {
        for (void* p : owned_) cudaFree(p);
    }
    template <typename T>
    T* alloc(size_t count, const char* what) {
        void* p = nullptr;
        const cudaError_t err = cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T));
        if (err != cudaSuccess) {
            cudaGetLastError();
            const std::string msg = std::string("predictor training on the GPU: cannot allocate ") + what + " (" +
                                    std::to_string(count * sizeof(T) >> 20) + " MiB): " + cudaGetErrorString(err);
            if (err == cudaErrorMemoryAllocation) throw GpuTrainingOutOfMemory(msg);
            throw Error(msg);
        }
        owned_.push_back(p);
        return static_cast<T*>(p);
    }
    template <typename T>
    T* upload(const T* host, size_t count, const char* what, cudaStream_t s) {
        T* d = alloc<T>(count, what);
        CUDA_CHECK(cudaMemcpyAsync(d, host, count * sizeof(T), cudaMemcpyHostToDevice, s));
        return d;
    }

private:
    std::vector<void*> owned_;
};

struct CudaContext {
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;
    CudaContext() {
        CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        const cublasStatus_t st = cublasCreate(&cublas);
        if (st != CUBLAS_STATUS_SUCCESS) {
            cudaStreamDestroy(stream);
            const std::string msg = std::string("predictor training on the GPU: cublasCreate failed: ") +
                                    cublasGetStatusString(st);
            if (st == CUBLAS_STATUS_ALLOC_FAILED) throw GpuTrainingOutOfMemory(msg);
            throw Error(msg);
        }
        CUBLAS_CHECK(cublasSetStream(cublas, stream));
        CUBLAS_CHECK(cublasSetMathMode(cublas, CUBLAS_DEFAULT_MATH));  // full float products, no TF32
    }
    ~CudaContext() {
        cublasDestroy(cublas);
        cudaStreamDestroy(stream);
    }
    CudaContext(const CudaContext&) = delete;
    CudaContext& operator=(const CudaContext&) = delete;
};

// C (m, n) = op(A) (m, k) * op(B) (k, n), all row-major; op transposes when the flag is set (A stored (k, m), B
// stored (n, k)). cuBLAS is column-major: a row-major matrix is its transpose there, so this is C^T = op(B)^T op(A)^T.
void gemm(cublasHandle_t h, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
          const float* b, float* c) {
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(cublasSgemm(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n,
                             (int)m, (int)k, &one, b, (int)(trans_b ? k : n), a, (int)(trans_a ? m : k), &zero, c,
                             (int)n));
}

}  // namespace

float predictor_fit_gpu(const PredictorSamples& s, const PredictorTrainArgs& a,
                        const std::function<void(std::vector<int64_t>&)>& shuffle, float bias, Predictor& p) {
    const int dim = p.dim, rank = p.rank, n_ff = p.n_ff;
    const int64_t n = predictor_samples_count(s);
    if (s.dim != dim || s.n_ff != n_ff)
        throw Error("predictor training on the GPU: samples have dim=" + std::to_string(s.dim) + " n_ff=" +
                    std::to_string(s.n_ff) + ", the predictor dim=" + std::to_string(dim) + " n_ff=" +
                    std::to_string(n_ff));
    if (n > INT32_MAX / 2) throw Error("predictor training on the GPU: too many samples (" + std::to_string(n) + ")");
    const int64_t B = std::min<int64_t>(a.batch_size, n);

    // Every epoch's order, drawn up front exactly as the CPU loop draws it, goes up with the samples.
    std::vector<int64_t> ids((size_t)n);
    for (int64_t j = 0; j < n; j++) ids[(size_t)j] = j;
    std::vector<int32_t> order((size_t)(n * a.epochs));
    for (int e = 0; e < a.epochs; e++) {
        shuffle(ids);
        std::copy(ids.begin(), ids.end(), order.begin() + (size_t)e * n);
    }

    CudaContext ctx;
    const cudaStream_t st = ctx.stream;
    DeviceBuffers d;
    const float* x = d.upload(s.x.data(), s.x.size(), "the samples' FFN inputs", st);
    const uint8_t* fired = d.upload(s.fired.data(), s.fired.size(), "the samples' firing labels", st);
    const int32_t* d_order = d.upload(order.data(), order.size(), "the minibatch order", st);
    float* fc1 = d.upload(p.fc1.data(), p.fc1.size(), "fc1", st);
    float* fc2 = d.upload(p.fc2.data(), p.fc2.size(), "fc2", st);
    const float bias_moments[3] = {bias, 0.0f, 0.0f};
    float* d_bias = d.upload(bias_moments, 3, "the bias", st);  // bias, its m, its v
    float* xb = d.alloc<float>((size_t)(B * dim), "a minibatch");
    float* hpre = d.alloc<float>((size_t)(B * rank), "the hidden layer");
    float* h = d.alloc<float>((size_t)(B * rank), "the hidden layer");
    float* dh = d.alloc<float>((size_t)(B * rank), "the hidden gradient");
    float* g = d.alloc<float>((size_t)(B * n_ff), "the scores");  // scores, then their gradient in place
    float* g1 = d.alloc<float>(p.fc1.size(), "fc1's gradient");
    float* g2 = d.alloc<float>(p.fc2.size(), "fc2's gradient");
    float* m1 = d.alloc<float>(p.fc1.size(), "Adam's moments");
    float* v1 = d.alloc<float>(p.fc1.size(), "Adam's moments");
    float* m2 = d.alloc<float>(p.fc2.size(), "Adam's moments");
    float* v2 = d.alloc<float>(p.fc2.size(), "Adam's moments");
    double* row_dsum = d.alloc<double>((size_t)B, "per-sample sums");
    double* row_loss = d.alloc<double>((size_t)n, "per-sample losses");
    for (float* z : {m1, v1}) CUDA_CHECK(cudaMemsetAsync(z, 0, p.fc1.size() * sizeof(float), st));
    for (float* z : {m2, v2}) CUDA_CHECK(cudaMemsetAsync(z, 0, p.fc2.size() * sizeof(float), st));

    constexpr float b1 = 0.9f, b2 = 0.999f;  // predictor/train.cpp's Adam; its step counts from 1
    int64_t step = 0;
    for (int e = 0; e < a.epochs; e++) {
        const bool last = e == a.epochs - 1;  // the loss is reported for the last epoch only
        for (int64_t b0 = 0; b0 < n; b0 += B) {
            const int64_t nb = std::min(B, n - b0);
            const int32_t* batch_ids = d_order + (size_t)e * n + b0;
            gpu::gather_rows(x, batch_ids, nb, dim, xb, st);
            gemm(ctx.cublas, false, true, nb, rank, dim, xb, fc1, hpre);  // hpre = xb fc1^T
            gpu::relu_forward(h, hpre, nb * rank, st);
            gemm(ctx.cublas, false, true, nb, n_ff, rank, h, fc2, g);  // scores = h fc2^T
            const float inv = (float)(1.0 / ((double)nb * n_ff));
            gpu::bce_gradient(g, fired, batch_ids, nb, n_ff, d_bias, a.pos_weight, inv, g, row_dsum,
                              last ? row_loss + b0 : nullptr, st);
            gemm(ctx.cublas, true, false, n_ff, rank, nb, g, h, g2);   // g2 = g^T h
            gemm(ctx.cublas, false, false, nb, rank, n_ff, g, fc2, dh);  // dh = g fc2, then relu'
            gpu::relu_backward(dh, hpre, nb * rank, st);
            gemm(ctx.cublas, true, false, rank, dim, nb, dh, xb, g1);  // g1 = dh^T xb
            step++;
            const float lr = a.lr, c1 = 1.0f - std::pow(b1, (float)step), c2 = 1.0f - std::pow(b2, (float)step);
            gpu::adam_step(fc1, g1, m1, v1, (int64_t)p.fc1.size(), lr, c1, c2, st);
            gpu::adam_step(fc2, g2, m2, v2, (int64_t)p.fc2.size(), lr, c1, c2, st);
            gpu::bias_adam_step(row_dsum, nb, inv, d_bias, d_bias + 1, d_bias + 2, lr, c1, c2, st);
        }
    }
    std::vector<double> loss((size_t)n);
    CUDA_CHECK(cudaMemcpyAsync(p.fc1.data(), fc1, p.fc1.size() * sizeof(float), cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaMemcpyAsync(p.fc2.data(), fc2, p.fc2.size() * sizeof(float), cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaMemcpyAsync(loss.data(), row_loss, loss.size() * sizeof(double), cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    double loss_sum = 0.0;
    for (double l : loss) loss_sum += l;
    return (float)(loss_sum / (double)n);
}

}  // namespace ember
