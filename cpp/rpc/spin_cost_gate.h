// Whether the I/O loop's spin for answers still pays for itself in CPU (shm_response_spin_cost_micros).
//
// A spin that catches an answer saves the loop a sleep and a wake-up (epoll_wait returning, a context
// switch) and the replica a doorbell; a spin that runs out, or catches late, costs more CPU than that.
// When the loop and the replica turn batches around quickly (one client waiting on each answer) a
// spin catches its answer within microseconds; under open-loop load the replica sleeps between
// batches and must be woken on a CPU that idled, so a spin waits longer per answer it catches or
// misses. Measured per spin, the CPU a spin costs per answer it catches tells the two apart where
// the request rate does not (one connection in a closed loop runs more requests per second than
// 20,000/s offered in an open loop), so that is what the gate bounds:
//
//   cost = (average microseconds per spin) / (average share of spins that caught an answer),
//
// both averaged exponentially over recent spins (weight 1/16 each). While the cost is above the bound
// the loop sleeps without spinning, but for a probe spin that notices when answers come quickly
// again: after 16 sleeps, then after twice as many each time a probe costs more than the bound too
// (up to 256), so that under steady load the probes' own cost stays a small fraction of a spin per
// sleep; a probe that catches its answer within the bound brings them back to every 16 sleeps. A
// bound of 0 lets every spin run (the ungated spin).
// Thread: the loop's one thread.
#pragma once

#include <algorithm>
#include <cstdint>

namespace clipper {

class SpinCostGate {
 public:
  static constexpr uint32_t kProbeEvery = 16;       // sleeps before a probe, at first
  static constexpr uint32_t kMaxProbeEvery = 256;   // ... and at most
  static constexpr double kWeight = 1.0 / 16;

  SpinCostGate() = default;
  explicit SpinCostGate(uint32_t bound_micros) : bound_nanos_(static_cast<double>(bound_micros) * 1000.0) {}

  // Before a spin: may it run?
  bool allow() {
    probing_ = false;
    if (bound_nanos_ == 0 || within_bound()) {
      sleeps_since_spin_ = 0;
      return true;
    }
    if (++sleeps_since_spin_ >= probe_every_) {
      sleeps_since_spin_ = 0;
      probing_ = true;
      return true;
    }
    return false;
  }

  // After a spin that allow() let run: how long it took and whether it caught an answer.
  void spun(uint64_t nanos, bool caught) {
    spin_nanos_ += (static_cast<double>(nanos) - spin_nanos_) * kWeight;
    caught_share_ += ((caught ? 1.0 : 0.0) - caught_share_) * kWeight;
    if (!probing_) return;
    const bool cheap = caught && static_cast<double>(nanos) <= bound_nanos_;
    probe_every_ = cheap ? kProbeEvery : std::min(probe_every_ * 2, kMaxProbeEvery);
  }

  uint32_t probe_every() const { return probe_every_; }

  // Spinning's recent CPU per answer caught, in nanoseconds (a very large value when none caught).
  double cost_nanos() const { return caught_share_ > 1e-9 ? spin_nanos_ / caught_share_ : 1e18; }
  bool within_bound() const { return spin_nanos_ <= bound_nanos_ * caught_share_; }

 private:
  double bound_nanos_ = 0;
  // Optimistic start: the first spins run, and their outcome decides.
  double spin_nanos_ = 0;
  double caught_share_ = 1;
  uint32_t sleeps_since_spin_ = 0;
  uint32_t probe_every_ = kProbeEvery;
  bool probing_ = false;  // the spin allow() let run last is a probe
};

}  // namespace clipper
