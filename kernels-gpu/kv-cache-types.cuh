// The KV cache element types the GPU kernels read and write (kernels-cpu/attention.h's kv_cache_type_supported):
// F32 as float, F16 as __half.
#pragma once
#include <cuda_fp16.h>

#include <string>
#include <utility>

#include "engine/error.h"
#include "kernels-cpu/attention.h"

namespace ember::gpu {

// Throws ember::Error naming fn and both types unless each is F32 or F16.
inline void check_kv_cache_types(const char* fn, DType k_type, DType v_type) {
    if (!kv_cache_type_supported(k_type) || !kv_cache_type_supported(v_type))
        throw Error(std::string(fn) + ": KV cache of " + dtype_name(k_type) + " keys and " + dtype_name(v_type) +
                    " values, expected f32 or f16 for each");
}

// fn(KT{}, VT{}) with KT and VT the device element types of the keys and the values (checked types).
template <typename Fn>
void with_kv_cache_types(DType k_type, DType v_type, Fn&& fn) {
    const bool k16 = k_type == DType::DTYPE_F16, v16 = v_type == DType::DTYPE_F16;
    if (k16 && v16)
        std::forward<Fn>(fn)(__half{}, __half{});
    else if (k16)
        std::forward<Fn>(fn)(__half{}, float{});
    else if (v16)
        std::forward<Fn>(fn)(float{}, __half{});
    else
        std::forward<Fn>(fn)(float{}, float{});
}

}  // namespace ember::gpu
