#include "selection/selection_weights.h"

#include <absl/hash/hash.h>

#include <algorithm>

namespace clipper {

SelectionWeights::SelectionWeights(std::size_t capacity_entries)
    : capacity_per_shard_(std::max<std::size_t>(1, capacity_entries / kShards)) {}

SelectionWeights::Shard& SelectionWeights::shard_of(const Key& key) const {
  return shards_[absl::Hash<Key>{}(key) % kShards];
}

uint32_t SelectionWeights::register_app(std::string_view app) {
  std::lock_guard lock(apps_mutex_);
  auto [slot, inserted] = app_ids_.try_emplace(std::string(app), static_cast<uint32_t>(app_ids_.size() + 1));
  return slot->second;
}

void SelectionWeights::set(uint32_t app, int64_t uid, std::span<const double> weights) {
  const Key key{app, uid};
  Shard& shard = shard_of(key);
  Weights stored(weights.begin(), weights.end());
  std::unique_lock lock(shard.mutex);
  auto found = shard.entries.find(key);
  if (found != shard.entries.end()) {
    found->second = std::move(stored);
    return;
  }
  if (shard.entries.size() >= capacity_per_shard_) shard.entries.erase(shard.entries.begin());
  shard.entries.emplace(key, std::move(stored));
}

void SelectionWeights::erase(uint32_t app, int64_t uid) {
  const Key key{app, uid};
  Shard& shard = shard_of(key);
  std::unique_lock lock(shard.mutex);
  shard.entries.erase(key);
}

void SelectionWeights::erase_app(uint32_t app) {
  for (Shard& shard : shards_) {
    std::unique_lock lock(shard.mutex);
    absl::erase_if(shard.entries, [app](const auto& entry) { return entry.first.app == app; });
  }
}

bool SelectionWeights::get(uint32_t app, int64_t uid, std::vector<double>& out) const {
  const Key key{app, uid};
  const Shard& shard = shard_of(key);
  std::shared_lock lock(shard.mutex);
  auto found = shard.entries.find(key);
  if (found == shard.entries.end()) return false;
  out.assign(found->second.begin(), found->second.end());
  return true;
}

std::size_t SelectionWeights::size() const {
  std::size_t total = 0;
  for (const Shard& shard : shards_) {
    std::shared_lock lock(shard.mutex);
    total += shard.entries.size();
  }
  return total;
}

}  // namespace clipper
