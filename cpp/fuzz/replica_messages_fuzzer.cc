// libFuzzer target: the RPC message reader (rpc/replica_messages.*), which takes every message a
// replica sends to the frontend (Register, Heartbeat, PredictResponse) through flatbuffers' Verifier
// before reading it. Each input is one received message. Beyond the sanitizers it checks that:
// - only a verified message reaches the handler, each announced alive first, and only the payloads a
//   replica may send (a HeartbeatAck or PredictRequest from a replica is dropped);
// - every view handed over (names, key, outputs, error) lies inside the received buffer;
// - a registration carries an input type the frontend knows;
// - each output, and the error text, rendered into a client's answer the way the query processor
//   renders them (query/query_codec.h), is valid JSON.
// Seeds: cpp/fuzz/corpus/replica_messages/ (real messages from the container SDK's encoders, made by
// cpp/fuzz/make_seeds.py).

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "query/query_codec.h"
#include "rpc/replica_messages.h"

namespace {

using namespace clipper;
using clipper::fuzz::is_strict_json;

class CheckingHandler final : public ReplicaMessageHandler {
 public:
  CheckingHandler(const uint8_t* data, std::size_t size) : begin_(data), end_(data + size) {}

  void on_sender_alive(const ReplicaAddress& from) override {
    FUZZ_CHECK(from == "replica-7");
    ++alive_;
  }
  void on_register(const ReplicaAddress&, const RegisterRequest& request, ConnectionId connection) override {
    FUZZ_CHECK(alive_ == 1 && ++handled_ == 1);
    FUZZ_CHECK(connection == 3);
    check_inside(request.model_name);
    check_inside(request.model_version);
    FUZZ_CHECK(request.input_type_code >= 0 && request.input_type_code <= static_cast<int>(InputType::Strings));
  }
  void on_heartbeat(const ReplicaAddress&, std::string_view replica_key) override {
    FUZZ_CHECK(alive_ == 1 && ++handled_ == 1);
    check_inside(replica_key);
  }
  void on_predict_response(const ReplicaAddress&, const PredictResponse& response) override {
    FUZZ_CHECK(alive_ == 1 && ++handled_ == 1);
    std::string answer;
    for (std::size_t i = 0; i < response.output_count(); ++i) {
      const std::string_view output = response.output(i);
      check_inside(output);
      answer.clear();
      render_prediction(answer, response.batch_id(), output, false, {});
      FUZZ_CHECK(is_strict_json(answer));
    }
    if (response.has_error()) {
      check_inside(response.error());
      answer.clear();
      render_prediction(answer, response.batch_id(), "0", true, response.error());
      FUZZ_CHECK(is_strict_json(answer));
    }
  }
  int alive() const { return alive_; }

 private:
  void check_inside(std::string_view view) const {
    if (view.empty()) return;
    const auto* first = reinterpret_cast<const uint8_t*>(view.data());
    FUZZ_CHECK(first >= begin_ && first + view.size() <= end_);
  }

  const uint8_t* begin_;
  const uint8_t* end_;
  int alive_ = 0;
  int handled_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  // The transport hands over buffers aligned for flatbuffers (zmq_transport copies unaligned ones).
  std::vector<std::max_align_t> aligned(size / sizeof(std::max_align_t) + 1);
  if (size > 0) std::memcpy(aligned.data(), data, size);
  const auto* message = reinterpret_cast<const uint8_t*>(aligned.data());
  CheckingHandler handler(message, size);
  ReplicaMessages().decode("replica-7", message, size, 3, handler);
  FUZZ_CHECK(handler.alive() <= 1);
  return 0;
}
