// The queue of one model version. Many I/O threads push tasks into a lock-free inbox
// (moodycamel::ConcurrentQueue); the RPC thread alone drains the inbox into an earliest-deadline-first
// heap and takes batches from it, so batch formation always prefers the queries due first.
// Tasks whose deadline passed are handed back separately when a batch is taken: their I/O thread has
// answered them already, but the caller may still owe cache bookkeeping for them.
#pragma once

#include <concurrentqueue/concurrentqueue.h>

#include <atomic>
#include <cstddef>
#include <optional>
#include <vector>

#include "common/task.h"

namespace clipper {

class BatchQueue {
 public:
  // Any thread.
  void push(Task&& task) {
    queued_bytes_.fetch_add(task.payload.size(), std::memory_order_relaxed);
    inbox_.enqueue(std::move(task));
    inbox_size_.fetch_add(1, std::memory_order_relaxed);
  }
  std::size_t approximate_size() const {
    return inbox_size_.load(std::memory_order_relaxed) + heap_size_.load(std::memory_order_relaxed);
  }
  // Input bytes held by queued tasks (inbox and heap): the queue's memory, for admission control.
  std::size_t approximate_bytes() const { return queued_bytes_.load(std::memory_order_relaxed); }

  std::size_t inbox_size() const { return inbox_size_.load(std::memory_order_relaxed); }

  // --- RPC thread only ---
  // Moves everything from the inbox into the deadline heap.
  void drain_inbox(Clock::time_point now);
  // Puts back tasks a lost replica never answered, in deadline order with the rest.
  void requeue(std::vector<Task>&& tasks);
  void requeue(Task&& task);

  std::size_t ready() const { return heap_.size(); }
  std::optional<Clock::time_point> earliest_deadline() const;
  // When the heap last went from empty to non-empty (the start of a delayed-batching wait).
  Clock::time_point waiting_since() const { return waiting_since_; }

  // Pops up to `max_tasks` live tasks in deadline order into `batch`; expired ones go to `expired`.
  std::size_t take_batch(std::vector<Task>& batch, std::size_t max_tasks, Clock::time_point now,
                         std::vector<Task>& expired);
  // Pops every task whose deadline passed into `expired`.
  void take_expired(Clock::time_point now, std::vector<Task>& expired);

 private:
  void push_heap(Task&& task);
  Task pop_heap();

  moodycamel::ConcurrentQueue<Task> inbox_;
  std::atomic<std::size_t> inbox_size_{0};
  std::atomic<std::size_t> heap_size_{0};
  std::atomic<std::size_t> queued_bytes_{0};
  std::vector<Task> heap_;   // RPC thread only; min-heap on deadline
  static constexpr std::size_t kDrainChunk = 64;  // tasks taken from the inbox per dequeue
  std::vector<Task> scratch_;
  Clock::time_point waiting_since_{};
};

}  // namespace clipper
