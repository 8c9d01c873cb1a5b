// The query processor's admission control: at a query's arrival, refuses it when a memory bound is
// reached (pending queries, a model's queued tasks or bytes) or when a model could not answer it
// within its SLO given the model's queue and measured service rate (batching/admission.h estimates),
// so an overloaded model sheds at the door instead of answering everyone late. On the I/O thread like
// the rest of QueryProcessor.
#include <chrono>

#include "batching/admission.h"
#include "engine/engine.h"
#include "query/oip_codec.h"
#include "query/query_codec.h"
#include "query/query_processor.h"

namespace clipper {

using std::chrono::duration_cast;
using std::chrono::microseconds;

std::optional<QueryProcessor::Refusal> QueryProcessor::admission_refusal(const AppRoute& app,
                                                                         const ModelChoice& choice,
                                                                         const std::vector<DecodedInput>& inputs,
                                                                         Clock::time_point received) const {
  const EngineOptions& options = engine_.options();
  if (pending_.size() >= options.max_pending_queries_per_io_thread) {
    return Refusal{metrics::RejectReason::PendingLimit, 1,
                   "Overloaded: " + std::to_string(pending_.size()) +
                       " queries are waiting for answers on this I/O thread (max_pending_queries_per_io_thread)"};
  }
  std::size_t bytes = 0;
  for (const DecodedInput& input : inputs) bytes += input.payload.size();
  const double left = static_cast<double>(app.slo_micros - duration_cast<microseconds>(Clock::now() - received).count());
  for (std::size_t m = 0; m < choice.models.size(); ++m) {
    ModelVersion* model = choice.models[m];
    // A cascade asks only its first model at arrival; each escalation keeps the deadline by itself.
    if (choice.cascade && m > 0) break;
    if (model == nullptr || inputs.empty()) continue;
    if (model->queue.approximate_size() + inputs.size() > options.max_queued_tasks_per_model ||
        model->queue.approximate_bytes() + bytes > options.max_queued_bytes_per_model) {
      return Refusal{metrics::RejectReason::QueueFull, 1,
                     "Overloaded: the queue of model " + model->label +
                         " is full (max_queued_tasks_per_model or max_queued_bytes_per_model)"};
    }
    const AdmissionEstimate estimate = scheduler_.admission_estimate(*model, inputs.size());
    if (estimate.known && estimate.wait_micros > left) {
      return Refusal{metrics::RejectReason::Deadline, retry_after_seconds(estimate.wait_micros, left),
                     "Overloaded: model " + model->label + " would answer in about " +
                         std::to_string(static_cast<int64_t>(estimate.wait_micros)) + " us given its queue and " +
                         "measured service rate, beyond the " + std::to_string(static_cast<int64_t>(left)) +
                         " us the latency SLO of " + std::to_string(app.slo_micros) + " microseconds leaves"};
    }
  }
  return std::nullopt;
}

void QueryProcessor::reply_overloaded(const AppRoute& app, const Refusal& refusal, http::ResponseSlot slot,
                                      bool oip_format) {
  http::HttpResponse response;
  response.status = refusal.reason == metrics::RejectReason::Deadline ? 429 : 503;
  if (response.status < 500) app.metrics->client_errors.add();
  response.body = oip_format ? oip::render_error(refusal.cause) : render_error("Overloaded", refusal.cause);
  response.extra_headers = "Retry-After: " + std::to_string(refusal.retry_after_seconds) + "\r\n";
  http_.respond(slot, std::move(response));
}

}  // namespace clipper
