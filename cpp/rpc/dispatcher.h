// Batch dispatch: for every replica with room, drains its version's queue, drops or hands over
// expired tasks, sheds tasks that can no longer meet their deadline, plans a batch (AIMD size,
// delayed batching, deadline-aware sizing), sends it through the transport and tracks it until the
// answer arrives; then feeds the controllers and the latency model and sends completions out.
// Hedges batches that a stalled replica sits on. Knows replicas only through the ReplicaSet and the
// medium only through the ReplicaTransport.
// Thread: the replica side's thread only. Invariant: a batch id is in `inflight_` exactly while it
// is in its replica's `inflight` list (or its replica was dropped and the batch requeued).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "cache/prediction_cache.h"
#include "common/clock.h"
#include "common/task.h"
#include "engine/engine_options.h"
#include "engine/model_registry.h"
#include "rpc/completion_outbox.h"
#include "rpc/replica_messages.h"
#include "rpc/replica_set.h"
#include "rpc/replica_transport.h"

namespace clipper {

class Dispatcher {
 public:
  Dispatcher(const EngineOptions& options, ModelRegistry& models, PredictionCache& cache, ReplicaSet& replicas,
             ReplicaTransport& transport, ReplicaMessages& messages, CompletionOutbox& outbox)
      : options_(options), models_(models), cache_(cache), replicas_(replicas), transport_(transport),
        messages_(messages), outbox_(outbox) {}

  // The largest batch `model` may get: its own cap within the engine's.
  int batch_cap(const ModelVersion& model) const;
  // Brings a replica's controller in line with its version's batching settings.
  void sync_controller(Replica& replica) const;

  // One pass over the replicas with room; returns when a waiting batch wants another look.
  // Replicas the transport could not reach are appended to `unreachable` (the caller drops them).
  Clock::time_point dispatch(Clock::time_point now, std::vector<ReplicaAddress>& unreachable);
  // An answer from `from`; late or foreign answers are ignored.
  void on_response(const ReplicaAddress& from, const PredictResponse& response);
  // Puts the batches a dropped replica held back on its version's queue.
  void requeue_batches(const Replica& dropped);
  // Copies the live tasks of batches held by stalled replicas back to the queue for healthy peers.
  void hedge_stalled(Clock::time_point now);
  // Expires tasks of versions that no replica serves (and their pending cache entries).
  void sweep_expired(Clock::time_point now);
  // Publishes what admission control reads for `model`: its batch latencies, the batch size its
  // replicas are sent when backlogged and how many serve at full speed.
  // `now`: the time it is published at (the caller's clock read).
  void publish_admission(ModelVersion& model) const { publish_admission(model, Clock::now()); }
  void publish_admission(ModelVersion& model, Clock::time_point now) const;

 private:
  struct InflightBatch {
    ReplicaAddress address;
    ModelVersion* model = nullptr;
    std::vector<Task> tasks;
    Clock::time_point sent_at;
    bool hedged = false;
  };

  bool send_batch(Replica& replica, std::vector<Task>&& tasks);
  // Answered batches' task vectors (emptied, capacity kept) for the next batches: with one batch in
  // flight (one request per batch at low load) each would otherwise be an allocation and a free.
  std::vector<Task> take_spare_tasks();
  void recycle_tasks(std::vector<Task>& tasks);
  static constexpr std::size_t kSpareTaskVectors = 4;
  static constexpr std::size_t kMaxSpareTaskCapacity = 1024;
  void handle_expired(ModelVersion& model, std::vector<Task>& expired, Clock::time_point now);
  void shed_doomed(ModelVersion& model, Clock::time_point now);

  const EngineOptions& options_;
  ModelRegistry& models_;
  PredictionCache& cache_;
  ReplicaSet& replicas_;
  ReplicaTransport& transport_;
  ReplicaMessages& messages_;
  CompletionOutbox& outbox_;

  absl::flat_hash_map<uint64_t, InflightBatch> inflight_;  // open addressing: no node per batch
  uint64_t next_batch_id_ = 1;
  std::vector<Task> expired_scratch_;
  std::vector<std::vector<Task>> spare_tasks_;
  std::vector<std::string> outputs_scratch_;  // a batch's output texts (capacity kept across batches)
  std::vector<ModelVersion*> drained_scratch_;  // versions whose inbox this dispatch pass drained
  ModelErrorLog model_errors_;  // where the text of a model's exception goes instead of clients
};

}  // namespace clipper
