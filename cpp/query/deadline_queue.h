// Which waiting query is due next, for one I/O thread: (deadline, query key) entries with lazy
// deletion: a query answered early stays queued and is skipped by the caller when it comes due.
// Single-threaded: owned by its I/O thread.
//
// Queries of one app share its SLO, so their deadlines (arrival + SLO) arrive in order. Entries
// therefore go into a few FIFO lanes, each kept in deadline order: an entry joins the lane whose
// last deadline is the latest one not after its own (with one SLO, always the same lane), else an
// empty lane, else a new one. That makes a lane per SLO without being told the SLOs, and add and
// pop O(lanes) instead of a heap's O(log n). An entry that fits no lane once kMaxLanes are in use
// (many distinct SLOs interleaved, or a clock step) goes to a min-heap, so any order stays correct.
// Invariants: every lane is sorted by deadline (front earliest); the earliest entry is at the
// front of some lane or on top of the heap; size() counts lanes and heap together.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <queue>
#include <vector>

#include "common/clock.h"

namespace clipper {

class DeadlineQueue {
 public:
  static constexpr std::size_t kMaxLanes = 8;

  void add(Clock::time_point deadline, uint64_t query_key) {
    std::deque<Entry>* best = nullptr;
    std::deque<Entry>* empty = nullptr;
    for (auto& lane : lanes_) {
      if (lane.empty()) {
        if (empty == nullptr) empty = &lane;
      } else if (lane.back().deadline <= deadline &&
                 (best == nullptr || lane.back().deadline > best->back().deadline)) {
        best = &lane;
      }
    }
    if (best == nullptr) best = empty;
    if (best == nullptr && lanes_.size() < kMaxLanes) best = &lanes_.emplace_back();
    if (best != nullptr) {
      best->push_back({deadline, query_key});
    } else {
      overflow_.push({deadline, query_key});
    }
    ++size_;
  }

  std::optional<Clock::time_point> earliest() const {
    const Entry* first = earliest_entry();
    if (first == nullptr) return std::nullopt;
    return first->deadline;
  }

  // Pops every entry due at or before `now`, in deadline order, calling `on_due(query_key)`.
  template <typename OnDue>
  void expire_until(Clock::time_point now, OnDue&& on_due) {
    while (true) {
      std::deque<Entry>* lane = nullptr;
      for (auto& candidate : lanes_) {
        if (!candidate.empty() && (lane == nullptr || candidate.front().deadline < lane->front().deadline)) {
          lane = &candidate;
        }
      }
      const bool from_heap =
          !overflow_.empty() && (lane == nullptr || overflow_.top().deadline < lane->front().deadline);
      uint64_t key;
      if (from_heap) {
        if (overflow_.top().deadline > now) return;
        key = overflow_.top().query_key;
        overflow_.pop();
      } else {
        if (lane == nullptr || lane->front().deadline > now) return;
        key = lane->front().query_key;
        lane->pop_front();
      }
      --size_;
      on_due(key);
    }
  }

  std::size_t size() const { return size_; }
  std::size_t lanes_in_use() const {
    std::size_t used = 0;
    for (const auto& lane : lanes_) used += lane.empty() ? 0 : 1;
    return used;
  }
  std::size_t overflowed() const { return overflow_.size(); }

 private:
  struct Entry {
    Clock::time_point deadline;
    uint64_t query_key;
    bool operator>(const Entry& other) const { return deadline > other.deadline; }
  };

  const Entry* earliest_entry() const {
    const Entry* first = overflow_.empty() ? nullptr : &overflow_.top();
    for (const auto& lane : lanes_) {
      if (!lane.empty() && (first == nullptr || lane.front().deadline < first->deadline)) first = &lane.front();
    }
    return first;
  }

  std::vector<std::deque<Entry>> lanes_;  // at most kMaxLanes
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> overflow_;
  std::size_t size_ = 0;
};

}  // namespace clipper
