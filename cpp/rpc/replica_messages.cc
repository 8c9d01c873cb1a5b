#include "rpc/replica_messages.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "model_rpc_generated.h"

namespace clipper {
namespace {

using OutputVector = flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>;
using ConfidenceVector = flatbuffers::Vector<float>;

wire::InputType to_wire(InputType type) { return static_cast<wire::InputType>(type); }

std::string_view view_of(const flatbuffers::String* text) {
  return text == nullptr ? std::string_view() : std::string_view(text->data(), text->size());
}

}  // namespace

void log_replica_event(const std::string& text) { std::fprintf(stderr, "clipper-engine %s\n", text.c_str()); }

namespace {

// The model's text as one quoted log field: quotes, backslashes and control bytes escaped (a newline
// in it cannot forge a log line), at most `limit` bytes of it kept.
std::string quoted_for_log(std::string_view text, std::size_t limit) {
  std::string out = "\"";
  const std::size_t kept = std::min(text.size(), limit);
  for (std::size_t i = 0; i < kept; ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte == '"' || byte == '\\') {
      out += '\\';
      out += static_cast<char>(byte);
    } else if (byte == '\n') {
      out += "\\n";
    } else if (byte < 0x20 || byte == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", byte);
      out += escaped;
    } else {
      out += static_cast<char>(byte);
    }
  }
  out += '"';
  if (kept < text.size()) out += " text_truncated_from_bytes=" + std::to_string(text.size());
  return out;
}

}  // namespace

std::string ModelErrorLog::report(const std::string& model_label, int32_t replica_id, uint64_t batch_id,
                                  std::string_view error, Clock::time_point now) {
  const uint64_t id = next_id_++;
  if (now - window_start_ >= std::chrono::seconds(1)) {
    window_start_ = now;
    lines_in_window_ = 0;
  }
  if (lines_in_window_ < lines_per_second_) {
    ++lines_in_window_;
    std::string line = "event=model_error error_id=" + std::to_string(id) + " model=" + model_label +
                       " replica=" + std::to_string(replica_id) + " batch=" + std::to_string(batch_id) +
                       " text=" + quoted_for_log(error, kMaxLoggedBytes);
    if (left_out_since_line_ > 0) {
      line += " left_out=" + std::to_string(left_out_since_line_) + " left_out_ids=" +
              std::to_string(left_out_first_) + "-" + std::to_string(left_out_first_ + left_out_since_line_ - 1);
      left_out_since_line_ = 0;
    }
    sink_(line);
  } else {
    if (left_out_since_line_++ == 0) left_out_first_ = id;
    ++left_out_total_;
  }
  return "the model raised an error; its message is in the frontend's log as error_id=" + std::to_string(id);
}

std::size_t PredictResponse::output_count() const {
  return outputs_ == nullptr ? 0 : static_cast<const OutputVector*>(outputs_)->size();
}

std::string_view PredictResponse::output(std::size_t index) const {
  const auto* text = static_cast<const OutputVector*>(outputs_)->Get(static_cast<flatbuffers::uoffset_t>(index));
  return std::string_view(text->data(), text->size());
}

bool PredictResponse::reports_confidences() const {
  return confidences_ != nullptr && output_count() > 0 &&
         static_cast<const ConfidenceVector*>(confidences_)->size() == output_count();
}

ModelConfidence PredictResponse::confidence(std::size_t index) const {
  if (!reports_confidences() || index >= output_count()) return std::nullopt;
  const auto* confidences = static_cast<const ConfidenceVector*>(confidences_);
  const float value = confidences->Get(static_cast<flatbuffers::uoffset_t>(index));
  if (std::isnan(value)) return std::nullopt;
  return std::clamp(value, 0.0f, 1.0f);
}

void ReplicaMessages::decode(const ReplicaAddress& from, const uint8_t* data, std::size_t size,
                             ConnectionId connection, ReplicaMessageHandler& handler) const {
  flatbuffers::Verifier verifier(data, size);
  if (!wire::VerifyMessageBuffer(verifier)) {
    log_replica_event("event=rpc_message_rejected reason=invalid_flatbuffer bytes=" + std::to_string(size));
    return;
  }
  const wire::Message* message = wire::GetMessage(data);
  // The Verifier accepts a union whose type is set and whose table is absent: reading it would follow
  // a null pointer (found by cpp/fuzz/replica_messages_fuzzer).
  if (message->payload() == nullptr) {
    log_replica_event("event=rpc_message_rejected reason=missing_payload bytes=" + std::to_string(size));
    return;
  }
  handler.on_sender_alive(from);
  switch (message->payload_type()) {
    case wire::Payload::Register: {
      const auto* request = message->payload_as_Register();
      // The wire enum is a signed byte: a code below 0 must not pass for a type (it would become 255).
      if (request->input_type() < wire::InputType::MIN || request->input_type() > wire::InputType::MAX) {
        log_replica_event("event=rpc_message_rejected reason=unknown_input_type code=" +
                          std::to_string(static_cast<int>(request->input_type())));
        break;
      }
      RegisterRequest decoded;
      decoded.model_name = view_of(request->model_name());
      decoded.model_version = view_of(request->model_version());
      decoded.input_type_code = static_cast<int>(request->input_type());
      decoded.replica_id = request->replica_id();
      decoded.shared_memory = request->shared_memory();
      handler.on_register(from, decoded, connection);
      break;
    }
    case wire::Payload::Heartbeat:
      handler.on_heartbeat(from, view_of(message->payload_as_Heartbeat()->replica_key()));
      break;
    case wire::Payload::PredictResponse: {
      const auto* response = message->payload_as_PredictResponse();
      const bool has_error = response->error() != nullptr && response->error()->size() > 0;
      handler.on_predict_response(from, PredictResponse(response->batch_id(), response->outputs(),
                                                        view_of(response->error()), has_error,
                                                        response->confidences()));
      break;
    }
    default:
      log_replica_event("event=rpc_message_rejected reason=unexpected_payload");
      break;
  }
}

ReplicaMessages::Encoded ReplicaMessages::encode_batch(uint64_t batch_id, InputType type,
                                                       const std::vector<Task>& tasks) {
  const FramedMessage framed = frame_batch(batch_id, type, tasks);
  write_inputs(tasks, framed.frame + framed.payload_offset);
  return Encoded{framed.frame, framed.size};
}

FramedMessage ReplicaMessages::frame_batch(uint64_t batch_id, InputType type, const std::vector<Task>& tasks) {
  const std::size_t count = tasks.size();
  bool uniform = is_numeric(type);
  for (std::size_t i = 1; uniform && i < count; ++i) uniform = tasks[i].element_count == tasks[0].element_count;
  std::size_t total_bytes = 0;
  for (const auto& task : tasks) total_bytes += task.payload.size();

  builder_.Clear();
  flatbuffers::Offset<flatbuffers::Vector<uint64_t>> offsets;
  if (!uniform) {
    uint64_t* offset_data = nullptr;
    offsets = builder_.CreateUninitializedVector<uint64_t>(count + 1, &offset_data);
    uint64_t position = 0;
    for (std::size_t i = 0; i < count; ++i) {
      offset_data[i] = position;
      position += tasks[i].payload.size();
    }
    offset_data[count] = position;
  }
  // The tensor's room, left unwritten. The builder grows downwards, so its distance from the end of
  // the buffer stays the same whatever is added in front of it.
  uint8_t* data = nullptr;
  const auto data_offset = builder_.CreateUninitializedVector(total_bytes, 1, 16, &data);
  const std::size_t data_from_end =
      static_cast<std::size_t>(builder_.GetCurrentBufferPointer() + builder_.GetSize() - data);
  wire::PredictRequestBuilder request(builder_);
  request.add_batch_id(batch_id);
  request.add_input_type(to_wire(type));
  request.add_num_inputs(static_cast<uint32_t>(count));
  request.add_row_length(uniform ? tasks[0].element_count : 0);
  if (!uniform) request.add_offsets(offsets);
  request.add_data(flatbuffers::Offset<flatbuffers::Vector<uint8_t>>(data_offset));
  const auto request_offset = request.Finish();
  builder_.Finish(wire::CreateMessage(builder_, wire::Payload::PredictRequest, request_offset.Union()));
  const std::size_t size = builder_.GetSize();
  return FramedMessage{builder_.GetBufferPointer(), size, size - data_from_end, total_bytes};
}

void ReplicaMessages::write_inputs(const std::vector<Task>& tasks, uint8_t* at) {
  for (const auto& task : tasks) {
    if (!task.payload.empty()) std::memcpy(at, task.payload.data(), task.payload.size());
    at += task.payload.size();
  }
}

ReplicaMessages::Encoded ReplicaMessages::encode_heartbeat_ack(bool registered) {
  builder_.Clear();
  auto ack = wire::CreateHeartbeatAck(builder_, registered);
  builder_.Finish(wire::CreateMessage(builder_, wire::Payload::HeartbeatAck, ack.Union()));
  return Encoded{builder_.GetBufferPointer(), builder_.GetSize()};
}

ReplicaMessages::Encoded ReplicaMessages::encode_shared_memory_offer(std::string_view socket_path,
                                                                     std::string_view token) {
  builder_.Clear();
  const auto path = builder_.CreateString(socket_path.data(), socket_path.size());
  const auto secret = builder_.CreateString(token.data(), token.size());
  auto offer = wire::CreateSharedMemoryOffer(builder_, path, secret);
  builder_.Finish(wire::CreateMessage(builder_, wire::Payload::SharedMemoryOffer, offer.Union()));
  return Encoded{builder_.GetBufferPointer(), builder_.GetSize()};
}

}  // namespace clipper
