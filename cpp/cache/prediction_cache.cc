#include "cache/prediction_cache.h"

#include <xxhash.h>

#include <algorithm>

namespace clipper {

CacheKey make_cache_key(uint64_t model_id, std::string_view input) {
  const XXH128_hash_t hash = XXH3_128bits(input.data(), input.size());
  return CacheKey{model_id, hash.low64, hash.high64};
}

PredictionCache::PredictionCache(std::size_t capacity_bytes)
    : capacity_bytes_(capacity_bytes),
      shard_capacity_bytes_(capacity_bytes / kShards),
      shards_(std::make_unique<Shard[]>(kShards)) {}

PredictionCache::Lookup PredictionCache::lookup(const CacheKey& key, const CacheWaiter& waiter,
                                                std::string& output) {
  if (!enabled()) return Lookup::Miss;
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto [found, inserted] = shard.entries.try_emplace(key);
  if (inserted) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return Lookup::Miss;
  }
  Entry& entry = found->second;
  if (entry.pending) {
    entry.waiters.push_back(waiter);
    coalesced_.fetch_add(1, std::memory_order_relaxed);
    return Lookup::Joined;
  }
  entry.referenced = true;
  output = entry.output;
  hits_.fetch_add(1, std::memory_order_relaxed);
  return Lookup::Hit;
}

std::vector<CacheWaiter> PredictionCache::resolve(const CacheKey& key, std::string_view output) {
  if (!enabled()) return {};
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto found = shard.entries.find(key);
  const std::size_t cost = output.size() + kEntryOverheadBytes;
  if (found == shard.entries.end()) {
    // A late answer for a key that was handed over and dropped: keep it, it is still right.
    if (cost > shard_capacity_bytes_) return {};
    found = shard.entries.try_emplace(key).first;
  } else if (!found->second.pending) {
    return {};  // a duplicate evaluation finished second; the first answer stays
  }
  Entry& entry = found->second;
  std::vector<CacheWaiter> waiters = std::move(entry.waiters);
  entry.waiters.clear();
  if (cost > shard_capacity_bytes_) {  // never fits: answer the waiters, store nothing
    shard.entries.erase(found);
    return waiters;
  }
  entry.pending = false;
  entry.referenced = false;
  entry.output.assign(output.data(), output.size());
  shard.bytes += cost;
  shard.clock.push_back(key);
  evict_until_fits(shard);
  return waiters;
}

std::vector<CacheWaiter> PredictionCache::fail(const CacheKey& key) {
  if (!enabled()) return {};
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto found = shard.entries.find(key);
  if (found == shard.entries.end() || !found->second.pending) return {};
  std::vector<CacheWaiter> waiters = std::move(found->second.waiters);
  shard.entries.erase(found);
  return waiters;
}

std::optional<CacheWaiter> PredictionCache::hand_over(const CacheKey& key, Clock::time_point now) {
  if (!enabled()) return std::nullopt;
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto found = shard.entries.find(key);
  if (found == shard.entries.end() || !found->second.pending) return std::nullopt;
  auto& waiters = found->second.waiters;
  waiters.erase(std::remove_if(waiters.begin(), waiters.end(),
                               [now](const CacheWaiter& waiter) { return waiter.deadline <= now; }),
                waiters.end());
  if (waiters.empty()) {
    shard.entries.erase(found);
    return std::nullopt;
  }
  auto latest = std::max_element(waiters.begin(), waiters.end(), [](const CacheWaiter& a, const CacheWaiter& b) {
    return a.deadline < b.deadline;
  });
  CacheWaiter owner = *latest;
  waiters.erase(latest);
  return owner;
}

void PredictionCache::evict_until_fits(Shard& shard) {
  // CLOCK: a referenced entry gets a second chance (its bit cleared, moved to the back).
  std::size_t inspected = 0;
  while (shard.bytes > shard_capacity_bytes_ && !shard.clock.empty() && inspected < 4 * shard.clock.size() + 4) {
    ++inspected;
    const CacheKey key = shard.clock.front();
    shard.clock.pop_front();
    auto found = shard.entries.find(key);
    if (found == shard.entries.end() || found->second.pending) continue;
    if (found->second.referenced) {
      found->second.referenced = false;
      shard.clock.push_back(key);
      continue;
    }
    shard.bytes -= found->second.output.size() + kEntryOverheadBytes;
    shard.entries.erase(found);
    evictions_.fetch_add(1, std::memory_order_relaxed);
  }
}

CacheStatistics PredictionCache::statistics() const {
  CacheStatistics statistics;
  statistics.hits = hits_.load(std::memory_order_relaxed);
  statistics.misses = misses_.load(std::memory_order_relaxed);
  statistics.coalesced = coalesced_.load(std::memory_order_relaxed);
  statistics.evictions = evictions_.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < kShards; ++i) {
    std::lock_guard lock(shards_[i].mutex);
    statistics.entries += shards_[i].entries.size();
    statistics.bytes += shards_[i].bytes;
  }
  return statistics;
}

}  // namespace clipper
