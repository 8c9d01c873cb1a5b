#include "batching/batch_queue.h"

#include <algorithm>

namespace clipper {
namespace {

bool later(const Task& a, const Task& b) { return a.due_after(b); }

}  // namespace

void BatchQueue::push_heap(Task&& task) {
  if (heap_.empty()) waiting_since_ = task.enqueued;
  heap_.push_back(std::move(task));
  std::push_heap(heap_.begin(), heap_.end(), later);
  heap_size_.store(heap_.size(), std::memory_order_relaxed);
}

Task BatchQueue::pop_heap() {
  std::pop_heap(heap_.begin(), heap_.end(), later);
  Task task = std::move(heap_.back());
  heap_.pop_back();
  heap_size_.store(heap_.size(), std::memory_order_relaxed);
  queued_bytes_.fetch_sub(task.payload.size(), std::memory_order_relaxed);
  return task;
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
      push_heap(std::move(scratch_[i]));
    }
  }
}

void BatchQueue::requeue(std::vector<Task>&& tasks) {
  for (auto& task : tasks) requeue(std::move(task));
  tasks.clear();
}

void BatchQueue::requeue(Task&& task) {
  queued_bytes_.fetch_add(task.payload.size(), std::memory_order_relaxed);
  push_heap(std::move(task));
}

std::optional<Clock::time_point> BatchQueue::earliest_deadline() const {
  if (heap_.empty()) return std::nullopt;
  return heap_.front().deadline;
}

std::size_t BatchQueue::take_batch(std::vector<Task>& batch, std::size_t max_tasks, Clock::time_point now,
                                   std::vector<Task>& expired) {
  std::size_t added = 0;
  while (added < max_tasks && !heap_.empty()) {
    Task task = pop_heap();
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
  while (!heap_.empty() && heap_.front().deadline <= now) expired.push_back(pop_heap());
}

}  // namespace clipper
