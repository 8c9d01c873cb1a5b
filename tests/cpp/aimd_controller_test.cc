#include "batching/aimd_controller.h"

#include <gtest/gtest.h>

namespace clipper {
namespace {

TEST(AimdController, GrowsAdditivelyWhileFullBatchesStayUnderTheObjective) {
  AimdController controller(AimdOptions{2, 0.9, 8}, 1, 128);
  EXPECT_EQ(controller.batch_size(), 1);
  controller.observe(1, 100, 1000);
  EXPECT_EQ(controller.batch_size(), 3);
  controller.observe(3, 100, 1000);
  EXPECT_EQ(controller.batch_size(), 5);
}

TEST(AimdController, PartialBatchesDoNotGrowTheSize) {
  AimdController controller(AimdOptions{2, 0.9, 8}, 10, 128);
  controller.observe(4, 100, 1000);
  EXPECT_EQ(controller.batch_size(), 10);
}

TEST(AimdController, CutsMultiplicativelyAboveTheObjectiveThenHolds) {
  AimdController controller(AimdOptions{2, 0.9, 3}, 100, 128);
  controller.observe(100, 5000, 1000);
  EXPECT_EQ(controller.batch_size(), 90);
  EXPECT_EQ(controller.backoffs(), 1u);
  for (int i = 0; i < 3; ++i) {
    controller.observe(90, 100, 1000);
    EXPECT_EQ(controller.batch_size(), 90) << "held after a back-off";
  }
  controller.observe(90, 100, 1000);
  EXPECT_EQ(controller.batch_size(), 92);
}

TEST(AimdController, NeverGoesBelowOneOrAboveTheCap) {
  AimdController controller(AimdOptions{50, 0.5, 0}, 1, 64);
  controller.observe(1, 5000, 1000);
  EXPECT_EQ(controller.batch_size(), 1);
  for (int i = 0; i < 10; ++i) controller.observe(controller.batch_size(), 10, 1000);
  EXPECT_EQ(controller.batch_size(), 64);
  controller.set_cap(16);
  EXPECT_EQ(controller.batch_size(), 16);
}

TEST(AimdController, AFixedSizeIgnoresLatency) {
  AimdController controller(AimdOptions{}, 1, 128);
  controller.set_fixed_size(9);
  EXPECT_FALSE(controller.adaptive());
  EXPECT_EQ(controller.batch_size(), 9);
  controller.observe(9, 1000000, 10);
  controller.observe(9, 1, 1000000);
  EXPECT_EQ(controller.batch_size(), 9);
  controller.set_fixed_size(500);
  EXPECT_EQ(controller.batch_size(), 128) << "the hard cap still applies";
}

TEST(AimdController, RemembersRecentLatenciesOldestFirst) {
  AimdController controller(AimdOptions{}, 1, 8);
  for (int64_t latency = 1; latency <= 20; ++latency) controller.observe(1, latency, 1000);
  std::size_t count = 0;
  const auto recent = controller.recent_latencies(count);
  ASSERT_EQ(count, AimdController::kRecentLatencies);
  EXPECT_EQ(recent[0], 5);
  EXPECT_EQ(recent[count - 1], 20);
}

}  // namespace
}  // namespace clipper
