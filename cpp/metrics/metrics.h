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

using LatencyHistogram = Histogram<kLatencyBoundsMicros.size()>;
using BatchSizeHistogram = Histogram<kBatchSizeBounds.size()>;

struct AppMetrics {
  Counter requests;          // HTTP /predict requests accepted
  Counter predictions;       // inputs answered (a batch request counts each input)
  Counter default_answers;   // inputs answered with the app's default output
  Counter client_errors;     // 4xx answers
  Counter feedback;          // /update requests accepted
  Counter slo_attained;      // inputs answered by a model (not the default) within the app's SLO
  LatencyHistogram latency_micros{kLatencyBoundsMicros, kMicrosToSeconds};  // observe microseconds
};

// One replica of a model version, labelled model, version and replica. The replica side's thread
// (cpp/rpc/) is the only writer.
struct ReplicaMetrics {
  Counter batches;             // batches this replica answered
  Counter failed_batches;      // ... with an error or a bad output
  Gauge inflight_batches;      // batches sent to it and not answered yet
  Gauge connected;             // 1 while registered, 0 once gone
  Gauge slow;                  // 1 while marked slow or stalled (only probe batches reach it)
  LatencyHistogram batch_latency_micros{kLatencyBoundsMicros, kMicrosToSeconds};  // observe microseconds
};

struct ModelMetrics {
  // The replica's series, created on first use and kept (a departed replica shows connected 0).
  ReplicaMetrics* replica(int32_t replica_id);

  Counter batches;
  Counter predictions;
  Counter failed_batches;
  Gauge connected_replicas;
  Gauge learned_batch_size;                 // the controllers' current batch size
  Counter expired_tasks;                    // inputs dropped from the queue after their deadline
  Counter shed_tasks;                       // inputs answered early: their deadline could not be met
  Counter hedged_batches;                   // batches re-sent because their replica stalled
  std::array<Counter, 4> batch_cut_reasons; // full, deadline, wait_expired, queue_empty
  LatencyHistogram batch_latency_micros{kLatencyBoundsMicros, kMicrosToSeconds};  // observe microseconds
  BatchSizeHistogram batch_size{kBatchSizeBounds};

  // Guards `replicas` (the map, not the atomics). Taken after MetricsRegistry's mutex when rendering.
  mutable std::mutex replicas_mutex;
  std::map<int32_t, std::unique_ptr<ReplicaMetrics>> replicas;
};

class MetricsRegistry {
 public:
  AppMetrics* app(const std::string& name);
  ModelMetrics* model(const std::string& name, const std::string& version);
  std::string render_prometheus() const;

 private:
  void render_replicas(std::string& out) const;

  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<AppMetrics>> apps_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<ModelMetrics>> models_;
};

// Escapes a label value for the Prometheus text format.
std::string escape_label(const std::string& value);

}  // namespace clipper::metrics
