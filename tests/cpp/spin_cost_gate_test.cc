#include "rpc/spin_cost_gate.h"

#include <gtest/gtest.h>

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

TEST(SpinCostGate, SpinsThatCatchLateStopButForOneProbeInSixteen) {
  SpinCostGate gate(7);
  int allowed = 0;
  for (int i = 0; i < 320; ++i) {
    if (!gate.allow()) continue;
    ++allowed;
    gate.spun(15 * kMicro, true);  // caught every time, but after 15 us: more than the 7 us bound
  }
  // The optimistic start lets the first ten through (the average, weighted 1/16, climbs past 7 us
  // on the 10th), then one sleep in 16 probes: 29 in all.
  EXPECT_GE(allowed, 320 / 16);
  EXPECT_LE(allowed, 320 / 16 + 10);
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
  EXPECT_LT(sleeps, 16 * 64) << "the probes' cheap catches bring the average back within bounds";
}

}  // namespace
}  // namespace clipper
