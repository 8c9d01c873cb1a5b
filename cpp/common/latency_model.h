// How long a model version's batches take, as a function of batch size. The dispatcher feeds it
// answered batches; the planner, shedding and stall detection read it. Single-threaded: owned by the
// replica side's thread (the RPC thread), like the ModelVersion field that holds it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace clipper {

// Batch latency as a function of batch size, fitted online by least squares over recent batches
// (latency = fixed + per_input * size). Until two sizes were seen it scales the mean linearly.
class LatencyModel {
 public:
  static constexpr std::size_t kWindow = 64;

  void observe(std::size_t batch_size, int64_t latency_micros);
  bool has_samples() const { return count_ > 0; }
  // Estimated latency of a batch of `batch_size` inputs; 0 when nothing was observed yet.
  double estimate_micros(std::size_t batch_size) const;
  // The largest size <= cap whose estimate fits in `budget_micros` (0 if even one does not fit);
  // `cap` when nothing was observed yet.
  std::size_t largest_size_within(double budget_micros, std::size_t cap) const;

 private:
  struct Sample {
    double size;
    double latency;
  };
  std::array<Sample, kWindow> samples_{};
  std::size_t next_ = 0;
  std::size_t count_ = 0;
};

}  // namespace clipper
