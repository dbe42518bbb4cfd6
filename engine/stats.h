// Summary statistics of repeated measurements (benchmark repetitions).
#pragma once
#include <vector>

namespace ember {

double stats_mean(const std::vector<double>& v);    // 0 for an empty vector
double stats_stddev(const std::vector<double>& v);  // sample standard deviation (n - 1); 0 for fewer than 2 values

}  // namespace ember
