#include "rpc/replica_messages.h"

#include <gtest/gtest.h>

#include <cmath>
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
    for (std::size_t i = 0; i < response.output_count(); ++i) {
      outputs.emplace_back(response.output(i));
      confidences.push_back(response.confidence(i));
    }
  }
  std::vector<ReplicaAddress> alive;
  std::string registered_name, registered_version, heartbeat_key, response_error;
  int registered_type = -1;
  int32_t registered_replica = 0;
  ConnectionId registered_connection = -1;
  uint64_t response_batch = 0;
  std::vector<std::string> outputs;
  std::vector<ModelConfidence> confidences;
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

TEST(ReplicaMessages, ReadsTheConfidencesAModelReported) {
  auto decode_with = [](const std::vector<float>* confidences) {
    flatbuffers::FlatBufferBuilder response;
    std::vector<flatbuffers::Offset<flatbuffers::String>> texts{response.CreateString("a"),
                                                                response.CreateString("b")};
    auto answer = wire::CreatePredictResponseDirect(response, 5, &texts, nullptr, confidences);
    response.Finish(wire::CreateMessage(response, wire::Payload::PredictResponse, answer.Union()));
    RecordingHandler handler;
    decode(response, handler);
    return handler.confidences;
  };
  const std::vector<float> reported{0.25f, 1.5f};  // out of range: clamped
  EXPECT_EQ(decode_with(&reported), (std::vector<ModelConfidence>{0.25f, 1.0f}));
  EXPECT_EQ(decode_with(nullptr), (std::vector<ModelConfidence>{std::nullopt, std::nullopt}));
  const std::vector<float> too_few{0.5f};  // not one per output: none is trusted
  EXPECT_EQ(decode_with(&too_few), (std::vector<ModelConfidence>{std::nullopt, std::nullopt}));
  const std::vector<float> not_numbers{std::nanf(""), 0.5f};
  EXPECT_EQ(decode_with(&not_numbers), (std::vector<ModelConfidence>{std::nullopt, 0.5f}));
}

TEST(ReplicaMessages, DropsWhatIsNotAMessage) {
  RecordingHandler handler;
  alignas(std::max_align_t) const uint8_t garbage[16] = {1, 2, 3, 4, 5, 6, 7, 8};
  ReplicaMessages().decode("peer", garbage, sizeof(garbage), 1, handler);
  EXPECT_TRUE(handler.alive.empty());
}

TEST(ReplicaMessages, DropsAPayloadTypeWithoutItsTable) {
  // Verifies as a flatbuffer, but names a Register that is not there (cpp/fuzz found it: a null read).
  for (const auto type : {wire::Payload::Register, wire::Payload::Heartbeat, wire::Payload::PredictResponse}) {
    flatbuffers::FlatBufferBuilder builder;
    wire::MessageBuilder message(builder);
    message.add_payload_type(type);
    builder.Finish(message.Finish());
    RecordingHandler handler;
    decode(builder, handler);
    EXPECT_TRUE(handler.alive.empty());
    EXPECT_EQ(handler.registered_type, -1);
  }
}

TEST(ReplicaMessages, DropsARegistrationWithAnInputTypeOutsideTheSchema) {
  for (const int code : {-1, -128, 5, 127}) {
    flatbuffers::FlatBufferBuilder builder;
    auto request = wire::CreateRegisterDirect(builder, "m", "1", static_cast<wire::InputType>(code));
    builder.Finish(wire::CreateMessage(builder, wire::Payload::Register, request.Union()));
    RecordingHandler handler;
    decode(builder, handler);
    EXPECT_EQ(handler.registered_name, "") << code;
    EXPECT_EQ(handler.registered_type, -1) << code;
  }
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

TEST(ReplicaMessages, AFramedBatchLeavesExactlyTheInputsBytesToTheWriter) {
  for (const InputType type : {InputType::Doubles, InputType::Strings}) {
    std::vector<Task> tasks(3);
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      const double values[3] = {1.0 + static_cast<double>(i), 2.0, -3.5};
      tasks[i].payload.assign(reinterpret_cast<const char*>(values), sizeof(values) - (i == 1 ? 8 : 0));
      tasks[i].element_count = i == 1 ? 2 : 3;
    }
    ReplicaMessages reference_encoder;
    const auto reference = reference_encoder.encode_batch(7, type, tasks);
    ReplicaMessages messages;
    const FramedMessage framed = messages.frame_batch(7, type, tasks);
    EXPECT_EQ(framed.size, reference.size);
    EXPECT_EQ(framed.payload_size, 3 * 24u - 8u);
    EXPECT_EQ(framed.payload_offset % 16, 0u);
    std::memset(framed.frame + framed.payload_offset, 0, framed.payload_size);
    EXPECT_NE(std::memcmp(framed.frame, reference.data, reference.size), 0);
    ReplicaMessages::write_inputs(tasks, framed.frame + framed.payload_offset);
    EXPECT_EQ(std::memcmp(framed.frame, reference.data, reference.size), 0) << "the hole is the inputs' bytes";
  }
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

std::vector<std::string> logged_lines;
void capture_line(const std::string& line) { logged_lines.push_back(line); }

TEST(ModelErrorLog, ClientsGetAnIdAndTheLogGetsTheEscapedText) {
  logged_lines.clear();
  ModelErrorLog log(10, &capture_line);
  const Clock::time_point now = Clock::now();
  const std::string secret = "open('/srv/keys/prod.pem') failed\n\"forged\" event=x";
  const std::string answer = log.report("sum:1", 3, 42, secret, now);
  EXPECT_EQ(answer, "the model raised an error; its message is in the frontend's log as error_id=1");
  EXPECT_EQ(answer.find("prod.pem"), std::string::npos);
  ASSERT_EQ(logged_lines.size(), 1u);
  EXPECT_EQ(logged_lines[0],
            "event=model_error error_id=1 model=sum:1 replica=3 batch=42 "
            "text=\"open('/srv/keys/prod.pem') failed\\n\\\"forged\\\" event=x\"");
  EXPECT_EQ(log.report("sum:1", 3, 43, std::string("\x01\x7f", 2), now).back(), '2');
  EXPECT_EQ(logged_lines[1].substr(logged_lines[1].find("text=")), "text=\"\\x01\\x7f\"");
}

TEST(ModelErrorLog, LongTextIsCappedInTheLog) {
  logged_lines.clear();
  ModelErrorLog log(10, &capture_line);
  log.report("m:1", 0, 1, std::string(100000, 'a'), Clock::now());
  ASSERT_EQ(logged_lines.size(), 1u);
  EXPECT_LT(logged_lines[0].size(), ModelErrorLog::kMaxLoggedBytes + 200);
  EXPECT_NE(logged_lines[0].find(" text_truncated_from_bytes=100000"), std::string::npos);
}

TEST(ModelErrorLog, LinesAreRateLimitedAndTheNextLineNamesTheIdsLeftOut) {
  logged_lines.clear();
  ModelErrorLog log(3, &capture_line);
  const Clock::time_point start = Clock::now();
  for (int i = 0; i < 10; ++i) log.report("m:1", 0, static_cast<uint64_t>(i), "boom", start);
  EXPECT_EQ(logged_lines.size(), 3u);  // ids 1-3 logged, 4-10 left out
  EXPECT_EQ(log.left_out(), 7u);
  const std::string answer = log.report("m:1", 0, 11, "boom", start + std::chrono::milliseconds(1001));
  EXPECT_NE(answer.find("error_id=11"), std::string::npos);
  ASSERT_EQ(logged_lines.size(), 4u);
  EXPECT_NE(logged_lines[3].find("error_id=11 "), std::string::npos);
  EXPECT_NE(logged_lines[3].find(" left_out=7 left_out_ids=4-10"), std::string::npos);
  log.report("m:1", 0, 12, "boom", start + std::chrono::milliseconds(1002));
  EXPECT_EQ(logged_lines[4].find("left_out"), std::string::npos);  // said once
  EXPECT_EQ(log.reported(), 12u);
}

}  // namespace
}  // namespace clipper
