#include "metrics/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

#include "metrics/metrics.h"

namespace clipper::metrics {

namespace {

// Seconds since the epoch at which the machine booted (/proc/stat's btime), 0 when unreadable.
double boot_time_seconds() {
  std::ifstream stat("/proc/stat");
  std::string key;
  while (stat >> key) {
    if (key == "btime") {
      double seconds = 0;
      stat >> seconds;
      return seconds;
    }
    stat.ignore(1 << 16, '\n');
  }
  return 0;
}

uint64_t count_open_fds() {
  DIR* directory = ::opendir("/proc/self/fd");
  if (directory == nullptr) return 0;
  uint64_t count = 0;
  while (const dirent* entry = ::readdir(directory)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(directory);
  return count > 0 ? count - 1 : 0;  // the directory stream itself holds one
}

std::string format_double(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.15g", value);
  return text;
}

void family(std::string& out, const char* name, const char* type, const char* help, const std::string& value) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + value +
         "\n";
}

}  // namespace

ProcessStatistics read_process_statistics() {
  ProcessStatistics statistics;
  std::ifstream file("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  const std::size_t close = text.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(text.substr(close + 2));
    std::vector<std::string> values;
    std::string value;
    while (fields >> value) values.push_back(value);
    // values[0] is field 3 (state): field k is values[k - 3].
    if (values.size() > 21) {
      const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
      const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
      statistics.cpu_seconds = (std::stod(values[14 - 3]) + std::stod(values[15 - 3])) / ticks;
      statistics.start_time_seconds = boot_time_seconds() + std::stod(values[22 - 3]) / ticks;
      statistics.virtual_memory_bytes = std::stoull(values[23 - 3]);
      statistics.resident_memory_bytes = static_cast<uint64_t>(std::stod(values[24 - 3]) * page);
    }
  }
  statistics.open_fds = count_open_fds();
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) statistics.max_fds = static_cast<uint64_t>(limit.rlim_cur);
  return statistics;
}

void render_process_metrics(std::string& out, const ProcessStatistics& statistics) {
  family(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
         format_double(statistics.cpu_seconds));
  family(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
         std::to_string(statistics.resident_memory_bytes));
  family(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
         std::to_string(statistics.virtual_memory_bytes));
  family(out, "process_open_fds", "gauge", "Number of open file descriptors.", std::to_string(statistics.open_fds));
  family(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
         std::to_string(statistics.max_fds));
  family(out, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
         format_double(statistics.start_time_seconds));
}

void render_build_info(std::string& out, const std::string& version, const std::string& commit) {
  out += "# HELP clipper_build_info The frontend's version and the commit it was built from (always 1).\n"
         "# TYPE clipper_build_info gauge\n"
         "clipper_build_info{version=\"" +
         escape_label(version) + "\",commit=\"" + escape_label(commit) + "\"} 1\n";
}

}  // namespace clipper::metrics
