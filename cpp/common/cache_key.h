// The identity of one prediction: a model version and a 128-bit XXH3 hash of the input's bytes,
// so a new version never sees an old version's answers. Owns only the key and how it is made;
// no thread affinity.
#pragma once

#include <cstdint>
#include <string_view>

namespace clipper {

struct CacheKey {
  uint64_t model_id = 0;  // identifies the model version (distinct per version)
  uint64_t hash_low = 0;
  uint64_t hash_high = 0;
  bool operator==(const CacheKey& other) const {
    return model_id == other.model_id && hash_low == other.hash_low && hash_high == other.hash_high;
  }
};

CacheKey make_cache_key(uint64_t model_id, std::string_view input);

}  // namespace clipper
