#include "engine/engine_options.h"

#include <arpa/inet.h>

#include <stdexcept>

#include "rpc/zap_authenticator.h"

namespace clipper {
namespace {

void check_port(int port, const char* field) {
  if (port < 0 || port > 65535) {
    throw std::invalid_argument(std::string(field) + " must be between 0 and 65535, got " +
                                std::to_string(port));
  }
}

void check_replica_authentication(const EngineOptions& options) {
  if (options.rpc_curve_secret_key.empty()) {
    if (!options.rpc_curve_client_keys.empty()) {
      throw std::invalid_argument("rpc_curve_client_keys needs rpc_curve_secret_key (the server's key)");
    }
    if (!is_loopback_address(options.bind_address)) {
      throw std::invalid_argument(
          "refusing to bind the RPC port on " + options.bind_address +
          " without replica authentication: any host that reaches it could register as a model and "
          "receive users' queries; set rpc_curve_secret_key and rpc_curve_client_keys (ZeroMQ CURVE), "
          "or bind 127.0.0.1");
    }
    return;
  }
  if (!is_z85_key(options.rpc_curve_secret_key)) {
    throw std::invalid_argument("rpc_curve_secret_key must be 40 characters of Z85 (a CURVE secret key)");
  }
  if (options.rpc_curve_client_keys.empty()) {
    throw std::invalid_argument("rpc_curve_client_keys is empty: no replica could ever register");
  }
  for (const auto& key : options.rpc_curve_client_keys) {
    if (!is_z85_key(key)) {
      throw std::invalid_argument("rpc_curve_client_keys: '" + key +
                                  "' is not 40 characters of Z85 (a CURVE public key)");
    }
  }
}

}  // namespace

bool is_loopback_address(const std::string& address) {
  if (address == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, address.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

void EngineOptions::validate() const {
  if (bind_address.empty()) throw std::invalid_argument("bind_address must not be empty");
  check_port(query_port, "query_port");
  check_port(rpc_port, "rpc_port");
  check_replica_authentication(*this);
  check_port(metrics_port, "metrics_port");
  if (io_threads < 1 || io_threads > 64) {
    throw std::invalid_argument("io_threads must be between 1 and 64, got " + std::to_string(io_threads));
  }
  if (max_body_bytes < 1024) throw std::invalid_argument("max_body_bytes must be at least 1024");
  if (max_header_bytes < 256) throw std::invalid_argument("max_header_bytes must be at least 256");
  if (max_header_count < 1) throw std::invalid_argument("max_header_count must be at least 1");
  if (header_timeout_millis < 0 || body_timeout_millis < 0 || idle_timeout_millis < 0) {
    throw std::invalid_argument(
        "header_timeout_millis, body_timeout_millis and idle_timeout_millis must be >= 0 (0 disables)");
  }
  if (max_connections_per_io_thread < 1 || max_connections_per_client_address < 1) {
    throw std::invalid_argument(
        "max_connections_per_io_thread and max_connections_per_client_address must be at least 1");
  }
  if (max_batch_size < 1) throw std::invalid_argument("max_batch_size must be at least 1");
  if (replica_pipeline_depth < 1 || replica_pipeline_depth > 16) {
    throw std::invalid_argument("replica_pipeline_depth must be between 1 and 16");
  }
  if (replica_transport != "auto" && replica_transport != "zmq") {
    throw std::invalid_argument("replica_transport must be \"auto\" (shared memory for replicas on this host "
                                "that ask, ZeroMQ for the rest) or \"zmq\"");
  }
  if (shm_request_ring_bytes < (64u << 10) || shm_response_ring_bytes < (64u << 10) ||
      shm_request_ring_bytes > (4ull << 30) || shm_response_ring_bytes > (4ull << 30)) {
    throw std::invalid_argument("shm_request_ring_bytes and shm_response_ring_bytes must be between 64 KiB and 4 GiB");
  }
  if (shm_response_spin_micros < 0 || shm_response_spin_micros > 10000) {
    throw std::invalid_argument("shm_response_spin_micros must be between 0 and 10000");
  }
  if (shm_response_spin_cost_micros < 0 || shm_response_spin_cost_micros > 10000) {
    throw std::invalid_argument("shm_response_spin_cost_micros must be between 0 and 10000");
  }
  if (max_queued_tasks_per_model < 1) {
    throw std::invalid_argument("max_queued_tasks_per_model must be at least 1");
  }
  if (max_queued_bytes_per_model < max_body_bytes) {
    throw std::invalid_argument("max_queued_bytes_per_model must be at least max_body_bytes");
  }
  if (max_pending_queries_per_io_thread < 1) {
    throw std::invalid_argument("max_pending_queries_per_io_thread must be at least 1");
  }
  if (!(batch_latency_slo_fraction > 0.0 && batch_latency_slo_fraction <= 1.0)) {
    throw std::invalid_argument("batch_latency_slo_fraction must be in (0, 1]");
  }
  if (aimd_additive_step < 1) throw std::invalid_argument("aimd_additive_step must be at least 1");
  if (!(aimd_backoff_factor > 0.0 && aimd_backoff_factor < 1.0)) {
    throw std::invalid_argument("aimd_backoff_factor must be in (0, 1)");
  }
  if (heartbeat_timeout_millis < 100) {
    throw std::invalid_argument("heartbeat_timeout_millis must be at least 100");
  }
}

}  // namespace clipper
