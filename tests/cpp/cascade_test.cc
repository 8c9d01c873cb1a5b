// The cascade plan's decisions: when an input is handed on to the next model, and which answer it gets.
#include "selection/cascade.h"

#include <gtest/gtest.h>

#include <vector>

namespace clipper {
namespace {

using State = CascadeStage::State;

CascadeStage answered(ModelConfidence confidence) { return CascadeStage{State::Answered, confidence}; }
CascadeStage failed() { return CascadeStage{State::Failed, std::nullopt}; }

TEST(Cascade, EscalatesExactlyWhenTheAnswerIsUnsureOrMissingAndANextModelExists) {
  EXPECT_TRUE(should_escalate(answered(0.79f), 0.8, true));
  EXPECT_FALSE(should_escalate(answered(0.8f), 0.8, true));   // reaching the threshold is sure
  EXPECT_FALSE(should_escalate(answered(0.95f), 0.8, true));
  EXPECT_FALSE(should_escalate(answered(std::nullopt), 0.8, true));  // none reported: sure
  EXPECT_TRUE(should_escalate(failed(), 0.8, true));
  EXPECT_FALSE(should_escalate(answered(0.1f), 0.8, false));  // the last model: nowhere to go
  EXPECT_FALSE(should_escalate(failed(), 0.8, false));
}

TEST(Cascade, AFloatConfidenceReadsAsTheDecimalTheModelMeant) {
  // 0.7f is 0.699999988 as a double; a threshold of 0.7 must count it as reached.
  EXPECT_TRUE(is_sure(0.7f, 0.7));
  EXPECT_FALSE(is_sure(0.69f, 0.7));
  EXPECT_DOUBLE_EQ(confidence_value(0.7f), 0.7);
  EXPECT_DOUBLE_EQ(confidence_value(std::nullopt), 1.0);
}

TEST(Cascade, AnswersWithTheFirstSureAnswer) {
  const std::vector<CascadeStage> stages{answered(0.3f), answered(0.9f), answered(0.99f)};
  const CascadeAnswer answer = pick_cascade_answer(stages, 0.8);
  EXPECT_EQ(answer.stage, 1);
  EXPECT_TRUE(answer.sure);
  EXPECT_DOUBLE_EQ(answer.confidence, 0.9);
  EXPECT_FALSE(answer.partial);
}

TEST(Cascade, WithNoSureAnswerTheLastOneGivenAnswers) {
  const std::vector<CascadeStage> stages{answered(0.3f), answered(0.5f)};
  const CascadeAnswer answer = pick_cascade_answer(stages, 0.8);
  EXPECT_EQ(answer.stage, 1);
  EXPECT_FALSE(answer.sure);
  EXPECT_DOUBLE_EQ(answer.confidence, 0.5);
  EXPECT_FALSE(answer.partial);  // every model asked answered
}

TEST(Cascade, AModelThatDidNotAnswerMakesAnUnsureAnswerPartial) {
  // The slow model was still evaluating at the deadline: the fast model's unsure answer is given.
  const std::vector<CascadeStage> waiting{answered(0.4f), CascadeStage{State::Waiting, std::nullopt}};
  CascadeAnswer answer = pick_cascade_answer(waiting, 0.8);
  EXPECT_EQ(answer.stage, 0);
  EXPECT_TRUE(answer.partial);
  // The first model failed and the second is sure: a sure answer is not partial.
  const std::vector<CascadeStage> recovered{failed(), answered(0.9f)};
  answer = pick_cascade_answer(recovered, 0.8);
  EXPECT_EQ(answer.stage, 1);
  EXPECT_FALSE(answer.partial);
}

TEST(Cascade, NoAnswerAtAllIsReportedAsSuch) {
  const std::vector<CascadeStage> stages{failed(), failed()};
  const CascadeAnswer answer = pick_cascade_answer(stages, 0.8);
  EXPECT_EQ(answer.stage, -1);
  EXPECT_TRUE(answer.partial);
  const std::vector<CascadeStage> untouched{CascadeStage{}, CascadeStage{}};
  EXPECT_EQ(pick_cascade_answer(untouched, 0.8).stage, -1);
}

}  // namespace
}  // namespace clipper
