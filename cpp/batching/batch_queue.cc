#include "batching/batch_queue.h"

namespace clipper {

void BatchQueue::push_ready(Task&& task) {
  if (ready_.empty()) waiting_since_ = task.enqueued;
  ready_.push(std::move(task));
  ready_size_.store(ready_.size(), std::memory_order_relaxed);
}

void BatchQueue::note_taken(const Task& task) {
  ready_size_.store(ready_.size(), std::memory_order_relaxed);
  queued_bytes_.fetch_sub(task.payload.size(), std::memory_order_relaxed);
}

void BatchQueue::drain_inbox(Clock::time_point now) {
  // Sized once and kept: constructing and destroying the chunk on every call cost more than the
  // drain itself at low load. Moved-from tasks stay in it, empty.
  if (scratch_.empty()) scratch_.resize(kDrainChunk);
  while (true) {
    const std::size_t taken = inbox_.try_dequeue_bulk(scratch_.begin(), scratch_.size());
    if (taken == 0) break;
    inbox_size_.fetch_sub(taken, std::memory_order_relaxed);
    for (std::size_t i = 0; i < taken; ++i) {
      if (scratch_[i].enqueued == Clock::time_point{}) scratch_[i].enqueued = now;
      push_ready(std::move(scratch_[i]));
    }
  }
}

void BatchQueue::requeue(std::vector<Task>&& tasks) {
  for (auto& task : tasks) requeue(std::move(task));
  tasks.clear();
}

void BatchQueue::requeue(Task&& task) {
  queued_bytes_.fetch_add(task.payload.size(), std::memory_order_relaxed);
  push_ready(std::move(task));
}

std::optional<Clock::time_point> BatchQueue::earliest_deadline() const {
  const Task* first = ready_.earliest();
  if (first == nullptr) return std::nullopt;
  return first->deadline;
}

std::size_t BatchQueue::take_batch(std::vector<Task>& batch, std::size_t max_tasks, Clock::time_point now,
                                   std::vector<Task>& expired) {
  std::size_t added = 0;
  while (added < max_tasks && !ready_.empty()) {
    Task task = ready_.pop_earliest();
    note_taken(task);
    if (task.deadline <= now) {
      expired.push_back(std::move(task));
      continue;
    }
    batch.push_back(std::move(task));
    ++added;
  }
  return added;
}

void BatchQueue::take_expired(Clock::time_point now, std::vector<Task>& expired) {
  while (std::optional<Task> task = ready_.pop_due(now)) {
    note_taken(*task);
    expired.push_back(std::move(*task));
  }
}

}  // namespace clipper
