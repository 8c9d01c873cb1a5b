// Summary statistics shared by the C++ micro-benchmarks in this folder (header-only, included by path,
// so a benchmark built by hand, as prediction_cache_ab.sh does, needs no extra include flag).
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace micro_bench {

// The middle value of `values` (the upper of the two middle ones for an even count). Not empty.
inline double median(std::vector<double> values) {
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2), values.end());
  return values[values.size() / 2];
}

}  // namespace micro_bench
