// Feedback rounds on their way from the I/O threads (POST /<app>/update, once every linked model's
// output for the input is known) to the policy that learns from them in the control plane.
// Invariants: any I/O thread pushes, without blocking (a lock-free queue; a full queue refuses the
// round so its /update answers 503 instead of growing without bound); one consumer thread takes rounds
// in push order per I/O thread, so the rounds of one (app, uid), which arrive on one connection's
// thread in order, are applied in order. The consumer answers each round through the engine
// (finish_feedback), which routes the answer back to the I/O thread that holds the request.
#pragma once

#include <concurrentqueue/blockingconcurrentqueue.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/task.h"

namespace clipper {

struct FeedbackOutcome {
  std::string model_name;
  bool answered = false;       // false: the model failed or missed the deadline (no loss is known)
  std::string output;
  ModelConfidence confidence;  // what the model reported with `output` (empty: none)
};

struct FeedbackRound {
  uint64_t ticket = 0;         // names the waiting /update request (see QueryProcessor)
  std::string app;
  int64_t uid = 0;
  double label = 0.0;
  std::vector<FeedbackOutcome> outcomes;  // one per linked model, in link order
};

class FeedbackQueue {
 public:
  explicit FeedbackQueue(std::size_t capacity_rounds = 65536) : capacity_(capacity_rounds) {}

  // Any I/O thread. False when the queue holds `capacity` rounds already.
  bool push(FeedbackRound&& round) {
    if (size_.fetch_add(1, std::memory_order_relaxed) >= capacity_) {
      size_.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    queue_.enqueue(std::move(round));
    return true;
  }

  // The consumer thread: waits up to `timeout` for a first round, then takes up to `max` rounds.
  std::vector<FeedbackRound> take(std::size_t max, std::chrono::microseconds timeout) {
    std::vector<FeedbackRound> rounds(max);
    const std::size_t taken = queue_.wait_dequeue_bulk_timed(rounds.begin(), max, timeout.count());
    rounds.resize(taken);
    size_.fetch_sub(taken, std::memory_order_relaxed);
    return rounds;
  }

  // Whether a consumer has asked for rounds: without one, /update cannot apply feedback and says so.
  void mark_consumer_attached() { consumer_attached_.store(true, std::memory_order_release); }
  bool consumer_attached() const { return consumer_attached_.load(std::memory_order_acquire); }

 private:
  const std::size_t capacity_;
  std::atomic<std::size_t> size_{0};
  std::atomic<bool> consumer_attached_{false};
  moodycamel::BlockingConcurrentQueue<FeedbackRound> queue_;
};

}  // namespace clipper
