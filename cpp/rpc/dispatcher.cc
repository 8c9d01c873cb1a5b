#include "rpc/dispatcher.h"

#include <algorithm>
#include <chrono>

#include "batching/batch_planner.h"

namespace clipper {
namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;

// A task whose time left is under this share of the model's one-input latency is shed at once:
// evaluating it would only delay the tasks that can still make their deadline.
constexpr double kDoomedShare = 0.75;

// When the newest of `tasks` was queued: admission's correction counts outcomes only of tasks
// admitted after its last raise.
Clock::time_point newest_enqueued(const std::vector<Task>& tasks) {
  Clock::time_point newest = Clock::time_point::min();
  for (const Task& task : tasks) newest = std::max(newest, task.enqueued);
  return newest;
}

}  // namespace

int Dispatcher::batch_cap(const ModelVersion& model) const {
  const int engine_cap = options_.max_batch_size;
  const int model_cap = model.max_batch_size.load(std::memory_order_relaxed);
  return model_cap > 0 ? std::min(model_cap, engine_cap) : engine_cap;
}

void Dispatcher::sync_controller(Replica& replica) const {
  replica.controller->set_cap(batch_cap(*replica.model));
  const int fixed = replica.model->batch_size_limit.load(std::memory_order_relaxed);
  if (fixed > 0 || !replica.controller->adaptive()) replica.controller->set_fixed_size(fixed);
}

Clock::time_point Dispatcher::dispatch(Clock::time_point now, std::vector<ReplicaAddress>& unreachable) {
  Clock::time_point next_wake = Clock::time_point::max();
  drained_scratch_.clear();
  for (auto& [address, replica] : replicas_.all()) {
    if (!replicas_.has_room_for_full_batch(replica)) continue;
    ModelVersion& model = *replica.model;
    if (std::find(drained_scratch_.begin(), drained_scratch_.end(), &model) == drained_scratch_.end()) {
      drained_scratch_.push_back(&model);
      model.queue.drain_inbox(now);
      model.queue.take_expired(now, expired_scratch_);
      model.admission.observe_lost(expired_scratch_.size(), newest_enqueued(expired_scratch_));
      handle_expired(model, expired_scratch_, now);
      shed_doomed(model, now);
    }
    if (model.queue.ready() == 0) continue;
    if (replica.slow && !replicas_.has_healthy_peer(replica)) {
      replica.slow = false;  // the last one standing serves, slow or not
      replica.slowness = ReplicaHealth::kRecoveredBelow;
    }
    if (replica.slow) {
      // Only a probe now and then, so the replica can show it recovered.
      if (now < replica.next_probe) {
        next_wake = std::min(next_wake, replica.next_probe);
        continue;
      }
      replica.next_probe = now + ReplicaHealth::kSlowProbeInterval;
    }
    sync_controller(replica);
    // Several batches per pass while the replica has room: a replica that just answered gets its
    // next batch and, when prefetching, a full one to wait behind it.
    while (model.queue.ready() > 0 && replicas_.has_room_for_full_batch(replica)) {
      const bool behind = !replica.inflight.empty();
      PlanInputs inputs;
      inputs.queued = model.queue.ready();
      inputs.target_size = replica.slow ? 1 : static_cast<std::size_t>(replica.controller->batch_size());
      // A batch queued behind others starts when the replica is done with them: its deadlines are
      // judged from then.
      inputs.now = behind ? replicas_.expected_free_at(replica, now) : now;
      inputs.earliest_deadline = *model.queue.earliest_deadline();
      inputs.waiting_since = model.queue.waiting_since();
      inputs.batch_wait_timeout_micros = model.batch_wait_timeout_micros.load(std::memory_order_relaxed);
      const BatchPlan plan = plan_batch(inputs, model.latency);
      if (!plan.send) {
        if (!behind) next_wake = std::min(next_wake, plan.wake_at);
        break;
      }
      // A replica busy with a batch only gets another one queued behind it when that one is full;
      // a partial batch is better sent when the replica is free, with whatever arrived meanwhile.
      if (behind && plan.reason != CutReason::Full) break;
      std::vector<Task> tasks = take_spare_tasks();
      tasks.reserve(plan.size);
      model.queue.take_batch(tasks, plan.size, now, expired_scratch_);
      model.admission.observe_lost(expired_scratch_.size(), newest_enqueued(expired_scratch_));
      handle_expired(model, expired_scratch_, now);
      if (tasks.empty()) break;
      model.metrics->batch_cut_reasons[static_cast<std::size_t>(plan.reason)].add();
      const bool prefetched = !replicas_.has_room(replica);
      if (!send_batch(replica, std::move(tasks))) {
        unreachable.push_back(address);
        break;
      }
      if (prefetched) model.metrics->prefetched_batches.add();
      if (replica.slow) break;  // one probe
    }
  }
  return next_wake;
}

bool Dispatcher::send_batch(Replica& replica, std::vector<Task>&& tasks) {
  ModelVersion& model = *replica.model;
  const std::size_t count = tasks.size();
  const uint64_t batch_id = next_batch_id_++;
  // The inputs' bytes are copied once, from the tasks to where the transport sends from.
  const FramedMessage message = messages_.frame_batch(batch_id, model.input_type, tasks);
  if (!transport_.send_framed(replica.address, message,
                              [&tasks](uint8_t* at) { ReplicaMessages::write_inputs(tasks, at); })) {
    model.queue.requeue(std::move(tasks));
    return false;
  }
  model.metrics->batch_size.observe(static_cast<double>(count));
  const Clock::time_point sent_at = Clock::now();  // one read for both: they are the same moment
  model.last_batch_sent = sent_at;
  replicas_.batch_sent(replica, batch_id, count, sent_at);
  // What a query arriving now waits for before the queue moves: every batch this replica holds (one,
  // unless pipelined or prefetched: those wait in the replica, out of the queue's count).
  double held_micros = 0;
  for (const InflightRef& held : replica.inflight) held_micros += model.latency.estimate_micros(held.size);
  model.admission.batch_sent(held_micros);
  inflight_.emplace(batch_id, InflightBatch{replica.address, &model, std::move(tasks), sent_at, false});
  return true;
}

void Dispatcher::on_response(const ReplicaAddress& from, const PredictResponse& response) {
  auto found = inflight_.find(response.batch_id());
  if (found == inflight_.end() || found->second.address != from) return;  // late or foreign
  InflightBatch batch = std::move(found->second);
  inflight_.erase(found);
  struct Recycle {  // whichever way this returns, the batch's vector serves a later one
    Dispatcher& dispatcher;
    std::vector<Task>& tasks;
    ~Recycle() { dispatcher.recycle_tasks(tasks); }
  } recycle{*this, batch.tasks};
  ModelVersion& model = *batch.model;
  const Clock::time_point now = Clock::now();
  int64_t latency = duration_cast<microseconds>(now - batch.sent_at).count();
  const std::size_t sent = batch.tasks.size();

  Replica* owner = replicas_.find(from);
  if (owner != nullptr) {
    // The controller and the latency model want the time the replica spent on this batch alone.
    const Clock::time_point started = replicas_.batch_answered(*owner, response.batch_id(), batch.sent_at, now);
    latency = duration_cast<microseconds>(now - started).count();
    // Slowness compares this replica with what the model's batches usually take.
    if (model.latency.has_samples()) {
      const double expected = std::max(model.latency.estimate_micros(sent), 1.0);
      replicas_.observe_speed(*owner, static_cast<double>(latency) / expected, now);
    }
    if (!owner->slow) {
      const auto objective = static_cast<int64_t>(model.slo_micros.load(std::memory_order_relaxed) *
                                                  options_.batch_latency_slo_fraction);
      owner->controller->observe(static_cast<int>(sent), latency, objective);
      model.learned_batch_size.store(owner->controller->batch_size(), std::memory_order_relaxed);
      model.metrics->learned_batch_size.set(owner->controller->batch_size());
    }
  }
  if (owner == nullptr || !owner->slow) {
    model.latency.observe(sent, latency);
    publish_admission(model, now);
  }
  model.metrics->batch_latency_micros.observe(static_cast<double>(latency));
  model.metrics->batches.add();
  if (owner != nullptr) {
    owner->metrics->batch_latency_micros.observe(static_cast<double>(latency));
    owner->metrics->batches.add();
    if (response.has_error() || response.output_count() != sent) owner->metrics->failed_batches.add();
  }

  if (response.has_error()) {
    model.metrics->failed_batches.add();
    // The model's own text stays in the log: clients get an error id the operator can look up.
    outbox_.complete_error(batch.tasks, model_errors_.report(model.label, owner ? owner->replica_id : -1,
                                                             response.batch_id(), response.error(), now));
    return;
  }
  const std::size_t count = response.output_count();
  if (count != sent) {
    model.metrics->failed_batches.add();
    outbox_.complete_error(batch.tasks, "the model returned " + std::to_string(count) +
                                            " outputs for a batch of " + std::to_string(sent) + " inputs");
    return;
  }
  std::size_t late = 0;
  for (const Task& task : batch.tasks) late += task.deadline < now ? 1 : 0;
  model.admission.observe_outcomes(sent - late, late, newest_enqueued(batch.tasks), now);
  model.admission.answered_at(now);
  std::vector<std::string> texts;
  texts.swap(outputs_scratch_);  // empty, with the last batch's capacity
  texts.reserve(count);
  for (std::size_t i = 0; i < count; ++i) texts.emplace_back(response.output(i));
  std::vector<ModelConfidence> confidences;  // stays empty (no allocation) when the model reported none
  if (response.reports_confidences()) {
    confidences.reserve(count);
    for (std::size_t i = 0; i < count; ++i) confidences.push_back(response.confidence(i));
  }
  model.metrics->predictions.add(count);
  outbox_.complete_outputs(batch.tasks, texts, confidences);
  texts.clear();
  texts.swap(outputs_scratch_);
}

std::vector<Task> Dispatcher::take_spare_tasks() {
  if (spare_tasks_.empty()) return {};
  std::vector<Task> tasks = std::move(spare_tasks_.back());
  spare_tasks_.pop_back();
  return tasks;
}

void Dispatcher::recycle_tasks(std::vector<Task>& tasks) {
  if (spare_tasks_.size() >= kSpareTaskVectors || tasks.capacity() == 0 ||
      tasks.capacity() > kMaxSpareTaskCapacity) {
    return;
  }
  tasks.clear();
  spare_tasks_.push_back(std::move(tasks));
}

void Dispatcher::publish_admission(ModelVersion& model, Clock::time_point now) const {
  int32_t serving = 0;
  int32_t batch_size = 1;
  for (const auto& [address, replica] : replicas_.all()) {
    if (replica.model != &model || replica.slow) continue;
    ++serving;
    batch_size = std::max(batch_size, replica.controller->batch_size());
  }
  model.admission.relax(now);
  model.admission.publish(model.latency, std::min(batch_size, batch_cap(model)), serving);
}

void Dispatcher::requeue_batches(const Replica& dropped) {
  for (const InflightRef& ref : dropped.inflight) {
    auto batch = inflight_.find(ref.batch_id);
    if (batch != inflight_.end()) {
      // Another replica may still answer in time; expired tasks are dropped when a batch is formed.
      dropped.model->queue.requeue(std::move(batch->second.tasks));
      inflight_.erase(batch);
    }
  }
}

void Dispatcher::hedge_stalled(Clock::time_point now) {
  // A replica sitting on a batch far longer than the model's batches take is stalled: it is marked
  // slow and copies of the live tasks of every batch it holds go back to the queue for a healthy
  // peer. Whichever answer arrives first wins; the I/O thread and the cache ignore the second.
  for (auto& [address, replica] : replicas_.all()) {
    if (!replicas_.is_stalled(replica, now) || !replicas_.has_healthy_peer(replica)) continue;
    replicas_.mark_stalled(replica, now);
    for (const InflightRef& ref : replica.inflight) {
      auto batch = inflight_.find(ref.batch_id);
      if (batch == inflight_.end() || batch->second.hedged) continue;
      batch->second.hedged = true;
      std::vector<Task> copies;
      for (const Task& task : batch->second.tasks) {
        if (task.deadline > now) copies.push_back(task);
      }
      replica.model->metrics->hedged_batches.add();
      replica.model->queue.requeue(std::move(copies));
      log_replica_event("event=batch_hedged model=" + replica.model->label + " replica=" +
                        std::to_string(replica.replica_id) + " batch=" + std::to_string(ref.batch_id));
    }
  }
}

void Dispatcher::sweep_expired(Clock::time_point now) {
  // Queues of versions no replica serves still hold tasks (and pending cache entries) until here.
  for (ModelVersion* model : models_.all()) {
    model->queue.drain_inbox(now);
    model->queue.take_expired(now, expired_scratch_);
    handle_expired(*model, expired_scratch_, now);
  }
}

void Dispatcher::handle_expired(ModelVersion& model, std::vector<Task>& expired, Clock::time_point now) {
  // The owners were answered with the default at their deadline. A coalesced waiter with a later
  // deadline may still want the answer: it inherits the evaluation.
  for (Task& task : expired) {
    model.metrics->expired_tasks.add();
    if (!task.cached) continue;
    if (auto owner = cache_.hand_over(task.cache_key, now)) {
      task.io_thread = owner->io_thread;
      task.query_key = owner->query_key;
      task.input_index = owner->input_index;
      task.deadline = owner->deadline;
      model.queue.requeue(std::move(task));
    }
  }
  expired.clear();
}

void Dispatcher::shed_doomed(ModelVersion& model, Clock::time_point now) {
  // Never shed everything for long: a batch now and then re-measures a model that got faster.
  if (!model.latency.has_samples() || now - model.last_batch_sent > ReplicaHealth::kSlowProbeInterval) return;
  const double one_input_micros = model.latency.estimate_micros(1);
  std::vector<Task> doomed;
  while (model.queue.ready() > 0) {
    const auto left = duration_cast<microseconds>(*model.queue.earliest_deadline() - now).count();
    if (static_cast<double>(left) >= kDoomedShare * one_input_micros) break;
    model.queue.take_batch(doomed, 1, now, expired_scratch_);
  }
  model.admission.observe_lost(expired_scratch_.size() + doomed.size(),
                              std::max(newest_enqueued(expired_scratch_), newest_enqueued(doomed)));
  handle_expired(model, expired_scratch_, now);
  for (Task& task : doomed) {
    model.metrics->shed_tasks.add();
    const std::string reason = "shed before evaluation, " +
                               std::to_string(duration_cast<microseconds>(task.deadline - now).count()) +
                               " us left and the model needs about " +
                               std::to_string(static_cast<int64_t>(one_input_micros)) + " us";
    if (task.cached) {
      if (auto owner = cache_.hand_over(task.cache_key, now)) {
        outbox_.push(task.io_thread, task.query_key, task.input_index, CompletionKind::Shed, reason);
        task.io_thread = owner->io_thread;
        task.query_key = owner->query_key;
        task.input_index = owner->input_index;
        task.deadline = owner->deadline;
        model.queue.requeue(std::move(task));
        continue;
      }
    }
    outbox_.push(task.io_thread, task.query_key, task.input_index, CompletionKind::Shed, reason);
  }
}

}  // namespace clipper
