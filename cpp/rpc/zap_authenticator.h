// Admits replicas on the RPC port: a ZeroMQ Authentication Protocol (ZAP, RFC 27) handler that
// libzmq asks, during each CURVE handshake on a socket of the same context, whether the client's
// public key may connect. Only keys on the allow-list get "200"; every other key (and any other
// mechanism) gets "400", so the connection is closed before a single message reaches the socket.
// Thread: a thread of its own answers the requests; construction and destruction on the owner's.
#pragma once

#include <atomic>
#include <cstdint>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace clipper {

class ZapAuthenticator {
 public:
  // Binds libzmq's ZAP endpoint in `context` (before any socket of it accepts connections) and
  // starts answering. `allowed_public_keys` are Z85 (40 characters). Throws std::invalid_argument
  // for a key that is not Z85 and std::runtime_error when the endpoint cannot be bound.
  ZapAuthenticator(void* context, const std::vector<std::string>& allowed_public_keys);
  // Call only after zmq_ctx_shutdown(context): that ends the thread's wait.
  ~ZapAuthenticator();
  ZapAuthenticator(const ZapAuthenticator&) = delete;
  ZapAuthenticator& operator=(const ZapAuthenticator&) = delete;

  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

 private:
  void serve();
  // The reply's status code for one request's frames.
  const char* decide(const std::vector<std::string>& request);

  void* socket_ = nullptr;           // REP on inproc://zeromq.zap.01; the thread's once started
  std::set<std::string> allowed_;    // 32-byte binary public keys
  std::atomic<uint64_t> refused_{0};
  std::thread thread_;
};

// True when `key` is 40 characters of Z85 that decode to a 32-byte key.
bool is_z85_key(const std::string& key);

}  // namespace clipper
