#include "rpc/replica_service.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

namespace clipper {
namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr auto kLivenessCheckInterval = milliseconds(100);
constexpr int kIdlePollMillis = 50;

}  // namespace

ReplicaService::ReplicaService(const EngineOptions& options, ModelRegistry& models, PredictionCache& cache,
                               std::unique_ptr<ReplicaTransport> transport)
    : options_(options),
      models_(models),
      transport_(std::move(transport)),
      replicas_(options.replica_pipeline_depth, options.replica_prefetch_full_batches),
      outbox_(cache),
      dispatcher_(options, models, cache, replicas_, *transport_, messages_, outbox_) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

ReplicaService::~ReplicaService() {
  if (wait_fd_ >= 0) ::close(wait_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void ReplicaService::wake() {
  const uint64_t one = 1;
  [[maybe_unused]] auto written = ::write(wake_fd_, &one, sizeof(one));
}

AdmissionEstimate ReplicaService::admission_estimate(const ModelVersion& model, std::size_t count) const {
  AdmissionEstimate estimate;
  const auto service = model.admission.snapshot();
  if (!service) return estimate;
  const bool busy = model.idle_replicas.load(std::memory_order_relaxed) <= 0;
  const std::size_t queued = model.queue.approximate_size();
  if (queued == 0 && !busy && model.admission.stale(Clock::now())) return estimate;  // a probe: admit
  estimate.known = true;
  // Nothing queued and a replica idle: the query's first batch leaves at once, so judge that batch
  // alone. Its later inputs ride batches that AIMD grows as it goes: judged by today's (small) batch
  // size, a large first query to a slow model would look hopeless and be refused.
  const std::size_t judged = queued == 0 && !busy ? 1 : count;
  estimate.wait_micros = estimate_wait_micros(*service, queued, judged, busy);
  return estimate;
}

void ReplicaService::request_stop() {
  stop_.store(true);
  wake();
}

void ReplicaService::publish_state() {
  report_.publish(replicas_, models_.all(), dispatcher_, options_);
  for (ModelVersion* model : models_.all()) dispatcher_.publish_admission(*model);
}

Clock::time_point ReplicaService::process(bool closes_waiting) {
  transport_->receive(*this);
  if (closes_waiting) transport_->receive_closes(*this);
  const Clock::time_point now = Clock::now();
  unreachable_scratch_.clear();
  const Clock::time_point next_wake = dispatcher_.dispatch(now, unreachable_scratch_);
  for (const auto& address : unreachable_scratch_) drop_replica(address, "unreachable");
  outbox_.flush();
  if (now >= next_liveness_check_) {
    check_liveness(now);
    dispatcher_.hedge_stalled(now);
    dispatcher_.sweep_expired(now);
    outbox_.flush();
    publish_state();
    next_liveness_check_ = now + kLivenessCheckInterval;
  }
  return std::min(next_wake, next_liveness_check_);
}

long ReplicaService::arm_wake(Clock::time_point next_wake) {
  const Clock::time_point now = Clock::now();
  if (next_wake <= now) return 0;
  wake_timer_.arm(next_wake);
  if (next_wake == Clock::time_point::max()) return kIdlePollMillis;
  const auto wait = duration_cast<milliseconds>(next_wake - now + microseconds(999)).count();
  return std::clamp<long>(static_cast<long>(wait), 0, kIdlePollMillis);
}

void ReplicaService::run() {
  next_liveness_check_ = Clock::now() + kLivenessCheckInterval;
  // The transport's wait watches one wake descriptor: an epoll of both stands in for it, readable
  // when either is (a producer's wake() or the timer).
  if (wake_timer_.valid() && wait_fd_ < 0) {
    wait_fd_ = epoll_create1(EPOLL_CLOEXEC);
    for (const int fd : {wake_fd_, wake_timer_.fd()}) {
      epoll_event event{};
      event.events = EPOLLIN;
      event.data.fd = fd;
      if (wait_fd_ >= 0 && epoll_ctl(wait_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
        ::close(wait_fd_);
        wait_fd_ = -1;
      }
    }
  }
  const int wait_fd = wait_fd_ >= 0 ? wait_fd_ : wake_fd_;
  Clock::time_point next_wake = Clock::time_point::max();
  while (!stop_.load(std::memory_order_relaxed)) {
    // Announce sleep, then look once more, so a producer either sees us asleep or we see its task.
    sleeping_.store(true, std::memory_order_seq_cst);
    const long timeout = replicas_.idle_replica_has_inbox_work() ? 0 : arm_wake(next_wake);
    if (timeout == 0) sleeping_.store(false, std::memory_order_relaxed);
    const TransportWait woke = transport_->wait(wait_fd, timeout);
    if (woke.failed) break;
    sleeping_.store(false, std::memory_order_relaxed);
    if (woke.woken) {  // wake_fd_, or the timer (which arm_wake() resets: the read then finds nothing)
      uint64_t value;
      [[maybe_unused]] auto drained = ::read(wake_fd_, &value, sizeof(value));
    }
    next_wake = process(woke.closes_waiting);
  }
}

void ReplicaService::attach_to_loop(uv_loop_t* loop) {
  loop_ = loop;
  next_liveness_check_ = Clock::now() + kLivenessCheckInterval;
  // The transport's descriptors are hints: process_on_loop() keeps receiving until it says no more.
  for (const int fd : transport_->loop_descriptors()) {
    auto poll = std::make_unique<uv_poll_t>();
    uv_poll_init(loop, poll.get(), fd);
    poll->data = this;
    uv_poll_start(poll.get(), UV_READABLE, [](uv_poll_t* handle, int, int) {
      auto* self = static_cast<ReplicaService*>(handle->data);
      uv_os_fd_t fired = -1;
      if (uv_fileno(reinterpret_cast<uv_handle_t*>(handle), &fired) == 0) self->transport_->descriptor_fired(fired);
      self->process_on_loop();
    });
    polls_.push_back(std::move(poll));
  }
  // Tasks queued while handling this iteration's requests are dispatched together, after the I/O.
  uv_check_init(loop, &after_io_);
  after_io_.data = this;
  uv_check_start(&after_io_, [](uv_check_t* handle) {
    auto* self = static_cast<ReplicaService*>(handle->data);
    self->transport_->awake();
    if (self->work_pending_ || self->transport_->messages_waiting()) self->process_on_loop();
  });
  // Before the loop blocks, a transport whose peers wake it only while it sleeps says so (and what
  // arrived meanwhile is handled first).
  uv_prepare_init(loop, &before_sleep_);
  before_sleep_.data = this;
  uv_prepare_start(&before_sleep_, [](uv_prepare_t* handle) {
    auto* self = static_cast<ReplicaService*>(handle->data);
    if (!self->transport_->about_to_sleep()) return;
    self->process_on_loop();
    if (self->transport_->messages_waiting()) {  // still more: do not block
      self->transport_->awake();
      uv_timer_start(&self->timer_, [](uv_timer_t* timer) { static_cast<ReplicaService*>(timer->data)->process_on_loop(); },
                     0, 0);
    }
  });
  if (wake_timer_.valid()) {
    uv_poll_init(loop, &wake_timer_poll_, wake_timer_.fd());
    wake_timer_poll_.data = this;
    uv_poll_start(&wake_timer_poll_, UV_READABLE,
                  [](uv_poll_t* handle, int, int) { static_cast<ReplicaService*>(handle->data)->process_on_loop(); });
  }
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  uv_timer_start(&timer_, [](uv_timer_t* handle) { static_cast<ReplicaService*>(handle->data)->process_on_loop(); },
                 kLivenessCheckInterval.count(), 0);
}

void ReplicaService::detach_from_loop() {
  if (loop_ == nullptr) return;
  for (auto& poll : polls_) uv_close(reinterpret_cast<uv_handle_t*>(poll.get()), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&after_io_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&before_sleep_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
  if (wake_timer_.valid()) uv_close(reinterpret_cast<uv_handle_t*>(&wake_timer_poll_), nullptr);
}

void ReplicaService::process_on_loop() {
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&timer_))) return;
  Clock::time_point next_wake;
  int passes = 0;
  do {
    work_pending_ = false;
    next_wake = process(transport_->closes_waiting());
  } while ((transport_->messages_waiting() || work_pending_) && ++passes < 64);
  // wake_timer_ wakes the loop at next_wake (its poll, readable until arm_wake() re-arms it); the
  // millisecond timer is the backstop and the "at once".
  const long wait = arm_wake(next_wake);
  uv_timer_start(&timer_, [](uv_timer_t* handle) { static_cast<ReplicaService*>(handle->data)->process_on_loop(); },
                 static_cast<uint64_t>(wait), 0);
}

void ReplicaService::on_received(const ReplicaAddress& from, const uint8_t* data, std::size_t size,
                                 ConnectionId connection) {
  messages_.decode(from, data, size, connection, *this);
}

void ReplicaService::on_connection_closed(ConnectionId connection) {
  for (const auto& address : replicas_.on_connection(connection)) drop_replica(address, "connection closed");
}

void ReplicaService::on_sender_alive(const ReplicaAddress& from) {
  if (Replica* replica = replicas_.find(from)) replica->last_seen = Clock::now();
}

void ReplicaService::on_register(const ReplicaAddress& from, const RegisterRequest& request,
                                 ConnectionId connection) {
  if (request.model_name.empty() || request.model_version.empty()) {
    log_replica_event("event=replica_rejected reason=missing_model_name_or_version");
    return;
  }
  const std::string name(request.model_name);
  const std::string version(request.model_version);
  const auto type = static_cast<InputType>(request.input_type_code);
  if (request.input_type_code > static_cast<int>(InputType::Strings)) {
    log_replica_event("event=replica_rejected reason=unknown_input_type model=" + name);
    return;
  }
  bool refused = false;
  ModelVersion* model = models_.find_or_create_for_replica(name, version, type, refused);
  if (refused) {
    // Logged at the 1st, 2nd, 4th, 8th... refusal: a flood cannot flood the log either.
    const uint64_t count = ++refused_registrations_;
    if ((count & (count - 1)) == 0) {
      log_replica_event("event=replica_rejected reason=too_many_unconfigured_models model=" + name +
                        " version=" + version + " refused_so_far=" + std::to_string(count));
    }
    return;
  }
  if (model == nullptr) {
    log_replica_event("event=replica_rejected reason=input_type_mismatch model=" + name + " version=" + version +
                      " input_type=" + std::string(input_type_name(type)));
    return;
  }
  // A replica on shared memory that registers again has left its channel, and the batches in it (it
  // detaches before registering; admit() releases the channel anyway): dropped here, its batches go
  // back to the queue. Kept, it held them in flight for good and was never sent another batch.
  if (replicas_.find(from) != nullptr && std::strcmp(transport_->medium(from), "shm") == 0) {
    drop_replica(from, "registered again, leaving its shared-memory channel");
  }
  // Shared memory first, when the replica asks and the transport offers it: registered once attached.
  const ReplicaTransport::Admission admission = transport_->admit(from, request.shared_memory);
  if (!admission.now) {
    pending_registrations_[from] = PendingRegistration{model, request.replica_id};
    const ReplicaMessages::Encoded offer = messages_.encode_shared_memory_offer(admission.socket_path, admission.token);
    transport_->send(from, offer.data, offer.size);
    return;
  }
  register_replica(from, model, request.replica_id, connection);
}

void ReplicaService::on_admitted(const ReplicaAddress& replica, ConnectionId connection, bool attached) {
  auto pending = pending_registrations_.find(replica);
  if (pending == pending_registrations_.end()) return;
  const PendingRegistration registration = pending->second;
  pending_registrations_.erase(pending);
  if (!attached) {
    log_replica_event("event=shm_offer_withdrawn model=" + registration.model->label);
    return;  // the replica registers again by itself, over the network
  }
  register_replica(replica, registration.model, registration.replica_id, connection);
}

void ReplicaService::register_replica(const ReplicaAddress& from, ModelVersion* model, int32_t replica_id,
                                      ConnectionId connection) {
  const std::string& name = model->name;
  const std::string& version = model->version;
  if (Replica* existing = replicas_.find(from)) {
    if (existing->model == model) {  // a repeated registration changes nothing else
      existing->connection = connection;
      existing->transport = transport_->medium(from);
      publish_state();
      return;
    }
    drop_replica(from, "re-registered for another model");
  }
  Replica replica;
  replica.address = from;
  replica.model = model;
  replica.last_seen = Clock::now();
  replica.connection = connection;
  replica.transport = transport_->medium(from);
  replica.replica_id = replica_id;
  if (replica.replica_id < 0) replica.replica_id = replicas_.next_replica_id(*model);
  // A new replica starts from what its peers learned rather than from one.
  AimdOptions aimd;
  aimd.additive_step = options_.aimd_additive_step;
  aimd.backoff_factor = options_.aimd_backoff_factor;
  replica.controller =
      std::make_unique<AimdController>(aimd, model->learned_batch_size.load(), dispatcher_.batch_cap(*model));
  dispatcher_.sync_controller(replica);
  const Replica& added = replicas_.add(std::move(replica));
  log_replica_event("event=replica_connected model=" + name + " version=" + version +
                    " replica=" + std::to_string(added.replica_id) + " transport=" + added.transport);
  publish_state();
}

void ReplicaService::on_heartbeat(const ReplicaAddress& from, std::string_view replica_key) {
  bool registered = false;
  if (Replica* replica = replicas_.find(ReplicaAddress(replica_key))) {
    replica->last_seen = Clock::now();
    registered = true;
  }
  const ReplicaMessages::Encoded ack = messages_.encode_heartbeat_ack(registered);
  transport_->send(from, ack.data, ack.size);
}

void ReplicaService::on_predict_response(const ReplicaAddress& from, const PredictResponse& response) {
  dispatcher_.on_response(from, response);
}

void ReplicaService::drop_replica(const ReplicaAddress& address, const char* reason) {
  if (replicas_.find(address) == nullptr) return;
  const Replica dropped = replicas_.remove(address);
  transport_->release(address);
  dispatcher_.requeue_batches(dropped);
  log_replica_event("event=replica_dropped model=" + dropped.model->name + " version=" + dropped.model->version +
                    " replica=" + std::to_string(dropped.replica_id) + " reason=\"" + reason + "\"");
  publish_state();
}

void ReplicaService::check_liveness(Clock::time_point now) {
  const auto timeout = milliseconds(options_.heartbeat_timeout_millis);
  for (const auto& address : replicas_.silent_since(now - timeout)) {
    drop_replica(address, "no heartbeat within the timeout");
  }
}

}  // namespace clipper
