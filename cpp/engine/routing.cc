#include "engine/routing.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include "common/bounded_json.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>

namespace clipper {
namespace {

std::string required_string(const rapidjson::Value& object, const char* field, const std::string& where) {
  auto found = object.FindMember(field);
  if (found == object.MemberEnd() || !found->value.IsString()) {
    throw std::invalid_argument(where + ": field \"" + field + "\" must be a string");
  }
  return std::string(found->value.GetString(), found->value.GetStringLength());
}

InputType required_input_type(const rapidjson::Value& object, const std::string& where) {
  const std::string name = required_string(object, "input_type", where);
  auto type = parse_input_type(name);
  if (!type) {
    throw std::invalid_argument(where + ": unknown input_type \"" + name +
                                "\" (use bytes, ints, floats, doubles or strings)");
  }
  return *type;
}

// The app's optional "selection" object: mode, weights by model name (mapped to link order and
// normalised; absent or all zero = equal weights), confidence_threshold and, for cascades, order.
SelectionPlan parse_selection(const rapidjson::Value& entry, const AppRoute& app, const std::string& where) {
  SelectionPlan plan;
  const std::size_t linked = app.linked_models.size();
  plan.default_weights.assign(linked, linked == 0 ? 0.0 : 1.0 / static_cast<double>(linked));
  auto member = entry.FindMember("selection");
  if (member == entry.MemberEnd() || member->value.IsNull()) return plan;
  const rapidjson::Value& selection = member->value;
  if (!selection.IsObject()) throw std::invalid_argument(where + ": selection must be an object");
  auto mode_name = selection.FindMember("mode");
  if (mode_name != selection.MemberEnd()) {
    if (!mode_name->value.IsString()) throw std::invalid_argument(where + ": selection.mode must be a string");
    auto mode = parse_selection_mode(mode_name->value.GetString());
    if (!mode) {
      throw std::invalid_argument(where + ": unknown selection.mode \"" + std::string(mode_name->value.GetString()) +
                                  "\" (use single, sample, ensemble or cascade)");
    }
    plan.mode = *mode;
  }
  auto index_of = [&app](std::string_view model) -> std::optional<std::size_t> {
    for (std::size_t i = 0; i < app.linked_models.size(); ++i) {
      if (app.linked_models[i].name == model) return i;
    }
    return std::nullopt;
  };
  auto weights = selection.FindMember("weights");
  if (weights != selection.MemberEnd() && !weights->value.IsNull()) {
    if (!weights->value.IsObject()) throw std::invalid_argument(where + ": selection.weights must be an object");
    std::vector<double> given(linked, 0.0);
    double total = 0.0;
    for (const auto& weight : weights->value.GetObject()) {
      if (!weight.value.IsNumber() || !(weight.value.GetDouble() >= 0.0) || !std::isfinite(weight.value.GetDouble())) {
        throw std::invalid_argument(where + ": selection.weights holds numbers >= 0");
      }
      auto index = index_of(std::string_view(weight.name.GetString(), weight.name.GetStringLength()));
      if (!index) continue;  // a model no longer linked
      given[*index] = weight.value.GetDouble();
      total += given[*index];
    }
    if (total > 0.0) {
      for (double& weight : given) weight /= total;
      plan.default_weights = std::move(given);
    }
  }
  auto threshold = selection.FindMember("confidence_threshold");
  if (threshold != selection.MemberEnd() && !threshold->value.IsNull()) {
    if (!threshold->value.IsNumber() || threshold->value.GetDouble() < 0.0 || threshold->value.GetDouble() > 1.0) {
      throw std::invalid_argument(where + ": selection.confidence_threshold must be a number from 0 to 1");
    }
    plan.confidence_threshold = threshold->value.GetDouble();
  }
  auto order = selection.FindMember("order");
  if (order != selection.MemberEnd() && !order->value.IsNull()) {
    if (!order->value.IsArray()) throw std::invalid_argument(where + ": selection.order must be an array");
    for (const auto& name : order->value.GetArray()) {
      if (!name.IsString()) throw std::invalid_argument(where + ": selection.order holds model names");
      auto index = index_of(std::string_view(name.GetString(), name.GetStringLength()));
      if (!index) continue;  // a model no longer linked
      if (std::find(plan.cascade_order.begin(), plan.cascade_order.end(), *index) != plan.cascade_order.end()) {
        throw std::invalid_argument(where + ": selection.order names model \"" + std::string(name.GetString()) +
                                    "\" twice");
      }
      plan.cascade_order.push_back(static_cast<uint32_t>(*index));
    }
  }
  if (plan.mode == SelectionMode::Cascade) {
    // Linked models the order does not name follow it, in link order: every linked model is a stage.
    for (uint32_t index = 0; index < linked; ++index) {
      if (std::find(plan.cascade_order.begin(), plan.cascade_order.end(), index) == plan.cascade_order.end()) {
        plan.cascade_order.push_back(index);
      }
    }
  }
  return plan;
}

// A route that serves one model under its own name: single selection, the SLO its current version
// batches for (the tightest of the apps that reach it, else the engine's default), no default output.
std::shared_ptr<const AppRoute> model_route(const LinkedModel& model) {
  auto route = std::make_shared<AppRoute>();
  route->name = model.name;
  route->direct_model = true;
  const ModelVersion* typed = model.current != nullptr ? model.current : model.versions.begin()->second;
  route->input_type = typed->input_type;
  if (model.current != nullptr) route->slo_micros = model.current->slo_micros.load(std::memory_order_relaxed);
  route->linked_models.push_back(model);
  route->selection.default_weights = {1.0};
  route->own_metrics = std::make_shared<metrics::AppMetrics>();
  route->metrics = route->own_metrics.get();
  route->linked_models.back().metrics = route->metrics->model(model.name);  // never exported either
  return route;
}

}  // namespace

std::shared_ptr<const RoutingTable> build_routing_table(std::string_view config_json,
                                                        ModelRegistry& models,
                                                        metrics::MetricsRegistry& metrics,
                                                        uint64_t generation,
                                                        SelectionWeights* weights) {
  rapidjson::Document doc;
  const JsonParseFailure parse = parse_bounded_json(doc, config_json);
  if (parse.failed()) {
    throw std::invalid_argument("configuration is not valid JSON: " + parse.message + " at offset " +
                                std::to_string(parse.offset));
  }
  if (!doc.IsObject()) throw std::invalid_argument("configuration must be a JSON object");

  // Models first: name -> versions and current version.
  std::unordered_map<std::string, LinkedModel> model_table;
  auto models_member = doc.FindMember("models");
  if (models_member != doc.MemberEnd()) {
    if (!models_member->value.IsArray()) throw std::invalid_argument("\"models\" must be an array");
    for (const auto& entry : models_member->value.GetArray()) {
      if (!entry.IsObject()) throw std::invalid_argument("each model must be an object");
      const std::string name = required_string(entry, "name", "model");
      const std::string where = "model \"" + name + "\"";
      const std::string version = required_string(entry, "version", where);
      const InputType type = required_input_type(entry, where);
      ModelVersion* model_version = models.find_or_create(name, version, type);
      if (model_version == nullptr) {
        throw std::invalid_argument(where + " version \"" + version +
                                    "\" is already known with another input type");
      }
      auto batch = entry.FindMember("batch_size");
      if (batch != entry.MemberEnd()) {
        if (!batch->value.IsInt() || batch->value.GetInt() == 0 || batch->value.GetInt() < -1) {
          throw std::invalid_argument(where + ": batch_size must be -1 (adaptive) or a positive integer");
        }
        model_version->batch_size_limit.store(batch->value.GetInt(), std::memory_order_relaxed);
      }
      auto cap = entry.FindMember("max_batch_size");
      if (cap != entry.MemberEnd() && !cap->value.IsNull()) {
        if (!cap->value.IsInt() || cap->value.GetInt() < 1) {
          throw std::invalid_argument(where + ": max_batch_size must be a positive integer");
        }
        model_version->max_batch_size.store(cap->value.GetInt(), std::memory_order_relaxed);
      } else {
        model_version->max_batch_size.store(0, std::memory_order_relaxed);
      }
      auto wait = entry.FindMember("batch_wait_timeout_micros");
      if (wait != entry.MemberEnd()) {
        if (!wait->value.IsInt64() || wait->value.GetInt64() < 0) {
          throw std::invalid_argument(where + ": batch_wait_timeout_micros must be an integer >= 0");
        }
        model_version->batch_wait_timeout_micros.store(wait->value.GetInt64(), std::memory_order_relaxed);
      } else {
        model_version->batch_wait_timeout_micros.store(0, std::memory_order_relaxed);
      }
      LinkedModel& linked = model_table[name];
      linked.name = name;
      linked.versions[version] = model_version;
      auto current = entry.FindMember("current");
      if (current != entry.MemberEnd() && current->value.IsBool() && current->value.GetBool()) {
        if (linked.current != nullptr) {
          throw std::invalid_argument(where + " has more than one current version");
        }
        linked.current = model_version;
      }
    }
  }

  auto table = std::make_shared<RoutingTable>();
  table->generation = generation;
  auto apps_member = doc.FindMember("apps");
  if (apps_member != doc.MemberEnd()) {
    if (!apps_member->value.IsArray()) throw std::invalid_argument("\"apps\" must be an array");
    for (const auto& entry : apps_member->value.GetArray()) {
      if (!entry.IsObject()) throw std::invalid_argument("each app must be an object");
      auto app = std::make_shared<AppRoute>();
      app->name = required_string(entry, "name", "app");
      const std::string where = "app \"" + app->name + "\"";
      if (app->name.empty() || app->name.find('/') != std::string::npos) {
        throw std::invalid_argument(where + ": the name must be non-empty and contain no '/'");
      }
      app->input_type = required_input_type(entry, where);
      app->default_output = required_string(entry, "default_output", where);
      auto slo = entry.FindMember("slo_micros");
      if (slo == entry.MemberEnd() || !slo->value.IsInt64() || slo->value.GetInt64() <= 0) {
        throw std::invalid_argument(where + ": slo_micros must be a positive integer");
      }
      app->slo_micros = slo->value.GetInt64();
      auto overload = entry.FindMember("overload");
      if (overload != entry.MemberEnd() && !overload->value.IsNull()) {
        const std::string_view answer = overload->value.IsString()
                                            ? std::string_view(overload->value.GetString(), overload->value.GetStringLength())
                                            : std::string_view();
        if (answer != "reject" && answer != "default") {
          throw std::invalid_argument(where + ": overload must be \"reject\" or \"default\"");
        }
        app->overload = answer == "default" ? OverloadAnswer::Default : OverloadAnswer::Reject;
      }
      auto links = entry.FindMember("linked_models");
      if (links != entry.MemberEnd()) {
        if (!links->value.IsArray()) throw std::invalid_argument(where + ": linked_models must be an array");
        for (const auto& link : links->value.GetArray()) {
          if (!link.IsString()) throw std::invalid_argument(where + ": linked_models holds names");
          const std::string model_name(link.GetString(), link.GetStringLength());
          auto found = model_table.find(model_name);
          if (found == model_table.end()) {
            throw std::invalid_argument(where + " links model \"" + model_name +
                                        "\", which the configuration does not define");
          }
          if (found->second.current != nullptr && found->second.current->input_type != app->input_type) {
            throw std::invalid_argument(where + " takes " +
                                        std::string(input_type_name(app->input_type)) +
                                        " but model \"" + model_name + "\" takes " +
                                        std::string(input_type_name(found->second.current->input_type)));
          }
          app->linked_models.push_back(found->second);
        }
      }
      app->selection = parse_selection(entry, *app, where);
      if (weights != nullptr) app->selection_id = weights->register_app(app->name);
      app->metrics = metrics.app(app->name);
      for (LinkedModel& linked : app->linked_models) linked.metrics = app->metrics->model(linked.name);
      if (!table->apps.emplace(app->name, app).second) {
        throw std::invalid_argument(where + " is defined twice");
      }
    }
  }
  // Each model version batches for the tightest SLO among the apps that can reach it.
  std::unordered_map<ModelVersion*, int64_t> tightest_slo;
  for (const auto& [name, app] : table->apps) {
    for (const auto& linked : app->linked_models) {
      for (const auto& [version_name, version] : linked.versions) {
        auto [slot, inserted] = tightest_slo.try_emplace(version, app->slo_micros);
        if (!inserted) slot->second = std::min(slot->second, app->slo_micros);
      }
    }
  }
  for (const auto& [version, slo] : tightest_slo) version->slo_micros.store(slo, std::memory_order_relaxed);
  for (const auto& [name, model] : model_table) table->model_routes.emplace(name, model_route(model));
  return table;
}

}  // namespace clipper
