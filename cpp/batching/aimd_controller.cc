#include "batching/aimd_controller.h"

#include <algorithm>
#include <cmath>

namespace clipper {

AimdController::AimdController(AimdOptions options, int initial_size, int cap)
    : options_(options), size_(std::clamp(initial_size, 1, std::max(cap, 1))), cap_(std::max(cap, 1)) {}

void AimdController::set_fixed_size(int fixed_size) {
  fixed_size_ = fixed_size;
  if (fixed_size_ > 0) size_ = std::min(fixed_size_, cap_);
}

void AimdController::set_cap(int cap) {
  cap_ = std::max(cap, 1);
  size_ = std::min(fixed_size_ > 0 ? fixed_size_ : size_, cap_);
}

void AimdController::observe(int sent, int64_t latency_micros, int64_t objective_micros) {
  recent_[recent_next_] = latency_micros;
  recent_next_ = (recent_next_ + 1) % kRecentLatencies;
  recent_count_ = std::min(recent_count_ + 1, kRecentLatencies);
  if (fixed_size_ > 0) return;
  if (latency_micros > objective_micros) {
    size_ = std::max(1, static_cast<int>(std::floor(size_ * options_.backoff_factor)));
    hold_remaining_ = options_.hold_batches;
    ++backoffs_;
    return;
  }
  if (hold_remaining_ > 0) {
    --hold_remaining_;
    return;
  }
  if (sent >= size_) size_ = std::min(cap_, size_ + options_.additive_step);
}

std::array<int64_t, AimdController::kRecentLatencies> AimdController::recent_latencies(std::size_t& count) const {
  std::array<int64_t, kRecentLatencies> ordered{};
  count = recent_count_;
  const std::size_t start = (recent_next_ + kRecentLatencies - recent_count_) % kRecentLatencies;
  for (std::size_t i = 0; i < recent_count_; ++i) ordered[i] = recent_[(start + i) % kRecentLatencies];
  return ordered;
}

}  // namespace clipper
