#include "rpc/replica_messages.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "model_rpc_generated.h"

namespace clipper {
namespace {

// Records every decoded message, as the replica service would receive it.
class RecordingHandler final : public ReplicaMessageHandler {
 public:
  void on_sender_alive(const ReplicaAddress& from) override { alive.push_back(from); }
  void on_register(const ReplicaAddress&, const RegisterRequest& request, ConnectionId connection) override {
    registered_name = std::string(request.model_name);
    registered_version = std::string(request.model_version);
    registered_type = request.input_type_code;
    registered_replica = request.replica_id;
    registered_connection = connection;
  }
  void on_heartbeat(const ReplicaAddress&, std::string_view replica_key) override {
    heartbeat_key = std::string(replica_key);
  }
  void on_predict_response(const ReplicaAddress&, const PredictResponse& response) override {
    response_batch = response.batch_id();
    response_error = response.has_error() ? std::string(response.error()) : "";
    for (std::size_t i = 0; i < response.output_count(); ++i) outputs.emplace_back(response.output(i));
  }
  std::vector<ReplicaAddress> alive;
  std::string registered_name, registered_version, heartbeat_key, response_error;
  int registered_type = -1;
  int32_t registered_replica = 0;
  ConnectionId registered_connection = -1;
  uint64_t response_batch = 0;
  std::vector<std::string> outputs;
};

// flatbuffers reads in place and wants the buffer aligned, as the transport guarantees.
std::vector<std::max_align_t> aligned_copy(const flatbuffers::FlatBufferBuilder& builder) {
  std::vector<std::max_align_t> copy(builder.GetSize() / sizeof(std::max_align_t) + 1);
  std::memcpy(copy.data(), builder.GetBufferPointer(), builder.GetSize());
  return copy;
}

void decode(const flatbuffers::FlatBufferBuilder& builder, RecordingHandler& handler) {
  const auto copy = aligned_copy(builder);
  ReplicaMessages().decode("peer", reinterpret_cast<const uint8_t*>(copy.data()), builder.GetSize(), 9, handler);
}

TEST(ReplicaMessages, DecodesARegistration) {
  flatbuffers::FlatBufferBuilder builder;
  auto request = wire::CreateRegisterDirect(builder, "sum", "2", wire::InputType::Doubles, 4);
  builder.Finish(wire::CreateMessage(builder, wire::Payload::Register, request.Union()));
  RecordingHandler handler;
  decode(builder, handler);
  EXPECT_EQ(handler.alive, std::vector<ReplicaAddress>{"peer"});
  EXPECT_EQ(handler.registered_name, "sum");
  EXPECT_EQ(handler.registered_version, "2");
  EXPECT_EQ(handler.registered_type, static_cast<int>(InputType::Doubles));
  EXPECT_EQ(handler.registered_replica, 4);
  EXPECT_EQ(handler.registered_connection, 9);
}

TEST(ReplicaMessages, DecodesAHeartbeatAndAResponse) {
  flatbuffers::FlatBufferBuilder heartbeat;
  auto beat = wire::CreateHeartbeatDirect(heartbeat, "data-socket");
  heartbeat.Finish(wire::CreateMessage(heartbeat, wire::Payload::Heartbeat, beat.Union()));
  RecordingHandler handler;
  decode(heartbeat, handler);
  EXPECT_EQ(handler.heartbeat_key, "data-socket");

  flatbuffers::FlatBufferBuilder response;
  std::vector<flatbuffers::Offset<flatbuffers::String>> texts{response.CreateString("a"),
                                                              response.CreateString("bc")};
  auto answer = wire::CreatePredictResponseDirect(response, 77, &texts);
  response.Finish(wire::CreateMessage(response, wire::Payload::PredictResponse, answer.Union()));
  decode(response, handler);
  EXPECT_EQ(handler.response_batch, 77u);
  EXPECT_EQ(handler.response_error, "");
  EXPECT_EQ(handler.outputs, (std::vector<std::string>{"a", "bc"}));
}

TEST(ReplicaMessages, DropsWhatIsNotAMessage) {
  RecordingHandler handler;
  alignas(std::max_align_t) const uint8_t garbage[16] = {1, 2, 3, 4, 5, 6, 7, 8};
  ReplicaMessages().decode("peer", garbage, sizeof(garbage), 1, handler);
  EXPECT_TRUE(handler.alive.empty());
}

TEST(ReplicaMessages, EncodesAUniformNumericBatchAsOneTensor) {
  std::vector<Task> tasks(2);
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    const double values[2] = {1.0 + static_cast<double>(i), 2.0};
    tasks[i].payload.assign(reinterpret_cast<const char*>(values), sizeof(values));
    tasks[i].element_count = 2;
  }
  ReplicaMessages messages;
  const auto encoded = messages.encode_batch(5, InputType::Doubles, tasks);
  flatbuffers::Verifier verifier(encoded.data, encoded.size);
  ASSERT_TRUE(wire::VerifyMessageBuffer(verifier));
  const auto* request = wire::GetMessage(encoded.data)->payload_as_PredictRequest();
  ASSERT_NE(request, nullptr);
  EXPECT_EQ(request->batch_id(), 5u);
  EXPECT_EQ(request->num_inputs(), 2u);
  EXPECT_EQ(request->row_length(), 2u);
  EXPECT_EQ(request->offsets(), nullptr);
  EXPECT_EQ(request->data()->size(), 4 * sizeof(double));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(request->data()->data()) % 16, 0u);
}

TEST(ReplicaMessages, EncodesStringsWithOffsetsAndAHeartbeatAck) {
  std::vector<Task> tasks(2);
  tasks[0].payload = "ab";
  tasks[1].payload = "cde";
  ReplicaMessages messages;
  const auto encoded = messages.encode_batch(6, InputType::Strings, tasks);
  const auto* request = wire::GetMessage(encoded.data)->payload_as_PredictRequest();
  ASSERT_NE(request->offsets(), nullptr);
  EXPECT_EQ(request->row_length(), 0u);
  EXPECT_EQ(std::vector<uint64_t>(request->offsets()->begin(), request->offsets()->end()),
            (std::vector<uint64_t>{0, 2, 5}));

  const auto ack = messages.encode_heartbeat_ack(true);
  const auto* decoded = wire::GetMessage(ack.data)->payload_as_HeartbeatAck();
  ASSERT_NE(decoded, nullptr);
  EXPECT_TRUE(decoded->registered());
}

}  // namespace
}  // namespace clipper
