// DeadlineQueue (FIFO lanes per SLO: query/deadline_queue.h over common/deadline_lanes.h) against
// the binary min-heap it replaced, in the same run: an I/O thread's steady state, where every query
// is added with its deadline and stays queued until that deadline (lazy deletion), so `resident` =
// arrival rate x SLO entries wait. Each step adds one query (arrival clock + its app's SLO) and
// expires what is due, as QueryProcessor does. Reports nanoseconds per query (add + pop), the median
// of --repeats runs for each implementation, alternating them, and the ratio lanes / heap.
//
//   build/ctest/bench/micro/deadline_queue_bench [--repeats 7] [--queries 2000000]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <queue>
#include <string>
#include <vector>

#include "bench_stats.h"
#include "query/deadline_queue.h"

namespace {

using micro_bench::median;
using clipper::Clock;
using std::chrono::microseconds;

// The previous implementation, kept as the reference.
class DeadlineHeap {
 public:
  void add(Clock::time_point deadline, uint64_t query_key) { heap_.push({deadline, query_key}); }
  template <typename OnDue>
  void expire_until(Clock::time_point now, OnDue&& on_due) {
    while (!heap_.empty() && heap_.top().deadline <= now) {
      const uint64_t key = heap_.top().query_key;
      heap_.pop();
      on_due(key);
    }
  }

 private:
  struct Entry {
    Clock::time_point deadline;
    uint64_t query_key;
    bool operator>(const Entry& other) const { return deadline > other.deadline; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap_;
};

struct Scenario {
  std::string name;
  std::vector<int64_t> slo_micros;  // apps' SLOs, queries cycle through them
  int64_t gap_nanos;                // between arrivals
};

// Nanoseconds per query of one run; `sink` keeps the work from being optimised away.
template <typename Queue>
double run(const Scenario& scenario, uint64_t queries, uint64_t& sink) {
  Queue queue;
  const Clock::time_point base{};
  const std::size_t apps = scenario.slo_micros.size();
  const auto started = std::chrono::steady_clock::now();
  for (uint64_t key = 0; key < queries; ++key) {
    const Clock::time_point now = base + std::chrono::nanoseconds(static_cast<int64_t>(key) * scenario.gap_nanos);
    queue.add(now + microseconds(scenario.slo_micros[key % apps]), key);
    queue.expire_until(now, [&sink](uint64_t due) { sink += due; });
  }
  const auto elapsed = std::chrono::steady_clock::now() - started;
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()) /
         static_cast<double>(queries);
}

}  // namespace

int main(int argc, char** argv) {
  int repeats = 7;
  uint64_t queries = 2'000'000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--repeats") == 0) repeats = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--queries") == 0) queries = std::strtoull(argv[i + 1], nullptr, 10);
  }
  // 50 us between arrivals = 20,000 req/s on one I/O thread.
  const std::vector<Scenario> scenarios = {
      {"1 SLO 20 ms (400 resident)", {20'000}, 50'000},
      {"1 SLO 100 ms (2,000 resident)", {100'000}, 50'000},
      {"1 SLO 1 s (20,000 resident)", {1'000'000}, 50'000},
      {"3 SLOs 5/20/100 ms interleaved", {5'000, 20'000, 100'000}, 50'000},
      {"8 SLOs 1..128 ms interleaved", {1'000, 2'000, 4'000, 8'000, 16'000, 32'000, 64'000, 128'000}, 50'000},
      {"12 SLOs (4 overflow to the heap)", {1'000, 2'000, 3'000, 4'000, 5'000, 6'000, 7'000, 8'000, 9'000, 10'000,
                                            11'000, 12'000}, 50'000},
  };
  uint64_t sink = 0;
  std::printf("{\"queries_per_run\": %llu, \"repeats\": %d, \"scenarios\": [\n",
              static_cast<unsigned long long>(queries), repeats);
  for (std::size_t s = 0; s < scenarios.size(); ++s) {
    std::vector<double> heap;
    std::vector<double> lanes;
    for (int r = 0; r < repeats; ++r) {
      if (r % 2 == 0) {
        heap.push_back(run<DeadlineHeap>(scenarios[s], queries, sink));
        lanes.push_back(run<clipper::DeadlineQueue>(scenarios[s], queries, sink));
      } else {
        lanes.push_back(run<clipper::DeadlineQueue>(scenarios[s], queries, sink));
        heap.push_back(run<DeadlineHeap>(scenarios[s], queries, sink));
      }
    }
    const double heap_ns = median(heap);
    const double lanes_ns = median(lanes);
    std::printf("  {\"scenario\": \"%s\", \"heap_ns_per_query\": %.1f, \"lanes_ns_per_query\": %.1f, "
                "\"lanes_over_heap\": %.3f}%s\n",
                scenarios[s].name.c_str(), heap_ns, lanes_ns, lanes_ns / heap_ns, s + 1 < scenarios.size() ? "," : "");
  }
  std::printf("], \"checksum\": %llu}\n", static_cast<unsigned long long>(sink));
  return 0;
}
