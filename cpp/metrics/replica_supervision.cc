#include "metrics/replica_supervision.h"

#include <algorithm>
#include <stdexcept>

#include "metrics/metrics.h"

namespace clipper::metrics {

namespace {

bool known_state(const std::string& state) {
  return std::any_of(std::begin(kReplicaStates), std::end(kReplicaStates),
                     [&state](const char* known) { return state == known; });
}

// At most kMaxExitReasonBytes, never ending inside a UTF-8 sequence (label values must stay UTF-8).
std::string bounded_reason(const std::string& reason) {
  if (reason.size() <= kMaxExitReasonBytes) return reason;
  std::size_t end = kMaxExitReasonBytes;
  while (end > 0 && (static_cast<unsigned char>(reason[end]) & 0xC0) == 0x80) --end;
  return reason.substr(0, end) + "...";
}

}  // namespace

void ReplicaSupervisionSeries::replace(std::vector<ReplicaSupervision> slots) {
  for (auto& slot : slots) {
    if (slot.model.empty() || slot.version.empty()) {
      throw std::invalid_argument("replica supervision: every slot needs a model name and version");
    }
    if (slot.replica_id < 0) {
      throw std::invalid_argument("replica supervision: replica id " + std::to_string(slot.replica_id) +
                                  " of " + slot.model + ":" + slot.version + " is negative");
    }
    if (!known_state(slot.state)) {
      throw std::invalid_argument("replica supervision: unknown state '" + slot.state +
                                  "'; use running, backing-off or crash-looping");
    }
    slot.last_exit_reason = bounded_reason(slot.last_exit_reason);
  }
  std::lock_guard lock(mutex_);
  slots_ = std::move(slots);
}

void ReplicaSupervisionSeries::render(std::string& out) const {
  auto header = [&out](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto labels = [](const ReplicaSupervision& slot) {
    return "model=\"" + escape_label(slot.model) + "\",version=\"" + escape_label(slot.version) +
           "\",replica=\"" + std::to_string(slot.replica_id) + "\"";
  };
  std::lock_guard lock(mutex_);
  header("clipper_replica_restarts_total", "counter",
         "Replicas its supervisor started in the replica's slot after the first one (the replica label "
         "is the one serving now).");
  for (const auto& slot : slots_) {
    out += "clipper_replica_restarts_total{" + labels(slot) + "} " + std::to_string(slot.restarts) + "\n";
  }
  header("clipper_replica_last_exit_info", "gauge",
         "Always 1; label reason says how the last replica of the slot ended (slots with an exit only).");
  for (const auto& slot : slots_) {
    if (slot.last_exit_reason.empty()) continue;
    out += "clipper_replica_last_exit_info{" + labels(slot) + ",reason=\"" + escape_label(slot.last_exit_reason) +
           "\"} 1\n";
  }
  header("clipper_replica_supervision_state", "gauge",
         "1 for the slot's supervision state (label state: running, backing-off, crash-looping), else 0.");
  for (const auto& slot : slots_) {
    for (const char* state : kReplicaStates) {
      out += "clipper_replica_supervision_state{" + labels(slot) + ",state=\"" + state + "\"} " +
             (slot.state == state ? "1" : "0") + "\n";
    }
  }
}

}  // namespace clipper::metrics
