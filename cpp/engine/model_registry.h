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
#include <string>
#include <vector>

#include "batching/batch_queue.h"
#include "common/input_type.h"
#include "metrics/metrics.h"

namespace clipper {

struct ModelVersion {
  ModelVersion(std::string name_in, std::string version_in, InputType type, metrics::ModelMetrics* m)
      : name(std::move(name_in)), version(std::move(version_in)), input_type(type), metrics(m),
        label(name + ":" + version) {}

  const std::string name;
  const std::string version;
  const InputType input_type;
  metrics::ModelMetrics* const metrics;
  const std::string label;  // "name:version", for logs and explanations

  // -1 = adaptive (bounded by the engine's max batch size), k > 0 = batches of at most k.
  std::atomic<int32_t> batch_size_limit{-1};
  std::atomic<int32_t> connected_replicas{0};
  BatchQueue queue;
};

class ModelRegistry {
 public:
  explicit ModelRegistry(metrics::MetricsRegistry& metrics) : metrics_(metrics) {}

  // Returns the version, creating it if new. Returns nullptr if it exists with another input type.
  ModelVersion* find_or_create(const std::string& name, const std::string& version, InputType type);
  ModelVersion* find(const std::string& name, const std::string& version) const;

  // Bumped whenever a version is added, so the RPC thread can refresh its list cheaply.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  std::vector<ModelVersion*> all() const;

 private:
  metrics::MetricsRegistry& metrics_;
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<ModelVersion>> versions_;
  std::atomic<uint64_t> generation_{0};
};

}  // namespace clipper
