#include "batching/batch_planner.h"

#include <gtest/gtest.h>

namespace clipper {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

LatencyModel linear_model() {
  LatencyModel model;  // 1000 us + 20 us per input
  for (int size : {1, 8, 16, 32, 64}) model.observe(size, 1000 + 20 * size);
  return model;
}

TEST(LatencyModel, FitsALine) {
  const LatencyModel model = linear_model();
  EXPECT_NEAR(model.estimate_micros(100), 3000, 1);
  EXPECT_EQ(model.largest_size_within(2000, 128), 50u);
  EXPECT_EQ(model.largest_size_within(500, 128), 0u);
}

TEST(LatencyModel, WithoutSamplesEverythingFits) {
  LatencyModel model;
  EXPECT_EQ(model.largest_size_within(1, 64), 64u);
  model.observe(10, 1000);
  EXPECT_NEAR(model.estimate_micros(20), 2000, 1) << "one size seen: scaled linearly";
  EXPECT_NEAR(model.estimate_micros(5), 1000, 1);
}

PlanInputs inputs(std::size_t queued, std::size_t target, Clock::time_point now) {
  PlanInputs plan;
  plan.queued = queued;
  plan.target_size = target;
  plan.now = now;
  plan.earliest_deadline = now + milliseconds(100);
  plan.waiting_since = now;
  return plan;
}

TEST(BatchPlanner, SendsAFullBatchAtOnce) {
  const auto now = Clock::now();
  const BatchPlan plan = plan_batch(inputs(100, 32, now), linear_model());
  EXPECT_TRUE(plan.send);
  EXPECT_EQ(plan.size, 32u);
  EXPECT_EQ(plan.reason, CutReason::Full);
}

TEST(BatchPlanner, SendsWhatIsQueuedWhenNotWaiting) {
  const auto now = Clock::now();
  const BatchPlan plan = plan_batch(inputs(5, 32, now), linear_model());
  EXPECT_TRUE(plan.send);
  EXPECT_EQ(plan.size, 5u);
  EXPECT_EQ(plan.reason, CutReason::QueueEmpty);
}

TEST(BatchPlanner, SizesTheBatchSoTheEarliestDeadlineCanBeMet) {
  const auto now = Clock::now();
  PlanInputs plan_inputs = inputs(100, 64, now);
  plan_inputs.earliest_deadline = now + microseconds(1500);  // room for 25 inputs
  const BatchPlan plan = plan_batch(plan_inputs, linear_model());
  EXPECT_TRUE(plan.send);
  EXPECT_EQ(plan.size, 25u);
  EXPECT_EQ(plan.reason, CutReason::Deadline);
}

TEST(BatchPlanner, DelayedBatchingWaitsThenSends) {
  const auto now = Clock::now();
  PlanInputs plan_inputs = inputs(5, 32, now);
  plan_inputs.batch_wait_timeout_micros = 2000;
  BatchPlan plan = plan_batch(plan_inputs, linear_model());
  EXPECT_FALSE(plan.send);
  EXPECT_EQ(plan.wake_at, now + microseconds(2000));
  plan_inputs.now = now + microseconds(2001);
  plan = plan_batch(plan_inputs, linear_model());
  EXPECT_TRUE(plan.send);
  EXPECT_EQ(plan.size, 5u);
  EXPECT_EQ(plan.reason, CutReason::WaitExpired);
}

TEST(BatchPlanner, NeverWaitsPastWhatTheDeadlineAllows) {
  const auto now = Clock::now();
  PlanInputs plan_inputs = inputs(5, 32, now);
  plan_inputs.batch_wait_timeout_micros = 50000;
  plan_inputs.earliest_deadline = now + microseconds(3000);  // a full batch takes 1640 us
  const BatchPlan plan = plan_batch(plan_inputs, linear_model());
  EXPECT_FALSE(plan.send);
  EXPECT_EQ(plan.wake_at, now + microseconds(3000 - 1640));
}

TEST(BatchPlanner, NothingQueuedSendsNothing) {
  EXPECT_FALSE(plan_batch(inputs(0, 8, Clock::now()), linear_model()).send);
}

}  // namespace
}  // namespace clipper
