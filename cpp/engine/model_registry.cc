#include "engine/model_registry.h"

namespace clipper {

ModelVersion* ModelRegistry::find_or_create(const std::string& name, const std::string& version,
                                            InputType type) {
  std::lock_guard lock(mutex_);
  unconfigured_.erase({name, version});
  auto& slot = versions_[{name, version}];
  if (slot) return slot->input_type == type ? slot.get() : nullptr;
  slot = std::make_unique<ModelVersion>(next_id_++, name, version, type, metrics_.model(name, version));
  generation_.fetch_add(1, std::memory_order_release);
  return slot.get();
}

ModelVersion* ModelRegistry::find_or_create_for_replica(const std::string& name, const std::string& version,
                                                        InputType type, bool& refused) {
  std::lock_guard lock(mutex_);
  refused = false;
  const auto key = std::make_pair(name, version);
  auto found = versions_.find(key);
  if (found != versions_.end()) return found->second->input_type == type ? found->second.get() : nullptr;
  if (unconfigured_.size() >= kMaxUnconfiguredVersions) {
    refused = true;
    return nullptr;
  }
  unconfigured_.insert(key);
  auto& slot = versions_[key];
  slot = std::make_unique<ModelVersion>(next_id_++, name, version, type, metrics_.model(name, version));
  generation_.fetch_add(1, std::memory_order_release);
  return slot.get();
}

ModelVersion* ModelRegistry::find(const std::string& name, const std::string& version) const {
  std::lock_guard lock(mutex_);
  auto found = versions_.find({name, version});
  return found == versions_.end() ? nullptr : found->second.get();
}

std::vector<ModelVersion*> ModelRegistry::all() const {
  std::lock_guard lock(mutex_);
  std::vector<ModelVersion*> result;
  result.reserve(versions_.size());
  for (const auto& [key, version] : versions_) result.push_back(version.get());
  return result;
}

}  // namespace clipper
