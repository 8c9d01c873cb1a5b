// The ZeroMQ transport to model replicas: one ROUTER socket that replicas' DEALER sockets connect to
// over TCP, plus a monitor socket that reports closed TCP connections at once (a replica process that
// dies closes its connection; its batch is re-queued now instead of after the heartbeat timeout).
// With CURVE keys, replicas must complete a CURVE handshake with a client key on the allow-list
// (checked by a ZapAuthenticator in the same context) before any of their messages is delivered.
// Thread: the replica side's thread only (ZeroMQ sockets are not thread-safe).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rpc/replica_transport.h"
#include "rpc/zap_authenticator.h"

namespace clipper {

// Who may connect to the RPC port. An empty server key means no authentication (ZeroMQ's NULL
// mechanism: any process that reaches the port may register).
struct ZmqCurveKeys {
  std::string server_secret_key;                // Z85, 40 characters
  std::vector<std::string> client_public_keys;  // Z85 each: the replicas admitted
};

class ZmqTransport final : public ReplicaTransport {
 public:
  // Throws std::invalid_argument for malformed keys and std::runtime_error when this libzmq lacks
  // CURVE.
  explicit ZmqTransport(const ZmqCurveKeys& keys = {});
  ~ZmqTransport() override;
  ZmqTransport(const ZmqTransport&) = delete;
  ZmqTransport& operator=(const ZmqTransport&) = delete;

  int bind(const std::string& address, int port) override;
  bool send(const ReplicaAddress& to, const uint8_t* data, std::size_t size) override;
  void receive(TransportReceiver& receiver) override;
  void receive_closes(TransportReceiver& receiver) override;
  bool messages_waiting() const override;
  bool closes_waiting() const override;
  TransportWait wait(int wake_fd, long timeout_millis) override;
  std::vector<int> loop_descriptors() const override;
  void descriptor_fired(int fd) override;

 private:
  static bool readable(void* socket);
  // A CURVE handshake that failed before authentication (a replica without keys, or garbage):
  // logged at most once a second, with the count since.
  void note_failed_handshake(uint32_t protocol_error);

  void* context_ = nullptr;
  std::unique_ptr<ZapAuthenticator> authenticator_;  // with CURVE only
  void* router_ = nullptr;
  void* monitor_ = nullptr;  // PAIR receiving the ROUTER's disconnect events
  // Nothing was waiting on the socket at the last look, and neither its descriptor has fired nor (for
  // the ROUTER) has a send run since: looking again would find nothing, at the price of ZeroMQ's
  // poll() and getpid() system calls (ZMQ_EVENTS processes the socket's commands each time).
  // ZeroMQ signals its descriptor whenever the socket's state may change, except after a send.
  mutable bool router_idle_ = false;
  mutable bool monitor_idle_ = false;
  int router_fd_ = -1;   // ZMQ_FD of each
  int monitor_fd_ = -1;
  std::vector<std::max_align_t> aligned_scratch_;  // aligned copies of misaligned inbound messages
  std::chrono::steady_clock::time_point next_handshake_log_{};
  uint64_t unlogged_handshakes_ = 0;
};

}  // namespace clipper
