#include "rpc/model_rpc_server.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "engine/query_processor.h"
#include "model_rpc_generated.h"

namespace clipper {
namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr auto kLivenessCheckInterval = milliseconds(100);
constexpr int kIdlePollMillis = 50;

wire::InputType to_wire(InputType type) { return static_cast<wire::InputType>(type); }

void log_event(const std::string& text) { std::fprintf(stderr, "clipper-engine %s\n", text.c_str()); }

}  // namespace

ModelRpcServer::ModelRpcServer(Engine& engine) : engine_(engine) {
  context_ = zmq_ctx_new();
  router_ = zmq_socket(context_, ZMQ_ROUTER);
  const int one = 1;
  const int zero = 0;
  const int high_water = 100000;
  zmq_setsockopt(router_, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
  zmq_setsockopt(router_, ZMQ_LINGER, &zero, sizeof(zero));
  zmq_setsockopt(router_, ZMQ_SNDHWM, &high_water, sizeof(high_water));
  zmq_setsockopt(router_, ZMQ_RCVHWM, &high_water, sizeof(high_water));
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  // A replica process that dies closes its TCP connection at once; the monitor tells us, so its
  // batch is re-queued now instead of after the heartbeat timeout.
  const std::string monitor_endpoint = "inproc://rpc-monitor-" + std::to_string(reinterpret_cast<uintptr_t>(this));
  zmq_socket_monitor(router_, monitor_endpoint.c_str(), ZMQ_EVENT_DISCONNECTED);
  monitor_ = zmq_socket(context_, ZMQ_PAIR);
  zmq_setsockopt(monitor_, ZMQ_LINGER, &zero, sizeof(zero));
  zmq_connect(monitor_, monitor_endpoint.c_str());
  outgoing_.resize(static_cast<std::size_t>(engine.options().io_threads));
}

ModelRpcServer::~ModelRpcServer() {
  if (router_ != nullptr) zmq_socket_monitor(router_, nullptr, 0);
  if (monitor_ != nullptr) zmq_close(monitor_);
  if (router_ != nullptr) zmq_close(router_);
  if (context_ != nullptr) zmq_ctx_term(context_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

int ModelRpcServer::bind(const std::string& address, int port) {
  const std::string endpoint = "tcp://" + address + ":" + (port == 0 ? std::string("*") : std::to_string(port));
  if (zmq_bind(router_, endpoint.c_str()) != 0) {
    throw std::runtime_error("cannot bind the RPC port " + endpoint + ": " + zmq_strerror(zmq_errno()));
  }
  char last[256];
  std::size_t length = sizeof(last);
  zmq_getsockopt(router_, ZMQ_LAST_ENDPOINT, last, &length);
  const std::string bound(last);
  return std::stoi(bound.substr(bound.rfind(':') + 1));
}

void ModelRpcServer::wake() {
  const uint64_t one = 1;
  [[maybe_unused]] auto written = ::write(wake_fd_, &one, sizeof(one));
}

void ModelRpcServer::request_stop() {
  stop_.store(true);
  wake();
}

std::vector<ReplicaInfo> ModelRpcServer::replicas() const {
  std::lock_guard lock(published_mutex_);
  return published_;
}

void ModelRpcServer::publish_replicas() {
  std::vector<ReplicaInfo> snapshot;
  snapshot.reserve(replicas_.size());
  for (const auto& [id, replica] : replicas_) {
    snapshot.push_back(ReplicaInfo{replica.model->name, replica.model->version, replica.replica_id,
                                   std::string(input_type_name(replica.model->input_type)),
                                   replica.inflight_batch != 0 ? 1 : 0});
  }
  std::sort(snapshot.begin(), snapshot.end(), [](const ReplicaInfo& a, const ReplicaInfo& b) {
    return std::tie(a.model_name, a.model_version, a.replica_id) <
           std::tie(b.model_name, b.model_version, b.replica_id);
  });
  std::lock_guard lock(published_mutex_);
  published_ = std::move(snapshot);
}

bool ModelRpcServer::has_dispatchable_work() {
  for (const auto& [id, replica] : replicas_) {
    if (replica.inflight_batch == 0 && replica.model->queue.approximate_size() > 0) return true;
  }
  return false;
}

void ModelRpcServer::run() {
  next_liveness_check_ = Clock::now() + kLivenessCheckInterval;
  zmq_pollitem_t items[3];
  items[0] = {router_, 0, ZMQ_POLLIN, 0};
  items[1] = {nullptr, wake_fd_, ZMQ_POLLIN, 0};
  items[2] = {monitor_, 0, ZMQ_POLLIN, 0};
  while (!stop_.load(std::memory_order_relaxed)) {
    // Announce sleep, then look once more, so a producer either sees us asleep or we see its task.
    sleeping_.store(true, std::memory_order_seq_cst);
    long timeout = kIdlePollMillis;
    if (has_dispatchable_work()) {
      sleeping_.store(false, std::memory_order_relaxed);
      timeout = 0;
    }
    if (zmq_poll(items, 3, timeout) < 0 && zmq_errno() != EINTR) break;
    sleeping_.store(false, std::memory_order_relaxed);
    if (items[1].revents & ZMQ_POLLIN) {
      uint64_t value;
      [[maybe_unused]] auto drained = ::read(wake_fd_, &value, sizeof(value));
    }
    receive_all();
    if (items[2].revents & ZMQ_POLLIN) receive_disconnects();
    dispatch();
    flush_completions();
    const Clock::time_point now = Clock::now();
    if (now >= next_liveness_check_) {
      check_liveness(now);
      flush_completions();
      next_liveness_check_ = now + kLivenessCheckInterval;
    }
  }
}

void ModelRpcServer::receive_all() {
  zmq_msg_t identity;
  zmq_msg_t body;
  for (int received = 0; received < 1024; ++received) {
    zmq_msg_init(&identity);
    if (zmq_msg_recv(&identity, router_, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&identity);
      return;
    }
    std::string routing_id(static_cast<const char*>(zmq_msg_data(&identity)), zmq_msg_size(&identity));
    zmq_msg_close(&identity);
    // Read every remaining frame; a well-formed message has exactly one.
    bool first = true;
    int more = 1;
    while (more) {
      zmq_msg_init(&body);
      if (zmq_msg_recv(&body, router_, 0) < 0) {
        zmq_msg_close(&body);
        break;
      }
      more = zmq_msg_more(&body);
      if (first) {
        const int socket_fd = zmq_msg_get(&body, ZMQ_SRCFD);
        handle_message(routing_id, static_cast<const uint8_t*>(zmq_msg_data(&body)), zmq_msg_size(&body),
                       socket_fd);
        first = false;
      }
      zmq_msg_close(&body);
    }
  }
}

void ModelRpcServer::receive_disconnects() {
  zmq_msg_t frame;
  while (true) {
    zmq_msg_init(&frame);
    if (zmq_msg_recv(&frame, monitor_, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&frame);
      return;
    }
    // Event frame: uint16 event id, uint32 value (the fd); a second frame holds the endpoint.
    int disconnected_fd = -1;
    if (zmq_msg_size(&frame) >= 6) {
      uint16_t event = 0;
      uint32_t value = 0;
      std::memcpy(&event, zmq_msg_data(&frame), sizeof(event));
      std::memcpy(&value, static_cast<const char*>(zmq_msg_data(&frame)) + 2, sizeof(value));
      if (event == ZMQ_EVENT_DISCONNECTED) disconnected_fd = static_cast<int>(value);
    }
    const bool more = zmq_msg_more(&frame);
    zmq_msg_close(&frame);
    if (more) {
      zmq_msg_init(&frame);
      zmq_msg_recv(&frame, monitor_, 0);
      zmq_msg_close(&frame);
    }
    if (disconnected_fd < 0) continue;
    std::vector<std::string> gone;
    for (const auto& [routing_id, replica] : replicas_) {
      if (replica.socket_fd == disconnected_fd) gone.push_back(routing_id);
    }
    for (const auto& routing_id : gone) drop_replica(routing_id, "connection closed");
  }
}

void ModelRpcServer::handle_message(const std::string& routing_id, const uint8_t* data, std::size_t size,
                                    int socket_fd) {
  flatbuffers::Verifier verifier(data, size);
  if (!wire::VerifyMessageBuffer(verifier)) {
    log_event("event=rpc_message_rejected reason=invalid_flatbuffer bytes=" + std::to_string(size));
    return;
  }
  const wire::Message* message = wire::GetMessage(data);
  auto replica = replicas_.find(routing_id);
  if (replica != replicas_.end()) replica->second.last_seen = Clock::now();
  switch (message->payload_type()) {
    case wire::Payload::Register:
      handle_register(routing_id, message->payload_as_Register(), socket_fd);
      break;
    case wire::Payload::Heartbeat: handle_heartbeat(routing_id, message->payload_as_Heartbeat()); break;
    case wire::Payload::PredictResponse:
      handle_response(routing_id, message->payload_as_PredictResponse());
      break;
    default:
      log_event("event=rpc_message_rejected reason=unexpected_payload");
      break;
  }
}

void ModelRpcServer::handle_register(const std::string& routing_id, const void* raw, int socket_fd) {
  const auto* request = static_cast<const wire::Register*>(raw);
  if (request->model_name() == nullptr || request->model_version() == nullptr ||
      request->model_name()->size() == 0 || request->model_version()->size() == 0) {
    log_event("event=replica_rejected reason=missing_model_name_or_version");
    return;
  }
  const std::string name = request->model_name()->str();
  const std::string version = request->model_version()->str();
  const auto type = static_cast<InputType>(request->input_type());
  if (static_cast<int>(type) > static_cast<int>(InputType::Strings)) {
    log_event("event=replica_rejected reason=unknown_input_type model=" + name);
    return;
  }
  ModelVersion* model = engine_.models().find_or_create(name, version, type);
  if (model == nullptr) {
    log_event("event=replica_rejected reason=input_type_mismatch model=" + name + " version=" + version +
              " input_type=" + std::string(input_type_name(type)));
    return;
  }
  auto existing = replicas_.find(routing_id);
  if (existing != replicas_.end()) {
    if (existing->second.model == model) {  // a repeated registration changes nothing else
      existing->second.socket_fd = socket_fd;
      return;
    }
    drop_replica(routing_id, "re-registered for another model");
  }
  Replica replica;
  replica.routing_id = routing_id;
  replica.model = model;
  replica.last_seen = Clock::now();
  replica.socket_fd = socket_fd;
  replica.replica_id = request->replica_id();
  if (replica.replica_id < 0) replica.replica_id = next_replica_id_[model->label]++;
  replicas_.emplace(routing_id, replica);
  model->connected_replicas.fetch_add(1);
  model->metrics->connected_replicas.add(1);
  log_event("event=replica_connected model=" + name + " version=" + version +
            " replica=" + std::to_string(replica.replica_id));
  publish_replicas();
}

void ModelRpcServer::handle_heartbeat(const std::string& routing_id, const void* raw) {
  const auto* heartbeat = static_cast<const wire::Heartbeat*>(raw);
  bool registered = false;
  if (heartbeat->replica_key() != nullptr) {
    auto replica = replicas_.find(heartbeat->replica_key()->str());
    if (replica != replicas_.end()) {
      replica->second.last_seen = Clock::now();
      registered = true;
    }
  }
  builder_.Clear();
  auto ack = wire::CreateHeartbeatAck(builder_, registered);
  builder_.Finish(wire::CreateMessage(builder_, wire::Payload::HeartbeatAck, ack.Union()));
  send_to(routing_id, builder_.GetBufferPointer(), builder_.GetSize());
}

void ModelRpcServer::handle_response(const std::string& routing_id, const void* raw) {
  const auto* response = static_cast<const wire::PredictResponse*>(raw);
  auto found = inflight_.find(response->batch_id());
  if (found == inflight_.end() || found->second.routing_id != routing_id) return;  // late or foreign
  InflightBatch batch = std::move(found->second);
  inflight_.erase(found);
  auto replica = replicas_.find(routing_id);
  if (replica != replicas_.end()) replica->second.inflight_batch = 0;

  ModelVersion& model = *batch.model;
  const auto latency = duration_cast<microseconds>(Clock::now() - batch.sent_at).count();
  model.metrics->batch_latency_micros.observe(static_cast<double>(latency));
  model.metrics->batches.add();
  if (response->error() != nullptr && response->error()->size() > 0) {
    model.metrics->failed_batches.add();
    complete(batch.tasks, CompletionKind::ModelError, nullptr, response->error()->str());
    return;
  }
  const auto* outputs = response->outputs();
  const std::size_t count = outputs == nullptr ? 0 : outputs->size();
  if (count != batch.tasks.size()) {
    model.metrics->failed_batches.add();
    complete(batch.tasks, CompletionKind::ModelError, nullptr,
             "the model returned " + std::to_string(count) + " outputs for a batch of " +
                 std::to_string(batch.tasks.size()) + " inputs");
    return;
  }
  std::vector<std::string> texts;
  texts.reserve(count);
  for (const auto* output : *outputs) texts.emplace_back(output->data(), output->size());
  model.metrics->predictions.add(count);
  complete(batch.tasks, CompletionKind::Output, &texts, {});
}

void ModelRpcServer::complete(std::vector<Task>& tasks, CompletionKind kind,
                              std::vector<std::string>* outputs, const std::string& error) {
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    Completion completion;
    completion.query_key = tasks[i].query_key;
    completion.input_index = tasks[i].input_index;
    completion.kind = kind;
    completion.text = outputs != nullptr ? std::move((*outputs)[i]) : error;
    outgoing_[tasks[i].io_thread].push_back(std::move(completion));
  }
}

void ModelRpcServer::flush_completions() {
  for (std::size_t thread = 0; thread < outgoing_.size(); ++thread) {
    if (!outgoing_[thread].empty()) engine_.processor(static_cast<uint32_t>(thread)).deliver(outgoing_[thread]);
  }
}

void ModelRpcServer::dispatch() {
  const Clock::time_point now = Clock::now();
  std::vector<std::string> unreachable;
  for (auto& [routing_id, replica] : replicas_) {
    if (replica.inflight_batch != 0) continue;
    ModelVersion& model = *replica.model;
    if (model.queue.approximate_size() == 0) continue;
    const int32_t limit = model.batch_size_limit.load(std::memory_order_relaxed);
    const std::size_t max_tasks = static_cast<std::size_t>(
        limit > 0 ? std::min(limit, engine_.options().max_batch_size) : engine_.options().max_batch_size);
    std::vector<Task> tasks;
    tasks.reserve(max_tasks);
    std::size_t expired = 0;
    model.queue.next_batch(tasks, max_tasks, now, expired);
    if (tasks.empty()) continue;
    if (!send_batch(replica, std::move(tasks))) unreachable.push_back(routing_id);
  }
  for (const auto& routing_id : unreachable) drop_replica(routing_id, "unreachable");
}

bool ModelRpcServer::send_batch(Replica& replica, std::vector<Task>&& tasks) {
  ModelVersion& model = *replica.model;
  const InputType type = model.input_type;
  const std::size_t count = tasks.size();
  bool uniform = is_numeric(type);
  for (std::size_t i = 1; uniform && i < count; ++i) uniform = tasks[i].element_count == tasks[0].element_count;
  std::size_t total_bytes = 0;
  for (const auto& task : tasks) total_bytes += task.payload.size();

  builder_.Clear();
  flatbuffers::Offset<flatbuffers::Vector<uint64_t>> offsets;
  if (!uniform) {
    uint64_t* offset_data = nullptr;
    offsets = builder_.CreateUninitializedVector<uint64_t>(count + 1, &offset_data);
    uint64_t position = 0;
    for (std::size_t i = 0; i < count; ++i) {
      offset_data[i] = position;
      position += tasks[i].payload.size();
    }
    offset_data[count] = position;
  }
  uint8_t* data = nullptr;
  const auto data_offset = builder_.CreateUninitializedVector(total_bytes, 1, 16, &data);
  for (const auto& task : tasks) {
    if (!task.payload.empty()) std::memcpy(data, task.payload.data(), task.payload.size());
    data += task.payload.size();
  }
  const uint64_t batch_id = next_batch_id_++;
  wire::PredictRequestBuilder request(builder_);
  request.add_batch_id(batch_id);
  request.add_input_type(to_wire(type));
  request.add_num_inputs(static_cast<uint32_t>(count));
  request.add_row_length(uniform ? tasks[0].element_count : 0);
  if (!uniform) request.add_offsets(offsets);
  request.add_data(flatbuffers::Offset<flatbuffers::Vector<uint8_t>>(data_offset));
  const auto request_offset = request.Finish();
  builder_.Finish(wire::CreateMessage(builder_, wire::Payload::PredictRequest, request_offset.Union()));

  if (!send_to(replica.routing_id, builder_.GetBufferPointer(), builder_.GetSize())) {
    model.queue.requeue(std::move(tasks), Clock::now());
    return false;
  }
  model.metrics->batch_size.observe(static_cast<double>(count));
  replica.inflight_batch = batch_id;
  inflight_.emplace(batch_id, InflightBatch{replica.routing_id, &model, std::move(tasks), Clock::now()});
  return true;
}

bool ModelRpcServer::send_to(const std::string& routing_id, const uint8_t* data, std::size_t size) {
  if (zmq_send(router_, routing_id.data(), routing_id.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return false;
  return zmq_send(router_, data, size, ZMQ_DONTWAIT) >= 0;
}

void ModelRpcServer::drop_replica(const std::string& routing_id, const char* reason) {
  auto found = replicas_.find(routing_id);
  if (found == replicas_.end()) return;
  Replica replica = found->second;
  replicas_.erase(found);
  replica.model->connected_replicas.fetch_sub(1);
  replica.model->metrics->connected_replicas.add(-1);
  if (replica.inflight_batch != 0) {
    auto batch = inflight_.find(replica.inflight_batch);
    if (batch != inflight_.end()) {
      // Another replica may still answer in time; past-deadline tasks were answered already.
      replica.model->queue.requeue(std::move(batch->second.tasks), Clock::now());
      inflight_.erase(batch);
    }
  }
  log_event("event=replica_dropped model=" + replica.model->name + " version=" + replica.model->version +
            " replica=" + std::to_string(replica.replica_id) + " reason=\"" + reason + "\"");
  publish_replicas();
}

void ModelRpcServer::check_liveness(Clock::time_point now) {
  const auto timeout = milliseconds(engine_.options().heartbeat_timeout_millis);
  std::vector<std::string> silent;
  for (const auto& [routing_id, replica] : replicas_) {
    if (now - replica.last_seen > timeout) silent.push_back(routing_id);
  }
  for (const auto& routing_id : silent) drop_replica(routing_id, "no heartbeat within the timeout");
}

}  // namespace clipper
