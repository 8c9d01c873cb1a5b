#include "selection/ensemble_combiner.h"

#include <gtest/gtest.h>

#include <vector>

namespace clipper {
namespace {

ModelAnswer said(std::string_view output) { return ModelAnswer{true, output}; }
ModelAnswer silent() { return ModelAnswer{}; }

TEST(EnsembleCombiner, LabelsAreAWeightedVoteAndTheConfidenceIsTheWinningShare) {
  const std::vector<ModelAnswer> answers{said("cat"), said("dog"), said("dog")};
  const CombinedAnswer combined = combine_answers(answers, std::vector<double>{0.4, 0.3, 0.3});
  ASSERT_TRUE(combined.answered);
  EXPECT_EQ(combined.output, "dog");
  EXPECT_DOUBLE_EQ(combined.confidence, 0.6);
  EXPECT_FALSE(combined.partial);
  // A tie goes to the answer of the model linked first.
  EXPECT_EQ(combine_answers(answers, std::vector<double>{0.5, 0.25, 0.25}).output, "cat");
}

TEST(EnsembleCombiner, AHeavierModelOutvotesTwoLightOnes) {
  const std::vector<ModelAnswer> answers{said("cat"), said("dog"), said("dog")};
  const CombinedAnswer combined = combine_answers(answers, std::vector<double>{0.6, 0.2, 0.2});
  EXPECT_EQ(combined.output, "cat");
  EXPECT_DOUBLE_EQ(combined.confidence, 0.6);
}

TEST(EnsembleCombiner, WholeNumbersAreLabelsThatCompareAsNumbers) {
  const std::vector<ModelAnswer> answers{said("3"), said("3.0"), said("7")};
  const CombinedAnswer combined = combine_answers(answers, std::vector<double>{0.3, 0.3, 0.4});
  EXPECT_EQ(combined.output, "3");
  EXPECT_DOUBLE_EQ(combined.confidence, 0.6);
}

TEST(EnsembleCombiner, FractionalNumbersAreAveragedByWeight) {
  const std::vector<ModelAnswer> answers{said("1.5"), said("3.5")};
  const CombinedAnswer combined = combine_answers(answers, std::vector<double>{0.75, 0.25});
  EXPECT_EQ(combined.output, "2");
  EXPECT_DOUBLE_EQ(combined.confidence, 1.0);
}

TEST(EnsembleCombiner, AMissingModelMakesThePartialAnswerLessConfident) {
  const std::vector<ModelAnswer> answers{said("0.5"), silent()};
  const CombinedAnswer mean = combine_answers(answers, std::vector<double>{0.4, 0.6});
  EXPECT_TRUE(mean.partial);
  EXPECT_EQ(mean.output, "0.5");
  EXPECT_DOUBLE_EQ(mean.confidence, 0.4);

  const std::vector<ModelAnswer> labels{silent(), said("dog")};
  const CombinedAnswer vote = combine_answers(labels, std::vector<double>{0.9, 0.1});
  EXPECT_TRUE(vote.partial);
  EXPECT_EQ(vote.output, "dog");
  EXPECT_DOUBLE_EQ(vote.confidence, 0.1);
}

TEST(EnsembleCombiner, NoAnswerAtAllIsReportedAsSuch) {
  const std::vector<ModelAnswer> answers{silent(), silent()};
  const CombinedAnswer combined = combine_answers(answers, std::vector<double>{0.5, 0.5});
  EXPECT_FALSE(combined.answered);
  EXPECT_TRUE(combined.partial);
}

TEST(EnsembleCombiner, BadWeightsCountAsZero) {
  const std::vector<ModelAnswer> answers{said("a"), said("b")};
  const CombinedAnswer combined = combine_answers(answers, std::vector<double>{-1.0, 2.0});
  EXPECT_EQ(combined.output, "b");
  EXPECT_DOUBLE_EQ(combined.confidence, 1.0);
}

}  // namespace
}  // namespace clipper
