// How long a model version's batches take, as a function of batch size. The dispatcher feeds it
// answered batches; the planner, shedding and stall detection read it. Single-threaded: owned by the
// replica side's thread (the RPC thread), like the ModelVersion field that holds it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace clipper {

// Batch latency as a function of batch size, fitted online over recent batches
// (latency = fixed + per_input * size). Until two sizes were seen it scales the mean linearly.
//
// A backlogged replica runs full batches only, and the window's sizes then span too little to tell the
// fixed cost from the per-input cost: a least-squares line through them put a batch of one anywhere from
// a fraction of a millisecond to the full batch's time, run to run, and shedding reads that estimate.
// So the fit is kept physical and anchored:
//   - below kMinRelativeSpread (standard deviation of the sizes over their mean) the line runs through
//     the window's mean point and the anchor, kept outside the window: the latest batch that was the
//     smallest so far or at most kAnchorShare x the largest size seen, used when it is at most
//     kAnchorLeverage x the window's mean size; with no such anchor, the one-size rule. An anchor from
//     a quieter time keeps its fixed cost while the line's slope follows the window;
//   - the fixed cost is at least 0 and at most the fastest batch observed (every batch pays it); a
//     fitted intercept outside that range is clamped and the per-input cost refitted to match.
class LatencyModel {
 public:
  static constexpr std::size_t kWindow = 64;
  static constexpr double kMinRelativeSpread = 0.1;
  static constexpr double kAnchorShare = 0.25;
  static constexpr double kAnchorLeverage = 0.5;

  // The line the window gives, in the form estimate_micros evaluates: a multiply-add, or the one-size
  // rule's three pieces.
  struct Fit {
    bool one_size = true;  // no line: the one-size rule below (also before any sample: all zero)
    double intercept = 0;  // the line: intercept + slope * size
    double slope = 0;
    double smallest = 0;   // the one-size rule: `fastest` below `smallest`, `mean_y` up to `mean_x`,
    double fastest = 0;    // then mean_y scaled linearly
    double mean_x = 0;
    double mean_y = 0;
    double estimate(double size) const {
      if (!one_size) return intercept + slope * size;
      if (size < smallest) return fastest;
      return size <= mean_x ? mean_y : mean_y * size / mean_x;
    }
  };

  // O(1) per batch (running sums, not a pass over the window): it runs once per answered batch, on
  // the thread that serves the requests.
  void observe(std::size_t batch_size, int64_t latency_micros);
  bool has_samples() const { return count_ > 0; }
  // Estimated latency of a batch of `batch_size` inputs; 0 when nothing was observed yet. Read per
  // request and per batch, so it evaluates the fit that observe() computed (once per answered batch).
  double estimate_micros(std::size_t batch_size) const {
    return count_ == 0 ? 0.0 : fit_.estimate(static_cast<double>(batch_size));
  }
  // The fit computed afresh from the window and the anchor (what observe() keeps): for tests.
  Fit fit_window() const;
  // The largest size <= cap whose estimate fits in `budget_micros` (0 if even one does not fit);
  // `cap` when nothing was observed yet.
  std::size_t largest_size_within(double budget_micros, std::size_t cap) const;

 private:
  struct Sample {
    double size;
    double latency;
  };
  // The window's sums, in integers (sizes and microseconds are whole): exact, so sums kept across
  // batches (add the new sample, subtract the one it replaces) equal sums taken afresh, bit for bit.
  struct Sums {
    __int128 x = 0, y = 0, xx = 0, xy = 0;
    void add(const Sample& sample, int sign);
  };
  Fit fit_sums(const Sums& sums, double smallest, double fastest) const;
  static void note_minimum(double value, double& minimum, std::size_t& at_minimum);
  void rescan_minima();

  std::array<Sample, kWindow> samples_{};
  std::size_t next_ = 0;
  std::size_t count_ = 0;
  double largest_size_ = 0;        // the largest batch ever observed
  std::optional<Sample> anchor_;   // the latest small batch (see above)
  Sums sums_;                      // over the window's samples
  double smallest_ = 0;            // the window's smallest size and fastest latency,
  double fastest_ = 0;
  std::size_t smallest_count_ = 0;  // and how many of its samples have them (batches of one: all)
  std::size_t fastest_count_ = 0;
  Fit fit_;                        // fit_window() as of the latest observe()
};

}  // namespace clipper
