// The frontend process's own metrics (CPU time, memory, file descriptors, start time) read from
// /proc/self on each scrape, and the clipper_build_info gauge, in the Prometheus text format with the
// standard names that client libraries export. Runs on whichever thread answers /metrics.
#pragma once

#include <cstdint>
#include <string>

namespace clipper::metrics {

struct ProcessStatistics {
  double cpu_seconds = 0;          // user + system time
  double start_time_seconds = 0;   // since the Unix epoch
  uint64_t resident_memory_bytes = 0;
  uint64_t virtual_memory_bytes = 0;
  uint64_t open_fds = 0;
  uint64_t max_fds = 0;            // the soft RLIMIT_NOFILE
};

// Reads this process's statistics; fields it cannot read stay 0 (Linux /proc is expected).
ProcessStatistics read_process_statistics();

// Appends the process_* families (HELP, TYPE and one sample each).
void render_process_metrics(std::string& out, const ProcessStatistics& statistics);

// Appends clipper_build_info{version="...",commit="..."} 1.
void render_build_info(std::string& out, const std::string& version, const std::string& commit);

}  // namespace clipper::metrics
