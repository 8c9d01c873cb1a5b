#include "common/deadline_lanes.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <vector>

namespace clipper {
namespace {

// Move-only, so nothing in the lanes may copy an item.
struct Item {
  Clock::time_point deadline;
  std::unique_ptr<int> id;
};

const Clock::time_point kStart{};

Item item(int64_t deadline_micros, int id) {
  return {kStart + std::chrono::microseconds(deadline_micros), std::make_unique<int>(id)};
}

std::vector<int> pop_all(DeadlineLanes<Item>& lanes) {
  std::vector<int> ids;
  while (!lanes.empty()) ids.push_back(*lanes.pop_earliest().id);
  return ids;
}

TEST(DeadlineLanes, EmptyHasNothingToTake) {
  DeadlineLanes<Item> lanes;
  EXPECT_TRUE(lanes.empty());
  EXPECT_EQ(lanes.earliest(), nullptr);
  EXPECT_FALSE(lanes.pop_due(Clock::time_point::max()));
  EXPECT_EQ(lanes.lanes_in_use(), 0u);
}

TEST(DeadlineLanes, OneSloIsOneFifoLane) {
  DeadlineLanes<Item> lanes;
  for (int i = 0; i < 5; ++i) lanes.push(item(100 + i, i));
  EXPECT_EQ(lanes.size(), 5u);
  EXPECT_EQ(lanes.lanes_in_use(), 1u);
  EXPECT_EQ(lanes.overflowed(), 0u);
  EXPECT_EQ(pop_all(lanes), (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(DeadlineLanes, InterleavedSlosGetALaneEachAndComeOutInDeadlineOrder) {
  DeadlineLanes<Item> lanes;
  // Arrivals 0, 10, 20 ... cycling through SLOs of 1000, 300 and 50 us.
  const int64_t slos[] = {1000, 300, 50};
  std::multimap<int64_t, int> reference;
  for (int i = 0; i < 30; ++i) {
    const int64_t deadline = 10 * i + slos[i % 3];
    lanes.push(item(deadline, i));
    reference.emplace(deadline, i);
  }
  EXPECT_EQ(lanes.lanes_in_use(), 3u);
  EXPECT_EQ(lanes.overflowed(), 0u) << "in-order arrivals per SLO never need the heap";
  std::vector<int> expected;
  for (const auto& [deadline, id] : reference) expected.push_back(id);
  EXPECT_EQ(pop_all(lanes), expected);
}

TEST(DeadlineLanes, EarliestIsWhatPopTakesAndPopDueTakesOnlyWhatIsDue) {
  DeadlineLanes<Item> lanes;
  lanes.push(item(300, 3));
  lanes.push(item(100, 1));  // earlier than the lane's last: a second lane
  lanes.push(item(200, 2));
  ASSERT_NE(lanes.earliest(), nullptr);
  EXPECT_EQ(*lanes.earliest()->id, 1);
  const Clock::time_point at_150 = kStart + std::chrono::microseconds(150);
  const std::optional<Item> first = lanes.pop_due(at_150);
  ASSERT_TRUE(first);
  EXPECT_EQ(*first->id, 1);
  EXPECT_FALSE(lanes.pop_due(at_150)) << "200 us is not due at 150 us";
  EXPECT_EQ(lanes.size(), 2u) << "a refused pop leaves the item queued";
  EXPECT_EQ(*lanes.earliest()->id, 2);
  EXPECT_EQ(*lanes.pop_due(kStart + std::chrono::microseconds(200))->id, 2) << "due exactly at its deadline";
  EXPECT_EQ(pop_all(lanes), (std::vector<int>{3}));
}

TEST(DeadlineLanes, EqualDeadlinesKeepArrivalOrderInALaneAndAcrossLanes) {
  DeadlineLanes<Item> lanes;
  for (int id = 0; id < 3; ++id) lanes.push(item(500, id));  // one lane, FIFO among equals
  EXPECT_EQ(pop_all(lanes), (std::vector<int>{0, 1, 2}));
  lanes.push(item(100, 3));
  lanes.push(item(300, 4));
  lanes.push(item(100, 5));  // before the lane's last: a second lane, its front tied with the first's
  EXPECT_EQ(lanes.lanes_in_use(), 2u);
  EXPECT_EQ(pop_all(lanes), (std::vector<int>{3, 5, 4}));
}

TEST(DeadlineLanes, ATieBetweenALaneAndTheHeapGoesToTheLane) {
  DeadlineLanes<Item> lanes;
  const int lane_count = static_cast<int>(DeadlineLanes<Item>::kMaxLanes);
  for (int k = 0; k < lane_count; ++k) lanes.push(item(2000 - k, k));  // falling: a lane each
  for (int k = 0; k < lane_count; ++k) lanes.push(item(3000 - k, 10 + k));  // one more in each lane
  ASSERT_EQ(lanes.lanes_in_use(), static_cast<std::size_t>(lane_count));
  ASSERT_EQ(lanes.overflowed(), 0u);
  const int last_front = 2000 - (lane_count - 1);
  lanes.push(item(last_front, 99));  // every lane ends later: the heap, tied with the last lane's front
  ASSERT_EQ(lanes.overflowed(), 1u);
  EXPECT_EQ(*lanes.earliest()->id, lane_count - 1) << "the lane's front, tied with the heap's top";
  EXPECT_EQ(*lanes.pop_earliest().id, lane_count - 1);
  EXPECT_EQ(*lanes.pop_earliest().id, 99);
  EXPECT_EQ(*lanes.pop_earliest().id, lane_count - 2);
}

TEST(DeadlineLanes, AnyOrderComesOutInDeadlineOrderThroughTheHeap) {
  std::mt19937 random(5);
  std::uniform_int_distribution<int64_t> deadline(0, 1'000'000);
  std::bernoulli_distribution pop_now(0.3);
  DeadlineLanes<Item> lanes;
  std::multimap<int64_t, int> reference;
  for (int id = 0; id < 5000; ++id) {
    const int64_t d = deadline(random);
    lanes.push(item(d, id));
    reference.emplace(d, id);
    if (pop_now(random)) {
      const Item taken = lanes.pop_earliest();
      ASSERT_EQ(taken.deadline, kStart + std::chrono::microseconds(reference.begin()->first));
      reference.erase(reference.find(reference.begin()->first));
    }
    ASSERT_EQ(lanes.size(), reference.size());
  }
  EXPECT_GT(lanes.overflowed(), 0u) << "random deadlines exceed the lanes";
  EXPECT_LE(lanes.lanes_in_use(), DeadlineLanes<Item>::kMaxLanes);
  int64_t last = -1;
  while (!lanes.empty()) {
    const int64_t d = std::chrono::duration_cast<std::chrono::microseconds>(lanes.pop_earliest().deadline - kStart).count();
    ASSERT_GE(d, last);
    last = d;
  }
}

TEST(DeadlineLanes, ALongLaneKeepsItsOrderWhileItsRingWrapsAndGrows) {
  DeadlineLanes<Item> lanes;
  int next_in = 0;
  int next_out = 0;
  for (int round = 0; round < 200; ++round) {  // 3 in, 2 out: the ring wraps and doubles many times
    for (int i = 0; i < 3; ++i, ++next_in) lanes.push(item(next_in, next_in));
    for (int i = 0; i < 2; ++i, ++next_out) ASSERT_EQ(*lanes.pop_earliest().id, next_out);
  }
  EXPECT_EQ(lanes.lanes_in_use(), 1u);
  while (!lanes.empty()) ASSERT_EQ(*lanes.pop_earliest().id, next_out++);
  EXPECT_EQ(next_out, next_in);
}

TEST(DeadlineLanes, ADrainedLaneIsReusedByTheNextSlo) {
  DeadlineLanes<Item> lanes;
  lanes.push(item(500, 0));
  lanes.push(item(100, 1));  // a second lane
  EXPECT_EQ(lanes.lanes_in_use(), 2u);
  EXPECT_EQ(*lanes.pop_earliest().id, 1);
  EXPECT_EQ(lanes.lanes_in_use(), 1u);
  lanes.push(item(200, 2));  // earlier than the other lane's last: takes the empty lane, not the heap
  EXPECT_EQ(lanes.lanes_in_use(), 2u);
  EXPECT_EQ(lanes.overflowed(), 0u);
  EXPECT_EQ(pop_all(lanes), (std::vector<int>{2, 0}));
}

}  // namespace
}  // namespace clipper
