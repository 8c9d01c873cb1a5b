// The RPC thread: a ZeroMQ ROUTER that model replicas connect to. It registers replicas and tracks
// their liveness (heartbeats, closed connections), forms batches for idle replicas (deadline order,
// AIMD batch sizes, delayed batching, deadline-aware sizing), sends them as flatbuffers, completes the
// waiting queries (and the prediction cache's coalesced waiters) on their I/O threads, and keeps
// slow or stalled replicas from holding queries past their SLO.
// It runs either on a thread of its own (run()) or, when the engine has a single I/O thread, on that
// thread's libuv loop (attach_to_loop()), which saves two thread wake-ups per batch. Either way all
// of it runs on one thread, except notify_work(), replicas() and batching_state_json().
#pragma once

#include <flatbuffers/flatbuffers.h>
#include <uv.h>
#include <zmq.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "batching/aimd_controller.h"
#include "batching/task.h"
#include "cache/prediction_cache.h"
#include "engine/engine.h"
#include "engine/model_registry.h"

namespace clipper {

class QueryProcessor;

class ModelRpcServer {
 public:
  ModelRpcServer(Engine& engine, PredictionCache& cache);
  ~ModelRpcServer();
  ModelRpcServer(const ModelRpcServer&) = delete;
  ModelRpcServer& operator=(const ModelRpcServer&) = delete;

  // Binds the ROUTER; returns the bound port. Throws std::runtime_error.
  int bind(const std::string& address, int port);
  void run();            // the RPC thread's body; returns after request_stop()
  void request_stop();   // any thread

  // Serve on `loop` instead of a thread of our own: the loop's thread then owns everything here and
  // completions go straight to `local` (the processor of that loop). detach_from_loop() closes the
  // handles; call it on the loop's thread before the loop ends.
  void attach_to_loop(uv_loop_t* loop, QueryProcessor* local);
  void detach_from_loop();

  // New tasks were queued for `model`. On a loop: dispatch once this loop iteration's I/O is done.
  // On a thread: wake it, but only when it sleeps and a replica of the model is idle (seq_cst pairs
  // with the RPC thread's sleep announcement).
  void notify_work(const ModelVersion& model) {
    if (loop_ != nullptr) {
      work_pending_ = true;
      return;
    }
    if (model.idle_replicas.load(std::memory_order_seq_cst) > 0 &&
        sleeping_.exchange(false, std::memory_order_seq_cst)) {
      wake();
    }
  }

  std::vector<ReplicaInfo> replicas() const;
  std::string batching_state_json() const;

 private:
  struct Replica {
    std::string routing_id;
    ModelVersion* model = nullptr;
    int32_t replica_id = 0;
    Clock::time_point last_seen;
    std::vector<uint64_t> inflight_batches;  // in send order; the replica answers them in order
    Clock::time_point last_answer_at{};      // to measure service time, not time spent queued
    int socket_fd = -1;           // the TCP connection its data socket uses (for disconnects)
    std::unique_ptr<AimdController> controller;
    double slowness = 1.0;        // EWMA of observed / expected batch latency
    bool slow = false;            // far slower than its peers: only probe batches until it recovers
    Clock::time_point next_probe{};
  };
  struct InflightBatch {
    std::string routing_id;
    ModelVersion* model = nullptr;
    std::vector<Task> tasks;
    Clock::time_point sent_at;
    bool hedged = false;
  };

  void wake();
  // One pass of the work run() does per wake-up; returns when the next timed wake-up is due.
  Clock::time_point process(bool monitor_readable);
  void process_on_loop();
  static bool readable(void* socket);
  bool idle_replica_has_inbox_work() const;
  void receive_all();
  void receive_disconnects();
  void handle_message(const std::string& routing_id, const uint8_t* data, std::size_t size, int socket_fd);
  void handle_register(const std::string& routing_id, const void* message, int socket_fd);
  void handle_heartbeat(const std::string& routing_id, const void* message);
  void handle_response(const std::string& routing_id, const void* message);
  Clock::time_point dispatch(Clock::time_point now);
  void sync_controller(Replica& replica) const;
  bool send_batch(Replica& replica, std::vector<Task>&& tasks);
  bool send_to(const std::string& routing_id, const uint8_t* data, std::size_t size);
  void drop_replica(const std::string& routing_id, const char* reason);
  void check_liveness(Clock::time_point now);
  void hedge_stalled_batches(Clock::time_point now);
  void sweep_expired(Clock::time_point now);
  void handle_expired(ModelVersion& model, std::vector<Task>& expired, Clock::time_point now);
  void shed_doomed(ModelVersion& model, Clock::time_point now);
  void complete_outputs(std::vector<Task>& tasks, std::vector<std::string>& outputs);
  void complete_error(std::vector<Task>& tasks, const std::string& error);
  void push_completion(uint32_t io_thread, uint64_t query_key, uint32_t input_index, CompletionKind kind,
                       std::string text);
  void flush_completions();
  bool has_healthy_peer(const Replica& replica) const;
  bool has_room(const Replica& replica) const;
  bool is_stalled(const Replica& replica, Clock::time_point now) const;
  int batch_cap(const ModelVersion& model) const;
  void publish_state();

  Engine& engine_;
  PredictionCache& cache_;
  void* context_ = nullptr;
  void* router_ = nullptr;
  void* monitor_ = nullptr;  // PAIR receiving the ROUTER's disconnect events
  int wake_fd_ = -1;
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> stop_{false};

  std::unordered_map<std::string, Replica> replicas_;
  std::unordered_map<uint64_t, InflightBatch> inflight_;
  std::unordered_map<std::string, int32_t> next_replica_id_;  // per "name:version"
  uint64_t next_batch_id_ = 1;
  flatbuffers::FlatBufferBuilder builder_{4096};
  std::vector<std::vector<Completion>> outgoing_;  // per I/O thread
  std::vector<Task> expired_scratch_;
  std::vector<std::max_align_t> aligned_scratch_;  // aligned copies of misaligned inbound messages
  std::vector<ModelVersion*> drained_scratch_;  // versions whose inbox this dispatch pass drained
  Clock::time_point next_liveness_check_;

  // On-loop mode only.
  uv_loop_t* loop_ = nullptr;
  QueryProcessor* local_processor_ = nullptr;
  uv_poll_t router_poll_{};
  uv_poll_t monitor_poll_{};
  uv_check_t after_io_{};
  uv_timer_t timer_{};
  bool work_pending_ = false;

  mutable std::mutex published_mutex_;
  std::vector<ReplicaInfo> published_replicas_;
  std::string published_batching_state_ = "[]";
};

}  // namespace clipper
