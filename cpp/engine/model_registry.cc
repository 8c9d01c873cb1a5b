#include "engine/model_registry.h"

namespace clipper {

ModelVersion* ModelRegistry::find_or_create(const std::string& name, const std::string& version,
                                            InputType type) {
  std::lock_guard lock(mutex_);
  auto& slot = versions_[{name, version}];
  if (slot) return slot->input_type == type ? slot.get() : nullptr;
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
