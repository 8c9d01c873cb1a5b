#include "engine/routing.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace clipper {
namespace {

class RoutingTest : public ::testing::Test {
 protected:
  metrics::MetricsRegistry metrics;
  ModelRegistry models{metrics};
};

TEST_F(RoutingTest, BuildsAppsWithTheirCurrentModelVersion) {
  auto table = build_routing_table(R"({
    "apps": [{"name": "a", "input_type": "doubles", "default_output": "-1", "slo_micros": 1000,
              "linked_models": ["m"]}],
    "models": [{"name": "m", "version": "1", "input_type": "doubles", "batch_size": -1},
               {"name": "m", "version": "2", "input_type": "doubles", "batch_size": 9, "current": true}]
  })", models, metrics, 1);
  const AppRoute* app = table->find("a");
  ASSERT_NE(app, nullptr);
  EXPECT_EQ(app->slo_micros, 1000);
  ASSERT_EQ(app->linked_models.size(), 1u);
  ASSERT_NE(app->linked_models[0].current, nullptr);
  EXPECT_EQ(app->linked_models[0].current->version, "2");
  EXPECT_EQ(app->linked_models[0].current->batch_size_limit.load(), 9);
  EXPECT_EQ(app->linked_models[0].versions.size(), 2u);
  EXPECT_EQ(table->find("b"), nullptr);
}

TEST_F(RoutingTest, ServesEveryModelUnderItsOwnNameWithTheSloItBatchesFor) {
  auto table = build_routing_table(R"({
    "apps": [{"name": "a", "input_type": "floats", "default_output": "-1", "slo_micros": 20000,
              "linked_models": ["m"]},
             {"name": "b", "input_type": "floats", "default_output": "-1", "slo_micros": 50000,
              "linked_models": ["m"]}],
    "models": [{"name": "m", "version": "1", "input_type": "floats", "current": true},
               {"name": "m", "version": "2", "input_type": "floats"},
               {"name": "alone", "version": "7", "input_type": "strings"}]
  })", models, metrics, 1);
  ASSERT_EQ(table->model_routes.size(), 2u);
  const AppRoute& linked = *table->model_routes.at("m");
  EXPECT_TRUE(linked.direct_model);
  EXPECT_EQ(linked.input_type, InputType::Floats);
  EXPECT_EQ(linked.slo_micros, 20000);  // the tightest app that reaches it
  ASSERT_EQ(linked.linked_models.size(), 1u);
  EXPECT_EQ(linked.linked_models[0].versions.size(), 2u);
  EXPECT_EQ(linked.selection.default_weights, std::vector<double>{1.0});
  ASSERT_NE(linked.metrics, nullptr);
  const AppRoute& alone = *table->model_routes.at("alone");
  EXPECT_EQ(alone.input_type, InputType::Strings);
  EXPECT_EQ(alone.linked_models[0].current, nullptr);  // no current version: answers name none
  EXPECT_FALSE(table->find("a")->direct_model);
  // Model routes are not apps: their counters stay out of the exported metrics.
  EXPECT_EQ(metrics.render_prometheus().find("app=\"alone\""), std::string::npos);
}

TEST_F(RoutingTest, AnAppRejectsUnderOverloadUnlessItAsksForItsDefault) {
  auto table = build_routing_table(R"({"apps": [
    {"name": "plain", "input_type": "doubles", "default_output": "-1", "slo_micros": 1000},
    {"name": "strict", "input_type": "doubles", "default_output": "-1", "slo_micros": 1000, "overload": "reject"},
    {"name": "lenient", "input_type": "doubles", "default_output": "-1", "slo_micros": 1000, "overload": "default"}
  ]})", models, metrics, 1);
  EXPECT_EQ(table->find("plain")->overload, OverloadAnswer::Reject);
  EXPECT_EQ(table->find("strict")->overload, OverloadAnswer::Reject);
  EXPECT_EQ(table->find("lenient")->overload, OverloadAnswer::Default);
  for (const char* bad : {R"("shed")", "1", "true"}) {
    const std::string json = std::string(R"({"apps": [{"name": "a", "input_type": "doubles", "default_output": "-1",
                                          "slo_micros": 1000, "overload": )") + bad + "}]}";
    try {
      build_routing_table(json, models, metrics, 1);
      FAIL() << "accepted overload " << bad;
    } catch (const std::invalid_argument& error) {
      EXPECT_NE(std::string(error.what()).find(R"(overload must be "reject" or "default")"), std::string::npos)
          << error.what();
    }
  }
}

TEST_F(RoutingTest, RejectsInvalidConfigurationsNamingTheField) {
  auto expect_rejected = [this](const char* json, const char* fragment) {
    try {
      build_routing_table(json, models, metrics, 1);
      FAIL() << "accepted: " << json;
    } catch (const std::invalid_argument& error) {
      EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
    }
  };
  expect_rejected("{", "not valid JSON");
  expect_rejected(std::string(200000, '[').c_str(), "nest deeper");
  expect_rejected(R"({"apps": [{"name": "a", "input_type": "tensors", "default_output": "x", "slo_micros": 1}]})",
                  "unknown input_type");
  expect_rejected(R"({"apps": [{"name": "a", "input_type": "ints", "default_output": "x", "slo_micros": 0}]})",
                  "slo_micros");
  expect_rejected(R"({"apps": [{"name": "a", "input_type": "ints", "default_output": "x", "slo_micros": 5,
                      "linked_models": ["ghost"]}]})",
                  "ghost");
  expect_rejected(R"({"apps": [{"name": "a", "input_type": "ints", "default_output": "x", "slo_micros": 5,
                      "linked_models": ["m"]}],
                      "models": [{"name": "m", "version": "1", "input_type": "doubles", "current": true}]})",
                  "takes ints");
}

TEST_F(RoutingTest, ACascadeTriesItsOrderThenTheOtherLinkedModelsInLinkOrder) {
  auto table = build_routing_table(R"({
    "apps": [{"name": "a", "input_type": "doubles", "default_output": "-1", "slo_micros": 1000,
              "linked_models": ["fast", "medium", "slow"],
              "selection": {"mode": "cascade", "order": ["slow", "gone", "fast"], "confidence_threshold": 0.7}}],
    "models": [{"name": "fast", "version": "1", "input_type": "doubles", "current": true},
               {"name": "medium", "version": "1", "input_type": "doubles", "current": true},
               {"name": "slow", "version": "1", "input_type": "doubles", "current": true}]
  })", models, metrics, 1);
  const AppRoute* app = table->find("a");
  ASSERT_NE(app, nullptr);
  EXPECT_EQ(app->selection.mode, SelectionMode::Cascade);
  EXPECT_EQ(app->selection.cascade_order, (std::vector<uint32_t>{2, 0, 1}));  // "gone" is not linked
  EXPECT_DOUBLE_EQ(app->selection.confidence_threshold, 0.7);
  for (const LinkedModel& linked : app->linked_models) EXPECT_NE(linked.metrics, nullptr) << linked.name;
  // A model served under its own name (Open Inference Protocol) counts its selections too.
  for (const auto& [name, route] : table->model_routes) {
    EXPECT_NE(route->linked_models.front().metrics, nullptr) << name;
  }
  EXPECT_EQ(table->model_routes.size(), 3u);
  EXPECT_THROW(build_routing_table(R"({
    "apps": [{"name": "a", "input_type": "doubles", "default_output": "-1", "slo_micros": 1000,
              "linked_models": ["fast"], "selection": {"mode": "cascade", "order": ["fast", "fast"]}}],
    "models": [{"name": "fast", "version": "1", "input_type": "doubles", "current": true}]
  })", models, metrics, 2), std::invalid_argument);
}

TEST_F(RoutingTest, AModelVersionKeepsItsInputType) {
  build_routing_table(R"({"models": [{"name": "m", "version": "1", "input_type": "doubles"}]})", models, metrics, 1);
  EXPECT_THROW(build_routing_table(R"({"models": [{"name": "m", "version": "1", "input_type": "ints"}]})",
                                   models, metrics, 2),
               std::invalid_argument);
}

TEST_F(RoutingTest, RegistrationsCreateABoundedNumberOfUnconfiguredVersions) {
  bool refused = false;
  for (std::size_t i = 0; i < ModelRegistry::kMaxUnconfiguredVersions; ++i) {
    ASSERT_NE(models.find_or_create_for_replica("flood-" + std::to_string(i), "1", InputType::Doubles, refused),
              nullptr);
    ASSERT_FALSE(refused);
  }
  EXPECT_EQ(models.find_or_create_for_replica("one-more", "1", InputType::Doubles, refused), nullptr);
  EXPECT_TRUE(refused);
  EXPECT_EQ(models.find("one-more", "1"), nullptr);
  // Versions that exist still take registrations, and a configuration still adds versions.
  EXPECT_NE(models.find_or_create_for_replica("flood-0", "1", InputType::Doubles, refused), nullptr);
  EXPECT_FALSE(refused);
  EXPECT_EQ(models.find_or_create_for_replica("flood-0", "1", InputType::Strings, refused), nullptr);
  EXPECT_FALSE(refused);  // a type mismatch, not the bound
  EXPECT_NE(models.find_or_create("configured", "1", InputType::Doubles), nullptr);
  // Once a configuration names an unconfigured version, it frees a place for another.
  EXPECT_NE(models.find_or_create("flood-1", "1", InputType::Doubles), nullptr);
  EXPECT_NE(models.find_or_create_for_replica("one-more", "1", InputType::Doubles, refused), nullptr);
  EXPECT_FALSE(refused);
}

}  // namespace
}  // namespace clipper
