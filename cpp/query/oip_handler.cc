// The query processor's Open Inference Protocol endpoints (KServe v2, REST, under /v2): resolves a
// name to an app (or, when no app has it, a model served under its own name), answers metadata and
// readiness, and runs infer requests through the same path as /predict (selection, cache, batching,
// SLO). The wire format is oip_codec's; this file is only the glue, on the I/O thread like the rest of
// QueryProcessor.
#include <algorithm>

#include "engine/engine.h"
#include "query/query_processor.h"

#ifndef CLIPPER_VERSION
#define CLIPPER_VERSION "unknown"
#endif

namespace clipper {
namespace {

constexpr std::string_view kEndpoints =
    "GET /v2, /v2/health/live, /v2/health/ready, /v2/models/<name>[/versions/<v>], "
    "/v2/models/<name>[/versions/<v>]/ready, POST /v2/models/<name>[/versions/<v>]/infer";

// The route a protocol name reaches: the app of that name, else the model of that name.
std::shared_ptr<const AppRoute> resolve(const RoutingTable& routing, const std::string& name) {
  auto app = routing.apps.find(name);
  if (app != routing.apps.end()) return app->second;
  auto model = routing.model_routes.find(name);
  return model == routing.model_routes.end() ? nullptr : model->second;
}

bool answers_now(const ModelVersion* model) {
  return model != nullptr && model->connected_replicas.load(std::memory_order_relaxed) > 0;
}

// Why a route cannot answer from a model now; empty when it can. A named version must have a
// connected replica; otherwise the model(s) its selection asks must (one, for single selection).
std::string not_ready_reason(const AppRoute& route, const ModelVersion* version) {
  if (version != nullptr) {
    return answers_now(version) ? std::string() : "version " + version->label + " has no connected replica";
  }
  if (route.linked_models.empty()) return "no model is linked to application '" + route.name + "'";
  const bool first_only = route.selection.mode == SelectionMode::Single;
  for (const LinkedModel& linked : route.linked_models) {
    if (answers_now(linked.current)) return std::string();
    if (first_only) break;
  }
  const LinkedModel& first = route.linked_models.front();
  return first_only || route.linked_models.size() == 1
             ? (first.current == nullptr ? "model '" + first.name + "' has no current version"
                                         : "model " + first.current->label + " has no connected replica")
             : "no linked model has a connected replica";
}

}  // namespace

void QueryProcessor::reply_oip_error(http::ResponseSlot slot, int status, std::string_view message,
                                     const AppRoute* app) {
  if (app != nullptr && status >= 400 && status < 500) app->metrics->client_errors.add();
  http::HttpResponse response;
  response.status = status;
  response.body = oip::render_error(message);
  if (status == 503) response.extra_headers = "Retry-After: 1\r\n";
  http_.respond(slot, std::move(response));
}

void QueryProcessor::handle_oip(http::HttpRequest& request, http::ResponseSlot slot, Clock::time_point received) {
  const std::optional<oip::Target> target = oip::parse_target(request.target);
  if (!target) {
    reply_oip_error(slot, 404, "unknown Open Inference Protocol path; this server answers " + std::string(kEndpoints),
                    nullptr);
    return;
  }
  const bool infer = target->endpoint == oip::Endpoint::ModelInfer;
  const bool method_allowed =
      infer ? request.method == HTTP_POST : (request.method == HTTP_GET || request.method == HTTP_HEAD);
  if (!method_allowed) {
    reply_oip_error(slot, 405, infer ? "infer accepts POST" : "this endpoint accepts GET", nullptr);
    return;
  }
  http::HttpResponse response;
  switch (target->endpoint) {
    case oip::Endpoint::ServerMetadata:
      response.body = oip::render_server_metadata(CLIPPER_VERSION);
      break;
    case oip::Endpoint::ServerLive:
      response.body = R"({"live":true})";
      break;
    case oip::Endpoint::ServerReady:
      if (!engine_.configured()) {
        // The protocol answers "not ready" with a 4xx status.
        reply_oip_error(slot, 400, "not ready: no configuration has been applied to the engine yet", nullptr);
        return;
      }
      response.body = R"({"ready":true})";
      break;
    default:
      handle_oip_model(*target, request, slot, received);
      return;
  }
  http_.respond(slot, std::move(response));
}

void QueryProcessor::handle_oip_model(const oip::Target& target, http::HttpRequest& request,
                                      http::ResponseSlot slot, Clock::time_point received) {
  const std::shared_ptr<const AppRoute> route = resolve(current_routing(), target.model);
  if (!route) {
    reply_oip_error(slot, 404, "unknown model '" + target.model + "': no application or model has that name",
                    nullptr);
    return;
  }
  // A named version: of the one model the app links (Clipper's rule), or of the model itself.
  const ModelVersion* version = nullptr;
  if (!target.version.empty()) {
    if (route->linked_models.size() != 1) {
      reply_oip_error(slot, 400,
                      "application '" + route->name + "' links " + std::to_string(route->linked_models.size()) +
                          " models; a version can be named only when it links exactly one",
                      route.get());
      return;
    }
    const LinkedModel& linked = route->linked_models.front();
    auto found = linked.versions.find(target.version);
    if (found == linked.versions.end()) {
      reply_oip_error(slot, 404, "model '" + linked.name + "' has no version '" + target.version + "'", route.get());
      return;
    }
    version = found->second;
  }

  http::HttpResponse response;
  switch (target.endpoint) {
    case oip::Endpoint::ModelMetadata: {
      std::vector<std::string> versions;
      if (version != nullptr) {
        versions.push_back(version->version);
      } else if (route->linked_models.size() == 1) {
        for (const auto& [name, ignored] : route->linked_models.front().versions) versions.push_back(name);
        std::sort(versions.begin(), versions.end());
      }
      response.body = oip::render_model_metadata(target.model, versions, route->input_type);
      http_.respond(slot, std::move(response));
      return;
    }
    case oip::Endpoint::ModelReady: {
      const std::string reason = not_ready_reason(*route, version);
      if (!reason.empty()) {
        reply_oip_error(slot, 400, "model '" + target.model + "' is not ready: " + reason, nullptr);
        return;
      }
      response.body = R"({"ready":true})";
      http_.respond(slot, std::move(response));
      return;
    }
    default:
      break;
  }

  // OIP answers carry no default: an overloaded model refuses before the body is decoded where it can.
  if (auto refusal = refusal_before_decoding(*route, Arrival::Infer, request.body, version, received, route->slo_micros)) {
    route->metrics->requests.add();
    route->metrics->rejected[static_cast<std::size_t>(refusal->reason)].add();
    reply_overloaded(*route, *refusal, slot, true);
    return;
  }
  oip::InferDecode decoded = oip::decode_infer_request(request.body, request.inference_header_length,
                                                       route->input_type,
                                                       engine_.options().max_queued_tasks_per_model);
  if (!decoded.ok()) {
    reply_oip_error(slot, decoded.status, decoded.error, route.get());
    return;
  }
  oip::InferRequest& infer = *decoded.request;
  auto call = std::make_unique<OipCall>();
  call->model_name = target.model;
  call->model_version = target.version;
  if (call->model_version.empty() && route->direct_model && route->linked_models.front().current != nullptr) {
    call->model_version = route->linked_models.front().current->version;
  }
  call->id = std::move(infer.id);
  call->outputs = std::move(infer.outputs);
  PredictBody body;
  body.inputs = std::move(infer.rows);
  body.is_batch = true;
  body.uid = infer.uid;
  if (!target.version.empty()) body.version = target.version;
  start_predict(route, body, slot, received, std::move(call));
}

void QueryProcessor::finish_oip(PendingQuery& query) {
  const OipCall& call = *query.oip;
  const AppRoute& route = *query.app;
  std::vector<oip::RowAnswer> rows;
  rows.reserve(query.results.size());
  const InputResult* first_default = nullptr;
  for (const InputResult& result : query.results) {
    rows.push_back({result.output, result.is_default});
    if (result.is_default && first_default == nullptr) first_default = &result;
  }
  if (route.direct_model && first_default != nullptr) {
    // A model served under its own name has no default output: a row it did not answer fails the request.
    reply_oip_error(query.slot, first_default->model_failed ? 500 : 504, first_default->explanation, nullptr);
    return;
  }
  oip::InferAnswer answer;
  answer.model_name = call.model_name;
  answer.model_version = call.model_version;
  answer.id = &call.id;
  if (query.model_labels.empty()) answer.model_label = query.model_label;  // one model was asked
  if (first_default != nullptr) answer.default_explanation = first_default->explanation;
  http::HttpResponse response;
  response.body.reserve(256 + 32 * rows.size());
  const std::size_t json_length = oip::render_infer_response(answer, rows, call.outputs, response.body);
  if (json_length < response.body.size()) {
    response.content_type = "application/octet-stream";
    response.extra_headers = "Inference-Header-Content-Length: " + std::to_string(json_length) + "\r\n";
  }
  http_.respond(query.slot, std::move(response));
}

}  // namespace clipper
