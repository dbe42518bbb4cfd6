#include "engine/stats.h"

#include <cmath>

namespace ember {

double stats_mean(const std::vector<double>& v) {
    if (v.empty()) return 0.0;
    double sum = 0.0;
    for (double x : v) sum += x;
    return sum / (double)v.size();
}

double stats_stddev(const std::vector<double>& v) {
    if (v.size() < 2) return 0.0;
    const double mean = stats_mean(v);
    double ss = 0.0;
    for (double x : v) ss += (x - mean) * (x - mean);
    return std::sqrt(ss / (double)(v.size() - 1));
}

}  // namespace ember
