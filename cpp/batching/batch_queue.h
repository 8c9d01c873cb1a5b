// The queue of one model version: many I/O threads push tasks, the RPC thread pulls batches.
// Lock-free (moodycamel::ConcurrentQueue, multi-producer); FIFO per producer, which with one SLO per
// app is also earliest-deadline-first. Tasks whose deadline passed are skipped when a batch is formed:
// their I/O thread has already answered them with the default.
#pragma once

#include <concurrentqueue/concurrentqueue.h>

#include <cstddef>
#include <deque>
#include <vector>

#include "batching/task.h"

namespace clipper {

class BatchQueue {
 public:
  void push(Task&& task) { queue_.enqueue(std::move(task)); }

  std::size_t approximate_size() const { return queue_.size_approx() + requeued_.size(); }

  // RPC thread only: puts back the tasks of a batch that a lost replica never answered. They are
  // served before anything newer.
  void requeue(std::vector<Task>&& tasks, Clock::time_point now);

  // RPC thread only: appends up to `max_tasks` live tasks to `batch`; drops expired ones and counts
  // them in `expired`. Returns the number appended.
  std::size_t next_batch(std::vector<Task>& batch, std::size_t max_tasks, Clock::time_point now,
                         std::size_t& expired);

 private:
  moodycamel::ConcurrentQueue<Task> queue_;
  std::deque<Task> requeued_;  // RPC thread only
  std::vector<Task> scratch_;  // RPC thread only
};

}  // namespace clipper
