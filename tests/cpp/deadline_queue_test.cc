#include "query/deadline_queue.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace clipper
