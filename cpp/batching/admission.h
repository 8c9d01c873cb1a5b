// Admission control's view of one model version: how long a task queued now would take to be
// answered, from what the replica side measured. The RPC thread publishes, after each answered batch,
// the latency of a batch of one and of a full batch (the version's LatencyModel), the batch size its
// controllers use and how many replicas serve at full speed; an I/O thread reads that at a query's
// arrival, with the version's queue length, and refuses the query at once when the estimate does not
// fit in the time its SLO leaves. The estimate is a mean; what it leaves out (variance, a loaded
// machine, gaps between batches) shows as admitted tasks that still miss their deadline, so the RPC
// thread also keeps a correction factor (>= 1) that rises with every late task and decays with every
// punctual one, settling where about 1% of admitted tasks are late (a batch's tasks are late together,
// so one batch weighs as a few tasks at most). A version that answered no batch
// for kProbeAfter (everything refused, say) is probed: with its queue empty and a replica idle, a query
// is admitted so the version is measured again, as it may have become faster. Relaxed atomics: a set of fields
// read while one is being replaced is still a usable estimate, and nothing here orders other memory.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "common/clock.h"
#include "common/latency_model.h"

namespace clipper {

// What the replica side measured, as one value (the estimator's input; tests build it directly).
struct ServiceSnapshot {
  double one_input_micros = 0;   // a batch of one: send, evaluate, answer
  double full_batch_micros = 0;  // a batch of `batch_size`
  int32_t batch_size = 1;        // what a backlogged replica is sent at a time
  int32_t serving_replicas = 1;  // replicas taking full batches (not slow)
  double correction = 1.0;       // multiplies the estimate: learned from late admitted tasks
  // The batch a busy replica is evaluating (the latest one sent), when known; 0 = a full batch.
  // Charging a full batch for it made admission self-limiting: behind small batches the estimate
  // stayed at a full batch's time, so queries were refused with the queue nearly empty, the queue
  // never held a bigger batch, and goodput settled at what small batches compute (issue 12).
  double busy_batch_micros = 0;
};

// Microseconds until the last of `count` tasks queued now, behind `queued` others, is answered:
// batches drained in rounds of `batch_size` per replica, plus the batch each replica is busy with
// when none is idle. Deliberately simple; the dispatcher's measurements keep it honest.
double estimate_wait_micros(const ServiceSnapshot& service, std::size_t queued, std::size_t count,
                            bool replicas_busy);

// Seconds a refused client should wait before trying again (the Retry-After header): the time the
// estimate overshoots by, rounded up, at least 1.
int64_t retry_after_seconds(double wait_micros, double left_micros);

class AdmissionGauge {
 public:
  // --- RPC thread ---
  // Refreshes the published snapshot from the version's latency model (no-op while it has no samples).
  void publish(const LatencyModel& latency, int32_t batch_size, int32_t serving_replicas);
  // Tasks answered by their deadline and tasks that missed it (late answer, expired in the queue,
  // shed): each late one raises the correction by kLateStep, each punctual one lowers it by kPunctualStep,
  // with one call (a batch, and the tasks observe_lost() reported since the last call) weighing at most
  // kOutcomesPerObservation tasks. `admitted` is when the newest of its tasks was admitted (queued),
  // `now` when it was made. Rounds, as TCP cuts its window at most once per round trip: a raise
  // starts a round, and observations whose tasks were all admitted before it belong to that round.
  // They were admitted under the smaller correction, whose shortfall the raise is answering, so
  // together they raise it at most kMaxRoundRaise, and their punctual outcomes do not lower it. Counted
  // batch by batch, one wave of late answers (a dozen consecutive late batches with one cause: the
  // queue grown to the SLO's worth when the replica stalled) multiplied the correction by ~6.5 in
  // 0.4 s; admission then drained the queue to a batch or two for seconds and the light model's goodput
  // at 2x ran a sawtooth between 0.8x and 1.07x of capacity (issue 12). Counted as ONE observation, a
  // wave raised it 1.17x while the punctual batches between waves still lowered it batch by batch:
  // the balance moved to 5-16% late (the simulated light model); at most twice per round keeps it near
  // 1-3% with the queue at several full batches. The defaults (admitted now, made at the epoch) count
  // every observation as news.
  void observe_outcomes(std::size_t punctual, std::size_t late,
                        Clock::time_point admitted = Clock::time_point::max(), Clock::time_point now = {});
  // Tasks that missed their deadline before evaluation (expired in the queue, shed), the newest of
  // them admitted at `admitted`. They are counted with the next observation (the next answered batch,
  // or relax()) instead of one call at a time:
  // such tasks share their cause like a batch's do, and the dispatcher finds them a few per sweep,
  // so counted per sweep a wave of expiries at an overload's onset multiplied the correction by 4-7
  // (kLateStep per task), and with it the estimate: admission then refused nearly everything for
  // seconds while only a trickle of small punctual batches brought it down (issue 12).
  void observe_lost(std::size_t count, Clock::time_point admitted = Clock::time_point::max()) {
    if (count == 0) return;
    pending_lost_ += count;
    pending_lost_admitted_ = std::max(pending_lost_admitted_, admitted);
  }
  // The batch just sent to a replica is estimated to take `micros`: what a query arriving while
  // every replica is busy waits for before the queue moves.
  void batch_sent(double micros) { busy_batch_micros_.store(micros, std::memory_order_relaxed); }
  // The correction's excess over 1 also halves every kRelaxHalfLife of silence: when everything is
  // refused, no task is punctual, and without this the correction would never come down. Only time
  // with no outcome counts (between two calls with no observe_outcomes in between): decaying while
  // outcomes flow too pulled the balance from ~1% late to ~2.5% for a model answering ~30 batches/s
  // (bench/overload.py's heavy model at 2x: evaluated work answered late, lost goodput).
  void relax(Clock::time_point now);
  // A batch of the version was answered at `now` (its estimate is fresh).
  void answered_at(Clock::time_point now) {
    answered_at_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
  }
  double correction() const { return correction_; }

  static constexpr double kLateStep = 1.02;
  static constexpr double kPunctualStep = 0.9998;  // ln ratio ~ 1/100: settles near 1% late
  static constexpr double kOutcomesPerObservation = 8.0;  // one call's weight at most (its tasks are correlated)
  static constexpr double kMaxCorrection = 8.0;
  static constexpr double kMaxRoundRaise = 2.0;  // one round's raise at most (TCP: halving once per round trip)
  static constexpr double kRelaxHalfLifeSeconds = 1.0;

  // --- any thread ---
  // The last published snapshot; empty until a batch of the version was measured.
  std::optional<ServiceSnapshot> snapshot() const;
  // No batch of the version was answered for kProbeAfter.
  bool stale(Clock::time_point now) const {
    return now.time_since_epoch().count() - answered_at_.load(std::memory_order_relaxed) >
           std::chrono::duration_cast<Clock::duration>(kProbeAfter).count();
  }

  static constexpr auto kProbeAfter = std::chrono::milliseconds(500);

 private:
  std::atomic<bool> measured_{false};
  std::atomic<double> one_input_micros_{0};
  std::atomic<double> full_batch_micros_{0};
  std::atomic<int32_t> batch_size_{1};
  std::atomic<int32_t> serving_replicas_{1};
  std::atomic<double> correction_published_{1.0};
  std::atomic<double> busy_batch_micros_{0};
  std::atomic<Clock::rep> answered_at_{0};
  double correction_ = 1.0;  // RPC thread only
  Clock::time_point relaxed_at_{};  // RPC thread only
  bool observed_since_relax_ = false;  // RPC thread only: an outcome arrived since the last relax()
  std::size_t pending_lost_ = 0;       // RPC thread only: observe_lost() since the last observation
  Clock::time_point pending_lost_admitted_ = Clock::time_point::min();  // RPC thread only: the newest of them
  Clock::time_point raised_at_ = Clock::time_point::min();  // RPC thread only: when the last round began
  double round_factor_ = 1.0;  // RPC thread only: that round's raise so far (<= kMaxRoundRaise)
};

}  // namespace clipper
