#include "rpc/model_rpc_server.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
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
constexpr auto kSlowProbeInterval = milliseconds(500);
constexpr auto kMinimumStall = milliseconds(20);
constexpr int kIdlePollMillis = 50;
constexpr double kSlownessSmoothing = 0.3;   // EWMA weight of the newest batch
constexpr double kSlowAbove = 4.0;           // slower than 4x the model's expectation: slow
constexpr double kRecoveredBelow = 1.5;
constexpr double kStallFactor = 4.0;         // in flight 4x longer than expected: stalled
// A task whose time left is under this share of the model's one-input latency is shed at once:
// evaluating it would only delay the tasks that can still make their deadline.
constexpr double kDoomedShare = 0.75;

wire::InputType to_wire(InputType type) { return static_cast<wire::InputType>(type); }

void log_event(const std::string& text) { std::fprintf(stderr, "clipper-engine %s\n", text.c_str()); }

CacheKey cache_key_of(const Task& task) {
  return CacheKey{task.cache_key.model_id, task.cache_key.hash_low, task.cache_key.hash_high};
}

}  // namespace

ModelRpcServer::ModelRpcServer(Engine& engine, PredictionCache& cache) : engine_(engine), cache_(cache) {
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
  const std::string monitor_endpoint =
      "inproc://rpc-monitor-" + std::to_string(reinterpret_cast<uintptr_t>(this));
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
  const std::string endpoint =
      "tcp://" + address + ":" + (port == 0 ? std::string("*") : std::to_string(port));
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
  return published_replicas_;
}

std::string ModelRpcServer::batching_state_json() const {
  std::lock_guard lock(published_mutex_);
  return published_batching_state_;
}

int ModelRpcServer::batch_cap(const ModelVersion& model) const {
  const int engine_cap = engine_.options().max_batch_size;
  const int model_cap = model.max_batch_size.load(std::memory_order_relaxed);
  return model_cap > 0 ? std::min(model_cap, engine_cap) : engine_cap;
}

void ModelRpcServer::sync_controller(Replica& replica) const {
  replica.controller->set_cap(batch_cap(*replica.model));
  const int fixed = replica.model->batch_size_limit.load(std::memory_order_relaxed);
  if (fixed > 0 || !replica.controller->adaptive()) replica.controller->set_fixed_size(fixed);
}

void ModelRpcServer::publish_state() {
  std::vector<ReplicaInfo> snapshot;
  snapshot.reserve(replicas_.size());
  for (const auto& [id, replica] : replicas_) {
    snapshot.push_back(ReplicaInfo{replica.model->name, replica.model->version, replica.replica_id,
                                   std::string(input_type_name(replica.model->input_type)),
                                   static_cast<int>(replica.inflight_batches.size())});
  }
  std::sort(snapshot.begin(), snapshot.end(), [](const ReplicaInfo& a, const ReplicaInfo& b) {
    return std::tie(a.model_name, a.model_version, a.replica_id) <
           std::tie(b.model_name, b.model_version, b.replica_id);
  });

  // Batching state of every model version: settings, learned size, cut reasons, per-replica state.
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartArray();
  for (ModelVersion* model : engine_.models().all()) {
    writer.StartObject();
    writer.Key("model_name");
    writer.String(model->name.c_str());
    writer.Key("model_version");
    writer.String(model->version.c_str());
    writer.Key("batch_size");
    writer.Int(model->batch_size_limit.load());
    writer.Key("max_batch_size");
    writer.Int(batch_cap(*model));
    writer.Key("batch_wait_timeout_micros");
    writer.Int64(model->batch_wait_timeout_micros.load());
    writer.Key("slo_micros");
    writer.Int64(model->slo_micros.load());
    writer.Key("latency_objective_micros");
    writer.Int64(static_cast<int64_t>(model->slo_micros.load() * engine_.options().batch_latency_slo_fraction));
    writer.Key("learned_batch_size");
    writer.Int(model->learned_batch_size.load());
    writer.Key("queued");
    writer.Uint64(model->queue.approximate_size());
    writer.Key("batch_cuts");
    writer.StartObject();
    for (std::size_t i = 0; i < kCutReasons; ++i) {
      const auto name = cut_reason_name(static_cast<CutReason>(i));
      writer.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
      writer.Uint64(model->metrics->batch_cut_reasons[i].value());
    }
    writer.EndObject();
    writer.Key("replicas");
    writer.StartArray();
    for (const auto& [id, replica] : replicas_) {
      if (replica.model != model) continue;
      writer.StartObject();
      writer.Key("replica_id");
      writer.Int(replica.replica_id);
      writer.Key("batch_size");
      writer.Int(replica.controller->batch_size());
      writer.Key("adaptive");
      writer.Bool(replica.controller->adaptive());
      writer.Key("backoffs");
      writer.Uint64(replica.controller->backoffs());
      writer.Key("slow");
      writer.Bool(replica.slow);
      writer.Key("recent_batch_latencies_micros");
      writer.StartArray();
      std::size_t count = 0;
      const auto recent = replica.controller->recent_latencies(count);
      for (std::size_t i = 0; i < count; ++i) writer.Int64(recent[i]);
      writer.EndArray();
      writer.EndObject();
    }
    writer.EndArray();
    writer.EndObject();
  }
  writer.EndArray();

  std::lock_guard lock(published_mutex_);
  published_replicas_ = std::move(snapshot);
  published_batching_state_.assign(buffer.GetString(), buffer.GetSize());
}

bool ModelRpcServer::idle_replica_has_inbox_work() const {
  for (const auto& [id, replica] : replicas_) {
    if (has_room(replica) && replica.model->queue.inbox_size() > 0) return true;
  }
  return false;
}

Clock::time_point ModelRpcServer::process(bool monitor_readable) {
  receive_all();
  if (monitor_readable) receive_disconnects();
  const Clock::time_point now = Clock::now();
  const Clock::time_point next_wake = dispatch(now);
  flush_completions();
  if (now >= next_liveness_check_) {
    check_liveness(now);
    hedge_stalled_batches(now);
    sweep_expired(now);
    flush_completions();
    publish_state();
    next_liveness_check_ = now + kLivenessCheckInterval;
  }
  return std::min(next_wake, next_liveness_check_);
}

void ModelRpcServer::run() {
  next_liveness_check_ = Clock::now() + kLivenessCheckInterval;
  zmq_pollitem_t items[3];
  items[0] = {router_, 0, ZMQ_POLLIN, 0};
  items[1] = {nullptr, wake_fd_, ZMQ_POLLIN, 0};
  items[2] = {monitor_, 0, ZMQ_POLLIN, 0};
  Clock::time_point next_wake = Clock::time_point::max();
  while (!stop_.load(std::memory_order_relaxed)) {
    // Announce sleep, then look once more, so a producer either sees us asleep or we see its task.
    sleeping_.store(true, std::memory_order_seq_cst);
    long timeout = kIdlePollMillis;
    if (idle_replica_has_inbox_work()) {
      timeout = 0;
    } else if (next_wake != Clock::time_point::max()) {
      const auto wait = duration_cast<milliseconds>(next_wake - Clock::now() + microseconds(999)).count();
      timeout = std::clamp<long>(static_cast<long>(wait), 0, kIdlePollMillis);
    }
    if (timeout == 0) sleeping_.store(false, std::memory_order_relaxed);
    if (zmq_poll(items, 3, timeout) < 0 && zmq_errno() != EINTR) break;
    sleeping_.store(false, std::memory_order_relaxed);
    if (items[1].revents & ZMQ_POLLIN) {
      uint64_t value;
      [[maybe_unused]] auto drained = ::read(wake_fd_, &value, sizeof(value));
    }
    next_wake = process(items[2].revents & ZMQ_POLLIN);
  }
}

bool ModelRpcServer::readable(void* socket) {
  int events = 0;
  std::size_t size = sizeof(events);
  return zmq_getsockopt(socket, ZMQ_EVENTS, &events, &size) == 0 && (events & ZMQ_POLLIN) != 0;
}

void ModelRpcServer::attach_to_loop(uv_loop_t* loop, QueryProcessor* local) {
  loop_ = loop;
  local_processor_ = local;
  next_liveness_check_ = Clock::now() + kLivenessCheckInterval;
  // ZeroMQ's descriptors only say "look at ZMQ_EVENTS"; process_on_loop() keeps reading until the
  // sockets report nothing more, since a send can make messages readable without a new edge.
  int fd = -1;
  std::size_t size = sizeof(fd);
  zmq_getsockopt(router_, ZMQ_FD, &fd, &size);
  uv_poll_init(loop, &router_poll_, fd);
  router_poll_.data = this;
  uv_poll_start(&router_poll_, UV_READABLE, [](uv_poll_t* handle, int, int) {
    static_cast<ModelRpcServer*>(handle->data)->process_on_loop();
  });
  size = sizeof(fd);
  zmq_getsockopt(monitor_, ZMQ_FD, &fd, &size);
  uv_poll_init(loop, &monitor_poll_, fd);
  monitor_poll_.data = this;
  uv_poll_start(&monitor_poll_, UV_READABLE, [](uv_poll_t* handle, int, int) {
    static_cast<ModelRpcServer*>(handle->data)->process_on_loop();
  });
  // Tasks queued while handling this iteration's requests are dispatched together, after the I/O.
  uv_check_init(loop, &after_io_);
  after_io_.data = this;
  uv_check_start(&after_io_, [](uv_check_t* handle) {
    auto* self = static_cast<ModelRpcServer*>(handle->data);
    if (self->work_pending_) self->process_on_loop();
  });
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  uv_timer_start(&timer_, [](uv_timer_t* handle) { static_cast<ModelRpcServer*>(handle->data)->process_on_loop(); },
                 kLivenessCheckInterval.count(), 0);
}

void ModelRpcServer::detach_from_loop() {
  if (loop_ == nullptr) return;
  uv_close(reinterpret_cast<uv_handle_t*>(&router_poll_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&monitor_poll_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&after_io_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

void ModelRpcServer::process_on_loop() {
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&timer_))) return;
  Clock::time_point next_wake;
  int passes = 0;
  do {
    work_pending_ = false;
    next_wake = process(readable(monitor_));
  } while ((readable(router_) || work_pending_) && ++passes < 64);
  const auto wait = duration_cast<milliseconds>(next_wake - Clock::now() + microseconds(999)).count();
  uv_timer_start(&timer_, [](uv_timer_t* handle) { static_cast<ModelRpcServer*>(handle->data)->process_on_loop(); },
                 static_cast<uint64_t>(std::clamp<int64_t>(wait, 0, kIdlePollMillis)), 0);
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
        const auto* data = static_cast<const uint8_t*>(zmq_msg_data(&body));
        const std::size_t size = zmq_msg_size(&body);
        // ZeroMQ keeps small messages at any offset inside its receive buffer; flatbuffers reads
        // fields in place and needs the buffer aligned, so such a message is copied once.
        if (reinterpret_cast<uintptr_t>(data) % alignof(std::max_align_t) != 0) {
          aligned_scratch_.resize(size / sizeof(std::max_align_t) + 1);
          std::memcpy(aligned_scratch_.data(), data, size);
          data = reinterpret_cast<const uint8_t*>(aligned_scratch_.data());
        }
        handle_message(routing_id, data, size, socket_fd);
        first = false;
      }
      zmq_msg_close(&body);
    }
  }
}

void ModelRpcServer::receive_disconnects() {
  if (!readable(monitor_)) return;
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
  // A new replica starts from what its peers learned rather than from one.
  AimdOptions aimd;
  aimd.additive_step = engine_.options().aimd_additive_step;
  aimd.backoff_factor = engine_.options().aimd_backoff_factor;
  replica.controller = std::make_unique<AimdController>(aimd, model->learned_batch_size.load(), batch_cap(*model));
  sync_controller(replica);
  replicas_.emplace(routing_id, std::move(replica));
  model->connected_replicas.fetch_add(1);
  model->idle_replicas.fetch_add(1);
  model->metrics->connected_replicas.add(1);
  log_event("event=replica_connected model=" + name + " version=" + version +
            " replica=" + std::to_string(replicas_.at(routing_id).replica_id));
  publish_state();
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
  ModelVersion& model = *batch.model;
  const Clock::time_point now = Clock::now();
  int64_t latency = duration_cast<microseconds>(now - batch.sent_at).count();
  const std::size_t sent = batch.tasks.size();

  auto replica = replicas_.find(routing_id);
  if (replica != replicas_.end()) {
    Replica& owner = replica->second;
    const bool was_full = !has_room(owner);
    auto position = std::find(owner.inflight_batches.begin(), owner.inflight_batches.end(), response->batch_id());
    if (position != owner.inflight_batches.end()) owner.inflight_batches.erase(position);
    if (was_full && has_room(owner)) model.idle_replicas.fetch_add(1);
    // With several batches in flight, a batch waited in the replica for the one before it: the
    // controller and the latency model want the time the replica spent on this batch alone.
    const Clock::time_point started = std::max(batch.sent_at, owner.last_answer_at);
    owner.last_answer_at = now;
    latency = duration_cast<microseconds>(now - started).count();
    // Slowness compares this replica with what the model's batches usually take.
    if (model.latency.has_samples()) {
      const double expected = std::max(model.latency.estimate_micros(sent), 1.0);
      owner.slowness = (1 - kSlownessSmoothing) * owner.slowness + kSlownessSmoothing * (latency / expected);
      if (!owner.slow && owner.slowness > kSlowAbove && has_healthy_peer(owner)) {
        owner.slow = true;
        owner.next_probe = now + kSlowProbeInterval;
        log_event("event=replica_slow model=" + model.label + " replica=" + std::to_string(owner.replica_id));
      } else if (owner.slow && owner.slowness < kRecoveredBelow) {
        owner.slow = false;
        log_event("event=replica_recovered model=" + model.label + " replica=" + std::to_string(owner.replica_id));
      }
    }
    if (!owner.slow) {
      const auto objective = static_cast<int64_t>(model.slo_micros.load(std::memory_order_relaxed) *
                                                  engine_.options().batch_latency_slo_fraction);
      owner.controller->observe(static_cast<int>(sent), latency, objective);
      model.learned_batch_size.store(owner.controller->batch_size(), std::memory_order_relaxed);
      model.metrics->learned_batch_size.set(owner.controller->batch_size());
    }
  }
  if (replica == replicas_.end() || !replica->second.slow) model.latency.observe(sent, latency);
  model.metrics->batch_latency_micros.observe(static_cast<double>(latency));
  model.metrics->batches.add();

  if (response->error() != nullptr && response->error()->size() > 0) {
    model.metrics->failed_batches.add();
    complete_error(batch.tasks, response->error()->str());
    return;
  }
  const auto* outputs = response->outputs();
  const std::size_t count = outputs == nullptr ? 0 : outputs->size();
  if (count != sent) {
    model.metrics->failed_batches.add();
    complete_error(batch.tasks, "the model returned " + std::to_string(count) + " outputs for a batch of " +
                                    std::to_string(sent) + " inputs");
    return;
  }
  std::vector<std::string> texts;
  texts.reserve(count);
  for (const auto* output : *outputs) texts.emplace_back(output->data(), output->size());
  model.metrics->predictions.add(count);
  complete_outputs(batch.tasks, texts);
}

void ModelRpcServer::push_completion(uint32_t io_thread, uint64_t query_key, uint32_t input_index,
                                     CompletionKind kind, std::string text) {
  Completion completion;
  completion.query_key = query_key;
  completion.input_index = input_index;
  completion.kind = kind;
  completion.text = std::move(text);
  outgoing_[io_thread].push_back(std::move(completion));
}

void ModelRpcServer::complete_outputs(std::vector<Task>& tasks, std::vector<std::string>& outputs) {
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    const Task& task = tasks[i];
    if (task.cached) {
      // Queries that asked for the same input while it was evaluated get the same answer.
      for (const CacheWaiter& waiter : cache_.resolve(cache_key_of(task), outputs[i])) {
        push_completion(waiter.io_thread, waiter.query_key, waiter.input_index, CompletionKind::Output,
                        outputs[i]);
      }
    }
    push_completion(task.io_thread, task.query_key, task.input_index, CompletionKind::Output,
                    std::move(outputs[i]));
  }
}

void ModelRpcServer::complete_error(std::vector<Task>& tasks, const std::string& error) {
  for (const Task& task : tasks) {
    if (task.cached) {
      for (const CacheWaiter& waiter : cache_.fail(cache_key_of(task))) {
        push_completion(waiter.io_thread, waiter.query_key, waiter.input_index, CompletionKind::ModelError, error);
      }
    }
    push_completion(task.io_thread, task.query_key, task.input_index, CompletionKind::ModelError, error);
  }
}

void ModelRpcServer::flush_completions() {
  if (local_processor_ != nullptr && !outgoing_[0].empty()) {
    local_processor_->deliver_here(outgoing_[0]);
    return;
  }
  for (std::size_t thread = 0; thread < outgoing_.size(); ++thread) {
    if (!outgoing_[thread].empty()) engine_.processor(static_cast<uint32_t>(thread)).deliver(outgoing_[thread]);
  }
}

void ModelRpcServer::handle_expired(ModelVersion& model, std::vector<Task>& expired, Clock::time_point now) {
  // The owners were answered with the default at their deadline. A coalesced waiter with a later
  // deadline may still want the answer: it inherits the evaluation.
  for (Task& task : expired) {
    model.metrics->expired_tasks.add();
    if (!task.cached) continue;
    if (auto owner = cache_.hand_over(cache_key_of(task), now)) {
      task.io_thread = owner->io_thread;
      task.query_key = owner->query_key;
      task.input_index = owner->input_index;
      task.deadline = owner->deadline;
      model.queue.requeue(std::move(task));
    }
  }
  expired.clear();
}

void ModelRpcServer::shed_doomed(ModelVersion& model, Clock::time_point now) {
  // Never shed everything for long: a batch now and then re-measures a model that got faster.
  if (!model.latency.has_samples() || now - model.last_batch_sent > kSlowProbeInterval) return;
  const double one_input_micros = model.latency.estimate_micros(1);
  std::vector<Task> doomed;
  while (model.queue.ready() > 0) {
    const auto left = duration_cast<microseconds>(*model.queue.earliest_deadline() - now).count();
    if (static_cast<double>(left) >= kDoomedShare * one_input_micros) break;
    model.queue.take_batch(doomed, 1, now, expired_scratch_);
  }
  handle_expired(model, expired_scratch_, now);
  for (Task& task : doomed) {
    model.metrics->shed_tasks.add();
    const std::string reason = "shed before evaluation, " +
                               std::to_string(duration_cast<microseconds>(task.deadline - now).count()) +
                               " us left and the model needs about " +
                               std::to_string(static_cast<int64_t>(one_input_micros)) + " us";
    if (task.cached) {
      if (auto owner = cache_.hand_over(cache_key_of(task), now)) {
        push_completion(task.io_thread, task.query_key, task.input_index, CompletionKind::Shed, reason);
        task.io_thread = owner->io_thread;
        task.query_key = owner->query_key;
        task.input_index = owner->input_index;
        task.deadline = owner->deadline;
        model.queue.requeue(std::move(task));
        continue;
      }
    }
    push_completion(task.io_thread, task.query_key, task.input_index, CompletionKind::Shed, reason);
  }
}

bool ModelRpcServer::has_room(const Replica& replica) const {
  return replica.inflight_batches.size() < static_cast<std::size_t>(engine_.options().replica_pipeline_depth);
}

bool ModelRpcServer::is_stalled(const Replica& replica, Clock::time_point now) const {
  if (replica.inflight_batches.empty() || !replica.model->latency.has_samples()) return false;
  auto batch = inflight_.find(replica.inflight_batches.front());
  if (batch == inflight_.end()) return false;
  const double expected = replica.model->latency.estimate_micros(batch->second.tasks.size());
  const auto stall_after = std::max<microseconds>(microseconds(static_cast<int64_t>(kStallFactor * expected)),
                                                  duration_cast<microseconds>(kMinimumStall));
  // A pipelined batch only starts once the replica answered the one before it.
  const Clock::time_point started = std::max(batch->second.sent_at, replica.last_answer_at);
  return now - started >= stall_after;
}

bool ModelRpcServer::has_healthy_peer(const Replica& replica) const {
  // Healthy: neither marked slow nor sitting on a batch far past its expected latency.
  const Clock::time_point now = Clock::now();
  for (const auto& [id, other] : replicas_) {
    if (&other != &replica && other.model == replica.model && !other.slow && !is_stalled(other, now)) {
      return true;
    }
  }
  return false;
}

Clock::time_point ModelRpcServer::dispatch(Clock::time_point now) {
  Clock::time_point next_wake = Clock::time_point::max();
  drained_scratch_.clear();
  std::vector<std::string> unreachable;
  for (auto& [routing_id, replica] : replicas_) {
    if (!has_room(replica)) continue;
    ModelVersion& model = *replica.model;
    if (std::find(drained_scratch_.begin(), drained_scratch_.end(), &model) == drained_scratch_.end()) {
      drained_scratch_.push_back(&model);
      model.queue.drain_inbox(now);
      model.queue.take_expired(now, expired_scratch_);
      handle_expired(model, expired_scratch_, now);
      shed_doomed(model, now);
    }
    if (model.queue.ready() == 0) continue;
    if (replica.slow && !has_healthy_peer(replica)) {
      replica.slow = false;  // the last one standing serves, slow or not
      replica.slowness = kRecoveredBelow;
    }
    if (replica.slow) {
      // Only a probe now and then, so the replica can show it recovered.
      if (now < replica.next_probe) {
        next_wake = std::min(next_wake, replica.next_probe);
        continue;
      }
      replica.next_probe = now + kSlowProbeInterval;
    }
    sync_controller(replica);
    PlanInputs inputs;
    inputs.queued = model.queue.ready();
    inputs.target_size = replica.slow ? 1 : static_cast<std::size_t>(replica.controller->batch_size());
    inputs.now = now;
    inputs.earliest_deadline = *model.queue.earliest_deadline();
    inputs.waiting_since = model.queue.waiting_since();
    inputs.batch_wait_timeout_micros = model.batch_wait_timeout_micros.load(std::memory_order_relaxed);
    const BatchPlan plan = plan_batch(inputs, model.latency);
    if (!plan.send) {
      next_wake = std::min(next_wake, plan.wake_at);
      continue;
    }
    // A replica busy with a batch only gets another one queued behind it when that one is full;
    // a partial batch is better sent when the replica is free, with whatever arrived meanwhile.
    if (!replica.inflight_batches.empty() && plan.reason != CutReason::Full) continue;
    std::vector<Task> tasks;
    tasks.reserve(plan.size);
    model.queue.take_batch(tasks, plan.size, now, expired_scratch_);
    handle_expired(model, expired_scratch_, now);
    if (tasks.empty()) continue;
    model.metrics->batch_cut_reasons[static_cast<std::size_t>(plan.reason)].add();
    if (!send_batch(replica, std::move(tasks))) unreachable.push_back(routing_id);
  }
  for (const auto& routing_id : unreachable) drop_replica(routing_id, "unreachable");
  return next_wake;
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
    model.queue.requeue(std::move(tasks));
    return false;
  }
  model.metrics->batch_size.observe(static_cast<double>(count));
  model.last_batch_sent = Clock::now();
  replica.inflight_batches.push_back(batch_id);
  if (!has_room(replica)) model.idle_replicas.fetch_sub(1);
  inflight_.emplace(batch_id, InflightBatch{replica.routing_id, &model, std::move(tasks), Clock::now(), false});
  return true;
}

bool ModelRpcServer::send_to(const std::string& routing_id, const uint8_t* data, std::size_t size) {
  if (zmq_send(router_, routing_id.data(), routing_id.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return false;
  return zmq_send(router_, data, size, ZMQ_DONTWAIT) >= 0;
}

void ModelRpcServer::drop_replica(const std::string& routing_id, const char* reason) {
  auto found = replicas_.find(routing_id);
  if (found == replicas_.end()) return;
  ModelVersion* model = found->second.model;
  const int32_t replica_id = found->second.replica_id;
  const std::vector<uint64_t> inflight_batches = found->second.inflight_batches;
  if (has_room(found->second)) model->idle_replicas.fetch_sub(1);
  replicas_.erase(found);
  model->connected_replicas.fetch_sub(1);
  model->metrics->connected_replicas.add(-1);
  for (const uint64_t batch_id : inflight_batches) {
    auto batch = inflight_.find(batch_id);
    if (batch != inflight_.end()) {
      // Another replica may still answer in time; expired tasks are dropped when a batch is formed.
      model->queue.requeue(std::move(batch->second.tasks));
      inflight_.erase(batch);
    }
  }
  log_event("event=replica_dropped model=" + model->name + " version=" + model->version +
            " replica=" + std::to_string(replica_id) + " reason=\"" + reason + "\"");
  publish_state();
}

void ModelRpcServer::check_liveness(Clock::time_point now) {
  const auto timeout = milliseconds(engine_.options().heartbeat_timeout_millis);
  std::vector<std::string> silent;
  for (const auto& [routing_id, replica] : replicas_) {
    if (now - replica.last_seen > timeout) silent.push_back(routing_id);
  }
  for (const auto& routing_id : silent) drop_replica(routing_id, "no heartbeat within the timeout");
}

void ModelRpcServer::hedge_stalled_batches(Clock::time_point now) {
  // A replica sitting on a batch far longer than the model's batches take is stalled: it is marked
  // slow and copies of the live tasks of every batch it holds go back to the queue for a healthy
  // peer. Whichever answer arrives first wins; the I/O thread and the cache ignore the second.
  for (auto& [routing_id, replica] : replicas_) {
    if (!is_stalled(replica, now) || !has_healthy_peer(replica)) continue;
    replica.slow = true;
    replica.slowness = std::max(replica.slowness, kSlowAbove);
    replica.next_probe = now + kSlowProbeInterval;
    for (const uint64_t batch_id : replica.inflight_batches) {
      auto batch = inflight_.find(batch_id);
      if (batch == inflight_.end() || batch->second.hedged) continue;
      batch->second.hedged = true;
      std::vector<Task> copies;
      for (const Task& task : batch->second.tasks) {
        if (task.deadline > now) copies.push_back(task);
      }
      replica.model->metrics->hedged_batches.add();
      replica.model->queue.requeue(std::move(copies));
      log_event("event=batch_hedged model=" + replica.model->label + " replica=" +
                std::to_string(replica.replica_id) + " batch=" + std::to_string(batch_id));
    }
  }
}

void ModelRpcServer::sweep_expired(Clock::time_point now) {
  // Queues of versions no replica serves still hold tasks (and pending cache entries) until here.
  for (ModelVersion* model : engine_.models().all()) {
    model->queue.drain_inbox(now);
    model->queue.take_expired(now, expired_scratch_);
    handle_expired(*model, expired_scratch_, now);
  }
}

}  // namespace clipper
