#include "rpc/completion_outbox.h"

namespace clipper {

void CompletionOutbox::connect(std::vector<CompletionSink*> sinks, bool in_place) {
  sinks_ = std::move(sinks);
  outgoing_.resize(sinks_.size());
  in_place_ = in_place;
}

void CompletionOutbox::push(uint32_t io_thread, uint64_t query_key, uint32_t input_index, CompletionKind kind,
                            std::string text, ModelConfidence confidence) {
  Completion completion;
  completion.query_key = query_key;
  completion.input_index = input_index;
  completion.kind = kind;
  completion.text = std::move(text);
  completion.confidence = confidence;
  outgoing_[io_thread].push_back(std::move(completion));
}

void CompletionOutbox::complete_outputs(std::vector<Task>& tasks, std::vector<std::string>& outputs,
                                        const std::vector<ModelConfidence>& confidences) {
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    const Task& task = tasks[i];
    const ModelConfidence confidence = i < confidences.size() ? confidences[i] : std::nullopt;
    if (task.cached) {
      // Queries that asked for the same input while it was evaluated get the same answer.
      for (const CacheWaiter& waiter : cache_.resolve(task.cache_key, outputs[i], confidence)) {
        push(waiter.io_thread, waiter.query_key, waiter.input_index, CompletionKind::Output, outputs[i],
             confidence);
      }
    }
    push(task.io_thread, task.query_key, task.input_index, CompletionKind::Output, std::move(outputs[i]),
         confidence);
  }
}

void CompletionOutbox::complete_error(std::vector<Task>& tasks, const std::string& error) {
  for (const Task& task : tasks) {
    if (task.cached) {
      for (const CacheWaiter& waiter : cache_.fail(task.cache_key)) {
        push(waiter.io_thread, waiter.query_key, waiter.input_index, CompletionKind::ModelError, error);
      }
    }
    push(task.io_thread, task.query_key, task.input_index, CompletionKind::ModelError, error);
  }
}

void CompletionOutbox::flush() {
  if (in_place_ && !outgoing_[0].empty()) {
    sinks_[0]->deliver_here(outgoing_[0]);
    return;
  }
  for (std::size_t thread = 0; thread < outgoing_.size(); ++thread) {
    if (!outgoing_[thread].empty()) sinks_[thread]->deliver(outgoing_[thread]);
  }
}

}  // namespace clipper
