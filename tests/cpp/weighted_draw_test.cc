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

TEST(PassUniform, OneNumberPerPassAFreshOneAfterEach) {
  PassUniform uniform;
  const double first = uniform.get();
  ASSERT_GE(first, 0.0);
  ASSERT_LT(first, 1.0);
  EXPECT_EQ(uniform.get(), first);  // every draw of the pass shares it
  int changed = 0;
  for (int pass = 0; pass < 100; ++pass) {
    const double before = uniform.get();
    uniform.next_pass();
    changed += uniform.get() != before ? 1 : 0;
  }
  EXPECT_EQ(changed, 100);
}

TEST(PassUniform, EachPassesDrawStillFollowsTheWeights) {
  // What a query sees: its model drawn with the pass's number. Over passes, the weights' shares;
  // within a pass, queries of alike weights go to one model (the batch stays whole).
  const std::vector<double> weights{0.7, 0.3};
  const std::vector<double> other_users_weights{0.6, 0.4};
  PassUniform uniform;
  int first = 0;
  int agreed = 0;
  const int passes = 20000;
  for (int pass = 0; pass < passes; ++pass) {
    const std::size_t mine = draw_weighted(weights, uniform.get());
    first += mine == 0 ? 1 : 0;
    agreed += draw_weighted(other_users_weights, uniform.get()) == mine ? 1 : 0;
    uniform.next_pass();
  }
  EXPECT_NEAR(static_cast<double>(first) / passes, 0.7, 0.02);  // > 6 standard deviations
  // Shared number: the two users disagree only when it falls in [0.6, 0.7): 10% of passes
  // (independent draws would disagree in 46%).
  EXPECT_NEAR(static_cast<double>(agreed) / passes, 0.9, 0.02);
}

}  // namespace
}  // namespace clipper
