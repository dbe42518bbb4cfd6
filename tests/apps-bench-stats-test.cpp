// Benchmark statistics and the memory bandwidth probe.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/decode-bound.h"
#include "engine/ember.h"
#include "engine/error.h"
#include "engine/memory-bandwidth.h"
#include "engine/stats.h"

using namespace ember;

TEST(Stats, MeanAndSampleStddev) {
    const std::vector<double> v = {2, 4, 4, 4, 5, 5, 7, 9};
    EXPECT_DOUBLE_EQ(stats_mean(v), 5.0);
    EXPECT_NEAR(stats_stddev(v), std::sqrt(32.0 / 7.0), 1e-12);
    EXPECT_EQ(stats_mean({}), 0.0);
    EXPECT_EQ(stats_stddev({3.0}), 0.0);
    EXPECT_EQ(stats_stddev({3.0, 3.0, 3.0}), 0.0);
}

TEST(MemoryBandwidth, ProbeGivesAPlausibleNumber) {
    const double gbs = memory_bandwidth_probe(32u << 20, 2, 3);
    EXPECT_TRUE(std::isfinite(gbs));
    EXPECT_GT(gbs, 0.1);     // slower than any machine this runs on
    EXPECT_LT(gbs, 10000.0);  // faster than any memory system
}

TEST(MemoryBandwidth, RejectsBadArguments) {
    EXPECT_THROW(memory_bandwidth_probe(1000, 1, 1), Error);
    EXPECT_THROW(memory_bandwidth_probe(32u << 20, 0, 1), Error);
    EXPECT_THROW(memory_bandwidth_probe(32u << 20, 1, 0), Error);
}

// The two decode bounds from one token's bytes (engine/decode-bound.h), against sums worked by hand.
TEST(DecodeBound, SidesInParallelTakeTheSlowerSide) {
    DecodeBytes b;
    b.host = 100e6;  // 1 ms at 100 GB/s
    b.gpu = 2e9;     // 0.5 ms at 4 TB/s
    EXPECT_NEAR(decode_bound_parallel_ts(b, 100e9, 4e12), 1000.0, 1e-9);
    b.gpu = 8e9;  // 2 ms: now the GPU decides
    EXPECT_NEAR(decode_bound_parallel_ts(b, 100e9, 4e12), 500.0, 1e-9);
}

TEST(DecodeBound, LayerOrderOverlapsOnlyTheSplitHalves) {
    DecodeBytes b;
    b.host = 100e6;  // 1 ms
    b.gpu = 2e9;     // 0.5 ms
    // Nothing splits: every part waits for the one before, 1.5 ms.
    EXPECT_NEAR(decode_bound_layer_order_ts(b, 100e9, 4e12), 1000.0 / 1.5, 1e-9);
    // Two split layers: layer 0's halves take 0.2 ms (host) and 0.1 ms (GPU), layer 1's 0.1 and 0.3 ms; the shorter
    // halves (0.1 + 0.1 ms) overlap: 1.3 ms.
    b.split_host = {20e6, 10e6};
    b.split_gpu = {0.4e9, 1.2e9};
    EXPECT_NEAR(decode_bound_layer_order_ts(b, 100e9, 4e12), 1000.0 / 1.3, 1e-9);
    // Never above the sides-in-parallel bound, which the split does not change.
    EXPECT_NEAR(decode_bound_parallel_ts(b, 100e9, 4e12), 1000.0, 1e-9);
    EXPECT_LT(decode_bound_layer_order_ts(b, 100e9, 4e12), decode_bound_parallel_ts(b, 100e9, 4e12));
}

TEST(DecodeBound, OneSideAloneGivesOneBound) {
    DecodeBytes cpu;
    cpu.host = 50e6;
    EXPECT_NEAR(decode_bound_parallel_ts(cpu, 100e9, 0.0), 2000.0, 1e-9);  // no GPU bandwidth needed
    EXPECT_NEAR(decode_bound_layer_order_ts(cpu, 100e9, 0.0), 2000.0, 1e-9);
    DecodeBytes gpu;
    gpu.gpu = 4e9;
    EXPECT_NEAR(decode_bound_layer_order_ts(gpu, 0.0, 4e12), 1000.0, 1e-9);
    EXPECT_EQ(decode_bound_parallel_ts(DecodeBytes(), 100e9, 4e12), 0.0);
}

TEST(DecodeBound, BadBytesOrBandwidthsAreNamed) {
    DecodeBytes b;
    b.host = 1e6;
    b.gpu = 1e6;
    try {
        decode_bound_parallel_ts(b, 100e9, 0.0);
        FAIL() << "a GPU side without bandwidth";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("VRAM reads 1e+06 bytes"), std::string::npos) << e.what();
    }
    b.split_host = {1e6};
    EXPECT_THROW(decode_bound_layer_order_ts(b, 100e9, 4e12), Error);  // split_gpu missing
    b.split_gpu = {2e6};  // more than the GPU's whole token
    try {
        decode_bound_layer_order_ts(b, 100e9, 4e12);
        FAIL() << "split bytes above the total";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("split FFNs read"), std::string::npos) << e.what();
    }
    DecodeBytes neg;
    neg.host = -1.0;
    EXPECT_THROW(decode_bound_parallel_ts(neg, 100e9, 4e12), Error);
}

TEST(SparseFfnStats, SumsAddSplitBytesLayerByLayer) {
    SparseFfnStats a, b;
    a.decode_tokens = 1;
    a.decode_split_host_bytes = {10, 0};
    a.decode_split_gpu_bytes = {100, 0};
    b.decode_tokens = 2;
    b.decode_split_host_bytes = {1, 2, 3};
    b.decode_split_gpu_bytes = {4, 5, 6};
    a += b;
    EXPECT_EQ(a.decode_tokens, 3u);
    EXPECT_EQ(a.decode_split_host_bytes, (std::vector<uint64_t>{11, 2, 3}));
    EXPECT_EQ(a.decode_split_gpu_bytes, (std::vector<uint64_t>{104, 5, 6}));
    SparseFfnStats empty;
    empty += a;
    EXPECT_EQ(empty.decode_split_host_bytes, a.decode_split_host_bytes);
}
