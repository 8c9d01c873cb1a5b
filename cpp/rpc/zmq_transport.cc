#include "rpc/zmq_transport.h"

#include <zmq.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace clipper {

ZmqTransport::ZmqTransport(const ZmqCurveKeys& keys) {
  const bool curve = !keys.server_secret_key.empty();
  if (curve && !zmq_has("curve")) {
    throw std::runtime_error("replica authentication needs ZeroMQ's CURVE mechanism, and this libzmq "
                             "was built without it (libsodium)");
  }
  if (curve && !is_z85_key(keys.server_secret_key)) {
    throw std::invalid_argument("the RPC server's secret key must be 40 characters of Z85");
  }
  context_ = zmq_ctx_new();
  if (curve) {
    try {
      // Bound before the ROUTER exists, so no handshake can ever go unchecked.
      authenticator_ = std::make_unique<ZapAuthenticator>(context_, keys.client_public_keys);
    } catch (...) {
      zmq_ctx_term(context_);
      throw;
    }
  }
  router_ = zmq_socket(context_, ZMQ_ROUTER);
  const int one = 1;
  if (curve) {
    static const char kDomain[] = "clipper-rpc";
    zmq_setsockopt(router_, ZMQ_CURVE_SERVER, &one, sizeof(one));
    zmq_setsockopt(router_, ZMQ_CURVE_SECRETKEY, keys.server_secret_key.c_str(), keys.server_secret_key.size());
    zmq_setsockopt(router_, ZMQ_ZAP_DOMAIN, kDomain, sizeof(kDomain) - 1);
  }
  const int zero = 0;
  const int high_water = 100000;
  zmq_setsockopt(router_, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
  zmq_setsockopt(router_, ZMQ_LINGER, &zero, sizeof(zero));
  zmq_setsockopt(router_, ZMQ_SNDHWM, &high_water, sizeof(high_water));
  zmq_setsockopt(router_, ZMQ_RCVHWM, &high_water, sizeof(high_water));
  const std::string monitor_endpoint =
      "inproc://rpc-monitor-" + std::to_string(reinterpret_cast<uintptr_t>(this));
  // With CURVE, failed handshakes too: a process without keys never reaches the authenticator.
  const int events = ZMQ_EVENT_DISCONNECTED |
                     (curve ? ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL : 0);
  zmq_socket_monitor(router_, monitor_endpoint.c_str(), events);
  monitor_ = zmq_socket(context_, ZMQ_PAIR);
  zmq_setsockopt(monitor_, ZMQ_LINGER, &zero, sizeof(zero));
  zmq_connect(monitor_, monitor_endpoint.c_str());
  std::size_t size = sizeof(router_fd_);
  zmq_getsockopt(router_, ZMQ_FD, &router_fd_, &size);
  size = sizeof(monitor_fd_);
  zmq_getsockopt(monitor_, ZMQ_FD, &monitor_fd_, &size);
}

ZmqTransport::~ZmqTransport() {
  if (router_ != nullptr) zmq_socket_monitor(router_, nullptr, 0);
  if (monitor_ != nullptr) zmq_close(monitor_);
  if (router_ != nullptr) zmq_close(router_);
  if (context_ != nullptr) {
    zmq_ctx_shutdown(context_);  // ends the authenticator's wait
    authenticator_.reset();
    zmq_ctx_term(context_);
  }
}

int ZmqTransport::bind(const std::string& address, int port) {
  const std::string endpoint =
      "tcp://" + address + ":" + (port == 0 ? std::string("*") : std::to_string(port));
  if (zmq_bind(router_, endpoint.c_str()) != 0) {
    throw std::runtime_error("cannot bind the RPC port " + endpoint + ": " + zmq_strerror(zmq_errno()));
  }
  char last[256];
  std::size_t length = sizeof(last);
  zmq_getsockopt(router_, ZMQ_LAST_ENDPOINT, last, &length);
  const std::string bound(last);
  return std::stoi(bound.substr(bound.rfind(':') + 1));
}

bool ZmqTransport::send(const ReplicaAddress& to, const uint8_t* data, std::size_t size) {
  router_idle_ = false;  // a send can make messages readable without a new edge on the descriptor
  if (zmq_send(router_, to.data(), to.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return false;
  return zmq_send(router_, data, size, ZMQ_DONTWAIT) >= 0;
}

bool ZmqTransport::readable(void* socket) {
  int events = 0;
  std::size_t size = sizeof(events);
  return zmq_getsockopt(socket, ZMQ_EVENTS, &events, &size) == 0 && (events & ZMQ_POLLIN) != 0;
}

bool ZmqTransport::messages_waiting() const {
  if (router_idle_) return false;
  router_idle_ = !readable(router_);
  return !router_idle_;
}

bool ZmqTransport::closes_waiting() const {
  if (monitor_idle_) return false;
  monitor_idle_ = !readable(monitor_);
  return !monitor_idle_;
}

TransportWait ZmqTransport::wait(int wake_fd, long timeout_millis) {
  router_idle_ = monitor_idle_ = false;  // thread mode: look after every wait
  zmq_pollitem_t items[3];
  items[0] = {router_, 0, ZMQ_POLLIN, 0};
  items[1] = {nullptr, wake_fd, ZMQ_POLLIN, 0};
  items[2] = {monitor_, 0, ZMQ_POLLIN, 0};
  TransportWait result;
  if (zmq_poll(items, 3, timeout_millis) < 0 && zmq_errno() != EINTR) {
    result.failed = true;
    return result;
  }
  result.woken = (items[1].revents & ZMQ_POLLIN) != 0;
  result.closes_waiting = (items[2].revents & ZMQ_POLLIN) != 0;
  return result;
}

void ZmqTransport::descriptor_fired(int fd) {
  if (fd == router_fd_) router_idle_ = false;
  if (fd == monitor_fd_) monitor_idle_ = false;
}

std::vector<int> ZmqTransport::loop_descriptors() const {
  // ZeroMQ's descriptors only say "look at ZMQ_EVENTS": the caller reads until nothing is waiting,
  // since a send can make messages readable without a new edge.
  std::vector<int> descriptors;
  for (void* socket : {router_, monitor_}) {
    int fd = -1;
    std::size_t size = sizeof(fd);
    zmq_getsockopt(socket, ZMQ_FD, &fd, &size);
    descriptors.push_back(fd);
  }
  return descriptors;
}

void ZmqTransport::receive(TransportReceiver& receiver) {
  if (router_idle_) return;
  zmq_msg_t identity;
  zmq_msg_t body;
  for (int received = 0; received < 1024; ++received) {
    zmq_msg_init(&identity);
    if (zmq_msg_recv(&identity, router_, ZMQ_DONTWAIT) < 0) {
      // Not idle yet: a receive may defer the socket's commands (ZeroMQ throttles them there), so
      // only messages_waiting()'s ZMQ_EVENTS, which processes them, can say nothing is waiting.
      zmq_msg_close(&identity);
      return;
    }
    ReplicaAddress from(static_cast<const char*>(zmq_msg_data(&identity)), zmq_msg_size(&identity));
    zmq_msg_close(&identity);
    // Read every remaining frame; a well-formed message has exactly one.
    bool first = true;
    int more = 1;
    while (more) {
      zmq_msg_init(&body);
      if (zmq_msg_recv(&body, router_, 0) < 0) {
        zmq_msg_close(&body);
        break;
      }
      more = zmq_msg_more(&body);
      if (first) {
        const int socket_fd = zmq_msg_get(&body, ZMQ_SRCFD);
        const auto* data = static_cast<const uint8_t*>(zmq_msg_data(&body));
        const std::size_t size = zmq_msg_size(&body);
        // ZeroMQ keeps small messages at any offset inside its receive buffer; flatbuffers reads
        // fields in place and needs the buffer aligned, so such a message is copied once.
        if (reinterpret_cast<uintptr_t>(data) % alignof(std::max_align_t) != 0) {
          aligned_scratch_.resize(size / sizeof(std::max_align_t) + 1);
          std::memcpy(aligned_scratch_.data(), data, size);
          data = reinterpret_cast<const uint8_t*>(aligned_scratch_.data());
        }
        receiver.on_received(from, data, size, socket_fd);
        first = false;
      }
      zmq_msg_close(&body);
    }
  }
}

void ZmqTransport::note_failed_handshake(uint32_t protocol_error) {
  ++unlogged_handshakes_;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_handshake_log_) return;
  std::fprintf(stderr,
               "clipper-engine event=replica_refused reason=\"CURVE handshake failed (no keys, or not a "
               "replica)\" protocol_error=0x%x refused_since_last_log=%llu\n",
               protocol_error, static_cast<unsigned long long>(unlogged_handshakes_));
  unlogged_handshakes_ = 0;
  next_handshake_log_ = now + std::chrono::seconds(1);
}

void ZmqTransport::receive_closes(TransportReceiver& receiver) {
  if (!closes_waiting()) return;
  zmq_msg_t frame;
  while (true) {
    zmq_msg_init(&frame);
    if (zmq_msg_recv(&frame, monitor_, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&frame);
      return;
    }
    // Event frame: uint16 event id, uint32 value (the fd); a second frame holds the endpoint.
    int disconnected_fd = -1;
    if (zmq_msg_size(&frame) >= 6) {
      uint16_t event = 0;
      uint32_t value = 0;
      std::memcpy(&event, zmq_msg_data(&frame), sizeof(event));
      std::memcpy(&value, static_cast<const char*>(zmq_msg_data(&frame)) + 2, sizeof(value));
      if (event == ZMQ_EVENT_DISCONNECTED) disconnected_fd = static_cast<int>(value);
      if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) note_failed_handshake(value);
      if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) note_failed_handshake(0);
    }
    const bool more = zmq_msg_more(&frame);
    zmq_msg_close(&frame);
    if (more) {
      zmq_msg_init(&frame);
      zmq_msg_recv(&frame, monitor_, 0);
      zmq_msg_close(&frame);
    }
    if (disconnected_fd >= 0) receiver.on_connection_closed(disconnected_fd);
  }
}

}  // namespace clipper
