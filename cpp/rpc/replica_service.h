// The replica side of the engine, on one thread: it runs the transport, registers replicas and
// checks their liveness, and drives the dispatcher; it is the engine's TaskScheduler (I/O threads
// submit tasks and notify it) and sends completions back through the I/O threads' CompletionSinks.
// It runs either on a thread of its own (run()) or, when the engine has a single I/O thread, on that
// thread's libuv loop (attach_to_loop()), which saves two thread wake-ups per batch. Either way all
// of it runs on one thread, except submit(), notify_work(), request_stop(), replicas() and
// batching_state_json().
// Invariant: `sleeping_` is true only while run() is about to block in the transport's wait; a
// producer that sees it true (and an idle replica) wakes the thread through `wake_fd_`.
#pragma once

#include <uv.h>

#include <atomic>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/prediction_cache.h"
#include "common/completion_sink.h"
#include "common/task_scheduler.h"
#include "engine/engine_options.h"
#include "engine/model_registry.h"
#include "rpc/batching_report.h"
#include "rpc/completion_outbox.h"
#include "rpc/dispatcher.h"
#include "rpc/replica_messages.h"
#include "rpc/replica_set.h"
#include "rpc/replica_transport.h"
#include "rpc/wake_timer.h"

namespace clipper {

class ReplicaService final : public TaskScheduler, private TransportReceiver, private ReplicaMessageHandler {
 public:
  ReplicaService(const EngineOptions& options, ModelRegistry& models, PredictionCache& cache,
                 std::unique_ptr<ReplicaTransport> transport);
  ~ReplicaService() override;
  ReplicaService(const ReplicaService&) = delete;
  ReplicaService& operator=(const ReplicaService&) = delete;

  // Binds the transport; returns the bound port. Throws std::runtime_error.
  int bind(const std::string& address, int port) { return transport_->bind(address, port); }
  // One sink per I/O thread, before run() or attach_to_loop().
  void connect_sinks(std::vector<CompletionSink*> sinks, bool in_place) {
    outbox_.connect(std::move(sinks), in_place);
  }
  void run();           // the RPC thread's body; returns after request_stop()
  void request_stop();  // any thread

  // Serve on `loop` instead of a thread of our own: the loop's thread then owns everything here.
  // detach_from_loop() closes the handles; call it on the loop's thread before the loop ends.
  void attach_to_loop(uv_loop_t* loop);
  void detach_from_loop();

  // TaskScheduler (any I/O thread).
  void submit(ModelVersion& model, Task&& task) override { model.queue.push(std::move(task)); }
  // On a loop: dispatch once this loop iteration's I/O is done. On a thread: wake it, but only when
  // it sleeps and a replica of the model is idle (seq_cst pairs with the sleep announcement).
  void notify_work(const ModelVersion& model) override {
    if (loop_ != nullptr) {
      work_pending_ = true;
      return;
    }
    if (model.idle_replicas.load(std::memory_order_seq_cst) > 0 &&
        sleeping_.exchange(false, std::memory_order_seq_cst)) {
      wake();
    }
  }

  AdmissionEstimate admission_estimate(const ModelVersion& model, std::size_t count) const override;

  std::vector<ReplicaInfo> replicas() const { return report_.replicas(); }
  std::string batching_state_json() const { return report_.batching_state_json(); }

 private:
  void wake();
  // One pass of the work per wake-up; returns when the next timed wake-up is due.
  Clock::time_point process(bool closes_waiting);
  void process_on_loop();
  // Arms the wake-up for `next_wake` (when it is still ahead) and returns the millisecond timeout the
  // loop's own timer or poll keeps: 0 when due now, else rounded up and at most kIdlePollMillis, a
  // backstop to wake_timer_ (which wakes at the microsecond).
  long arm_wake(Clock::time_point next_wake);
  void drop_replica(const ReplicaAddress& address, const char* reason);
  void register_replica(const ReplicaAddress& from, ModelVersion* model, int32_t replica_id, ConnectionId connection);
  void check_liveness(Clock::time_point now);
  void publish_state();

  // TransportReceiver
  void on_received(const ReplicaAddress& from, const uint8_t* data, std::size_t size,
                   ConnectionId connection) override;
  void on_connection_closed(ConnectionId connection) override;
  void on_admitted(const ReplicaAddress& replica, ConnectionId connection, bool attached) override;
  // ReplicaMessageHandler
  void on_sender_alive(const ReplicaAddress& from) override;
  void on_register(const ReplicaAddress& from, const RegisterRequest& request, ConnectionId connection) override;
  void on_heartbeat(const ReplicaAddress& from, std::string_view replica_key) override;
  void on_predict_response(const ReplicaAddress& from, const PredictResponse& response) override;

  const EngineOptions& options_;
  ModelRegistry& models_;
  std::unique_ptr<ReplicaTransport> transport_;
  ReplicaMessages messages_;
  ReplicaSet replicas_;
  CompletionOutbox outbox_;
  Dispatcher dispatcher_;
  BatchingReport report_;

  int wake_fd_ = -1;
  // Timed wake-ups (delayed batching's waits, probes, liveness) at microsecond resolution.
  WakeTimer wake_timer_;
  // Thread mode: an epoll of wake_fd_ and wake_timer_, given to the transport's wait as its wake
  // descriptor (wake_fd_ alone when there is no timer).
  int wait_fd_ = -1;
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> stop_{false};
  Clock::time_point next_liveness_check_;
  std::vector<ReplicaAddress> unreachable_scratch_;
  // Replicas the transport is moving to shared memory before they are registered (see admit()).
  struct PendingRegistration {
    ModelVersion* model = nullptr;
    int32_t replica_id = -1;
  };
  std::unordered_map<ReplicaAddress, PendingRegistration> pending_registrations_;
  uint64_t refused_registrations_ = 0;  // for models past ModelRegistry::kMaxUnconfiguredVersions

  // On-loop mode only.
  uv_loop_t* loop_ = nullptr;
  std::vector<std::unique_ptr<uv_poll_t>> polls_;
  uv_check_t after_io_{};
  uv_prepare_t before_sleep_{};
  uv_timer_t timer_{};
  uv_poll_t wake_timer_poll_{};
  bool work_pending_ = false;
};

}  // namespace clipper
