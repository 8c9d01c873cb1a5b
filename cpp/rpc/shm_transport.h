// The shared-memory transport for replicas on the frontend's host, in front of the network transport
// (ZeroMQ), which stays for everything else: registration, heartbeats, replicas on other hosts, and
// any message too large for a ring at that moment.
//
// A replica that registers asking for shared memory gets an offer (a unix socket path and a one-time
// token, sent by the caller over the network transport). It connects to that socket, which lives in
// a private (0700) directory, sends the token, and receives three descriptors by SCM_RIGHTS: a sealed
// memfd holding the channel (rpc/shm_ring.h) and two eventfd doorbells, one per direction. The
// connection stays open: when the replica dies the kernel closes it and the replica is dropped at
// once, as ZeroMQ's disconnect does for network replicas. A replica that never attaches is forgotten
// after the offer's timeout; a dropped replica's channel is unmapped and closed (the memory is freed
// when the replica lets go too).
//
// Messages a replica writes are checked against the mapping, copied out of it (the replica could
// change them while they are read) and then verified like any other message.
//
// Copies on the way to a replica: a batch arrives framed (send_framed): its small frame (tables,
// offsets) is copied from the encoder into a record reserved in the request ring and its inputs'
// bytes are written once, by the caller's writer, straight from the queries' payloads into that
// record; the replica views them in place. Nothing is copied between a query's payload and the ring
// otherwise. A batch larger than a ring holds goes over the network transport (written into the
// frame, then ZeroMQ's own copies). One that fits but finds no room now (a replica holding pipelined
// or prefetched batches) is copied whole into a buffer of the channel and written into the ring, in
// the order sent, as soon as the replica releases room: over ZeroMQ it could be overtaken (the
// replica serves its ring first) and would cost more copies. copy_counts() keeps count (the engine
// exports it on /metrics).
//
// Spinning for answers (response_spin_micros): each channel counts the messages sent into its
// request ring and read from its response ring and when it last sent; about_to_sleep() polls the
// rings of channels with a batch out that is younger than the window before it announces sleep.
// The counts only steer the spin: a replica answering too much or too little makes it spin less or
// up to the window after each send, never read anything it would not read otherwise. On top of
// each channel's back-off (shm::SpinPolicy), one SpinCostGate (rpc/spin_cost_gate.h) for the loop
// stops the spin while it costs more CPU per answer caught than response_spin_cost_micros.
// Thread: the replica side's thread only.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "rpc/replica_transport.h"
#include "rpc/shm_ring.h"
#include "rpc/spin_cost_gate.h"

namespace clipper {

// What was written into request rings (by one transport, or by every transport given the same counters).
struct ShmCopyCounts {
  uint64_t framed_messages = 0;  // batches whose inputs were written straight into a ring
  uint64_t frame_bytes = 0;      // their frames' bytes (everything but the inputs), copied in
  uint64_t payload_bytes = 0;    // their inputs' bytes, written once by the caller's writer
  uint64_t copied_messages = 0;  // whole messages copied in from a buffer (send())
  uint64_t copied_bytes = 0;
};

// The same counts, kept where another thread reads them (the engine's /metrics). One writer: the
// transport's thread.
struct ShmCopyCounters {
  std::atomic<uint64_t> framed_messages{0};
  std::atomic<uint64_t> frame_bytes{0};
  std::atomic<uint64_t> payload_bytes{0};
  std::atomic<uint64_t> copied_messages{0};
  std::atomic<uint64_t> copied_bytes{0};

  ShmCopyCounts snapshot() const {
    return {framed_messages.load(std::memory_order_relaxed), frame_bytes.load(std::memory_order_relaxed),
            payload_bytes.load(std::memory_order_relaxed), copied_messages.load(std::memory_order_relaxed),
            copied_bytes.load(std::memory_order_relaxed)};
  }
};

// What the I/O loop's spin for answers did (response_spin_micros), kept where another thread reads
// them (the engine's /metrics). One writer: the transport's thread.
struct ShmSpinCounters {
  std::atomic<uint64_t> spins{0};         // spins run
  std::atomic<uint64_t> caught{0};        // of those, spins that found an answer
  std::atomic<uint64_t> spun_nanos{0};    // time spent spinning
  std::atomic<uint64_t> gated{0};         // sleeps the cost gate kept from spinning
};

struct ShmTransportOptions {
  std::size_t request_ring_bytes = 64 << 20;   // frontend -> replica, per replica
  std::size_t response_ring_bytes = 8 << 20;   // replica -> frontend, per replica
  std::chrono::milliseconds offer_timeout{5000};  // an offer not taken up by then is withdrawn
  // Before the loop sleeps with a batch sent less than this long ago and unanswered, poll the
  // response rings until then (0: never). An answer arriving meanwhile costs the replica no doorbell
  // and this thread no wake-up; the loop's other descriptors wait that long. shm::SpinPolicy backs
  // off from replicas whose answers keep missing the window.
  uint32_t response_spin_micros = 0;
  // The most a spin may cost: microseconds spun per answer caught, averaged over recent spins
  // (SpinCostGate); above it the loop sleeps without spinning but for probes (after 16 sleeps, up
  // to 256 while probes cost too much). 0: no bound.
  uint32_t response_spin_cost_micros = 0;
  std::shared_ptr<ShmCopyCounters> copies;        // where to count copies; null: a counter of its own
  std::shared_ptr<ShmSpinCounters> spins;         // where to count spins; null: a counter of its own
};

class ShmTransport final : public ReplicaTransport {
 public:
  ShmTransport(std::unique_ptr<ReplicaTransport> network, ShmTransportOptions options);
  ~ShmTransport() override;
  ShmTransport(const ShmTransport&) = delete;
  ShmTransport& operator=(const ShmTransport&) = delete;

  int bind(const std::string& address, int port) override;
  bool send(const ReplicaAddress& to, const uint8_t* data, std::size_t size) override;
  bool send_framed(const ReplicaAddress& to, const FramedMessage& message, PayloadWriter write_payload) override;
  void receive(TransportReceiver& receiver) override;
  void receive_closes(TransportReceiver& receiver) override;
  bool messages_waiting() const override;
  bool closes_waiting() const override;
  TransportWait wait(int wake_fd, long timeout_millis) override;
  std::vector<int> loop_descriptors() const override;
  Admission admit(const ReplicaAddress& replica, bool wants_shared_memory) override;
  const char* medium(const ReplicaAddress& replica) const override;
  void release(const ReplicaAddress& replica) override;
  void descriptor_fired(int fd) override;
  bool about_to_sleep() override;
  void awake() override;

  const std::string& socket_path() const { return socket_path_; }
  std::size_t channel_count() const { return channels_.size(); }
  ShmCopyCounts copy_counts() const { return copies_->snapshot(); }
  const ShmSpinCounters& spin_counts() const { return *spins_; }

 private:
  struct Channel;
  struct Offer {
    ReplicaAddress replica;
    Clock::time_point expires;
  };
  struct Handshake {
    std::string received;
    Clock::time_point expires;
  };

  void watch(int fd, uint32_t kind, uint32_t events);
  void handle_events(TransportReceiver& receiver);
  void accept_connections();
  void read_handshake(int fd, TransportReceiver& receiver);
  bool attach(int fd, const ReplicaAddress& replica);
  void receive_from(Channel& channel, TransportReceiver& receiver);
  void expire(TransportReceiver& receiver);
  void close_channel(Channel& channel, const char* reason);
  void collect_released();
  Channel* attached(const ReplicaAddress& replica);
  void log_corrupt_requests();
  void sent_into(Channel& channel);
  // Writes one whole message into `channel`'s request ring and counts it as sent when it went in;
  // `wake`: the replica sleeps and must be rung.
  shm::RingStatus write_whole(Channel& channel, const uint8_t* data, std::size_t size, bool& wake);
  // A buffer of `size` bytes queued behind `channel`'s held requests, or null when too much waits.
  std::vector<uint8_t>* hold(Channel& channel, std::size_t size);
  // Writes held requests into the ring while it has room; false when the replica corrupted it.
  bool write_held(Channel& channel);
  void spin_for_responses();

  std::unique_ptr<ReplicaTransport> network_;
  ShmTransportOptions options_;
  std::string directory_;
  std::string socket_path_;
  int listener_ = -1;
  int epoll_ = -1;
  int wake_fd_ = -1;  // thread mode: the caller's wake descriptor, watched through our epoll
  // Loop mode (loop_descriptors() was asked for): the caller reports when our epoll fires, so after a
  // look that drained it (`epoll_drained_`) receive() skips epoll_wait until it fires again, instead
  // of one system call per pass. Thread mode looks on every pass.
  mutable bool loop_mode_ = false;
  bool epoll_drained_ = false;
  std::unordered_map<ReplicaAddress, std::unique_ptr<Channel>> channels_;
  std::unordered_map<int, Channel*> by_socket_;  // attached replicas' connections
  std::unordered_map<std::string, Offer> offers_;  // by token
  std::unordered_map<int, Handshake> handshakes_;  // connections that have not sent a token yet
  std::vector<ConnectionId> pending_closes_;
  SpinCostGate spin_gate_;
  std::vector<Channel*> spinning_;  // spin_for_responses()'s channels, kept to save allocations
  std::vector<std::max_align_t> scratch_;  // aligned private copy of the message being decoded
  bool released_any_ = false;
  std::shared_ptr<ShmCopyCounters> copies_;
  std::shared_ptr<ShmSpinCounters> spins_;
};

}  // namespace clipper
