// The control plane's replica supervision as Prometheus series: one restarts counter, exit reason and
// state set per slot, the snapshot replaced whole, malformed slots refused without losing the last one.
#include "metrics/replica_supervision.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace clipper::metrics {
namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string rendered(const ReplicaSupervisionSeries& series) {
  std::string text;
  series.render(text);
  return text;
}

ReplicaSupervision slot(std::string model, int64_t replica, uint64_t restarts, std::string reason, std::string state) {
  return {std::move(model), "1", replica, restarts, std::move(reason), std::move(state)};
}

TEST(ReplicaSupervisionTest, FamiliesAreExportedWithoutSlots) {
  ReplicaSupervisionSeries series;
  const std::string text = rendered(series);
  EXPECT_TRUE(contains(text, "# TYPE clipper_replica_restarts_total counter\n"));
  EXPECT_TRUE(contains(text, "# TYPE clipper_replica_last_exit_info gauge\n"));
  EXPECT_TRUE(contains(text, "# TYPE clipper_replica_supervision_state gauge\n"));
  EXPECT_FALSE(contains(text, "{"));
}

TEST(ReplicaSupervisionTest, EachSlotHasItsRestartsReasonAndOneStateSet) {
  ReplicaSupervisionSeries series;
  series.replace({slot("sum", 3, 2, "killed by signal 9 (SIGKILL)", "running"), slot("sum", 1, 0, "", "running")});
  const std::string text = rendered(series);
  EXPECT_TRUE(contains(text, "clipper_replica_restarts_total{model=\"sum\",version=\"1\",replica=\"3\"} 2\n"));
  EXPECT_TRUE(contains(text, "clipper_replica_restarts_total{model=\"sum\",version=\"1\",replica=\"1\"} 0\n"));
  EXPECT_TRUE(contains(text, "clipper_replica_last_exit_info{model=\"sum\",version=\"1\",replica=\"3\","
                             "reason=\"killed by signal 9 (SIGKILL)\"} 1\n"));
  EXPECT_FALSE(contains(text, "clipper_replica_last_exit_info{model=\"sum\",version=\"1\",replica=\"1\""));
  EXPECT_TRUE(contains(text, "clipper_replica_supervision_state{model=\"sum\",version=\"1\",replica=\"3\","
                             "state=\"running\"} 1\n"));
  EXPECT_TRUE(contains(text, "clipper_replica_supervision_state{model=\"sum\",version=\"1\",replica=\"3\","
                             "state=\"crash-looping\"} 0\n"));
}

TEST(ReplicaSupervisionTest, ASnapshotReplacesThePreviousOne) {
  ReplicaSupervisionSeries series;
  series.replace({slot("sum", 0, 0, "", "running")});
  series.replace({slot("sum", 0, 3, "exited with code 1", "crash-looping")});
  const std::string text = rendered(series);
  EXPECT_TRUE(contains(text, "clipper_replica_restarts_total{model=\"sum\",version=\"1\",replica=\"0\"} 3\n"));
  EXPECT_TRUE(contains(text, "state=\"crash-looping\"} 1\n"));
  EXPECT_TRUE(contains(text, "state=\"running\"} 0\n"));
  series.replace({});
  EXPECT_FALSE(contains(rendered(series), "model=\"sum\""));
}

TEST(ReplicaSupervisionTest, MalformedSlotsAreRefusedAndTheLastSnapshotKept) {
  ReplicaSupervisionSeries series;
  series.replace({slot("sum", 0, 1, "", "running")});
  EXPECT_THROW(series.replace({slot("sum", 0, 1, "", "sleeping")}), std::invalid_argument);
  EXPECT_THROW(series.replace({slot("", 0, 1, "", "running")}), std::invalid_argument);
  EXPECT_THROW(series.replace({slot("sum", -1, 1, "", "running")}), std::invalid_argument);
  EXPECT_TRUE(contains(rendered(series), "clipper_replica_restarts_total{model=\"sum\",version=\"1\",replica=\"0\"} 1\n"));
}

TEST(ReplicaSupervisionTest, ReasonsAreEscapedAndBoundedAtACharacterBoundary) {
  ReplicaSupervisionSeries series;
  // "é" is two bytes; 255 ASCII bytes put the cut inside it.
  const std::string reason = std::string(255, 'x') + "\xC3\xA9" + "\"quoted\"\nnext line";
  series.replace({slot("sum", 0, 1, reason, "backing-off"), slot("q\"uote", 1, 0, "a \"b\"\nc", "running")});
  const std::string text = rendered(series);
  EXPECT_TRUE(contains(text, "reason=\"" + std::string(255, 'x') + "...\"} 1\n"));
  EXPECT_TRUE(contains(text, "model=\"q\\\"uote\""));
  EXPECT_TRUE(contains(text, "reason=\"a \\\"b\\\"\\nc\"} 1\n"));
}

}  // namespace
}  // namespace clipper::metrics
