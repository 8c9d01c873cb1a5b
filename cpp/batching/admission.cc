#include "batching/admission.h"

#include <algorithm>
#include <cmath>

namespace clipper {

namespace {

// Latency of a batch of `size` (1..batch_size): the line through the two published points. The
// latency model is a line too (fixed + per input), so this is exact where its fit is.
double batch_micros(const ServiceSnapshot& service, std::size_t size) {
  if (service.batch_size <= 1 || size <= 1) return service.one_input_micros;
  const double share = static_cast<double>(size - 1) / static_cast<double>(service.batch_size - 1);
  return service.one_input_micros + (service.full_batch_micros - service.one_input_micros) * share;
}

}  // namespace

double estimate_wait_micros(const ServiceSnapshot& service, std::size_t queued, std::size_t count,
                            bool replicas_busy) {
  const std::size_t per_replica = static_cast<std::size_t>(std::max(service.batch_size, 1));
  const std::size_t replicas = static_cast<std::size_t>(std::max(service.serving_replicas, 1));
  const std::size_t per_round = per_replica * replicas;
  const std::size_t total = queued + std::max<std::size_t>(count, 1);
  // Full rounds before the one holding the last task, then that round's batches (split over the replicas).
  const std::size_t rounds_before = (total - 1) / per_round;
  const std::size_t in_last_round = total - rounds_before * per_round;
  const std::size_t last_batch = (in_last_round + replicas - 1) / replicas;
  double wait = static_cast<double>(rounds_before) * service.full_batch_micros + batch_micros(service, last_batch);
  // Every replica is evaluating a batch: the queue starts moving only when one answers.
  if (replicas_busy) wait += service.busy_batch_micros > 0 ? service.busy_batch_micros : service.full_batch_micros;
  return wait * std::max(service.correction, 1.0);
}

int64_t retry_after_seconds(double wait_micros, double left_micros) {
  const double over_seconds = (wait_micros - std::max(left_micros, 0.0)) / 1e6;
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(over_seconds)));
}

void AdmissionGauge::publish(const LatencyModel& latency, int32_t batch_size, int32_t serving_replicas) {
  if (!latency.has_samples()) return;
  batch_size = std::max(batch_size, 1);
  one_input_micros_.store(latency.estimate_micros(1), std::memory_order_relaxed);
  full_batch_micros_.store(latency.estimate_micros(static_cast<std::size_t>(batch_size)), std::memory_order_relaxed);
  batch_size_.store(batch_size, std::memory_order_relaxed);
  serving_replicas_.store(std::max(serving_replicas, 1), std::memory_order_relaxed);
  measured_.store(true, std::memory_order_relaxed);
}

void AdmissionGauge::observe_outcomes(std::size_t punctual, std::size_t late, Clock::time_point admitted,
                                      Clock::time_point now) {
  if (pending_lost_ > 0) {
    late += pending_lost_;
    admitted = punctual + late > pending_lost_ ? std::max(admitted, pending_lost_admitted_) : pending_lost_admitted_;
    pending_lost_ = 0;
    pending_lost_admitted_ = Clock::time_point::min();
  }
  if (punctual == 0 && late == 0) return;
  observed_since_relax_ = true;
  // The tasks of one observation share their fate (one slow batch makes all its marginal tasks late
  // together): counted one by one, a single late batch of 128 multiplied the correction by ~13 and
  // admission then starved the replica. So an observation weighs at most kOutcomesPerObservation
  // tasks, split by its late share; the balance point (about 1% late) stays where it was.
  const double total = static_cast<double>(punctual + late);
  const double weight = std::min(1.0, kOutcomesPerObservation / total);
  const double factor = std::pow(kLateStep, static_cast<double>(late) * weight) *
                        std::pow(kPunctualStep, static_cast<double>(punctual) * weight);
  if (admitted <= raised_at_) {
    // Every task of the observation was admitted before the last raise, under the smaller
    // correction: the round of the observation that raised it, whose raises add up to at most
    // kMaxRoundRaise. Its punctual outcomes are old news too: decaying on them while the round's
    // late ones were discounted settled at 11-16% late in the simulated light model.
    if (factor > 1.0 && round_factor_ < kMaxRoundRaise) {
      const double raised = std::min(round_factor_ * factor, kMaxRoundRaise);
      correction_ = std::clamp(correction_ / round_factor_ * raised, 1.0, kMaxCorrection);
      round_factor_ = raised;
    }
  } else {
    if (factor > 1.0) {
      raised_at_ = now;
      round_factor_ = factor;
    }
    correction_ = std::clamp(correction_ * factor, 1.0, kMaxCorrection);
  }
  correction_published_.store(correction_, std::memory_order_relaxed);
}

void AdmissionGauge::relax(Clock::time_point now) {
  // Lost tasks wait for the next answered batch (which calls relax() first, then observe_outcomes()):
  // flushed here only when no outcome arrived since the last relax(), so never twice per batch.
  if (pending_lost_ > 0 && !observed_since_relax_) observe_outcomes(0, 0, Clock::time_point::min(), now);
  if (relaxed_at_ != Clock::time_point{} && now > relaxed_at_ && !observed_since_relax_) {
    const double seconds = std::chrono::duration<double>(now - relaxed_at_).count();
    correction_ = 1.0 + (correction_ - 1.0) * std::exp2(-seconds / kRelaxHalfLifeSeconds);
    correction_published_.store(correction_, std::memory_order_relaxed);
  }
  relaxed_at_ = now;
  observed_since_relax_ = false;
}

std::optional<ServiceSnapshot> AdmissionGauge::snapshot() const {
  if (!measured_.load(std::memory_order_relaxed)) return std::nullopt;
  ServiceSnapshot service;
  service.one_input_micros = one_input_micros_.load(std::memory_order_relaxed);
  service.full_batch_micros = full_batch_micros_.load(std::memory_order_relaxed);
  service.batch_size = batch_size_.load(std::memory_order_relaxed);
  service.serving_replicas = serving_replicas_.load(std::memory_order_relaxed);
  service.correction = correction_published_.load(std::memory_order_relaxed);
  service.busy_batch_micros = busy_batch_micros_.load(std::memory_order_relaxed);
  return service;
}

}  // namespace clipper
