// Decides, for one idle replica, how many queued tasks to send now, or how long to wait for more.
// Inputs: what is queued, the controller's batch size, the earliest deadline, the delayed-batching
// wait, and a latency model of the model version. Pure logic with no threads: the RPC thread calls it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/clock.h"
#include "common/cut_reason.h"
#include "common/latency_model.h"

namespace clipper {

struct BatchPlan {
  bool send = false;
  std::size_t size = 0;
  CutReason reason = CutReason::QueueEmpty;
  Clock::time_point wake_at{};  // when !send and tasks are queued: when to look again
};

struct PlanInputs {
  std::size_t queued = 0;
  std::size_t target_size = 1;                // from the controller (or the fixed size)
  Clock::time_point now{};
  Clock::time_point earliest_deadline{};
  Clock::time_point waiting_since{};          // when the oldest queued task arrived
  int64_t batch_wait_timeout_micros = 0;      // delayed batching; 0 = send at once
};

BatchPlan plan_batch(const PlanInputs& inputs, const LatencyModel& latency);

}  // namespace clipper
