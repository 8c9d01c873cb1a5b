// The query processor's cascade path: an app whose selection is a cascade asks its models in order,
// one stage at a time per input, and escalates an input past a stage that answered unsure or failed
// (selection/cascade.h decides); each input settles on the first sure answer or on the last stage.
// On the I/O thread like the rest of QueryProcessor.
#include <algorithm>

#include "engine/engine.h"
#include "query/query_processor.h"
#include "selection/cascade.h"

namespace clipper {

QueryProcessor::ModelChoice QueryProcessor::cascade_stages(const AppRoute& app) {
  ModelChoice choice;
  choice.cascade = true;
  bool any = false;
  for (uint32_t index : app.selection.cascade_order) {
    ModelVersion* model = app.linked_models[index].current;
    if (model != nullptr && model->connected_replicas.load(std::memory_order_relaxed) == 0) model = nullptr;
    any = any || model != nullptr;
    choice.models.push_back(model);
    choice.linked.push_back(index);
  }
  if (!any) {
    choice.models.clear();
    choice.linked.clear();
    choice.no_model_reason = "No model of application '" + app.name + "' has a deployed version with a connected replica";
  }
  return choice;
}

bool QueryProcessor::submit_cascade(uint64_t query_key, PendingQuery& query, const ModelChoice& choice,
                                    std::vector<DecodedInput>& inputs) {
  const uint32_t count = static_cast<uint32_t>(inputs.size());
  const uint32_t stages = static_cast<uint32_t>(choice.models.size());
  query.cascade = true;
  query.models_per_input = stages;
  query.results.resize(static_cast<std::size_t>(count) * stages);
  query.remaining = count;
  query.stages = choice.models;
  query.linked = choice.linked;
  query.stage.assign(count, 0);
  for (uint32_t m = 0; m < stages; ++m) {
    const ModelVersion* model = choice.models[m];
    query.model_labels.push_back(model != nullptr ? model->label : query.app->linked_models[choice.linked[m]].name);
  }
  query.model_label = query.model_labels.front();
  query.inputs = std::move(inputs);
  ModelsToNotify notify;
  for (uint32_t index = 0; index < count; ++index) advance_cascade(query_key, query, index, notify);
  if (query.remaining == 0) return false;  // every input settled from the cache
  await_answers(query_key, std::move(query), notify);
  return true;
}

void QueryProcessor::advance_cascade(uint64_t query_key, PendingQuery& query, uint32_t index,
                                     ModelsToNotify& notify) {
  const uint32_t stages = query.models_per_input;
  const double threshold = query.app->selection.confidence_threshold;
  while (true) {
    uint32_t& stage = query.stage[index];
    const uint32_t slot = index * stages + stage;
    InputResult& result = query.results[slot];
    const LinkedModel& linked = query.app->linked_models[query.linked[stage]];
    if (result.done) {
      const CascadeStage finished{
          result.is_default ? CascadeStage::State::Failed : CascadeStage::State::Answered, result.reported};
      if (!should_escalate(finished, threshold, stage + 1 < stages)) break;
      linked.metrics->cascade_escalations.add();
      ++stage;
      continue;
    }
    ModelVersion* model = query.stages[stage];
    if (model == nullptr) {
      result.done = true;
      result.is_default = true;
      result.explanation = "Model " + query.model_labels[stage] + " has no deployed version with a connected replica";
      continue;
    }
    linked.metrics->selections.add();
    // The last stage takes the input; earlier ones get copies (the next stage may need it).
    switch (ask_model(query_key, query, slot, *model, query.inputs[index], stage + 1 == stages, Clock::now())) {
      case Asked::FromCache:
        continue;  // judged like a fresh answer: an unsure cached answer escalates too
      case Asked::Joined:
        return;
      case Asked::Queued:
        if (std::find(notify.begin(), notify.end(), model) == notify.end()) notify.push_back(model);
        return;
    }
  }
  --query.remaining;  // settled: combine_cascade picks its answer
}

void QueryProcessor::cascade_stage_answered(uint64_t query_key, PendingQuery& query, uint32_t index,
                                            CompletionKind kind) {
  if (kind == CompletionKind::Shed) {
    --query.remaining;  // the deadline is out of reach: a later stage could not meet it either
    return;
  }
  ModelsToNotify notify;
  advance_cascade(query_key, query, index, notify);
  for (ModelVersion* model : notify) scheduler_.notify_work(*model);
}

void QueryProcessor::cascade_overdue(PendingQuery& query) {
  // Only the stage each unsettled input is waiting on missed the deadline; later ones were never asked.
  const uint32_t stages = query.models_per_input;
  for (uint32_t index = 0; index < query.stage.size(); ++index) {
    InputResult& result = query.results[index * stages + query.stage[index]];
    if (result.done) continue;
    result.done = true;
    result.is_default = true;
    result.explanation = "Failed to retrieve a prediction response from model " +
                         query.model_labels[query.stage[index]] + " within the latency SLO of " +
                         std::to_string(query.app->slo_micros) + " microseconds";
  }
  query.remaining = 0;
}

void QueryProcessor::combine_cascade(PendingQuery& query) {
  const uint32_t stages = query.models_per_input;
  const std::size_t count = query.results.size() / stages;
  const double threshold = query.app->selection.confidence_threshold;
  absl::InlinedVector<InputResult, 1> combined(count);
  absl::InlinedVector<CascadeStage, 4> outcomes(stages);
  for (std::size_t index = 0; index < count; ++index) {
    const std::span<const InputResult> members(&query.results[index * stages], stages);
    for (uint32_t stage = 0; stage < stages; ++stage) {
      const InputResult& slot = query.results[index * stages + stage];
      CascadeStage& outcome = outcomes[stage];
      outcome.confidence = slot.reported;
      if (!slot.done) {
        outcome.state = stage == query.stage[index] ? CascadeStage::State::Waiting : CascadeStage::State::NotAsked;
      } else if (slot.is_default) {
        outcome.state = CascadeStage::State::Failed;
      } else {
        outcome.state = CascadeStage::State::Answered;
      }
    }
    const CascadeAnswer answer = pick_cascade_answer(outcomes, threshold);
    InputResult& result = combined[index];
    result.done = true;
    result.partial = answer.partial;
    result.confidence = answer.confidence;
    result.failed_members = failed_members(members);
    if (answer.stage < 0) {
      result.is_default = true;
      result.model_failed = result.failed_members != 0;
      result.output = query.app->default_output;
      result.explanation = "No model of the cascade answered: " + why_none_answered(members);
      continue;
    }
    result.output = std::move(query.results[index * stages + answer.stage].output);
    result.answered_by = answer.stage;
  }
  query.results = std::move(combined);
  query.models_per_input = 1;
}

}  // namespace clipper
