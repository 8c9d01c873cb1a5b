// The query processor's admission control: at a query's arrival, refuses it when a memory bound is
// reached (pending queries, a model's queued tasks or bytes) or when a model could not answer it
// within its SLO given the model's queue and measured service rate (batching/admission.h estimates),
// so an overloaded model sheds at the door instead of answering everyone late. On the I/O thread like
// the rest of QueryProcessor.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <initializer_list>
#include <string_view>

#include "batching/admission.h"
#include "cache/prediction_cache.h"
#include "common/cache_key.h"
#include "engine/engine.h"
#include "query/oip_codec.h"
#include "query/query_codec.h"
#include "query/query_processor.h"

namespace clipper {

using std::chrono::duration_cast;
using std::chrono::microseconds;

namespace {

// A refusal's message from its parts (text and numbers), in one allocation: it is built for every
// refused request, the overload path's hottest text.
struct Part {
  // Implicit on purpose: message({"text ", number, " more text"}).
  Part(const char* text) : text(text) {}
  Part(const std::string& text) : text(text) {}
  Part(int64_t number) : number(number), is_number(true) {}
  std::string_view text;
  int64_t number = 0;
  bool is_number = false;
};

std::string message(std::initializer_list<Part> parts) {
  std::size_t size = 0;
  for (const Part& part : parts) size += part.is_number ? 20 : part.text.size();
  std::string out;
  out.reserve(size);
  for (const Part& part : parts) {
    if (!part.is_number) {
      out.append(part.text);
      continue;
    }
    char digits[24];
    const auto result = std::to_chars(digits, digits + sizeof(digits), part.number);
    out.append(digits, result.ptr);
  }
  return out;
}

}  // namespace

QueryProcessor::Refusal QueryProcessor::lag_refusal(int64_t waited_micros, int64_t budget_micros) {
  return {metrics::RejectReason::Lag, 1,
          message({"Overloaded: the request waited ", waited_micros,
                   " us before the frontend could read it, past its time limit of ", budget_micros,
                   " microseconds"})};
}

std::optional<QueryProcessor::Refusal> QueryProcessor::admission_refusal(const AppRoute& app,
                                                                         const ModelChoice& choice,
                                                                         const std::vector<DecodedInput>& inputs,
                                                                         Clock::time_point received,
                                                                         Clock::time_point now,
                                                                         int64_t budget_micros,
                                                                         std::vector<CacheKey>& keys) {
  keys.clear();
  std::optional<Refusal> refusal = judge_admission(app, choice, inputs, nullptr, received, now, budget_micros);
  if (!refusal || !engine_.cache().enabled()) return refusal;
  // Before refusing: an answer the cache holds needs no model, so only the inputs it cannot answer
  // count (a query it answers entirely is admitted whatever the load). Looked at only on this path;
  // the keys are kept (model-major) so an admitted query does not hash its inputs again.
  UncachedInputs uncached;
  PredictionCache& cache = engine_.cache();
  const bool keep_keys = !choice.cascade;  // a cascade hashes per stage as it asks
  for (std::size_t m = 0; m < choice.models.size() && !(choice.cascade && m > 0); ++m) {
    uncached.push_back({0, 0});
    for (const DecodedInput& input : inputs) {
      if (choice.models[m] == nullptr) {
        if (keep_keys) keys.emplace_back();  // never asked: a placeholder keeps the layout
        continue;
      }
      const CacheKey key = make_cache_key(choice.models[m]->id, input.payload);
      if (keep_keys) keys.push_back(key);
      if (cache.holds(key)) continue;
      ++uncached.back().count;
      uncached.back().bytes += input.payload.size();
    }
  }
  return judge_admission(app, choice, inputs, &uncached, received, now, budget_micros);
}

std::optional<QueryProcessor::Refusal> QueryProcessor::judge_admission(const AppRoute& app,
                                                                       const ModelChoice& choice,
                                                                       const std::vector<DecodedInput>& inputs,
                                                                       const UncachedInputs* uncached,
                                                                       Clock::time_point received,
                                                                       Clock::time_point now,
                                                                       int64_t budget_micros) const {
  const EngineOptions& options = engine_.options();
  std::size_t waiting = inputs.size();  // inputs that would wait for a model
  if (uncached != nullptr) {
    waiting = 0;
    for (const UncachedCount& model : *uncached) waiting += model.count;
  }
  // A query the cache answers entirely is answered at once: it never waits among the pending ones.
  if (waiting > 0 && pending_.size() >= options.max_pending_queries_per_io_thread) {
    return Refusal{metrics::RejectReason::PendingLimit, 1,
                   "Overloaded: " + std::to_string(pending_.size()) +
                       " queries are waiting for answers on this I/O thread (max_pending_queries_per_io_thread)"};
  }
  const int64_t waited = duration_cast<microseconds>(now - received).count();
  if (waiting > 0 && waited >= budget_micros) return lag_refusal(waited, budget_micros);
  std::size_t all_bytes = 0;
  if (uncached == nullptr) {
    for (const DecodedInput& input : inputs) all_bytes += input.payload.size();
  }
  const double left = static_cast<double>(budget_micros - waited);
  // An ensemble answers at its deadline with what arrived (partial): a member that would be late only
  // misses the combination, so lateness refuses it only when no member would answer in time.
  const bool ensemble = !choice.cascade && choice.models.size() > 1;
  std::optional<Refusal> late;
  bool some_in_time = false;
  for (std::size_t m = 0; m < choice.models.size(); ++m) {
    ModelVersion* model = choice.models[m];
    // A cascade asks only its first model at arrival; each escalation keeps the deadline by itself.
    if (choice.cascade && m > 0) break;
    const std::size_t count = uncached != nullptr ? (*uncached)[m].count : inputs.size();
    const std::size_t bytes = uncached != nullptr ? (*uncached)[m].bytes : all_bytes;
    if (model == nullptr) continue;
    std::optional<Refusal> refusal;
    if (count > 0) refusal = model_refusal(*model, count, bytes, left, budget_micros);
    if (!refusal) {
      some_in_time = true;
    } else if (ensemble && refusal->reason == metrics::RejectReason::Deadline) {
      if (!late) late = std::move(refusal);
    } else {
      return refusal;
    }
  }
  return some_in_time ? std::nullopt : late;
}

std::optional<QueryProcessor::Refusal> QueryProcessor::model_refusal(const ModelVersion& model, std::size_t count,
                                                                     std::size_t bytes, double left_micros,
                                                                     int64_t budget_micros) const {
  const EngineOptions& options = engine_.options();
  if (model.queue.approximate_size() + count > options.max_queued_tasks_per_model ||
      model.queue.approximate_bytes() + bytes > options.max_queued_bytes_per_model) {
    return Refusal{metrics::RejectReason::QueueFull, 1,
                   "Overloaded: the queue of model " + model.label +
                       " is full (max_queued_tasks_per_model or max_queued_bytes_per_model)"};
  }
  const AdmissionEstimate estimate = scheduler_.admission_estimate(model, count);
  if (estimate.known && estimate.wait_micros > left_micros) {
    return Refusal{metrics::RejectReason::Deadline, retry_after_seconds(estimate.wait_micros, left_micros),
                   message({"Overloaded: model ", model.label, " would answer in about ",
                            static_cast<int64_t>(estimate.wait_micros),
                            " us given its queue and measured service rate, beyond the ",
                            static_cast<int64_t>(left_micros), " us the time limit of ", budget_micros,
                            " microseconds leaves"})};
  }
  return std::nullopt;
}

std::optional<QueryProcessor::Refusal> QueryProcessor::refusal_before_decoding(const AppRoute& app, Arrival arrival,
                                                                               std::string_view body,
                                                                               const ModelVersion* named_version,
                                                                               Clock::time_point received,
                                                                               Clock::time_point now,
                                                                               int64_t budget_micros) const {
  // Only for a refusal the client gets (429/503): the app's default needs the input count.
  if (app.linked_models.empty()) return std::nullopt;
  if (arrival == Arrival::Predict && app.overload != OverloadAnswer::Reject && !app.direct_model) return std::nullopt;
  // The lag gate: a request that waited out its time limit before it was read (socket buffers, a
  // lagging I/O loop, a CPU taken by a model) cannot be answered in time by anything, the cache included.
  const int64_t waited = duration_cast<microseconds>(now - received).count();
  if (waited >= budget_micros) return lag_refusal(waited, budget_micros);
  // The model's judgement needs no body only where nothing in it could change the answer: no cache that
  // might hold the answers, the models to ask known without it (no draw by the user's weights, no
  // "version" named in a /predict body; a body merely mentioning the word is decoded, which is only slower).
  if (engine_.cache().enabled()) return std::nullopt;
  const double left = static_cast<double>(budget_micros - waited);
  auto judge = [&](const ModelVersion* model) -> std::optional<Refusal> {
    if (model == nullptr || model->connected_replicas.load(std::memory_order_relaxed) == 0) return std::nullopt;
    return model_refusal(*model, 1, 0, left, budget_micros);  // even one input (of any size) is too many
  };
  if (named_version != nullptr) return judge(named_version);
  const SelectionPlan& plan = app.selection;
  if (arrival == Arrival::Predict && body.find("\"version\"") != std::string_view::npos) return std::nullopt;
  // An /update asks every linked model; an ensemble every member: refused for lateness only when every
  // one would be late, as after decoding.
  if (arrival == Arrival::Update || plan.mode == SelectionMode::Ensemble) {
    std::optional<Refusal> late;
    for (const LinkedModel& linked : app.linked_models) {
      std::optional<Refusal> refusal = judge(linked.current);
      if (!refusal) return std::nullopt;  // this one may answer in time: decode and judge fully
      if (refusal->reason != metrics::RejectReason::Deadline) return refusal;
      if (!late) late = std::move(refusal);
    }
    return late;
  }
  if (plan.mode == SelectionMode::Sample && app.linked_models.size() > 1) return std::nullopt;
  // A cascade is judged by its first model, as after decoding.
  const std::size_t first = plan.mode == SelectionMode::Cascade && !plan.cascade_order.empty() ? plan.cascade_order.front() : 0;
  return judge(app.linked_models[std::min(first, app.linked_models.size() - 1)].current);
}

void QueryProcessor::reply_overloaded(const AppRoute& app, const Refusal& refusal, http::ResponseSlot slot,
                                      bool oip_format) {
  http::HttpResponse response;
  const bool too_late = refusal.reason == metrics::RejectReason::Deadline || refusal.reason == metrics::RejectReason::Lag;
  response.status = too_late ? 429 : 503;
  if (response.status < 500) app.metrics->client_errors.add();
  response.body = oip_format ? oip::render_error(refusal.cause) : render_error("Overloaded", refusal.cause);
  response.extra_headers = message({"Retry-After: ", refusal.retry_after_seconds, "\r\n"});
  http_.respond(slot, std::move(response));
}

}  // namespace clipper
