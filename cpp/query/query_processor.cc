#include "query/query_processor.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>

#include "engine/engine.h"
#include "query/query_codec.h"
#include "selection/ensemble_combiner.h"
#include "selection/feedback_queue.h"
#include "selection/weighted_draw.h"

namespace clipper {
namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

// How long an /update may take to collect the linked models' outputs (at least; an app's SLO that is
// longer counts), and how long the control plane may take to apply the round before the client hears
// that it was not confirmed.
constexpr auto kFeedbackEvaluationTime = std::chrono::seconds(1);
constexpr auto kFeedbackConfirmationTime = std::chrono::seconds(10);
// A feedback ticket is the query key with the owning I/O thread in its top byte.
constexpr int kTicketThreadShift = 56;

// Splits "/<app>/<action>[/][?query]" into app and action; false if the path has another shape.
bool split_app_path(std::string_view target, std::string_view& app, std::string_view& action) {
  const auto query = target.find('?');
  if (query != std::string_view::npos) target = target.substr(0, query);
  if (target.size() < 2 || target.front() != '/') return false;
  target.remove_prefix(1);
  if (target.back() == '/') target.remove_suffix(1);
  const auto slash = target.find('/');
  if (slash == std::string_view::npos || slash == 0) return false;
  app = target.substr(0, slash);
  action = target.substr(slash + 1);
  return action.find('/') == std::string_view::npos;
}

std::string_view path_of(std::string_view target) {
  const auto query = target.find('?');
  return query == std::string_view::npos ? target : target.substr(0, query);
}

http::HttpServerOptions http_server_options(const EngineOptions& options) {
  http::HttpServerOptions http;
  http.max_body_bytes = options.max_body_bytes;
  http.max_header_bytes = options.max_header_bytes;
  http.max_header_count = options.max_header_count;
  http.header_timeout_millis = options.header_timeout_millis;
  http.body_timeout_millis = options.body_timeout_millis;
  http.idle_timeout_millis = options.idle_timeout_millis;
  http.max_connections = options.max_connections_per_io_thread;
  http.max_connections_per_address = options.max_connections_per_client_address;
  return http;
}

}  // namespace

QueryProcessor::QueryProcessor(Engine& engine, TaskScheduler& scheduler, uint32_t io_thread)
    : engine_(engine),
      scheduler_(scheduler),
      io_thread_(io_thread),
      http_(&loop_, *this, http_server_options(engine.options())),
      metrics_handler_(*this) {
  if (uv_loop_init(&loop_) != 0) throw std::runtime_error("cannot create an event loop");
  uv_async_init(&loop_, &completions_async_, &QueryProcessor::on_completions);
  completions_async_.data = this;
  uv_async_init(&loop_, &stop_async_, &QueryProcessor::on_stop);
  stop_async_.data = this;
  uv_timer_init(&loop_, &deadline_timer_);
  deadline_timer_.data = this;
  uv_check_init(&loop_, &pass_done_);
  pass_done_.data = this;
  uv_check_start(&pass_done_, &QueryProcessor::on_pass_done);
  // The check handle alone must not keep the loop alive.
  uv_unref(reinterpret_cast<uv_handle_t*>(&pass_done_));
}

void QueryProcessor::on_pass_done(uv_check_t* handle) {
  static_cast<QueryProcessor*>(handle->data)->draw_uniform_.next_pass();
}

QueryProcessor::~QueryProcessor() {
  // run() closed every handle; drain the loop so libuv frees its resources.
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

int QueryProcessor::serve_metrics(int listening_fd) {
  metrics_http_ = std::make_unique<http::HttpServer>(&loop_, metrics_handler_, http::HttpServerOptions{});
  return metrics_http_->serve_socket(listening_fd);
}

void QueryProcessor::run() { uv_run(&loop_, UV_RUN_DEFAULT); }

void QueryProcessor::request_stop() { uv_async_send(&stop_async_); }

void QueryProcessor::on_stop(uv_async_t* handle) {
  auto* self = static_cast<QueryProcessor*>(handle->data);
  self->http_.close_all();
  if (self->metrics_http_) self->metrics_http_->close_all();
  uv_close(reinterpret_cast<uv_handle_t*>(&self->completions_async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&self->stop_async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&self->deadline_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&self->pass_done_), nullptr);
  if (self->on_stopping_) self->on_stopping_();
  self->pending_.clear();
}

void QueryProcessor::deliver(std::vector<Completion>& completions) {
  completions_.enqueue_bulk(std::make_move_iterator(completions.begin()), completions.size());
  completions.clear();
  uv_async_send(&completions_async_);
}

const RoutingTable& QueryProcessor::current_routing() {
  const uint64_t generation = engine_.routing_generation();
  if (generation != routing_generation_ || !routing_) {
    routing_ = engine_.routing_table();
    routing_generation_ = generation;
  }
  return *routing_;
}

void QueryProcessor::reply_error(http::HttpServer& server, http::ResponseSlot slot, int status,
                                 std::string_view error, std::string_view cause, const AppRoute* app) {
  if (app != nullptr) app->metrics->client_errors.add();
  http::HttpResponse response;
  response.status = status;
  response.body = render_error(error, cause);
  if (status == 503) response.extra_headers = "Retry-After: 1\r\n";
  server.respond(slot, std::move(response));
}

bool QueryProcessor::answer_health(const http::HttpRequest& request, http::ResponseSlot slot,
                                   http::HttpServer& server) {
  const std::string_view path = path_of(request.target);
  if (path != "/healthz" && path != "/readyz" && path != "/metrics") return false;
  if (request.method != HTTP_GET && request.method != HTTP_HEAD) {
    reply_error(server, slot, 405, "Method not allowed", std::string(path) + " accepts GET", nullptr);
    return true;
  }
  http::HttpResponse response;
  if (path == "/healthz") {
    response.body = R"({"status":"alive"})";
  } else if (path == "/readyz") {
    if (engine_.configured()) {
      response.body = R"({"status":"ready"})";
    } else {
      response.status = 503;
      response.body = render_error("Not ready", "no configuration has been applied to the engine yet");
    }
  } else {
    response.content_type = "text/plain; version=0.0.4";
    response.body = engine_.metrics_text();
  }
  server.respond(slot, std::move(response));
  return true;
}

void QueryProcessor::MetricsOnlyHandler::on_request(http::HttpRequest&& request, http::ResponseSlot slot) {
  if (!owner_.answer_health(request, slot, *owner_.metrics_http_)) {
    owner_.reply_error(*owner_.metrics_http_, slot, 404, "Not found",
                       "this port serves GET /metrics, /healthz and /readyz", nullptr);
  }
}

void QueryProcessor::on_request(http::HttpRequest&& request, http::ResponseSlot slot) {
  if (answer_health(request, slot, http_)) return;
  // From when its bytes arrived (the server's arrival clock): time it spent unread counts against its SLO.
  const Clock::time_point received = request.arrived != Clock::time_point{} ? request.arrived : Clock::now();
  std::string_view app_name;
  std::string_view action;
  if (!split_app_path(request.target, app_name, action) ||
      (action != "predict" && action != "update")) {
    if (oip::is_protocol_path(request.target)) {
      handle_oip(request, slot, received);
      return;
    }
    reply_error(http_, slot, 404, "Not found",
                "unknown path " + std::string(path_of(request.target)) +
                    "; use POST /<app>/predict, POST /<app>/update, GET /metrics, /healthz, /readyz or the "
                    "Open Inference Protocol under /v2",
                nullptr);
    return;
  }
  const RoutingTable& routing = current_routing();
  auto found = routing.apps.find(std::string(app_name));
  if (found == routing.apps.end()) {
    reply_error(http_, slot, 404, "Unknown application",
                "no application named '" + std::string(app_name) +
                    "' is registered; register it with register_application first",
                nullptr);
    return;
  }
  const std::shared_ptr<const AppRoute>& app = found->second;
  if (request.method != HTTP_POST) {
    reply_error(http_, slot, 405, "Method not allowed",
                "/" + app->name + "/" + std::string(action) + " accepts POST with a JSON body", app.get());
    return;
  }
  if (action == "predict") {
    handle_predict(app, request, slot, received);
  } else {
    handle_update(app, request, slot, received);
  }
}

void QueryProcessor::handle_update(const std::shared_ptr<const AppRoute>& route, http::HttpRequest& request,
                                   http::ResponseSlot slot, Clock::time_point received) {
  const AppRoute& app = *route;
  // Feedback is not latency-bound like a query, but a model that never answers must not hold it.
  const microseconds evaluation_time =
      std::max(microseconds(app.slo_micros), duration_cast<microseconds>(kFeedbackEvaluationTime));
  // The outputs the models must still give are evaluated like a query's: an overloaded model refuses
  // the update at arrival (429/503 whatever the app's overload option: feedback that was not applied is
  // never acknowledged), before decoding where the body cannot change the answer.
  const bool applicable = engine_.feedback_queue().consumer_attached();  // else 503 below, after decoding
  const Clock::time_point before_decoding = Clock::now();
  if (auto refusal = applicable ? refusal_before_decoding(app, Arrival::Update, request.body, nullptr, received,
                                                          before_decoding, evaluation_time.count())
                                : std::nullopt) {
    app.metrics->rejected[static_cast<std::size_t>(refusal->reason)].add();
    reply_overloaded(app, *refusal, slot, false);
    return;
  }
  auto decoded = decode_update_body(request.body, app.input_type);
  if (!decoded.ok()) {
    reply_error(http_, slot, 400, decoded.failure.error, decoded.failure.cause, &app);
    return;
  }
  // Feedback is acknowledged only once the app's policy applied it: without a consumer it cannot be.
  if (!engine_.feedback_queue().consumer_attached()) {
    reply_error(http_, slot, 503, "Feedback not applied",
                "this frontend has no selection worker to learn from feedback (the standalone "
                "clipper-frontend runs none); send feedback to a frontend started by a container manager",
                &app);
    return;
  }
  UpdateBody& body = *decoded.value;
  ModelChoice choice = every_linked_model(app);
  if (choice.models.empty()) {
    reply_error(http_, slot, 400, "Feedback not applied", choice.no_model_reason, &app);
    return;
  }
  std::vector<DecodedInput> inputs;
  inputs.push_back(std::move(body.input));
  if (auto refusal = admission_refusal(app, choice, inputs, received,
                                       judged_after_decoding(request.body, before_decoding),
                                       evaluation_time.count(), admission_keys_)) {
    app.metrics->rejected[static_cast<std::size_t>(refusal->reason)].add();
    reply_overloaded(app, *refusal, slot, false);
    return;
  }
  const uint64_t query_key = engine_.next_query_ids(1);
  PendingQuery query;
  query.slot = slot;
  query.app = route;
  query.first_query_id = query_key;
  query.received = received;
  query.deadline = received + evaluation_time;
  query.is_feedback = true;
  query.uid = body.uid;
  query.label = body.label;
  if (!submit_inputs(query_key, query, choice, inputs, admission_keys_)) send_feedback_round(query_key, query);
}

QueryProcessor::ModelChoice QueryProcessor::every_linked_model(const AppRoute& app) {
  ModelChoice choice;
  if (app.linked_models.empty()) {
    choice.no_model_reason = "No model is linked to application '" + app.name + "'; link one with link_model_to_app";
    return choice;
  }
  for (uint32_t index = 0; index < app.linked_models.size(); ++index) {
    ModelVersion* model = app.linked_models[index].current;
    if (model != nullptr && model->connected_replicas.load(std::memory_order_relaxed) == 0) model = nullptr;
    choice.models.push_back(model);
    choice.linked.push_back(index);
  }
  choice.weights = app.selection.default_weights;
  return choice;
}

QueryProcessor::ModelChoice QueryProcessor::choose_models(const AppRoute& app, int64_t uid) {
  ModelChoice choice;
  if (app.linked_models.empty()) {
    choice.no_model_reason = "No model is linked to application '" + app.name + "'; link one with link_model_to_app";
    return choice;
  }
  const SelectionPlan& plan = app.selection;
  if (plan.mode == SelectionMode::Cascade) return cascade_stages(app);
  // The user's published weights, else the app's defaults (also when the links changed since).
  const std::vector<double>* weights = &plan.default_weights;
  if ((plan.mode == SelectionMode::Sample || plan.mode == SelectionMode::Ensemble) &&
      app.linked_models.size() > 1 && engine_.selection_weights().get(app.selection_id, uid, weights_scratch_) &&
      weights_scratch_.size() == app.linked_models.size()) {
    weights = &weights_scratch_;
  }
  if (plan.mode == SelectionMode::Ensemble) {
    ModelChoice choice = every_linked_model(app);
    choice.weights = *weights;  // combined by what this user's policy learned
    return choice;
  }
  const std::size_t index =
      plan.mode == SelectionMode::Sample ? draw_weighted(*weights, draw_uniform_.get()) : std::size_t{0};
  const LinkedModel& linked = app.linked_models[std::min(index, app.linked_models.size() - 1)];
  if (linked.current == nullptr) {
    choice.no_model_reason =
        "Model '" + linked.name + "' linked to application '" + app.name + "' has no deployed version";
  } else if (linked.current->connected_replicas.load(std::memory_order_relaxed) == 0) {
    choice.no_model_reason =
        "No connected models found for query: model " + linked.current->label + " has no connected replica";
  } else {
    choice.models.push_back(linked.current);
    choice.linked.push_back(static_cast<uint32_t>(&linked - app.linked_models.data()));
  }
  return choice;
}

void QueryProcessor::count_selections(const AppRoute& app, const ModelChoice& choice, uint32_t inputs) {
  if (choice.cascade) return;  // a cascade counts each stage when it asks it
  for (std::size_t m = 0; m < choice.models.size() && m < choice.linked.size(); ++m) {
    if (choice.models[m] != nullptr) app.linked_models[choice.linked[m]].metrics->selections.add(inputs);
  }
}

void QueryProcessor::handle_predict(const std::shared_ptr<const AppRoute>& app, http::HttpRequest& request,
                                    http::ResponseSlot slot, Clock::time_point received) {
  // One clock read judges the request before and after decoding (unless its body is large).
  const Clock::time_point before_decoding = Clock::now();
  if (auto refusal = refusal_before_decoding(*app, Arrival::Predict, request.body, nullptr, received,
                                             before_decoding, app->slo_micros)) {
    app->metrics->requests.add();
    app->metrics->rejected[static_cast<std::size_t>(refusal->reason)].add();
    reply_overloaded(*app, *refusal, slot, false);
    return;
  }
  auto decoded = decode_predict_body(request.body, app->input_type);
  if (!decoded.ok()) {
    reply_error(http_, slot, 400, decoded.failure.error, decoded.failure.cause, app.get());
    return;
  }
  start_predict(app, *decoded.value, slot, received, judged_after_decoding(request.body, before_decoding), nullptr);
}

void QueryProcessor::start_predict(const std::shared_ptr<const AppRoute>& app, PredictBody& body,
                                   http::ResponseSlot slot, Clock::time_point received, Clock::time_point now,
                                   std::unique_ptr<OipCall> oip) {
  // Errors in the format the request came in.
  auto refuse = [&](int status, std::string_view error, const std::string& cause) {
    if (oip) {
      reply_oip_error(slot, status, std::string(error) + ": " + cause, app.get());
    } else {
      reply_error(http_, slot, status, error, cause, app.get());
    }
  };
  app->metrics->requests.add();

  ModelChoice choice;
  if (body.version) {
    // A named version: of the one linked model (Clipper's rule), never chosen by the policy.
    if (app->linked_models.size() != 1) {
      refuse(400, "Query processing error",
             app->linked_models.empty()
                 ? "version " + *body.version + " was requested but no model is linked to application '" +
                       app->name + "'"
                 : "Too many models linked to application " + app->name + " to select a version");
      return;
    }
    const LinkedModel& linked = app->linked_models.front();
    auto version = linked.versions.find(*body.version);
    if (version == linked.versions.end()) {
      refuse(400, "Query processing error",
             "Requested version: " + *body.version + " does not exist for model: " + linked.name);
      return;
    }
    if (version->second->connected_replicas.load(std::memory_order_relaxed) == 0) {
      choice.no_model_reason =
          "No connected models found for query: model " + version->second->label + " has no connected replica";
    } else {
      choice.models.push_back(version->second);
    }
  } else {
    choice = choose_models(*app, body.uid);
  }
  if (app->direct_model && choice.models.empty()) {  // a model has no default to answer with
    refuse(503, "Model not available", choice.no_model_reason);
    return;
  }

  const uint32_t count = static_cast<uint32_t>(body.inputs.size());
  count_selections(*app, choice, count);
  if (auto refusal = admission_refusal(*app, choice, body.inputs, received, now, app->slo_micros, admission_keys_)) {
    app->metrics->rejected[static_cast<std::size_t>(refusal->reason)].add();
    // Open Inference Protocol answers carry no default output: those are always refused.
    if (app->overload == OverloadAnswer::Reject || oip || app->direct_model) {
      reply_overloaded(*app, *refusal, slot, oip != nullptr);
      return;
    }
    choice.models.clear();  // answered below with the default, saying why
    admission_keys_.clear();
    choice.no_model_reason = std::move(refusal->cause);
  }

  const uint64_t first_query_id = engine_.next_query_ids(std::max<uint32_t>(count, 1));
  // Built where it waits for its answers, not moved there (a move and a destruction of its ~20
  // members per request); taken out again when it is answered at once. Query ids are unique.
  PendingQuery& query = pending_.try_emplace(first_query_id).first->second;
  query.slot = slot;
  query.app = app;
  query.is_batch = body.is_batch;
  query.first_query_id = first_query_id;
  query.received = received;
  query.deadline = received + microseconds(app->slo_micros);
  query.oip = std::move(oip);
  if (count == 0 || choice.models.empty()) {
    query.results.resize(count);
    query.remaining = count;
    fill_defaults(query, choice.no_model_reason);
    finish(first_query_id, query);
    pending_.erase(first_query_id);
    return;
  }
  building_in_place_ = &query;
  const bool waits = submit_inputs(first_query_id, query, choice, body.inputs, admission_keys_);
  building_in_place_ = nullptr;
  if (!waits) {
    finish(first_query_id, query);
    pending_.erase(first_query_id);
  }
}

bool QueryProcessor::submit_inputs(uint64_t query_key, PendingQuery& query, const ModelChoice& choice,
                                   std::vector<DecodedInput>& inputs, const std::vector<CacheKey>& keys) {
  if (choice.cascade) return submit_cascade(query_key, query, choice, inputs);
  const uint32_t count = static_cast<uint32_t>(inputs.size());
  const uint32_t asked = static_cast<uint32_t>(choice.models.size());
  query.models_per_input = asked;
  query.linked = choice.linked;
  query.results.resize(static_cast<std::size_t>(count) * asked);
  query.remaining = count * asked;
  query.ensemble = asked > 1 || query.is_feedback;
  if (query.ensemble) {
    query.weights = choice.weights;
    query.weights.resize(asked, 0.0);
    for (std::size_t m = 0; m < asked; ++m) {
      const ModelVersion* model = choice.models[m];
      query.model_labels.push_back(model != nullptr ? model->label : query.app->linked_models[m].name);
    }
    query.model_label = query.model_labels.front();
  } else {
    query.model_label = choice.models.front()->label;
  }

  ModelsToNotify notify;
  for (uint32_t m = 0; m < asked; ++m) {
    ModelVersion* model = choice.models[m];
    bool queued = false;
    for (uint32_t index = 0; index < count; ++index) {
      const uint32_t slot = index * asked + m;
      if (model == nullptr) {  // linked, but it cannot answer: it counts as missing from the ensemble
        InputResult& result = query.results[slot];
        result.done = true;
        result.is_default = true;
        result.output = query.app->default_output;
        result.explanation = "Model " + query.model_labels[m] + " has no deployed version with a connected replica";
        --query.remaining;
        continue;
      }
      // The last model to ask takes the input; the others get copies.
      const CacheKey* key = keys.size() == static_cast<std::size_t>(count) * asked ? &keys[m * count + index] : nullptr;
      switch (ask_model(query_key, query, slot, *model, inputs[index], m + 1 == asked, query.received, key)) {
        case Asked::FromCache:
          --query.remaining;
          break;
        case Asked::Joined:
          break;  // the identical evaluation in flight answers this slot too
        case Asked::Queued:
          queued = true;
          break;
      }
    }
    if (queued) notify.push_back(model);
  }
  if (query.remaining == 0) return false;  // every slot came from the cache (or cannot be asked)
  await_answers(query_key, std::move(query), notify);
  return true;
}

QueryProcessor::Asked QueryProcessor::ask_model(uint64_t query_key, PendingQuery& query, uint32_t slot,
                                                ModelVersion& model, DecodedInput& input, bool take_payload,
                                                Clock::time_point enqueued, const CacheKey* known_key) {
  InputResult& result = query.results[slot];
  Task task;
  PredictionCache& cache = engine_.cache();
  if (cache.enabled()) {
    const CacheKey key = known_key != nullptr ? *known_key : make_cache_key(model.id, input.payload);
    const CacheWaiter waiter{io_thread_, query_key, slot, query.deadline};
    switch (cache.lookup(key, waiter, result.output, &result.reported)) {
      case PredictionCache::Lookup::Hit:
        result.done = true;
        return Asked::FromCache;
      case PredictionCache::Lookup::Joined:
        return Asked::Joined;
      case PredictionCache::Lookup::Miss:
        task.cached = true;
        task.cache_key = key;
        break;
    }
  }
  task.io_thread = io_thread_;
  task.query_key = query_key;
  task.input_index = slot;
  task.deadline = query.deadline;
  task.enqueued = enqueued;
  task.element_count = input.element_count;
  task.payload = take_payload ? std::move(input.payload) : input.payload;
  scheduler_.submit(model, std::move(task));
  return Asked::Queued;
}

void QueryProcessor::await_answers(uint64_t query_key, PendingQuery&& query, const ModelsToNotify& notify) {
  const Clock::time_point deadline = query.deadline;
  if (&query != building_in_place_) pending_.emplace(query_key, std::move(query));  // else there already
  deadlines_.add(deadline, query_key);
  arm_deadline_timer(deadline);
  for (ModelVersion* model : notify) scheduler_.notify_work(*model);
}

void QueryProcessor::combine_ensemble(PendingQuery& query) {
  const uint32_t asked = query.models_per_input;
  const std::size_t count = query.results.size() / asked;
  absl::InlinedVector<InputResult, 1> combined(count);
  std::vector<ModelAnswer> answers(asked);
  for (std::size_t index = 0; index < count; ++index) {
    const std::span<const InputResult> members(&query.results[index * asked], asked);
    for (uint32_t m = 0; m < asked; ++m) {
      answers[m] = ModelAnswer{members[m].done && !members[m].is_default, members[m].output};
    }
    const CombinedAnswer answer = combine_answers(answers, query.weights);
    InputResult& result = combined[index];
    result.done = true;
    result.confidence = answer.confidence;
    result.partial = answer.partial;
    result.failed_members = failed_members(members);
    if (!answer.answered) {
      result.is_default = true;
      result.model_failed = result.failed_members != 0;
      result.output = query.app->default_output;
      result.explanation = "No model of the ensemble answered: " + why_none_answered(members);
    } else if (answer.confidence < query.app->selection.confidence_threshold) {
      result.is_default = true;
      result.output = query.app->default_output;
      char text[160];
      std::snprintf(text, sizeof(text),
                    "The ensemble's confidence %.3f is below the application's confidence_threshold %.3f",
                    answer.confidence, query.app->selection.confidence_threshold);
      result.explanation = text;
    } else {
      result.output = answer.output;
    }
  }
  query.results = std::move(combined);
  query.models_per_input = 1;
}

uint32_t QueryProcessor::failed_members(std::span<const InputResult> members) {
  uint32_t failed = 0;
  for (std::size_t m = 0; m < members.size() && m < 32; ++m) {
    if (members[m].model_failed) failed |= uint32_t{1} << m;
  }
  return failed;
}

std::string QueryProcessor::why_none_answered(std::span<const InputResult> members) {
  // Every member's reason: a failed model is named as failed, not only as missing.
  std::string why;
  for (const InputResult& member : members) {
    if (!member.done || member.explanation.empty()) continue;
    if (!why.empty()) why += "; ";
    why += member.explanation;
  }
  return why.empty() ? std::string("no model asked") : why;
}

void QueryProcessor::send_feedback_round(uint64_t query_key, PendingQuery& query) {
  FeedbackRound round;
  round.ticket = (static_cast<uint64_t>(io_thread_) << kTicketThreadShift) | query_key;
  round.app = query.app->name;
  round.uid = query.uid;
  round.label = query.label;
  for (uint32_t m = 0; m < query.models_per_input; ++m) {
    const InputResult& slot = query.results[m];
    FeedbackOutcome outcome;
    outcome.model_name = query.app->linked_models[m].name;
    outcome.answered = slot.done && !slot.is_default;
    if (outcome.answered) {
      outcome.output = slot.output;
      outcome.confidence = slot.reported;
    }
    round.outcomes.push_back(std::move(outcome));
  }
  if (!engine_.feedback_queue().push(std::move(round))) {
    reply_error(http_, query.slot, 503, "Feedback not applied",
                "the feedback queue is full; retry shortly", query.app.get());
    return;
  }
  const Clock::time_point expires = Clock::now() + kFeedbackConfirmationTime;
  awaiting_feedback_.emplace(query_key, AwaitingFeedback{query.slot, query.app, query.first_query_id, expires});
  deadlines_.add(expires, query_key);
  arm_deadline_timer(expires);
}

void QueryProcessor::answer_feedback(Completion& completion) {
  auto found = awaiting_feedback_.find(completion.query_key);
  if (found == awaiting_feedback_.end()) return;  // answered 503 at its expiry already
  AwaitingFeedback& waiting = found->second;
  if (completion.kind == CompletionKind::FeedbackApplied) {
    waiting.app->metrics->feedback.add();
    waiting.app->metrics->feedback_applied.add();
    http::HttpResponse response;
    response.body = "{\"query_id\":" + std::to_string(waiting.query_id) + ",\"feedback_applied\":true}";
    http_.respond(waiting.slot, std::move(response));
  } else {
    waiting.app->metrics->feedback_refused.add();
    reply_error(http_, waiting.slot, 400, "Feedback refused", completion.text, waiting.app.get());
  }
  awaiting_feedback_.erase(found);
}

void QueryProcessor::fill_defaults(PendingQuery& query, const std::string& explanation) {
  for (auto& result : query.results) {
    if (result.done) continue;
    result.done = true;
    result.is_default = true;
    result.output = query.app->default_output;
    result.explanation = explanation;
  }
  query.remaining = 0;
}

void QueryProcessor::finish(uint64_t query_key, PendingQuery& query, Clock::time_point now) {
  if (query.is_feedback) {
    send_feedback_round(query_key, query);
    return;
  }
  if (query.ensemble) combine_ensemble(query);
  if (query.cascade) combine_cascade(query);
  record_answered(query, now);
  if (query.oip) {
    finish_oip(query);
    return;
  }
  const bool selected = query.ensemble || query.cascade;
  std::string body = http_.take_body_buffer();
  body.reserve(64 * query.results.size() + 32);
  if (query.is_batch) body += "{\"batch_predictions\":[";
  for (std::size_t i = 0; i < query.results.size(); ++i) {
    const InputResult& result = query.results[i];
    if (i > 0) body += ',';
    const std::string_view answered_by =
        result.answered_by >= 0 ? std::string_view(query.model_labels[result.answered_by]) : std::string_view();
    absl::InlinedVector<std::string_view, 2> failed;
    for (uint32_t m = 0; m < query.model_labels.size() && m < 32; ++m) {
      if (result.failed_members & (uint32_t{1} << m)) failed.push_back(query.model_labels[m]);
    }
    const EnsembleFields ensemble{result.confidence, result.partial, answered_by, failed};
    render_prediction(body, query.first_query_id + i, result.output, result.is_default, result.explanation,
                      selected ? &ensemble : nullptr);
  }
  if (query.is_batch) body += "]}";
  if (!query.is_batch && query.results.empty()) body = "{\"batch_predictions\":[]}";
  http::HttpResponse response;
  response.body = std::move(body);
  http_.respond(query.slot, std::move(response));
}

void QueryProcessor::record_answered(const PendingQuery& query, Clock::time_point now) {
  const AppRoute& app = *query.app;
  uint64_t defaults = 0;
  for (const InputResult& result : query.results) defaults += result.is_default ? 1 : 0;
  const auto elapsed = duration_cast<microseconds>(now - query.received).count();
  app.metrics->predictions.add(query.results.size());
  if (defaults > 0) app.metrics->default_answers.add(defaults);
  if (elapsed <= app.slo_micros) app.metrics->slo_attained.add(query.results.size() - defaults);
  app.metrics->latency_micros.observe(static_cast<double>(elapsed));
  if (!query.ensemble && !query.cascade) return;
  for (const InputResult& result : query.results) {
    if (result.partial) app.metrics->partial_answers.add();
    // An answer some model gave has a confidence (an ensemble's below its threshold too).
    if (!result.is_default || result.confidence > 0.0) app.metrics->observe_confidence(result.confidence);
  }
}

void QueryProcessor::on_completions(uv_async_t* handle) {
  static_cast<QueryProcessor*>(handle->data)->drain_completions();
}

void QueryProcessor::drain_completions() {
  Completion buffer[64];
  while (true) {
    const std::size_t taken = completions_.try_dequeue_bulk(buffer, 64);
    if (taken == 0) break;
    const Clock::time_point now = Clock::now();  // they arrived together: one read for all
    for (std::size_t i = 0; i < taken; ++i) complete(buffer[i], now);
  }
}

void QueryProcessor::deliver_here(std::vector<Completion>& completions) {
  if (completions.empty()) return;
  const Clock::time_point now = Clock::now();  // a replica's batch, answered together: one read for all
  for (Completion& completion : completions) complete(completion, now);
  completions.clear();
}

void QueryProcessor::complete(Completion& completion, Clock::time_point now) {
  if (completion.kind == CompletionKind::FeedbackApplied || completion.kind == CompletionKind::FeedbackRefused) {
    answer_feedback(completion);
    return;
  }
  auto found = pending_.find(completion.query_key);
  if (found == pending_.end()) return;  // already answered at its deadline
  PendingQuery& query = found->second;
  if (now >= query.deadline) {  // `now` is also the answer's latency, below
    // The deadline passed while the loop was busy, before its timer fired: the SLO promises the
    // default now, not a late answer.
    answer_overdue(found->first, query);
    pending_.erase(found);
    return;
  }
  if (completion.input_index >= query.results.size()) return;
  InputResult& result = query.results[completion.input_index];
  if (result.done) return;
  result.done = true;
  if (completion.kind == CompletionKind::Output) {
    result.output = std::move(completion.text);
    result.reported = completion.confidence;
  } else {
    const std::string& label =
        query.model_labels.empty() ? query.model_label
                                   : query.model_labels[completion.input_index % query.models_per_input];
    result.is_default = true;
    result.model_failed = completion.kind == CompletionKind::ModelError;
    if (result.model_failed) {
      // Counted against the linked model the policy asked (the slot's model for several per input).
      const uint32_t m = completion.input_index % std::max<uint32_t>(query.models_per_input, 1);
      if (m < query.linked.size()) query.app->linked_models[query.linked[m]].metrics->failures.add();
    }
    result.output = query.app->default_output;
    result.explanation = completion.kind == CompletionKind::ModelError
                             ? "Model " + label + " failed: " + completion.text
                             : "Failed to retrieve a prediction response from model " + label +
                                   " within the latency SLO of " + std::to_string(query.app->slo_micros) +
                                   " microseconds: " + completion.text;
  }
  if (query.cascade) {
    cascade_stage_answered(found->first, query, completion.input_index / query.models_per_input,
                           completion.kind);
  } else {
    --query.remaining;
  }
  if (query.remaining == 0) {
    finish(found->first, query, now);
    pending_.erase(found);
  }
}

void QueryProcessor::answer_overdue(uint64_t query_key, PendingQuery& query) {
  if (query.cascade) {
    cascade_overdue(query);
    finish(query_key, query);
    return;
  }
  fill_defaults(query, "Failed to retrieve a prediction response from model " + query.model_label +
                           " within the latency SLO of " + std::to_string(query.app->slo_micros) +
                           " microseconds");
  finish(query_key, query);
}

void QueryProcessor::arm_deadline_timer(Clock::time_point deadline) {
  if (deadline >= armed_deadline_) return;
  armed_deadline_ = deadline;
  const auto wait = duration_cast<milliseconds>(deadline - Clock::now() + microseconds(999));
  uv_timer_start(&deadline_timer_, &QueryProcessor::on_deadline_timer,
                 static_cast<uint64_t>(std::max<int64_t>(0, wait.count())), 0);
}

void QueryProcessor::on_deadline_timer(uv_timer_t* handle) {
  static_cast<QueryProcessor*>(handle->data)->expire_deadlines();
}

void QueryProcessor::expire_deadlines() {
  armed_deadline_ = Clock::time_point::max();
  // Answer anything due within the timer's 1 ms granularity rather than sleeping again for it.
  const Clock::time_point now = Clock::now() + microseconds(500);
  deadlines_.expire_until(now, [this, now](uint64_t key) {
    auto found = pending_.find(key);
    if (found != pending_.end()) {
      // Erase before answering: a feedback query's answer registers it under the same key elsewhere.
      PendingQuery query = std::move(found->second);
      pending_.erase(found);
      answer_overdue(key, query);
      return;
    }
    auto waiting = awaiting_feedback_.find(key);
    if (waiting == awaiting_feedback_.end() || waiting->second.expires > now) return;
    waiting->second.app->metrics->feedback_unconfirmed.add();
    reply_error(http_, waiting->second.slot, 503, "Feedback not confirmed",
                "the selection worker did not confirm applying this feedback within " +
                    std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kFeedbackConfirmationTime).count()) +
                    " s; it may still be applied later",
                waiting->second.app.get());
    awaiting_feedback_.erase(waiting);
  });
  if (auto next = deadlines_.earliest()) arm_deadline_timer(*next);
}

}  // namespace clipper
