// The prediction cache: model version x input bytes -> output (and the confidence the model reported
// with it, so a cached answer escalates a cascade exactly as a fresh one would), bounded in bytes, evicted by CLOCK
// (second chance), with request coalescing: while one query evaluates an input, identical queries
// wait on that evaluation instead of sending their own.
// Keys hold the model version's identity and a 128-bit XXH3 hash of the input, so a new version
// never sees the old version's answers. Sharded, one mutex per shard: I/O threads look up and join,
// the RPC thread resolves. No shard lock is held while anything else is locked.
// Layout: a shard's entries live in one slot array that is also the CLOCK ring. The index is an
// open-addressing set (abseil's flat_hash_set) of 8-byte entries: a slot number and 32 bits of its
// key's hash. Hashing an entry reads only the entry, so the index's in-place clean-up of erased
// entries (and its growth) never touches the slots, and a probe compares the stored hash before it
// reads a slot's key: a miss (the common case under distinct inputs) reads no slot and allocates
// nothing; eviction walks the ring and erases the entry it builds from the slot in hand.
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

#include <absl/container/flat_hash_map.h>
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
  // One cached input, one CPU cache line: the CLOCK hand and a probe's key check read one line.
  // Free slots are reused before the array grows. Queries joined to a pending evaluation wait in
  // the shard's `waiters`, not here.
  struct alignas(64) Slot {
    enum class State : uint8_t { Free, Pending, Ready };
    CacheKey key;
    std::string output;
    float confidence_value = 0;  // ModelConfidence, split so the slot stays in one line
    State state = State::Free;
    bool referenced = false;  // CLOCK: hit since the hand last passed
    bool has_confidence = false;
  };
  static_assert(sizeof(Slot) == 64);
  // 32 bits of the key's hash (already XXH3: no remixing). Enough for abseil's probe position and
  // tag up to 2^25 entries per shard, far beyond any byte budget.
  static uint32_t hash_of(const CacheKey& key) { return static_cast<uint32_t>(key.hash_low ^ key.model_id); }
  // An index entry: the key's hash in the high half, the slot number in the low half.
  static uint64_t entry_of(uint32_t hash, uint32_t slot) { return (uint64_t{hash} << 32) | slot; }
  static uint32_t slot_of(uint64_t entry) { return static_cast<uint32_t>(entry); }
  // The index is searched by key (abseil's heterogeneous lookup); an entry hashes without its slot.
  struct EntryHash {
    using is_transparent = void;
    std::size_t operator()(uint64_t entry) const { return static_cast<std::size_t>(entry >> 32); }
    std::size_t operator()(const CacheKey& key) const { return hash_of(key); }
  };
  struct EntryEq {
    using is_transparent = void;
    const std::vector<Slot>* slots;
    bool operator()(uint64_t a, uint64_t b) const { return a == b; }
    bool operator()(uint64_t entry, const CacheKey& key) const {
      return (entry >> 32) == hash_of(key) && (*slots)[slot_of(entry)].key == key;
    }
    bool operator()(const CacheKey& key, uint64_t entry) const { return (*this)(entry, key); }
  };
  struct Shard {
    Shard() : index(0, EntryHash{}, EntryEq{&slots}) {}
    Shard(const Shard&) = delete;
    Shard& operator=(const Shard&) = delete;
    std::mutex mutex;
    std::vector<Slot> slots;  // declared before the index, whose functors point at it
    absl::flat_hash_set<uint64_t, EntryHash, EntryEq> index;  // live slots, found by their key
    std::vector<uint32_t> free_slots;
    absl::flat_hash_map<uint32_t, std::vector<CacheWaiter>> waiters;  // by pending slot, joined queries
    std::size_t hand = 0;   // CLOCK hand: the next slot considered for eviction
    std::size_t bytes = 0;  // resolved entries' cost
  };
  static constexpr std::size_t kShards = 16;
  // Cost of an entry beyond its output's bytes, an upper bound: its slot (64 B) with the slot
  // array's growth slack (up to 2x), its index entry and control byte at abseil's load factor
  // (~10 B), its free-list entry (4 B).
  static constexpr std::size_t kEntryOverheadBytes = 192;

  Shard& shard_for(const CacheKey& key) { return shards_[key.hash_high % kShards]; }
  static uint32_t claim_slot(Shard& shard, const CacheKey& key);
  static void release_slot(Shard& shard, uint32_t slot);
  static std::vector<CacheWaiter> take_waiters(Shard& shard, uint32_t slot);
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
