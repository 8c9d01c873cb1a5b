// The unit of work that flows from an I/O thread to a model replica and back.
// A Task is one input of one query; a Completion is the answer delivered to the owning I/O thread.
// Plain values: a Task belongs to whichever thread holds it (queue, dispatcher), never two at once.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>

#include "common/cache_key.h"
#include "common/clock.h"

namespace clipper {

struct Task {
  uint32_t io_thread = 0;      // the I/O thread that owns the waiting query
  uint64_t query_key = 0;      // the waiting query within that thread
  uint32_t input_index = 0;    // which input of that query this task answers
  Clock::time_point deadline;  // after this the query has been answered with the default
  Clock::time_point enqueued;  // when the I/O thread queued it
  uint32_t element_count = 0;  // numeric elements (bytes for bytes and strings)
  bool cached = false;         // the prediction cache holds a pending entry for `cache_key`
  CacheKey cache_key;
  std::string payload;         // packed input bytes
};

enum class CompletionKind : uint8_t {
  Output,      // `text` is the model's output
  ModelError,  // `text` explains why the model gave no output
  Shed,        // the deadline could not be met any more; `text` says why (answered with the default)
  FeedbackApplied,  // the control plane applied a feedback round (`query_key` names the /update)
  FeedbackRefused,  // the control plane refused it; `text` says why
};

// A model's confidence in one output (0..1), as it reported it; empty when it reported none.
using ModelConfidence = std::optional<float>;

// The confidence as the decimal the model meant (a float's shortest text read back: 0.7f reads 0.7,
// not 0.699999988), so a threshold of 0.7 counts a reported 0.7 as reaching it. None counts as 1 (sure).
inline double confidence_value(ModelConfidence confidence) {
  if (!confidence) return 1.0;
  char text[32];
  const auto written = std::to_chars(text, text + sizeof(text), *confidence);
  double value = *confidence;
  std::from_chars(text, written.ptr, value);
  return value;
}

struct Completion {
  uint64_t query_key = 0;
  uint32_t input_index = 0;
  CompletionKind kind = CompletionKind::Output;
  std::string text;
  ModelConfidence confidence;  // Output: what the model reported with `text`
};

}  // namespace clipper
