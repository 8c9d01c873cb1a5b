// PredictionCache (cache/prediction_cache.h) under W1's steady state: every input is new, the cache is
// full, so each query is a miss (lookup), then its answer is stored (resolve) and an older entry
// evicted. Reports nanoseconds per query (lookup + resolve, eviction included), the median of
// --repeats runs, for each --capacities-mib (W1 shape: a short number output per entry).
// It measures the implementation it is built with; prediction_cache_ab.sh builds it over two
// versions of cpp/cache/ and runs them alternately (bench/README.md, "The prediction cache's hot path").
//
//   build/ctest/bench/micro/prediction_cache_bench [--repeats 7] [--queries 2000000]
//                                                  [--capacities-mib 2 32]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_stats.h"
#include "cache/prediction_cache.h"

namespace {

using micro_bench::median;
using clipper::CacheKey;
using clipper::PredictionCache;

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Keys as make_cache_key makes them (a 128-bit hash is uniformly distributed); hashing the input is
// the caller's cost, not the cache's.
CacheKey next_key(uint64_t& state) { return CacheKey{1, splitmix64(state), splitmix64(state)}; }

constexpr const char* kOutput = "0.4375";  // a W1 answer: one number

// One query of W1: a miss, then its answer stored (evicting once the cache is full).
void miss_and_store(PredictionCache& cache, const CacheKey& key, std::string& scratch) {
  const clipper::CacheWaiter waiter{};
  if (cache.lookup(key, waiter, scratch) != PredictionCache::Lookup::Miss) std::abort();
  cache.resolve(key, kOutput);
}

// Nanoseconds per query of one run over a cache filled first (twice its entries stored).
double run(std::size_t capacity_bytes, uint64_t queries, uint64_t seed, uint64_t& sink) {
  PredictionCache cache(capacity_bytes);
  uint64_t state = seed;
  std::string scratch;
  uint64_t filled = 0;
  while (cache.statistics().evictions == 0 || filled < 2 * cache.statistics().entries) {
    for (int i = 0; i < 1024; ++i) miss_and_store(cache, next_key(state), scratch);
    filled += 1024;
  }
  const uint64_t evictions_before = cache.statistics().evictions;
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < queries; ++i) miss_and_store(cache, next_key(state), scratch);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  const auto statistics = cache.statistics();
  if (statistics.evictions - evictions_before < queries / 2) std::abort();  // not a full cache
  sink += statistics.entries;
  return std::chrono::duration<double, std::nano>(elapsed).count() / static_cast<double>(queries);
}

}  // namespace

int main(int argc, char** argv) {
  int repeats = 7;
  uint64_t queries = 2000000;
  std::vector<std::size_t> capacities_mib;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--repeats") == 0 && i + 1 < argc) {
      repeats = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--queries") == 0 && i + 1 < argc) {
      queries = std::strtoull(argv[++i], nullptr, 10);
    } else if (std::strcmp(argv[i], "--capacities-mib") == 0) {
      while (i + 1 < argc && argv[i + 1][0] != '-') capacities_mib.push_back(std::strtoull(argv[++i], nullptr, 10));
    } else {
      std::fprintf(stderr, "usage: %s [--repeats N] [--queries N] [--capacities-mib MIB ...]\n", argv[0]);
      return 2;
    }
  }
  if (capacities_mib.empty()) capacities_mib = {2, 32};
  if (repeats < 1 || queries < 1) return 2;
  uint64_t sink = 0;
  std::printf("{\"queries_per_run\": %llu, \"repeats\": %d, \"capacities\": [\n",
              static_cast<unsigned long long>(queries), repeats);
  for (std::size_t c = 0; c < capacities_mib.size(); ++c) {
    std::vector<double> runs;
    for (int r = 0; r < repeats; ++r) runs.push_back(run(capacities_mib[c] << 20, queries, 1000 + r, sink));
    std::printf("  {\"capacity_mib\": %zu, \"ns_per_miss_store_evict\": %.1f, \"min\": %.1f, \"max\": %.1f}%s\n",
                capacities_mib[c], median(runs), *std::min_element(runs.begin(), runs.end()),
                *std::max_element(runs.begin(), runs.end()), c + 1 < capacities_mib.size() ? "," : "");
  }
  std::printf("], \"checksum\": %llu}\n", static_cast<unsigned long long>(sink));
  return 0;
}
