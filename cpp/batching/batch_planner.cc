#include "batching/batch_planner.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace clipper {

std::string_view cut_reason_name(CutReason reason) {
  switch (reason) {
    case CutReason::Full: return "full";
    case CutReason::Deadline: return "deadline";
    case CutReason::WaitExpired: return "wait_expired";
    case CutReason::QueueEmpty: return "queue_empty";
  }
  return "unknown";
}

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

BatchPlan plan_batch(const PlanInputs& inputs, const LatencyModel& latency) {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  BatchPlan plan;
  if (inputs.queued == 0 || inputs.target_size == 0) return plan;
  const std::size_t available = std::min(inputs.queued, inputs.target_size);
  const double budget = static_cast<double>(
      duration_cast<microseconds>(inputs.earliest_deadline - inputs.now).count());
  const std::size_t fits = latency.largest_size_within(budget, inputs.target_size);
  if (fits < available) {
    // The earliest deadline cannot wait for a bigger batch; send what can still make it (at least
    // one, since the estimate may be pessimistic).
    plan.send = true;
    plan.size = std::max<std::size_t>(fits, 1);
    plan.reason = CutReason::Deadline;
    return plan;
  }
  if (available == inputs.target_size) {
    plan.send = true;
    plan.size = available;
    plan.reason = CutReason::Full;
    return plan;
  }
  if (inputs.batch_wait_timeout_micros > 0) {
    Clock::time_point wait_until = inputs.waiting_since + microseconds(inputs.batch_wait_timeout_micros);
    // Never wait so long that a full batch could no longer meet the earliest deadline.
    const auto full_batch = microseconds(static_cast<int64_t>(latency.estimate_micros(inputs.target_size)));
    wait_until = std::min(wait_until, inputs.earliest_deadline - full_batch);
    if (inputs.now < wait_until) {
      plan.wake_at = wait_until;
      return plan;
    }
    plan.send = true;
    plan.size = available;
    plan.reason = CutReason::WaitExpired;
    return plan;
  }
  plan.send = true;
  plan.size = available;
  plan.reason = CutReason::QueueEmpty;
  return plan;
}

}  // namespace clipper
