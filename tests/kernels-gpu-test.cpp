// CUDA kernels against their kernels-cpu references on seeded random inputs: RMSNorm, RoPE, attention (decode and
// prefill), the elementwise steps. Each test skips with a message where no CUDA device exists.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "engine/error.h"
#include "kernels-cpu/activation.h"
#include "kernels-cpu/attention.h"
#include "kernels-cpu/dtype.h"
#include "kernels-cpu/norm.h"
#include "kernels-cpu/rope.h"
#include "kernels-gpu/attention.h"
#include "kernels-gpu/dot.h"
#include "kernels-gpu/elementwise.h"
#include "kernels-gpu/host-sync.h"
#include "kernels-gpu/launch.cuh"
#include "kernels-gpu/matmul.h"
#include "kernels-gpu/norm.h"
#include "kernels-gpu/rope.h"
#include "tests/kernels-gpu-test-util.h"

namespace ember::gpu_test {
namespace {

// Chained launches (kernels-gpu/launch.cuh): a kernel that may be scheduled before the previous one ends still reads
// that kernel's finished output. An F32 matrix-vector product over 512 MiB (hundreds of microseconds) writes y over
// NaNs, and the residual addition launched right behind it must add the finished y, on every repetition.
TEST_F(Gpu, ChainedKernelReadsFinishedOutput) {
    int dev = 0, major = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    EXPECT_EQ(gpu::chained_launches_supported(), major >= 9);
    EXPECT_EQ(gpu::chained_launches_active(), major >= 9);  // the default build's images hold the waits

    const int64_t rows = 4096, cols = 32768;
    DeviceMem w((size_t)rows * cols * sizeof(float));
    CUDA_CHECK(cudaMemset(w.as(), 0x3c, w.bytes()));  // every weight 0x3c3c3c3c, about 0.0115
    DeviceMem ones(std::vector<float>(cols, 1.0f)), y(rows * sizeof(float)), x(rows * sizeof(float));
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    for (int rep = 0; rep < 4; rep++) {
        const std::vector<float> x0 = randn(rows, 1.0f, 40 + rep);
        x.fill_from(x0);
        CUDA_CHECK(cudaDeviceSynchronize());  // the set-up, on the legacy stream, before the work on s
        CUDA_CHECK(cudaMemsetAsync(y.as(), 0xff, y.bytes(), s));  // NaN
        gpu::matvec(DType::DTYPE_F32, w.as(), ones.as(), y.as<float>(), rows, cols, s);
        gpu::add_inplace(x.as<float>(), y.as<float>(), rows, s);
        CUDA_CHECK(cudaStreamSynchronize(s));
        const std::vector<float> got = x.to_host<float>(), yv = y.to_host<float>();
        for (int64_t i = 0; i < rows; i++) {
            ASSERT_TRUE(std::isfinite(yv[i]) && yv[i] > 300.0f) << "y[" << i << "] = " << yv[i];
            ASSERT_EQ(got[i], x0[i] + yv[i]) << "repetition " << rep << ", element " << i;
        }
    }
    CUDA_CHECK(cudaStreamDestroy(s));
}

// Tolerance: float rounding of a sum of n squares and one multiply, relative.
// Rows in registers (n % 4 == 0, up to 16384 floats: 1 to 4 float4 a thread) and the strided loop (1, 33, 16388).
TEST_F(Gpu, RmsNormMatchesCpu) {
    for (int n : {1, 33, 64, 4096, 5120, 12288, 16384, 16388}) {
        const int rows = 3;
        const std::vector<float> x = randn((size_t)rows * n, 2.0f, 7 + n), w = randn(n, 2.0f, 8 + n);
        DeviceMem dx(x), dw(w), dout(x.size() * sizeof(float));
        gpu::rmsnorm(dout.as<float>(), dx.as<float>(), dw.as<float>(), n, 1e-5f, rows, nullptr);
        const auto got = dout.to_host<float>();
        std::vector<float> want(n);
        for (int r = 0; r < rows; r++) {
            ember::rmsnorm(want.data(), x.data() + (size_t)r * n, w.data(), n, 1e-5f);
            for (int i = 0; i < n; i++)
                ASSERT_NEAR(got[(size_t)r * n + i], want[i], 1e-4 * (1 + std::fabs(want[i]))) << "n=" << n;
        }
    }
}

// The decode step's fused norm equals its three steps run one by one, bit for bit: add_inplace, rmsnorm and
// dot_prepare_vec (Q8_0); without add, x is left as it was; without q8, only x and out are written.
TEST_F(Gpu, AddRmsNormEqualsItsStepsInTurn) {
    for (int n : {33, 64, 4096, 5120, 8192, 12288, 16384, 16416}) {
        for (const bool with_add : {true, false}) {
            const bool with_q8 = n % 32 == 0;
            SCOPED_TRACE("n=" + std::to_string(n) + (with_add ? " with add" : " no add"));
            const std::vector<float> x = randn(n, 2.0f, 21 + n), y = randn(n, 2.0f, 22 + n), w = randn(n, 1.0f, 23);
            DeviceMem dx(x), dy(y), dw(w), dout(n * sizeof(float)), dq(with_q8 ? (size_t)n + n / 32 * 4 : 4);
            gpu::add_rmsnorm(dx.as<float>(), with_add ? dy.as<float>() : nullptr, dw.as<float>(), n, 1e-5f,
                             dout.as<float>(), with_q8 ? dq.as() : nullptr, nullptr);
            const auto got_x = dx.to_host<float>(), got_out = dout.to_host<float>();
            const auto got_q = dq.to_host<uint8_t>();

            DeviceMem ex(x), eout(n * sizeof(float)), eq(with_q8 ? (size_t)n + n / 32 * 4 : 4);
            if (with_add) gpu::add_inplace(ex.as<float>(), dy.as<float>(), n, nullptr);
            gpu::rmsnorm(eout.as<float>(), ex.as<float>(), dw.as<float>(), n, 1e-5f, 1, nullptr);
            if (with_q8) gpu::dot_prepare_vec(DType::DTYPE_Q8_0, eout.as<float>(), eq.as(), n, nullptr);
            EXPECT_EQ(got_x, ex.to_host<float>());
            if (!with_add) {
                EXPECT_EQ(got_x, x);
            }
            EXPECT_EQ(got_out, eout.to_host<float>());
            if (with_q8) {
                EXPECT_EQ(got_q, eq.to_host<uint8_t>());
            }
        }
    }
    // The host's sum added after add, read from pinned memory: the bits of add_from_host, rmsnorm, dot_prepare_vec.
    for (int n : {4096, 8192, 16416}) {
        SCOPED_TRACE("with a host sum, n=" + std::to_string(n));
        const std::vector<float> x = randn(n, 2.0f, 24), y = randn(n, 2.0f, 25), z = randn(n, 2.0f, 26),
                                 w = randn(n, 1.0f, 27);
        float* hz = nullptr;
        CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&hz), n * sizeof(float)));
        std::copy(z.begin(), z.end(), hz);
        for (const bool with_add : {true, false}) {
            DeviceMem dx(x), dy(y), dw(w), dout(n * sizeof(float)), dq((size_t)n + n / 32 * 4);
            DeviceMem ex(x), eout(n * sizeof(float)), eq((size_t)n + n / 32 * 4);
            const float* add = with_add ? dy.as<float>() : nullptr;
            gpu::add_rmsnorm(dx.as<float>(), add, dw.as<float>(), n, 1e-5f, dout.as<float>(), dq.as(), nullptr, hz);
            gpu::add_from_host(ex.as<float>(), add, hz, n, nullptr);
            gpu::rmsnorm(eout.as<float>(), ex.as<float>(), dw.as<float>(), n, 1e-5f, 1, nullptr);
            gpu::dot_prepare_vec(DType::DTYPE_Q8_0, eout.as<float>(), eq.as(), n, nullptr);
            EXPECT_EQ(dx.to_host<float>(), ex.to_host<float>());
            EXPECT_EQ(dout.to_host<float>(), eout.to_host<float>());
            EXPECT_EQ(dq.to_host<uint8_t>(), eq.to_host<uint8_t>());
        }
        CUDA_CHECK(cudaFreeHost(hz));
    }

    DeviceMem dx(std::vector<float>(48, 1.0f)), dw(std::vector<float>(48, 1.0f)), dout(48 * 4), dq(256);
    try {
        gpu::add_rmsnorm(dx.as<float>(), nullptr, dw.as<float>(), 48, 1e-5f, dout.as<float>(), dq.as(), nullptr);
        FAIL() << "48 floats cannot be Q8_0 blocks";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("multiple of 32"), std::string::npos) << e.what();
    }
}

// ReGLU and SwiGLU with a Q8_0 output: out as without it, and the quants and scales of dot_prepare_vec on out.
TEST_F(Gpu, GluPreparesQ8LikeDotPrepareVec) {
    for (int64_t n : {32, 288, 11008}) {
        for (const bool relu : {true, false}) {
            SCOPED_TRACE((relu ? "reglu n=" : "swiglu n=") + std::to_string(n));
            const std::vector<float> g = randn(n, 1.0f, 31), u = randn(n, 1.0f, 32);
            DeviceMem dg(g), du(u), dout(n * sizeof(float)), dq(n + n / 32 * 4), eout(n * sizeof(float)),
                eq(n + n / 32 * 4);
            auto glu = relu ? gpu::reglu : gpu::swiglu;
            glu(dout.as<float>(), dg.as<float>(), du.as<float>(), n, nullptr, dq.as());
            glu(eout.as<float>(), dg.as<float>(), du.as<float>(), n, nullptr, nullptr);
            gpu::dot_prepare_vec(DType::DTYPE_Q8_0, eout.as<float>(), eq.as(), n, nullptr);
            EXPECT_EQ(dout.to_host<float>(), eout.to_host<float>());
            EXPECT_EQ(dq.to_host<uint8_t>(), eq.to_host<uint8_t>());
        }
    }
    DeviceMem d(64 * sizeof(float)), q(256);
    EXPECT_THROW(gpu::reglu(d.as<float>(), d.as<float>(), d.as<float>(), 48, nullptr, q.as()), Error);
}

// Residual additions exactly as on the CPU (one float add each, in the same order); activations: ReGLU exact with
// exact zeros where the gate is not positive, SwiGLU within a few ulp (expf against libm's exp).
TEST_F(Gpu, ElementwiseMatchesCpu) {
    for (int64_t n : {1, 255, 257, 11008}) {
        const std::vector<float> x = randn(n, 1.0f, 11), y = randn(n, 1.0f, 12);
        DeviceMem dx(x), dy(y), dout(n * sizeof(float));
        gpu::add_inplace(dx.as<float>(), dy.as<float>(), n, nullptr);
        auto got = dx.to_host<float>();
        for (int64_t i = 0; i < n; i++) ASSERT_EQ(got[i], x[i] + y[i]) << "add n=" << n << " i=" << i;
        dx.fill_from(x);

        std::vector<float> want(n);
        gpu::reglu(dout.as<float>(), dx.as<float>(), dy.as<float>(), n, nullptr);
        got = dout.to_host<float>();
        const std::vector<float> g = dx.to_host<float>();
        ember::reglu(want.data(), g.data(), y.data(), n);
        int zeros = 0;
        for (int64_t i = 0; i < n; i++) {
            ASSERT_EQ(got[i], want[i]) << "reglu n=" << n << " i=" << i;
            zeros += got[i] == 0.0f;
        }
        if (n > 100) {
            EXPECT_GT(zeros, n / 4) << "ReGLU must give exact zeros for non-positive gates";
        }
        gpu::swiglu(dout.as<float>(), dx.as<float>(), dy.as<float>(), n, nullptr);
        got = dout.to_host<float>();
        ember::swiglu(want.data(), g.data(), y.data(), n);
        for (int64_t i = 0; i < n; i++)
            ASSERT_NEAR(got[i], want[i], 1e-6f * (1.0f + std::fabs(want[i]))) << "swiglu n=" << n << " i=" << i;

        // count_nonzero over the first k entries of the ReGLU output, k read on the device.
        gpu::reglu(dout.as<float>(), dx.as<float>(), dy.as<float>(), n, nullptr);
        const std::vector<float> h = dout.to_host<float>();
        for (int32_t k : {0, 1, (int32_t)n / 2, (int32_t)n}) {
            DeviceMem dk(std::vector<int32_t>{k}), dc(sizeof(int32_t));
            gpu::count_nonzero(dout.as<float>(), dk.as<int32_t>(), dc.as<int32_t>(), nullptr);
            int32_t want_count = 0;
            for (int32_t j = 0; j < k; j++) want_count += h[j] != 0.0f;
            ASSERT_EQ(dc.to_host<int32_t>()[0], want_count) << "count_nonzero n=" << n << " k=" << k;
        }
    }
}

// mask_predicted on a strided batch: entries whose score is not above the threshold become 0, the others keep their
// value; per row, the marked count and how many of them are non-zero. Columns past n_cols and rows past n_rows are
// not touched.
TEST_F(Gpu, MaskPredictedMatchesCpu) {
    for (const auto& [n_rows, n_cols] : {std::pair<int, int>{1, 7}, {5, 300}, {32, 1031}}) {
        SCOPED_TRACE(std::to_string(n_rows) + "x" + std::to_string(n_cols));
        const int64_t ld_h = n_cols + 3, ld_s = n_cols + 17;
        std::vector<float> h = randn((size_t)(n_rows + 1) * ld_h, 1.0f, 21), s = randn((size_t)n_rows * ld_s, 1.0f, 22);
        for (size_t i = 0; i < h.size(); i += 5) h[i] = 0.0f;  // zeros among the marked (a ReLU's misses)
        const float thr = 0.3f;
        DeviceMem dh(h), ds(s), dp(std::vector<int32_t>(n_rows + 1, -1)), df(std::vector<int32_t>(n_rows + 1, -1));
        gpu::mask_predicted(dh.as<float>(), ld_h, ds.as<float>(), ld_s, n_rows, n_cols, thr, dp.as<int32_t>(),
                            df.as<int32_t>(), nullptr);
        const auto got = dh.to_host<float>();
        const auto p = dp.to_host<int32_t>(), f = df.to_host<int32_t>();
        for (int r = 0; r < n_rows; r++) {
            int32_t want_p = 0, want_f = 0;
            for (int64_t c = 0; c < ld_h; c++) {
                const float v = h[r * ld_h + c];
                if (c >= n_cols) {
                    ASSERT_EQ(got[r * ld_h + c], v) << "row " << r << " column " << c << " past n_cols";
                } else if (s[r * ld_s + c] > thr) {
                    ASSERT_EQ(got[r * ld_h + c], v) << "row " << r << " column " << c;
                    want_p++;
                    want_f += v != 0.0f;
                } else {
                    ASSERT_EQ(got[r * ld_h + c], 0.0f) << "row " << r << " column " << c;
                }
            }
            EXPECT_EQ(p[r], want_p) << "row " << r;
            EXPECT_EQ(f[r], want_f) << "row " << r;
            EXPECT_GT(want_p, 0);
            EXPECT_GT(want_p, want_f);
        }
        EXPECT_EQ(p[n_rows], -1);
        EXPECT_EQ(f[n_rows], -1);
        for (int64_t c = 0; c < ld_h; c++) ASSERT_EQ(got[n_rows * ld_h + c], h[n_rows * ld_h + c]) << "row past n_rows";
    }
}

// The angles are the same floats as the CPU's (same product chain); cos/sin differ by a few ulp between CUDA and
// libm, and the GPU may fuse the rotation's multiply-add: 1e-5 relative.
TEST_F(Gpu, RopeMatchesCpu) {
    struct Case {
        int n_heads, head_dim, n_rot, pos0, n_tokens;
        bool neox;
        float freq_scale;
    };
    for (const Case c : {Case{4, 64, 64, 0, 1, false, 1.0f}, Case{32, 128, 128, 4095, 1, false, 1.0f},
                         Case{5, 80, 32, 17, 9, true, 1.0f}, Case{3, 96, 96, 1000, 33, true, 0.25f},
                         Case{8, 64, 64, 7, 4, false, 0.5f}}) {
        SCOPED_TRACE("heads=" + std::to_string(c.n_heads) + " head_dim=" + std::to_string(c.head_dim) +
                     " n_rot=" + std::to_string(c.n_rot) + " pos0=" + std::to_string(c.pos0) +
                     " tokens=" + std::to_string(c.n_tokens) + " neox=" + std::to_string(c.neox));
        RopeParams p;
        p.head_dim = c.head_dim;
        p.n_rot = c.n_rot;
        p.freq_base = 10000.0f;
        p.freq_scale = c.freq_scale;
        p.neox = c.neox;
        const size_t per_token = (size_t)c.n_heads * c.head_dim;
        std::vector<float> x = randn(per_token * c.n_tokens, 1.0f, 11 + c.pos0);
        DeviceMem dx(x);
        if (c.n_tokens == 1)
            gpu::rope(dx.as<float>(), c.n_heads, c.pos0, p, nullptr);
        else
            gpu::rope_tokens(dx.as<float>(), c.n_tokens, c.n_heads, c.pos0, p, nullptr);
        const auto got = dx.to_host<float>();
        for (int t = 0; t < c.n_tokens; t++) ember::rope(x.data() + t * per_token, c.n_heads, c.pos0 + t, p);
        for (size_t i = 0; i < x.size(); i++) ASSERT_NEAR(got[i], x[i], 1e-5 * (1 + std::fabs(x[i]))) << "i=" << i;
    }
}

// Cache rows as stored: F32 floats, or F16 bits rounded as kernels-cpu's f32_to_fp16 rounds.
std::vector<uint8_t> cache_bytes(DType t, const std::vector<float>& x) {
    std::vector<uint8_t> out(x.size() * dtype_row_bytes(t, 1));
    if (t == DType::DTYPE_F32) {
        std::memcpy(out.data(), x.data(), out.size());
    } else {
        for (size_t i = 0; i < x.size(); i++) {
            const uint16_t h = f32_to_fp16(x[i]);
            std::memcpy(out.data() + 2 * i, &h, 2);
        }
    }
    return out;
}

const std::pair<DType, DType> kCacheTypes[] = {{DType::DTYPE_F32, DType::DTYPE_F32},
                                               {DType::DTYPE_F16, DType::DTYPE_F16},
                                               {DType::DTYPE_F16, DType::DTYPE_F32},
                                               {DType::DTYPE_F32, DType::DTYPE_F16}};

// The decode step's fused kernel (position read on the device): q rotated as gpu::rope rotates it, k rotated into the
// cache row at the position and v copied there, other rows untouched; grouped heads, partial rotations, both layouts;
// F32 and F16 caches (a half is the rotated float rounded to nearest even, bit for bit as the CPU's F16 cache).
TEST_F(Gpu, RopeStoreKvMatchesRopeAndCopies) {
    struct Case {
        int n_heads, n_kv_heads, head_dim, n_rot, pos;
        bool neox;
    };
    for (const Case c : {Case{4, 4, 64, 64, 0, false}, Case{32, 8, 128, 128, 4095, false}, Case{6, 2, 80, 32, 17, true},
                         Case{3, 3, 96, 96, 1000, true}}) {
        for (const auto& [kt, vt] : kCacheTypes) {
            SCOPED_TRACE("heads=" + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv_heads) +
                         " n_rot=" + std::to_string(c.n_rot) + " pos=" + std::to_string(c.pos) + " caches " +
                         dtype_name(kt) + "/" + dtype_name(vt));
            RopeParams p;
            p.head_dim = c.head_dim;
            p.n_rot = c.n_rot;
            p.freq_base = 10000.0f;
            p.freq_scale = 1.0f;
            p.neox = c.neox;
            const int64_t kv_stride = (int64_t)c.n_kv_heads * c.head_dim, n_ctx = c.pos + 3;
            const std::vector<float> q = randn((size_t)c.n_heads * c.head_dim, 1.0f, 31);
            const std::vector<float> k = randn((size_t)kv_stride, 1.0f, 32), v = randn((size_t)kv_stride, 1.0f, 33);
            const std::vector<float> fill((size_t)(n_ctx * kv_stride), -7.0f);
            DeviceMem dq(q), dk(k), dv(v), dkc(cache_bytes(kt, fill)), dvc(cache_bytes(vt, fill));
            DeviceMem dpos(std::vector<int>{c.pos});
            gpu::rope_store_kv(dq.as<float>(), c.n_heads, dk.as<float>(), dv.as<float>(), c.n_kv_heads, dkc.as(), kt,
                               dvc.as(), vt, kv_stride, dpos.as<int>(), p, nullptr);
            DeviceMem rq(q), rk(k);  // the separate kernels, for the same floats
            gpu::rope(rq.as<float>(), c.n_heads, c.pos, p, nullptr);
            gpu::rope(rk.as<float>(), c.n_kv_heads, c.pos, p, nullptr);
            const auto got_q = dq.to_host<float>(), want_q = rq.to_host<float>(), want_k = rk.to_host<float>();
            for (size_t i = 0; i < q.size(); i++) ASSERT_EQ(got_q[i], want_q[i]) << "q " << i;
            // Whole caches as bytes: row pos holds the new key and value, every other row its fill.
            std::vector<float> k_rows = fill, v_rows = fill;
            for (int64_t i = 0; i < kv_stride; i++) {
                k_rows[(size_t)(c.pos * kv_stride + i)] = want_k[(size_t)i];
                v_rows[(size_t)(c.pos * kv_stride + i)] = v[(size_t)i];
            }
            ASSERT_EQ(dkc.to_host<uint8_t>(), cache_bytes(kt, k_rows)) << "key cache";
            ASSERT_EQ(dvc.to_host<uint8_t>(), cache_bytes(vt, v_rows)) << "value cache";
        }
    }
}

TEST_F(Gpu, RopeStoreKvRejectsOtherCacheTypes) {
    RopeParams p;
    p.head_dim = p.n_rot = 64;
    EXPECT_THROW(gpu::rope_store_kv(nullptr, 1, nullptr, nullptr, 1, nullptr, DType::DTYPE_Q8_0, nullptr,
                                    DType::DTYPE_F32, 64, nullptr, p, nullptr),
                 Error);
}

// gpu::f32_to_f16: the bits kernels-cpu's f32_to_fp16 gives, ties, subnormals, overflow and specials included.
TEST_F(Gpu, F32ToF16MatchesCpuRounding) {
    std::vector<float> x = randn(1000, 3.0f, 5);
    for (float v : {0.0f, -0.0f, 1.0f + 1.0f / 2048.0f, 1.0f + 3.0f / 2048.0f, 6.0e-8f, 3.0e-5f, 65504.0f, 65520.0f,
                    1e6f, -1e6f, INFINITY, -INFINITY})
        x.push_back(v);
    DeviceMem dx(x), dh(x.size() * sizeof(uint16_t));
    gpu::f32_to_f16(dh.as<uint16_t>(), dx.as<float>(), (int64_t)x.size(), nullptr);
    const auto got = dh.to_host<uint16_t>();
    for (size_t i = 0; i < x.size(); i++) ASSERT_EQ(got[i], f32_to_fp16(x[i])) << "x = " << x[i];
}

struct AttnCase {
    int n_heads, n_kv_heads, head_dim, n_kv;
};

std::string attn_name(const AttnCase& c) {
    return "heads=" + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv_heads) +
           " head_dim=" + std::to_string(c.head_dim) + " n_kv=" + std::to_string(c.n_kv);
}

// Decode: the CPU reference per head. The GPU splits positions into chunks and combines partial softmaxes, a
// different float order: outputs (convex combinations of values of size ~1) agree to 1e-4 relative.
TEST_F(Gpu, AttentionDecodeMatchesCpu) {
    // Groups of 1 to 14 query heads a KV head: blocks take up to 8 heads of one group (12: pieces of 8 and 4; 14: of 8
    // and 6), and the head range 1.. below starts inside the first group.
    for (const AttnCase c : {AttnCase{4, 4, 64, 1}, AttnCase{8, 2, 80, 300}, AttnCase{6, 3, 33, 257},
                             AttnCase{2, 1, 256, 129}, AttnCase{32, 8, 128, 1000}, AttnCase{3, 3, 7, 128},
                             AttnCase{64, 8, 128, 700}, AttnCase{12, 1, 64, 200}, AttnCase{28, 2, 32, 150},
                             AttnCase{16, 2, 256, 300}}) {
        SCOPED_TRACE(attn_name(c));
        const int64_t kv_stride = (int64_t)c.n_kv_heads * c.head_dim;
        const std::vector<float> q = randn((size_t)c.n_heads * c.head_dim, 1.0f, 21);
        const std::vector<float> k = randn((size_t)c.n_kv * kv_stride, 1.0f, 22);
        const std::vector<float> v = randn((size_t)c.n_kv * kv_stride, 1.0f, 23);
        std::vector<float> want(q.size()), scores(c.n_kv);
        AttentionArgs a;
        a.q = q.data();
        a.k_cache = k.data();
        a.v_cache = v.data();
        a.out = want.data();
        a.scores = scores.data();
        a.n_kv = c.n_kv;
        a.n_heads = c.n_heads;
        a.n_kv_heads = c.n_kv_heads;
        a.head_dim = c.head_dim;
        a.kv_stride = kv_stride;
        a.scale = 1.0f / std::sqrt((float)c.head_dim);
        attention_heads(a, 0, c.n_heads);

        // On the GPU, a head range leaves the other heads' outputs alone: run all but head 0, then head 0.
        const std::vector<float> sentinel(q.size(), 12345.0f);
        DeviceMem dq(q), dk(k), dv(v), dout(sentinel);
        DeviceMem dscratch(gpu::attention_scratch_floats(c.n_kv, c.n_heads, c.head_dim) * sizeof(float));
        AttentionArgs g = a;
        g.q = dq.as<float>();
        g.k_cache = dk.as<float>();
        g.v_cache = dv.as<float>();
        g.out = dout.as<float>();
        g.scores = dscratch.as<float>();
        if (c.n_heads > 1) {
            gpu::attention_heads(g, 1, c.n_heads, nullptr);
            const auto partial = dout.to_host<float>();
            for (int d = 0; d < c.head_dim; d++) ASSERT_EQ(partial[d], 12345.0f) << "head 0 written by heads 1..";
        }
        gpu::attention_heads(g, 0, 1, nullptr);
        const auto got = dout.to_host<float>();
        for (size_t i = 0; i < want.size(); i++)
            ASSERT_NEAR(got[i], want[i], 1e-4 * (1 + std::fabs(want[i]))) << "element " << i;

        // The position read on the device, the grid sized by another n_kv of the same chunk count, the chunk's last
        // and its first (a graph captured earlier in the chunk): the same floats as attention_heads over c.n_kv.
        const int splits = gpu::attention_splits(c.n_kv);
        DeviceMem dpos(std::vector<int>{c.n_kv - 1});
        for (const int grid_n_kv : {splits * 128, (splits - 1) * 128 + 1}) {
            ASSERT_EQ(gpu::attention_splits(grid_n_kv), splits);
            DeviceMem dout2(sentinel);
            AttentionArgs g2 = g;
            g2.out = dout2.as<float>();
            g2.n_kv = grid_n_kv;
            gpu::attention_heads_at(g2, dpos.as<int>(), 0, c.n_heads, nullptr);
            EXPECT_EQ(dout2.to_host<float>(), got) << "grid of n_kv " << grid_n_kv;
        }

        // With a Q8_0 output for the matvec after: the same floats, and the bits dot_prepare_vec gives them; head
        // dimensions that do not make whole Q8_0 blocks are refused.
        const int64_t n_out = (int64_t)c.n_heads * c.head_dim;
        DeviceMem dout3(sentinel), dq8(n_out + n_out / 32 * 4 + 4), dwant8(n_out + n_out / 32 * 4 + 4);
        AttentionArgs g3 = g;
        g3.out = dout3.as<float>();
        if (c.head_dim % 32 != 0) {
            EXPECT_THROW(gpu::attention_heads_at(g3, dpos.as<int>(), 0, c.n_heads, nullptr, dq8.as()), Error);
            continue;
        }
        gpu::attention_heads_at(g3, dpos.as<int>(), 0, c.n_heads, nullptr, dq8.as());
        EXPECT_EQ(dout3.to_host<float>(), got);
        gpu::dot_prepare_vec(DType::DTYPE_Q8_0, dout3.as<float>(), dwant8.as(), n_out, nullptr);
        EXPECT_EQ(dq8.to_host<uint8_t>(), dwant8.to_host<uint8_t>());
    }
}

// Prefill: token i of the batch attends positions 0 .. pos0 + i; the CPU reference runs each token as a decode.
TEST_F(Gpu, AttentionPrefillMatchesCpuCausal) {
    struct Case {
        AttnCase a;
        int pos0, n_tokens;
    };
    for (const Case c : {Case{{4, 4, 64, 0}, 0, 1}, Case{{8, 2, 80, 0}, 0, 37}, Case{{6, 3, 33, 0}, 100, 29},
                         Case{{32, 32, 128, 0}, 130, 140}, Case{{16, 2, 64, 0}, 50, 90}}) {
        const int n_kv = c.pos0 + c.n_tokens;
        SCOPED_TRACE(attn_name(c.a) + " pos0=" + std::to_string(c.pos0) + " tokens=" + std::to_string(c.n_tokens));
        const int64_t kv_stride = (int64_t)c.a.n_kv_heads * c.a.head_dim;
        const size_t q_dim = (size_t)c.a.n_heads * c.a.head_dim;
        const std::vector<float> q = randn(q_dim * c.n_tokens, 1.0f, 31);
        const std::vector<float> k = randn((size_t)n_kv * kv_stride, 1.0f, 32);
        const std::vector<float> v = randn((size_t)n_kv * kv_stride, 1.0f, 33);
        std::vector<float> want(q.size()), scores(n_kv);
        AttentionArgs a;
        a.k_cache = k.data();
        a.v_cache = v.data();
        a.scores = scores.data();
        a.n_heads = c.a.n_heads;
        a.n_kv_heads = c.a.n_kv_heads;
        a.head_dim = c.a.head_dim;
        a.kv_stride = kv_stride;
        a.scale = 1.0f / std::sqrt((float)c.a.head_dim);
        for (int i = 0; i < c.n_tokens; i++) {
            a.q = q.data() + i * q_dim;
            a.out = want.data() + i * q_dim;
            a.n_kv = c.pos0 + i + 1;
            attention_heads(a, 0, c.a.n_heads);
        }
        DeviceMem dq(q), dk(k), dv(v), dout(q.size() * sizeof(float));
        DeviceMem dscratch(gpu::attention_scratch_floats(n_kv, c.a.n_heads, c.a.head_dim, c.n_tokens) * sizeof(float));
        AttentionArgs g = a;
        g.q = dq.as<float>();
        g.k_cache = dk.as<float>();
        g.v_cache = dv.as<float>();
        g.out = dout.as<float>();
        g.scores = dscratch.as<float>();
        g.n_kv = n_kv;
        gpu::attention_prefill(g, c.n_tokens, c.pos0, nullptr);
        const auto got = dout.to_host<float>();
        for (size_t i = 0; i < want.size(); i++)
            ASSERT_NEAR(got[i], want[i], 1e-4 * (1 + std::fabs(want[i]))) << "token " << i / q_dim;
    }
}

// Caches of F16 keys, values or both, read as floats on both sides: decode and prefill against the CPU reference over
// the same half-precision rows, to the tolerance of the tests above; head_dim 33 takes the one-element loads.
TEST_F(Gpu, AttentionHalfCachesMatchCpu) {
    for (const AttnCase c : {AttnCase{8, 2, 80, 300}, AttnCase{6, 3, 33, 257}, AttnCase{32, 8, 128, 1000},
                             AttnCase{64, 8, 128, 400}}) {
        for (const auto& [kt, vt] : kCacheTypes) {
            SCOPED_TRACE(attn_name(c) + " caches " + dtype_name(kt) + "/" + dtype_name(vt));
            const int64_t kv_stride = (int64_t)c.n_kv_heads * c.head_dim;
            const size_t q_dim = (size_t)c.n_heads * c.head_dim;
            constexpr int kTokens = 5;  // the prefill's batch: the cache's last positions
            const std::vector<float> q = randn(q_dim * kTokens, 1.0f, 41);
            const std::vector<uint8_t> kb = cache_bytes(kt, randn((size_t)c.n_kv * kv_stride, 1.0f, 42));
            const std::vector<uint8_t> vb = cache_bytes(vt, randn((size_t)c.n_kv * kv_stride, 1.0f, 43));
            std::vector<float> want(q.size()), scores(c.n_kv);
            AttentionArgs a;
            a.k_cache = kb.data();
            a.v_cache = vb.data();
            a.k_type = kt;
            a.v_type = vt;
            a.scores = scores.data();
            a.n_heads = c.n_heads;
            a.n_kv_heads = c.n_kv_heads;
            a.head_dim = c.head_dim;
            a.kv_stride = kv_stride;
            a.scale = 1.0f / std::sqrt((float)c.head_dim);
            const int pos0 = c.n_kv - kTokens;
            for (int i = 0; i < kTokens; i++) {  // token i attends positions 0 .. pos0 + i
                a.q = q.data() + i * q_dim;
                a.out = want.data() + i * q_dim;
                a.n_kv = pos0 + i + 1;
                attention_heads(a, 0, c.n_heads);
            }
            DeviceMem dq(q), dk(kb), dv(vb), dout(q.size() * sizeof(float));
            DeviceMem dscratch(gpu::attention_scratch_floats(c.n_kv, c.n_heads, c.head_dim, kTokens) * sizeof(float));
            AttentionArgs g = a;
            g.q = dq.as<float>();
            g.k_cache = dk.as();
            g.v_cache = dv.as();
            g.out = dout.as<float>();
            g.scores = dscratch.as<float>();
            g.n_kv = c.n_kv;
            gpu::attention_prefill(g, kTokens, pos0, nullptr);
            const auto got = dout.to_host<float>();
            for (size_t i = 0; i < want.size(); i++)
                ASSERT_NEAR(got[i], want[i], 1e-4 * (1 + std::fabs(want[i]))) << "prefill token " << i / q_dim;
            // Decode of the last token over all c.n_kv positions.
            DeviceMem dlast(q_dim * sizeof(float));
            g.q = dq.as<float>() + (kTokens - 1) * q_dim;
            g.out = dlast.as<float>();
            gpu::attention_heads(g, 0, c.n_heads, nullptr);
            const auto last = dlast.to_host<float>();
            for (size_t i = 0; i < q_dim; i++) {
                const float w = want[(kTokens - 1) * q_dim + i];
                ASSERT_NEAR(last[i], w, 1e-4 * (1 + std::fabs(w))) << "decode element " << i;
            }
        }
    }
}

TEST_F(Gpu, AttentionRejectsBadShapes) {
    AttentionArgs a;
    a.n_kv = 4;
    a.n_heads = 6;
    a.n_kv_heads = 4;
    a.head_dim = 64;
    EXPECT_THROW(gpu::attention_heads(a, 0, 6, nullptr), Error);  // 6 heads over 4 KV heads
    a.n_kv_heads = 3;
    a.head_dim = 512;
    EXPECT_THROW(gpu::attention_heads(a, 0, 6, nullptr), Error);  // head_dim above 256
    a.head_dim = 64;
    EXPECT_THROW(gpu::attention_prefill(a, 3, 0, nullptr), Error);  // n_kv != pos0 + n_tokens
    a.n_kv_heads = 6;
    a.v_type = DType::DTYPE_BF16;
    EXPECT_THROW(gpu::attention_heads(a, 0, 6, nullptr), Error);  // a cache type other than f32 / f16
}

}  // namespace
}  // namespace ember::gpu_test
