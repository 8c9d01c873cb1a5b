#include "common/latency_model.h"

#include <algorithm>

namespace clipper {

void LatencyModel::observe(std::size_t batch_size, int64_t latency_micros) {
  samples_[next_] = Sample{static_cast<double>(batch_size), static_cast<double>(latency_micros)};
  next_ = (next_ + 1) % kWindow;
  count_ = std::min(count_ + 1, kWindow);
}

double LatencyModel::estimate_micros(std::size_t batch_size) const {
  if (count_ == 0) return 0.0;
  double sum_x = 0, sum_y = 0, sum_xx = 0, sum_xy = 0;
  for (std::size_t i = 0; i < count_; ++i) {
    sum_x += samples_[i].size;
    sum_y += samples_[i].latency;
    sum_xx += samples_[i].size * samples_[i].size;
    sum_xy += samples_[i].size * samples_[i].latency;
  }
  const double n = static_cast<double>(count_);
  const double mean_x = sum_x / n;
  const double mean_y = sum_y / n;
  const double variance = sum_xx / n - mean_x * mean_x;
  const double size = static_cast<double>(batch_size);
  if (variance < 0.25) {
    // One size seen: assume cost grows no faster than linearly beyond it.
    return size <= mean_x ? mean_y : mean_y * size / mean_x;
  }
  double slope = (sum_xy / n - mean_x * mean_y) / variance;
  slope = std::max(slope, 0.0);
  const double intercept = std::max(mean_y - slope * mean_x, 0.0);
  return intercept + slope * size;
}

std::size_t LatencyModel::largest_size_within(double budget_micros, std::size_t cap) const {
  if (count_ == 0) return cap;
  if (budget_micros <= 0) return 0;
  std::size_t low = 0;
  std::size_t high = cap;
  while (low < high) {  // the estimate rises with size: binary search the last size that fits
    const std::size_t middle = (low + high + 1) / 2;
    if (estimate_micros(middle) <= budget_micros) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  return low;
}

}  // namespace clipper
