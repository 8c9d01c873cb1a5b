#include "rpc/replica_set.h"

#include <algorithm>

#include "rpc/replica_messages.h"

namespace clipper {

using std::chrono::duration_cast;
using std::chrono::microseconds;

Replica* ReplicaSet::find(const ReplicaAddress& address) {
  auto found = replicas_.find(address);
  return found == replicas_.end() ? nullptr : &found->second;
}

Replica& ReplicaSet::add(Replica&& replica) {
  ModelVersion* model = replica.model;
  const ReplicaAddress address = replica.address;
  Replica& added = replicas_.emplace(address, std::move(replica)).first->second;
  model->connected_replicas.fetch_add(1);
  model->idle_replicas.fetch_add(1);
  model->metrics->connected_replicas.add(1);
  added.metrics = model->metrics->attach_replica(added.replica_id);
  added.metrics->connected.set(1);
  added.metrics->inflight_batches.set(0);
  added.metrics->slow.set(0);
  return added;
}

Replica ReplicaSet::remove(const ReplicaAddress& address) {
  auto found = replicas_.find(address);
  Replica removed = std::move(found->second);
  ModelVersion* model = removed.model;
  if (has_room(removed)) model->idle_replicas.fetch_sub(1);
  replicas_.erase(found);
  model->connected_replicas.fetch_sub(1);
  model->metrics->connected_replicas.add(-1);
  model->metrics->detach_replica(removed.replica_id);  // its series leave /metrics with it
  removed.metrics = nullptr;
  return removed;
}

void ReplicaSet::batch_sent(Replica& replica, uint64_t batch_id, std::size_t size, Clock::time_point sent_at) {
  const bool had_room = has_room(replica);
  replica.inflight.push_back(InflightRef{batch_id, size, sent_at});
  replica.metrics->inflight_batches.set(static_cast<int64_t>(replica.inflight.size()));
  // Only the batch that fills the pipeline makes it busy (not a prefetched one beyond it).
  if (had_room && !has_room(replica)) replica.model->idle_replicas.fetch_sub(1);
}

Clock::time_point ReplicaSet::batch_answered(Replica& replica, uint64_t batch_id, Clock::time_point sent_at,
                                             Clock::time_point now) {
  const bool was_full = !has_room(replica);
  auto position = std::find_if(replica.inflight.begin(), replica.inflight.end(),
                               [batch_id](const InflightRef& batch) { return batch.batch_id == batch_id; });
  if (position != replica.inflight.end()) replica.inflight.erase(position);
  replica.metrics->inflight_batches.set(static_cast<int64_t>(replica.inflight.size()));
  if (was_full && has_room(replica)) replica.model->idle_replicas.fetch_add(1);  // once, at the depth
  // With several batches in flight, a batch waited in the replica for the one before it.
  const Clock::time_point started = std::max(sent_at, replica.last_answer_at);
  replica.last_answer_at = now;
  return started;
}

void ReplicaSet::observe_speed(Replica& replica, double ratio, Clock::time_point now) {
  replica.slowness =
      (1 - ReplicaHealth::kSlownessSmoothing) * replica.slowness + ReplicaHealth::kSlownessSmoothing * ratio;
  if (!replica.slow && replica.slowness > ReplicaHealth::kSlowAbove && has_healthy_peer(replica)) {
    replica.slow = true;
    replica.metrics->slow.set(1);
    replica.next_probe = now + ReplicaHealth::kSlowProbeInterval;
    log_replica_event("event=replica_slow model=" + replica.model->label +
                      " replica=" + std::to_string(replica.replica_id));
  } else if (replica.slow && replica.slowness < ReplicaHealth::kRecoveredBelow) {
    replica.slow = false;
    replica.metrics->slow.set(0);
    log_replica_event("event=replica_recovered model=" + replica.model->label +
                      " replica=" + std::to_string(replica.replica_id));
  }
}

void ReplicaSet::mark_stalled(Replica& replica, Clock::time_point now) {
  replica.slow = true;
  replica.metrics->slow.set(1);
  replica.slowness = std::max(replica.slowness, ReplicaHealth::kSlowAbove);
  replica.next_probe = now + ReplicaHealth::kSlowProbeInterval;
}

bool ReplicaSet::is_stalled(const Replica& replica, Clock::time_point now) const {
  if (replica.inflight.empty() || !replica.model->latency.has_samples()) return false;
  const InflightRef& oldest = replica.inflight.front();
  const double expected = replica.model->latency.estimate_micros(oldest.size);
  const auto stall_after =
      std::max<microseconds>(microseconds(static_cast<int64_t>(ReplicaHealth::kStallFactor * expected)),
                             duration_cast<microseconds>(ReplicaHealth::kMinimumStall));
  // A pipelined batch only starts once the replica answered the one before it.
  const Clock::time_point started = std::max(oldest.sent_at, replica.last_answer_at);
  return now - started >= stall_after;
}

Clock::time_point ReplicaSet::expected_free_at(const Replica& replica, Clock::time_point now) const {
  if (replica.inflight.empty() || !replica.model->latency.has_samples()) return now;
  const LatencyModel& latency = replica.model->latency;
  Clock::time_point free_at = std::max(replica.inflight.front().sent_at, replica.last_answer_at);
  for (const InflightRef& batch : replica.inflight) {
    free_at += microseconds(static_cast<int64_t>(latency.estimate_micros(batch.size)));
  }
  return std::max(free_at, now);
}

bool ReplicaSet::has_healthy_peer(const Replica& replica) const {
  const Clock::time_point now = Clock::now();
  for (const auto& [address, other] : replicas_) {
    if (&other != &replica && other.model == replica.model && !other.slow && !is_stalled(other, now)) {
      return true;
    }
  }
  return false;
}

bool ReplicaSet::idle_replica_has_inbox_work() const {
  for (const auto& [address, replica] : replicas_) {
    if (has_room(replica) && replica.model->queue.inbox_size() > 0) return true;
  }
  return false;
}

std::vector<ReplicaAddress> ReplicaSet::silent_since(Clock::time_point cutoff) const {
  std::vector<ReplicaAddress> silent;
  for (const auto& [address, replica] : replicas_) {
    if (replica.last_seen < cutoff) silent.push_back(address);
  }
  return silent;
}

std::vector<ReplicaAddress> ReplicaSet::on_connection(ConnectionId connection) const {
  std::vector<ReplicaAddress> found;
  for (const auto& [address, replica] : replicas_) {
    if (replica.connection == connection) found.push_back(address);
  }
  return found;
}

}  // namespace clipper
