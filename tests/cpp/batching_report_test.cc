#include "rpc/batching_report.h"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "rpc/dispatcher.h"
#include "rpc/zmq_transport.h"

namespace clipper {
namespace {

TEST(BatchingReport, PublishesSortedReplicasAndEachVersionsBatchingState) {
  metrics::MetricsRegistry metrics;
  ModelRegistry models{metrics};
  ModelVersion* model = models.find_or_create("m", "1", InputType::Floats);
  model->max_batch_size.store(16);
  EngineOptions options;
  PredictionCache cache{0};
  ZmqTransport transport;
  ReplicaMessages messages;
  ReplicaSet replicas{1};
  CompletionOutbox outbox{cache};
  Dispatcher dispatcher{options, models, cache, replicas, transport, messages, outbox};
  for (int id : {2, 1}) {
    Replica replica;
    replica.address = "r" + std::to_string(id);
    replica.model = model;
    replica.replica_id = id;
    replica.controller = std::make_unique<AimdController>(AimdOptions{}, 3, 16);
    replicas.add(std::move(replica));
  }
  BatchingReport report;
  EXPECT_EQ(report.batching_state_json(), "[]");  // nothing published yet
  report.publish(replicas, models.all(), dispatcher, options);

  const auto listed = report.replicas();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].replica_id, 1);
  EXPECT_EQ(listed[1].replica_id, 2);
  EXPECT_EQ(listed[0].input_type, "floats");

  rapidjson::Document state;
  state.Parse(report.batching_state_json().c_str());
  ASSERT_TRUE(state.IsArray());
  ASSERT_EQ(state.Size(), 1u);
  const auto& version = state[0];
  EXPECT_STREQ(version["model_name"].GetString(), "m");
  EXPECT_EQ(version["max_batch_size"].GetInt(), 16);
  EXPECT_TRUE(version["batch_cuts"].HasMember("queue_empty"));
  ASSERT_EQ(version["replicas"].Size(), 2u);
  EXPECT_EQ(version["replicas"][0]["batch_size"].GetInt(), 3);
}

}  // namespace
}  // namespace clipper
