#include "rpc/zmq_transport.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <zmq.h>

#include "common/clock.h"

#include <chrono>
#include <cstring>
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
// With `curve`, it authenticates with the client keypair given, against `server_public_key`.
struct CurveClient {
  std::string server_public_key;
  std::string public_key;
  std::string secret_key;
};

// How this side saw its handshakes with the server (its socket monitor's events).
enum class Handshake { None, Succeeded, Failed };

class Dealer {
 public:
  Dealer(int port, const std::string& identity, const CurveClient* curve = nullptr) {
    socket_ = zmq_socket(context_, ZMQ_DEALER);
    const int zero = 0;
    zmq_setsockopt(socket_, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(socket_, ZMQ_ROUTING_ID, identity.data(), identity.size());
    if (curve != nullptr) {
      zmq_setsockopt(socket_, ZMQ_CURVE_SERVERKEY, curve->server_public_key.c_str(), 40);
      zmq_setsockopt(socket_, ZMQ_CURVE_PUBLICKEY, curve->public_key.c_str(), 40);
      zmq_setsockopt(socket_, ZMQ_CURVE_SECRETKEY, curve->secret_key.c_str(), 40);
    }
    // Watched from before the first connection, so no handshake's outcome is missed.
    const std::string monitor_endpoint = "inproc://dealer-monitor";
    zmq_socket_monitor(socket_, monitor_endpoint.c_str(),
                       ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                           ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
    monitor_ = zmq_socket(context_, ZMQ_PAIR);
    zmq_setsockopt(monitor_, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_connect(monitor_, monitor_endpoint.c_str());
    zmq_connect(socket_, ("tcp://127.0.0.1:" + std::to_string(port)).c_str());
  }
  ~Dealer() {
    close();
    zmq_ctx_term(context_);
  }
  // The outcome of this side's next handshake (each reconnection is another), waiting up to
  // `timeout_millis`; None when none ended by then.
  Handshake next_handshake(int timeout_millis) {
    zmq_setsockopt(monitor_, ZMQ_RCVTIMEO, &timeout_millis, sizeof(timeout_millis));
    uint8_t event[6];  // frame 1: event (16 bits) and value (32 bits); frame 2: the endpoint
    char endpoint[256];
    if (zmq_recv(monitor_, event, sizeof(event), 0) < 0) return Handshake::None;
    zmq_recv(monitor_, endpoint, sizeof(endpoint), 0);
    uint16_t kind;
    std::memcpy(&kind, event, sizeof(kind));
    return kind == ZMQ_EVENT_HANDSHAKE_SUCCEEDED ? Handshake::Succeeded : Handshake::Failed;
  }
  void send(const std::string& text) { zmq_send(socket_, text.data(), text.size(), 0); }
  std::string receive(int timeout_millis) {
    zmq_setsockopt(socket_, ZMQ_RCVTIMEO, &timeout_millis, sizeof(timeout_millis));
    char buffer[256];
    const int size = zmq_recv(socket_, buffer, sizeof(buffer), 0);
    return size < 0 ? std::string() : std::string(buffer, static_cast<std::size_t>(size));
  }
  void close() {
    if (socket_ != nullptr) {
      zmq_socket_monitor(socket_, nullptr, 0);
      zmq_close(socket_);
    }
    if (monitor_ != nullptr) zmq_close(monitor_);
    socket_ = monitor_ = nullptr;
  }

 private:
  void* context_ = zmq_ctx_new();
  void* socket_ = nullptr;
  void* monitor_ = nullptr;
};

// Waits (bounded) until the transport has handed something over.
template <typename Done>
bool pump(ZmqTransport& transport, RecordingReceiver& receiver, Done done,
          std::chrono::seconds bound = std::chrono::seconds(5)) {
  const auto give_up = Clock::now() + bound;
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

// Loop mode: the transport's descriptors polled as the I/O loop does, each that fires reported.
template <typename Done>
bool pump_loop(ZmqTransport& transport, RecordingReceiver& receiver, Done done) {
  const std::vector<int> descriptors = transport.loop_descriptors();
  const auto give_up = Clock::now() + std::chrono::seconds(5);
  while (!done() && Clock::now() < give_up) {
    std::vector<pollfd> items;
    for (const int fd : descriptors) items.push_back(pollfd{fd, POLLIN, 0});
    if (::poll(items.data(), items.size(), 50) < 0) return false;
    for (const pollfd& item : items) {
      if ((item.revents & POLLIN) != 0) transport.descriptor_fired(item.fd);
    }
    do {
      transport.receive(receiver);
      if (transport.closes_waiting()) transport.receive_closes(receiver);
    } while (transport.messages_waiting());
  }
  return done();
}

TEST(ZmqTransport, LooksAgainWhenItsDescriptorFiresAfterFindingNothing) {
  // Once nothing is waiting the transport stops asking ZeroMQ (each ZMQ_EVENTS costs system calls)
  // until the socket's descriptor fires or it sends: later messages and closes still arrive.
  ZmqTransport transport;
  const int port = transport.bind("127.0.0.1", 0);
  Dealer replica(port, "replica-3");
  replica.send("one");
  RecordingReceiver receiver;
  ASSERT_TRUE(pump_loop(transport, receiver, [&] { return receiver.messages.size() == 1; }));
  EXPECT_FALSE(transport.messages_waiting());
  EXPECT_FALSE(transport.closes_waiting());
  replica.send("two");
  ASSERT_TRUE(pump_loop(transport, receiver, [&] { return receiver.messages.size() == 2; }));
  EXPECT_EQ(receiver.messages[1], "two");
  // A send may make an answer readable without a new edge on the descriptor.
  const std::string batch = "batch";
  ASSERT_TRUE(transport.send("replica-3", reinterpret_cast<const uint8_t*>(batch.data()), batch.size()));
  ASSERT_EQ(replica.receive(5000), "batch");
  replica.send("three");
  ASSERT_TRUE(pump_loop(transport, receiver, [&] { return receiver.messages.size() == 3; }));
  replica.close();
  ASSERT_TRUE(pump_loop(transport, receiver, [&] { return !receiver.closed.empty(); }));
}

TEST(ZmqTransport, ABusyPortIsAClearError) {
  ZmqTransport first;
  const int port = first.bind("127.0.0.1", 0);
  ZmqTransport second;
  EXPECT_THROW(second.bind("127.0.0.1", port), std::runtime_error);
}

struct Keypair {
  std::string public_key;
  std::string secret_key;
};

Keypair new_keypair() {
  char public_key[41];
  char secret_key[41];
  EXPECT_EQ(zmq_curve_keypair(public_key, secret_key), 0);
  return {public_key, secret_key};
}

// The CURVE tests: a transport admitting one client key, and replicas with and without it.
class CurveTransport : public ::testing::Test {
 protected:
  Keypair server_ = new_keypair();
  Keypair admitted_ = new_keypair();
  ZmqTransport transport_{ZmqCurveKeys{server_.secret_key, {admitted_.public_key}}};
  int port_ = transport_.bind("127.0.0.1", 0);
  RecordingReceiver receiver_;
};

TEST_F(CurveTransport, AnAdmittedKeyRegistersAndIsAnswered) {
  const CurveClient client{server_.public_key, admitted_.public_key, admitted_.secret_key};
  Dealer replica(port_, "replica-ok", &client);
  replica.send("register");
  ASSERT_TRUE(pump(transport_, receiver_, [&] { return !receiver_.messages.empty(); }));
  EXPECT_EQ(receiver_.senders[0], "replica-ok");
  const std::string answer = "batch";
  ASSERT_TRUE(transport_.send("replica-ok", reinterpret_cast<const uint8_t*>(answer.data()), answer.size()));
  EXPECT_EQ(replica.receive(5000), "batch");
}

TEST_F(CurveTransport, NoKeyOrAnUnknownKeyNeverDeliversAMessage) {
  // No step waits a fixed time for the server: each waits for what it needs to see (a handshake's
  // outcome, a message), bounded only by kPatience, which a pass never reaches, so a loaded machine
  // (ctest -j2 beside a build) slows the test down instead of failing it.
  constexpr int kPatienceMillis = 30'000;
  const Keypair rogue = new_keypair();
  const CurveClient wrong_client{server_.public_key, rogue.public_key, rogue.secret_key};
  // Knows the admitted public key but not its secret: the handshake cannot complete.
  const CurveClient stolen_public{server_.public_key, admitted_.public_key, rogue.secret_key};
  Dealer plain(port_, "rogue-plain");
  Dealer wrong(port_, "rogue-wrong", &wrong_client);
  Dealer impostor(port_, "rogue-impostor", &stolen_public);
  for (int i = 0; i < 20; ++i) {
    plain.send("register");
    wrong.send("register");
    impostor.send("register");
  }
  // Each rogue's handshake fails: the server has refused every rogue before the admitted replica
  // connects. One that succeeded would deliver the rogue's queued messages; one still running when the
  // admitted replica's message arrives might deliver after the count below (a loaded machine).
  for (Dealer* dealer : {&plain, &wrong, &impostor}) {
    ASSERT_EQ(dealer->next_handshake(kPatienceMillis), Handshake::Failed);
  }
  // An admitted replica connecting afterwards is served.
  const CurveClient client{server_.public_key, admitted_.public_key, admitted_.secret_key};
  Dealer replica(port_, "replica-ok", &client);
  replica.send("register");
  ASSERT_EQ(replica.next_handshake(kPatienceMillis), Handshake::Succeeded);
  ASSERT_TRUE(pump(transport_, receiver_, [&] { return !receiver_.messages.empty(); },
                   std::chrono::seconds(kPatienceMillis / 1000)));
  const auto until = Clock::now() + std::chrono::seconds(1);  // a second more for anything late
  pump(transport_, receiver_, [&] { return Clock::now() >= until; });
  ASSERT_EQ(receiver_.messages.size(), 1u);
  EXPECT_EQ(receiver_.senders[0], "replica-ok");
  const std::string answer = "batch";
  EXPECT_FALSE(transport_.send("rogue-wrong", reinterpret_cast<const uint8_t*>(answer.data()), answer.size()));
  EXPECT_EQ(wrong.receive(200), "");
}

TEST(ZmqTransportKeys, MalformedKeysAreClearErrors) {
  const Keypair server = new_keypair();
  EXPECT_THROW(ZmqTransport(ZmqCurveKeys{"not-a-key", {server.public_key}}), std::invalid_argument);
  EXPECT_THROW(ZmqTransport(ZmqCurveKeys{server.secret_key, {"short"}}), std::invalid_argument);
}

}  // namespace
}  // namespace clipper
