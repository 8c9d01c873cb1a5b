#include "rpc/spin_cost_gate.h"

#include <gtest/gtest.h>

#include <vector>

namespace clipper {
namespace {

constexpr uint64_t kMicro = 1000;  // nanoseconds

TEST(SpinCostGate, WithoutABoundEverySpinRuns) {
  SpinCostGate gate(0);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(gate.allow());
    gate.spun(50 * kMicro, false);
  }
}

TEST(SpinCostGate, SpinsThatCatchTheirAnswerCheaplyKeepRunning) {
  SpinCostGate gate(7);
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(gate.allow()) << i;
    gate.spun(4 * kMicro, true);
  }
  EXPECT_NEAR(gate.cost_nanos(), 4 * kMicro, 1);
}

TEST(SpinCostGate, SpinsThatCatchLateStopAndProbeLessOftenWhileProbesCostTooMuch) {
  SpinCostGate gate(7);
  std::vector<int> allowed_at;
  for (int sleep = 0; sleep < 600; ++sleep) {
    if (!gate.allow()) continue;
    allowed_at.push_back(sleep);
    gate.spun(15 * kMicro, true);  // caught every time, but after 15 us: more than the 7 us bound
  }
  // The optimistic start lets the first ten through (the average, weighted 1/16, climbs past 7 us
  // on the 10th); then probes after 16, 32, 64, 128 and 256 sleeps, each as costly.
  const std::vector<int> expected = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 25, 57, 121, 249, 505};
  EXPECT_EQ(allowed_at, expected);
  EXPECT_EQ(gate.probe_every(), SpinCostGate::kMaxProbeEvery);
  EXPECT_GT(gate.cost_nanos(), 7 * kMicro);
  EXPECT_LE(gate.cost_nanos(), 15 * kMicro);
}

TEST(SpinCostGate, SpinsThatRunOutCostTheirWholeWindowPerAnswerCaught) {
  SpinCostGate gate(7);
  // Half of the spins catch at once, half run out after 20 us: 10 us per spin, half a catch each,
  // 20 us per answer caught.
  for (int i = 0; i < 400; ++i) gate.spun(i % 2 == 0 ? 0 : 20 * kMicro, i % 2 == 0);
  EXPECT_NEAR(gate.cost_nanos(), 20 * kMicro, 2 * kMicro);
  EXPECT_FALSE(gate.within_bound());
}

TEST(SpinCostGate, ProbesNoticeWhenAnswersComeQuicklyAgain) {
  SpinCostGate gate(7);
  for (int i = 0; i < 64; ++i) gate.spun(30 * kMicro, false);
  EXPECT_FALSE(gate.within_bound());
  int sleeps = 0;
  while (!gate.within_bound() && sleeps < 10'000) {
    ++sleeps;
    if (gate.allow()) gate.spun(2 * kMicro, true);  // only probes run; each catches at once
  }
  EXPECT_TRUE(gate.within_bound());
  EXPECT_TRUE(gate.allow());
  EXPECT_LT(sleeps, 16 * 64) << "cheap probes come every 16 sleeps and bring the average back";
}

}  // namespace
}  // namespace clipper
