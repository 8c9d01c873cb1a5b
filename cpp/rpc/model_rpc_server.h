// The RPC thread: a ZeroMQ ROUTER that model replicas connect to. It registers replicas, tracks their
// liveness through heartbeats, forms batches from each model version's queue for every idle replica,
// sends them as flatbuffers, and hands the answers to the I/O threads that wait for them.
// Everything runs on the one RPC thread, except notify_work() and replicas(), which any thread calls.
#pragma once

#include <flatbuffers/flatbuffers.h>
#include <zmq.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "batching/task.h"
#include "engine/engine.h"
#include "engine/model_registry.h"

namespace clipper {

class ModelRpcServer {
 public:
  explicit ModelRpcServer(Engine& engine);
  ~ModelRpcServer();
  ModelRpcServer(const ModelRpcServer&) = delete;
  ModelRpcServer& operator=(const ModelRpcServer&) = delete;

  // Binds the ROUTER; returns the bound port. Throws std::runtime_error.
  int bind(const std::string& address, int port);
  void run();            // the RPC thread's body; returns after request_stop()
  void request_stop();   // any thread

  // Any thread: new tasks were queued. Wakes the RPC thread only when it sleeps.
  void notify_work() {
    if (sleeping_.exchange(false, std::memory_order_seq_cst)) wake();
  }

  std::vector<ReplicaInfo> replicas() const;

 private:
  struct Replica {
    std::string routing_id;
    ModelVersion* model = nullptr;
    int32_t replica_id = 0;
    Clock::time_point last_seen;
    uint64_t inflight_batch = 0;  // 0 = idle
    int socket_fd = -1;           // the TCP connection its data socket uses (for disconnects)
  };
  struct InflightBatch {
    std::string routing_id;
    ModelVersion* model = nullptr;
    std::vector<Task> tasks;
    Clock::time_point sent_at;
  };

  void wake();
  bool has_dispatchable_work();
  void receive_all();
  void handle_message(const std::string& routing_id, const uint8_t* data, std::size_t size, int socket_fd);
  void handle_register(const std::string& routing_id, const void* message, int socket_fd);
  void receive_disconnects();
  void handle_heartbeat(const std::string& routing_id, const void* message);
  void handle_response(const std::string& routing_id, const void* message);
  void dispatch();
  bool send_batch(Replica& replica, std::vector<Task>&& tasks);
  bool send_to(const std::string& routing_id, const uint8_t* data, std::size_t size);
  void drop_replica(const std::string& routing_id, const char* reason);
  void check_liveness(Clock::time_point now);
  void complete(std::vector<Task>& tasks, CompletionKind kind, std::vector<std::string>* outputs,
                const std::string& error);
  void flush_completions();
  void publish_replicas();

  Engine& engine_;
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
  Clock::time_point next_liveness_check_;

  mutable std::mutex published_mutex_;
  std::vector<ReplicaInfo> published_;
};

}  // namespace clipper
