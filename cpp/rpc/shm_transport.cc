#include "rpc/shm_transport.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <stdexcept>

#include "rpc/replica_messages.h"

namespace clipper {
namespace {

// What an epoll event is about: the kind in the high half of its data, the descriptor in the low.
enum : uint32_t { kListener = 1, kHandshake = 2, kDoorbell = 3, kConnection = 4, kWake = 5 };
constexpr std::size_t kTokenBytes = 32;       // hex characters
constexpr int kMessagesPerPass = 256;         // per channel per receive(), like ZeroMQ's bound

// The handshake's answer, sent with the three descriptors (memfd, request doorbell, response doorbell).
struct AttachReply {
  uint64_t magic;
  uint32_t layout_version;
  uint32_t reserved;
  uint64_t request_capacity;
  uint64_t response_capacity;
};

std::string random_token() {
  unsigned char bytes[kTokenBytes / 2];
  std::size_t filled = 0;
  while (filled < sizeof(bytes)) {
    const ssize_t got = getrandom(bytes + filled, sizeof(bytes) - filled, 0);
    if (got < 0 && errno != EINTR) throw std::runtime_error("getrandom failed");
    if (got > 0) filled += static_cast<std::size_t>(got);
  }
  static const char digits[] = "0123456789abcdef";
  std::string token;
  for (unsigned char byte : bytes) {
    token.push_back(digits[byte >> 4]);
    token.push_back(digits[byte & 15]);
  }
  return token;
}

void ring(int doorbell) {
  const uint64_t one = 1;
  [[maybe_unused]] auto written = ::write(doorbell, &one, sizeof(one));
}

}  // namespace

struct ShmTransport::Channel {
  ReplicaAddress replica;
  int memfd = -1;
  int request_doorbell = -1;   // we ring it: the replica sleeps on it
  int response_doorbell = -1;  // the replica rings it: in our epoll
  int connection = -1;         // the handshake's socket, kept to learn when the replica dies
  void* base = nullptr;
  std::size_t bytes = 0;
  shm::RingWriter requests;
  shm::RingReader responses;
  bool released = false;
  // What steers the spin for answers (response_spin_micros).
  uint64_t sent = 0;      // messages written into the request ring
  uint64_t answered = 0;  // messages read from the response ring, at most `sent`
  Clock::time_point last_sent;
  shm::SpinPolicy spin;
  // Requests that fit the ring but found no room in it, in the order sent: written into it, ahead of
  // anything sent later, once the replica has released room (the replica serves its ring before its
  // socket, so a batch sent over ZeroMQ meanwhile could be overtaken by one sent after it).
  std::deque<std::vector<uint8_t>> held;
  std::size_t held_bytes = 0;

  ~Channel() {
    if (base != nullptr) ::munmap(base, bytes);
    for (int fd : {memfd, request_doorbell, response_doorbell, connection}) {
      if (fd >= 0) ::close(fd);
    }
  }
};

ShmTransport::ShmTransport(std::unique_ptr<ReplicaTransport> network, ShmTransportOptions options)
    : network_(std::move(network)), options_(options),
      spin_gate_(options.response_spin_cost_micros),
      copies_(options.copies ? options.copies : std::make_shared<ShmCopyCounters>()),
      spins_(options.spins ? options.spins : std::make_shared<ShmSpinCounters>()) {
  options_.request_ring_bytes = shm::round_up(std::max(options_.request_ring_bytes, shm::kMinCapacity), 4096);
  options_.response_ring_bytes = shm::round_up(std::max(options_.response_ring_bytes, shm::kMinCapacity), 4096);
  epoll_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_ < 0) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
}

ShmTransport::~ShmTransport() {
  channels_.clear();
  for (auto& [fd, handshake] : handshakes_) ::close(fd);
  if (listener_ >= 0) ::close(listener_);
  if (!socket_path_.empty()) ::unlink(socket_path_.c_str());
  if (!directory_.empty()) ::rmdir(directory_.c_str());
  if (epoll_ >= 0) ::close(epoll_);
}

int ShmTransport::bind(const std::string& address, int port) {
  const int bound = network_->bind(address, port);
  // A private directory: only this user can reach the socket (and so ask for a channel).
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  std::string base = (runtime != nullptr && *runtime != '\0') ? runtime : "/tmp";
  std::string pattern = base + "/clipper-rpc-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    pattern = "/tmp/clipper-rpc-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error(std::string("cannot create the shared-memory socket directory: ") +
                               std::strerror(errno));
    }
  }
  directory_ = pattern;
  socket_path_ = directory_ + "/rpc.sock";
  listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_un where{};
  where.sun_family = AF_UNIX;
  if (listener_ < 0 || socket_path_.size() >= sizeof(where.sun_path)) {
    throw std::runtime_error("cannot create the shared-memory socket " + socket_path_);
  }
  std::memcpy(where.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
  if (::bind(listener_, reinterpret_cast<sockaddr*>(&where), sizeof(where)) != 0 || ::listen(listener_, 64) != 0) {
    throw std::runtime_error("cannot listen on " + socket_path_ + ": " + std::strerror(errno));
  }
  ::chmod(socket_path_.c_str(), 0600);
  watch(listener_, kListener, EPOLLIN);
  return bound;
}

void ShmTransport::watch(int fd, uint32_t kind, uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.u64 = (static_cast<uint64_t>(kind) << 32) | static_cast<uint32_t>(fd);
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &event);
}

ReplicaTransport::Admission ShmTransport::admit(const ReplicaAddress& replica, bool wants_shared_memory) {
  // Whatever the replica held before is gone: it detaches from its old channel before registering.
  release(replica);
  for (auto offer = offers_.begin(); offer != offers_.end();) {
    offer = offer->second.replica == replica ? offers_.erase(offer) : std::next(offer);
  }
  if (!wants_shared_memory || listener_ < 0) return {};
  Admission admission;
  admission.now = false;
  admission.socket_path = socket_path_;
  admission.token = random_token();
  offers_[admission.token] = Offer{replica, Clock::now() + options_.offer_timeout};
  return admission;
}

const char* ShmTransport::medium(const ReplicaAddress& replica) const {
  auto found = channels_.find(replica);
  return found != channels_.end() && !found->second->released ? "shm" : "zmq";
}

void ShmTransport::release(const ReplicaAddress& replica) {
  auto found = channels_.find(replica);
  if (found == channels_.end() || found->second->released) return;
  found->second->released = true;  // freed in collect_released(), outside any loop over channels_
  by_socket_.erase(found->second->connection);
  released_any_ = true;
}

void ShmTransport::collect_released() {
  if (!released_any_) return;
  released_any_ = false;
  for (auto channel = channels_.begin(); channel != channels_.end();) {
    channel = channel->second->released ? channels_.erase(channel) : std::next(channel);
  }
}

ShmTransport::Channel* ShmTransport::attached(const ReplicaAddress& replica) {
  auto found = channels_.find(replica);
  return found == channels_.end() || found->second->released ? nullptr : found->second.get();
}

void ShmTransport::sent_into(Channel& channel) {
  if (options_.response_spin_micros == 0) return;
  ++channel.sent;
  channel.last_sent = Clock::now();
}

shm::RingStatus ShmTransport::write_whole(Channel& channel, const uint8_t* data, std::size_t size, bool& wake) {
  const shm::RingStatus status = channel.requests.write(data, size, wake);
  if (status == shm::RingStatus::Ready) {
    copies_->copied_messages.fetch_add(1, std::memory_order_relaxed);
    copies_->copied_bytes.fetch_add(size, std::memory_order_relaxed);
    sent_into(channel);
  }
  return status;
}

void ShmTransport::spin_for_responses() {
  const Clock::time_point start = Clock::now();
  const auto window = std::chrono::microseconds(options_.response_spin_micros);
  Clock::time_point deadline = start;
  spinning_.clear();
  for (auto& [replica, channel] : channels_) {
    if (channel->released || channel->answered >= channel->sent) continue;
    const Clock::time_point until = channel->last_sent + window;
    if (until <= start || !channel->spin.should_spin()) continue;
    spinning_.push_back(channel.get());
    deadline = std::max(deadline, until);
  }
  if (spinning_.empty()) return;
  if (!spin_gate_.allow()) {
    spins_->gated.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const auto spun = [this, start](Clock::time_point end, bool caught) {
    const auto nanos =
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count());
    spin_gate_.spun(nanos, caught);
    spins_->spins.fetch_add(1, std::memory_order_relaxed);
    if (caught) spins_->caught.fetch_add(1, std::memory_order_relaxed);
    spins_->spun_nanos.fetch_add(nanos, std::memory_order_relaxed);
  };
  for (unsigned polls = 0;; ++polls) {
    for (Channel* channel : spinning_) {
      if (channel->responses.has_message()) {
        channel->spin.spun(true);
        spun(Clock::now(), true);
        return;
      }
    }
    shm::cpu_relax();
    // The clock every few polls: a look at the rings costs less than reading it.
    if (polls % 8 == 7) {
      const Clock::time_point now = Clock::now();
      if (now >= deadline) {
        spun(now, false);
        break;
      }
    }
  }
  for (Channel* channel : spinning_) channel->spin.spun(false);
}

void ShmTransport::log_corrupt_requests() {
  log_replica_event("event=shm_ring_corrupt direction=requests reason=\"the replica published an invalid index\"");
}

bool ShmTransport::send(const ReplicaAddress& to, const uint8_t* data, std::size_t size) {
  Channel* channel = attached(to);
  if (channel == nullptr || !channel->requests.fits(size)) {
    return network_->send(to, data, size);  // larger than a ring holds: the replica reads its socket too
  }
  if (!write_held(*channel)) return false;
  if (channel->held.empty()) {
    bool wake = false;
    switch (write_whole(*channel, data, size, wake)) {
      case shm::RingStatus::Ready:
        if (wake) ring(channel->request_doorbell);
        return true;
      case shm::RingStatus::Corrupt:
        log_corrupt_requests();
        return false;  // the caller drops the replica
      case shm::RingStatus::Empty:
        break;  // no room now
    }
  }
  std::vector<uint8_t>* held = hold(*channel, size);
  if (held == nullptr) return network_->send(to, data, size);
  if (size != 0) std::memcpy(held->data(), data, size);
  return true;
}

std::vector<uint8_t>* ShmTransport::hold(Channel& channel, std::size_t size) {
  // At most a ring's worth waits: past that (a replica that stopped reading), the network.
  if (channel.held_bytes + size > channel.requests.capacity()) return nullptr;
  channel.held.emplace_back(size);
  channel.held_bytes += size;
  return &channel.held.back();
}

bool ShmTransport::write_held(Channel& channel) {
  bool wake_replica = false;
  while (!channel.held.empty()) {
    const std::vector<uint8_t>& message = channel.held.front();
    bool wake = false;
    const shm::RingStatus status = write_whole(channel, message.data(), message.size(), wake);
    if (status == shm::RingStatus::Empty) break;  // still no room
    if (status == shm::RingStatus::Corrupt) {
      log_corrupt_requests();
      return false;
    }
    wake_replica = wake_replica || wake;
    channel.held_bytes -= message.size();
    channel.held.pop_front();
  }
  if (wake_replica) ring(channel.request_doorbell);
  return true;
}

bool ShmTransport::send_framed(const ReplicaAddress& to, const FramedMessage& message, PayloadWriter write_payload) {
  // Over the network: the inputs go into the frame, which ZeroMQ copies.
  const auto over_network = [&] {
    write_payload(message.frame + message.payload_offset);
    return network_->send(to, message.frame, message.size);
  };
  Channel* channel = attached(to);
  if (channel == nullptr || !channel->requests.fits(message.size)) return over_network();
  if (!write_held(*channel)) return false;
  shm::RingStatus status = shm::RingStatus::Empty;
  // Behind requests still held, if any: the replica takes them in the order they were sent.
  uint8_t* record = channel->held.empty() ? channel->requests.reserve(message.size, status) : nullptr;
  if (record == nullptr) {
    if (status == shm::RingStatus::Corrupt) {
      log_corrupt_requests();
      return false;
    }
    // No room now: the whole message waits here (one copy more than the ring, fewer than ZeroMQ).
    std::vector<uint8_t>* held = hold(*channel, message.size);
    if (held == nullptr) return over_network();
    const std::size_t payload_end = message.payload_offset + message.payload_size;
    std::memcpy(held->data(), message.frame, message.payload_offset);
    std::memcpy(held->data() + payload_end, message.frame + payload_end, message.size - payload_end);
    write_payload(held->data() + message.payload_offset);
    return true;
  }
  // The frame around the inputs, then the inputs themselves straight from where they are kept. The
  // replica sees none of it before commit() publishes the record.
  const std::size_t payload_end = message.payload_offset + message.payload_size;
  std::memcpy(record, message.frame, message.payload_offset);
  std::memcpy(record + payload_end, message.frame + payload_end, message.size - payload_end);
  write_payload(record + message.payload_offset);
  copies_->framed_messages.fetch_add(1, std::memory_order_relaxed);
  copies_->frame_bytes.fetch_add(message.size - message.payload_size, std::memory_order_relaxed);
  copies_->payload_bytes.fetch_add(message.payload_size, std::memory_order_relaxed);
  sent_into(*channel);
  if (channel->requests.commit()) ring(channel->request_doorbell);
  return true;
}

void ShmTransport::receive(TransportReceiver& receiver) {
  network_->receive(receiver);
  handle_events(receiver);
  for (auto& [replica, channel] : channels_) {
    if (!channel->released) receive_from(*channel, receiver);
  }
  expire(receiver);
  // A closed channel's connection number must stay taken until its close has been reported.
  if (pending_closes_.empty()) collect_released();
}

void ShmTransport::receive_from(Channel& channel, TransportReceiver& receiver) {
  // The replica released room before it answered: what waits goes in first.
  if (!channel.held.empty() && !write_held(channel)) {
    close_channel(channel, "the replica published an invalid request index");
    return;
  }
  for (int received = 0; received < kMessagesPerPass && !channel.released; ++received) {
    const uint8_t* payload = nullptr;
    std::size_t size = 0;
    const shm::RingStatus status = channel.responses.peek(payload, size);
    if (status == shm::RingStatus::Empty) return;
    if (status == shm::RingStatus::Corrupt) {
      close_channel(channel, "the replica wrote an invalid record");
      return;
    }
    // Private, aligned copy: the replica could rewrite the message while it is verified and read.
    scratch_.resize(size / sizeof(std::max_align_t) + 1);
    std::memcpy(scratch_.data(), payload, size);
    channel.responses.release();
    if (channel.answered < channel.sent) ++channel.answered;
    receiver.on_received(channel.replica, reinterpret_cast<const uint8_t*>(scratch_.data()), size,
                         channel.connection);
  }
}

void ShmTransport::close_channel(Channel& channel, const char* reason) {
  log_replica_event(std::string("event=shm_channel_closed reason=\"") + reason + "\"");
  // Reported as a closed connection: the replica is dropped and its batches re-queued.
  pending_closes_.push_back(channel.connection);
  release(channel.replica);
}

void ShmTransport::descriptor_fired(int fd) {
  if (fd == epoll_) {
    epoll_drained_ = false;
    return;
  }
  network_->descriptor_fired(fd);
}

void ShmTransport::handle_events(TransportReceiver& receiver) {
  if (loop_mode_ && epoll_drained_) return;  // nothing new until our descriptor fires
  epoll_event events[64];
  const int count = ::epoll_wait(epoll_, events, 64, 0);
  // Fewer than asked for: every ready descriptor was handed over (and doorbells drained below).
  epoll_drained_ = count >= 0 && count < 64;
  for (int i = 0; i < count; ++i) {
    const auto kind = static_cast<uint32_t>(events[i].data.u64 >> 32);
    const auto fd = static_cast<int>(static_cast<uint32_t>(events[i].data.u64));
    switch (kind) {
      case kListener:
        accept_connections();
        break;
      case kHandshake:
        read_handshake(fd, receiver);
        break;
      case kDoorbell:
        // Edge-triggered: this event was the ring; its counter is never read (no system call). The
        // messages themselves are read from the rings below.
        break;
      case kConnection: {
        // The replica never writes here after the handshake: readable means closed (or misbehaving).
        auto found = by_socket_.find(fd);
        if (found != by_socket_.end()) close_channel(*found->second, "the replica's connection closed");
        break;
      }
      default:  // kWake: the caller drains its own descriptor
        break;
    }
  }
}

void ShmTransport::accept_connections() {
  while (true) {
    const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    if (handshakes_.size() >= 256) {  // bounded: nobody legitimate holds that many open
      ::close(fd);
      continue;
    }
    handshakes_[fd] = Handshake{std::string(), Clock::now() + options_.offer_timeout};
    watch(fd, kHandshake, EPOLLIN);
  }
}

void ShmTransport::read_handshake(int fd, TransportReceiver& receiver) {
  auto found = handshakes_.find(fd);
  if (found == handshakes_.end()) return;
  Handshake& handshake = found->second;
  char buffer[kTokenBytes];
  const ssize_t got = ::recv(fd, buffer, kTokenBytes - handshake.received.size(), 0);
  if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (got <= 0) {
    handshakes_.erase(found);
    ::close(fd);
    return;
  }
  handshake.received.append(buffer, static_cast<std::size_t>(got));
  if (handshake.received.size() < kTokenBytes) return;
  const std::string token = std::move(handshake.received);
  handshakes_.erase(found);
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
  auto offer = offers_.find(token);
  if (offer == offers_.end()) {
    log_replica_event("event=shm_attach_refused reason=unknown_token");
    ::close(fd);
    return;
  }
  const ReplicaAddress replica = offer->second.replica;
  offers_.erase(offer);
  if (!attach(fd, replica)) {
    ::close(fd);
    receiver.on_admitted(replica, -1, false);
    return;
  }
  receiver.on_admitted(replica, fd, true);
}

bool ShmTransport::attach(int fd, const ReplicaAddress& replica) {
  auto channel = std::make_unique<Channel>();
  channel->replica = replica;
  channel->spin = shm::SpinPolicy(options_.response_spin_micros);
  channel->bytes = shm::mapping_bytes(options_.request_ring_bytes, options_.response_ring_bytes);
  channel->memfd = ::memfd_create("clipper-replica-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  channel->request_doorbell = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  channel->response_doorbell = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (channel->memfd < 0 || channel->request_doorbell < 0 || channel->response_doorbell < 0 ||
      ::ftruncate(channel->memfd, static_cast<off_t>(channel->bytes)) != 0 ||
      // The size is fixed for good: a replica cannot shrink the file under our mapping (SIGBUS).
      ::fcntl(channel->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    log_replica_event(std::string("event=shm_attach_failed reason=\"") + std::strerror(errno) + "\"");
    return false;
  }
  channel->base = ::mmap(nullptr, channel->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, channel->memfd, 0);
  if (channel->base == MAP_FAILED) {
    channel->base = nullptr;
    log_replica_event(std::string("event=shm_attach_failed reason=\"mmap: ") + std::strerror(errno) + "\"");
    return false;
  }
  auto* header = shm::initialise(channel->base, options_.request_ring_bytes, options_.response_ring_bytes);
  auto* rings = static_cast<uint8_t*>(channel->base) + shm::kHeaderBytes;
  channel->requests = shm::RingWriter(&header->request, rings, options_.request_ring_bytes);
  channel->responses =
      shm::RingReader(&header->response, rings + options_.request_ring_bytes, options_.response_ring_bytes);

  AttachReply reply{shm::kMagic, shm::kLayoutVersion, 0, options_.request_ring_bytes, options_.response_ring_bytes};
  iovec body{&reply, sizeof(reply)};
  alignas(cmsghdr) char control[CMSG_SPACE(3 * sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &body;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof(control);
  cmsghdr* rights = CMSG_FIRSTHDR(&message);
  rights->cmsg_level = SOL_SOCKET;
  rights->cmsg_type = SCM_RIGHTS;
  rights->cmsg_len = CMSG_LEN(3 * sizeof(int));
  const int descriptors[3] = {channel->memfd, channel->request_doorbell, channel->response_doorbell};
  std::memcpy(CMSG_DATA(rights), descriptors, sizeof(descriptors));
  if (::sendmsg(fd, &message, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(reply))) {
    log_replica_event(std::string("event=shm_attach_failed reason=\"sendmsg: ") + std::strerror(errno) + "\"");
    return false;
  }
  // The replica keeps its copies; ours of the memfd can go (the mapping holds the memory).
  ::close(channel->memfd);
  channel->memfd = -1;
  channel->connection = fd;
  // Edge-triggered: every doorbell write is one event (eventfd wakes its waiters on each write), so
  // the counter need not be read back to zero, which saves a read() per doorbell. A 64-bit counter
  // of single rings never fills.
  watch(channel->response_doorbell, kDoorbell, EPOLLIN | EPOLLET);
  watch(fd, kConnection, EPOLLIN | EPOLLRDHUP);
  by_socket_[fd] = channel.get();
  channels_[replica] = std::move(channel);
  return true;
}

void ShmTransport::expire(TransportReceiver& receiver) {
  if (offers_.empty() && handshakes_.empty()) return;
  const Clock::time_point now = Clock::now();
  for (auto handshake = handshakes_.begin(); handshake != handshakes_.end();) {
    if (handshake->second.expires > now) {
      ++handshake;
      continue;
    }
    ::close(handshake->first);
    handshake = handshakes_.erase(handshake);
  }
  std::vector<ReplicaAddress> withdrawn;
  for (auto offer = offers_.begin(); offer != offers_.end();) {
    if (offer->second.expires > now) {
      ++offer;
      continue;
    }
    withdrawn.push_back(offer->second.replica);
    offer = offers_.erase(offer);
  }
  for (const auto& replica : withdrawn) receiver.on_admitted(replica, -1, false);
}

void ShmTransport::receive_closes(TransportReceiver& receiver) {
  network_->receive_closes(receiver);
  std::vector<ConnectionId> closes;
  closes.swap(pending_closes_);
  for (ConnectionId connection : closes) receiver.on_connection_closed(connection);
  collect_released();
}

bool ShmTransport::messages_waiting() const {
  if (network_->messages_waiting()) return true;
  for (const auto& [replica, channel] : channels_) {
    if (!channel->released && channel->responses.has_message()) return true;
  }
  return false;
}

bool ShmTransport::closes_waiting() const { return network_->closes_waiting() || !pending_closes_.empty(); }

bool ShmTransport::about_to_sleep() {
  // Before announcing sleep: while we spin, the replicas see no sleeper and ring no doorbell.
  if (options_.response_spin_micros != 0) spin_for_responses();
  bool waiting = false;
  for (auto& [replica, channel] : channels_) {
    if (channel->released) continue;
    // Room released since the last pass goes to what waits, before the replica could sleep on an
    // empty ring.
    if (!channel->held.empty() && !write_held(*channel)) {
      close_channel(*channel, "the replica published an invalid request index");
      waiting = true;  // no sleep: the close is reported first
      continue;
    }
    if (channel->responses.prepare_to_sleep()) waiting = true;
  }
  return waiting;
}

void ShmTransport::awake() {
  for (auto& [replica, channel] : channels_) channel->responses.awake();
}

TransportWait ShmTransport::wait(int wake_fd, long timeout_millis) {
  if (wake_fd != wake_fd_) {
    if (wake_fd_ >= 0) ::epoll_ctl(epoll_, EPOLL_CTL_DEL, wake_fd_, nullptr);
    wake_fd_ = wake_fd;
    watch(wake_fd, kWake, EPOLLIN);
  }
  TransportWait result;
  if (!pending_closes_.empty()) {
    result.closes_waiting = true;
    return result;
  }
  if (about_to_sleep()) {  // a replica answered meanwhile (or its channel closed): no sleep
    awake();
    result.closes_waiting = !pending_closes_.empty();
    return result;
  }
  // Our epoll (doorbells, handshakes, the caller's wake descriptor) stands in for the wake descriptor.
  result = network_->wait(epoll_, timeout_millis);
  awake();
  result.closes_waiting = result.closes_waiting || !pending_closes_.empty();
  return result;
}

std::vector<int> ShmTransport::loop_descriptors() const {
  std::vector<int> descriptors = network_->loop_descriptors();
  descriptors.push_back(epoll_);
  loop_mode_ = true;  // the caller reports our descriptor firing (descriptor_fired)
  return descriptors;
}

}  // namespace clipper
