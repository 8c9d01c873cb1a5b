#include "common/latency_model.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace clipper {

void LatencyModel::Sums::add(const Sample& sample, int sign) {
  const auto size = static_cast<__int128>(sample.size);
  const auto latency = static_cast<__int128>(sample.latency);
  x += sign * size;
  y += sign * latency;
  xx += sign * size * size;
  xy += sign * size * latency;
}

void LatencyModel::observe(std::size_t batch_size, int64_t latency_micros) {
  const Sample sample{static_cast<double>(batch_size), static_cast<double>(latency_micros)};
  const bool full = count_ == kWindow;
  const Sample replaced = samples_[next_];
  if (full) sums_.add(replaced, -1);
  sums_.add(sample, +1);
  samples_[next_] = sample;
  next_ = (next_ + 1) % kWindow;
  count_ = std::min(count_ + 1, kWindow);
  bool rescan = count_ == 1;
  if (full) {  // the last sample at a minimum left the window: a pass over it (rare) finds the next
    if (replaced.size == smallest_ && --smallest_count_ == 0) rescan = true;
    if (replaced.latency == fastest_ && --fastest_count_ == 0) rescan = true;
  }
  if (rescan) {
    rescan_minima();
  } else {
    note_minimum(sample.size, smallest_, smallest_count_);
    note_minimum(sample.latency, fastest_, fastest_count_);
  }
  largest_size_ = std::max(largest_size_, sample.size);
  // The smallest batch so far, or any small one since: the latest view of the fixed cost.
  if (!anchor_ || sample.size <= anchor_->size || sample.size <= kAnchorShare * largest_size_) anchor_ = sample;
  fit_ = fit_sums(sums_, smallest_, fastest_);
}

void LatencyModel::note_minimum(double value, double& minimum, std::size_t& at_minimum) {
  if (value < minimum) {
    minimum = value;
    at_minimum = 1;
  } else if (value == minimum) {
    ++at_minimum;
  }
}

void LatencyModel::rescan_minima() {
  smallest_ = fastest_ = std::numeric_limits<double>::infinity();
  smallest_count_ = fastest_count_ = 0;
  for (std::size_t i = 0; i < count_; ++i) {
    note_minimum(samples_[i].size, smallest_, smallest_count_);
    note_minimum(samples_[i].latency, fastest_, fastest_count_);
  }
}

LatencyModel::Fit LatencyModel::fit_window() const {
  if (count_ == 0) return Fit{};
  Sums sums;
  double smallest = std::numeric_limits<double>::infinity();
  double fastest = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < count_; ++i) {
    sums.add(samples_[i], +1);
    smallest = std::min(smallest, samples_[i].size);
    fastest = std::min(fastest, samples_[i].latency);
  }
  return fit_sums(sums, smallest, fastest);
}

LatencyModel::Fit LatencyModel::fit_sums(const Sums& sums, double smallest, double fastest) const {
  Fit fit;
  if (count_ == 0) return fit;
  const auto sum_x = static_cast<double>(sums.x);
  const auto sum_y = static_cast<double>(sums.y);
  const auto sum_xx = static_cast<double>(sums.xx);
  const auto sum_xy = static_cast<double>(sums.xy);
  const double n = static_cast<double>(count_);
  const double mean_x = sum_x / n;
  const double mean_y = sum_y / n;
  const double variance = std::max(sum_xx / n - mean_x * mean_x, 0.0);

  double slope = 0;
  if (std::sqrt(variance) >= kMinRelativeSpread * mean_x && variance >= 0.25) {
    slope = (sum_xy / n - mean_x * mean_y) / variance;  // the sizes spread enough: least squares
  } else if (anchor_ && anchor_->size <= kAnchorLeverage * mean_x) {
    // Narrow sizes (a backlog's full batches): through the anchor and the window's mean point.
    slope = (mean_y - anchor_->latency) / (mean_x - anchor_->size);
    fastest = std::min(fastest, anchor_->latency);
  } else {
    // One size seen: assume cost grows no faster than linearly beyond it, and that a smaller batch
    // is no slower than the fastest one seen.
    fit.smallest = smallest;
    fit.fastest = fastest;
    fit.mean_x = mean_x;
    fit.mean_y = mean_y;
    return fit;
  }
  slope = std::max(slope, 0.0);
  double intercept = mean_y - slope * mean_x;
  if (intercept < 0 || intercept > fastest) {
    // Every batch pays the fixed cost, and it is not negative: clamp it, and refit the per-input
    // cost by least squares with the fixed cost given.
    intercept = std::clamp(intercept, 0.0, fastest);
    slope = sum_xx > 0 ? std::max((sum_xy - intercept * sum_x) / sum_xx, 0.0) : 0.0;
  }
  fit.one_size = false;
  fit.intercept = intercept;
  fit.slope = slope;
  return fit;
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
