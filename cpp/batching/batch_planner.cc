#include "batching/batch_planner.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace clipper {

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
