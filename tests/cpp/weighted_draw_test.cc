#include "selection/weighted_draw.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace clipper {
namespace {

TEST(WeightedDraw, EachIndexOwnsTheSliceOfItsWeight) {
  const std::vector<double> weights{0.25, 0.5, 0.25};
  EXPECT_EQ(draw_weighted(weights, 0.0), 0u);
  EXPECT_EQ(draw_weighted(weights, 0.2499), 0u);
  EXPECT_EQ(draw_weighted(weights, 0.25), 1u);
  EXPECT_EQ(draw_weighted(weights, 0.7499), 1u);
  EXPECT_EQ(draw_weighted(weights, 0.75), 2u);
  EXPECT_EQ(draw_weighted(weights, 0.999999), 2u);
}

TEST(WeightedDraw, WeightsNeedNotSumToOneAndBadOnesNeverWin) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> weights{nan, 0.0, -3.0, 2.0};
  for (double u : {0.0, 0.3, 0.9999}) EXPECT_EQ(draw_weighted(weights, u), 3u);
  EXPECT_EQ(draw_weighted(std::vector<double>{0.0, 0.0}, 0.5), 0u);
}

TEST(WeightedDraw, TheThreadGeneratorFollowsTheWeights) {
  const std::vector<double> weights{0.9, 0.1};
  int first = 0;
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    const double u = thread_uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    first += draw_weighted(weights, u) == 0 ? 1 : 0;
  }
  // 0.9 expected; 20,000 draws put 6 standard deviations within +-0.013.
  EXPECT_NEAR(static_cast<double>(first) / draws, 0.9, 0.013);
}

}  // namespace
}  // namespace clipper
