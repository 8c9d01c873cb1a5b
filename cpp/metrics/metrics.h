// Counters, gauges and histograms for apps, model versions and replicas, rendered as Prometheus text
// in base units (latencies observed in microseconds are exported in seconds). Entries are created by
// the control path (under a mutex) and never freed while the engine lives, so the request path keeps
// raw pointers and only does relaxed atomic increments. Not here: process metrics (process_metrics.h).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace clipper::metrics {

class Counter {
 public:
  void add(uint64_t amount = 1) { value_.fetch_add(amount, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A counter of a quantity that need not be whole (e.g. summed losses).
class DoubleCounter {
 public:
  void add(double amount) { value_.fetch_add(amount, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void add(int64_t amount) { value_.fetch_add(amount, std::memory_order_relaxed); }
  void set(int64_t value) { value_.store(value, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Cumulative histogram with fixed upper bounds (Prometheus "le" buckets). Values are observed in the
// caller's unit (e.g. microseconds, an integer count) and rendered multiplied by `render_scale`, so a
// latency observed in microseconds is exported in seconds (render_scale 1e-6), bounds and sum alike.
template <std::size_t N>
class Histogram {
 public:
  explicit Histogram(const std::array<double, N>& upper_bounds, double render_scale = 1.0)
      : bounds_(upper_bounds), render_scale_(render_scale) {}
  void observe(double value) {
    std::size_t index = 0;
    while (index < N && value > bounds_[index]) ++index;
    counts_[index].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(static_cast<uint64_t>(value), std::memory_order_relaxed);
  }
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::array<double, N> bounds_;
  double render_scale_;
  std::array<std::atomic<uint64_t>, N + 1> counts_{};
  std::atomic<uint64_t> sum_{0};
};

// Latency buckets in microseconds, the unit the engine measures in; rendered in seconds
// (0.00005 s to 10 s) by kMicrosToSeconds.
inline constexpr std::array<double, 16> kLatencyBoundsMicros{
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
    2500000, 10000000};
inline constexpr double kMicrosToSeconds = 1e-6;
inline constexpr std::array<double, 11> kBatchSizeBounds{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
// Confidence buckets in millionths (the histogram sums whole numbers), rendered as 0.1 ... 1.
inline constexpr std::array<double, 12> kConfidenceBoundsMillionths{
    100000, 200000, 300000, 400000, 500000, 600000, 700000, 800000, 900000, 950000, 990000, 1000000};
inline constexpr double kMillionthsToUnit = 1e-6;

using LatencyHistogram = Histogram<kLatencyBoundsMicros.size()>;
using BatchSizeHistogram = Histogram<kBatchSizeBounds.size()>;
using ConfidenceHistogram = Histogram<kConfidenceBoundsMillionths.size()>;

// One linked model as one app's selection policy sees it (labelled app and model). The I/O threads
// count selections and escalations; the control plane's feedback worker adds losses once per round.
struct SelectionMetrics {
  Counter selections;             // inputs the app's policy asked this model to answer
  Counter cascade_escalations;    // cascade: inputs handed on to the next model from this one
  Counter failures;               // inputs the model, asked by the app's policy, failed (it raised or
                                  // answered badly)
  DoubleCounter feedback_loss;    // summed loss of its outputs in applied feedback rounds
  Counter feedback_observations;  // applied feedback rounds in which its output was known
};

// Why admission control refused a query or an /update at arrival (the `reason` label of clipper_app_rejected_total).
// Lag: the request had waited out its time limit before the frontend read it (a lagging I/O loop).
enum class RejectReason : uint8_t { Deadline = 0, QueueFull = 1, PendingLimit = 2, Lag = 3 };
inline constexpr std::array<const char*, 4> kRejectReasonNames{"deadline", "queue_full", "pending_limit", "lag"};

struct AppMetrics {
  Counter requests;          // HTTP /predict requests accepted
  Counter predictions;       // inputs answered (a batch request counts each input)
  Counter default_answers;   // inputs answered with the app's default output
  Counter client_errors;     // 4xx answers
  Counter feedback;          // /update requests accepted
  Counter slo_attained;      // inputs answered by a model (not the default) within the app's SLO
  std::array<Counter, kRejectReasonNames.size()> rejected;  // queries and /update requests refused at arrival, by RejectReason
  LatencyHistogram latency_micros{kLatencyBoundsMicros, kMicrosToSeconds};  // observe microseconds
  // The selection layer (docs/selection.md).
  Counter partial_answers;       // ensemble or cascade answers for which a model asked did not answer
  Counter feedback_applied;      // feedback rounds the policy applied
  Counter feedback_refused;      // ... refused (answered 400)
  Counter feedback_unconfirmed;  // ... not confirmed in time (answered 503)
  DoubleCounter online_loss;     // summed loss of the policy's own answers in applied feedback rounds
  Counter online_loss_rounds;    // applied rounds in which the policy had an answer to score
  ConfidenceHistogram answer_confidence{kConfidenceBoundsMillionths, kMillionthsToUnit};
  void observe_confidence(double confidence) { answer_confidence.observe(confidence * 1e6); }

  // The model's series, created on first use and kept (labelled by model name).
  SelectionMetrics* model(const std::string& model_name);
  // Guards `models` (the map, not the atomics). Taken after MetricsRegistry's mutex when rendering.
  mutable std::mutex models_mutex;
  std::map<std::string, std::unique_ptr<SelectionMetrics>> models;
};

// One replica of a model version, labelled model, version and replica. The replica side's thread
// (cpp/rpc/) is the only writer.
struct ReplicaMetrics {
  Counter batches;             // batches this replica answered
  Counter failed_batches;      // ... with an error or a bad output
  Gauge inflight_batches;      // batches sent to it and not answered yet
  Gauge connected;             // 1 while registered (the series is removed once it is gone)
  Gauge slow;                  // 1 while marked slow or stalled (only probe batches reach it)
  LatencyHistogram batch_latency_micros{kLatencyBoundsMicros, kMicrosToSeconds};  // observe microseconds
};

struct ModelMetrics {
  // A connected replica's series: created when a replica registers with this id, shared by every
  // connection that claims the same id, and removed when the last of them leaves, so /metrics stays
  // bounded however many replicas come and go. Detach once per attach; the series is gone after it.
  ReplicaMetrics* attach_replica(int32_t replica_id);
  void detach_replica(int32_t replica_id);

  Counter batches;
  Counter predictions;
  Counter failed_batches;
  Gauge connected_replicas;
  Gauge learned_batch_size;                 // the controllers' current batch size
  Counter expired_tasks;                    // inputs dropped from the queue after their deadline
  Counter shed_tasks;                       // inputs answered early: their deadline could not be met
  Counter hedged_batches;                   // batches re-sent because their replica stalled
  Counter prefetched_batches;               // full batches sent to a replica at its pipeline depth
  std::array<Counter, 4> batch_cut_reasons; // full, deadline, wait_expired, queue_empty
  LatencyHistogram batch_latency_micros{kLatencyBoundsMicros, kMicrosToSeconds};  // observe microseconds
  BatchSizeHistogram batch_size{kBatchSizeBounds};

  struct AttachedReplica {
    std::unique_ptr<ReplicaMetrics> series;
    int connections = 0;  // attached and not detached yet
  };
  // Guards `replicas` (the map, not the atomics). Taken after MetricsRegistry's mutex when rendering.
  mutable std::mutex replicas_mutex;
  std::map<int32_t, AttachedReplica> replicas;
};

class MetricsRegistry {
 public:
  AppMetrics* app(const std::string& name);
  AppMetrics* find_app(const std::string& name) const;  // null when no series exist for it
  ModelMetrics* model(const std::string& name, const std::string& version);
  std::string render_prometheus() const;

 private:
  void render_replicas(std::string& out) const;
  void render_selection(std::string& out) const;

  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<AppMetrics>> apps_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<ModelMetrics>> models_;
};

// Escapes a label value for the Prometheus text format.
std::string escape_label(const std::string& value);

}  // namespace clipper::metrics
