// The serving engine: owns the I/O threads (HTTP, cpp/query), the replica side (cpp/rpc), the model
// registry, the prediction cache, the routing table and the metrics, and wires the two sides
// together: the query side submits to the replica side's TaskScheduler, the replica side answers
// through each I/O thread's CompletionSink. Neither side sees the other or reaches through here.
// Its public methods are the control interface; they run on the caller's thread, never block the
// request path, and are safe to call from any thread (lifecycle calls are serialized by a mutex).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <chrono>
#include <utility>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cache/prediction_cache.h"
#include "engine/engine_options.h"
#include "engine/model_registry.h"
#include "engine/routing.h"
#include "metrics/metrics.h"
#include "metrics/replica_supervision.h"
#include "rpc/shm_transport.h"
#include "selection/feedback_queue.h"
#include "selection/selection_weights.h"

namespace clipper {

class QueryProcessor;
class ReplicaService;
struct ReplicaInfo;  // rpc/batching_report.h

class Engine {
 public:
  explicit Engine(EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Binds every port and starts the threads. Throws std::runtime_error when a port cannot be bound.
  void start();
  // Stops accepting, closes connections, joins the threads. Idempotent.
  void stop();
  // Blocks until stop() is called from another thread (or a signal handler path calls it).
  void wait();

  // Replaces the configuration with a snapshot (docs/interfaces.md). Throws std::invalid_argument.
  void apply_config(std::string_view config_json);

  std::vector<ReplicaInfo> replicas() const;
  // JSON array: per model version its batching settings, learned size, batch cut reasons, and per
  // replica the controller's size and recent batch latencies.
  std::string batching_state() const;
  CacheStatistics cache_statistics() const { return cache_.statistics(); }
  std::string metrics_text() const;
  // The control plane's replica supervision (restarts, last exit, state per slot), exported with the
  // metrics; replaces the previous snapshot. Call when it changes, not per request. Throws
  // std::invalid_argument for a malformed slot (metrics/replica_supervision.h).
  void set_replica_supervision(std::vector<metrics::ReplicaSupervision> slots) {
    replica_supervision_.replace(std::move(slots));
  }

  // --- the model-selection layer (docs/interfaces.md §5) ---
  // Publishes the weights a policy learned for (app, uid), by linked model name; models not named get 0.
  // Throws std::invalid_argument for an unknown app or model.
  void set_selection_weights(std::string_view app, int64_t uid, const std::vector<std::pair<std::string, double>>& weights);
  // Forgets published weights: of one user, or (no uid) of every user of the app.
  void clear_selection_weights(std::string_view app, std::optional<int64_t> uid);
  // The control plane's feedback worker: waits up to `timeout` for rounds (marks the worker attached).
  std::vector<FeedbackRound> next_feedback(std::size_t max_rounds, std::chrono::microseconds timeout);
  // Answers the /update behind `ticket`: 200 when applied, else 400 with `message`.
  void finish_feedback(uint64_t ticket, bool applied, const std::string& message);
  // The feedback worker scored one applied round: the loss of the policy's own answer (none when it
  // had none) and of each linked model's output, added to the app's Prometheus series. Once per round,
  // never per query. An app or model no longer routed (a configuration changed meanwhile) is skipped.
  void record_feedback_losses(std::string_view app, std::optional<double> answer_loss,
                              const std::vector<std::pair<std::string, double>>& model_losses);

  int query_port() const { return query_port_; }
  int rpc_port() const { return rpc_port_; }
  int metrics_port() const { return metrics_port_; }
  bool running() const { return running_.load(); }
  bool configured() const { return routing_generation_.load() > 0; }
  const EngineOptions& options() const { return options_; }

  // --- used by the engine's own threads ---
  // The current routing table; I/O threads call this only when routing_generation() changed.
  std::shared_ptr<const RoutingTable> routing_table() const;
  uint64_t routing_generation() const { return routing_generation_.load(std::memory_order_acquire); }
  PredictionCache& cache() { return cache_; }
  const SelectionWeights& selection_weights() const { return selection_weights_; }
  FeedbackQueue& feedback_queue() { return feedback_queue_; }
  uint64_t next_query_ids(uint32_t count) { return next_query_id_.fetch_add(count); }

 private:
  EngineOptions options_;
  metrics::MetricsRegistry metrics_;
  // Outlives each start's transport, so /metrics reads it whatever the replica side is doing.
  std::shared_ptr<ShmCopyCounters> shm_copies_ = std::make_shared<ShmCopyCounters>();
  std::shared_ptr<ShmSpinCounters> shm_spins_ = std::make_shared<ShmSpinCounters>();
  metrics::ReplicaSupervisionSeries replica_supervision_;
  ModelRegistry models_;
  PredictionCache cache_;
  SelectionWeights selection_weights_;
  FeedbackQueue feedback_queue_;

  mutable std::mutex routing_mutex_;
  std::shared_ptr<const RoutingTable> routing_;
  std::atomic<uint64_t> routing_generation_{0};

  std::vector<std::unique_ptr<QueryProcessor>> processors_;
  std::vector<std::thread> io_threads_;
  std::unique_ptr<ReplicaService> replica_service_;
  std::thread rpc_thread_;

  std::atomic<uint64_t> next_query_id_{0};
  std::atomic<bool> running_{false};
  mutable std::mutex lifecycle_mutex_;
  int query_port_ = 0;
  int rpc_port_ = 0;
  int metrics_port_ = 0;
};

}  // namespace clipper
