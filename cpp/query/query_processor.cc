#include "query/query_processor.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "engine/engine.h"
#include "query/query_codec.h"

namespace clipper {
namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

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
  const Clock::time_point received = Clock::now();
  std::string_view app_name;
  std::string_view action;
  if (!split_app_path(request.target, app_name, action) ||
      (action != "predict" && action != "update")) {
    reply_error(http_, slot, 404, "Not found",
                "unknown path " + std::string(path_of(request.target)) +
                    "; use POST /<app>/predict, POST /<app>/update, GET /metrics, /healthz or /readyz",
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
    handle_update(*app, request, slot);
  }
}

void QueryProcessor::handle_update(const AppRoute& app, http::HttpRequest& request, http::ResponseSlot slot) {
  auto decoded = decode_update_body(request.body, app.input_type);
  if (!decoded.ok()) {
    reply_error(http_, slot, 400, decoded.failure.error, decoded.failure.cause, &app);
    return;
  }
  app.metrics->feedback.add();
  http::HttpResponse response;
  const uint64_t query_id = engine_.next_query_ids(1);
  response.body = "{\"query_id\":" + std::to_string(query_id) + ",\"feedback_accepted\":true}";
  http_.respond(slot, std::move(response));
}

void QueryProcessor::handle_predict(const std::shared_ptr<const AppRoute>& app, http::HttpRequest& request,
                                    http::ResponseSlot slot, Clock::time_point received) {
  auto decoded = decode_predict_body(request.body, app->input_type);
  if (!decoded.ok()) {
    reply_error(http_, slot, 400, decoded.failure.error, decoded.failure.cause, app.get());
    return;
  }
  PredictBody& body = *decoded.value;
  app->metrics->requests.add();

  // Choose the model version: the requested one, else the current version of the linked model.
  ModelVersion* model = nullptr;
  std::string no_model_reason;
  if (app->linked_models.empty()) {
    if (body.version) {
      reply_error(http_, slot, 400, "Query processing error",
                  "version " + *body.version + " was requested but no model is linked to application '" +
                      app->name + "'",
                  app.get());
      return;
    }
    no_model_reason = "No model is linked to application '" + app->name +
                      "'; link one with link_model_to_app";
  } else {
    const LinkedModel& linked = app->linked_models.front();
    if (body.version) {
      if (app->linked_models.size() > 1) {
        reply_error(http_, slot, 400, "Query processing error",
                    "Too many models linked to application " + app->name + " to select a version",
                    app.get());
        return;
      }
      auto version = linked.versions.find(*body.version);
      if (version == linked.versions.end()) {
        reply_error(http_, slot, 400, "Query processing error",
                    "Requested version: " + *body.version + " does not exist for model: " + linked.name,
                    app.get());
        return;
      }
      model = version->second;
    } else if (linked.current == nullptr) {
      no_model_reason = "Model '" + linked.name + "' linked to application '" + app->name +
                        "' has no deployed version";
    } else {
      model = linked.current;
    }
    if (model != nullptr && model->connected_replicas.load(std::memory_order_relaxed) == 0) {
      no_model_reason = "No connected models found for query: model " + model->label +
                        " has no connected replica";
      model = nullptr;
    }
  }

  const uint32_t count = static_cast<uint32_t>(body.inputs.size());
  if (model != nullptr && model->queue.approximate_size() + count > engine_.options().max_queued_tasks_per_model) {
    reply_error(http_, slot, 503, "Overloaded",
                "the queue of model " + model->label + " is full; retry shortly", app.get());
    return;
  }

  const uint64_t first_query_id = engine_.next_query_ids(std::max<uint32_t>(count, 1));
  PendingQuery query;
  query.slot = slot;
  query.app = app;
  query.is_batch = body.is_batch;
  query.first_query_id = first_query_id;
  query.results.resize(count);
  query.remaining = count;
  query.received = received;

  if (count == 0 || model == nullptr) {
    fill_defaults(query, no_model_reason);
    finish(first_query_id, query);
    return;
  }

  query.model_label = model->label;
  const Clock::time_point deadline = received + microseconds(app->slo_micros);
  PredictionCache& cache = engine_.cache();
  bool queued = false;
  for (uint32_t index = 0; index < count; ++index) {
    Task task;
    if (cache.enabled()) {
      const CacheKey key = make_cache_key(model->id, body.inputs[index].payload);
      const CacheWaiter waiter{io_thread_, first_query_id, index, deadline};
      InputResult& result = query.results[index];
      switch (cache.lookup(key, waiter, result.output)) {
        case PredictionCache::Lookup::Hit:
          result.done = true;
          --query.remaining;
          continue;
        case PredictionCache::Lookup::Joined:
          continue;  // the identical evaluation in flight answers this input too
        case PredictionCache::Lookup::Miss:
          task.cached = true;
          task.cache_key = key;
          break;
      }
    }
    task.io_thread = io_thread_;
    task.query_key = first_query_id;
    task.input_index = index;
    task.deadline = deadline;
    task.enqueued = received;
    task.element_count = body.inputs[index].element_count;
    task.payload = std::move(body.inputs[index].payload);
    scheduler_.submit(*model, std::move(task));
    queued = true;
  }
  if (query.remaining == 0) {  // every input came from the cache
    finish(first_query_id, query);
    return;
  }
  pending_.emplace(first_query_id, std::move(query));
  deadlines_.add(deadline, first_query_id);
  arm_deadline_timer(deadline);
  if (queued) scheduler_.notify_work(*model);
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

void QueryProcessor::finish(uint64_t, PendingQuery& query) {
  const AppRoute& app = *query.app;
  std::string body;
  body.reserve(64 * query.results.size() + 32);
  uint64_t defaults = 0;
  if (query.is_batch) body += "{\"batch_predictions\":[";
  for (std::size_t i = 0; i < query.results.size(); ++i) {
    const InputResult& result = query.results[i];
    if (i > 0) body += ',';
    render_prediction(body, query.first_query_id + i, result.output, result.is_default, result.explanation);
    defaults += result.is_default ? 1 : 0;
  }
  if (query.is_batch) body += "]}";
  if (!query.is_batch && query.results.empty()) body = "{\"batch_predictions\":[]}";
  const auto elapsed = duration_cast<microseconds>(Clock::now() - query.received).count();
  app.metrics->predictions.add(query.results.size());
  if (defaults > 0) app.metrics->default_answers.add(defaults);
  if (elapsed <= app.slo_micros) app.metrics->slo_attained.add(query.results.size() - defaults);
  app.metrics->latency_micros.observe(static_cast<double>(elapsed));
  http::HttpResponse response;
  response.body = std::move(body);
  http_.respond(query.slot, std::move(response));
}

void QueryProcessor::on_completions(uv_async_t* handle) {
  static_cast<QueryProcessor*>(handle->data)->drain_completions();
}

void QueryProcessor::drain_completions() {
  Completion buffer[64];
  while (true) {
    const std::size_t taken = completions_.try_dequeue_bulk(buffer, 64);
    if (taken == 0) break;
    for (std::size_t i = 0; i < taken; ++i) complete(buffer[i]);
  }
}

void QueryProcessor::deliver_here(std::vector<Completion>& completions) {
  for (Completion& completion : completions) complete(completion);
  completions.clear();
}

void QueryProcessor::complete(Completion& completion) {
  auto found = pending_.find(completion.query_key);
  if (found == pending_.end()) return;  // already answered at its deadline
  PendingQuery& query = found->second;
  if (Clock::now() >= query.received + microseconds(query.app->slo_micros)) {
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
  } else {
    result.is_default = true;
    result.output = query.app->default_output;
    result.explanation = completion.kind == CompletionKind::ModelError
                             ? "Model " + query.model_label + " failed: " + completion.text
                             : "Failed to retrieve a prediction response from model " + query.model_label +
                                   " within the latency SLO of " + std::to_string(query.app->slo_micros) +
                                   " microseconds: " + completion.text;
  }
  if (--query.remaining == 0) {
    finish(found->first, query);
    pending_.erase(found);
  }
}

void QueryProcessor::answer_overdue(uint64_t query_key, PendingQuery& query) {
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
  deadlines_.expire_until(now, [this](uint64_t key) {
    auto found = pending_.find(key);
    if (found == pending_.end()) return;
    answer_overdue(key, found->second);
    pending_.erase(found);
  });
  if (auto next = deadlines_.earliest()) arm_deadline_timer(*next);
}

}  // namespace clipper
