#include "rpc/shm_ring.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace clipper::shm {
namespace {

// A channel in ordinary memory: the rings only care that both sides see the same bytes.
struct Channel {
  explicit Channel(std::size_t capacity) : memory(mapping_bytes(capacity, capacity) / sizeof(std::max_align_t) + 1) {
    header = initialise(memory.data(), capacity, capacity);
    auto* rings = reinterpret_cast<uint8_t*>(memory.data()) + kHeaderBytes;
    writer = RingWriter(&header->request, rings, capacity);
    reader = RingReader(&header->request, rings, capacity);
    data = rings;
  }
  std::vector<std::max_align_t> memory;
  ChannelHeader* header;
  uint8_t* data;
  RingWriter writer;
  RingReader reader;
};

std::string read_one(RingReader& reader) {
  const uint8_t* payload = nullptr;
  std::size_t size = 0;
  EXPECT_EQ(reader.peek(payload, size), RingStatus::Ready);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(payload) % 16, 0u) << "payloads are 16-byte aligned";
  std::string text(reinterpret_cast<const char*>(payload), size);
  reader.release();
  return text;
}

RingStatus write_text(RingWriter& writer, const std::string& text, bool* wake = nullptr) {
  bool woken = false;
  const RingStatus status = writer.write(reinterpret_cast<const uint8_t*>(text.data()), text.size(), woken);
  if (wake != nullptr) *wake = woken;
  return status;
}

TEST(ShmRing, MessagesArriveInOrderAndWhole) {
  Channel channel(4096);
  EXPECT_EQ(write_text(channel.writer, "first"), RingStatus::Ready);
  EXPECT_EQ(write_text(channel.writer, ""), RingStatus::Ready);
  EXPECT_EQ(write_text(channel.writer, std::string(1000, 'x')), RingStatus::Ready);
  EXPECT_EQ(read_one(channel.reader), "first");
  EXPECT_EQ(read_one(channel.reader), "");
  EXPECT_EQ(read_one(channel.reader), std::string(1000, 'x'));
  const uint8_t* payload;
  std::size_t size;
  EXPECT_EQ(channel.reader.peek(payload, size), RingStatus::Empty);
}

TEST(ShmRing, WrapsAroundTheEndKeepingMessagesContiguous) {
  Channel channel(4096);
  for (int round = 0; round < 100; ++round) {
    const std::string text(700 + round * 7 % 300, static_cast<char>('a' + round % 26));
    ASSERT_EQ(write_text(channel.writer, text), RingStatus::Ready) << round;
    ASSERT_EQ(read_one(channel.reader), text) << round;
  }
}

TEST(ShmRing, FullRingRefusesUntilTheReaderReleases) {
  Channel channel(4096);
  const std::string text(900, 'f');
  int written = 0;
  while (write_text(channel.writer, text) == RingStatus::Ready) ++written;
  EXPECT_EQ(written, 4);  // 4 x 960-byte records in 4096 bytes
  EXPECT_EQ(read_one(channel.reader), text);
  EXPECT_EQ(write_text(channel.writer, text), RingStatus::Ready);
}

TEST(ShmRing, MessageLargerThanHalfTheRingNeverFits) {
  Channel channel(4096);
  EXPECT_FALSE(channel.writer.fits(2048));
  EXPECT_EQ(write_text(channel.writer, std::string(2048, 'b')), RingStatus::Empty);
  EXPECT_TRUE(channel.writer.fits(1024));
}

TEST(ShmRing, DoorbellOnlyWhenTheConsumerSleeps) {
  Channel channel(4096);
  bool wake = true;
  write_text(channel.writer, "busy", &wake);
  EXPECT_FALSE(wake) << "the consumer is awake: no wake-up";
  EXPECT_TRUE(channel.reader.prepare_to_sleep()) << "a message is waiting: do not sleep";
  channel.reader.awake();
  read_one(channel.reader);
  EXPECT_FALSE(channel.reader.prepare_to_sleep());
  write_text(channel.writer, "wake up", &wake);
  EXPECT_TRUE(wake);
}

// A hostile peer writes whatever it likes into the shared indices and records: the other side
// reports Corrupt and never reads outside the ring.
TEST(ShmRing, ReaderRefusesATailBeyondTheRing) {
  Channel channel(4096);
  channel.header->request.tail.store(4096 + 64);
  const uint8_t* payload;
  std::size_t size;
  EXPECT_EQ(channel.reader.peek(payload, size), RingStatus::Corrupt);
  EXPECT_TRUE(channel.reader.corrupt());
  EXPECT_TRUE(channel.reader.has_message()) << "corruption is reported, not slept on";
}

TEST(ShmRing, ReaderRefusesARecordLongerThanWhatWasPublished) {
  Channel channel(4096);
  write_text(channel.writer, "short");
  const uint32_t huge = 0x7fffffff;
  std::memcpy(channel.data, &huge, sizeof(huge));
  const uint8_t* payload;
  std::size_t size;
  EXPECT_EQ(channel.reader.peek(payload, size), RingStatus::Corrupt);
}

TEST(ShmRing, ReaderRefusesARecordRunningPastTheEnd) {
  Channel channel(4096);
  for (int i = 0; i < 3; ++i) {
    write_text(channel.writer, std::string(900, 'r'));
    read_one(channel.reader);
  }
  write_text(channel.writer, std::string(900, 'r'));  // at 2880; a 1500-byte claim would cross 4096
  const uint32_t past_the_end = 1500;
  std::memcpy(channel.data + 2880, &past_the_end, sizeof(past_the_end));
  channel.header->request.tail.store(2880 + 1536);
  const uint8_t* payload;
  std::size_t size;
  EXPECT_EQ(channel.reader.peek(payload, size), RingStatus::Corrupt);
}

TEST(ShmRing, ReaderRefusesAWrapMarkerAtTheStart) {
  Channel channel(4096);
  write_text(channel.writer, "x");
  std::memcpy(channel.data, &kWrapMarker, sizeof(kWrapMarker));
  const uint8_t* payload;
  std::size_t size;
  EXPECT_EQ(channel.reader.peek(payload, size), RingStatus::Corrupt) << "would loop forever";
}

TEST(ShmRing, ReaderRefusesAMisalignedOrBackwardTail) {
  Channel misaligned(4096);
  misaligned.header->request.tail.store(17);
  const uint8_t* payload;
  std::size_t size;
  EXPECT_EQ(misaligned.reader.peek(payload, size), RingStatus::Corrupt);
  Channel backward(4096);
  write_text(backward.writer, "a");
  read_one(backward.reader);
  backward.header->request.tail.store(0);
  EXPECT_EQ(backward.reader.peek(payload, size), RingStatus::Corrupt);
}

TEST(ShmRing, WriterRefusesAHeadAheadOfItsTailOrTooFarBehind) {
  Channel ahead(4096);
  ahead.header->request.head.store(128);
  EXPECT_EQ(write_text(ahead.writer, "x"), RingStatus::Corrupt);
  Channel behind(4096);
  write_text(behind.writer, "x");
  behind.header->request.head.store(static_cast<uint64_t>(-4096));
  EXPECT_EQ(write_text(behind.writer, "y"), RingStatus::Corrupt);
}

TEST(ShmRing, RandomBytesInTheMappingNeverMakeTheReaderLeaveTheRing) {
  // Whatever the indices and records hold, a reader either returns a payload inside the ring or
  // refuses; ASan/UBSan runs of this test would catch a read outside.
  std::srand(7);
  for (int trial = 0; trial < 2000; ++trial) {
    Channel channel(4096);
    for (int i = 0; i < 8; ++i) {
      const uint32_t value = static_cast<uint32_t>(std::rand()) % (trial % 2 ? 9000 : 0xffffffff);
      std::memcpy(channel.data + (std::rand() % 64) * 64, &value, sizeof(value));
    }
    channel.header->request.tail.store(static_cast<uint64_t>(std::rand() % 80) * (trial % 3 ? 64 : 1));
    for (int step = 0; step < 8; ++step) {
      const uint8_t* payload = nullptr;
      std::size_t size = 0;
      const RingStatus status = channel.reader.peek(payload, size);
      if (status != RingStatus::Ready) break;
      ASSERT_GE(payload, channel.data);
      ASSERT_LE(payload + size, channel.data + 4096);
      channel.reader.release();
    }
  }
}

// One producer thread and one consumer thread, the consumer sleeping on an eventfd doorbell that
// the producer rings only when told to: every message arrives once, in order, intact, and nobody
// sleeps through a message (the test would hang). Run under TSan by scripts/sanitize.sh.
TEST(ShmRing, ConcurrentProducerAndSleepingConsumer) {
  Channel channel(64 * 1024);
  const int doorbell = eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(doorbell, 0);
  constexpr int kMessages = 200000;
  std::thread producer([&] {
    std::vector<uint8_t> message;
    for (int i = 0; i < kMessages; ++i) {
      message.assign(static_cast<std::size_t>(8 + (i * 37) % 3000), static_cast<uint8_t>(i));
      std::memcpy(message.data(), &i, sizeof(i));
      bool wake = false;
      RingStatus status;
      while ((status = channel.writer.write(message.data(), message.size(), wake)) == RingStatus::Empty) {
        std::this_thread::yield();  // full: the consumer frees room
      }
      ASSERT_EQ(status, RingStatus::Ready);
      if (wake) {
        const uint64_t one = 1;
        ASSERT_EQ(::write(doorbell, &one, sizeof(one)), 8);
      }
    }
  });
  int expected = 0;
  int sleeps = 0;
  while (expected < kMessages) {
    const uint8_t* payload = nullptr;
    std::size_t size = 0;
    const RingStatus status = channel.reader.peek(payload, size);
    ASSERT_NE(status, RingStatus::Corrupt);
    if (status == RingStatus::Empty) {
      if (channel.reader.prepare_to_sleep()) {
        channel.reader.awake();
        continue;
      }
      pollfd wait{doorbell, POLLIN, 0};
      ASSERT_EQ(::poll(&wait, 1, 10000), 1) << "slept through message " << expected;
      uint64_t value;
      ASSERT_EQ(::read(doorbell, &value, sizeof(value)), 8);
      channel.reader.awake();
      ++sleeps;
      continue;
    }
    int number;
    std::memcpy(&number, payload, sizeof(number));
    ASSERT_EQ(number, expected);
    ASSERT_EQ(size, static_cast<std::size_t>(8 + (expected * 37) % 3000));
    ASSERT_EQ(payload[size - 1], static_cast<uint8_t>(expected));
    channel.reader.release();
    ++expected;
  }
  producer.join();
  ::close(doorbell);
  RecordProperty("consumer_sleeps", sleeps);
}

TEST(SpinPolicy, OffNeverSpins) {
  SpinPolicy off;
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(off.should_spin());
}

TEST(SpinPolicy, HitsKeepSpinningAndMissesBackOffDoublingUpToTheBound) {
  SpinPolicy policy(50);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(policy.should_spin());
    policy.spun(true);
  }
  // Each miss in a row doubles the sleeps that go without a spin: 1, 3, 7, ... then stays at 63.
  for (uint32_t miss = 1; miss <= SpinPolicy::kMaxMissShift + 2; ++miss) {
    ASSERT_TRUE(policy.should_spin()) << "miss " << miss;
    policy.spun(false);
    const uint32_t skipped = (1u << std::min(miss, SpinPolicy::kMaxMissShift)) - 1;
    for (uint32_t sleep = 0; sleep < skipped; ++sleep) ASSERT_FALSE(policy.should_spin()) << "miss " << miss;
  }
  // A hit ends the back-off: the next sleep spins again, and so does the one after.
  ASSERT_TRUE(policy.should_spin());
  policy.spun(true);
  EXPECT_TRUE(policy.should_spin());
  policy.spun(false);
  EXPECT_FALSE(policy.should_spin()) << "a fresh miss skips one sleep";
  EXPECT_TRUE(policy.should_spin());
}

}  // namespace
}  // namespace clipper::shm
