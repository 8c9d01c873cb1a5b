#include "rpc/replica_set.h"

#include <gtest/gtest.h>

#include <chrono>

namespace clipper {
namespace {

using std::chrono::milliseconds;

class ReplicaSetTest : public ::testing::Test {
 protected:
  Replica make_replica(const std::string& address, ModelVersion* version, ConnectionId connection = 3) {
    Replica replica;
    replica.address = address;
    replica.model = version;
    replica.last_seen = Clock::now();
    replica.connection = connection;
    replica.controller = std::make_unique<AimdController>(AimdOptions{}, 1, 8);
    return replica;
  }

  metrics::MetricsRegistry metrics;
  ModelRegistry models{metrics};
  ModelVersion* model = models.find_or_create("m", "1", InputType::Doubles);
};

TEST_F(ReplicaSetTest, IdleCountFollowsThePipelineDepth) {
  ReplicaSet replicas(2);
  Replica& replica = replicas.add(make_replica("r1", model));
  EXPECT_EQ(model->connected_replicas.load(), 1);
  EXPECT_EQ(model->idle_replicas.load(), 1);
  const auto now = Clock::now();
  replicas.batch_sent(replica, 1, 4, now);
  EXPECT_EQ(model->idle_replicas.load(), 1);  // one of two pipeline slots taken: still has room
  replicas.batch_sent(replica, 2, 4, now);
  EXPECT_EQ(model->idle_replicas.load(), 0);  // full
  EXPECT_FALSE(replicas.has_room(replica));
  replicas.batch_answered(replica, 1, now, now + milliseconds(1));
  EXPECT_EQ(model->idle_replicas.load(), 1);
  replicas.batch_answered(replica, 2, now, now + milliseconds(2));
  EXPECT_EQ(model->idle_replicas.load(), 1);  // regaining a second slot does not count twice
  replicas.remove("r1");
  EXPECT_EQ(model->idle_replicas.load(), 0);
  EXPECT_EQ(model->connected_replicas.load(), 0);
}

TEST_F(ReplicaSetTest, PrefetchingAddsAFullBatchSlotThatNeverCountsAsIdle) {
  ReplicaSet replicas(1, true);
  Replica& replica = replicas.add(make_replica("r1", model));
  const auto now = Clock::now();
  EXPECT_TRUE(replicas.has_room(replica));
  EXPECT_TRUE(replicas.has_room_for_full_batch(replica));
  replicas.batch_sent(replica, 1, 4, now);
  EXPECT_FALSE(replicas.has_room(replica));               // at its depth: no partial batch
  EXPECT_TRUE(replicas.has_room_for_full_batch(replica));  // but a full one may wait behind it
  EXPECT_EQ(model->idle_replicas.load(), 0);
  replicas.batch_sent(replica, 2, 4, now);
  EXPECT_FALSE(replicas.has_room_for_full_batch(replica));
  EXPECT_EQ(model->idle_replicas.load(), 0);
  EXPECT_EQ(replicas.batch_answered(replica, 1, now, now + milliseconds(5)), now);
  EXPECT_EQ(model->idle_replicas.load(), 0);  // still at its depth
  // The prefetched batch started when the replica answered the one before it.
  EXPECT_EQ(replicas.batch_answered(replica, 2, now, now + milliseconds(9)), now + milliseconds(5));
  EXPECT_EQ(model->idle_replicas.load(), 1);
  replicas.remove("r1");
  EXPECT_EQ(model->idle_replicas.load(), 0);
}

TEST_F(ReplicaSetTest, WithoutPrefetchingTheDepthBoundsFullBatchesToo) {
  ReplicaSet replicas(1);
  Replica& replica = replicas.add(make_replica("r1", model));
  replicas.batch_sent(replica, 1, 4, Clock::now());
  EXPECT_FALSE(replicas.has_room_for_full_batch(replica));
}

TEST_F(ReplicaSetTest, AReplicaIsExpectedFreeAfterTheBatchesItHolds) {
  ReplicaSet replicas(1, true);
  Replica& replica = replicas.add(make_replica("r1", model));
  const auto now = Clock::now();
  EXPECT_EQ(replicas.expected_free_at(replica, now), now);  // holds nothing
  replicas.batch_sent(replica, 1, 4, now);
  EXPECT_EQ(replicas.expected_free_at(replica, now), now);  // nothing known of the model yet
  for (int i = 0; i < 4; ++i) model->latency.observe(4, 10000);
  const double four = model->latency.estimate_micros(4);
  ASSERT_GT(four, 0.0);
  const auto one_batch = std::chrono::microseconds(static_cast<int64_t>(four));
  EXPECT_EQ(replicas.expected_free_at(replica, now), now + one_batch);
  replicas.batch_sent(replica, 2, 4, now + milliseconds(1));
  EXPECT_EQ(replicas.expected_free_at(replica, now), now + 2 * one_batch);
  // Long past its expected end (a stall): now, not a time already gone.
  const auto later = now + milliseconds(500);
  EXPECT_EQ(replicas.expected_free_at(replica, later), later);
}

TEST_F(ReplicaSetTest, ARemovedReplicasSeriesLeaveMetrics) {
  ReplicaSet replicas(1);
  Replica first = make_replica("r1", model);
  first.replica_id = 4;
  replicas.add(std::move(first));
  Replica second = make_replica("r2", model);
  second.replica_id = 5;
  replicas.add(std::move(second));
  EXPECT_NE(metrics.render_prometheus().find("replica=\"4\""), std::string::npos);
  const Replica removed = replicas.remove("r1");
  EXPECT_EQ(removed.metrics, nullptr);
  const std::string text = metrics.render_prometheus();
  EXPECT_EQ(text.find("replica=\"4\""), std::string::npos) << text;
  EXPECT_NE(text.find("clipper_replica_connected{model=\"m\",version=\"1\",replica=\"5\"} 1"), std::string::npos);
}

TEST_F(ReplicaSetTest, RemovingAFullReplicaLeavesTheIdleCountAlone) {
  ReplicaSet replicas(1);
  Replica& replica = replicas.add(make_replica("r1", model));
  replicas.batch_sent(replica, 7, 1, Clock::now());
  EXPECT_EQ(model->idle_replicas.load(), 0);
  const Replica removed = replicas.remove("r1");
  EXPECT_EQ(model->idle_replicas.load(), 0);
  ASSERT_EQ(removed.inflight.size(), 1u);
  EXPECT_EQ(removed.inflight.front().batch_id, 7u);
  EXPECT_EQ(replicas.find("r1"), nullptr);
}

TEST_F(ReplicaSetTest, AnswerTimeCountsFromThePreviousAnswerWhenPipelined) {
  ReplicaSet replicas(2);
  Replica& replica = replicas.add(make_replica("r1", model));
  const auto sent = Clock::now();
  replicas.batch_sent(replica, 1, 1, sent);
  replicas.batch_sent(replica, 2, 1, sent);
  const auto first_answer = sent + milliseconds(10);
  EXPECT_EQ(replicas.batch_answered(replica, 1, sent, first_answer), sent);
  // The second batch waited behind the first: it started when the first was answered.
  EXPECT_EQ(replicas.batch_answered(replica, 2, sent, sent + milliseconds(20)), first_answer);
}

TEST_F(ReplicaSetTest, AStalledReplicaIsSeenOnlyOnceTheModelHasALatency) {
  ReplicaSet replicas(1);
  Replica& slow = replicas.add(make_replica("r1", model));
  Replica& peer = replicas.add(make_replica("r2", model));
  const auto sent = Clock::now();
  replicas.batch_sent(slow, 1, 1, sent);
  EXPECT_FALSE(replicas.is_stalled(slow, sent + milliseconds(500)));  // no latency known yet
  model->latency.observe(1, 1000);  // 1 ms per batch: stalled after max(4 ms, 20 ms)
  EXPECT_FALSE(replicas.is_stalled(slow, sent + milliseconds(19)));
  EXPECT_TRUE(replicas.is_stalled(slow, sent + milliseconds(20)));
  EXPECT_TRUE(replicas.has_healthy_peer(slow));
  replicas.mark_stalled(slow, sent);
  EXPECT_TRUE(slow.slow);
  EXPECT_FALSE(replicas.has_healthy_peer(peer));  // its only peer is slow
}

TEST_F(ReplicaSetTest, SpeedMarksSlowOnlyWithAHealthyPeerAndRecovers) {
  ReplicaSet replicas(1);
  Replica& alone = replicas.add(make_replica("r1", model));
  for (int i = 0; i < 10; ++i) replicas.observe_speed(alone, 10.0, Clock::now());
  EXPECT_FALSE(alone.slow);  // the last one standing is never marked slow
  replicas.add(make_replica("r2", model));
  Replica& first = *replicas.find("r1");
  replicas.observe_speed(first, 10.0, Clock::now());
  EXPECT_TRUE(first.slow);
  for (int i = 0; i < 20 && first.slow; ++i) replicas.observe_speed(first, 1.0, Clock::now());
  EXPECT_FALSE(first.slow);
  EXPECT_LT(first.slowness, ReplicaHealth::kRecoveredBelow);
}

TEST_F(ReplicaSetTest, FindsSilentReplicasAndThoseOfAClosedConnection) {
  ReplicaSet replicas(1);
  const auto now = Clock::now();
  Replica old = make_replica("r1", model, 5);
  old.last_seen = now - milliseconds(3000);
  replicas.add(std::move(old));
  replicas.add(make_replica("r2", model, 6));
  EXPECT_EQ(replicas.silent_since(now - milliseconds(2000)), std::vector<ReplicaAddress>{"r1"});
  EXPECT_EQ(replicas.on_connection(6), std::vector<ReplicaAddress>{"r2"});
  EXPECT_TRUE(replicas.on_connection(9).empty());
}

TEST_F(ReplicaSetTest, NumbersReplicasPerVersion) {
  ReplicaSet replicas(1);
  ModelVersion* other = models.find_or_create("m", "2", InputType::Doubles);
  EXPECT_EQ(replicas.next_replica_id(*model), 0);
  EXPECT_EQ(replicas.next_replica_id(*model), 1);
  EXPECT_EQ(replicas.next_replica_id(*other), 0);
}

}  // namespace
}  // namespace clipper
