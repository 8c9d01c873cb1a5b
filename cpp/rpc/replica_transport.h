// How the replica side talks to model replicas, whatever the medium: send one encoded message to a
// replica, receive what replicas sent, learn which connections closed, and wait for any of these.
// ZmqTransport (a ZeroMQ ROUTER over TCP) is today's implementation; another medium (for example a
// shared-memory ring) implements this interface and the dispatcher does not change.
// Thread: every method runs on the replica side's thread (the RPC thread, or the I/O loop hosting it).
#pragma once

#include <absl/functional/function_ref.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace clipper {

using ReplicaAddress = std::string;  // how a transport names one replica (ZeroMQ: its routing id)
using ConnectionId = int;            // the connection a message arrived on; closes are reported by it

// What a transport hands over while receiving.
class TransportReceiver {
 public:
  virtual ~TransportReceiver() = default;
  // One message from `from`; `data` is aligned to std::max_align_t and valid during the call only.
  virtual void on_received(const ReplicaAddress& from, const uint8_t* data, std::size_t size,
                           ConnectionId connection) = 0;
  virtual void on_connection_closed(ConnectionId connection) = 0;
  // A replica that admit() held back now serves over the transport's other medium (`attached`), or
  // could not be moved and will register again by itself (`attached` false).
  virtual void on_admitted(const ReplicaAddress& replica, ConnectionId connection, bool attached) {}
};

struct TransportWait {
  bool woken = false;          // the wake descriptor became readable (the caller drains it)
  bool closes_waiting = false;  // connection closes may be waiting: call receive_closes()
  bool failed = false;          // the wait itself failed (not interrupted): the thread should end
};

// A message with its bulk (a batch's input bytes) left out, so that a transport can have it written
// straight into where the message leaves from (a shared-memory ring) instead of copying it twice:
// `frame` is complete except for `payload_size` bytes at `payload_offset`, which a PayloadWriter
// writes at the address it is given.
struct FramedMessage {
  uint8_t* frame = nullptr;
  std::size_t size = 0;
  std::size_t payload_offset = 0;
  std::size_t payload_size = 0;
};
using PayloadWriter = absl::FunctionRef<void(uint8_t* at)>;

class ReplicaTransport {
 public:
  virtual ~ReplicaTransport() = default;
  // Starts listening; returns the bound port (0 picks a free one). Throws std::runtime_error.
  virtual int bind(const std::string& address, int port) = 0;
  // Sends one message without blocking; false when the replica cannot be reached now.
  virtual bool send(const ReplicaAddress& to, const uint8_t* data, std::size_t size) = 0;
  // Sends a framed message; by default its payload is written into the frame, which is then sent.
  virtual bool send_framed(const ReplicaAddress& to, const FramedMessage& message, PayloadWriter write_payload) {
    write_payload(message.frame + message.payload_offset);
    return send(to, message.frame, message.size);
  }
  // Hands a bounded number of waiting messages to `receiver`.
  virtual void receive(TransportReceiver& receiver) = 0;
  // Hands every waiting connection close to `receiver`.
  virtual void receive_closes(TransportReceiver& receiver) = 0;
  // Whether messages or closes may be waiting right now (cheap).
  virtual bool messages_waiting() const = 0;
  virtual bool closes_waiting() const = 0;
  // Thread mode: blocks up to `timeout_millis` until something arrives or `wake_fd` turns readable.
  virtual TransportWait wait(int wake_fd, long timeout_millis) = 0;
  // Loop mode: descriptors that turn readable when something may be waiting. They are hints: after
  // each wake-up the caller receives until messages_waiting() and closes_waiting() say no.
  virtual std::vector<int> loop_descriptors() const = 0;
  // Loop mode: `fd`, one of loop_descriptors(), turned readable. A transport whose readiness checks
  // cost system calls may skip them, once it saw nothing waiting, until its descriptor fires.
  virtual void descriptor_fired(int fd) {}

  // Media besides the one replicas register over (shared memory for co-located replicas). A plain
  // transport has one medium and admits every replica at once.
  // A replica registers, asking for shared memory or not. `now`: register it now. Otherwise the
  // caller sends it a SharedMemoryOffer with `socket_path` and `token`, and the transport reports
  // through TransportReceiver::on_admitted once the replica attached (or failed to).
  struct Admission {
    bool now = true;
    std::string socket_path;
    std::string token;
  };
  virtual Admission admit(const ReplicaAddress& replica, bool wants_shared_memory) { return {}; }
  // The medium a registered replica is served over ("zmq", "shm"), for the replica listing.
  virtual const char* medium(const ReplicaAddress& replica) const { return "zmq"; }
  // The replica was dropped: free what the transport holds for it.
  virtual void release(const ReplicaAddress& replica) {}
  // Loop mode, before the loop blocks: true when messages arrived meanwhile (receive before sleeping);
  // awake() after it woke. Lets peers skip wake-ups while this side is busy anyway.
  virtual bool about_to_sleep() { return false; }
  virtual void awake() {}
};

}  // namespace clipper
