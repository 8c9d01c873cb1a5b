// The adaptive batch-size controller of one model replica (additive increase, multiplicative
// decrease, as in the Clipper paper). Update rule, applied after every answered batch:
//   latency > objective                  -> size = max(1, floor(size * backoff_factor)); hold for
//                                           `hold_batches` batches (no growth, so it does not
//                                           oscillate at the boundary)
//   latency <= objective, batch was full -> size = min(cap, size + additive_step) unless holding
//   otherwise                            -> unchanged (a partial batch says nothing about the limit)
// A fixed size (deploy with batch_size=k) disables adaptation. Owned by the RPC thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace clipper {

struct AimdOptions {
  int additive_step = 2;          // inputs added after a full batch under the objective
  double backoff_factor = 0.9;    // multiplier after a batch over the objective (paper: 10% back-off)
  int hold_batches = 8;           // batches without growth after a back-off
};

class AimdController {
 public:
  static constexpr std::size_t kRecentLatencies = 16;

  AimdController(AimdOptions options, int initial_size, int cap);

  // The largest batch to send next.
  int batch_size() const { return size_; }

  // A fixed size k > 0 pins the controller to min(k, cap); -1 restores adaptation.
  void set_fixed_size(int fixed_size);
  void set_cap(int cap);
  bool adaptive() const { return fixed_size_ <= 0; }

  // Records one answered batch of `sent` inputs that took `latency_micros`, against the objective.
  void observe(int sent, int64_t latency_micros, int64_t objective_micros);

  // The last kRecentLatencies batch latencies, oldest first, and how many are valid.
  std::array<int64_t, kRecentLatencies> recent_latencies(std::size_t& count) const;
  uint64_t backoffs() const { return backoffs_; }

 private:
  AimdOptions options_;
  int size_;
  int cap_;
  int fixed_size_ = -1;
  int hold_remaining_ = 0;
  uint64_t backoffs_ = 0;
  std::array<int64_t, kRecentLatencies> recent_{};
  std::size_t recent_next_ = 0;
  std::size_t recent_count_ = 0;
};

}  // namespace clipper
