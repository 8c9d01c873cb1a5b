// Replica supervision as the control plane reports it (restarts, last exit reason, state of each
// replica slot), rendered as Prometheus series beside the engine's own. The engine does not supervise
// replicas: the frontend process's supervisor (clipper.managers.local_supervisor) replaces the whole
// snapshot when something changes, never per request. Where nothing supervises (the standalone
// binary), the families are exported without series.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace clipper::metrics {

// One replica slot: the replica filling it now and what its supervisor knows of the slot's history.
struct ReplicaSupervision {
  std::string model;
  std::string version;
  int64_t replica_id = 0;
  uint64_t restarts = 0;          // replicas started in the slot after its first one
  std::string last_exit_reason;   // how the slot's last replica ended; "" while none has
  std::string state;              // one of kReplicaStates
};

// The states a slot is reported in (clipper.managers.supervision.REPLICA_STATES).
inline constexpr const char* kReplicaStates[] = {"running", "backing-off", "crash-looping"};

// Longest exit reason exported, in bytes (cut at a character boundary): bounds the label's size.
inline constexpr std::size_t kMaxExitReasonBytes = 256;

class ReplicaSupervisionSeries {
 public:
  // Replaces the snapshot. Throws std::invalid_argument for a state not in kReplicaStates, an empty
  // model or version, or a negative replica id; the previous snapshot is kept then.
  void replace(std::vector<ReplicaSupervision> slots);
  // Appends clipper_replica_restarts_total, clipper_replica_last_exit_info and
  // clipper_replica_supervision_state (headers always, one series set per slot).
  void render(std::string& out) const;

 private:
  mutable std::mutex mutex_;
  std::vector<ReplicaSupervision> slots_;
};

}  // namespace clipper::metrics
