// Combining the answers of several models to one query into one answer and its confidence (the
// ensemble plan). Rule: when every answer that arrived is a number and at least one is not a whole
// number, the answer is the weighted mean of them (a regression); otherwise answers are labels and
// the answer is the weighted vote (numbers compare as numbers, so "3" and "3.0" agree; ties go to
// the model linked first). The confidence is the weight share behind the answer, out of every model
// asked: the winning label's weight for a vote, the answering models' weight for a mean, so models
// that missed the deadline lower it. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace clipper {

struct ModelAnswer {
  bool answered = false;      // false: the model failed or missed the deadline
  std::string_view output;    // the model's output text, when answered
};

struct CombinedAnswer {
  bool answered = false;      // false: no model answered
  std::string output;
  double confidence = 0.0;    // 0..1
  bool partial = false;       // some model asked did not answer
};

// `answers` and `weights` are parallel (one per model asked). Weights need not sum to 1.
CombinedAnswer combine_answers(std::span<const ModelAnswer> answers, std::span<const double> weights);

}  // namespace clipper
