// The ZeroMQ transport to model replicas: one ROUTER socket that replicas' DEALER sockets connect to
// over TCP, plus a monitor socket that reports closed TCP connections at once (a replica process that
// dies closes its connection; its batch is re-queued now instead of after the heartbeat timeout).
// Thread: the replica side's thread only (ZeroMQ sockets are not thread-safe).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rpc/replica_transport.h"

namespace clipper {

class ZmqTransport final : public ReplicaTransport {
 public:
  ZmqTransport();
  ~ZmqTransport() override;
  ZmqTransport(const ZmqTransport&) = delete;
  ZmqTransport& operator=(const ZmqTransport&) = delete;

  int bind(const std::string& address, int port) override;
  bool send(const ReplicaAddress& to, const uint8_t* data, std::size_t size) override;
  void receive(TransportReceiver& receiver) override;
  void receive_closes(TransportReceiver& receiver) override;
  bool messages_waiting() const override { return readable(router_); }
  bool closes_waiting() const override { return readable(monitor_); }
  TransportWait wait(int wake_fd, long timeout_millis) override;
  std::vector<int> loop_descriptors() const override;

 private:
  static bool readable(void* socket);

  void* context_ = nullptr;
  void* router_ = nullptr;
  void* monitor_ = nullptr;  // PAIR receiving the ROUTER's disconnect events
  std::vector<std::max_align_t> aligned_scratch_;  // aligned copies of misaligned inbound messages
};

}  // namespace clipper
