// The seam from the query side to the replica side: an I/O thread hands the inputs it could not
// answer from the cache to a scheduler, which batches them for the model version's replicas.
// The query side knows only this interface; the engine wires in the replica side's implementation.
// Thread safety: every method is called by any I/O thread, concurrently, and must not block.
#pragma once

#include <cstddef>

#include "common/task.h"

namespace clipper {

struct ModelVersion;

// How long `model` would take to answer a query's inputs queued now (admission control).
struct AdmissionEstimate {
  bool known = false;      // false until the version's batches were measured (then: admit)
  double wait_micros = 0;  // until the last of the inputs would be answered
};

class TaskScheduler {
 public:
  virtual ~TaskScheduler() = default;
  // Queues one task for `model`. Cheap: the scheduler may not look at it before notify_work().
  virtual void submit(ModelVersion& model, Task&& task) = 0;
  // Tasks were submitted for `model` since the last call: have them dispatched soon.
  virtual void notify_work(const ModelVersion& model) = 0;
  // At a query's arrival, before anything is queued: when would `count` more inputs of `model` be
  // answered, given its queue and its measured service rate? Lock-free and cheap (a few atomic loads).
  virtual AdmissionEstimate admission_estimate(const ModelVersion& model, std::size_t count) const = 0;
};

}  // namespace clipper
