// Scalar reference dot products, the portable kernel table, and the run-time choice of SIMD level.
#include "kernels-cpu/dot.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>

#include "kernels-cpu/dot-isa.h"
#include "kernels-cpu/quant.h"

namespace ember {

namespace {

[[noreturn]] void throw_bad_type(const char* fn, DType t) {
    throw std::invalid_argument(std::string(fn) + ": weight type " + std::to_string((uint32_t)t) +
                                " has no dot product, expected f32, f16, bf16, q8_0 or q4_0");
}

int isum_q8_0(const block_q8_0& w, const block_q8_0& x) {
    int s = 0;
    for (int j = 0; j < QK8_0; j++) s += (int)w.qs[j] * (int)x.qs[j];
    return s;
}

int isum_q4_0(const block_q4_0& w, const block_q8_0& x) {
    int s = 0;
    for (int j = 0; j < QK4_0 / 2; j++) {
        s += ((int)(w.qs[j] & 15) - 8) * (int)x.qs[j];
        s += ((int)(w.qs[j] >> 4) - 8) * (int)x.qs[j + QK4_0 / 2];
    }
    return s;
}

// The quantized reference order, which every SIMD path reproduces: per block (d_w * d_x) * (float)isum,
// rounded (d_w * d_x is exact: two 11-bit significands), then added to one float sum in block order.
template <typename Block, int (*isum)(const Block&, const block_q8_0&)>
float dot_quant(const void* w, const void* xq, int64_t n) {
    const Block* wb = (const Block*)w;
    const block_q8_0* xb = (const block_q8_0*)xq;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float p = fp16_to_f32(wb[i].d) * fp16_to_f32(xb[i].d) * (float)isum(wb[i], xb[i]);
        EMBER_NO_CONTRACT(p);
        sum += p;
    }
    return sum;
}

template <float (*load)(const void*, int64_t)>
float dot_float_ref(const void* w, const float* x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)load(w, i) * (double)x[i];
    return (float)s;
}

// Portable float dot: 8 float partial sums (the compiler may vectorize them), combined pairwise.
template <float (*load)(const void*, int64_t)>
float dot_float_portable(const void* w, const float* x, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++) acc[k] += load(w, i + k) * x[i + k];
    }
    for (; i < n; i++) acc[0] += load(w, i) * x[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// Rows need no alignment (a row stride may be any byte count): element loads go through memcpy.
float load_f32(const void* w, int64_t i) {
    float v;
    std::memcpy(&v, (const uint8_t*)w + 4 * i, 4);
    return v;
}
uint16_t load_u16(const void* w, int64_t i) {
    uint16_t v;
    std::memcpy(&v, (const uint8_t*)w + 2 * i, 2);
    return v;
}
float load_f16(const void* w, int64_t i) { return fp16_to_f32(load_u16(w, i)); }
float load_bf16(const void* w, int64_t i) { return bf16_to_f32(load_u16(w, i)); }

float portable_dot_row(DType wt, const void* w, const void* xq, int64_t n) {
    switch (wt) {
        case DType::DTYPE_F32: return dot_float_portable<load_f32>(w, (const float*)xq, n);
        case DType::DTYPE_F16: return dot_float_portable<load_f16>(w, (const float*)xq, n);
        case DType::DTYPE_BF16: return dot_float_portable<load_bf16>(w, (const float*)xq, n);
        case DType::DTYPE_Q8_0: return dot_quant<block_q8_0, isum_q8_0>(w, xq, n);
        case DType::DTYPE_Q4_0: return dot_quant<block_q4_0, isum_q4_0>(w, xq, n);
    }
    throw_bad_type("dot_row", wt);
}

void portable_dot_rows(DType wt, const void* w, size_t stride, const void* xq, float* y, int64_t n_rows,
                       int64_t n) {
    for (int64_t r = 0; r < n_rows; r++) y[r] = portable_dot_row(wt, (const uint8_t*)w + r * stride, xq, n);
}

void portable_dequantize_row(DType t, const void* x, float* y, int64_t n) {
    switch (t) {
        case DType::DTYPE_F32: std::memcpy(y, x, (size_t)n * 4); return;
        case DType::DTYPE_F16:
            for (int64_t i = 0; i < n; i++) y[i] = fp16_to_f32(((const uint16_t*)x)[i]);
            return;
        case DType::DTYPE_BF16:
            for (int64_t i = 0; i < n; i++) y[i] = bf16_to_f32(((const uint16_t*)x)[i]);
            return;
        case DType::DTYPE_Q8_0: {
            const block_q8_0* b = (const block_q8_0*)x;
            for (int64_t i = 0; i < n / QK8_0; i++) {
                const float d = fp16_to_f32(b[i].d);
                for (int j = 0; j < QK8_0; j++) y[i * QK8_0 + j] = (float)b[i].qs[j] * d;
            }
            return;
        }
        case DType::DTYPE_Q4_0: {
            const block_q4_0* b = (const block_q4_0*)x;
            for (int64_t i = 0; i < n / QK4_0; i++) {
                const float d = fp16_to_f32(b[i].d);
                for (int j = 0; j < QK4_0 / 2; j++) {
                    y[i * QK4_0 + j] = (float)((int)(b[i].qs[j] & 15) - 8) * d;
                    y[i * QK4_0 + j + QK4_0 / 2] = (float)((int)(b[i].qs[j] >> 4) - 8) * d;
                }
            }
            return;
        }
    }
    throw_bad_type("dequantize_row", t);
}

void portable_quantize_q8_0(const float* x, void* y, int64_t n) { quantize_row(DType::DTYPE_Q8_0, x, y, n); }

// The axpy reference: y += a * w with w exactly as dequantize_row gives it, product and sum rounded separately.
template <float (*load)(const void*, int64_t)>
void axpy_float_portable(const void* w, float a, float* y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float p = a * load(w, i);
        EMBER_NO_CONTRACT(p);
        y[i] += p;
    }
}

void portable_axpy_row(DType t, const void* w, float a, float* y, int64_t n) {
    switch (t) {
        case DType::DTYPE_F32: axpy_float_portable<load_f32>(w, a, y, n); return;
        case DType::DTYPE_F16: axpy_float_portable<load_f16>(w, a, y, n); return;
        case DType::DTYPE_BF16: axpy_float_portable<load_bf16>(w, a, y, n); return;
        case DType::DTYPE_Q8_0:
        case DType::DTYPE_Q4_0: {
            float buf[QK8_0];  // one block at a time, through the dequantizer itself
            const size_t bb = dtype_block_bytes(t);
            for (int64_t i = 0; i < n / QK8_0; i++) {
                portable_dequantize_row(t, (const uint8_t*)w + i * bb, buf, QK8_0);
                axpy_float_portable<load_f32>(buf, a, y + i * QK8_0, QK8_0);
            }
            return;
        }
    }
    throw_bad_type("axpy_row", t);
}

float portable_dot_row_prefetch(DType wt, const void* w, const void*, const void* xq, int64_t n) {
    return portable_dot_row(wt, w, xq, n);
}

void portable_axpy_rows(DType t, const void* const* rows, const float* a, int64_t n_rows, float* y, int64_t n) {
    for (int64_t r = 0; r < n_rows; r++) portable_axpy_row(t, rows[r], a[r], y, n);
}

const DotKernels kPortable = {"scalar", portable_dot_row, portable_dot_rows, portable_dequantize_row,
                              portable_quantize_q8_0, portable_dot_row_prefetch, portable_axpy_row,
                              portable_axpy_rows, nullptr, nullptr};

// The table of `level` whose prefetches go to L2 (l2) or L1; nullptr where this CPU or build lacks the level.
const DotKernels* table_for(const std::string& level, bool l2) {
    if (level == "scalar") return &kPortable;  // prefetches nothing
#if defined(EMBER_X86)
    __builtin_cpu_init();
    const bool avx2 =
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (level == "avx2") return !avx2 ? nullptr : l2 ? dot_kernels_avx2_l2() : dot_kernels_avx2();
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    if (level == "avx512") return !avx512 ? nullptr : l2 ? dot_kernels_avx512_l2() : dot_kernels_avx512();
    if (level == "avx512vnni") {
        if (!avx512 || !__builtin_cpu_supports("avx512vnni")) return nullptr;
        return l2 ? dot_kernels_avx512vnni_l2() : dot_kernels_avx512vnni();
    }
#else
    (void)l2;
#endif
    return nullptr;
}

// Every level, best first.
constexpr const char* kLevels[] = {"avx512vnni", "avx512", "avx2", "scalar"};

// The best level this CPU and build run (scalar always does).
const char* pick_best_level() {
    for (const char* level : kLevels)
        if (table_for(level, false)) return level;
    return "scalar";
}

// The level at start-up: EMBER_PREFETCH when it says l1 or l2, else this CPU's default.
bool initial_prefetch_l2() {
    const bool fallback = dot_prefetch_level_for_this_cpu() == PrefetchLevel::PREFETCH_L2;
    const char* v = std::getenv("EMBER_PREFETCH");
    if (v == nullptr || *v == '\0') return fallback;
    const std::string s = v;
    if (s == "l1" || s == "L1") return false;
    if (s == "l2" || s == "L2") return true;
    std::fprintf(stderr, "ember: EMBER_PREFETCH='%s' is not l1 or l2; prefetching to %s, this CPU's default\n", v,
                 fallback ? "L2" : "L1");
    return fallback;
}

// The dispatch state: the SIMD level (forced, or the best) and the prefetch level pick the table in use.
struct Dispatch {
    std::mutex mu;                              // serializes changes
    const char* forced = nullptr;               // a level name from dot_force_simd_level, or nullptr
    std::atomic<bool> l2{initial_prefetch_l2()};
    std::atomic<const DotKernels*> active{nullptr};

    void refresh() {
        active.store(table_for(forced ? forced : pick_best_level(), l2.load()), std::memory_order_release);
    }
};

Dispatch& dispatch() {
    static Dispatch d;
    return d;
}

}  // namespace

const DotKernels* dot_kernels_portable() { return &kPortable; }

const DotKernels* dot_kernels_for(const char* level) { return table_for(level, dispatch().l2.load()); }

PrefetchLevel dot_prefetch_level_for_this_cpu() {
#if defined(EMBER_X86)
    __builtin_cpu_init();
    if (__builtin_cpu_is("amd")) return PrefetchLevel::PREFETCH_L2;
#endif
    return PrefetchLevel::PREFETCH_L1;
}

PrefetchLevel dot_prefetch_level() {
    return dispatch().l2.load() ? PrefetchLevel::PREFETCH_L2 : PrefetchLevel::PREFETCH_L1;
}

void dot_set_prefetch_level(PrefetchLevel level) {
    Dispatch& d = dispatch();
    std::lock_guard<std::mutex> lock(d.mu);
    d.l2.store(level == PrefetchLevel::PREFETCH_L2);
    d.refresh();
}

const DotKernels* dot_kernels() {
    Dispatch& d = dispatch();
    const DotKernels* k = d.active.load(std::memory_order_acquire);
    if (k) return k;
    std::lock_guard<std::mutex> lock(d.mu);
    if (!d.active.load(std::memory_order_relaxed)) d.refresh();
    return d.active.load(std::memory_order_relaxed);
}

void dot_force_simd_level(const char* level) {
    Dispatch& d = dispatch();
    std::lock_guard<std::mutex> lock(d.mu);
    if (level == nullptr) {
        d.forced = nullptr;
        d.refresh();
        return;
    }
    const char* name = nullptr;
    for (const char* l : kLevels)
        if (std::string(level) == l) name = l;
    if (!name || !table_for(name, d.l2.load())) {
        throw std::invalid_argument(std::string("dot_force_simd_level: level '") + level +
                                    "' is not available on this CPU/build, expected avx512vnni, avx512, avx2 or scalar");
    }
    d.forced = name;
    d.refresh();
}

DType dot_vec_type(DType weight_type) {
    switch (weight_type) {
        case DType::DTYPE_F32:
        case DType::DTYPE_F16:
        case DType::DTYPE_BF16: return DType::DTYPE_F32;
        case DType::DTYPE_Q8_0:
        case DType::DTYPE_Q4_0: return DType::DTYPE_Q8_0;
    }
    throw_bad_type("dot_vec_type", weight_type);
}

size_t dot_vec_bytes(DType weight_type, int64_t n) { return dtype_row_bytes(dot_vec_type(weight_type), n); }

void dot_prepare_vec(DType weight_type, const float* x, void* xq, int64_t n) {
    if (dot_vec_type(weight_type) == DType::DTYPE_F32) {
        std::memcpy(xq, x, (size_t)n * 4);
    } else {
        dot_kernels()->quantize_row_q8_0(x, xq, n);
    }
}

float dot_row(DType weight_type, const void* w, const void* xq, int64_t n) {
    return dot_kernels()->dot_row(weight_type, w, xq, n);
}

void dot_rows(DType weight_type, const void* w, size_t row_stride_bytes, const void* xq, float* y, int64_t n_rows,
              int64_t n) {
    dot_kernels()->dot_rows(weight_type, w, row_stride_bytes, xq, y, n_rows, n);
}

float dot_row_ref(DType weight_type, const void* w, const void* xq, int64_t n) {
    switch (weight_type) {
        case DType::DTYPE_F32: return dot_float_ref<load_f32>(w, (const float*)xq, n);
        case DType::DTYPE_F16: return dot_float_ref<load_f16>(w, (const float*)xq, n);
        case DType::DTYPE_BF16: return dot_float_ref<load_bf16>(w, (const float*)xq, n);
        case DType::DTYPE_Q8_0: return dot_quant<block_q8_0, isum_q8_0>(w, xq, n);
        case DType::DTYPE_Q4_0: return dot_quant<block_q4_0, isum_q4_0>(w, xq, n);
    }
    throw_bad_type("dot_row_ref", weight_type);
}

const char* dot_simd_level() { return dot_kernels()->name; }

const char* dot_prefetch_level_name() { return dot_prefetch_level() == PrefetchLevel::PREFETCH_L2 ? "L2" : "L1"; }

}  // namespace ember
