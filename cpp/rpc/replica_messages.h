// The model RPC's messages (flatbuffers, schema in rpc/model_rpc.fbs): decodes what replicas send
// (Register, Heartbeat, PredictResponse) into calls on a handler, and encodes what the frontend sends
// (PredictRequest, HeartbeatAck). Knows nothing of transports, replicas' health or batching.
// Thread: one instance per replica-side thread (the encoder reuses one builder).
#pragma once

#include <flatbuffers/flatbuffers.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/input_type.h"
#include "common/task.h"
#include "rpc/replica_transport.h"

namespace clipper {

struct RegisterRequest {
  std::string_view model_name;     // empty when missing
  std::string_view model_version;  // empty when missing
  int input_type_code = 0;         // the wire value; not yet checked against InputType
  int32_t replica_id = -1;         // -1: the frontend picks one
};

// One answered batch; views into the received message, valid during the handler call only.
class PredictResponse {
 public:
  PredictResponse(uint64_t batch_id, const void* outputs, std::string_view error, bool has_error)
      : batch_id_(batch_id), outputs_(outputs), error_(error), has_error_(has_error) {}
  uint64_t batch_id() const { return batch_id_; }
  bool has_error() const { return has_error_; }  // the model raised: `error()` says what
  std::string_view error() const { return error_; }
  std::size_t output_count() const;
  std::string_view output(std::size_t index) const;

 private:
  uint64_t batch_id_;
  const void* outputs_;  // the flatbuffers vector of strings, or null
  std::string_view error_;
  bool has_error_;
};

class ReplicaMessageHandler {
 public:
  virtual ~ReplicaMessageHandler() = default;
  // Any valid message: its sender is alive. Called before the message's own handler.
  virtual void on_sender_alive(const ReplicaAddress& from) = 0;
  virtual void on_register(const ReplicaAddress& from, const RegisterRequest& request,
                           ConnectionId connection) = 0;
  // `replica_key` (empty when missing) is the routing id of the replica's data connection.
  virtual void on_heartbeat(const ReplicaAddress& from, std::string_view replica_key) = 0;
  virtual void on_predict_response(const ReplicaAddress& from, const PredictResponse& response) = 0;
};

class ReplicaMessages {
 public:
  // Verifies and decodes one message; an invalid or unexpected one is logged and dropped.
  void decode(const ReplicaAddress& from, const uint8_t* data, std::size_t size, ConnectionId connection,
              ReplicaMessageHandler& handler) const;

  // The encoders return a view of the encoded message, valid until the next encode call.
  struct Encoded {
    const uint8_t* data;
    std::size_t size;
  };
  // One batch: a uniform numeric batch as one row-major tensor, anything else with offsets.
  Encoded encode_batch(uint64_t batch_id, InputType type, const std::vector<Task>& tasks);
  Encoded encode_heartbeat_ack(bool registered);

 private:
  flatbuffers::FlatBufferBuilder builder_{4096};
};

void log_replica_event(const std::string& text);  // one structured line on stderr

}  // namespace clipper
