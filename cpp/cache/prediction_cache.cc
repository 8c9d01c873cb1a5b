#include "cache/prediction_cache.h"

#include <algorithm>

namespace clipper {

PredictionCache::PredictionCache(std::size_t capacity_bytes)
    : capacity_bytes_(capacity_bytes),
      shard_capacity_bytes_(capacity_bytes / kShards),
      shards_(std::make_unique<Shard[]>(kShards)) {}

PredictionCache::Lookup PredictionCache::lookup(const CacheKey& key, const CacheWaiter& waiter,
                                                std::string& output, ModelConfidence* confidence) {
  if (!enabled()) return Lookup::Miss;
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  // One probe: a miss claims a slot and inserts its entry where the probe ended.
  bool missed = false;
  auto found = shard.index.lazy_emplace(key, [&](const auto& construct) {
    missed = true;
    construct(entry_of(hash_of(key), claim_slot(shard, key)));
  });
  if (missed) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return Lookup::Miss;
  }
  Slot& slot = shard.slots[slot_of(*found)];
  if (slot.state == Slot::State::Pending) {
    shard.waiters[slot_of(*found)].push_back(waiter);
    coalesced_.fetch_add(1, std::memory_order_relaxed);
    return Lookup::Joined;
  }
  slot.referenced = true;
  output = slot.output;
  if (confidence != nullptr) {
    *confidence = slot.has_confidence ? ModelConfidence(slot.confidence_value) : std::nullopt;
  }
  hits_.fetch_add(1, std::memory_order_relaxed);
  return Lookup::Hit;
}

bool PredictionCache::holds(const CacheKey& key) {
  if (!enabled()) return false;
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto found = shard.index.find(key);
  return found != shard.index.end() && shard.slots[slot_of(*found)].state == Slot::State::Ready;
}

std::vector<CacheWaiter> PredictionCache::resolve(const CacheKey& key, std::string_view output,
                                                  ModelConfidence confidence) {
  if (!enabled()) return {};
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  const std::size_t cost = output.size() + kEntryOverheadBytes;
  auto found = shard.index.find(key);
  uint32_t index = 0;
  if (found == shard.index.end()) {
    // A late answer for a key that was handed over and dropped: keep it, it is still right.
    if (cost > shard_capacity_bytes_) return {};
    index = claim_slot(shard, key);
    shard.index.insert(entry_of(hash_of(key), index));
  } else {
    index = slot_of(*found);
    if (shard.slots[index].state != Slot::State::Pending) return {};  // a duplicate finished second
  }
  Slot& slot = shard.slots[index];
  std::vector<CacheWaiter> waiters = take_waiters(shard, index);
  if (cost > shard_capacity_bytes_) {  // never fits: answer the waiters, store nothing
    shard.index.erase(key);
    release_slot(shard, index);
    return waiters;
  }
  slot.state = Slot::State::Ready;
  slot.referenced = false;
  slot.output.assign(output.data(), output.size());
  slot.has_confidence = confidence.has_value();
  slot.confidence_value = confidence.value_or(0.0F);
  shard.bytes += cost;
  evict_until_fits(shard, index);
  return waiters;
}

std::vector<CacheWaiter> PredictionCache::fail(const CacheKey& key) {
  if (!enabled()) return {};
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto found = shard.index.find(key);
  if (found == shard.index.end()) return {};
  const uint32_t index = slot_of(*found);
  Slot& slot = shard.slots[index];
  if (slot.state != Slot::State::Pending) return {};
  std::vector<CacheWaiter> waiters = take_waiters(shard, index);
  shard.index.erase(found);
  release_slot(shard, index);
  return waiters;
}

std::optional<CacheWaiter> PredictionCache::hand_over(const CacheKey& key, Clock::time_point now) {
  if (!enabled()) return std::nullopt;
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto found = shard.index.find(key);
  if (found == shard.index.end()) return std::nullopt;
  const uint32_t index = slot_of(*found);
  Slot& slot = shard.slots[index];
  if (slot.state != Slot::State::Pending) return std::nullopt;
  auto joined = shard.waiters.find(index);
  if (joined != shard.waiters.end()) {
    auto& waiters = joined->second;
    waiters.erase(std::remove_if(waiters.begin(), waiters.end(),
                                 [now](const CacheWaiter& waiter) { return waiter.deadline <= now; }),
                  waiters.end());
  }
  if (joined == shard.waiters.end() || joined->second.empty()) {
    if (joined != shard.waiters.end()) shard.waiters.erase(joined);
    shard.index.erase(found);
    release_slot(shard, index);
    return std::nullopt;
  }
  auto& waiters = joined->second;
  auto latest = std::max_element(waiters.begin(), waiters.end(), [](const CacheWaiter& a, const CacheWaiter& b) {
    return a.deadline < b.deadline;
  });
  CacheWaiter owner = *latest;
  waiters.erase(latest);
  if (waiters.empty()) shard.waiters.erase(joined);
  return owner;
}

uint32_t PredictionCache::claim_slot(Shard& shard, const CacheKey& key) {
  uint32_t index = 0;
  if (!shard.free_slots.empty()) {
    index = shard.free_slots.back();
    shard.free_slots.pop_back();
  } else {
    index = static_cast<uint32_t>(shard.slots.size());
    shard.slots.emplace_back();
  }
  Slot& slot = shard.slots[index];
  slot.key = key;
  slot.state = Slot::State::Pending;
  slot.referenced = false;
  slot.has_confidence = false;
  return index;
}

void PredictionCache::release_slot(Shard& shard, uint32_t index) {
  Slot& slot = shard.slots[index];
  slot.state = Slot::State::Free;
  std::string().swap(slot.output);  // give a large output's memory back now
  shard.free_slots.push_back(index);
}

std::vector<CacheWaiter> PredictionCache::take_waiters(Shard& shard, uint32_t slot) {
  if (shard.waiters.empty()) return {};  // the usual case: nobody joined any pending evaluation
  auto joined = shard.waiters.find(slot);
  if (joined == shard.waiters.end()) return {};
  std::vector<CacheWaiter> waiters = std::move(joined->second);
  shard.waiters.erase(joined);
  return waiters;
}

void PredictionCache::evict_until_fits(Shard& shard, uint32_t newest) {
  // CLOCK over the slot array: a referenced entry gets a second chance (its bit cleared). Two
  // sweeps always suffice: the first clears every bit. The entry just stored is never the victim
  // (a slot appended under the hand would otherwise go at once).
  const std::size_t size = shard.slots.size();
  for (std::size_t step = 0; shard.bytes > shard_capacity_bytes_ && step < 2 * size; ++step) {
    if (shard.hand >= size) shard.hand = 0;
    const uint32_t index = static_cast<uint32_t>(shard.hand++);
    Slot& slot = shard.slots[index];
    if (slot.state != Slot::State::Ready || index == newest) continue;
    if (slot.referenced) {
      slot.referenced = false;
      continue;
    }
    shard.bytes -= slot.output.size() + kEntryOverheadBytes;
    shard.index.erase(entry_of(hash_of(slot.key), index));  // compares entries, reads no other slot
    release_slot(shard, index);
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
    statistics.entries += shards_[i].index.size();
    statistics.bytes += shards_[i].bytes;
  }
  return statistics;
}

}  // namespace clipper
