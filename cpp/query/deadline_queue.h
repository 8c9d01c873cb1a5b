// Which waiting query is due next, for one I/O thread: (deadline, query key) entries with lazy
// deletion: a query answered early stays queued and is skipped by the caller when it comes due.
// Single-threaded: owned by its I/O thread. The order is common/deadline_lanes.h's: a FIFO lane per
// SLO (an app's deadlines arrive in order), a min-heap for what fits no lane.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "common/clock.h"
#include "common/deadline_lanes.h"

namespace clipper {

class DeadlineQueue {
 public:
  struct Entry {
    Clock::time_point deadline;
    uint64_t query_key;
  };
  static constexpr std::size_t kMaxLanes = DeadlineLanes<Entry>::kMaxLanes;

  void add(Clock::time_point deadline, uint64_t query_key) { lanes_.push({deadline, query_key}); }

  std::optional<Clock::time_point> earliest() const {
    const Entry* first = lanes_.earliest();
    if (first == nullptr) return std::nullopt;
    return first->deadline;
  }

  // Pops every entry due at or before `now`, in deadline order, calling `on_due(query_key)`.
  template <typename OnDue>
  void expire_until(Clock::time_point now, OnDue&& on_due) {
    while (const std::optional<Entry> due = lanes_.pop_due(now)) on_due(due->query_key);
  }

  std::size_t size() const { return lanes_.size(); }
  std::size_t lanes_in_use() const { return lanes_.lanes_in_use(); }
  std::size_t overflowed() const { return lanes_.overflowed(); }

 private:
  DeadlineLanes<Entry> lanes_;
};

}  // namespace clipper
