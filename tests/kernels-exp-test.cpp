// exp.h: exp_nonpositive against exp in double over [-87, 0] (every 1e-5, plus the ends and tiny inputs) and its
// clamp below -87.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kernels-cpu/exp.h"

namespace ember {
namespace {

// |got - exp(x)| in units of the float spacing at exp(x).
double ulps(float x) {
    const double want = std::exp((double)x);
    const double spacing = std::ldexp(1.0, std::ilogb(want) - 23);
    return std::fabs((double)exp_nonpositive(x) - want) / spacing;
}

TEST(Exp, NonpositiveWithinTwoUlpsOfExp) {
    double worst = 0.0;
    float worst_x = 0.0f;
    for (int64_t k = 0; k <= 8700000; k++) {
        const float x = (float)(-1e-5 * (double)k);
        const double u = ulps(x);
        if (u > worst) worst = u, worst_x = x;
    }
    for (float x : {0.0f, -0.0f, -1e-30f, -1e-7f, -0.34657359f, -0.34657360f, -86.99f, -87.0f}) {
        const double u = ulps(x);
        if (u > worst) worst = u, worst_x = x;
    }
    std::printf("[exp] worst %.3f ulps at x = %.9g\n", worst, worst_x);
    EXPECT_LE(worst, 2.0) << "at x = " << worst_x;
    EXPECT_EQ(exp_nonpositive(0.0f), 1.0f);
}

TEST(Exp, NonpositiveClampsBelowMinus87) {
    const float floor = exp_nonpositive(-87.0f);
    EXPECT_GT(floor, 0.0f);
    EXPECT_NEAR(floor, std::exp(-87.0), 1e-44);
    for (float x : {-87.5f, -100.0f, -1e30f, -std::numeric_limits<float>::infinity()})
        EXPECT_EQ(exp_nonpositive(x), floor) << x;
}

}  // namespace
}  // namespace ember
