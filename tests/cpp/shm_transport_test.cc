#include "rpc/shm_transport.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "rpc/replica_messages.h"
#include "rpc/zmq_transport.h"

namespace clipper {
namespace {

class RecordingReceiver final : public TransportReceiver {
 public:
  void on_received(const ReplicaAddress& from, const uint8_t* data, std::size_t size, ConnectionId connection) override {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(data) % alignof(std::max_align_t), 0u);
    senders.push_back(from);
    messages.emplace_back(reinterpret_cast<const char*>(data), size);
  }
  void on_connection_closed(ConnectionId connection) override { closed.push_back(connection); }
  void on_admitted(const ReplicaAddress& replica, ConnectionId connection, bool attached) override {
    admitted.push_back(replica);
    admitted_ok.push_back(attached);
    admitted_connection = connection;
  }
  std::vector<ReplicaAddress> senders;
  std::vector<std::string> messages;
  std::vector<ConnectionId> closed;
  std::vector<ReplicaAddress> admitted;
  std::vector<bool> admitted_ok;
  ConnectionId admitted_connection = -1;
};

// The replica's side of the handshake and the rings, as the container SDK does it.
struct FakeReplica {
  int connection = -1;
  int fds[3] = {-1, -1, -1};  // memfd, request doorbell, response doorbell
  void* base = nullptr;
  std::size_t bytes = 0;
  shm::ChannelHeader* header = nullptr;
  shm::RingReader requests;
  shm::RingWriter responses;

  bool attach(const std::string& path, const std::string& token) {
    connection = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un where{};
    where.sun_family = AF_UNIX;
    std::memcpy(where.sun_path, path.c_str(), path.size() + 1);
    if (::connect(connection, reinterpret_cast<sockaddr*>(&where), sizeof(where)) != 0) return false;
    if (::send(connection, token.data(), token.size(), 0) != static_cast<ssize_t>(token.size())) return false;
    return true;
  }
  // After the transport answered (its receive() ran).
  bool take_channel() {
    uint64_t reply[4];
    iovec body{reply, sizeof(reply)};
    alignas(cmsghdr) char control[CMSG_SPACE(3 * sizeof(int))];
    msghdr message{};
    message.msg_iov = &body;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    if (::recvmsg(connection, &message, 0) != sizeof(reply)) return false;
    cmsghdr* rights = CMSG_FIRSTHDR(&message);
    if (rights == nullptr || rights->cmsg_type != SCM_RIGHTS) return false;
    std::memcpy(fds, CMSG_DATA(rights), sizeof(fds));
    struct stat info {};
    ::fstat(fds[0], &info);
    bytes = static_cast<std::size_t>(info.st_size);
    base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    if (base == MAP_FAILED) return false;
    header = static_cast<shm::ChannelHeader*>(base);
    auto* rings = static_cast<uint8_t*>(base) + shm::kHeaderBytes;
    requests = shm::RingReader(&header->request, rings, header->request_capacity);
    responses = shm::RingWriter(&header->response, rings + header->request_capacity, header->response_capacity);
    return header->magic == shm::kMagic && reply[3] == header->response_capacity;
  }
  ~FakeReplica() {
    if (base != nullptr) ::munmap(base, bytes);
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
    if (connection >= 0) ::close(connection);
  }
};

template <typename Done>
void receive_until(ShmTransport& transport, RecordingReceiver& receiver, Done done) {
  const auto give_up = Clock::now() + std::chrono::seconds(5);
  while (!done() && Clock::now() < give_up) {
    transport.receive(receiver);
    transport.receive_closes(receiver);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

std::unique_ptr<ShmTransport> make_transport(std::size_t ring_bytes = 1 << 16, uint32_t response_spin_micros = 0,
                                             uint32_t response_spin_cost_micros = 0) {
  ShmTransportOptions options;
  options.response_spin_micros = response_spin_micros;
  options.response_spin_cost_micros = response_spin_cost_micros;
  options.request_ring_bytes = ring_bytes;
  options.response_ring_bytes = ring_bytes;
  options.offer_timeout = std::chrono::milliseconds(300);
  auto transport = std::make_unique<ShmTransport>(std::make_unique<ZmqTransport>(), options);
  transport->bind("127.0.0.1", 0);
  return transport;
}

// Admits a fake replica all the way to an attached channel.
void attach(ShmTransport& transport, RecordingReceiver& receiver, FakeReplica& replica, const ReplicaAddress& address) {
  const auto admission = transport.admit(address, true);
  ASSERT_FALSE(admission.now);
  ASSERT_EQ(admission.token.size(), 32u);
  struct stat info {};
  ASSERT_EQ(::stat(admission.socket_path.c_str(), &info), 0);
  ASSERT_EQ(info.st_mode & 0777, 0600u);
  ASSERT_TRUE(replica.attach(admission.socket_path, admission.token));
  receive_until(transport, receiver, [&] { return !receiver.admitted.empty(); });
  ASSERT_EQ(receiver.admitted.size(), 1u);
  ASSERT_TRUE(receiver.admitted_ok[0]);
  ASSERT_TRUE(replica.take_channel());
  EXPECT_STREQ(transport.medium(address), "shm");
}

TEST(ShmTransport, NotAskingMeansZeroMQ) {
  auto transport = make_transport();
  EXPECT_TRUE(transport->admit("replica-a", false).now);
  EXPECT_STREQ(transport->medium("replica-a"), "zmq");
}

TEST(ShmTransport, RequestsAndResponsesTravelThroughTheRings) {
  auto transport = make_transport();
  RecordingReceiver receiver;
  FakeReplica replica;
  attach(*transport, receiver, replica, "replica-a");

  const std::string request = "a batch";
  ASSERT_TRUE(transport->send("replica-a", reinterpret_cast<const uint8_t*>(request.data()), request.size()));
  const uint8_t* payload;
  std::size_t size;
  ASSERT_EQ(replica.requests.peek(payload, size), shm::RingStatus::Ready);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(payload), size), request);
  replica.requests.release();

  const std::string response = "its answer";
  bool wake = false;
  ASSERT_EQ(replica.responses.write(reinterpret_cast<const uint8_t*>(response.data()), response.size(), wake),
            shm::RingStatus::Ready);
  EXPECT_TRUE(transport->messages_waiting());
  receive_until(*transport, receiver, [&] { return !receiver.messages.empty(); });
  ASSERT_EQ(receiver.messages.size(), 1u);
  EXPECT_EQ(receiver.messages[0], response);
  EXPECT_EQ(receiver.senders[0], "replica-a");
}

TEST(ShmTransport, TheReplicaCannotShrinkTheMapping) {
  auto transport = make_transport();
  RecordingReceiver receiver;
  FakeReplica replica;
  attach(*transport, receiver, replica, "replica-a");
  EXPECT_NE(::ftruncate(replica.fds[0], 4096), 0) << "sealed: a shrink would SIGBUS the frontend";
}

TEST(ShmTransport, ACorruptRingClosesTheReplicasConnection) {
  auto transport = make_transport();
  RecordingReceiver receiver;
  FakeReplica replica;
  attach(*transport, receiver, replica, "replica-a");
  replica.header->response.tail.store(1ull << 40);  // far beyond anything written
  receive_until(*transport, receiver, [&] { return !receiver.closed.empty(); });
  ASSERT_EQ(receiver.closed.size(), 1u);
  EXPECT_EQ(receiver.closed[0], receiver.admitted_connection);
  EXPECT_STREQ(transport->medium("replica-a"), "zmq") << "the channel is released";
  EXPECT_TRUE(receiver.messages.empty());
}

TEST(ShmTransport, AReplicaThatDiesIsReportedAtOnce) {
  auto transport = make_transport();
  RecordingReceiver receiver;
  auto replica = std::make_unique<FakeReplica>();
  attach(*transport, receiver, *replica, "replica-a");
  replica.reset();  // closes everything, as the kernel does for a dead process
  receive_until(*transport, receiver, [&] { return !receiver.closed.empty(); });
  ASSERT_EQ(receiver.closed.size(), 1u);
  EXPECT_EQ(receiver.closed[0], receiver.admitted_connection);
}

TEST(ShmTransport, AWrongTokenGetsNothingAndAnUntakenOfferIsWithdrawn) {
  auto transport = make_transport();
  RecordingReceiver receiver;
  const auto admission = transport->admit("replica-a", true);
  FakeReplica intruder;
  ASSERT_TRUE(intruder.attach(admission.socket_path, std::string(32, '0')));
  receive_until(*transport, receiver, [&] { return !receiver.admitted.empty(); });
  ASSERT_EQ(receiver.admitted.size(), 1u) << "the offer expired";
  EXPECT_FALSE(receiver.admitted_ok[0]);
  EXPECT_FALSE(intruder.take_channel()) << "a wrong token is answered by a close, no descriptors";
  EXPECT_STREQ(transport->medium("replica-a"), "zmq");
}

TEST(ShmTransport, AMessageTooLargeForTheRingGoesOverTheNetwork) {
  auto transport = make_transport(1 << 16);
  RecordingReceiver receiver;
  FakeReplica replica;
  attach(*transport, receiver, replica, "replica-a");
  // No ZeroMQ peer named "replica-a" exists, so the network transport refuses: the send went there.
  const std::vector<uint8_t> large(1 << 16, 7);
  EXPECT_FALSE(transport->send("replica-a", large.data(), large.size()));
  const uint8_t* payload;
  std::size_t size;
  EXPECT_EQ(replica.requests.peek(payload, size), shm::RingStatus::Empty);
}

// A batch of `count` float32 inputs of `floats` elements each, every byte distinct enough to spot a
// misplaced copy.
std::vector<Task> float_batch(std::size_t count, std::size_t floats) {
  std::vector<Task> tasks(count);
  for (std::size_t i = 0; i < count; ++i) {
    std::vector<float> values(floats);
    for (std::size_t j = 0; j < floats; ++j) values[j] = static_cast<float>(i * floats + j) + 0.5f;
    tasks[i].payload.assign(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
    tasks[i].element_count = static_cast<uint32_t>(floats);
  }
  return tasks;
}

TEST(ShmTransport, ABatchsInputsAreWrittenOnceStraightIntoTheRing) {
  auto transport = make_transport(1 << 20);
  RecordingReceiver receiver;
  FakeReplica replica;
  attach(*transport, receiver, replica, "replica-a");
  for (const bool ragged : {false, true}) {
    std::vector<Task> tasks = float_batch(3, 1000);
    if (ragged) tasks[1].payload.resize(12), tasks[1].element_count = 3;
    std::size_t input_bytes = 0;
    for (const Task& task : tasks) input_bytes += task.payload.size();
    ReplicaMessages reference_encoder;
    const auto reference = reference_encoder.encode_batch(9, InputType::Floats, tasks);
    const std::string expected(reinterpret_cast<const char*>(reference.data), reference.size);

    const ShmCopyCounts before = transport->copy_counts();
    ReplicaMessages messages;
    const FramedMessage framed = messages.frame_batch(9, InputType::Floats, tasks);
    std::memset(framed.frame + framed.payload_offset, 0xee, framed.payload_size);  // the frame's hole
    int writes = 0;
    ASSERT_TRUE(transport->send_framed("replica-a", framed, [&](uint8_t* at) {
      ++writes;
      EXPECT_TRUE(at < framed.frame || at >= framed.frame + framed.size) << "written into the frame, not the ring";
      ReplicaMessages::write_inputs(tasks, at);
    }));
    EXPECT_EQ(writes, 1);
    for (std::size_t i = 0; i < framed.payload_size; ++i) {
      ASSERT_EQ(framed.frame[framed.payload_offset + i], 0xee) << "the frame's copy of the inputs stays unwritten";
    }

    const ShmCopyCounts after = transport->copy_counts();
    EXPECT_EQ(after.framed_messages - before.framed_messages, 1u);
    EXPECT_EQ(after.payload_bytes - before.payload_bytes, input_bytes) << "each input byte written once";
    EXPECT_EQ(after.frame_bytes - before.frame_bytes, expected.size() - input_bytes);
    EXPECT_LT(after.frame_bytes - before.frame_bytes, ragged ? 200u : 160u) << "only the small frame is copied";
    EXPECT_EQ(after.copied_messages, 0u) << "no whole-message copy";

    const uint8_t* payload;
    std::size_t size;
    ASSERT_EQ(replica.requests.peek(payload, size), shm::RingStatus::Ready);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(payload) % 16, 0u);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(payload), size), expected) << "ragged=" << ragged;
    replica.requests.release();
  }
}

TEST(ShmTransport, AFramedBatchTooLargeForTheRingIsWrittenIntoItsFrameForTheNetwork) {
  auto transport = make_transport(1 << 16);
  RecordingReceiver receiver;
  FakeReplica replica;
  attach(*transport, receiver, replica, "replica-a");
  const std::vector<Task> tasks = float_batch(2, 1 << 14);  // 128 KiB: more than half the ring
  ReplicaMessages messages;
  const FramedMessage framed = messages.frame_batch(4, InputType::Floats, tasks);
  uint8_t* written_at = nullptr;
  // No ZeroMQ peer named "replica-a" exists, so the network transport refuses: the send went there.
  EXPECT_FALSE(transport->send_framed("replica-a", framed, [&](uint8_t* at) {
    written_at = at;
    ReplicaMessages::write_inputs(tasks, at);
  }));
  EXPECT_EQ(written_at, framed.frame + framed.payload_offset);
  EXPECT_EQ(std::memcmp(written_at, tasks[0].payload.data(), tasks[0].payload.size()), 0);
  EXPECT_EQ(transport->copy_counts().framed_messages, 0u);
  const uint8_t* payload;
  std::size_t size;
  EXPECT_EQ(replica.requests.peek(payload, size), shm::RingStatus::Empty);
}

// The replica's side: the next request in its ring, released (empty string: none).
std::string take_request(FakeReplica& replica) {
  const uint8_t* payload;
  std::size_t size;
  if (replica.requests.peek(payload, size) != shm::RingStatus::Ready) return "";
  std::string request(reinterpret_cast<const char*>(payload), size);
  replica.requests.release();
  return request;
}

TEST(ShmTransport, ARequestThatFindsNoRoomWaitsForItAndNothingSentLaterOvertakesIt) {
  // A replica holding pipelined or prefetched batches: three of 20 KB fill a 64 KiB ring.
  auto transport = make_transport(1 << 16);
  RecordingReceiver receiver;
  FakeReplica replica;
  attach(*transport, receiver, replica, "replica-a");
  const std::vector<Task> tasks = float_batch(1, 5000);
  ReplicaMessages messages;
  std::vector<std::string> expected;
  for (uint64_t batch_id = 1; batch_id <= 4; ++batch_id) {
    ReplicaMessages reference_encoder;
    const auto reference = reference_encoder.encode_batch(batch_id, InputType::Floats, tasks);
    expected.emplace_back(reinterpret_cast<const char*>(reference.data), reference.size);
    const FramedMessage framed = messages.frame_batch(batch_id, InputType::Floats, tasks);
    // The fourth finds no room. No ZeroMQ peer named "replica-a" exists: a send over the network
    // would fail, so `true` means it stayed on shared memory.
    ASSERT_TRUE(transport->send_framed("replica-a", framed,
                                       [&](uint8_t* at) { ReplicaMessages::write_inputs(tasks, at); }))
        << "batch " << batch_id;
  }
  // A small message would fit the ring's last few KiB, but must not pass the one waiting.
  const std::string small = "small, sent last";
  ASSERT_TRUE(transport->send("replica-a", reinterpret_cast<const uint8_t*>(small.data()), small.size()));
  expected.push_back(small);
  EXPECT_EQ(transport->copy_counts().framed_messages, 3u);

  std::vector<std::string> taken;
  for (std::string request; !(request = take_request(replica)).empty();) taken.push_back(request);
  ASSERT_EQ(taken.size(), 3u) << "the rest waits in the frontend";
  // The replica answers what it took; the frontend's next pass writes what waited, in order.
  const std::string answer = "answers";
  bool wake = false;
  ASSERT_EQ(replica.responses.write(reinterpret_cast<const uint8_t*>(answer.data()), answer.size(), wake),
            shm::RingStatus::Ready);
  receive_until(*transport, receiver, [&] { return !receiver.messages.empty(); });
  for (std::string request; !(request = take_request(replica)).empty();) taken.push_back(request);
  EXPECT_EQ(taken, expected) << "every request, each once, in the order sent";
  const ShmCopyCounts copies = transport->copy_counts();
  EXPECT_EQ(copies.copied_messages, 2u) << "the two that waited were copied in whole";
  EXPECT_EQ(copies.copied_bytes, expected[3].size() + small.size());
}

TEST(ShmTransport, WhatWaitsForRoomGoesInBeforeTheLoopSleeps) {
  auto transport = make_transport(1 << 16);
  RecordingReceiver receiver;
  FakeReplica replica;
  attach(*transport, receiver, replica, "replica-a");
  const std::vector<uint8_t> third_of_ring(20'000, 3);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(transport->send("replica-a", third_of_ring.data(), third_of_ring.size()));
  for (int i = 0; i < 3; ++i) ASSERT_EQ(take_request(replica).size(), third_of_ring.size());
  // The replica released room but has not answered yet: the loop, about to sleep, fills it first.
  EXPECT_FALSE(transport->about_to_sleep());
  transport->awake();
  EXPECT_EQ(take_request(replica).size(), third_of_ring.size());
  EXPECT_EQ(take_request(replica), "");
}

TEST(ShmTransport, ReleaseFreesTheChannel) {
  auto transport = make_transport();
  RecordingReceiver receiver;
  FakeReplica replica;
  attach(*transport, receiver, replica, "replica-a");
  EXPECT_EQ(transport->channel_count(), 1u);
  transport->release("replica-a");
  transport->receive(receiver);
  EXPECT_EQ(transport->channel_count(), 0u);
  EXPECT_STREQ(transport->medium("replica-a"), "zmq");
}

// The replica's side of one round trip: takes the request, answers `delay` later; returns whether
// publishing the answer asked for the frontend's doorbell (it saw the frontend asleep).
bool answer_later(FakeReplica& replica, std::chrono::microseconds delay) {
  const uint8_t* payload;
  std::size_t size;
  const auto give_up = Clock::now() + std::chrono::seconds(5);
  while (replica.requests.peek(payload, size) != shm::RingStatus::Ready && Clock::now() < give_up) {
  }
  replica.requests.release();
  std::this_thread::sleep_for(delay);
  const std::string answer = "answer";
  bool wake = false;
  replica.responses.write(reinterpret_cast<const uint8_t*>(answer.data()), answer.size(), wake);
  return wake;
}

// The frontend's loop after sending a batch: about_to_sleep() before blocking. Returns whether it
// found the answer there (no sleep), and whether the replica asked for a doorbell.
struct RoundTrip {
  bool answered_before_sleep = false;
  bool doorbell = false;
};
RoundTrip round_trip(ShmTransport& transport, FakeReplica& replica, std::chrono::microseconds delay) {
  const std::string batch = "a batch";
  bool doorbell = false;
  std::thread answering([&] { doorbell = answer_later(replica, delay); });
  EXPECT_TRUE(transport.send("replica-a", reinterpret_cast<const uint8_t*>(batch.data()), batch.size()));
  RoundTrip trip;
  trip.answered_before_sleep = transport.about_to_sleep();
  answering.join();
  transport.awake();
  trip.doorbell = doorbell;
  return trip;
}

TEST(ShmTransport, SpinningForAnAnswerWithinTheWindowSavesTheReplicasDoorbell) {
  auto transport = make_transport(1 << 16, 200'000);  // a 200 ms window: the thread's start is slow
  RecordingReceiver receiver;
  FakeReplica replica;
  attach(*transport, receiver, replica, "replica-a");
  const RoundTrip trip = round_trip(*transport, replica, std::chrono::milliseconds(5));
  EXPECT_TRUE(trip.answered_before_sleep) << "the loop found the answer instead of sleeping";
  EXPECT_FALSE(trip.doorbell) << "the frontend was spinning, not asleep: no doorbell";
  receive_until(*transport, receiver, [&] { return !receiver.messages.empty(); });
  EXPECT_EQ(receiver.messages.size(), 1u);
}

TEST(ShmTransport, WithoutTheSpinTheLoopSleepsAndTheAnswerRingsTheDoorbell) {
  auto transport = make_transport();
  RecordingReceiver receiver;
  FakeReplica replica;
  attach(*transport, receiver, replica, "replica-a");
  const RoundTrip trip = round_trip(*transport, replica, std::chrono::milliseconds(5));
  EXPECT_FALSE(trip.answered_before_sleep);
  EXPECT_TRUE(trip.doorbell);
}

TEST(ShmTransport, AnAnswerLaterThanTheWindowFindsTheFrontendAsleepAndRings) {
  auto transport = make_transport(1 << 16, 1'000);  // 1 ms
  RecordingReceiver receiver;
  FakeReplica replica;
  attach(*transport, receiver, replica, "replica-a");
  const auto started = Clock::now();
  const RoundTrip trip = round_trip(*transport, replica, std::chrono::milliseconds(100));
  EXPECT_FALSE(trip.answered_before_sleep);
  EXPECT_TRUE(trip.doorbell) << "after its spin the loop announced sleep: no lost wake-up";
  EXPECT_GE(Clock::now() - started, std::chrono::milliseconds(100));
}

TEST(ShmTransport, ASpinCostingMoreThanItsBoundPerAnswerCaughtStopsButForProbes) {
  // Every answer comes 2 ms after its batch, well inside the 200 ms window: each spin catches its
  // answer, but at 2,000 us of spinning per answer caught against a 100 us bound.
  auto transport = make_transport(1 << 16, 200'000, 100);
  RecordingReceiver receiver;
  FakeReplica replica;
  attach(*transport, receiver, replica, "replica-a");
  std::vector<bool> spun;
  // The first spin, 16 sleeps to the first probe, 32 more to the second (the first cost too much).
  for (int trip = 0; trip < 1 + 3 * static_cast<int>(SpinCostGate::kProbeEvery); ++trip) {
    const RoundTrip result = round_trip(*transport, replica, std::chrono::milliseconds(2));
    EXPECT_NE(result.answered_before_sleep, result.doorbell) << "a spin catches it, else a doorbell wakes";
    spun.push_back(result.answered_before_sleep);
    receive_until(*transport, receiver, [&] { return receiver.messages.size() == spun.size(); });
  }
  EXPECT_TRUE(spun[0]) << "the first spin runs: the gate starts optimistic";
  EXPECT_FALSE(spun[1]) << "one spin of 2 ms per answer puts the average past 100 us";
  const auto probes = std::count(spun.begin() + 1, spun.end(), true);
  EXPECT_EQ(probes, 2) << "probes after 16, then 32 sleeps";
  EXPECT_TRUE(spun[1 + SpinCostGate::kProbeEvery - 1]) << "the first probe";
  EXPECT_TRUE(spun.back()) << "the second probe, 32 sleeps later";
  const ShmSpinCounters& counts = transport->spin_counts();
  EXPECT_EQ(counts.spins.load(), 3u);
  EXPECT_EQ(counts.caught.load(), 3u);
  EXPECT_EQ(counts.gated.load(), spun.size() - 3);
  EXPECT_GE(counts.spun_nanos.load(), 3u * 2'000'000) << "each spin lasted until its answer, 2 ms on";
}

TEST(ShmTransport, NothingOutstandingMeansNoSpin) {
  auto transport = make_transport(1 << 16, 200'000);
  RecordingReceiver receiver;
  FakeReplica replica;
  attach(*transport, receiver, replica, "replica-a");
  const auto started = Clock::now();
  EXPECT_FALSE(transport->about_to_sleep());
  transport->awake();
  EXPECT_LT(Clock::now() - started, std::chrono::milliseconds(100)) << "no batch out: no 200 ms spin";
}

// The I/O loop's way of receiving: look at the loop descriptors (as libuv's epoll does), report each
// that fired, then receive.
template <typename Done>
void loop_receive_until(ShmTransport& transport, RecordingReceiver& receiver, Done done) {
  const std::vector<int> descriptors = transport.loop_descriptors();
  const auto give_up = Clock::now() + std::chrono::seconds(5);
  while (!done() && Clock::now() < give_up) {
    std::vector<pollfd> polled;
    for (int fd : descriptors) polled.push_back({fd, POLLIN, 0});
    ::poll(polled.data(), polled.size(), 1);
    for (const pollfd& entry : polled) {
      if (entry.revents & POLLIN) transport.descriptor_fired(entry.fd);
    }
    transport.receive(receiver);
    transport.receive_closes(receiver);
  }
}

TEST(ShmTransport, InLoopModeItsEpollIsLookedAtOnlyAfterItFired) {
  auto transport = make_transport();
  RecordingReceiver receiver;
  transport->loop_descriptors();  // loop mode from here on
  const auto admission = transport->admit("replica-a", true);
  auto replica = std::make_unique<FakeReplica>();
  ASSERT_TRUE(replica->attach(admission.socket_path, admission.token));
  loop_receive_until(*transport, receiver, [&] { return !receiver.admitted.empty(); });
  ASSERT_EQ(receiver.admitted_ok, std::vector<bool>{true});
  ASSERT_TRUE(replica->take_channel());

  replica.reset();  // its connection closes: an event in the transport's epoll
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (int pass = 0; pass < 3; ++pass) {
    transport->receive(receiver);
    transport->receive_closes(receiver);
  }
  EXPECT_TRUE(receiver.closed.empty()) << "no system call on a drained epoll that has not fired";
  loop_receive_until(*transport, receiver, [&] { return !receiver.closed.empty(); });
  EXPECT_EQ(receiver.closed.size(), 1u) << "once it fired, the close is seen";
}

TEST(ShmTransport, ADoorbellWakesTheLoopOnceWithoutBeingReadBack) {
  auto transport = make_transport();
  RecordingReceiver receiver;
  const int epoll = transport->loop_descriptors().back();
  const auto admission = transport->admit("replica-a", true);
  FakeReplica replica;
  ASSERT_TRUE(replica.attach(admission.socket_path, admission.token));
  loop_receive_until(*transport, receiver, [&] { return !receiver.admitted.empty(); });
  ASSERT_TRUE(replica.take_channel());
  for (int round = 0; round < 3; ++round) {
    ASSERT_FALSE(transport->about_to_sleep()) << "nothing waits: the loop announces sleep";
    const std::string answer = "answer " + std::to_string(round);
    bool wake = false;
    ASSERT_EQ(replica.responses.write(reinterpret_cast<const uint8_t*>(answer.data()), answer.size(), wake),
              shm::RingStatus::Ready);
    ASSERT_TRUE(wake) << "the loop sleeps: ring";
    const uint64_t one = 1;
    ASSERT_EQ(::write(replica.fds[2], &one, sizeof(one)), 8);
    pollfd readable{epoll, POLLIN, 0};
    ASSERT_EQ(::poll(&readable, 1, 1000), 1) << "the doorbell wakes the loop";
    transport->awake();
    loop_receive_until(*transport, receiver, [&] { return receiver.messages.size() == std::size_t(round) + 1; });
    ASSERT_EQ(receiver.messages.back(), answer);
    readable.revents = 0;
    EXPECT_EQ(::poll(&readable, 1, 0), 0) << "the event is consumed: the loop does not wake again for it";
  }
}

}  // namespace
}  // namespace clipper
