#include "rpc/zap_authenticator.h"

#include <zmq.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <stdexcept>

namespace clipper {
namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";  // fixed by RFC 27
constexpr std::size_t kKeyBytes = 32;
constexpr std::size_t kZ85KeyChars = 40;

std::string decode_key(const std::string& z85) {
  if (z85.size() != kZ85KeyChars) return {};
  uint8_t binary[kKeyBytes];
  if (zmq_z85_decode(binary, z85.c_str()) == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(binary), kKeyBytes);
}

std::string printable_key(const std::string& binary) {
  if (binary.size() != kKeyBytes) return "-";
  char z85[kZ85KeyChars + 1];
  zmq_z85_encode(z85, reinterpret_cast<const uint8_t*>(binary.data()), kKeyBytes);
  return z85;
}

}  // namespace

bool is_z85_key(const std::string& key) { return !decode_key(key).empty(); }

ZapAuthenticator::ZapAuthenticator(void* context, const std::vector<std::string>& allowed_public_keys) {
  for (const auto& key : allowed_public_keys) {
    std::string binary = decode_key(key);
    if (binary.empty()) {
      throw std::invalid_argument("a replica public key must be 40 characters of Z85, got '" + key + "'");
    }
    allowed_.insert(std::move(binary));
  }
  socket_ = zmq_socket(context, ZMQ_REP);
  const int zero = 0;
  zmq_setsockopt(socket_, ZMQ_LINGER, &zero, sizeof(zero));
  if (zmq_bind(socket_, kZapEndpoint) != 0) {
    const std::string error = zmq_strerror(zmq_errno());
    zmq_close(socket_);
    throw std::runtime_error(std::string("cannot start the replica authenticator on ") + kZapEndpoint + ": " +
                             error);
  }
  thread_ = std::thread([this] { serve(); });
}

ZapAuthenticator::~ZapAuthenticator() {
  if (thread_.joinable()) thread_.join();
}

void ZapAuthenticator::serve() {
  // Refusals are logged at most once a second (with the count since), so a flood of rogue
  // handshakes cannot flood the log.
  auto next_log = std::chrono::steady_clock::time_point{};
  uint64_t unlogged = 0;
  std::vector<std::string> request;
  while (true) {
    request.clear();
    int more = 1;
    while (more) {
      zmq_msg_t frame;
      zmq_msg_init(&frame);
      if (zmq_msg_recv(&frame, socket_, 0) < 0) {
        zmq_msg_close(&frame);
        if (zmq_errno() == EINTR) continue;
        zmq_close(socket_);  // ETERM: the context is shutting down
        return;
      }
      request.emplace_back(static_cast<const char*>(zmq_msg_data(&frame)), zmq_msg_size(&frame));
      more = zmq_msg_more(&frame);
      zmq_msg_close(&frame);
    }
    const char* status = decide(request);
    const bool admitted = status[0] == '2';
    const std::string request_id = request.size() > 1 ? request[1] : std::string();
    const std::string user_id = admitted ? printable_key(request[6]) : std::string();
    const std::string text = admitted ? "OK" : "client key not admitted";
    // Reply: version, request id, status code, status text, user id, metadata.
    const std::string reply[] = {"1.0", request_id, status, text, user_id, ""};
    for (std::size_t i = 0; i < 6; ++i) {
      zmq_send(socket_, reply[i].data(), reply[i].size(), i < 5 ? ZMQ_SNDMORE : 0);
    }
    if (admitted) continue;
    refused_.fetch_add(1, std::memory_order_relaxed);
    ++unlogged;
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_log) {
      const std::string address = request.size() > 3 ? request[3] : std::string("-");
      const std::string mechanism = request.size() > 5 ? request[5] : std::string("-");
      const std::string key = request.size() > 6 ? printable_key(request[6]) : std::string("-");
      std::fprintf(stderr,
                   "clipper-engine event=replica_refused reason=\"client key not admitted\" address=%s "
                   "mechanism=%s client_key=%s refused_since_last_log=%llu\n",
                   address.c_str(), mechanism.c_str(), key.c_str(), static_cast<unsigned long long>(unlogged));
      unlogged = 0;
      next_log = now + std::chrono::seconds(1);
    }
  }
}

const char* ZapAuthenticator::decide(const std::vector<std::string>& request) {
  // Frames: version, request id, domain, address, routing id, mechanism, credentials...
  if (request.size() < 6 || request[0] != "1.0") return "500";
  if (request[5] != "CURVE" || request.size() != 7) return "400";
  return allowed_.count(request[6]) != 0 ? "200" : "400";
}

}  // namespace clipper
