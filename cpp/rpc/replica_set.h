// The connected replicas of every model version and their health: liveness (last message seen),
// batches in flight (the pipeline), speed (slow / recovered, stalled), and each one's AIMD
// controller. It decides nothing about what to send; the dispatcher asks it who can take a batch.
// Thread: the replica side's thread only (the RPC thread, or the I/O loop hosting it).
//
// Invariants (the set is their only writer, on that thread):
// - ModelVersion::idle_replicas == the number of the version's replicas here whose `inflight` holds
//   fewer than pipeline_depth batches (a prefetched full batch beyond the depth never makes one idle). It changes only in add(), remove(), batch_sent() (a replica
//   that fills up: -1) and batch_answered() (a full replica that regains room: +1). I/O threads only
//   read it (seq_cst), to decide whether waking the replica side is worth it.
// - ModelVersion::connected_replicas (and its gauge) == the number of the version's replicas here;
//   changed only in add() and remove().
// - A replica's `inflight` lists its batches in send order (the replica answers them in order);
//   every id in it is also in the dispatcher's table of batches in flight, and leaves both together.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "batching/aimd_controller.h"
#include "common/clock.h"
#include "engine/model_registry.h"
#include "rpc/replica_transport.h"

namespace clipper {

struct InflightRef {
  uint64_t batch_id = 0;
  std::size_t size = 0;          // tasks in the batch
  Clock::time_point sent_at{};
};

struct Replica {
  ReplicaAddress address;
  ModelVersion* model = nullptr;
  int32_t replica_id = 0;
  Clock::time_point last_seen;
  std::vector<InflightRef> inflight;   // in send order; the replica answers them in order
  Clock::time_point last_answer_at{};  // to measure service time, not time spent queued
  ConnectionId connection = -1;        // the connection its data socket uses (for closes)
  std::string transport = "zmq";       // the medium its batches travel over (ReplicaTransport::medium)
  metrics::ReplicaMetrics* metrics = nullptr;  // its series (ReplicaSet::add attaches, remove detaches)
  std::unique_ptr<AimdController> controller;
  double slowness = 1.0;  // EWMA of observed / expected batch latency
  bool slow = false;      // far slower than its peers: only probe batches until it recovers
  Clock::time_point next_probe{};
};

// Tuning of the health checks.
struct ReplicaHealth {
  static constexpr auto kSlowProbeInterval = std::chrono::milliseconds(500);
  static constexpr auto kMinimumStall = std::chrono::milliseconds(20);
  static constexpr double kSlownessSmoothing = 0.3;  // EWMA weight of the newest batch
  static constexpr double kSlowAbove = 4.0;          // slower than 4x the model's expectation: slow
  static constexpr double kRecoveredBelow = 1.5;
  static constexpr double kStallFactor = 4.0;        // in flight 4x longer than expected: stalled
};

class ReplicaSet {
 public:
  using Map = std::unordered_map<ReplicaAddress, Replica>;

  // `prefetch_full_batches`: a replica at its pipeline depth may take one more batch if it is full
  // (EngineOptions::replica_prefetch_full_batches); such a replica does not count as idle.
  explicit ReplicaSet(int pipeline_depth, bool prefetch_full_batches = false)
      : pipeline_depth_(static_cast<std::size_t>(pipeline_depth)),
        full_batch_depth_(pipeline_depth_ + (prefetch_full_batches ? 1 : 0)) {}

  Replica* find(const ReplicaAddress& address);
  Map& all() { return replicas_; }
  const Map& all() const { return replicas_; }
  std::size_t size() const { return replicas_.size(); }

  // A fresh id for a replica of `model` that did not bring its own.
  int32_t next_replica_id(const ModelVersion& model) { return next_replica_id_[model.label]++; }
  // Adds a registered replica (idle, nothing in flight) and counts it on its version.
  Replica& add(Replica&& replica);
  // Removes a replica and uncounts it; returns it (its in-flight batches still listed).
  Replica remove(const ReplicaAddress& address);

  // Room for any batch: fewer than the pipeline depth in flight.
  bool has_room(const Replica& replica) const { return replica.inflight.size() < pipeline_depth_; }
  // Room for a full batch: the pipeline depth, plus one when prefetching full batches.
  bool has_room_for_full_batch(const Replica& replica) const {
    return replica.inflight.size() < full_batch_depth_;
  }
  // When `replica` is expected to be done with the batches it holds (`now` if it holds none): its
  // oldest started at the later of its send and the previous answer, the rest follow in turn.
  Clock::time_point expected_free_at(const Replica& replica, Clock::time_point now) const;
  // Records a batch sent to `replica`.
  void batch_sent(Replica& replica, uint64_t batch_id, std::size_t size, Clock::time_point sent_at);
  // Records the answer to one of its batches; returns when the replica started on it (its send
  // time, or the previous answer when it waited in the replica behind that batch).
  Clock::time_point batch_answered(Replica& replica, uint64_t batch_id, Clock::time_point sent_at,
                                   Clock::time_point now);
  // Folds `latency / expected` into the replica's slowness and marks it slow or recovered.
  void observe_speed(Replica& replica, double ratio, Clock::time_point now);
  // Marks a stalled replica slow (it gets only probe batches until it recovers).
  void mark_stalled(Replica& replica, Clock::time_point now);

  // Stalled: sitting on its oldest batch far longer than the model's batches take.
  bool is_stalled(const Replica& replica, Clock::time_point now) const;
  // Healthy peer: another replica of the same version, neither slow nor stalled.
  bool has_healthy_peer(const Replica& replica) const;
  // Some replica with room has tasks waiting in its version's inbox.
  bool idle_replica_has_inbox_work() const;
  // Replicas not heard from since `cutoff`, and replicas whose connection closed.
  std::vector<ReplicaAddress> silent_since(Clock::time_point cutoff) const;
  std::vector<ReplicaAddress> on_connection(ConnectionId connection) const;

 private:
  const std::size_t pipeline_depth_;
  const std::size_t full_batch_depth_;
  Map replicas_;
  std::unordered_map<std::string, int32_t> next_replica_id_;  // per "name:version"
};

}  // namespace clipper
