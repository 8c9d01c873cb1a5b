#include "batching/batch_queue.h"

#include <algorithm>

namespace clipper {

void BatchQueue::requeue(std::vector<Task>&& tasks, Clock::time_point now) {
  for (auto it = tasks.rbegin(); it != tasks.rend(); ++it) {
    if (it->deadline > now) requeued_.push_front(std::move(*it));
  }
  tasks.clear();
}

std::size_t BatchQueue::next_batch(std::vector<Task>& batch, std::size_t max_tasks,
                                   Clock::time_point now, std::size_t& expired) {
  std::size_t added = 0;
  while (added < max_tasks && !requeued_.empty()) {
    Task task = std::move(requeued_.front());
    requeued_.pop_front();
    if (task.deadline <= now) {
      ++expired;
      continue;
    }
    batch.push_back(std::move(task));
    ++added;
  }
  while (added < max_tasks) {
    scratch_.resize(max_tasks - added);
    const std::size_t taken = queue_.try_dequeue_bulk(scratch_.begin(), scratch_.size());
    if (taken == 0) break;
    for (std::size_t i = 0; i < taken; ++i) {
      if (scratch_[i].deadline <= now) {
        ++expired;
        continue;
      }
      batch.push_back(std::move(scratch_[i]));
      ++added;
    }
  }
  scratch_.clear();
  return added;
}

}  // namespace clipper
