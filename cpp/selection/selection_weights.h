// Per-(application, user) model weights that selection policies publish, read by the I/O threads on
// every query of an application whose plan samples or combines models.
// Invariants: the control thread alone writes (register_app, set, erase); any number of I/O threads
// read at once. The table is split into shards, each under a reader-writer lock held only while at
// most a few dozen bytes are copied, so readers never wait on each other and a write delays only the
// readers of its own shard, briefly. Memory is bounded by `capacity_entries`: a write into a full
// shard evicts an arbitrary entry of that shard. That loses nothing: the control plane keeps every
// user's learned state in the state store, and an evicted user is served by the application's
// default weights until its policy publishes for it again.
#pragma once

#include <absl/container/flat_hash_map.h>
#include <absl/container/inlined_vector.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace clipper {

class SelectionWeights {
 public:
  // Weights are stored as floats, up to four inline; more linked models spill to the heap.
  using Weights = absl::InlinedVector<float, 4>;
  static constexpr std::size_t kShards = 64;

  explicit SelectionWeights(std::size_t capacity_entries = std::size_t{1} << 20);

  // --- control thread ---
  // A stable small number for an application name (the routing table keeps it on the app's route so
  // the request path never hashes the name).
  uint32_t register_app(std::string_view app);
  void set(uint32_t app, int64_t uid, std::span<const double> weights);
  void erase(uint32_t app, int64_t uid);
  void erase_app(uint32_t app);

  // --- any thread ---
  // Copies the weights published for (app, uid) into `out`; false when there are none.
  bool get(uint32_t app, int64_t uid, std::vector<double>& out) const;
  std::size_t size() const;
  std::size_t capacity() const { return capacity_per_shard_ * kShards; }
  // Upper bound of the memory one entry costs (key, inline weights, the hash table's slack).
  static constexpr std::size_t kBytesPerEntry = 2 * (sizeof(uint64_t) + sizeof(int64_t) + sizeof(Weights));

 private:
  struct Key {
    uint32_t app = 0;
    int64_t uid = 0;
    bool operator==(const Key&) const = default;
    template <typename H>
    friend H AbslHashValue(H state, const Key& key) {
      return H::combine(std::move(state), key.app, key.uid);
    }
  };
  struct Shard {
    mutable std::shared_mutex mutex;
    absl::flat_hash_map<Key, Weights> entries;
  };

  Shard& shard_of(const Key& key) const;

  std::size_t capacity_per_shard_;
  mutable std::array<Shard, kShards> shards_;
  std::mutex apps_mutex_;  // control thread only
  absl::flat_hash_map<std::string, uint32_t> app_ids_;
};

}  // namespace clipper
