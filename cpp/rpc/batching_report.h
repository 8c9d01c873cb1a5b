// What the replica side publishes for the control path: the list of connected replicas and the
// batching state (per model version: settings, learned size, cut reasons, per-replica controller
// state and recent latencies) as JSON. Rebuilt by the replica side's thread when replicas come or go
// and on every liveness tick; read by any thread (Engine::replicas(), Engine::batching_state()).
// Invariant: the two published values are replaced together under `mutex_`; readers get copies.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine_options.h"
#include "engine/model_registry.h"
#include "rpc/replica_set.h"

namespace clipper {

struct ReplicaInfo {
  std::string model_name;
  std::string model_version;
  int32_t replica_id = 0;
  std::string input_type;
  int inflight_batches = 0;
  std::string transport;  // "zmq" or "shm"
};

class Dispatcher;

class BatchingReport {
 public:
  // Replica side's thread.
  void publish(const ReplicaSet& replicas, const std::vector<ModelVersion*>& models, const Dispatcher& dispatcher,
               const EngineOptions& options);
  // Any thread.
  std::vector<ReplicaInfo> replicas() const;
  std::string batching_state_json() const;

 private:
  mutable std::mutex mutex_;
  std::vector<ReplicaInfo> replicas_;
  std::string batching_state_ = "[]";
};

}  // namespace clipper
