#include "rpc/zmq_transport.h"

#include <gtest/gtest.h>
#include <zmq.h>

#include "common/clock.h"

#include <chrono>
#include <string>
#include <vector>

namespace clipper {
namespace {

class RecordingReceiver final : public TransportReceiver {
 public:
  void on_received(const ReplicaAddress& from, const uint8_t* data, std::size_t size, ConnectionId) override {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(data) % alignof(std::max_align_t), 0u);
    senders.push_back(from);
    messages.emplace_back(reinterpret_cast<const char*>(data), size);
  }
  void on_connection_closed(ConnectionId connection) override { closed.push_back(connection); }
  std::vector<ReplicaAddress> senders;
  std::vector<std::string> messages;
  std::vector<ConnectionId> closed;
};

// A real replica-side DEALER socket over loopback TCP.
class Dealer {
 public:
  Dealer(int port, const std::string& identity) {
    socket_ = zmq_socket(context_, ZMQ_DEALER);
    const int zero = 0;
    zmq_setsockopt(socket_, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(socket_, ZMQ_ROUTING_ID, identity.data(), identity.size());
    zmq_connect(socket_, ("tcp://127.0.0.1:" + std::to_string(port)).c_str());
  }
  ~Dealer() {
    close();
    zmq_ctx_term(context_);
  }
  void send(const std::string& text) { zmq_send(socket_, text.data(), text.size(), 0); }
  std::string receive(int timeout_millis) {
    zmq_setsockopt(socket_, ZMQ_RCVTIMEO, &timeout_millis, sizeof(timeout_millis));
    char buffer[256];
    const int size = zmq_recv(socket_, buffer, sizeof(buffer), 0);
    return size < 0 ? std::string() : std::string(buffer, static_cast<std::size_t>(size));
  }
  void close() {
    if (socket_ != nullptr) zmq_close(socket_);
    socket_ = nullptr;
  }

 private:
  void* context_ = zmq_ctx_new();
  void* socket_ = nullptr;
};

// Waits (bounded) until the transport has handed something over.
template <typename Done>
bool pump(ZmqTransport& transport, RecordingReceiver& receiver, Done done) {
  const auto give_up = Clock::now() + std::chrono::seconds(5);
  while (!done() && Clock::now() < give_up) {
    const TransportWait woke = transport.wait(-1, 50);
    if (woke.failed) return false;
    transport.receive(receiver);
    if (woke.closes_waiting || transport.closes_waiting()) transport.receive_closes(receiver);
  }
  return done();
}

TEST(ZmqTransport, ReceivesFromAReplicaAndAnswersIt) {
  ZmqTransport transport;
  const int port = transport.bind("127.0.0.1", 0);
  ASSERT_GT(port, 0);
  EXPECT_EQ(transport.loop_descriptors().size(), 2u);
  Dealer replica(port, "replica-1");
  replica.send("hello");
  RecordingReceiver receiver;
  ASSERT_TRUE(pump(transport, receiver, [&] { return !receiver.messages.empty(); }));
  EXPECT_EQ(receiver.senders[0], "replica-1");
  EXPECT_EQ(receiver.messages[0], "hello");
  const std::string answer = "batch";
  ASSERT_TRUE(transport.send("replica-1", reinterpret_cast<const uint8_t*>(answer.data()), answer.size()));
  EXPECT_EQ(replica.receive(5000), "batch");
  EXPECT_FALSE(transport.send("nobody", reinterpret_cast<const uint8_t*>(answer.data()), answer.size()));
}

TEST(ZmqTransport, ReportsAClosedConnection) {
  ZmqTransport transport;
  const int port = transport.bind("127.0.0.1", 0);
  Dealer replica(port, "replica-2");
  replica.send("register");
  RecordingReceiver receiver;
  ASSERT_TRUE(pump(transport, receiver, [&] { return !receiver.messages.empty(); }));
  replica.close();
  ASSERT_TRUE(pump(transport, receiver, [&] { return !receiver.closed.empty(); }));
  EXPECT_GE(receiver.closed[0], 0);
}

TEST(ZmqTransport, ABusyPortIsAClearError) {
  ZmqTransport first;
  const int port = first.bind("127.0.0.1", 0);
  ZmqTransport second;
  EXPECT_THROW(second.bind("127.0.0.1", port), std::runtime_error);
}

}  // namespace
}  // namespace clipper
