#include "rpc/dispatcher.h"

#include <gtest/gtest.h>
#include <zmq.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "model_rpc_generated.h"
#include "rpc/zmq_transport.h"

namespace clipper {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class RecordingSink final : public CompletionSink {
 public:
  void deliver(std::vector<Completion>& completions) override {
    for (auto& completion : completions) delivered.push_back(std::move(completion));
    completions.clear();
  }
  void deliver_here(std::vector<Completion>& completions) override { deliver(completions); }
  std::vector<Completion> delivered;
};

// Hands predict responses to the dispatcher, as the replica service does.
class ResponseForwarder final : public TransportReceiver, public ReplicaMessageHandler {
 public:
  explicit ResponseForwarder(Dispatcher& dispatcher) : dispatcher_(dispatcher) {}
  void on_received(const ReplicaAddress& from, const uint8_t* data, std::size_t size, ConnectionId id) override {
    ++received;
    messages_.decode(from, data, size, id, *this);
  }
  void on_connection_closed(ConnectionId) override {}
  void on_sender_alive(const ReplicaAddress&) override {}
  void on_register(const ReplicaAddress&, const RegisterRequest&, ConnectionId) override {}
  void on_heartbeat(const ReplicaAddress&, std::string_view) override {}
  void on_predict_response(const ReplicaAddress& from, const PredictResponse& response) override {
    ++responses;
    dispatcher_.on_response(from, response);
  }
  int received = 0;
  int responses = 0;

 private:
  Dispatcher& dispatcher_;
  ReplicaMessages messages_;
};

// A model replica's data socket: a real ZeroMQ DEALER over loopback TCP.
class FakeReplicaSocket {
 public:
  FakeReplicaSocket(int port, const std::string& identity) {
    socket_ = zmq_socket(context_, ZMQ_DEALER);
    const int zero = 0;
    const int timeout = 5000;
    zmq_setsockopt(socket_, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(socket_, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
    zmq_setsockopt(socket_, ZMQ_ROUTING_ID, identity.data(), identity.size());
    zmq_connect(socket_, ("tcp://127.0.0.1:" + std::to_string(port)).c_str());
  }
  ~FakeReplicaSocket() {
    zmq_close(socket_);
    zmq_ctx_term(context_);
  }
  void send(const flatbuffers::FlatBufferBuilder& builder) {
    zmq_send(socket_, builder.GetBufferPointer(), builder.GetSize(), 0);
  }
  // The next batch sent to this replica: its id and its number of inputs (0, 0 on timeout).
  std::pair<uint64_t, uint32_t> receive_batch() {
    zmq_msg_t message;
    zmq_msg_init(&message);
    std::pair<uint64_t, uint32_t> batch{0, 0};
    if (zmq_msg_recv(&message, socket_, 0) >= 0) {
      std::vector<std::max_align_t> aligned(zmq_msg_size(&message) / sizeof(std::max_align_t) + 1);
      std::memcpy(aligned.data(), zmq_msg_data(&message), zmq_msg_size(&message));
      const auto* request = wire::GetMessage(aligned.data())->payload_as_PredictRequest();
      if (request != nullptr) batch = {request->batch_id(), request->num_inputs()};
    }
    zmq_msg_close(&message);
    return batch;
  }
  void answer(uint64_t batch_id, const std::vector<std::string>& outputs) {
    flatbuffers::FlatBufferBuilder builder;
    std::vector<flatbuffers::Offset<flatbuffers::String>> texts;
    for (const auto& output : outputs) texts.push_back(builder.CreateString(output));
    auto response = wire::CreatePredictResponseDirect(builder, batch_id, &texts);
    builder.Finish(wire::CreateMessage(builder, wire::Payload::PredictResponse, response.Union()));
    send(builder);
  }

 private:
  void* context_ = zmq_ctx_new();
  void* socket_ = nullptr;
};

// The replica side as the engine assembles it, with one replica ("r1", a controller at batch size 4)
// of model m:1; `Prefetch`: EngineOptions::replica_prefetch_full_batches, pipeline depth 1.
template <bool Prefetch>
class DispatcherFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    port = transport.bind("127.0.0.1", 0);
    outbox.connect({&sink}, false);
    replica_socket = std::make_unique<FakeReplicaSocket>(port, "r1");
    // The ROUTER learns the peer once something arrives from it.
    flatbuffers::FlatBufferBuilder hello;
    auto beat = wire::CreateHeartbeatDirect(hello, "r1");
    hello.Finish(wire::CreateMessage(hello, wire::Payload::Heartbeat, beat.Union()));
    replica_socket->send(hello);
    ASSERT_TRUE(pump([&] { return forwarder.received > 0; }));
    Replica replica;
    replica.address = "r1";
    replica.model = model;
    replica.last_seen = Clock::now();
    replica.controller = std::make_unique<AimdController>(AimdOptions{}, 4, 8);
    replicas.add(std::move(replica));
  }

  template <typename Done>
  bool pump(Done done) {
    const auto give_up = Clock::now() + seconds(5);
    while (!done() && Clock::now() < give_up) {
      if (transport.wait(-1, 20).failed) return false;
      transport.receive(forwarder);
    }
    return done();
  }

  void queue_task(uint64_t query, Clock::time_point deadline) {
    Task task;
    task.query_key = query;
    task.deadline = deadline;
    task.enqueued = Clock::now();
    const double values[2] = {1.0, 2.0};
    task.payload.assign(reinterpret_cast<const char*>(values), sizeof(values));
    task.element_count = 2;
    model->queue.push(std::move(task));
  }

  metrics::MetricsRegistry metrics;
  ModelRegistry models{metrics};
  ModelVersion* model = models.find_or_create("m", "1", InputType::Doubles);
  EngineOptions options;
  PredictionCache cache{0};
  ZmqTransport transport;
  ReplicaMessages messages;
  ReplicaSet replicas{1, Prefetch};
  RecordingSink sink;
  CompletionOutbox outbox{cache};
  Dispatcher dispatcher{options, models, cache, replicas, transport, messages, outbox};
  ResponseForwarder forwarder{dispatcher};
  std::unique_ptr<FakeReplicaSocket> replica_socket;
  int port = 0;
};

using DispatcherTest = DispatcherFixture<false>;
using PrefetchingDispatcherTest = DispatcherFixture<true>;

TEST_F(DispatcherTest, SendsABatchAndCompletesItsQueriesInOrder) {
  queue_task(10, Clock::now() + seconds(5));
  queue_task(11, Clock::now() + seconds(5));
  std::vector<ReplicaAddress> unreachable;
  dispatcher.dispatch(Clock::now(), unreachable);
  EXPECT_TRUE(unreachable.empty());
  EXPECT_EQ(model->idle_replicas.load(), 0);
  const auto [batch_id, inputs] = replica_socket->receive_batch();
  ASSERT_NE(batch_id, 0u);
  EXPECT_EQ(inputs, 2u);
  replica_socket->answer(batch_id, {"a", "b"});
  ASSERT_TRUE(pump([&] { return forwarder.responses > 0; }));
  outbox.flush();
  ASSERT_EQ(sink.delivered.size(), 2u);
  EXPECT_EQ(sink.delivered[0].query_key, 10u);
  EXPECT_EQ(sink.delivered[0].text, "a");
  EXPECT_EQ(sink.delivered[1].query_key, 11u);
  EXPECT_EQ(sink.delivered[1].text, "b");
  EXPECT_EQ(model->idle_replicas.load(), 1);
  EXPECT_TRUE(model->latency.has_samples());
}

TEST_F(DispatcherTest, AWrongNumberOfOutputsIsAModelError) {
  queue_task(20, Clock::now() + seconds(5));
  std::vector<ReplicaAddress> unreachable;
  dispatcher.dispatch(Clock::now(), unreachable);
  const auto [batch_id, inputs] = replica_socket->receive_batch();
  ASSERT_EQ(inputs, 1u);
  replica_socket->answer(batch_id, {"a", "b"});
  ASSERT_TRUE(pump([&] { return forwarder.responses > 0; }));
  outbox.flush();
  ASSERT_EQ(sink.delivered.size(), 1u);
  EXPECT_EQ(sink.delivered[0].kind, CompletionKind::ModelError);
  EXPECT_NE(sink.delivered[0].text.find("2 outputs for a batch of 1"), std::string::npos);
}

TEST_F(DispatcherTest, ADroppedReplicasBatchGoesBackToTheQueue) {
  queue_task(30, Clock::now() + seconds(5));
  std::vector<ReplicaAddress> unreachable;
  dispatcher.dispatch(Clock::now(), unreachable);
  ASSERT_NE(replica_socket->receive_batch().first, 0u);
  EXPECT_EQ(model->queue.ready(), 0u);
  const Replica dropped = replicas.remove("r1");
  dispatcher.requeue_batches(dropped);
  EXPECT_EQ(model->queue.ready(), 1u);
}

TEST_F(DispatcherTest, ExpiredTasksAreNotSent) {
  queue_task(40, Clock::now() - milliseconds(1));
  std::vector<ReplicaAddress> unreachable;
  dispatcher.dispatch(Clock::now(), unreachable);
  EXPECT_EQ(model->idle_replicas.load(), 1);  // nothing was sent
  EXPECT_EQ(model->metrics->expired_tasks.value(), 1u);
  EXPECT_EQ(model->queue.ready(), 0u);
}

TEST_F(DispatcherTest, AnUnknownPeerIsReportedUnreachableAndItsTasksKept) {
  Replica ghost;
  ghost.address = "ghost";
  ghost.model = model;
  ghost.last_seen = Clock::now();
  ghost.controller = std::make_unique<AimdController>(AimdOptions{}, 4, 8);
  replicas.remove("r1");
  replicas.add(std::move(ghost));
  queue_task(50, Clock::now() + seconds(5));
  std::vector<ReplicaAddress> unreachable;
  dispatcher.dispatch(Clock::now(), unreachable);
  EXPECT_EQ(unreachable, std::vector<ReplicaAddress>{"ghost"});
  EXPECT_EQ(model->queue.ready(), 1u);
}

TEST_F(DispatcherTest, WithoutPrefetchingAReplicaHoldsOneBatchFullOrNot) {
  for (uint64_t query = 0; query < 8; ++query) queue_task(query, Clock::now() + seconds(5));
  std::vector<ReplicaAddress> unreachable;
  dispatcher.dispatch(Clock::now(), unreachable);
  dispatcher.dispatch(Clock::now(), unreachable);
  EXPECT_EQ(model->queue.ready(), 4u);  // a full batch of 4 waits for the answer
  EXPECT_EQ(replicas.find("r1")->inflight.size(), 1u);
  EXPECT_EQ(model->metrics->prefetched_batches.value(), 0u);
}

TEST_F(PrefetchingDispatcherTest, AFullBatchWaitsInTheReplicaBehindTheOneItHolds) {
  model->batch_size_limit.store(4);  // AIMD would grow the size after the first answer
  for (uint64_t query = 0; query < 12; ++query) queue_task(query, Clock::now() + seconds(5));
  std::vector<ReplicaAddress> unreachable;
  dispatcher.dispatch(Clock::now(), unreachable);
  EXPECT_TRUE(unreachable.empty());
  // Its batch and a full one behind it, in one pass; no third (that is the depth plus one).
  EXPECT_EQ(replicas.find("r1")->inflight.size(), 2u);
  EXPECT_EQ(model->queue.ready(), 4u);
  EXPECT_EQ(model->idle_replicas.load(), 0);
  EXPECT_EQ(model->metrics->prefetched_batches.value(), 1u);
  const auto first = replica_socket->receive_batch();
  const auto second = replica_socket->receive_batch();
  ASSERT_EQ(first.second, 4u);
  ASSERT_EQ(second.second, 4u);
  // The first answer leaves the replica at its depth (the second batch): only a full batch goes.
  replica_socket->answer(first.first, {"0", "1", "2", "3"});
  ASSERT_TRUE(pump([&] { return forwarder.responses == 1; }));
  dispatcher.dispatch(Clock::now(), unreachable);
  EXPECT_EQ(model->metrics->prefetched_batches.value(), 2u);
  const auto third = replica_socket->receive_batch();
  ASSERT_EQ(third.second, 4u);
  replica_socket->answer(second.first, {"4", "5", "6", "7"});
  replica_socket->answer(third.first, {"8", "9", "10", "11"});
  ASSERT_TRUE(pump([&] { return forwarder.responses == 3; }));
  outbox.flush();
  ASSERT_EQ(sink.delivered.size(), 12u);
  for (uint64_t query = 0; query < 12; ++query) {
    EXPECT_EQ(sink.delivered[query].query_key, query);
    EXPECT_EQ(sink.delivered[query].text, std::to_string(query));
  }
  EXPECT_EQ(model->idle_replicas.load(), 1);
  EXPECT_TRUE(replicas.find("r1")->inflight.empty());
}

TEST_F(PrefetchingDispatcherTest, APartialBatchWaitsForTheReplicasAnswer) {
  model->batch_size_limit.store(4);
  for (uint64_t query = 0; query < 6; ++query) queue_task(query, Clock::now() + seconds(5));
  std::vector<ReplicaAddress> unreachable;
  dispatcher.dispatch(Clock::now(), unreachable);
  dispatcher.dispatch(Clock::now(), unreachable);
  EXPECT_EQ(replicas.find("r1")->inflight.size(), 1u);
  EXPECT_EQ(model->queue.ready(), 2u);  // 2 of 4: not full, not sent behind the first
  EXPECT_EQ(model->metrics->prefetched_batches.value(), 0u);
  const auto first = replica_socket->receive_batch();
  replica_socket->answer(first.first, {"0", "1", "2", "3"});
  ASSERT_TRUE(pump([&] { return forwarder.responses == 1; }));
  dispatcher.dispatch(Clock::now(), unreachable);  // the replica is free: the partial batch goes
  EXPECT_EQ(replica_socket->receive_batch().second, 2u);
  EXPECT_EQ(model->queue.ready(), 0u);
}

TEST_F(PrefetchingDispatcherTest, AFullBatchThatWouldMissItsDeadlineBehindAnotherIsNotPrefetched) {
  // Batches of 4 take 40 ms; the tasks have 60 ms: the first batch makes it, one behind it would not.
  for (int i = 0; i < 8; ++i) model->latency.observe(4, 40000);
  for (uint64_t query = 0; query < 8; ++query) queue_task(query, Clock::now() + milliseconds(60));
  std::vector<ReplicaAddress> unreachable;
  dispatcher.dispatch(Clock::now(), unreachable);
  EXPECT_EQ(replicas.find("r1")->inflight.size(), 1u);
  EXPECT_EQ(model->queue.ready(), 4u);
  EXPECT_EQ(model->metrics->prefetched_batches.value(), 0u);
}

TEST_F(PrefetchingDispatcherTest, AdmissionChargesABusyReplicaEveryBatchItHolds) {
  // The prefetched batch waits in the replica, out of the queue's count: a query arriving now waits
  // for both batches before the queue moves.
  for (int i = 0; i < 8; ++i) model->latency.observe(4, 10000);
  dispatcher.publish_admission(*model);
  for (uint64_t query = 0; query < 8; ++query) queue_task(query, Clock::now() + seconds(5));
  std::vector<ReplicaAddress> unreachable;
  dispatcher.dispatch(Clock::now(), unreachable);
  ASSERT_EQ(replicas.find("r1")->inflight.size(), 2u);
  const auto snapshot = model->admission.snapshot();
  ASSERT_TRUE(snapshot.has_value());
  EXPECT_DOUBLE_EQ(snapshot->busy_batch_micros, 2 * model->latency.estimate_micros(4));
}

TEST_F(PrefetchingDispatcherTest, ADroppedReplicasBatchesAllGoBackToTheQueue) {
  for (uint64_t query = 0; query < 8; ++query) queue_task(query, Clock::now() + seconds(5));
  std::vector<ReplicaAddress> unreachable;
  dispatcher.dispatch(Clock::now(), unreachable);
  ASSERT_EQ(replicas.find("r1")->inflight.size(), 2u);
  EXPECT_EQ(model->queue.ready(), 0u);
  const Replica dropped = replicas.remove("r1");
  dispatcher.requeue_batches(dropped);
  EXPECT_EQ(model->queue.ready(), 8u);
  EXPECT_EQ(model->idle_replicas.load(), 0);
}

}  // namespace
}  // namespace clipper
