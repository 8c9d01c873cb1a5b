// Items in earliest-deadline-first order, kept in a few FIFO lanes instead of one heap: the order of an
// I/O thread's waiting queries (query/deadline_queue.h) and of a model's queued tasks
// (batching/batch_queue.h). Single-threaded: owned by whichever thread owns its user.
//
// Items of one app share its SLO, so their deadlines (arrival + SLO) arrive in order. An item joins
// the lane whose last deadline is the latest one not after its own (with one SLO, always the same
// lane), else an empty lane, else a new one. That makes a lane per SLO without being told the SLOs,
// and push and pop O(lanes) instead of a heap's O(log n) moves of whole items. An item that fits no
// lane once kMaxLanes are in use (many distinct SLOs interleaved, a requeued task, a clock step) goes
// to a min-heap, so any order stays correct.
// Invariants: every lane is sorted by deadline (front earliest); the earliest item is at the front of
// some lane or on top of the heap; size() counts lanes and heap together. Of equal deadlines, a lane's
// front is taken before the heap's top and an earlier lane before a later one.
//
// T: a movable, default-constructible type with a `deadline` member (Clock::time_point).
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

#include "common/clock.h"

namespace clipper {

template <typename T>
class DeadlineLanes {
 public:
  static constexpr std::size_t kMaxLanes = 8;

  void push(T&& item) {
    Lane* best = nullptr;
    Lane* empty = nullptr;
    for (Lane& lane : lanes_) {
      if (lane.empty()) {
        if (empty == nullptr) empty = &lane;
      } else if (lane.back_deadline <= item.deadline &&
                 (best == nullptr || lane.back_deadline > best->back_deadline)) {
        best = &lane;
      }
    }
    if (best == nullptr) best = empty;
    if (best == nullptr && lanes_.size() < kMaxLanes) best = &lanes_.emplace_back();
    if (best != nullptr) {
      best->push(std::move(item));
    } else {
      overflow_.push_back(std::move(item));
      std::push_heap(overflow_.begin(), overflow_.end(), later);
    }
    ++size_;
  }

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The item due first (the one pop_earliest() takes), or nullptr when empty.
  const T* earliest() const {
    const Lane* lane = earliest_lane();
    if (lane != nullptr) return &lane->front();
    return overflow_.empty() ? nullptr : &overflow_.front();
  }

  // Removes and returns the item due first. Not empty().
  T pop_earliest() { return pop(earliest_lane()); }

  // Removes and returns the item due first if its deadline is at or before `now`; nothing otherwise
  // (or when empty). One look over the lanes per item, for draining everything due.
  std::optional<T> pop_due(Clock::time_point now) {
    Lane* lane = earliest_lane();
    if (lane != nullptr) {
      if (lane->front_deadline > now) return std::nullopt;
      --size_;
      return lane->pop();
    }
    if (overflow_.empty() || overflow_.front().deadline > now) return std::nullopt;
    --size_;
    return pop_heap_top();
  }

  std::size_t lanes_in_use() const {
    std::size_t used = 0;
    for (const Lane& lane : lanes_) used += lane.empty() ? 0 : 1;
    return used;
  }
  std::size_t overflowed() const { return overflow_.size(); }

 private:
  static bool later(const T& a, const T& b) { return a.deadline > b.deadline; }

  // A FIFO in deadline order: a ring of slots, a power of two of them, doubled when full. Taken
  // slots keep their moved-from items until reused, so steady traffic allocates nothing. The front's
  // and back's deadlines are kept beside the indices: every push and pop compares them across lanes.
  struct Lane {
    Clock::time_point front_deadline{};
    Clock::time_point back_deadline{};
    std::size_t head = 0;      // next to take; both only count up
    std::size_t tail = 0;      // next to fill
    std::size_t capacity = 0;  // slots.size(), kept apart: a power of two, `index & (capacity - 1)`
    std::vector<T> slots;

    bool empty() const { return head == tail; }
    const T& front() const { return slots[head & (capacity - 1)]; }
    void push(T&& item) {
      if (tail - head == capacity) grow();
      if (head == tail) front_deadline = item.deadline;
      back_deadline = item.deadline;
      slots[tail++ & (capacity - 1)] = std::move(item);
    }
    T pop() {
      T item = std::move(slots[head++ & (capacity - 1)]);
      if (head != tail) front_deadline = front().deadline;
      return item;
    }
    [[gnu::noinline]] void grow() {  // rare: kept out of push(), so push() inlines into its callers
      std::vector<T> larger(capacity == 0 ? kFirstSlots : 2 * capacity);
      for (std::size_t i = head; i != tail; ++i) larger[i - head] = std::move(slots[i & (capacity - 1)]);
      tail -= head;
      head = 0;
      slots.swap(larger);
      capacity = slots.size();
    }
  };
  static constexpr std::size_t kFirstSlots = 16;

  // The lane holding the item due first, or nullptr when that is the heap's top (or nothing is queued).
  Lane* earliest_lane() { return const_cast<Lane*>(std::as_const(*this).earliest_lane()); }
  const Lane* earliest_lane() const {
    const Lane* first = nullptr;
    for (const Lane& lane : lanes_) {
      if (!lane.empty() && (first == nullptr || lane.front_deadline < first->front_deadline)) first = &lane;
    }
    if (first != nullptr && !overflow_.empty() && overflow_.front().deadline < first->front_deadline) return nullptr;
    return first;
  }

  T pop(Lane* lane) {
    --size_;
    return lane != nullptr ? lane->pop() : pop_heap_top();
  }

  T pop_heap_top() {
    std::pop_heap(overflow_.begin(), overflow_.end(), later);
    T item = std::move(overflow_.back());
    overflow_.pop_back();
    return item;
  }

  std::vector<Lane> lanes_;  // at most kMaxLanes; empty ones are kept for reuse
  std::vector<T> overflow_;  // min-heap on deadline: items that fit no lane
  std::size_t size_ = 0;
};

}  // namespace clipper
