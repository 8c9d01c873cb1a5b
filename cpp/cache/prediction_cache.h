// The prediction cache: model version x input bytes -> output (and the confidence the model reported
// with it, so a cached answer escalates a cascade exactly as a fresh one would), bounded in bytes, evicted by CLOCK
// (second chance), with request coalescing: while one query evaluates an input, identical queries
// wait on that evaluation instead of sending their own.
// Keys hold the model version's identity and a 128-bit XXH3 hash of the input, so a new version
// never sees the old version's answers. Sharded, one mutex per shard: I/O threads look up and join,
// the RPC thread resolves. No shard lock is held while anything else is locked.
// Layout: a shard's entries live in one slot array that is also the CLOCK ring. The index is an
// open-addressing set (abseil's flat_hash_set) of slot numbers, hashed and compared through the
// slots' keys: 4 bytes and a control byte per entry, so the index stays in the CPU cache even when
// the slots do not. A miss (the common case under distinct inputs) costs a probe of that small
// index and no allocation; eviction walks the ring and its erase compares against the slot in hand.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <absl/container/flat_hash_set.h>

#include "common/cache_key.h"
#include "common/clock.h"
#include "common/task.h"

namespace clipper {

// A query input waiting for an evaluation that another query started.
struct CacheWaiter {
  uint32_t io_thread = 0;
  uint64_t query_key = 0;
  uint32_t input_index = 0;
  Clock::time_point deadline;
};

struct CacheStatistics {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t coalesced = 0;
  uint64_t evictions = 0;
  uint64_t entries = 0;
  uint64_t bytes = 0;
};

class PredictionCache {
 public:
  // capacity_bytes 0 disables the cache (every lookup misses, nothing is stored).
  explicit PredictionCache(std::size_t capacity_bytes);

  bool enabled() const { return capacity_bytes_ > 0; }

  enum class Lookup { Hit, Joined, Miss };
  // Hit: `output` (and `confidence`, when given) hold the answer. Joined: an evaluation is under way;
  // the waiter will be handed back by resolve/fail. Miss: the caller must evaluate; the entry is now
  // pending.
  Lookup lookup(const CacheKey& key, const CacheWaiter& waiter, std::string& output,
                ModelConfidence* confidence = nullptr);

  // An answer for `key` is stored (not merely being evaluated). A look without side effects: nothing
  // joins, nothing becomes pending, no statistic counts (admission control asks before refusing).
  bool holds(const CacheKey& key);

  // The evaluation finished: stores the output with its confidence and returns the waiters to answer.
  std::vector<CacheWaiter> resolve(const CacheKey& key, std::string_view output,
                                   ModelConfidence confidence = std::nullopt);
  // The evaluation failed: forgets the pending entry and returns its waiters.
  std::vector<CacheWaiter> fail(const CacheKey& key);
  // The evaluating query gave up (its deadline passed before a replica took it). Returns the waiter
  // that should evaluate instead (the live waiter with the latest deadline), or none; expired
  // waiters are dropped (their I/O threads already answered them).
  std::optional<CacheWaiter> hand_over(const CacheKey& key, Clock::time_point now);

  CacheStatistics statistics() const;

 private:
  // One cached input. Free slots are reused before the array grows.
  struct Slot {
    enum class State : uint8_t { Free, Pending, Ready };
    CacheKey key;
    State state = State::Free;
    bool referenced = false;  // CLOCK: hit since the hand last passed
    ModelConfidence confidence;
    std::string output;
    std::vector<CacheWaiter> waiters;  // queries joined to a pending evaluation
  };
  static std::size_t hash_of(const CacheKey& key) {
    return static_cast<std::size_t>(key.hash_low ^ key.model_id);  // already XXH3: no remixing
  }
  // The index holds slot numbers but is searched by key (abseil's heterogeneous lookup).
  struct SlotHash {
    using is_transparent = void;
    const std::vector<Slot>* slots;
    std::size_t operator()(uint32_t slot) const { return hash_of((*slots)[slot].key); }
    std::size_t operator()(const CacheKey& key) const { return hash_of(key); }
  };
  struct SlotEq {
    using is_transparent = void;
    const std::vector<Slot>* slots;
    bool operator()(uint32_t a, uint32_t b) const { return a == b; }
    bool operator()(uint32_t slot, const CacheKey& key) const { return (*slots)[slot].key == key; }
    bool operator()(const CacheKey& key, uint32_t slot) const { return (*slots)[slot].key == key; }
  };
  struct Shard {
    Shard() : index(0, SlotHash{&slots}, SlotEq{&slots}) {}
    Shard(const Shard&) = delete;
    Shard& operator=(const Shard&) = delete;
    std::mutex mutex;
    std::vector<Slot> slots;  // declared before the index, whose functors point at it
    absl::flat_hash_set<uint32_t, SlotHash, SlotEq> index;  // live slots, found by their key
    std::vector<uint32_t> free_slots;
    std::size_t hand = 0;   // CLOCK hand: the next slot considered for eviction
    std::size_t bytes = 0;  // resolved entries' cost
  };
  static constexpr std::size_t kShards = 16;
  // Cost of an entry beyond its output's bytes, an upper bound: its slot (96 B) with the slot
  // array's growth slack (up to 2x), its index slot and control byte at abseil's load factor
  // (~6 B), its free-list entry (4 B).
  static constexpr std::size_t kEntryOverheadBytes = 192;

  Shard& shard_for(const CacheKey& key) { return shards_[key.hash_high % kShards]; }
  static uint32_t claim_slot(Shard& shard, const CacheKey& key);
  static void release_slot(Shard& shard, uint32_t slot);
  void evict_until_fits(Shard& shard, uint32_t newest);

  std::size_t capacity_bytes_;
  std::size_t shard_capacity_bytes_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> coalesced_{0};
  std::atomic<uint64_t> evictions_{0};
};

}  // namespace clipper
