// The shared-memory channel between the frontend and one co-located replica: one mapping holding a
// header page and two single-producer single-consumer byte rings (requests: frontend -> replica,
// responses: replica -> frontend), each carrying whole flatbuffers messages contiguously, 16-byte
// aligned, so a reader views a message (and a replica its tensor) in place.
//
// Wake-ups: a consumer about to sleep sets its ring's `consumer_sleeping`, looks at the ring once
// more, then blocks on its doorbell (an eventfd); a producer that publishes a message and then sees
// the flag set rings the doorbell. Both sides use sequentially consistent operations on `tail` and
// the flag, so either the producer sees the sleeper or the sleeper sees the message; a doorbell is
// rung only when the other side sleeps.
//
// Trust: the replica may be hostile. Every index and size read from the mapping is checked before
// use (see RingReader/RingWriter), each side keeps its own index privately and only publishes it,
// and a reader that cannot trust its producer copies a message out before decoding it (the producer
// could change it while it is read). The frontend seals the mapping's size (memfd seals), so a
// replica cannot shrink it under the frontend.
// Header-only and free of engine types: the container SDK's Cython module compiles it too.
// Thread: a RingWriter and a RingReader each belong to one thread; the two may run concurrently.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <new>

namespace clipper::shm {

constexpr uint64_t kMagic = 0x314d48535050494cULL;  // "LIPPSHM1" little-endian
constexpr uint32_t kLayoutVersion = 1;
constexpr std::size_t kHeaderBytes = 4096;
constexpr std::size_t kRecordAlign = 64;       // records start on cache lines
constexpr std::size_t kRecordHeaderBytes = 16;  // keeps the payload 16-byte aligned
constexpr uint32_t kWrapMarker = 0xffffffffu;   // "the rest of the ring is unused, go to its start"
constexpr std::size_t kMinCapacity = 4096;

static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free,
              "shared-memory rings need lock-free atomics");

// Producer and consumer indices count bytes ever written/consumed (never wrapped), so full and empty
// are distinct and a bogus value is recognisable.
struct alignas(64) RingControl {
  alignas(64) std::atomic<uint64_t> tail;  // written by the producer
  alignas(64) std::atomic<uint64_t> head;  // written by the consumer
  alignas(64) std::atomic<uint32_t> consumer_sleeping;
};

struct ChannelHeader {
  uint64_t magic;
  uint32_t layout_version;
  uint32_t reserved;
  uint64_t request_capacity;   // bytes of the request ring (a multiple of kRecordAlign)
  uint64_t response_capacity;  // bytes of the response ring
  RingControl request;
  RingControl response;
};
static_assert(sizeof(ChannelHeader) <= kHeaderBytes);

inline std::size_t round_up(std::size_t value, std::size_t to) { return (value + to - 1) / to * to; }

// Total mapping size for the given ring capacities.
inline std::size_t mapping_bytes(std::size_t request_capacity, std::size_t response_capacity) {
  return kHeaderBytes + request_capacity + response_capacity;
}

// Record footprint of a payload, header included.
inline std::size_t record_bytes(std::size_t payload) { return round_up(kRecordHeaderBytes + payload, kRecordAlign); }

// Lays out a fresh mapping (the frontend, before anyone else sees it).
inline ChannelHeader* initialise(void* base, std::size_t request_capacity, std::size_t response_capacity) {
  auto* header = new (base) ChannelHeader{};
  header->magic = kMagic;
  header->layout_version = kLayoutVersion;
  header->request_capacity = request_capacity;
  header->response_capacity = response_capacity;
  for (RingControl* ring : {&header->request, &header->response}) {
    ring->tail.store(0, std::memory_order_relaxed);
    ring->head.store(0, std::memory_order_relaxed);
    ring->consumer_sleeping.store(0, std::memory_order_relaxed);
  }
  // No fence needed: the replica learns of the mapping through a socket (sendmsg), which orders it.
  return header;
}

enum class RingStatus { Ready, Empty, Corrupt };

// The producer's side. `capacity` is this side's own knowledge of the ring (never re-read from the
// mapping). The consumer's `head` is untrusted: a value outside [tail - capacity, tail] is Corrupt.
class RingWriter {
 public:
  RingWriter() = default;
  RingWriter(RingControl* control, uint8_t* data, std::size_t capacity)
      : control_(control), data_(data), capacity_(capacity), tail_(control->tail.load(std::memory_order_relaxed)) {}

  // Whether a payload of `size` can ever fit (at most half the ring, so a wrap always leaves room).
  bool fits(std::size_t size) const { return record_bytes(size) <= capacity_ / 2; }

  // A contiguous, 16-byte aligned region for a payload of `size` bytes, or nullptr (`status` says
  // whether the ring is just full now or its consumer corrupted it). Call commit() to publish.
  uint8_t* reserve(std::size_t size, RingStatus& status) {
    status = RingStatus::Empty;
    if (!fits(size)) return nullptr;
    const uint64_t head = control_->head.load(std::memory_order_acquire);
    if (head > tail_ || tail_ - head > capacity_) {
      status = RingStatus::Corrupt;
      return nullptr;
    }
    const std::size_t free_bytes = capacity_ - static_cast<std::size_t>(tail_ - head);
    const std::size_t position = static_cast<std::size_t>(tail_ % capacity_);
    const std::size_t needed = record_bytes(size);
    std::size_t skip = 0;
    if (position + needed > capacity_) skip = capacity_ - position;  // wrap to the start
    if (skip + needed > free_bytes) return nullptr;
    if (skip != 0) {
      write_header(position, kWrapMarker);
      tail_ += skip;
    }
    pending_ = needed;
    status = RingStatus::Ready;
    const std::size_t at = static_cast<std::size_t>(tail_ % capacity_);
    write_header(at, static_cast<uint32_t>(size));
    return data_ + at + kRecordHeaderBytes;
  }

  // Publishes the reserved record; returns whether the consumer sleeps (ring its doorbell).
  bool commit() {
    tail_ += pending_;
    pending_ = 0;
    control_->tail.store(tail_, std::memory_order_seq_cst);
    return control_->consumer_sleeping.load(std::memory_order_seq_cst) != 0;
  }

  // reserve + copy + commit. Returns Ready (sent), Empty (no room now, or never fits) or Corrupt.
  RingStatus write(const uint8_t* payload, std::size_t size, bool& wake) {
    RingStatus status;
    uint8_t* at = reserve(size, status);
    if (at == nullptr) return status;
    if (size != 0) std::memcpy(at, payload, size);
    wake = commit();
    return RingStatus::Ready;
  }

  std::size_t capacity() const { return capacity_; }

 private:
  void write_header(std::size_t at, uint32_t size) {
    std::memcpy(data_ + at, &size, sizeof(size));
  }

  RingControl* control_ = nullptr;
  uint8_t* data_ = nullptr;
  std::size_t capacity_ = 0;
  uint64_t tail_ = 0;     // ours; only published to the mapping
  std::size_t pending_ = 0;
};

// The consumer's side. The producer's `tail` and record headers are untrusted: every record must lie
// inside the ring and inside what was published, else Corrupt (and the reader stays Corrupt).
class RingReader {
 public:
  RingReader() = default;
  RingReader(RingControl* control, const uint8_t* data, std::size_t capacity)
      : control_(control), data_(data), capacity_(capacity), head_(control->head.load(std::memory_order_relaxed)) {}

  // The next message in place (valid until release()), or Empty / Corrupt.
  RingStatus peek(const uint8_t*& payload, std::size_t& size) {
    if (corrupt_) return RingStatus::Corrupt;
    while (true) {
      const uint64_t tail = control_->tail.load(std::memory_order_acquire);
      if (tail == head_) return RingStatus::Empty;
      if (tail < head_ || tail - head_ > capacity_ || tail % kRecordAlign != 0) return fail();
      const std::size_t position = static_cast<std::size_t>(head_ % capacity_);
      const std::size_t published = static_cast<std::size_t>(tail - head_);
      if (position + kRecordHeaderBytes > capacity_) return fail();
      uint32_t length;
      std::memcpy(&length, data_ + position, sizeof(length));
      if (length == kWrapMarker) {
        const std::size_t skip = capacity_ - position;
        if (position == 0 || skip > published) return fail();
        head_ += skip;
        continue;
      }
      const std::size_t needed = record_bytes(length);
      if (length > capacity_ || needed > published || position + needed > capacity_) return fail();
      payload = data_ + position + kRecordHeaderBytes;
      size = length;
      pending_ = needed;
      return RingStatus::Ready;
    }
  }

  // Consumes the message peek() returned (publishes our head, giving its room back).
  void release() {
    head_ += pending_;
    pending_ = 0;
    control_->head.store(head_, std::memory_order_release);
  }

  // Announces sleep and looks once more: true when a message is waiting (or the ring is corrupt),
  // in which case the caller must not sleep (and should call awake()).
  bool prepare_to_sleep() {
    control_->consumer_sleeping.store(1, std::memory_order_seq_cst);
    return has_message();
  }
  void awake() { control_->consumer_sleeping.store(0, std::memory_order_relaxed); }

  // Cheap look: something (a message, or corruption) waits.
  bool has_message() const {
    return corrupt_ || control_->tail.load(std::memory_order_seq_cst) != head_;
  }
  bool corrupt() const { return corrupt_; }

 private:
  RingStatus fail() {
    corrupt_ = true;
    return RingStatus::Corrupt;
  }

  RingControl* control_ = nullptr;
  const uint8_t* data_ = nullptr;
  std::size_t capacity_ = 0;
  uint64_t head_ = 0;  // ours; only published to the mapping
  std::size_t pending_ = 0;
  bool corrupt_ = false;
};

// Tells the CPU this is a spin-wait (frees the sibling hyperthread, saves power).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// Whether a side about to sleep should first poll its ring for a while (`micros`, 0: never), learnt
// from how its spins end. A spin that found its message keeps the next one; one that ran out backs
// off: the next 1, 3, 7 ... 63 sleeps go without a spin (doubling with each miss in a row), so
// traffic too sparse for the window stops burning a CPU after a few misses and a spin now and then
// notices when it picks up again. Thread: the side's one thread.
class SpinPolicy {
 public:
  static constexpr uint32_t kMaxMissShift = 6;

  SpinPolicy() = default;
  explicit SpinPolicy(uint32_t micros) : micros_(micros) {}

  uint32_t micros() const { return micros_; }
  // Before sleeping: spin now? A sleep without a spin counts down the back-off.
  bool should_spin() {
    if (micros_ == 0) return false;
    if (skips_ > 0) {
      --skips_;
      return false;
    }
    return true;
  }
  // After a spin: whether it found what it waited for.
  void spun(bool found) {
    if (found) {
      misses_ = 0;
      return;
    }
    misses_ = std::min(misses_ + 1, kMaxMissShift);
    skips_ = (1u << misses_) - 1;
  }

 private:
  uint32_t micros_ = 0;
  uint32_t misses_ = 0;  // spins in a row that ran out
  uint32_t skips_ = 0;   // sleeps left before the next spin
};

}  // namespace clipper::shm
