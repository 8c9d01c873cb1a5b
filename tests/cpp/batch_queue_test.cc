#include "batching/batch_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace clipper {
namespace {

Task make_task(uint64_t key, Clock::time_point deadline) {
  Task task;
  task.query_key = key;
  task.deadline = deadline;
  task.enqueued = Clock::now();
  task.payload = std::to_string(key);
  return task;
}

TEST(BatchQueue, TakesTasksEarliestDeadlineFirstUpToTheLimit) {
  BatchQueue queue;
  const auto now = Clock::now();
  const uint64_t order[] = {5, 1, 4, 2, 3};
  for (uint64_t key : order) queue.push(make_task(key, now + std::chrono::milliseconds(10 * key)));
  EXPECT_EQ(queue.approximate_size(), 5u);
  queue.drain_inbox(now);
  EXPECT_EQ(queue.ready(), 5u);
  EXPECT_EQ(*queue.earliest_deadline(), now + std::chrono::milliseconds(10));
  std::vector<Task> batch, expired;
  EXPECT_EQ(queue.take_batch(batch, 3, now, expired), 3u);
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch[0].query_key, 1u);
  EXPECT_EQ(batch[1].query_key, 2u);
  EXPECT_EQ(batch[2].query_key, 3u);
  EXPECT_TRUE(expired.empty());
  EXPECT_EQ(queue.approximate_size(), 2u);
}

TEST(BatchQueue, HandsBackExpiredTasksSeparately) {
  BatchQueue queue;
  const auto now = Clock::now();
  queue.push(make_task(1, now - std::chrono::milliseconds(1)));
  queue.push(make_task(2, now + std::chrono::seconds(1)));
  queue.push(make_task(3, now - std::chrono::milliseconds(5)));
  queue.drain_inbox(now);
  std::vector<Task> batch, expired;
  EXPECT_EQ(queue.take_batch(batch, 10, now, expired), 1u);
  EXPECT_EQ(batch.front().query_key, 2u);
  ASSERT_EQ(expired.size(), 2u);
  EXPECT_EQ(expired[0].query_key, 3u);
}

TEST(BatchQueue, TakeExpiredLeavesLiveTasks) {
  BatchQueue queue;
  const auto now = Clock::now();
  queue.push(make_task(1, now - std::chrono::milliseconds(1)));
  queue.push(make_task(2, now + std::chrono::seconds(1)));
  queue.drain_inbox(now);
  std::vector<Task> expired;
  queue.take_expired(now, expired);
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(queue.ready(), 1u);
}

TEST(BatchQueue, RequeuedTasksTakeTheirDeadlinePlace) {
  BatchQueue queue;
  const auto now = Clock::now();
  queue.push(make_task(10, now + std::chrono::seconds(10)));
  queue.drain_inbox(now);
  std::vector<Task> lost;
  lost.push_back(make_task(1, now + std::chrono::seconds(1)));
  lost.push_back(make_task(3, now + std::chrono::seconds(3)));
  queue.requeue(std::move(lost));
  std::vector<Task> batch, expired;
  queue.take_batch(batch, 10, now, expired);
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch[0].query_key, 1u);
  EXPECT_EQ(batch[1].query_key, 3u);
  EXPECT_EQ(batch[2].query_key, 10u);
}

TEST(BatchQueue, KeepsDeadlineOrderThroughLanesAndOverflow) {
  // Arrivals of more SLOs than lanes (each app's deadlines rising, apps interleaved), with batches
  // taken and some requeued between drains, and expiry: every task comes out exactly once, and each
  // take is the earliest deadlines still queued, in order, as a heap gave them.
  std::mt19937 random(11);
  std::uniform_int_distribution<int> app(0, static_cast<int>(2 * BatchQueue::kMaxLanes) - 1);
  std::uniform_int_distribution<int> take(1, 12);
  const auto start = Clock::now();
  BatchQueue queue;
  std::multiset<Clock::time_point> queued;  // the reference: what a heap would hold
  uint64_t key = 0;
  std::size_t taken_total = 0;
  for (int round = 0; round < 300; ++round) {
    const auto now = start + std::chrono::microseconds(100 * round);
    for (int i = 0; i < 8; ++i) {
      // App a's SLO is (a + 1) ms: its deadlines rise with arrival time.
      const auto deadline = now + std::chrono::microseconds(i + 1000 * (app(random) + 1));
      queue.push(make_task(++key, deadline));
      queued.insert(deadline);
    }
    queue.drain_inbox(now);
    ASSERT_EQ(queue.ready(), queued.size());
    ASSERT_EQ(*queue.earliest_deadline(), *queued.begin());
    std::vector<Task> batch, expired;
    const std::size_t want = static_cast<std::size_t>(take(random));
    queue.take_batch(batch, want, now, expired);
    for (const Task& task : expired) {
      ASSERT_LE(task.deadline, now);
      ASSERT_EQ(task.deadline, *queued.begin());
      queued.erase(queued.begin());
    }
    for (const Task& task : batch) {
      ASSERT_GT(task.deadline, now);
      ASSERT_EQ(task.deadline, *queued.begin()) << "round " << round;
      queued.erase(queued.begin());
    }
    taken_total += batch.size() + expired.size();
    if (round % 7 == 0) {  // a lost replica's batch comes back
      for (const Task& task : batch) queued.insert(task.deadline);
      taken_total -= batch.size();
      queue.requeue(std::move(batch));
    }
  }
  std::vector<Task> rest, expired;
  queue.take_batch(rest, key, start, expired);
  ASSERT_TRUE(expired.empty());
  ASSERT_TRUE(std::is_sorted(rest.begin(), rest.end(),
                             [](const Task& a, const Task& b) { return a.deadline < b.deadline; }));
  EXPECT_EQ(taken_total + rest.size(), key);
  EXPECT_EQ(queue.ready(), 0u);
  EXPECT_EQ(queue.approximate_bytes(), 0u);
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
  std::vector<Task> batch, expired;
  while (seen.size() < kProducers * kPerProducer) {
    batch.clear();
    queue.drain_inbox(Clock::now());
    queue.take_batch(batch, 64, Clock::now(), expired);
    for (const auto& task : batch) EXPECT_TRUE(seen.insert(task.query_key).second);
  }
  for (auto& producer : producers) producer.join();
  EXPECT_EQ(seen.size(), kProducers * kPerProducer);
  EXPECT_TRUE(expired.empty());
  EXPECT_EQ(queue.approximate_size(), 0u);
}

TEST(BatchQueue, CountsTheInputBytesItHoldsUntilTasksLeaveIt) {
  BatchQueue queue;
  const auto now = Clock::now();
  Task big = make_task(1, now + std::chrono::seconds(1));
  big.payload.assign(1000, 'x');
  queue.push(std::move(big));
  queue.push(make_task(22, now + std::chrono::seconds(2)));  // payload "22"
  queue.push(make_task(3, now - std::chrono::seconds(1)));   // already expired, payload "3"
  EXPECT_EQ(queue.approximate_bytes(), 1003u);
  queue.drain_inbox(now);
  EXPECT_EQ(queue.approximate_bytes(), 1003u) << "moving from the inbox to the heap changes nothing";
  std::vector<Task> batch, expired;
  queue.take_batch(batch, 1, now, expired);
  EXPECT_EQ(queue.approximate_bytes(), 2u) << "the batch and the expired task left";
  queue.requeue(std::move(batch));
  EXPECT_EQ(queue.approximate_bytes(), 1002u);
  queue.take_expired(now + std::chrono::seconds(5), expired);
  EXPECT_EQ(queue.approximate_bytes(), 0u);
}

}  // namespace
}  // namespace clipper
