#include "cache/prediction_cache.h"

#include <gtest/gtest.h>

#include <string>

namespace clipper {
namespace {

CacheWaiter waiter(uint64_t query, Clock::time_point deadline = Clock::now() + std::chrono::seconds(5)) {
  return CacheWaiter{0, query, 0, deadline};
}

TEST(PredictionCache, AnAnswerKeepsTheConfidenceItCameWith) {
  PredictionCache cache(1 << 20);
  const CacheKey key = make_cache_key(3, "input");
  std::string output;
  ModelConfidence confidence;
  ASSERT_EQ(cache.lookup(key, waiter(1), output, &confidence), PredictionCache::Lookup::Miss);
  cache.resolve(key, "unsure", 0.4f);
  ASSERT_EQ(cache.lookup(key, waiter(2), output, &confidence), PredictionCache::Lookup::Hit);
  EXPECT_EQ(output, "unsure");
  EXPECT_EQ(confidence, 0.4f);
  // An answer stored without one reads back without one.
  const CacheKey other = make_cache_key(3, "other");
  ASSERT_EQ(cache.lookup(other, waiter(3), output), PredictionCache::Lookup::Miss);
  cache.resolve(other, "bare");
  ASSERT_EQ(cache.lookup(other, waiter(4), output, &confidence), PredictionCache::Lookup::Hit);
  EXPECT_FALSE(confidence.has_value());
}

TEST(PredictionCache, MissThenHitAfterResolve) {
  PredictionCache cache(1 << 20);
  const CacheKey key = make_cache_key(1, "input");
  std::string output;
  EXPECT_EQ(cache.lookup(key, waiter(1), output), PredictionCache::Lookup::Miss);
  EXPECT_TRUE(cache.resolve(key, "answer").empty());
  EXPECT_EQ(cache.lookup(key, waiter(2), output), PredictionCache::Lookup::Hit);
  EXPECT_EQ(output, "answer");
  const CacheStatistics statistics = cache.statistics();
  EXPECT_EQ(statistics.hits, 1u);
  EXPECT_EQ(statistics.misses, 1u);
}

TEST(PredictionCache, HoldsSaysWhetherAnAnswerIsStoredWithoutTouchingAnything) {
  PredictionCache cache(1 << 20);
  const CacheKey key = make_cache_key(1, "input");
  EXPECT_FALSE(cache.holds(key));
  std::string output;
  ASSERT_EQ(cache.lookup(key, waiter(1), output), PredictionCache::Lookup::Miss);
  EXPECT_FALSE(cache.holds(key));  // being evaluated is not stored
  cache.resolve(key, "answer");
  EXPECT_TRUE(cache.holds(key));
  EXPECT_FALSE(cache.holds(make_cache_key(2, "input")));  // another version
  const CacheStatistics statistics = cache.statistics();
  EXPECT_EQ(statistics.hits, 0u);
  EXPECT_EQ(statistics.misses, 1u);
  EXPECT_EQ(statistics.coalesced, 0u);
  EXPECT_FALSE(PredictionCache(0).holds(key));
}

TEST(PredictionCache, IdenticalConcurrentQueriesWaitOnOneEvaluation) {
  PredictionCache cache(1 << 20);
  const CacheKey key = make_cache_key(1, "same");
  std::string output;
  EXPECT_EQ(cache.lookup(key, waiter(1), output), PredictionCache::Lookup::Miss);
  EXPECT_EQ(cache.lookup(key, waiter(2), output), PredictionCache::Lookup::Joined);
  EXPECT_EQ(cache.lookup(key, waiter(3), output), PredictionCache::Lookup::Joined);
  const auto waiters = cache.resolve(key, "x");
  ASSERT_EQ(waiters.size(), 2u);
  EXPECT_EQ(waiters[0].query_key, 2u);
  EXPECT_EQ(waiters[1].query_key, 3u);
  EXPECT_EQ(cache.statistics().coalesced, 2u);
}

TEST(PredictionCache, VersionsNeverShareAnswers) {
  PredictionCache cache(1 << 20);
  std::string output;
  const CacheKey version_one = make_cache_key(1, "input");
  const CacheKey version_two = make_cache_key(2, "input");
  cache.lookup(version_one, waiter(1), output);
  cache.resolve(version_one, "old");
  EXPECT_EQ(cache.lookup(version_two, waiter(2), output), PredictionCache::Lookup::Miss);
}

TEST(PredictionCache, FailureForgetsThePendingEntryAndReturnsItsWaiters) {
  PredictionCache cache(1 << 20);
  const CacheKey key = make_cache_key(1, "input");
  std::string output;
  cache.lookup(key, waiter(1), output);
  cache.lookup(key, waiter(2), output);
  EXPECT_EQ(cache.fail(key).size(), 1u);
  EXPECT_EQ(cache.lookup(key, waiter(3), output), PredictionCache::Lookup::Miss);
}

TEST(PredictionCache, HandOverPicksALiveWaiterAndDropsExpiredOnes) {
  PredictionCache cache(1 << 20);
  const CacheKey key = make_cache_key(1, "input");
  const auto now = Clock::now();
  std::string output;
  cache.lookup(key, waiter(1, now), output);
  cache.lookup(key, waiter(2, now - std::chrono::milliseconds(1)), output);
  cache.lookup(key, waiter(3, now + std::chrono::seconds(2)), output);
  cache.lookup(key, waiter(4, now + std::chrono::seconds(1)), output);
  const auto owner = cache.hand_over(key, now);
  ASSERT_TRUE(owner.has_value());
  EXPECT_EQ(owner->query_key, 3u);
  const auto remaining = cache.resolve(key, "done");
  ASSERT_EQ(remaining.size(), 1u);
  EXPECT_EQ(remaining[0].query_key, 4u);
  // With no live waiter left, the pending entry is dropped.
  const CacheKey other = make_cache_key(1, "other");
  cache.lookup(other, waiter(5), output);
  EXPECT_FALSE(cache.hand_over(other, now).has_value());
  EXPECT_EQ(cache.lookup(other, waiter(6), output), PredictionCache::Lookup::Miss);
}

TEST(PredictionCache, StaysWithinItsByteBudgetByEvicting) {
  const std::size_t budget = 64 * 1024;
  PredictionCache cache(budget);
  std::string output;
  const std::string value(1000, 'v');
  for (int i = 0; i < 1000; ++i) {
    const CacheKey key = make_cache_key(1, "input-" + std::to_string(i));
    cache.lookup(key, waiter(i), output);
    cache.resolve(key, value);
  }
  const CacheStatistics statistics = cache.statistics();
  EXPECT_LE(statistics.bytes, budget);
  EXPECT_GT(statistics.evictions, 900u);
  EXPECT_GT(statistics.entries, 10u);
}

TEST(PredictionCache, ReferencedEntriesGetASecondChance) {
  // One shard's worth of budget: everything lands in shards of 1/16 of it.
  PredictionCache cache(16 * 4 * (100 + 192));
  std::string output;
  const std::string value(100, 'v');
  // Fill, touch the first key often, then insert many more: the hot key survives.
  const CacheKey hot = make_cache_key(1, "hot");
  cache.lookup(hot, waiter(0), output);
  cache.resolve(hot, value);
  for (int i = 0; i < 200; ++i) {
    const CacheKey key = make_cache_key(1, "cold-" + std::to_string(i));
    cache.lookup(key, waiter(i), output);
    cache.resolve(key, value);
    EXPECT_EQ(cache.lookup(hot, waiter(1000 + i), output), PredictionCache::Lookup::Hit) << i;
  }
}

TEST(PredictionCache, AFreshEntrySurvivesWhileTheFullCacheTurnsOver) {
  PredictionCache cache(16 * 8 * (100 + 192));
  std::string output;
  const std::string value(100, 'v');
  for (int i = 0; i < 2000; ++i) {
    const CacheKey key = make_cache_key(1, "churn-" + std::to_string(i));
    ASSERT_EQ(cache.lookup(key, waiter(i), output), PredictionCache::Lookup::Miss) << i;
    cache.resolve(key, value);
    ASSERT_EQ(cache.lookup(key, waiter(i), output), PredictionCache::Lookup::Hit) << i;
    EXPECT_EQ(output, value);
  }
  const CacheStatistics statistics = cache.statistics();
  EXPECT_LE(statistics.bytes, 16u * 8 * (100 + 192));
  EXPECT_GT(statistics.evictions, 1800u);
}

TEST(PredictionCache, ZeroBytesDisablesIt) {
  PredictionCache cache(0);
  EXPECT_FALSE(cache.enabled());
  const CacheKey key = make_cache_key(1, "input");
  std::string output;
  EXPECT_EQ(cache.lookup(key, waiter(1), output), PredictionCache::Lookup::Miss);
  cache.resolve(key, "x");
  EXPECT_EQ(cache.lookup(key, waiter(2), output), PredictionCache::Lookup::Miss);
}

TEST(PredictionCache, AnOutputLargerThanTheBudgetIsNotStored) {
  PredictionCache cache(16 * 1024);
  const CacheKey key = make_cache_key(1, "input");
  std::string output;
  cache.lookup(key, waiter(1), output);
  cache.lookup(key, waiter(2), output);
  EXPECT_EQ(cache.resolve(key, std::string(100000, 'x')).size(), 1u) << "waiters still answered";
  EXPECT_EQ(cache.lookup(key, waiter(3), output), PredictionCache::Lookup::Miss);
}

TEST(PredictionCache, AReusedSlotStartsWithoutThePreviousEntrysWaiters) {
  // Joined queries wait beside the slots, by slot number; a slot freed by a failure, a hand-over or a
  // resolve is claimed by the next miss, which must not inherit anyone.
  PredictionCache cache(1 << 20);
  std::string output;
  const auto now = Clock::now();
  const CacheKey failed = make_cache_key(1, "failed");
  cache.lookup(failed, waiter(1), output);
  cache.lookup(failed, waiter(2), output);
  EXPECT_EQ(cache.fail(failed).size(), 1u);
  const CacheKey dropped = make_cache_key(1, "dropped");
  cache.lookup(dropped, waiter(3), output);
  cache.lookup(dropped, waiter(4, now - std::chrono::milliseconds(1)), output);
  EXPECT_FALSE(cache.hand_over(dropped, now).has_value());
  const CacheKey fresh = make_cache_key(1, "fresh");
  EXPECT_EQ(cache.lookup(fresh, waiter(5), output), PredictionCache::Lookup::Miss);
  EXPECT_TRUE(cache.resolve(fresh, "answer").empty());
  EXPECT_TRUE(cache.fail(failed).empty());
}

}  // namespace
}  // namespace clipper
