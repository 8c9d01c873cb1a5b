#include "selection/cascade.h"

namespace clipper {

bool is_sure(ModelConfidence confidence, double threshold) { return confidence_value(confidence) >= threshold; }

bool should_escalate(const CascadeStage& finished, double threshold, bool has_next) {
  if (!has_next) return false;
  if (finished.state == CascadeStage::State::Failed) return true;
  return finished.state == CascadeStage::State::Answered && !is_sure(finished.confidence, threshold);
}

CascadeAnswer pick_cascade_answer(std::span<const CascadeStage> stages, double threshold) {
  CascadeAnswer answer;
  bool missing = false;
  for (std::size_t i = 0; i < stages.size(); ++i) {
    const CascadeStage& stage = stages[i];
    if (stage.state == CascadeStage::State::Failed || stage.state == CascadeStage::State::Waiting) {
      missing = true;
      continue;
    }
    if (stage.state != CascadeStage::State::Answered) continue;
    answer.stage = static_cast<int32_t>(i);
    answer.confidence = confidence_value(stage.confidence);
    if (is_sure(stage.confidence, threshold)) {
      answer.sure = true;
      return answer;
    }
  }
  answer.partial = missing;
  return answer;
}

}  // namespace clipper
