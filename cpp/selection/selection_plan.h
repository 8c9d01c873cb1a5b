// How an application chooses among its linked models for each query: the native half of a selection
// policy. A policy in the control plane (Python) picks the mode and publishes weights; the I/O thread
// samples and combines from them without leaving C++. A plan is immutable once built (it is part of
// the routing snapshot), so any thread reads it without a lock.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace clipper {

enum class SelectionMode : uint8_t {
  Single,    // the one linked model answers (Clipper's behaviour; the default)
  Sample,    // one model per query, drawn by weight (exp3, A/B splits, epsilon-greedy, UCB1)
  Ensemble,  // every linked model per query; answers combined by weight (exp4)
  Cascade,   // models in order; the next one only while the answer's confidence is under the threshold
};

// Accepts "single", "sample", "ensemble", "cascade".
std::optional<SelectionMode> parse_selection_mode(std::string_view name);
std::string_view selection_mode_name(SelectionMode mode);

struct SelectionPlan {
  SelectionMode mode = SelectionMode::Single;
  // One weight per linked model, in link order, summing to 1: used for a user with no state of its own.
  std::vector<double> default_weights;
  // Ensemble: an answer whose weight share is below this is replaced by the default output.
  // Cascade: a model's answer whose reported confidence is below this escalates to the next model.
  double confidence_threshold = 0.0;
  // Cascade: indices into the linked models, the order in which they are tried.
  std::vector<uint32_t> cascade_order;
};

}  // namespace clipper
