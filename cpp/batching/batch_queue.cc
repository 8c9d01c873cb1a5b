#include "batching/batch_queue.h"

#include <algorithm>

namespace clipper {
namespace {

bool later(const Task& a, const Task& b) { return a.due_after(b); }

// Taken tasks are erased from a lane's front once they are at least this many and half of it: the
// moves are then amortized O(1) per task, and a lane that empties is simply cleared.
constexpr std::size_t kCompactAfter = 64;

}  // namespace

Task BatchQueue::Lane::pop() {
  Task task = std::move(tasks[head++]);
  if (head == tasks.size()) {
    tasks.clear();  // keeps its capacity for the next tasks
    head = 0;
  } else if (head >= kCompactAfter && 2 * head >= tasks.size()) {
    tasks.erase(tasks.begin(), tasks.begin() + static_cast<std::ptrdiff_t>(head));
    head = 0;
  }
  return task;
}

void BatchQueue::push_ready(Task&& task) {
  if (ready_ == 0) waiting_since_ = task.enqueued;
  Lane* best = nullptr;
  Lane* empty = nullptr;
  for (Lane& lane : lanes_) {
    if (lane.empty()) {
      if (empty == nullptr) empty = &lane;
    } else if (!later(lane.back(), task) && (best == nullptr || later(lane.back(), best->back()))) {
      best = &lane;
    }
  }
  if (best == nullptr) best = empty;
  if (best == nullptr && lanes_.size() < kMaxLanes) best = &lanes_.emplace_back();
  if (best != nullptr) {
    best->tasks.push_back(std::move(task));
  } else {
    overflow_.push_back(std::move(task));
    std::push_heap(overflow_.begin(), overflow_.end(), later);
  }
  ++ready_;
  ready_size_.store(ready_, std::memory_order_relaxed);
}

BatchQueue::Lane* BatchQueue::earliest_lane() {
  Lane* first = nullptr;
  for (Lane& lane : lanes_) {
    if (!lane.empty() && (first == nullptr || later(first->front(), lane.front()))) first = &lane;
  }
  if (first != nullptr && !overflow_.empty() && later(first->front(), overflow_.front())) return nullptr;
  return first;
}

const Task* BatchQueue::earliest_task() const {
  const Task* first = overflow_.empty() ? nullptr : &overflow_.front();
  for (const Lane& lane : lanes_) {
    if (!lane.empty() && (first == nullptr || later(*first, lane.front()))) first = &lane.front();
  }
  return first;
}

Task BatchQueue::pop_earliest() {
  Lane* lane = earliest_lane();
  Task task;
  if (lane != nullptr) {
    task = lane->pop();
  } else {
    std::pop_heap(overflow_.begin(), overflow_.end(), later);
    task = std::move(overflow_.back());
    overflow_.pop_back();
  }
  --ready_;
  ready_size_.store(ready_, std::memory_order_relaxed);
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
  const Task* first = earliest_task();
  if (first == nullptr) return std::nullopt;
  return first->deadline;
}

std::size_t BatchQueue::take_batch(std::vector<Task>& batch, std::size_t max_tasks, Clock::time_point now,
                                   std::vector<Task>& expired) {
  std::size_t added = 0;
  while (added < max_tasks && ready_ > 0) {
    Task task = pop_earliest();
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
  while (ready_ > 0 && earliest_task()->deadline <= now) expired.push_back(pop_earliest());
}

}  // namespace clipper
