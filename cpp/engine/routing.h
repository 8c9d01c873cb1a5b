// The immutable routing table: apps, their SLOs and defaults, and the model versions they reach.
// A new table is built from each configuration snapshot and published atomically; I/O threads keep
// a reference to the table they started a query with, so a switch never disturbs a query in flight.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "clipper_defaults.h"
#include "common/input_type.h"
#include "engine/model_registry.h"
#include "metrics/metrics.h"
#include "selection/selection_plan.h"
#include "selection/selection_weights.h"

namespace clipper {

struct LinkedModel {
  std::string name;
  ModelVersion* current = nullptr;                          // null: the model has no version yet
  std::unordered_map<std::string, ModelVersion*> versions;  // every registered version, by name
  metrics::SelectionMetrics* metrics = nullptr;             // this model as its app's policy sees it
                                                            // (set on every route's links)
};

// How a query refused at arrival under overload is answered (the app's "overload" option).
enum class OverloadAnswer : uint8_t {
  Reject,   // 429 (deadline) or 503 (a memory bound) with Retry-After and a JSON error
  Default,  // 200 with the app's default output and an explanation
};

struct AppRoute {
  std::string name;
  InputType input_type = InputType::Doubles;
  std::string default_output;
  int64_t slo_micros = 100000;
  OverloadAnswer overload = defaults::overload == "default" ? OverloadAnswer::Default : OverloadAnswer::Reject;
  std::vector<LinkedModel> linked_models;
  metrics::AppMetrics* metrics = nullptr;
  SelectionPlan selection;       // how a query picks among linked_models (default: the first one)
  uint32_t selection_id = 0;     // the app's key in SelectionWeights (0 when none was given)
  // A model served under its own name (Open Inference Protocol) rather than an app: its one linked
  // model is itself, it has no default output (a missing answer is an error), and its app-level
  // counters are kept here, not exported (the model's own series count its work).
  bool direct_model = false;
  std::shared_ptr<metrics::AppMetrics> own_metrics;
};

struct RoutingTable {
  uint64_t generation = 0;
  std::unordered_map<std::string, std::shared_ptr<const AppRoute>> apps;
  // Every model by name, as a route of its own (AppRoute::direct_model): how the Open Inference
  // Protocol reaches a model when no app has its name.
  std::unordered_map<std::string, std::shared_ptr<const AppRoute>> model_routes;

  const AppRoute* find(std::string_view app) const {
    auto found = apps.find(std::string(app));
    return found == apps.end() ? nullptr : found->second.get();
  }
};

// Parses a configuration snapshot (docs/interfaces.md) into a table, registering model versions.
// Throws std::invalid_argument naming the offending field.
std::shared_ptr<const RoutingTable> build_routing_table(std::string_view config_json,
                                                        ModelRegistry& models,
                                                        metrics::MetricsRegistry& metrics,
                                                        uint64_t generation,
                                                        SelectionWeights* weights = nullptr);

}  // namespace clipper
