#include "batching/batch_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

namespace clipper {
namespace {

Task make_task(uint64_t key, Clock::time_point deadline) {
  Task task;
  task.query_key = key;
  task.deadline = deadline;
  task.payload = std::to_string(key);
  return task;
}

TEST(BatchQueue, ReturnsTasksInArrivalOrderUpToTheLimit) {
  BatchQueue queue;
  const auto later = Clock::now() + std::chrono::seconds(10);
  for (uint64_t key = 0; key < 10; ++key) queue.push(make_task(key, later));
  std::vector<Task> batch;
  std::size_t expired = 0;
  EXPECT_EQ(queue.next_batch(batch, 4, Clock::now(), expired), 4u);
  ASSERT_EQ(batch.size(), 4u);
  for (uint64_t key = 0; key < 4; ++key) EXPECT_EQ(batch[key].query_key, key);
  EXPECT_EQ(expired, 0u);
  EXPECT_EQ(queue.approximate_size(), 6u);
}

TEST(BatchQueue, SkipsTasksWhoseDeadlinePassed) {
  BatchQueue queue;
  const auto now = Clock::now();
  queue.push(make_task(1, now - std::chrono::milliseconds(1)));
  queue.push(make_task(2, now + std::chrono::seconds(1)));
  queue.push(make_task(3, now - std::chrono::milliseconds(5)));
  std::vector<Task> batch;
  std::size_t expired = 0;
  EXPECT_EQ(queue.next_batch(batch, 10, now, expired), 1u);
  EXPECT_EQ(batch.front().query_key, 2u);
  EXPECT_EQ(expired, 2u);
}

TEST(BatchQueue, RequeuedTasksComeFirstAndExpiredOnesAreDropped) {
  BatchQueue queue;
  const auto now = Clock::now();
  const auto later = now + std::chrono::seconds(10);
  queue.push(make_task(10, later));
  std::vector<Task> lost;
  lost.push_back(make_task(1, later));
  lost.push_back(make_task(2, now - std::chrono::milliseconds(1)));
  lost.push_back(make_task(3, later));
  queue.requeue(std::move(lost), now);
  std::vector<Task> batch;
  std::size_t expired = 0;
  queue.next_batch(batch, 10, now, expired);
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch[0].query_key, 1u);
  EXPECT_EQ(batch[1].query_key, 3u);
  EXPECT_EQ(batch[2].query_key, 10u);
}

TEST(BatchQueue, ManyProducersOneConsumerLoseNothing) {
  BatchQueue queue;
  constexpr int kProducers = 4;
  constexpr uint64_t kPerProducer = 20000;
  const auto later = Clock::now() + std::chrono::minutes(1);
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&queue, p, later] {
      for (uint64_t i = 0; i < kPerProducer; ++i) queue.push(make_task(p * kPerProducer + i, later));
    });
  }
  std::set<uint64_t> seen;
  std::vector<Task> batch;
  std::size_t expired = 0;
  while (seen.size() < kProducers * kPerProducer) {
    batch.clear();
    queue.next_batch(batch, 64, Clock::now(), expired);
    for (const auto& task : batch) EXPECT_TRUE(seen.insert(task.query_key).second);
  }
  for (auto& producer : producers) producer.join();
  EXPECT_EQ(seen.size(), kProducers * kPerProducer);
  EXPECT_EQ(expired, 0u);
}

}  // namespace
}  // namespace clipper
