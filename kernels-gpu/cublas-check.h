// cuBLAS status check behind a file:line macro, as CUDA_CHECK does for the runtime: throws ember::Error.
#pragma once
#include <cublas_v2.h>

#include <string>

#include "engine/error.h"

namespace ember::gpu {

inline void cublas_check(cublasStatus_t st, const char* file, int line) {
    if (st != CUBLAS_STATUS_SUCCESS)
        throw Error(std::string("cuBLAS error at ") + file + ":" + std::to_string(line) + ": " +
                    cublasGetStatusName(st) + ": " + cublasGetStatusString(st));
}

}  // namespace ember::gpu

#define CUBLAS_CHECK(call) ::ember::gpu::cublas_check((call), __FILE__, __LINE__)
