#include "common/cache_key.h"

#include <xxhash.h>

namespace clipper {

CacheKey make_cache_key(uint64_t model_id, std::string_view input) {
  const XXH128_hash_t hash = XXH3_128bits(input.data(), input.size());
  return CacheKey{model_id, hash.low64, hash.high64};
}

}  // namespace clipper
