// Answers on their way from the replica side to the I/O threads: collects completions per I/O
// thread (outputs, model errors, shed tasks), fans an evaluated input's answer out to the queries the
// prediction cache coalesced onto it, and hands each thread its batch through its CompletionSink.
// Thread: the replica side's thread only. Invariant: after flush() every per-thread buffer is empty.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cache/prediction_cache.h"
#include "common/completion_sink.h"
#include "common/task.h"

namespace clipper {

class CompletionOutbox {
 public:
  explicit CompletionOutbox(PredictionCache& cache) : cache_(cache) {}

  // One sink per I/O thread, indexed by Task::io_thread. `in_place`: the replica side runs on sink
  // 0's own loop (a single I/O thread), so completions are applied there without a hand-off.
  void connect(std::vector<CompletionSink*> sinks, bool in_place);

  void push(uint32_t io_thread, uint64_t query_key, uint32_t input_index, CompletionKind kind, std::string text,
            ModelConfidence confidence = std::nullopt);
  // A batch answered: output i answers task i (and the cache's waiters on it), with confidence i when
  // `confidences` is not empty (the model reported them). Moves from `outputs`.
  void complete_outputs(std::vector<Task>& tasks, std::vector<std::string>& outputs,
                        const std::vector<ModelConfidence>& confidences = {});
  // A batch failed: every task (and the cache's waiters on it) gets the model error.
  void complete_error(std::vector<Task>& tasks, const std::string& error);
  void flush();

 private:
  PredictionCache& cache_;
  std::vector<CompletionSink*> sinks_;
  std::vector<std::vector<Completion>> outgoing_;  // per I/O thread
  bool in_place_ = false;
};

}  // namespace clipper
