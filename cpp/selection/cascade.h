// The cascade plan's two decisions, for one input asked of models in order (fastest first): after a
// model answered, whether to ask the next one, and, once the input is settled, which answer is given.
// Rule: an answer whose confidence reaches the threshold is sure (a model that reports no confidence
// counts as sure, as the SDK documents); an unsure answer or a failure hands the input on while a next
// model exists. The answer is the first sure one, else the last one given. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <span>

#include "common/task.h"

namespace clipper {

struct CascadeStage {
  enum class State : uint8_t { NotAsked, Waiting, Answered, Failed };
  State state = State::NotAsked;  // Waiting: asked, no answer yet; Failed: error, shed, no replica, late
  ModelConfidence confidence;     // what the model reported with its answer
};

bool is_sure(ModelConfidence confidence, double threshold);

// The stage just finished (answered or failed): ask the next one?
bool should_escalate(const CascadeStage& finished, double threshold, bool has_next);

struct CascadeAnswer {
  int32_t stage = -1;       // the stage whose answer is given; -1: no model answered
  double confidence = 0.0;  // that answer's confidence (0 with none)
  bool sure = false;        // it reached the threshold
  bool partial = false;     // not sure, and a model asked gave no answer (failed, or still waiting)
};

CascadeAnswer pick_cascade_answer(std::span<const CascadeStage> stages, double threshold);

}  // namespace clipper
