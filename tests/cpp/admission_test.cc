#include "batching/admission.h"

#include <gtest/gtest.h>

#include <cmath>
#include <deque>
#include <iostream>
#include <limits>
#include <random>

#include "batching/aimd_controller.h"

namespace clipper {
namespace {

// W3's model, as the overload figures use it: 1 ms + 20 us per input, batches of 100.
ServiceSnapshot w3_service(int32_t replicas = 1) {
  ServiceSnapshot service;
  service.one_input_micros = 1020;
  service.full_batch_micros = 3000;
  service.batch_size = 100;
  service.serving_replicas = replicas;
  return service;
}

TEST(AdmissionEstimate, AnEmptyQueueWaitsForItsOwnBatchOnly) {
  EXPECT_DOUBLE_EQ(estimate_wait_micros(w3_service(), 0, 1, false), 1020);
  // Every replica busy: the batch in flight finishes first.
  EXPECT_DOUBLE_EQ(estimate_wait_micros(w3_service(), 0, 1, true), 1020 + 3000);
}

TEST(AdmissionEstimate, ABatchOfInputsCostsItsBatchSize) {
  // 50 inputs on an empty queue: one batch of 50, on the line between 1 and 100.
  EXPECT_NEAR(estimate_wait_micros(w3_service(), 0, 50, false), 1020 + (3000 - 1020) * 49.0 / 99.0, 1e-6);
}

TEST(AdmissionEstimate, QueuedTasksDrainInFullRounds) {
  // 99 queued + this one: one full batch. 100 queued: a full batch first, then this one alone.
  EXPECT_DOUBLE_EQ(estimate_wait_micros(w3_service(), 99, 1, false), 3000);
  EXPECT_DOUBLE_EQ(estimate_wait_micros(w3_service(), 100, 1, false), 3000 + 1020);
  EXPECT_DOUBLE_EQ(estimate_wait_micros(w3_service(), 1000, 1, false), 10 * 3000 + 1020);
}

TEST(AdmissionEstimate, ReplicasShareTheQueue) {
  // Two replicas drain 200 per round; the last round splits its tasks over both.
  EXPECT_DOUBLE_EQ(estimate_wait_micros(w3_service(2), 1000, 1, false), 5 * 3000 + 1020);
  EXPECT_DOUBLE_EQ(estimate_wait_micros(w3_service(2), 199, 1, false), 3000);
  EXPECT_LT(estimate_wait_micros(w3_service(2), 5000, 1, true), estimate_wait_micros(w3_service(1), 5000, 1, true));
}

TEST(AdmissionEstimate, RisesWithTheQueueSoABurstIsSeenAtOnce) {
  double previous = 0;
  for (std::size_t queued = 0; queued <= 10000; queued += 250) {
    const double wait = estimate_wait_micros(w3_service(), queued, 1, true);
    EXPECT_GE(wait, previous) << queued;
    previous = wait;
  }
  // Capacity is 100 / 3 ms = 33,333/s: a 100 ms SLO holds about 3,300 queued tasks, not 4,000.
  EXPECT_LT(estimate_wait_micros(w3_service(), 3000, 1, true), 100000);
  EXPECT_GT(estimate_wait_micros(w3_service(), 4000, 1, true), 100000);
}

TEST(AdmissionEstimate, LightLoadIsAdmittedEvenWithTheLargestBatchTheControllerAllows) {
  // The AIMD objective lets a batch take 0.4 of the SLO: behind one such batch, a query arriving
  // at an empty queue still fits in the SLO.
  ServiceSnapshot service;
  service.one_input_micros = 20000;
  service.full_batch_micros = 40000;
  service.batch_size = 64;
  EXPECT_LT(estimate_wait_micros(service, 0, 1, true), 100000);
  EXPECT_LT(estimate_wait_micros(service, 10, 1, true), 100000);
}

TEST(AdmissionEstimate, NeverDividesByZero) {
  ServiceSnapshot service;  // batch size and replicas may be published as 0 while none serves
  service.batch_size = 0;
  service.serving_replicas = 0;
  service.one_input_micros = 500;
  service.full_batch_micros = 500;
  EXPECT_DOUBLE_EQ(estimate_wait_micros(service, 3, 0, false), 4 * 500);
}

TEST(RetryAfter, RoundsTheOvershootUpToWholeSecondsAtLeastOne) {
  EXPECT_EQ(retry_after_seconds(120000, 100000), 1);
  EXPECT_EQ(retry_after_seconds(2500000, 100000), 3);
  EXPECT_EQ(retry_after_seconds(100, -5000), 1);
}

TEST(AdmissionGauge, PublishesNothingUntilABatchWasMeasured) {
  AdmissionGauge gauge;
  LatencyModel latency;
  gauge.publish(latency, 32, 1);
  EXPECT_FALSE(gauge.snapshot().has_value());

  for (int size : {1, 8, 16, 32}) latency.observe(size, 1000 + 20 * size);
  gauge.publish(latency, 32, 2);
  const auto service = gauge.snapshot();
  ASSERT_TRUE(service.has_value());
  EXPECT_NEAR(service->one_input_micros, 1020, 1);
  EXPECT_NEAR(service->full_batch_micros, 1640, 1);
  EXPECT_EQ(service->batch_size, 32);
  EXPECT_EQ(service->serving_replicas, 2);

  gauge.publish(latency, 0, 0);  // nobody serving at full speed: still one replica and batches of one
  EXPECT_EQ(gauge.snapshot()->batch_size, 1);
  EXPECT_EQ(gauge.snapshot()->serving_replicas, 1);
}

TEST(AdmissionGauge, LateTasksRaiseTheCorrectionAndPunctualOnesBringItBackToOne) {
  AdmissionGauge gauge;
  LatencyModel latency;
  latency.observe(4, 20000);
  gauge.publish(latency, 4, 1);
  const double plain = estimate_wait_micros(*gauge.snapshot(), 30, 1, true);
  EXPECT_DOUBLE_EQ(gauge.snapshot()->correction, 1.0);

  for (int batch = 0; batch < 10; ++batch) gauge.observe_outcomes(0, 1);  // ten admitted tasks missed their deadline
  EXPECT_NEAR(gauge.correction(), std::pow(AdmissionGauge::kLateStep, 10), 1e-9);
  EXPECT_GT(estimate_wait_micros(*gauge.snapshot(), 30, 1, true), 1.2 * plain);

  for (int batch = 0; batch < 10000; ++batch) gauge.observe_outcomes(100, 0);  // then a long run on time: back to the plain estimate, never below
  EXPECT_DOUBLE_EQ(gauge.correction(), 1.0);
  EXPECT_DOUBLE_EQ(estimate_wait_micros(*gauge.snapshot(), 30, 1, true), plain);

  for (int batch = 0; batch < 10000; ++batch) gauge.observe_outcomes(0, 100);  // bounded however many are late
  EXPECT_DOUBLE_EQ(gauge.correction(), AdmissionGauge::kMaxCorrection);
}

TEST(AdmissionGauge, SettlesWhereAboutOneTaskInAHundredIsLate) {
  AdmissionGauge gauge;
  for (int round = 0; round < 1000; ++round) gauge.observe_outcomes(99, 1);
  const double at_one_percent = gauge.correction();
  for (int round = 0; round < 1000; ++round) gauge.observe_outcomes(95, 5);
  EXPECT_GT(gauge.correction(), at_one_percent * 2) << "5% late keeps raising it";
  for (int round = 0; round < 1000; ++round) gauge.observe_outcomes(100, 0);
  EXPECT_LT(gauge.correction(), at_one_percent * 2);
}

TEST(AdmissionGauge, ALateBatchWeighsAsAFewTasksNotAsManyAsItHeld) {
  // One slow batch of 128 makes its marginal tasks late together: counted one by one it multiplied
  // the correction by ~13, admission then refused nearly everything and the replica ran batches of 1-5.
  AdmissionGauge gauge;
  gauge.observe_outcomes(0, 128);
  EXPECT_NEAR(gauge.correction(), std::pow(AdmissionGauge::kLateStep, AdmissionGauge::kOutcomesPerObservation), 1e-9);
  EXPECT_LT(gauge.correction(), 1.2);
  // A batch counts by its late share: half of 64 late weighs as half of kOutcomesPerObservation.
  AdmissionGauge half;
  half.observe_outcomes(0, 8);
  const double raised = half.correction();
  half.observe_outcomes(32, 32);
  EXPECT_NEAR(half.correction(),
              raised * std::pow(AdmissionGauge::kLateStep, 4) * std::pow(AdmissionGauge::kPunctualStep, 4), 1e-9);
  // Small observations count task by task, as before.
  AdmissionGauge small;
  small.observe_outcomes(0, 3);
  EXPECT_NEAR(small.correction(), std::pow(AdmissionGauge::kLateStep, 3), 1e-9);
}

TEST(AdmissionGauge, LargeBatchesSettleWhereAboutOneTaskInAHundredIsLateToo) {
  AdmissionGauge gauge;
  for (int batch = 0; batch < 1000; ++batch) gauge.observe_outcomes(126, 2);  // ~1.6% late: rises
  const double above = gauge.correction();
  EXPECT_GT(above, 1.5);
  for (int batch = 0; batch < 1000; ++batch) gauge.observe_outcomes(128, 0);  // on time: comes back down
  EXPECT_LT(gauge.correction(), above);
  AdmissionGauge balanced;
  for (int batch = 0; batch < 1000; ++batch) balanced.observe_outcomes(127, 1);  // ~0.8% late: stays near 1
  EXPECT_LT(balanced.correction(), 1.1);
}

TEST(AdmissionGauge, TheCorrectionComesDownWithTimeEvenWhenNothingIsAdmitted) {
  AdmissionGauge gauge;
  const Clock::time_point start = Clock::now();
  for (int batch = 0; batch < 1000; ++batch) gauge.observe_outcomes(0, 100);  // at its bound
  gauge.relax(start);  // the interval up to here had outcomes: nothing decays
  EXPECT_DOUBLE_EQ(gauge.correction(), AdmissionGauge::kMaxCorrection);
  gauge.relax(start + std::chrono::seconds(1));  // one silent half-life: the excess over 1 halves
  EXPECT_NEAR(gauge.correction(), 1.0 + (AdmissionGauge::kMaxCorrection - 1.0) / 2, 1e-9);
  gauge.relax(start + std::chrono::seconds(30));
  EXPECT_NEAR(gauge.correction(), 1.0, 1e-6);
}

TEST(AdmissionGauge, OnlySilentTimeRelaxesSoAFlowOfLateTasksStillRaisesTheCorrection) {
  // bench/overload.py's heavy model at 2x: ~30 batches of 128 a second, each relaxing the gauge.
  // Decaying between batches too settled it where ~2.5% of admitted tasks were late (evaluated, then
  // answered with the default): 2.3% late must keep raising it, as without relax().
  AdmissionGauge gauge;
  Clock::time_point now = Clock::now();
  gauge.relax(now);
  for (int batch = 0; batch < 300; ++batch) {  // ten seconds
    now += std::chrono::milliseconds(33);
    gauge.relax(now);
    gauge.observe_outcomes(125, 3);
  }
  EXPECT_GT(gauge.correction(), 1.5);
  // Balanced (under 1% late), the flow brings it back down by itself.
  for (int batch = 0; batch < 3000; ++batch) {
    now += std::chrono::milliseconds(33);
    gauge.relax(now);
    gauge.observe_outcomes(128, batch % 2);
  }
  EXPECT_LT(gauge.correction(), 1.1);
  // Silence (everything refused): the relaxation takes it the rest of the way.
  gauge.relax(now + std::chrono::seconds(1));
  gauge.relax(now + std::chrono::seconds(30));
  EXPECT_NEAR(gauge.correction(), 1.0, 1e-6);
}

TEST(AdmissionEstimate, ABusyReplicaIsChargedTheBatchItWasSentNotAFullOne) {
  // Behind a batch of 10 (1,200 us), not behind a full one (3,000 us): charged a full batch, a replica
  // running small batches looked as slow as one running full ones (issue 12).
  ServiceSnapshot service = w3_service();
  service.busy_batch_micros = 1200;
  EXPECT_DOUBLE_EQ(estimate_wait_micros(service, 0, 1, true), 1020 + 1200);
  EXPECT_DOUBLE_EQ(estimate_wait_micros(service, 99, 1, true), 3000 + 1200);
  EXPECT_DOUBLE_EQ(estimate_wait_micros(service, 99, 1, false), 3000) << "an idle replica waits for nothing";

  AdmissionGauge gauge;
  LatencyModel latency;
  for (int size : {1, 50, 100}) latency.observe(size, 1000 + 20 * size);
  gauge.publish(latency, 100, 1);
  EXPECT_DOUBLE_EQ(gauge.snapshot()->busy_batch_micros, 0) << "nothing sent yet: a full batch is charged";
  gauge.batch_sent(latency.estimate_micros(10));
  EXPECT_NEAR(gauge.snapshot()->busy_batch_micros, 1200, 1);
  EXPECT_NEAR(estimate_wait_micros(*gauge.snapshot(), 0, 1, true), 1020 + 1200, 1);
}

TEST(AdmissionGauge, TasksLostBeforeEvaluationWeighAsOneObservationPerBatch) {
  // An overload's onset: 120 tasks expire, found a few per dispatcher sweep. Counted per sweep they
  // multiplied the correction by 1.02^120 ~ 11 (capped at 8); now they wait for the next observation.
  AdmissionGauge gauge;
  for (int sweep = 0; sweep < 60; ++sweep) gauge.observe_lost(2);
  EXPECT_DOUBLE_EQ(gauge.correction(), 1.0) << "not counted yet";
  gauge.observe_outcomes(8, 0);  // the next answered batch: 8 on time, 120 lost, as one observation
  EXPECT_NEAR(gauge.correction(),
              std::pow(AdmissionGauge::kLateStep, 8.0 * 120 / 128) * std::pow(AdmissionGauge::kPunctualStep, 8.0 * 8 / 128),
              1e-9);
  // No batch answered (all refused or shed): relax() counts them, once.
  AdmissionGauge silent;
  const Clock::time_point now = Clock::now();
  silent.relax(now);
  for (int sweep = 0; sweep < 60; ++sweep) silent.observe_lost(2);
  silent.relax(now + std::chrono::milliseconds(10));
  EXPECT_NEAR(silent.correction(), std::pow(AdmissionGauge::kLateStep, AdmissionGauge::kOutcomesPerObservation), 1e-9);
  silent.relax(now + std::chrono::milliseconds(20));  // nothing new: it does not count them again
  EXPECT_LE(silent.correction(), std::pow(AdmissionGauge::kLateStep, AdmissionGauge::kOutcomesPerObservation));
  // Between two answered batches the engine calls relax() first, then observe_outcomes(): the lost
  // tasks and a late batch are one observation, not two.
  AdmissionGauge flowing;
  flowing.relax(now);
  flowing.observe_outcomes(128, 0);
  const double before = flowing.correction();
  for (int sweep = 0; sweep < 60; ++sweep) flowing.observe_lost(2);
  flowing.relax(now + std::chrono::milliseconds(26));
  EXPECT_DOUBLE_EQ(flowing.correction(), before) << "the lost tasks wait for the batch";
  flowing.observe_outcomes(0, 128);
  EXPECT_NEAR(flowing.correction(), before * std::pow(AdmissionGauge::kLateStep, AdmissionGauge::kOutcomesPerObservation),
              1e-9);
  // Lost tasks still raise it, batch after batch, as late answers do.
  AdmissionGauge steady;
  for (int batch = 0; batch < 200; ++batch) {
    steady.observe_lost(10);
    steady.observe_outcomes(118, 0);
  }
  EXPECT_GT(steady.correction(), 2.0);
}

TEST(AdmissionGauge, AWaveOfLateBatchesAdmittedBeforeTheRaiseIsOneRoundOfAtMostTwice) {
  // A dozen consecutive batches, every task late, all admitted before the first of them was answered:
  // counted batch by batch they multiplied the correction by 1.17^12 ~ 6.6 (issue 12's sawtooth).
  const double full_late = std::pow(AdmissionGauge::kLateStep, AdmissionGauge::kOutcomesPerObservation);
  const Clock::time_point t0 = Clock::now();
  const auto ms = [](int n) { return std::chrono::milliseconds(n); };
  AdmissionGauge gauge;
  gauge.observe_outcomes(0, 128, t0 - ms(10), t0);  // the first: a new round, x1.17
  EXPECT_NEAR(gauge.correction(), full_late, 1e-9);
  gauge.observe_outcomes(0, 128, t0 - ms(5), t0 + ms(4));  // same round: its raises add up...
  EXPECT_NEAR(gauge.correction(), full_late * full_late, 1e-9);
  for (int batch = 2; batch < 12; ++batch) gauge.observe_outcomes(0, 128, t0 - ms(1), t0 + ms(4 * batch));
  EXPECT_DOUBLE_EQ(gauge.correction(), AdmissionGauge::kMaxRoundRaise) << "...up to twice, not 6.6 times";
  // Punctual answers of tasks admitted before the raise are the same round's news: no decay either.
  for (int batch = 0; batch < 20; ++batch) gauge.observe_outcomes(128, 0, t0 - ms(1), t0 + ms(50));
  EXPECT_DOUBLE_EQ(gauge.correction(), AdmissionGauge::kMaxRoundRaise);
  // Tasks lost before evaluation, admitted before the raise, are part of the round too.
  gauge.observe_lost(50, t0 - ms(2));
  gauge.observe_outcomes(0, 128, t0 - ms(1), t0 + ms(60));
  EXPECT_DOUBLE_EQ(gauge.correction(), AdmissionGauge::kMaxRoundRaise);

  // A late batch admitted after the raise (under the raised correction) is news: a new round.
  gauge.observe_outcomes(0, 128, t0 + ms(1), t0 + ms(100));
  EXPECT_NEAR(gauge.correction(), AdmissionGauge::kMaxRoundRaise * full_late, 1e-9);
  // So are lost tasks admitted after it, which start the round after that.
  gauge.observe_lost(20, t0 + ms(101));
  gauge.observe_outcomes(0, 0, Clock::time_point::min(), t0 + ms(150));
  EXPECT_NEAR(gauge.correction(), AdmissionGauge::kMaxRoundRaise * full_late * full_late, 1e-9);
  // Punctual answers of tasks admitted after the last raise bring it down as before.
  const double raised = gauge.correction();
  gauge.observe_outcomes(128, 0, t0 + ms(151), t0 + ms(200));
  EXPECT_NEAR(gauge.correction(), raised * std::pow(AdmissionGauge::kPunctualStep, AdmissionGauge::kOutcomesPerObservation),
              1e-9);
}

TEST(AdmissionGauge, AFreshLateBatchRaisesItAgainAfterEachRound) {
  // Late tasks admitted after every raise keep raising it, round after round, up to its bound: a
  // real overload is still answered, one round trip at a time.
  AdmissionGauge gauge;
  Clock::time_point now = Clock::now();
  for (int round = 0; round < 40; ++round) {
    const Clock::time_point admitted = now + std::chrono::milliseconds(1);
    now += std::chrono::milliseconds(100);
    gauge.observe_outcomes(0, 128, admitted, now);
  }
  EXPECT_DOUBLE_EQ(gauge.correction(), AdmissionGauge::kMaxCorrection);
}

// A simulated trajectory of one of bench/overload.py's CPU models under overload (issue 12): one
// replica, a 100 ms SLO, AIMD against 40 ms, the gauge and estimate the engine uses, and a replica
// that takes min(queued, AIMD size) when it frees. Each task remembers when it was admitted, and the
// simulation reports outcomes as the dispatcher does (the newest task's admission, the time of the
// answer) unless `damped` is false: then the gauge counts every late task (the rule before the
// wave damping). Statistics cover the last `measured_s` seconds of `run_s`.
struct SimulatedModel {
  double fixed_micros = 1000;
  double per_input_micros = 200;
  double jitter_micros = 1000;  // uniform, per batch
  double stall_chance = 0;      // a batch's chance of a stall (the replica off its CPU a while)
  double stall_micros = 0;      // such a stall's length, uniform up to this
};

struct SimulationStart {
  int aimd_size = 115;         // the controller's size
  std::size_t window_size = 0;  // the latency window holds batches of this size (0: none measured)
  int late_batches = 0;         // observations of 8 late tasks before the start (an onset)
};

struct Trajectory {
  double goodput = 0;          // answers on time per second
  double offered = 0;          // arrivals per second
  double correction_mean = 0;  // over arrivals (Poisson: a time average)
  double correction_max = 0;
  double late_share = 0;       // admitted tasks answered late or lost, of those admitted
  std::size_t queue_min = 0;   // the queue a query found at arrival, at its smallest
};

Trajectory simulate_overload(const SimulatedModel& model, double rate_per_s, const SimulationStart& start,
                             bool publish_sent_batches, bool damped, double run_s = 10, double measured_s = 5,
                             uint64_t seed = 12) {
  constexpr double kSlo = 100000, kObjective = 40000;
  std::mt19937_64 random(seed);
  std::exponential_distribution<double> gap(rate_per_s / 1e6);  // per microsecond
  std::uniform_real_distribution<double> unit(0, 1);
  auto evaluate = [&](std::size_t n) {
    double micros = model.fixed_micros + model.per_input_micros * static_cast<double>(n) + model.jitter_micros * unit(random);
    if (model.stall_chance > 0 && unit(random) < model.stall_chance) micros += model.stall_micros * unit(random);
    return micros;
  };

  AimdController controller(AimdOptions{}, start.aimd_size, 128);
  LatencyModel latency;
  if (start.window_size > 0) {
    for (std::size_t i = 0; i < LatencyModel::kWindow; ++i) {
      latency.observe(start.window_size, static_cast<int64_t>(evaluate(start.window_size)));
    }
  }
  AdmissionGauge gauge;
  for (int i = 0; i < start.late_batches; ++i) gauge.observe_outcomes(0, 8);  // the onset's late tasks
  const Clock::time_point epoch = Clock::now();
  auto at = [&](double micros) { return epoch + std::chrono::microseconds(static_cast<int64_t>(micros)); };
  gauge.publish(latency, controller.batch_size(), 1);
  gauge.answered_at(at(0));

  std::deque<double> queue;   // admission times (a task's deadline is kSlo later)
  std::vector<double> batch;  // the admission times of the batch in flight
  double free_at = 0, batch_latency = 0, next_arrival = gap(random);
  const double end = run_s * 1e6, measured_from = end - measured_s * 1e6;
  double on_time = 0, arrivals = 0, admitted = 0, missed = 0, correction_sum = 0;
  Trajectory result;
  result.queue_min = std::numeric_limits<std::size_t>::max();
  auto observed_at = [&](double micros) { return damped ? at(micros) : Clock::time_point{}; };
  auto admitted_at = [&](double micros) { return damped ? at(micros) : Clock::time_point::max(); };
  auto dispatch = [&](double now) {  // the replica is free: expired tasks go, then what is queued
    std::size_t lost = 0;
    double newest_lost = 0;
    while (!queue.empty() && queue.front() + kSlo <= now) {
      newest_lost = queue.front();
      queue.pop_front();
      ++lost;
    }
    if (lost > 0) {
      gauge.observe_lost(lost, admitted_at(newest_lost));
      if (now >= measured_from) missed += static_cast<double>(lost);
    }
    if (queue.empty()) return;
    const std::size_t n = std::min<std::size_t>(queue.size(), static_cast<std::size_t>(controller.batch_size()));
    batch.assign(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(n));
    queue.erase(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(n));
    if (publish_sent_batches) gauge.batch_sent(latency.estimate_micros(n));
    batch_latency = evaluate(n);
    free_at = now + batch_latency;
  };
  while (next_arrival < end) {
    if (!batch.empty() && free_at <= next_arrival) {  // the replica answers
      std::size_t late = 0;
      for (double arrival : batch) late += arrival + kSlo < free_at ? 1 : 0;
      controller.observe(static_cast<int>(batch.size()), static_cast<int64_t>(batch_latency),
                         static_cast<int64_t>(kObjective));
      latency.observe(batch.size(), static_cast<int64_t>(batch_latency));
      gauge.relax(at(free_at));
      gauge.publish(latency, controller.batch_size(), 1);
      gauge.observe_outcomes(batch.size() - late, late, admitted_at(batch.back()), observed_at(free_at));
      gauge.answered_at(at(free_at));
      if (free_at >= measured_from) {
        on_time += static_cast<double>(batch.size() - late);
        missed += static_cast<double>(late);
      }
      batch.clear();
      dispatch(free_at);
      continue;
    }
    // An arrival: admitted when the estimate fits in the SLO (or as a probe of an idle, stale version).
    const double now = next_arrival;
    const bool busy = !batch.empty();
    const auto service = gauge.snapshot();
    bool admit = queue.empty() && !busy && gauge.stale(at(now));
    if (!admit && service) admit = estimate_wait_micros(*service, queue.size(), 1, busy) <= kSlo;
    if (!service) admit = true;
    if (now >= measured_from) {
      arrivals += 1;
      admitted += admit ? 1 : 0;
      correction_sum += gauge.correction();
      result.correction_max = std::max(result.correction_max, gauge.correction());
      result.queue_min = std::min(result.queue_min, queue.size());
    }
    if (admit) queue.push_back(now);
    if (!busy) dispatch(now);
    next_arrival += gap(random);
  }
  result.goodput = on_time / measured_s;
  result.offered = arrivals / measured_s;
  result.correction_mean = correction_sum / std::max(arrivals, 1.0);
  result.late_share = missed / std::max(on_time + missed, 1.0);
  return result;
}

// bench/overload.py's heavy CPU model (1 ms + 200 us per input, up to 1 ms of jitter) at 2x, started
// where the runs of record collapsed: the latency window full of batches of 13, AIMD at 115 and the
// correction raised by an onset's late tasks.
double collapsed_start_goodput(bool publish_sent_batches, int late_batches) {
  const SimulationStart start{115, 13, late_batches};
  return simulate_overload(SimulatedModel{}, 9000, start, publish_sent_batches, true).goodput;
}

TEST(AdmissionTrajectory, AnOverloadThatStartsWithSmallBatchesReachesFullOnes) {
  // Capacity with full batches: 128 / (1 ms + 25.6 ms + 0.5 ms jitter) ~ 4,720/s. The correction an
  // onset left: 1.02^(8 x 12) ~ 6.7 (bench/overload.py's probe saw 3.8 and 6.3 on this machine).
  const double capacity = 128 / 27.1e-3;
  const double goodput = collapsed_start_goodput(true, 12);
  EXPECT_GT(goodput, 0.9 * capacity) << goodput;
  // Charged a full batch while small ones run (the engine before issue 12's fix), the same start stays
  // collapsed: refused at an empty queue behind a batch of one, the replica gets a trickle of batches
  // of one, whose punctual answers bring the correction down by 0.02% each.
  const double collapsed = collapsed_start_goodput(false, 12);
  EXPECT_LT(collapsed, 0.5 * capacity) << collapsed;
}

TEST(AdmissionTrajectory, AWaveOfLateBatchesIsOneRoundSoTheQueueNeverDrains) {
  // bench/overload.py's light model (1 ms + 20 us per input, batches of 128) at 2x: ~270 batches a
  // second, so when the queue holds the SLO's worth, one stall of the replica (up to 30 ms, one batch
  // in 500) makes a dozen consecutive batches late. Counted batch by batch (x1.17 each), that wave
  // raised the correction to 6.5-8 and admission drained the queue to about one batch for seconds:
  // the real system's goodput ran a sawtooth (issue 12). As one round (at most x2), the correction
  // stays low and the queue holds several full batches, while about as few tasks are late.
  // (Seeds 1-6 besides this one: damped mean 1.49-1.72, max 2.3-3.9, queue min 627-1177, late
  // 1.4-3.1%; counted mean 2.3-3.4, max 6.6-8, queue min 112-176, late 1.1-2.0%.) This simulated
  // replica loses nothing to partial batches, so goodput barely tells the two apart here.
  SimulatedModel light;
  light.fixed_micros = 1000;
  light.per_input_micros = 20;
  light.jitter_micros = 400;
  light.stall_chance = 0.002;
  light.stall_micros = 30000;
  const double capacity = 128 / ((1000 + 20 * 128 + 200 + 0.002 * 15000) * 1e-6);  // ~33,800/s
  const SimulationStart start{128, 128, 0};
  const Trajectory damped = simulate_overload(light, 2 * capacity, start, true, true, 20, 15);
  const Trajectory counted = simulate_overload(light, 2 * capacity, start, true, false, 20, 15);
  for (const auto& [name, run] : {std::pair{"damped", damped}, std::pair{"counted", counted}}) {
    std::cout << name << ": goodput/capacity " << run.goodput / capacity << ", served/offered "
              << run.goodput / run.offered << ", correction mean " << run.correction_mean << " max "
              << run.correction_max << ", late share " << run.late_share << ", queue min " << run.queue_min << "\n";
  }
  EXPECT_GT(damped.goodput / damped.offered, 0.47);
  EXPECT_LT(damped.correction_mean, 2.0);
  EXPECT_LT(damped.correction_max, 4.5);
  EXPECT_GT(damped.queue_min, 4u * 128);
  EXPECT_LT(damped.late_share, 0.035);
  // Every late task counted (the rule before rounds), same arrivals and stalls: the sawtooth.
  EXPECT_GT(counted.correction_mean, 2.0);
  EXPECT_GT(counted.correction_max, 6.0);
  EXPECT_LT(counted.queue_min, 2u * 128);
}

TEST(AdmissionTrajectory, RoundsKeepTheHeavyModelsBalanceNearOnePercentLate) {
  // The heavy model answers ~37 batches a second, a round (~100 ms) is three or four batches: rounds
  // change little there. Started at full batches, 2x for 30 s (25 measured), one batch in 100 stalling
  // up to 30 ms: late 0.90% (every late task counted: 0.92%), correction mean 1.26 (1.26). Seeds 3 and
  // 5: late 0.96% and 0.94% (1.01%, 1.02%); without stalls 0.88% (1.00-1.02%), mean 1.11 both.
  SimulatedModel heavy;
  heavy.stall_chance = 0.01;
  heavy.stall_micros = 30000;
  const double capacity = 128 / 27.1e-3;
  const SimulationStart start{128, 128, 0};
  const Trajectory damped = simulate_overload(heavy, 2 * capacity, start, true, true, 30, 25);
  const Trajectory counted = simulate_overload(heavy, 2 * capacity, start, true, false, 30, 25);
  EXPECT_LT(damped.late_share, 0.015) << damped.late_share;
  EXPECT_GT(damped.late_share, 0.005) << "the balance is about 1% late, not none: " << damped.late_share;
  EXPECT_NEAR(damped.correction_mean, counted.correction_mean, 0.1);
  EXPECT_GT(damped.goodput, 0.95 * capacity) << damped.goodput;
}

TEST(AdmissionGauge, IsStaleOnceNoBatchWasAnsweredForTheProbeInterval) {
  AdmissionGauge gauge;
  const Clock::time_point now = Clock::now();
  EXPECT_TRUE(gauge.stale(now)) << "never answered";
  gauge.answered_at(now);
  EXPECT_FALSE(gauge.stale(now + AdmissionGauge::kProbeAfter / 2));
  EXPECT_TRUE(gauge.stale(now + AdmissionGauge::kProbeAfter + std::chrono::milliseconds(1)));
}

}  // namespace
}  // namespace clipper
