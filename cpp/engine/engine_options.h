// Every setting of the engine, with its unit in its name. Defaults come from the generated
// clipper_defaults.h (source: src/clipper_native/defaults.json, which Python reads too). Validated
// once, by validate(), with an error that names the field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "clipper_defaults.h"

namespace clipper {

struct EngineOptions {
  // Where the query, metrics and RPC ports listen.
  std::string bind_address{defaults::bind_address};
  int query_port = static_cast<int>(defaults::query_port);  // REST queries; 0 picks a free port
  // Model replicas (ZeroMQ ROUTER); 0 picks a free port.
  int rpc_port = static_cast<int>(defaults::rpc_port);
  // Replica authentication on the RPC port (ZeroMQ CURVE, Z85 keys of 40 characters): the server's
  // secret key and the public keys of the replicas admitted. Empty: no authentication, which is
  // accepted only when bind_address is a loopback address.
  std::string rpc_curve_secret_key;
  std::vector<std::string> rpc_curve_client_keys;
  // Prometheus /metrics; 0 = only on the query port.
  int metrics_port = static_cast<int>(defaults::metrics_port);
  // HTTP event loops, each accepting on the query port.
  int io_threads = static_cast<int>(defaults::io_threads);
  // With one I/O thread the model RPC runs on its loop unless this is set; with several it always
  // has a thread of its own.
  bool dedicated_rpc_thread = false;
  std::size_t max_body_bytes = defaults::max_body_bytes;      // larger request bodies answer 413
  // Query and metrics ports, per I/O thread: header limits (431 beyond), read timeouts (408 and
  // close; 0 disables), keep-alive idle timeout, connection caps (503 with Retry-After beyond).
  std::size_t max_header_bytes = defaults::max_header_bytes;
  std::size_t max_header_count = defaults::max_header_count;
  int64_t header_timeout_millis = defaults::header_timeout_millis;  // first byte to end of headers
  int64_t body_timeout_millis = defaults::body_timeout_millis;      // end of headers to end of body
  int64_t idle_timeout_millis = defaults::idle_timeout_millis;      // keep-alive with nothing owed
  std::size_t max_connections_per_io_thread = defaults::max_connections_per_io_thread;
  std::size_t max_connections_per_client_address = defaults::max_connections_per_client_address;
  std::size_t cache_size_bytes = defaults::cache_size_bytes;  // prediction cache budget (0 disables it)
  // Upper bound on any batch sent to a replica.
  int max_batch_size = static_cast<int>(defaults::max_batch_size);
  // Batches in flight per replica. 1 is Clipper's behaviour; 2 lets the next batch wait in the
  // replica while it evaluates the current one, hiding the round trip.
  int replica_pipeline_depth = static_cast<int>(defaults::replica_pipeline_depth);
  // A replica at its pipeline depth may still be sent one more batch, queued behind the ones it holds,
  // when that batch is full (the queue holds the controller's batch size for it): at saturation the
  // replica finds its next batch waiting the moment it answers instead of after a round trip through
  // the frontend; below saturation nothing changes (a partial batch waits for the replica's answer).
  bool replica_prefetch_full_batches = defaults::replica_prefetch_full_batches;
  // "auto": replicas on this host that ask get shared-memory rings (rpc/shm_transport.h), the rest
  // ZeroMQ; "zmq": ZeroMQ for every replica. Ring sizes are per replica and direction.
  std::string replica_transport{defaults::replica_transport};
  std::size_t shm_request_ring_bytes = defaults::shm_request_ring_bytes;
  std::size_t shm_response_ring_bytes = defaults::shm_response_ring_bytes;
  // Before the I/O loop sleeps with a batch sent to a shared-memory replica less than this long ago
  // and unanswered, it polls the response rings until then (0: never; at most 10,000): an answer
  // arriving meanwhile costs no doorbell and no wake-up, and the loop's sockets wait that long.
  int64_t shm_response_spin_micros = static_cast<int64_t>(defaults::shm_response_spin_micros);
  // The most that spin may cost: microseconds spun per answer it caught, averaged over recent spins
  // (rpc/spin_cost_gate.h). Above it the loop sleeps without spinning, but for a probe after 16
  // sleeps (up to 256 while probes cost too much), so the spin runs where answers come back
  // quickly (the loop would wait idle for them) and stops under load that makes it wait long or
  // in vain. 0: no bound; at most 10,000.
  int64_t shm_response_spin_cost_micros = static_cast<int64_t>(defaults::shm_response_spin_cost_micros);
  // Memory bounds under any offered load (admission control, docs/operations.md): a query that would
  // take a model version's queue past either bound, or an I/O thread past its pending queries, is
  // refused at arrival (503 with Retry-After, or the app's default when its overload option says so).
  std::size_t max_queued_tasks_per_model = defaults::max_queued_tasks_per_model;
  std::size_t max_queued_bytes_per_model = defaults::max_queued_bytes_per_model;  // input bytes queued
  std::size_t max_pending_queries_per_io_thread = defaults::max_pending_queries_per_io_thread;
  int64_t heartbeat_timeout_millis = defaults::heartbeat_timeout_millis;  // a replica silent this long is dropped
  // Adaptive batching: a batch may take this share of the tightest SLO of the apps a model serves
  // (the rest is headroom for waiting behind the batch in flight, the RPC and HTTP).
  double batch_latency_slo_fraction = defaults::batch_latency_slo_fraction;
  // Inputs added after a full batch under the objective.
  int aimd_additive_step = static_cast<int>(defaults::aimd_additive_step);
  double aimd_backoff_factor = defaults::aimd_backoff_factor;  // multiplier after a batch over the objective

  // Throws std::invalid_argument naming the first invalid field.
  void validate() const;
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_address(const std::string& address);

}  // namespace clipper
