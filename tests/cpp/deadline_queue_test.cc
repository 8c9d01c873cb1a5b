#include "query/deadline_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

namespace clipper {
namespace {

TEST(DeadlineQueue, ExpiresOnlyDueEntriesInDeadlineOrder) {
  DeadlineQueue queue;
  const auto base = Clock::now();
  queue.add(base + std::chrono::milliseconds(30), 3);
  queue.add(base + std::chrono::milliseconds(10), 1);
  queue.add(base + std::chrono::milliseconds(20), 2);
  ASSERT_TRUE(queue.earliest().has_value());
  EXPECT_EQ(*queue.earliest(), base + std::chrono::milliseconds(10));

  std::vector<uint64_t> due;
  queue.expire_until(base + std::chrono::milliseconds(20), [&](uint64_t key) { due.push_back(key); });
  EXPECT_EQ(due, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(queue.size(), 1u);
  EXPECT_EQ(*queue.earliest(), base + std::chrono::milliseconds(30));
}

TEST(DeadlineQueue, EmptyQueueHasNoEarliest) {
  DeadlineQueue queue;
  EXPECT_FALSE(queue.earliest().has_value());
  int calls = 0;
  queue.expire_until(Clock::now(), [&](uint64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(DeadlineQueue, NothingExpiresBeforeItsDeadline) {
  DeadlineQueue queue;
  const auto base = Clock::now();
  queue.add(base + std::chrono::seconds(1), 7);
  int calls = 0;
  queue.expire_until(base, [&](uint64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
  queue.expire_until(base + std::chrono::seconds(1), [&](uint64_t key) {
    EXPECT_EQ(key, 7u);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
}

TEST(DeadlineQueue, InterleavedSlosGetALaneEachAndComeOutInDeadlineOrder) {
  DeadlineQueue queue;
  const auto base = Clock::now();
  const std::chrono::microseconds slos[3] = {std::chrono::microseconds(20000), std::chrono::microseconds(5000),
                                             std::chrono::microseconds(100000)};
  std::vector<std::pair<Clock::time_point, uint64_t>> expected;
  for (uint64_t key = 0; key < 3000; ++key) {
    const auto arrival = base + std::chrono::microseconds(key * 7);  // arrivals in order, SLOs interleaved
    const auto deadline = arrival + slos[key % 3];
    queue.add(deadline, key);
    expected.emplace_back(deadline, key);
  }
  EXPECT_EQ(queue.lanes_in_use(), 3u);
  EXPECT_EQ(queue.overflowed(), 0u) << "in-order arrivals per SLO never need the heap";
  EXPECT_EQ(queue.size(), 3000u);
  std::stable_sort(expected.begin(), expected.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  EXPECT_EQ(*queue.earliest(), expected.front().first);
  std::vector<Clock::time_point> due;
  queue.expire_until(expected[1499].first, [&](uint64_t key) {
    due.push_back(base + std::chrono::microseconds(key * 7) + slos[key % 3]);
  });
  ASSERT_GE(due.size(), 1500u);
  EXPECT_TRUE(std::is_sorted(due.begin(), due.end()));
  EXPECT_EQ(queue.size(), 3000u - due.size());
  queue.expire_until(expected.back().first, [&](uint64_t) {});
  EXPECT_EQ(queue.size(), 0u);
  EXPECT_FALSE(queue.earliest().has_value());
}

TEST(DeadlineQueue, AnyOrderOfDeadlinesIsServedInOrderThroughTheOverflowHeap) {
  std::mt19937_64 random(13);
  for (int round = 0; round < 20; ++round) {
    DeadlineQueue queue;
    const auto base = Clock::now();
    std::vector<int64_t> offsets;
    for (uint64_t key = 0; key < 500; ++key) {
      const int64_t offset = static_cast<int64_t>(random() % 100000);
      offsets.push_back(offset);
      queue.add(base + std::chrono::microseconds(offset), key);
    }
    EXPECT_GT(queue.overflowed(), 0u) << "random deadlines exceed the lanes";
    std::vector<int64_t> due;
    // In steps, adding more while expiring, as an I/O thread does.
    for (int64_t step = 10000; step <= 100000; step += 10000) {
      queue.expire_until(base + std::chrono::microseconds(step), [&](uint64_t key) {
        EXPECT_LE(offsets[key], step);
        due.push_back(offsets[key]);
      });
      EXPECT_TRUE(!queue.earliest() || *queue.earliest() > base + std::chrono::microseconds(step));
    }
    EXPECT_EQ(due.size(), 500u);
    EXPECT_TRUE(std::is_sorted(due.begin(), due.end()));
    EXPECT_EQ(queue.size(), 0u);
  }
}

TEST(DeadlineQueue, ADrainedLaneIsReusedByTheNextSlo) {
  DeadlineQueue queue;
  const auto base = Clock::now();
  queue.add(base + std::chrono::milliseconds(50), 1);
  queue.add(base + std::chrono::milliseconds(10), 2);  // earlier than the first lane's last: a second lane
  EXPECT_EQ(queue.lanes_in_use(), 2u);
  queue.expire_until(base + std::chrono::milliseconds(10), [](uint64_t key) { EXPECT_EQ(key, 2u); });
  EXPECT_EQ(queue.lanes_in_use(), 1u);
  queue.add(base + std::chrono::milliseconds(20), 3);  // fits no busy lane: takes the empty one
  EXPECT_EQ(queue.lanes_in_use(), 2u);
  std::vector<uint64_t> due;
  queue.expire_until(base + std::chrono::seconds(1), [&](uint64_t key) { due.push_back(key); });
  EXPECT_EQ(due, (std::vector<uint64_t>{3, 1}));
}

}  // namespace
}  // namespace clipper
