// Benchmark statistics and the memory bandwidth probe.
#include <gtest/gtest.h>

#include <cmath>

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
