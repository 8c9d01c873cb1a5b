// Which waiting query is due next, for one I/O thread. A min-heap of (deadline, query key) with lazy
// deletion: a query answered early stays in the heap and is skipped by the caller when it pops.
// Single-threaded: owned by its I/O thread.
#pragma once

#include <cstdint>
#include <optional>
#include <queue>
#include <vector>

#include "common/clock.h"

namespace clipper {

class DeadlineQueue {
 public:
  void add(Clock::time_point deadline, uint64_t query_key) { heap_.push({deadline, query_key}); }

  std::optional<Clock::time_point> earliest() const {
    if (heap_.empty()) return std::nullopt;
    return heap_.top().deadline;
  }

  // Pops every entry due at or before `now`, in deadline order, calling `on_due(query_key)`.
  template <typename OnDue>
  void expire_until(Clock::time_point now, OnDue&& on_due) {
    while (!heap_.empty() && heap_.top().deadline <= now) {
      const uint64_t key = heap_.top().query_key;
      heap_.pop();
      on_due(key);
    }
  }

  std::size_t size() const { return heap_.size(); }

 private:
  struct Entry {
    Clock::time_point deadline;
    uint64_t query_key;
    bool operator>(const Entry& other) const { return deadline > other.deadline; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap_;
};

}  // namespace clipper
