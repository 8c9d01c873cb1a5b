// Prometheus rendering of the metrics registry and the process metrics: base units (seconds), HELP
// and TYPE before every family, labels escaped, per-replica series.
#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <string>

#include "metrics/process_metrics.h"

namespace clipper::metrics {
namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(MetricsRegistryTest, LatencyObservedInMicrosecondsIsExportedInSeconds) {
  MetricsRegistry registry;
  registry.app("sum")->latency_micros.observe(1500);   // 1.5 ms
  registry.app("sum")->latency_micros.observe(20000);  // 20 ms
  const std::string text = registry.render_prometheus();
  EXPECT_TRUE(contains(text, "# TYPE clipper_app_latency_seconds histogram\n"));
  EXPECT_TRUE(contains(text, "clipper_app_latency_seconds_bucket{app=\"sum\",le=\"0.001\"} 0\n"));
  EXPECT_TRUE(contains(text, "clipper_app_latency_seconds_bucket{app=\"sum\",le=\"0.0025\"} 1\n"));
  EXPECT_TRUE(contains(text, "clipper_app_latency_seconds_bucket{app=\"sum\",le=\"0.025\"} 2\n"));
  EXPECT_TRUE(contains(text, "clipper_app_latency_seconds_bucket{app=\"sum\",le=\"10\"} 2\n"));
  EXPECT_TRUE(contains(text, "clipper_app_latency_seconds_bucket{app=\"sum\",le=\"+Inf\"} 2\n"));
  EXPECT_TRUE(contains(text, "clipper_app_latency_seconds_sum{app=\"sum\"} 0.0215\n"));
  EXPECT_TRUE(contains(text, "clipper_app_latency_seconds_count{app=\"sum\"} 2\n"));
  EXPECT_FALSE(contains(text, "micros"));
}

TEST(MetricsRegistryTest, BatchSizeKeepsItsOwnUnit) {
  MetricsRegistry registry;
  registry.model("m", "1")->batch_size.observe(3);
  const std::string text = registry.render_prometheus();
  EXPECT_TRUE(contains(text, "clipper_model_batch_size_bucket{model=\"m\",version=\"1\",le=\"2\"} 0\n"));
  EXPECT_TRUE(contains(text, "clipper_model_batch_size_bucket{model=\"m\",version=\"1\",le=\"4\"} 1\n"));
  EXPECT_TRUE(contains(text, "clipper_model_batch_size_sum{model=\"m\",version=\"1\"} 3\n"));
}

TEST(MetricsRegistryTest, ReplicaSeriesCarryModelVersionAndReplica) {
  MetricsRegistry registry;
  ModelMetrics* model = registry.model("m", "2");
  ReplicaMetrics* replica = model->attach_replica(7);
  replica->batches.add(3);
  replica->failed_batches.add();
  replica->inflight_batches.set(2);
  replica->connected.set(1);
  replica->batch_latency_micros.observe(4000);
  const std::string text = registry.render_prometheus();
  const std::string labels = "{model=\"m\",version=\"2\",replica=\"7\"}";
  EXPECT_TRUE(contains(text, "# TYPE clipper_replica_batches_total counter\nclipper_replica_batches_total" + labels + " 3\n"));
  EXPECT_TRUE(contains(text, "clipper_replica_failed_batches_total" + labels + " 1\n"));
  EXPECT_TRUE(contains(text, "# TYPE clipper_replica_inflight_batches gauge\nclipper_replica_inflight_batches" + labels + " 2\n"));
  EXPECT_TRUE(contains(text, "clipper_replica_connected" + labels + " 1\n"));
  EXPECT_TRUE(contains(text, "clipper_replica_slow" + labels + " 0\n"));
  EXPECT_TRUE(contains(text, "clipper_replica_batch_latency_seconds_bucket{model=\"m\",version=\"2\",replica=\"7\",le=\"0.005\"} 1\n"));
  EXPECT_TRUE(contains(text, "clipper_replica_batch_latency_seconds_sum" + labels + " 0.004\n"));
}

TEST(MetricsRegistryTest, ADepartedReplicasSeriesLeaveWithTheLastConnectionThatClaimedItsId) {
  MetricsRegistry registry;
  ModelMetrics* model = registry.model("m", "1");
  const std::string labels = "{model=\"m\",version=\"1\",replica=\"3\"}";
  ReplicaMetrics* first = model->attach_replica(3);
  EXPECT_EQ(model->attach_replica(3), first);  // a second connection with the same id shares the series
  first->batches.add(5);
  model->detach_replica(3);
  EXPECT_TRUE(contains(registry.render_prometheus(), "clipper_replica_batches_total" + labels + " 5\n"));
  model->detach_replica(3);
  const std::string text = registry.render_prometheus();
  EXPECT_FALSE(contains(text, "replica=\"3\"")) << text;
  EXPECT_TRUE(contains(text, "clipper_model_batches_total{model=\"m\",version=\"1\"}"));  // the model's stay
  model->detach_replica(3);  // an unmatched detach is harmless
  EXPECT_EQ(model->attach_replica(3)->batches.value(), 0u);  // back with the same id: a fresh series
}

TEST(MetricsRegistryTest, ReplicaChurnLeavesMetricsBounded) {
  MetricsRegistry registry;
  ModelMetrics* model = registry.model("m", "1");
  model->attach_replica(0);
  const std::size_t steady = registry.render_prometheus().size();
  for (int32_t id = 1; id <= 10'000; ++id) {
    model->attach_replica(id)->batches.add();
    model->detach_replica(id);
  }
  EXPECT_EQ(registry.render_prometheus().size(), steady);
}

TEST(MetricsRegistryTest, SelectionSeriesArePerAppAndModel) {
  MetricsRegistry registry;
  AppMetrics* app = registry.app("pets");
  SelectionMetrics* cat = app->model("cat");
  EXPECT_EQ(cat, app->model("cat"));  // one entry per model, kept
  cat->selections.add(3);
  cat->cascade_escalations.add();
  cat->feedback_loss.add(0.5);
  cat->feedback_loss.add(1.0);
  cat->feedback_observations.add(2);
  app->partial_answers.add();
  app->feedback_applied.add(4);
  app->feedback_refused.add();
  app->online_loss.add(0.25);
  app->online_loss_rounds.add();
  app->observe_confidence(0.85);
  app->observe_confidence(1.0);
  const std::string text = registry.render_prometheus();
  const std::string labels = "{app=\"pets\",model=\"cat\"}";
  EXPECT_TRUE(contains(text, "clipper_app_selections_total" + labels + " 3\n"));
  EXPECT_TRUE(contains(text, "clipper_app_cascade_escalations_total" + labels + " 1\n"));
  EXPECT_TRUE(contains(text, "clipper_app_model_loss_total" + labels + " 1.5\n"));
  EXPECT_TRUE(contains(text, "clipper_app_model_loss_rounds_total" + labels + " 2\n"));
  EXPECT_TRUE(contains(text, "clipper_app_partial_answers_total{app=\"pets\"} 1\n"));
  EXPECT_TRUE(contains(text, "clipper_app_feedback_rounds_total{app=\"pets\",outcome=\"applied\"} 4\n"));
  EXPECT_TRUE(contains(text, "clipper_app_feedback_rounds_total{app=\"pets\",outcome=\"refused\"} 1\n"));
  EXPECT_TRUE(contains(text, "clipper_app_feedback_rounds_total{app=\"pets\",outcome=\"unconfirmed\"} 0\n"));
  EXPECT_TRUE(contains(text, "clipper_app_online_loss_total{app=\"pets\"} 0.25\n"));
  EXPECT_TRUE(contains(text, "clipper_app_online_loss_rounds_total{app=\"pets\"} 1\n"));
  // Confidence is observed in millionths and exported from 0 to 1.
  EXPECT_TRUE(contains(text, "clipper_app_answer_confidence_bucket{app=\"pets\",le=\"0.8\"} 0\n"));
  EXPECT_TRUE(contains(text, "clipper_app_answer_confidence_bucket{app=\"pets\",le=\"0.9\"} 1\n"));
  EXPECT_TRUE(contains(text, "clipper_app_answer_confidence_bucket{app=\"pets\",le=\"1\"} 2\n"));
  EXPECT_TRUE(contains(text, "clipper_app_answer_confidence_sum{app=\"pets\"} 1.85\n"));
  EXPECT_TRUE(contains(text, "clipper_app_answer_confidence_count{app=\"pets\"} 2\n"));
}

TEST(MetricsRegistryTest, EveryFamilyHasHelpThenTypeAndCountersEndInTotal) {
  MetricsRegistry registry;
  registry.app("a");
  registry.model("m", "1")->attach_replica(0);
  const std::string text = registry.render_prometheus();
  std::size_t position = 0;
  int families = 0;
  while ((position = text.find("# TYPE ", position)) != std::string::npos) {
    const std::size_t end = text.find('\n', position);
    const std::string type_line = text.substr(position + 7, end - position - 7);
    const std::string name = type_line.substr(0, type_line.find(' '));
    const std::string type = type_line.substr(type_line.find(' ') + 1);
    EXPECT_TRUE(contains(text, "# HELP " + name + " ")) << name;
    if (type == "counter") EXPECT_EQ(name.substr(name.size() - 6), "_total") << name;
    // Latencies are in seconds; the other histograms count things without a unit.
    if (type == "histogram" && name != "clipper_model_batch_size" && name != "clipper_app_answer_confidence") {
      EXPECT_EQ(name.substr(name.size() - 8), "_seconds") << name;
    }
    ++families;
    position = end;
  }
  EXPECT_GT(families, 20);
}

TEST(MetricsRegistryTest, LabelValuesAreEscaped) {
  EXPECT_EQ(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(ProcessMetricsTest, ReadsThisProcessFromProc) {
  const ProcessStatistics statistics = read_process_statistics();
  EXPECT_GT(statistics.resident_memory_bytes, 1u << 20);  // a gtest binary holds more than 1 MiB
  EXPECT_GE(statistics.virtual_memory_bytes, statistics.resident_memory_bytes);
  EXPECT_GE(statistics.open_fds, 3u);  // stdin, stdout, stderr
  EXPECT_GE(statistics.max_fds, statistics.open_fds);
  EXPECT_GT(statistics.start_time_seconds, 1.6e9);  // after 2020: boot time plus start ticks
  EXPECT_GE(statistics.cpu_seconds, 0.0);
}

TEST(ProcessMetricsTest, RendersStandardNamesAndBuildInfo) {
  std::string text;
  render_process_metrics(text, read_process_statistics());
  render_build_info(text, "1.2.3", "abc\"def");
  for (const char* family : {"process_cpu_seconds_total counter", "process_resident_memory_bytes gauge",
                             "process_open_fds gauge", "process_max_fds gauge", "process_start_time_seconds gauge",
                             "clipper_build_info gauge"}) {
    EXPECT_TRUE(contains(text, std::string("# TYPE ") + family + "\n")) << family;
  }
  EXPECT_TRUE(contains(text, "clipper_build_info{version=\"1.2.3\",commit=\"abc\\\"def\"} 1\n"));
}

}  // namespace
}  // namespace clipper::metrics
