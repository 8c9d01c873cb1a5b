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

#include "common/clock.h"
#include "common/input_type.h"
#include "common/task.h"
#include "rpc/replica_transport.h"

namespace clipper {

struct RegisterRequest {
  std::string_view model_name;     // empty when missing
  std::string_view model_version;  // empty when missing
  int input_type_code = 0;         // the wire value, one of the schema's (0..4); the service checks it
                                   // against the model's
  int32_t replica_id = -1;         // -1: the frontend picks one
  bool shared_memory = false;      // the replica can serve over shared-memory rings
};

// One answered batch; views into the received message, valid during the handler call only.
class PredictResponse {
 public:
  PredictResponse(uint64_t batch_id, const void* outputs, std::string_view error, bool has_error,
                  const void* confidences = nullptr)
      : batch_id_(batch_id), outputs_(outputs), error_(error), has_error_(has_error), confidences_(confidences) {}
  uint64_t batch_id() const { return batch_id_; }
  bool has_error() const { return has_error_; }  // the model raised: `error()` says what
  // The model's own text: it may hold paths, data or secrets, so it goes to ModelErrorLog, never to
  // a client.
  std::string_view error() const { return error_; }
  std::size_t output_count() const;
  std::string_view output(std::size_t index) const;
  // The confidence the model reported with output `index`, in [0, 1] (out-of-range values are
  // clamped); empty when it reported none, or not one per output, or not a number.
  ModelConfidence confidence(std::size_t index) const;
  bool reports_confidences() const;  // one confidence per output came with the answer

 private:
  uint64_t batch_id_;
  const void* outputs_;  // the flatbuffers vector of strings, or null
  std::string_view error_;
  bool has_error_;
  const void* confidences_;  // the flatbuffers vector of floats, or null
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
  // The same message with the inputs' bytes left out (see FramedMessage), valid until the next encode
  // call; write_inputs() writes them where the transport wants them. Together they give exactly
  // encode_batch()'s bytes.
  FramedMessage frame_batch(uint64_t batch_id, InputType type, const std::vector<Task>& tasks);
  static void write_inputs(const std::vector<Task>& tasks, uint8_t* at);
  Encoded encode_heartbeat_ack(bool registered);
  Encoded encode_shared_memory_offer(std::string_view socket_path, std::string_view token);

 private:
  flatbuffers::FlatBufferBuilder builder_{4096};
};

void log_replica_event(const std::string& text);  // one structured line on stderr

// What happens to the text of an exception a model raised: it is logged (one line, escaped, capped,
// rate-limited) under an error id, and clients get only a fixed sentence naming that id, which the
// operator finds in the frontend's log. Errors past the rate limit keep their ids; the next line
// logged says how many were left out and which ids they had.
// Thread: one instance per replica-side thread.
class ModelErrorLog {
 public:
  static constexpr int kDefaultLinesPerSecond = 10;
  static constexpr std::size_t kMaxLoggedBytes = 1024;

  explicit ModelErrorLog(int lines_per_second = kDefaultLinesPerSecond,
                         void (*sink)(const std::string&) = &log_replica_event)
      : lines_per_second_(lines_per_second), sink_(sink) {}

  // Records one failed batch and returns the text its queries' clients see.
  std::string report(const std::string& model_label, int32_t replica_id, uint64_t batch_id,
                     std::string_view error, Clock::time_point now);

  uint64_t reported() const { return next_id_ - 1; }
  uint64_t left_out() const { return left_out_total_; }

 private:
  int lines_per_second_;
  void (*sink_)(const std::string&);
  uint64_t next_id_ = 1;
  Clock::time_point window_start_{};
  int lines_in_window_ = 0;
  uint64_t left_out_since_line_ = 0;  // ids left_out_first_.. left_out_first_ + this - 1
  uint64_t left_out_first_ = 0;
  uint64_t left_out_total_ = 0;
};

}  // namespace clipper
