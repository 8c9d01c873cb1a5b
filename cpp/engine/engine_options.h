// Every setting of the engine, with its unit in its name and its default. Validated once, by
// validate(), with an error that names the field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace clipper {

struct EngineOptions {
  std::string bind_address = "127.0.0.1";   // where the query, metrics and RPC ports listen
  int query_port = 1337;                     // REST queries; 0 picks a free port
  int rpc_port = 7000;                       // model replicas (ZeroMQ ROUTER); 0 picks a free port
  int metrics_port = 1390;                   // Prometheus /metrics; 0 = only on the query port
  int io_threads = 1;                        // HTTP event loops, each accepting on the query port
  // With one I/O thread the model RPC runs on its loop unless this is set; with several it always
  // has a thread of its own.
  bool dedicated_rpc_thread = false;
  std::size_t max_body_bytes = 8 * 1024 * 1024;  // larger request bodies answer 413
  std::size_t cache_size_bytes = 32 * 1024 * 1024;  // prediction cache budget (0 disables it)
  int max_batch_size = 128;                  // upper bound on any batch sent to a replica
  // Batches in flight per replica. 1 is Clipper's behaviour; 2 lets the next batch wait in the
  // replica while it evaluates the current one, hiding the round trip.
  int replica_pipeline_depth = 1;
  std::size_t max_queued_tasks_per_model = 100000;  // beyond this, /predict answers 503
  int64_t heartbeat_timeout_millis = 2000;   // a replica silent this long is dropped
  // Adaptive batching: a batch may take this share of the tightest SLO of the apps a model serves
  // (the rest is headroom for waiting behind the batch in flight, the RPC and HTTP).
  double batch_latency_slo_fraction = 0.4;
  int aimd_additive_step = 2;                // inputs added after a full batch under the objective
  double aimd_backoff_factor = 0.9;          // multiplier after a batch over the objective

  // Throws std::invalid_argument naming the first invalid field.
  void validate() const;
};

}  // namespace clipper
