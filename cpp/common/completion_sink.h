// The seam from the replica side back to the query side: answers (outputs, model errors, shed
// tasks) for the queries one I/O thread waits on. Each I/O thread owns one sink; the replica side
// holds one pointer per I/O thread and knows nothing else about them.
// Thread safety: deliver() is called from the replica side's thread (any thread but the owner's);
// deliver_here() only from the owning I/O thread's own loop (when the replica side shares it).
#pragma once

#include <vector>

#include "common/task.h"

namespace clipper {

class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  // Takes every completion out of `completions` (left empty) and wakes the owning thread.
  virtual void deliver(std::vector<Completion>& completions) = 0;
  // The same, on the owning thread: applies them in place, with no hand-off.
  virtual void deliver_here(std::vector<Completion>& completions) = 0;
};

}  // namespace clipper
