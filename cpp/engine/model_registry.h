// Every model version the engine knows, each with its batch queue and metrics. A version appears
// when a configuration names it or a replica registers for it, and lives as long as the engine, so
// raw pointers to it stay valid on every thread. The map is guarded by a mutex taken only by the
// control path and by the RPC thread when a replica registers; the request path never takes it.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "batching/admission.h"
#include "batching/batch_queue.h"
#include "common/clock.h"
#include "common/input_type.h"
#include "common/latency_model.h"
#include "metrics/metrics.h"

namespace clipper {

struct ModelVersion {
  ModelVersion(uint64_t id_in, std::string name_in, std::string version_in, InputType type,
               metrics::ModelMetrics* m)
      : id(id_in), name(std::move(name_in)), version(std::move(version_in)), input_type(type), metrics(m),
        label(name + ":" + version) {}

  const uint64_t id;  // unique per version for the engine's lifetime (keys the prediction cache)
  const std::string name;
  const std::string version;
  const InputType input_type;
  metrics::ModelMetrics* const metrics;
  const std::string label;  // "name:version", for logs and explanations

  // Batching settings, written by the control path, read by the RPC thread.
  // -1 = adaptive (AIMD), k > 0 = batches of at most k (Clipper's batch_size).
  std::atomic<int32_t> batch_size_limit{-1};
  std::atomic<int32_t> max_batch_size{0};                 // hard cap; 0 = the engine's max_batch_size
  std::atomic<int64_t> batch_wait_timeout_micros{0};      // delayed batching; 0 = never wait
  std::atomic<int64_t> slo_micros{100000};                // tightest SLO of the apps that reach it
  std::atomic<int32_t> learned_batch_size{1};             // what its replicas learned; seeds new ones

  std::atomic<int32_t> connected_replicas{0};
  // Replicas with room for another batch. I/O threads wake the RPC thread for new tasks only when
  // one is idle: a busy replica takes the queue's contents when its answer arrives anyway. Written
  // only by rpc/ReplicaSet on the replica side's thread (its header states when).
  std::atomic<int32_t> idle_replicas{0};
  BatchQueue queue;
  AdmissionGauge admission;  // the service rate the RPC thread measured, for the I/O threads

  // RPC thread only.
  LatencyModel latency;
  Clock::time_point last_batch_sent{};
};

class ModelRegistry {
 public:
  explicit ModelRegistry(metrics::MetricsRegistry& metrics) : metrics_(metrics) {}

  // Versions a replica's registration may create that no configuration names: enough for replicas
  // that connect before their model is configured, few enough that a flood of registrations for
  // invented names cannot grow the engine (queues, metrics series) without bound.
  static constexpr std::size_t kMaxUnconfiguredVersions = 256;

  // Returns the version, creating it if new. Returns nullptr if it exists with another input type.
  // The configuration's path: a version created here, or named here later, counts as configured.
  ModelVersion* find_or_create(const std::string& name, const std::string& version, InputType type);
  // The same for a replica's registration, except that a new version beyond
  // kMaxUnconfiguredVersions unconfigured ones is not created: nullptr with `refused` set.
  ModelVersion* find_or_create_for_replica(const std::string& name, const std::string& version,
                                           InputType type, bool& refused);
  ModelVersion* find(const std::string& name, const std::string& version) const;

  // Bumped whenever a version is added, so the RPC thread can refresh its list cheaply.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  std::vector<ModelVersion*> all() const;

 private:
  metrics::MetricsRegistry& metrics_;
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<ModelVersion>> versions_;
  std::set<std::pair<std::string, std::string>> unconfigured_;  // created by registrations alone
  std::atomic<uint64_t> generation_{0};
  uint64_t next_id_ = 1;
};

}  // namespace clipper
