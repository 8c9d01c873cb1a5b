#include "rpc/completion_outbox.h"

#include <gtest/gtest.h>

#include <chrono>

namespace clipper {
namespace {

// An I/O thread's side of the seam, recording what arrives and how.
class RecordingSink final : public CompletionSink {
 public:
  void deliver(std::vector<Completion>& completions) override { take(completions, delivered); }
  void deliver_here(std::vector<Completion>& completions) override { take(completions, delivered_here); }
  std::vector<Completion> delivered;
  std::vector<Completion> delivered_here;

 private:
  static void take(std::vector<Completion>& from, std::vector<Completion>& to) {
    for (auto& completion : from) to.push_back(std::move(completion));
    from.clear();
  }
};

Task task_for(uint32_t io_thread, uint64_t query, const CacheKey& key, bool cached) {
  Task task;
  task.io_thread = io_thread;
  task.query_key = query;
  task.cached = cached;
  task.cache_key = key;
  task.deadline = Clock::now() + std::chrono::seconds(5);
  return task;
}

TEST(CompletionOutbox, AnswersTheTaskAndTheQueriesCoalescedOntoIt) {
  PredictionCache cache(1 << 20);
  RecordingSink first;
  RecordingSink second;
  CompletionOutbox outbox(cache);
  outbox.connect({&first, &second}, false);
  const CacheKey key = make_cache_key(1, "input");
  std::string unused;
  ASSERT_EQ(cache.lookup(key, CacheWaiter{0, 10, 0, Clock::now() + std::chrono::seconds(5)}, unused),
            PredictionCache::Lookup::Miss);
  ASSERT_EQ(cache.lookup(key, CacheWaiter{1, 20, 3, Clock::now() + std::chrono::seconds(5)}, unused),
            PredictionCache::Lookup::Joined);
  std::vector<Task> tasks{task_for(0, 10, key, true)};
  std::vector<std::string> outputs{"42"};
  outbox.complete_outputs(tasks, outputs);
  EXPECT_TRUE(first.delivered.empty());  // nothing leaves before flush()
  outbox.flush();
  ASSERT_EQ(first.delivered.size(), 1u);
  EXPECT_EQ(first.delivered[0].query_key, 10u);
  EXPECT_EQ(first.delivered[0].text, "42");
  ASSERT_EQ(second.delivered.size(), 1u);
  EXPECT_EQ(second.delivered[0].query_key, 20u);
  EXPECT_EQ(second.delivered[0].input_index, 3u);
  EXPECT_EQ(second.delivered[0].kind, CompletionKind::Output);
  std::string output;
  EXPECT_EQ(cache.lookup(key, CacheWaiter{0, 30, 0, Clock::now()}, output), PredictionCache::Lookup::Hit);
  EXPECT_EQ(output, "42");
}

TEST(CompletionOutbox, TheModelsConfidenceReachesTheTaskItsWaitersAndTheCacheEntry) {
  PredictionCache cache(1 << 20);
  RecordingSink sink;
  CompletionOutbox outbox(cache);
  outbox.connect({&sink}, false);
  const CacheKey sure = make_cache_key(1, "sure");
  const CacheKey silent = make_cache_key(1, "silent");
  std::string unused;
  cache.lookup(sure, CacheWaiter{0, 10, 0, Clock::now() + std::chrono::seconds(5)}, unused);
  cache.lookup(sure, CacheWaiter{0, 11, 2, Clock::now() + std::chrono::seconds(5)}, unused);
  cache.lookup(silent, CacheWaiter{0, 12, 0, Clock::now() + std::chrono::seconds(5)}, unused);
  std::vector<Task> tasks{task_for(0, 10, sure, true), task_for(0, 12, silent, true)};
  std::vector<std::string> outputs{"cat", "dog"};
  outbox.complete_outputs(tasks, outputs, {0.25f, std::nullopt});
  outbox.flush();
  ASSERT_EQ(sink.delivered.size(), 3u);
  for (const auto& completion : sink.delivered) {
    if (completion.query_key == 12) {
      EXPECT_FALSE(completion.confidence.has_value());
    } else {
      EXPECT_EQ(completion.confidence, 0.25f) << completion.query_key;  // the task and its waiter
    }
  }
  std::string output;
  ModelConfidence confidence;
  ASSERT_EQ(cache.lookup(sure, CacheWaiter{0, 13, 0, Clock::now()}, output, &confidence),
            PredictionCache::Lookup::Hit);
  EXPECT_EQ(output, "cat");
  EXPECT_EQ(confidence, 0.25f);
  ASSERT_EQ(cache.lookup(silent, CacheWaiter{0, 14, 0, Clock::now()}, output, &confidence),
            PredictionCache::Lookup::Hit);
  EXPECT_FALSE(confidence.has_value());
}

TEST(CompletionOutbox, AFailedBatchFailsItsWaitersAndForgetsTheEntry) {
  PredictionCache cache(1 << 20);
  RecordingSink sink;
  CompletionOutbox outbox(cache);
  outbox.connect({&sink}, false);
  const CacheKey key = make_cache_key(1, "input");
  std::string unused;
  cache.lookup(key, CacheWaiter{0, 10, 0, Clock::now() + std::chrono::seconds(5)}, unused);
  cache.lookup(key, CacheWaiter{0, 11, 0, Clock::now() + std::chrono::seconds(5)}, unused);
  std::vector<Task> tasks{task_for(0, 10, key, true), task_for(0, 12, make_cache_key(1, "other"), false)};
  outbox.complete_error(tasks, "boom");
  outbox.flush();
  ASSERT_EQ(sink.delivered.size(), 3u);
  for (const auto& completion : sink.delivered) {
    EXPECT_EQ(completion.kind, CompletionKind::ModelError);
    EXPECT_EQ(completion.text, "boom");
  }
  EXPECT_EQ(cache.lookup(key, CacheWaiter{0, 13, 0, Clock::now()}, unused), PredictionCache::Lookup::Miss);
}

TEST(CompletionOutbox, InPlaceDeliveryUsesTheOwningLoopsOwnPath) {
  PredictionCache cache(0);
  RecordingSink sink;
  CompletionOutbox outbox(cache);
  outbox.connect({&sink}, true);
  outbox.push(0, 5, 0, CompletionKind::Shed, "too late");
  outbox.flush();
  EXPECT_TRUE(sink.delivered.empty());
  ASSERT_EQ(sink.delivered_here.size(), 1u);
  EXPECT_EQ(sink.delivered_here[0].kind, CompletionKind::Shed);
  outbox.flush();  // nothing left: nothing delivered twice
  EXPECT_EQ(sink.delivered_here.size(), 1u);
}

}  // namespace
}  // namespace clipper
