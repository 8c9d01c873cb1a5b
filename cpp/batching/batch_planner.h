// Decides, for one idle replica, how many queued tasks to send now, or how long to wait for more.
// Inputs: what is queued, the controller's batch size, the earliest deadline, the delayed-batching
// wait, and a latency model of the model version. Pure logic with no threads: the RPC thread calls it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "batching/task.h"

namespace clipper {

// Batch latency as a function of batch size, fitted online by least squares over recent batches
// (latency = fixed + per_input * size). Until two sizes were seen it scales the mean linearly.
class LatencyModel {
 public:
  static constexpr std::size_t kWindow = 64;

  void observe(std::size_t batch_size, int64_t latency_micros);
  bool has_samples() const { return count_ > 0; }
  // Estimated latency of a batch of `batch_size` inputs; 0 when nothing was observed yet.
  double estimate_micros(std::size_t batch_size) const;
  // The largest size <= cap whose estimate fits in `budget_micros` (0 if even one does not fit);
  // `cap` when nothing was observed yet.
  std::size_t largest_size_within(double budget_micros, std::size_t cap) const;

 private:
  struct Sample {
    double size;
    double latency;
  };
  std::array<Sample, kWindow> samples_{};
  std::size_t next_ = 0;
  std::size_t count_ = 0;
};

enum class CutReason : uint8_t { Full = 0, Deadline = 1, WaitExpired = 2, QueueEmpty = 3 };
inline constexpr std::size_t kCutReasons = 4;
std::string_view cut_reason_name(CutReason reason);

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
