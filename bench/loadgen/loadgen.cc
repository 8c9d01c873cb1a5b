// clipper-loadgen: an HTTP/1.1 keep-alive load generator for benchmarks on loopback.
// Owns the client connections, the request schedule, response parsing (llhttp), the latency samples
// and the JSON report on stdout. It does not own or start the server under test.
// One thread: an epoll loop woken by socket events, or by epoll_pwait2's nanosecond timeout at the next
// scheduled event (no timer file descriptor: arming and reading one cost two system calls per wake-up;
// one is used only where epoll_pwait2 is missing: kernels before 5.11, valgrind).
//
// Modes
//   closed  (--connections N, no --rate): each connection sends its next request as soon as the previous
//           answer arrives; latency is measured from the actual send.
//   open    (--rate R): arrivals follow a Poisson or uniform process at R requests/s, spread over
//           N keep-alive connections; a request arriving while every connection is busy waits in a FIFO.
//           N is the client population: by Little's law it must exceed R x the time a request holds a
//           connection, else the FIFO grows and the run measures the generator (waited_for_connection,
//           max_queue_depth and send_lag_us say so). Arrivals start once every connection is open (or
//           the connect timeout passed): a population connects before it sends, and requests queued
//           behind connects would measure the connects.
//   hold    (--hold-connections N): opens N keep-alive connections, sends one request on each (unless
//           --no-hold-request), then keeps them open and idle for --duration seconds.
//
// Invariant (open loop): every request gets its intended send time from the arrival process before it is
// queued, and its latency is measured from that time, never from the moment a connection became free, so a
// server that falls behind cannot hide its queueing delay (no coordinated omission). Requests still queued
// or in flight when the run stops are reported as `unfinished`, never silently dropped.
//
// Source addresses (--source-addresses K): connection i binds to 127.0.0.(2 + i mod K) before connecting,
// so a loopback server sees K client hosts, as a real population arrives from many addresses, and a
// per-client-address connection cap applies as it would in a deployment.
//
// The run always stops by itself: after warmup + duration + drain, or at the hard bound --max-seconds.

extern "C" {
#include <llhttp.h>
}

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr uint64_t kNanosPerSecond = 1'000'000'000ULL;
// Connects in progress at once; more would overflow the server's accept backlog and stall on SYN retries.
constexpr size_t kMaxConnectsInFlight = 256;
// Response bodies are scanned for "default":true; larger bodies are only partly scanned.
constexpr size_t kMaxScannedBodyBytes = 64 * 1024;
// The kernel lets a sleep of T run late by up to T / 1000 (select_estimate_accuracy); a longer sleep ends
// this much early and the rest is slept again, so no scheduled event is woken more than ~1 us late.
constexpr uint64_t kSharpSleepNanos = 1'000'000;
// The epoll token of the fallback timerfd (kernels before 5.11 and valgrind lack epoll_pwait2).
constexpr uint64_t kTimerToken = UINT64_MAX;
// --source-addresses: 127.0.0.2 .. 127.0.0.254 (127.0.0.1 is the default source; .255 is left alone).
constexpr uint64_t kFirstSourceHost = 2;
constexpr uint64_t kMaxSourceAddresses = 253;

volatile sig_atomic_t g_stop_requested = 0;

void on_stop_signal(int) { g_stop_requested = 1; }

uint64_t monotonic_nanos() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * kNanosPerSecond + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t seconds_to_nanos(double seconds) { return static_cast<uint64_t>(std::llround(seconds * 1e9)); }

// splitmix64: a fast, well-mixed 64-bit hash; used to derive request vectors from counters and keys.
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

double unit_interval(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

enum class Mode { kClosed, kOpen, kHold };
enum class Workload { kNone, kFixed, kW1, kZipf };
// How a vector workload's input is written: Clipper's {"input": [...]}, or an Open Inference Protocol
// infer request with one FP64 [1, 10] tensor, in JSON or binary (tritonclient's default form).
enum class BodyFormat { kClipper, kOipJson, kOipBinary };
enum class Arrivals { kPoisson, kUniform };

const char* mode_name(Mode mode) {
  switch (mode) {
    case Mode::kClosed: return "closed";
    case Mode::kOpen: return "open";
    case Mode::kHold: return "hold";
  }
  return "?";
}

const char* workload_name(Workload workload) {
  switch (workload) {
    case Workload::kNone: return "none";
    case Workload::kFixed: return "fixed";
    case Workload::kW1: return "w1";
    case Workload::kZipf: return "zipf";
  }
  return "?";
}

struct Options {
  std::string url;
  std::string method = "POST";
  std::vector<std::string> extra_headers;     // "Name: value", sent with every request
  Workload workload = Workload::kNone;
  std::string fixed_body;                     // --body
  BodyFormat body_format = BodyFormat::kClipper;  // --body-format, for --w1 and --zipf-keys
  uint64_t connections = 1;                   // closed/open loop connections
  double rate_per_second = 0.0;               // > 0 selects the open loop
  Arrivals arrivals = Arrivals::kPoisson;
  double duration_seconds = 10.0;             // measured window (hold: how long connections are held)
  double warmup_seconds = 1.0;                // requests sent before the window are not measured
  double drain_seconds = 2.0;                 // after the window, wait this long for answers in flight
  double connect_timeout_seconds = 0.0;       // 0 = 5 s, or 10 s + 1 s per 1,000 held connections
  double max_seconds = 0.0;                   // hard bound on the whole run; 0 = derived from the above
  uint64_t hold_connections = 0;              // > 0 selects the hold mode
  bool hold_request = true;                   // hold mode: send one request on each connection first
  uint64_t zipf_keys = 0;                     // --zipf-keys K: K distinct vectors
  double zipf_exponent = 1.0;                 // --zipf-s S: popularity of key k is proportional to k^-S
  uint64_t seed = 0;                          // 0 = from the clock (W1 vectors differ from run to run)
  double spin_micros = 0.0;                   // poll instead of sleeping when the next event is this close
  bool busy_poll = false;                     // never sleep: poll epoll in a loop (one busy core)
  double slo_micros = 0.0;                    // --slo-us: count 2xx model answers within it (goodput)
  uint64_t source_addresses = 0;              // > 0: bind connections to 127.0.0.2 .. 127.0.0.(K+1)
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "clipper-loadgen: %s (see --help)\n", message.c_str());
  std::exit(2);
}

void print_help() {
  std::puts(
      "usage: clipper-loadgen --url http://127.0.0.1:PORT/path [options]\n"
      "\n"
      "HTTP/1.1 keep-alive load generator (single thread, epoll). Prints one JSON object on stdout.\n"
      "\n"
      "mode (closed loop unless --rate or --hold-connections is given):\n"
      "  --connections N        keep-alive connections (default 1)\n"
      "  --rate R               open loop: R requests/s, latency from the intended send time\n"
      "  --arrivals KIND        open loop arrival process: poisson (default) or uniform\n"
      "  --hold-connections N   open N keep-alive connections and hold them idle for --duration\n"
      "  --no-hold-request      hold mode: do not send the one request per connection first\n"
      "\n"
      "timing (seconds):\n"
      "  --duration S           measured window; hold mode: how long to hold (default 10)\n"
      "  --warmup S             unmeasured time before the window (default 1)\n"
      "  --drain S              wait for answers in flight after the window (default 2)\n"
      "  --connect-timeout S    give up connecting after S (default 5; open loop and hold: 10 + N/1000)\n"
      "  --max-seconds S        hard bound on the whole run (default: sum of the above + 5)\n"
      "                         (open loop: arrivals start once every connection is open)\n"
      "\n"
      "request:\n"
      "  --url URL              http://HOST:PORT/PATH (IPv4 or a resolvable name)\n"
      "  --method M             default POST\n"
      "  --header 'K: V'        extra request header (repeatable)\n"
      "  --body STRING          the same body on every request\n"
      "  --w1                   workload W1: {\"input\":[10 doubles]}, every request's vector distinct\n"
      "  --zipf-keys K          K distinct 10-double vectors, drawn with Zipf popularity...\n"
      "  --zipf-s S             ...of exponent S (default 1.0)\n"
      "  --body-format F        how --w1/--zipf vectors are sent: clipper (default), oip-json or\n"
      "                         oip-binary (an Open Inference Protocol FP64 [1, 10] tensor)\n"
      "  --seed N               random seed (default: from the clock)\n"
      "  --spin-us U            busy-poll when the next arrival is within U us, instead of sleeping\n"
      "                         (sharper send times, at the cost of a busy core; default 0)\n"
      "  --busy-poll            never sleep in epoll_wait: no wake-up delay on this side, one busy core\n"
      "  --slo-us U             also count answers_within_slo: 2xx, not a default, latency <= U us\n"
      "  --source-addresses K   connect from K loopback addresses, 127.0.0.2 .. 127.0.0.(K+1), round\n"
      "                         robin (the server sees K clients; needs an IPv4 loopback --url; max 253)\n"
      "\n"
      "output fields: mode, rate, connections, duration_s, requests (answered in the window),\n"
      "throughput_rps, latency_us {p50,p90,p99,p999,max,mean}, status {code: count}, default_answers\n"
      "(bodies containing \"default\":true), latency_by_outcome_us {outcome: {count,p50,p99,max}} (outcome:\n"
      "the status code, \"200-default\" for a 2xx default answer), errors {connect,io,parse}, unfinished, ...");
}

double parse_double(const std::string& flag, const char* text) {
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !std::isfinite(value) || value < 0) {
    usage_error(flag + " wants a non-negative number, got '" + text + "'");
  }
  return value;
}

uint64_t parse_count(const std::string& flag, const char* text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') usage_error(flag + " wants an integer, got '" + text + "'");
  return value;
}

Options parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage_error(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--help" || flag == "-h") {
      print_help();
      std::exit(0);
    } else if (flag == "--url") {
      options.url = value();
    } else if (flag == "--method") {
      options.method = value();
    } else if (flag == "--header") {
      options.extra_headers.emplace_back(value());
    } else if (flag == "--body") {
      options.workload = Workload::kFixed;
      options.fixed_body = value();
    } else if (flag == "--w1") {
      options.workload = Workload::kW1;
    } else if (flag == "--zipf-keys") {
      options.workload = Workload::kZipf;
      options.zipf_keys = parse_count(flag, value());
    } else if (flag == "--body-format") {
      const std::string format = value();
      if (format == "clipper") options.body_format = BodyFormat::kClipper;
      else if (format == "oip-json") options.body_format = BodyFormat::kOipJson;
      else if (format == "oip-binary") options.body_format = BodyFormat::kOipBinary;
      else usage_error("--body-format is clipper, oip-json or oip-binary, got '" + format + "'");
    } else if (flag == "--zipf-s") {
      options.zipf_exponent = parse_double(flag, value());
    } else if (flag == "--connections") {
      options.connections = parse_count(flag, value());
    } else if (flag == "--rate") {
      options.rate_per_second = parse_double(flag, value());
    } else if (flag == "--arrivals") {
      const std::string kind = value();
      if (kind == "poisson") {
        options.arrivals = Arrivals::kPoisson;
      } else if (kind == "uniform") {
        options.arrivals = Arrivals::kUniform;
      } else {
        usage_error("--arrivals is poisson or uniform, got '" + kind + "'");
      }
    } else if (flag == "--duration") {
      options.duration_seconds = parse_double(flag, value());
    } else if (flag == "--warmup") {
      options.warmup_seconds = parse_double(flag, value());
    } else if (flag == "--drain") {
      options.drain_seconds = parse_double(flag, value());
    } else if (flag == "--connect-timeout") {
      options.connect_timeout_seconds = parse_double(flag, value());
    } else if (flag == "--max-seconds") {
      options.max_seconds = parse_double(flag, value());
    } else if (flag == "--hold-connections") {
      options.hold_connections = parse_count(flag, value());
    } else if (flag == "--no-hold-request") {
      options.hold_request = false;
    } else if (flag == "--busy-poll") {
      options.busy_poll = true;
    } else if (flag == "--slo-us") {
      options.slo_micros = parse_double(flag, value());
    } else if (flag == "--source-addresses") {
      options.source_addresses = parse_count(flag, value());
      if (options.source_addresses == 0 || options.source_addresses > kMaxSourceAddresses) {
        usage_error("--source-addresses wants 1 to " + std::to_string(kMaxSourceAddresses));
      }
    } else if (flag == "--spin-us") {
      options.spin_micros = parse_double(flag, value());
    } else if (flag == "--seed") {
      options.seed = parse_count(flag, value());
    } else {
      usage_error("unknown option '" + flag + "'");
    }
  }
  if (options.url.empty()) usage_error("--url is required");
  if (options.connections == 0) usage_error("--connections must be at least 1");
  if (options.workload == Workload::kZipf && options.zipf_keys == 0) usage_error("--zipf-keys must be at least 1");
  if (options.duration_seconds <= 0) usage_error("--duration must be positive");
  if (options.hold_connections > 0 && options.rate_per_second > 0) {
    usage_error("--hold-connections and --rate are separate modes");
  }
  if (options.connect_timeout_seconds == 0) {
    const uint64_t opened = options.hold_connections > 0 ? options.hold_connections : options.connections;
    options.connect_timeout_seconds = options.hold_connections > 0 || options.rate_per_second > 0
                                          ? 10.0 + static_cast<double>(opened) / 1000.0
                                          : 5.0;
  }
  if (options.seed == 0) options.seed = splitmix64(monotonic_nanos() ^ (static_cast<uint64_t>(getpid()) << 32));
  return options;
}

struct Target {
  std::string host;   // as given, for the Host header
  uint16_t port = 80;
  std::string path;   // path and query
  sockaddr_storage address{};
  socklen_t address_length = 0;
};

// Splits http://HOST[:PORT][/PATH][?QUERY] (HOST a name, an IPv4 address or a bracketed IPv6 one); the
// fragment is dropped, as a client does. Only what a benchmark target needs: no user info, no TLS.
Target parse_url(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (url.rfind(kScheme, 0) != 0) usage_error("--url must start with http:// (no TLS), got '" + url + "'");
  const std::string rest = url.substr(kScheme.size(), url.find('#') - kScheme.size());
  const size_t path_at = std::min(rest.find('/'), rest.find('?'));
  const std::string authority = rest.substr(0, path_at);
  Target target;
  target.path = path_at == std::string::npos ? "/" : rest.substr(path_at);
  if (target.path.front() == '?') target.path.insert(0, "/");
  const bool bracketed = !authority.empty() && authority.front() == '[';
  const size_t host_end = bracketed ? authority.find(']') : authority.find(':');
  if (authority.empty() || authority.find('@') != std::string::npos || host_end == 0 ||
      (bracketed && (host_end == std::string::npos || host_end == 1))) {
    usage_error("cannot parse --url '" + url + "' (want http://HOST[:PORT]/PATH)");
  }
  target.host = bracketed ? authority.substr(1, host_end - 1) : authority.substr(0, host_end);
  const size_t colon = bracketed ? host_end + 1 : host_end;
  if (colon < authority.size()) {
    const std::string_view port = std::string_view(authority).substr(colon + 1);
    unsigned value = 0;
    const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (authority[colon] != ':' || error != std::errc() || end != port.data() + port.size() || value == 0 ||
        value > 65535) {
      usage_error("cannot parse the port of --url '" + url + "'");
    }
    target.port = static_cast<uint16_t>(value);
  }
  return target;
}

Target resolve_target(const std::string& url) {
  Target target = parse_url(url);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* results = nullptr;
  const std::string port_text = std::to_string(target.port);
  if (const int rc = getaddrinfo(target.host.c_str(), port_text.c_str(), &hints, &results); rc != 0) {
    usage_error("cannot resolve '" + target.host + "': " + gai_strerror(rc));
  }
  std::memcpy(&target.address, results->ai_addr, results->ai_addrlen);
  target.address_length = results->ai_addrlen;
  freeaddrinfo(results);
  if (target.host.find(':') != std::string::npos) target.host = "[" + target.host + "]";  // IPv6
  if (target.port != 80) target.host += ":" + port_text;
  return target;
}

// The addresses --source-addresses binds to: 127.0.0.2 onwards. Loopback only: the whole of 127/8 routes
// to the loopback interface, so any of them reaches a server listening on 127.0.0.1 (or 0.0.0.0).
std::vector<sockaddr_in> source_addresses(const Options& options, const Target& target) {
  std::vector<sockaddr_in> sources;
  if (options.source_addresses == 0) return sources;
  const auto* destination = reinterpret_cast<const sockaddr_in*>(&target.address);
  if (target.address.ss_family != AF_INET || (ntohl(destination->sin_addr.s_addr) >> 24) != 127) {
    usage_error("--source-addresses needs an IPv4 loopback --url (127.x.x.x), got '" + options.url + "'");
  }
  for (uint64_t i = 0; i < options.source_addresses; ++i) {
    sockaddr_in source{};
    source.sin_family = AF_INET;
    source.sin_port = 0;
    source.sin_addr.s_addr = htonl((127U << 24) | static_cast<uint32_t>(kFirstSourceHost + i));
    sources.push_back(source);
  }
  return sources;
}

// Builds request bytes for each workload. W1 vectors start with a unique counter value (exact in a double),
// so no two requests of a run, nor of two runs with different seeds, carry the same vector.
class RequestFactory {
 public:
  RequestFactory(const Options& options, const Target& target) : options_(options) {
    head_ = options.method + " " + target.path + " HTTP/1.1\r\nHost: " + target.host + "\r\n";
    for (const auto& header : options.extra_headers) head_ += header + "\r\n";
    has_body_ = options.workload != Workload::kNone;
    if (has_body_) head_ += "Content-Type: application/json\r\n";
    if (options.body_format == BodyFormat::kOipBinary) {
      head_ += "Inference-Header-Content-Length: " + std::to_string(kOipBinaryHeader.size()) + "\r\n";
    }
    // W1 counters start at a seed-dependent offset below 2^50, leaving room for 2^50 requests.
    w1_counter_ = (splitmix64(options.seed) >> 14) & ((1ULL << 50) - 1);
    rng_.seed(options.seed);
    if (options.workload == Workload::kZipf) build_zipf_table();
  }

  // Writes the next request into `out` (replacing its contents).
  void next_request(std::string& out) {
    out.assign(head_);
    if (!has_body_) {
      out += "\r\n";
      return;
    }
    body_.clear();
    switch (options_.workload) {
      case Workload::kFixed: body_ = options_.fixed_body; break;
      case Workload::kW1: {
        const uint64_t counter = w1_counter_++;
        append_vector(static_cast<double>(counter) + 0.5, counter);
        break;
      }
      case Workload::kZipf: {
        const uint64_t key = next_zipf_key();
        append_vector(static_cast<double>(key) + 0.5, key);
        break;
      }
      case Workload::kNone: break;
    }
    out += "Content-Length: ";
    out += std::to_string(body_.size());
    out += "\r\n\r\n";
    out += body_;
  }

 private:
  void append_number(double value) {
    char buffer[32];
    const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
    body_.append(buffer, result.ptr);
  }

  // The JSON part of an oip-binary request; the vector's 80 bytes follow it.
  static constexpr std::string_view kOipBinaryHeader =
      "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,10],\"datatype\":\"FP64\","
      "\"parameters\":{\"binary_data_size\":80}}],\"parameters\":{\"binary_data_output\":true}}";

  void append_vector(double first, uint64_t stream) {
    double vector[10];
    vector[0] = first;
    for (uint64_t i = 1; i < 10; ++i) vector[i] = unit_interval(splitmix64(stream * 16 + i));
    if (options_.body_format == BodyFormat::kOipBinary) {
      body_ += kOipBinaryHeader;
      body_.append(reinterpret_cast<const char*>(vector), sizeof(vector));
      return;
    }
    body_ += options_.body_format == BodyFormat::kOipJson
                 ? "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,10],\"datatype\":\"FP64\",\"data\":["
                 : "{\"input\":[";
    for (uint64_t i = 0; i < 10; ++i) {
      if (i > 0) body_ += ',';
      append_number(vector[i]);
    }
    body_ += options_.body_format == BodyFormat::kOipJson ? "]}]}" : "]}";
  }

  void build_zipf_table() {
    zipf_cdf_.resize(options_.zipf_keys);
    double total = 0;
    for (uint64_t k = 0; k < options_.zipf_keys; ++k) {
      total += std::pow(static_cast<double>(k + 1), -options_.zipf_exponent);
      zipf_cdf_[k] = total;
    }
    for (auto& value : zipf_cdf_) value /= total;
  }

  uint64_t next_zipf_key() {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    const auto it = std::lower_bound(zipf_cdf_.begin(), zipf_cdf_.end(), u);
    return std::min<uint64_t>(static_cast<uint64_t>(it - zipf_cdf_.begin()), options_.zipf_keys - 1);
  }

  const Options& options_;
  std::string head_;
  std::string body_;
  bool has_body_ = false;
  uint64_t w1_counter_ = 0;
  std::mt19937_64 rng_;
  std::vector<double> zipf_cdf_;
};

// Whether a JSON body carries "default": true (any whitespace around the colon), or a
// "default_explanation" (the Open Inference Protocol's answers carry defaults in a tensor).
bool says_default_true(std::string_view body) {
  if (body.find("\"default_explanation\"") != std::string_view::npos) return true;
  constexpr std::string_view kKey = "\"default\"";
  for (size_t at = body.find(kKey); at != std::string_view::npos; at = body.find(kKey, at + 1)) {
    size_t i = at + kKey.size();
    while (i < body.size() && std::isspace(static_cast<unsigned char>(body[i]))) ++i;
    if (i >= body.size() || body[i] != ':') continue;
    ++i;
    while (i < body.size() && std::isspace(static_cast<unsigned char>(body[i]))) ++i;
    if (body.substr(i, 4) == "true") return true;
  }
  return false;
}

struct Connection {
  enum class State { kClosed, kConnecting, kIdle, kBusy };
  uint32_t index = 0;
  int fd = -1;
  State state = State::kClosed;
  llhttp_t parser{};
  std::string out;
  size_t out_offset = 0;
  bool want_write = false;
  uint64_t intended_nanos = 0;  // latency origin of the request in flight
  bool measured = false;        // the request in flight counts toward the report
  bool response_complete = false;
  bool keep_alive = true;
  std::string body;
  uint64_t requests_answered = 0;
  uint64_t reconnect_at_nanos = 0;
  uint32_t connect_failures = 0;
  bool ever_connected = false;
};

struct Report {
  uint64_t sent = 0;
  uint64_t warmup_requests = 0;
  uint64_t measured_sent = 0;
  uint64_t measured_arrivals = 0;  // open loop: arrivals whose intended time fell in the window
  std::vector<uint64_t> latencies_nanos;
  std::vector<uint64_t> send_lags_nanos;  // open loop: actual send time minus intended send time
  std::map<int, uint64_t> status_counts;
  std::map<std::string, std::vector<uint64_t>> latencies_by_outcome;  // "200", "200-default", "429", ...
  uint64_t default_answers = 0;
  uint64_t answers_within_slo = 0;
  uint64_t connect_errors = 0;
  uint64_t io_errors = 0;
  uint64_t parse_errors = 0;
  uint64_t measured_lost = 0;  // measured requests whose connection failed before the answer
  uint64_t reconnects = 0;
  uint64_t server_closes = 0;  // idle connections the server closed (not errors)
  uint64_t max_queue_depth = 0;
  uint64_t waited_for_connection = 0;  // open loop: measured requests that found every connection busy
  uint64_t unfinished = 0;
  bool timed_out = false;
  bool interrupted = false;
  uint64_t established = 0;          // successful connects (reconnects included)
  double seconds_to_connect_all = -1;  // closed/open loop: until every connection had connected once
  double seconds_to_first_arrival = 0;  // open loop: connecting before the arrival process started
  // hold mode
  uint64_t held_at_end = 0;
  double seconds_to_establish = 0;
  uint64_t nofile_limit = 0;
};

class LoadGenerator {
 public:
  LoadGenerator(Options options, Target target)
      : options_(std::move(options)),
        target_(std::move(target)),
        sources_(source_addresses(options_, target_)),
        requests_(options_, target_) {
    mode_ = options_.hold_connections > 0 ? Mode::kHold
            : options_.rate_per_second > 0 ? Mode::kOpen
                                           : Mode::kClosed;
    connection_count_ = mode_ == Mode::kHold ? options_.hold_connections : options_.connections;
    llhttp_settings_init(&parser_settings_);
    parser_settings_.on_message_begin = &LoadGenerator::on_message_begin;
    parser_settings_.on_body = &LoadGenerator::on_body;
    parser_settings_.on_message_complete = &LoadGenerator::on_message_complete;
    arrival_rng_.seed(splitmix64(options_.seed ^ 0xA5A5A5A5ULL));
  }

  int run();

 private:
  // --- connection lifecycle -------------------------------------------------
  void open_connection(Connection& connection);
  void close_connection(Connection& connection, bool schedule_reconnect);
  void fail_connection(Connection& connection, uint64_t& error_counter);
  void on_connected(Connection& connection);
  void on_readable(Connection& connection);
  void on_writable(Connection& connection);
  void update_interest(Connection& connection);
  void become_idle(Connection& connection);

  // --- requests --------------------------------------------------------------
  void send_request(Connection& connection, uint64_t intended_nanos);
  void finish_response(Connection& connection);
  // Sends queued requests on idle connections; `waited`: they found no idle connection on arrival.
  void dispatch_queued(bool waited);
  void generate_arrivals(uint64_t now);
  uint64_t next_interarrival_nanos();

  // --- loop ------------------------------------------------------------------
  // Waits for socket events until `wake_nanos` at the latest (0: just polls); returns epoll's count.
  int wait_for_events(std::vector<epoll_event>& events, uint64_t wake_nanos);
  // The same on a timerfd armed at `wake_nanos`, where epoll_pwait2 is missing.
  int wait_for_events_on_timerfd(std::vector<epoll_event>& events, uint64_t wake_nanos);
  bool finished(uint64_t now);
  void raise_file_limit();
  void print_report(uint64_t run_start, uint64_t now);

  static int on_message_begin(llhttp_t* parser);
  static int on_body(llhttp_t* parser, const char* data, size_t length);
  static int on_message_complete(llhttp_t* parser);

  Options options_;
  Target target_;
  std::vector<sockaddr_in> sources_;    // --source-addresses; empty: the kernel picks 127.0.0.1
  RequestFactory requests_;
  Mode mode_ = Mode::kClosed;
  uint64_t connection_count_ = 0;
  llhttp_settings_t parser_settings_{};
  std::mt19937_64 arrival_rng_;

  int epoll_fd_ = -1;
  int timer_fd_ = -1;                    // only once epoll_pwait2 turned out missing
  std::vector<Connection> connections_;
  std::vector<uint32_t> idle_;           // idle connections (open loop dispatch)
  std::deque<uint64_t> queued_;          // open loop: intended send times waiting for a connection
  size_t next_to_open_ = 0;              // connections are opened in order, kMaxConnectsInFlight at a time
  size_t connecting_ = 0;
  size_t closed_waiting_ = 0;            // closed connections waiting for a reconnect
  size_t busy_ = 0;
  size_t ever_connected_ = 0;            // connections that connected at least once
  uint64_t run_start_ = 0;

  uint64_t measure_start_ = 0;
  uint64_t measure_end_ = 0;
  uint64_t drain_end_ = 0;
  uint64_t hard_deadline_ = 0;
  uint64_t connect_deadline_ = 0;
  uint64_t next_arrival_ = 0;
  bool holding_ = false;                 // hold mode: all connections resolved, now holding
  bool arriving_ = false;                // open loop: all connections resolved, arrivals started
  Report report_;
};

int LoadGenerator::on_message_begin(llhttp_t* parser) {
  auto* connection = static_cast<Connection*>(parser->data);
  connection->body.clear();
  connection->response_complete = false;
  return 0;
}

int LoadGenerator::on_body(llhttp_t* parser, const char* data, size_t length) {
  auto* connection = static_cast<Connection*>(parser->data);
  const size_t room = kMaxScannedBodyBytes - std::min(kMaxScannedBodyBytes, connection->body.size());
  connection->body.append(data, std::min(room, length));
  return 0;
}

int LoadGenerator::on_message_complete(llhttp_t* parser) {
  auto* connection = static_cast<Connection*>(parser->data);
  connection->response_complete = true;
  connection->keep_alive = llhttp_should_keep_alive(parser) != 0;
  // Stop after one response: one request is in flight per connection, and the caller acts on it first.
  return HPE_PAUSED;
}

void LoadGenerator::raise_file_limit() {
  const rlim_t wanted = static_cast<rlim_t>(connection_count_) + 64;
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < wanted) {
    rlimit raised = limit;
    raised.rlim_cur = std::min<rlim_t>(std::max<rlim_t>(wanted, limit.rlim_cur), limit.rlim_max);
    if (limit.rlim_max < wanted) {
      // Raising the hard limit needs CAP_SYS_RESOURCE; try, then fall back to the hard limit.
      rlimit both{wanted, wanted};
      if (setrlimit(RLIMIT_NOFILE, &both) == 0) raised = both;
    }
    setrlimit(RLIMIT_NOFILE, &raised);
  }
  getrlimit(RLIMIT_NOFILE, &limit);
  report_.nofile_limit = limit.rlim_cur;
  if (limit.rlim_cur < wanted) {
    std::fprintf(stderr, "event=nofile_limit_low wanted=%llu got=%llu\n", static_cast<unsigned long long>(wanted),
                 static_cast<unsigned long long>(limit.rlim_cur));
  }
}

void LoadGenerator::open_connection(Connection& connection) {
  const int fd = socket(target_.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    connection.state = Connection::State::kClosed;
    ++closed_waiting_;
    ++report_.connect_errors;
    connection.reconnect_at_nanos = monotonic_nanos() + 100'000'000;
    return;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  connection.fd = fd;
  connection.state = Connection::State::kConnecting;
  ++connecting_;
  if (!sources_.empty()) {
    // The port is chosen at connect(), per destination, not at bind(): otherwise each source address
    // would run out of ephemeral ports after ~28,000 connections whatever the destinations.
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    const sockaddr_in& source = sources_[connection.index % sources_.size()];
    if (bind(fd, reinterpret_cast<const sockaddr*>(&source), sizeof(source)) != 0) {
      if (report_.connect_errors == 0) std::perror("clipper-loadgen: bind to a source address");
      fail_connection(connection, report_.connect_errors);
      return;
    }
  }
  const int rc = connect(fd, reinterpret_cast<const sockaddr*>(&target_.address), target_.address_length);
  if (rc != 0 && errno != EINPROGRESS) {
    fail_connection(connection, report_.connect_errors);
    return;
  }
  epoll_event event{};
  event.events = EPOLLOUT;
  event.data.u64 = connection.index;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event);
}

void LoadGenerator::close_connection(Connection& connection, bool schedule_reconnect) {
  if (connection.fd >= 0) {
    close(connection.fd);  // also removes it from the epoll set
    connection.fd = -1;
  }
  switch (connection.state) {
    case Connection::State::kConnecting: --connecting_; break;
    case Connection::State::kBusy: --busy_; break;
    case Connection::State::kIdle: {
      auto it = std::find(idle_.begin(), idle_.end(), connection.index);
      if (it != idle_.end()) idle_.erase(it);
      break;
    }
    case Connection::State::kClosed: break;
  }
  connection.state = Connection::State::kClosed;
  connection.want_write = false;
  if (schedule_reconnect) {
    ++closed_waiting_;
    // Back off while the server refuses connections, so a dead server does not spin the loop.
    const uint64_t backoff = connection.connect_failures == 0
                                 ? 0
                                 : std::min<uint64_t>(100'000'000, 1'000'000ULL << std::min(connection.connect_failures, 7u));
    connection.reconnect_at_nanos = monotonic_nanos() + backoff;
  }
}

// A connection failed: count it, lose the request in flight (open loop requests are never resent), reconnect.
void LoadGenerator::fail_connection(Connection& connection, uint64_t& error_counter) {
  ++error_counter;
  if (connection.state == Connection::State::kConnecting) ++connection.connect_failures;
  if (connection.state == Connection::State::kBusy && connection.measured) ++report_.measured_lost;
  // Hold mode measures how many connections the server keeps; it does not replace lost ones.
  close_connection(connection, mode_ != Mode::kHold);
}

void LoadGenerator::on_connected(Connection& connection) {
  int error = 0;
  socklen_t length = sizeof(error);
  getsockopt(connection.fd, SOL_SOCKET, SO_ERROR, &error, &length);
  if (error != 0) {
    fail_connection(connection, report_.connect_errors);
    return;
  }
  --connecting_;
  connection.connect_failures = 0;
  connection.state = Connection::State::kIdle;
  llhttp_init(&connection.parser, HTTP_RESPONSE, &parser_settings_);
  connection.parser.data = &connection;
  connection.want_write = false;
  epoll_event event{};
  event.events = EPOLLIN | EPOLLRDHUP;
  event.data.u64 = connection.index;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, connection.fd, &event);
  ++report_.established;
  if (!connection.ever_connected) {
    connection.ever_connected = true;
    if (++ever_connected_ == connections_.size() && mode_ != Mode::kHold) {
      report_.seconds_to_connect_all = static_cast<double>(monotonic_nanos() - run_start_) / 1e9;
    }
  }
  become_idle(connection);
}

void LoadGenerator::update_interest(Connection& connection) {
  epoll_event event{};
  event.events = EPOLLIN | EPOLLRDHUP | (connection.want_write ? EPOLLOUT : 0u);
  event.data.u64 = connection.index;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, connection.fd, &event);
}

// Decides what an idle connection does next, by mode.
void LoadGenerator::become_idle(Connection& connection) {
  connection.state = Connection::State::kIdle;
  switch (mode_) {
    case Mode::kClosed:
      if (const uint64_t now = monotonic_nanos(); now < measure_end_ && !g_stop_requested) {
        send_request(connection, now);
      } else {
        idle_.push_back(connection.index);
      }
      break;
    case Mode::kOpen:
      idle_.push_back(connection.index);
      dispatch_queued(/*waited=*/true);
      break;
    case Mode::kHold:
      // Held connections stay off the idle list: nothing is dispatched to them.
      if (options_.hold_request && connection.requests_answered == 0 && !holding_) {
        send_request(connection, monotonic_nanos());
      }
      break;
  }
}

void LoadGenerator::send_request(Connection& connection, uint64_t intended_nanos) {
  requests_.next_request(connection.out);
  connection.out_offset = 0;
  connection.intended_nanos = intended_nanos;
  connection.measured = mode_ == Mode::kHold || (intended_nanos >= measure_start_ && intended_nanos < measure_end_);
  connection.state = Connection::State::kBusy;
  ++busy_;
  ++report_.sent;
  if (connection.measured) {
    ++report_.measured_sent;
    if (mode_ == Mode::kOpen) report_.send_lags_nanos.push_back(monotonic_nanos() - intended_nanos);
  }
  on_writable(connection);
}

void LoadGenerator::on_writable(Connection& connection) {
  while (connection.out_offset < connection.out.size()) {
    const ssize_t n = send(connection.fd, connection.out.data() + connection.out_offset,
                           connection.out.size() - connection.out_offset, MSG_NOSIGNAL);
    if (n > 0) {
      connection.out_offset += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!connection.want_write) {
        connection.want_write = true;
        update_interest(connection);
      }
      return;
    }
    fail_connection(connection, report_.io_errors);
    return;
  }
  if (connection.want_write) {
    connection.want_write = false;
    update_interest(connection);
  }
}

void LoadGenerator::on_readable(Connection& connection) {
  char buffer[64 * 1024];
  for (;;) {
    const ssize_t n = recv(connection.fd, buffer, sizeof(buffer), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      fail_connection(connection, report_.io_errors);
      return;
    }
    if (n == 0) {
      // End of stream: completes a response delimited by the close, else the server dropped the connection.
      llhttp_finish(&connection.parser);
      if (connection.state == Connection::State::kBusy && connection.response_complete) {
        connection.keep_alive = false;
        finish_response(connection);
        return;
      }
      if (connection.state == Connection::State::kBusy) {
        fail_connection(connection, report_.io_errors);
      } else {
        ++report_.server_closes;
        close_connection(connection, mode_ != Mode::kHold);
      }
      return;
    }
    const char* at = buffer;
    const char* const end = buffer + n;
    while (at < end) {
      const llhttp_errno_t error = llhttp_execute(&connection.parser, at, static_cast<size_t>(end - at));
      if (error == HPE_OK) break;  // all of it parsed
      if (error == HPE_PAUSED) {
        // Paused at the end of a response: what follows it (nothing, unless the server answered twice)
        // starts at the error position.
        at = llhttp_get_error_pos(&connection.parser);
        llhttp_resume(&connection.parser);
        if (connection.state != Connection::State::kBusy) {
          // An answer nobody asked for: the stream is out of step.
          fail_connection(connection, report_.parse_errors);
          return;
        }
        finish_response(connection);
        if (connection.state == Connection::State::kClosed) return;
        // Bytes read with this answer were sent before the next request (which finish_response may
        // have sent already): they cannot be its answer.
        if (at != end) {
          fail_connection(connection, report_.parse_errors);
          return;
        }
        continue;
      }
      std::fprintf(stderr, "event=parse_error error=%s reason=%s\n", llhttp_errno_name(error),
                   llhttp_get_error_reason(&connection.parser));
      fail_connection(connection, report_.parse_errors);
      return;
    }
    if (static_cast<size_t>(n) < sizeof(buffer)) return;
  }
}

void LoadGenerator::finish_response(Connection& connection) {
  const uint64_t now = monotonic_nanos();
  --busy_;
  ++connection.requests_answered;
  connection.response_complete = false;
  if (connection.measured) {
    const uint64_t latency = now - connection.intended_nanos;
    const int status = static_cast<int>(connection.parser.status_code);
    report_.latencies_nanos.push_back(latency);
    ++report_.status_counts[status];
    const bool is_default = says_default_true(connection.body);
    if (is_default) ++report_.default_answers;
    report_.latencies_by_outcome[std::to_string(status) + (is_default ? "-default" : "")].push_back(latency);
    if (status >= 200 && status < 300 && !is_default && static_cast<double>(latency) <= options_.slo_micros * 1e3) {
      ++report_.answers_within_slo;
    }
  } else {
    ++report_.warmup_requests;
  }
  connection.state = Connection::State::kIdle;
  if (!connection.keep_alive) {
    ++report_.reconnects;
    close_connection(connection, true);
    return;
  }
  become_idle(connection);
}

void LoadGenerator::dispatch_queued(bool waited) {
  while (!queued_.empty() && !idle_.empty()) {
    const uint32_t index = idle_.back();
    idle_.pop_back();
    const uint64_t intended = queued_.front();
    queued_.pop_front();
    if (waited && intended >= measure_start_ && intended < measure_end_) ++report_.waited_for_connection;
    send_request(connections_[index], intended);
  }
}

uint64_t LoadGenerator::next_interarrival_nanos() {
  const double mean_nanos = 1e9 / options_.rate_per_second;
  if (options_.arrivals == Arrivals::kUniform) return std::max<uint64_t>(1, std::llround(mean_nanos));
  const double gap = std::exponential_distribution<double>(1.0 / mean_nanos)(arrival_rng_);
  return std::max<uint64_t>(1, static_cast<uint64_t>(gap));
}

void LoadGenerator::generate_arrivals(uint64_t now) {
  while (next_arrival_ <= now && next_arrival_ < measure_end_) {
    if (next_arrival_ >= measure_start_) ++report_.measured_arrivals;
    queued_.push_back(next_arrival_);
    next_arrival_ += next_interarrival_nanos();
  }
  report_.max_queue_depth = std::max<uint64_t>(report_.max_queue_depth, queued_.size());
  // Sent now if a connection is idle. An idle connection takes a queued request the moment it becomes
  // idle (become_idle), so what stays queued here waits for a connection, and is counted when it goes.
  dispatch_queued(/*waited=*/false);
}

int LoadGenerator::wait_for_events(std::vector<epoll_event>& events, uint64_t wake_nanos) {
  // The timeout is relative: measured from now, not from the top of the loop, so work done since then
  // does not delay the wake-up.
  const uint64_t now = wake_nanos == 0 ? 0 : monotonic_nanos();
  uint64_t sleep = wake_nanos > now ? wake_nanos - now : 0;
  if (sleep > kSharpSleepNanos) sleep -= kSharpSleepNanos;
  timespec timeout{};
  timeout.tv_sec = static_cast<time_t>(sleep / kNanosPerSecond);
  timeout.tv_nsec = static_cast<long>(sleep % kNanosPerSecond);
  if (timer_fd_ < 0) {
    const int count = epoll_pwait2(epoll_fd_, events.data(), static_cast<int>(events.size()), &timeout, nullptr);
    if (count >= 0 || errno != ENOSYS) return count;
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    epoll_event timer_event{};
    timer_event.events = EPOLLIN;
    timer_event.data.u64 = kTimerToken;
    if (timer_fd_ < 0 || epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer_fd_, &timer_event) != 0) return -1;
    std::fprintf(stderr, "event=no_epoll_pwait2 fallback=timerfd\n");
  }
  return wait_for_events_on_timerfd(events, wake_nanos);
}

int LoadGenerator::wait_for_events_on_timerfd(std::vector<epoll_event>& events, uint64_t wake_nanos) {
  if (wake_nanos != 0) {
    itimerspec spec{};
    spec.it_value.tv_sec = static_cast<time_t>(wake_nanos / kNanosPerSecond);
    spec.it_value.tv_nsec = static_cast<long>(wake_nanos % kNanosPerSecond);
    timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
  }
  const int count = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), wake_nanos == 0 ? 0 : -1);
  for (int i = 0; i < count; ++i) {
    if (events[i].data.u64 != kTimerToken) continue;
    uint64_t expirations = 0;
    [[maybe_unused]] const ssize_t ignored = read(timer_fd_, &expirations, sizeof(expirations));
    events[i] = events[count - 1];  // the caller sees socket events only
    return count - 1;
  }
  return count;
}

bool LoadGenerator::finished(uint64_t now) {
  if (g_stop_requested) {
    report_.interrupted = true;
    return true;
  }
  if (now >= hard_deadline_) {
    report_.timed_out = true;
    return true;
  }
  if (mode_ == Mode::kHold) return holding_ && now >= measure_end_;
  if (now < measure_end_) return false;
  return (busy_ == 0 && queued_.empty()) || now >= drain_end_;
}

int LoadGenerator::run() {
  signal(SIGPIPE, SIG_IGN);
  // Wake at the scheduled arrival, not up to 50 us later (the default timer slack).
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  signal(SIGINT, on_stop_signal);
  signal(SIGTERM, on_stop_signal);
  raise_file_limit();

  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    std::perror("clipper-loadgen: epoll_create1");
    return 1;
  }

  connections_.resize(connection_count_);
  for (size_t i = 0; i < connections_.size(); ++i) connections_[i].index = static_cast<uint32_t>(i);
  report_.latencies_nanos.reserve(
      mode_ == Mode::kOpen ? static_cast<size_t>(options_.rate_per_second * options_.duration_seconds * 1.1) + 16
                           : 1 << 20);
  if (mode_ == Mode::kOpen) report_.send_lags_nanos.reserve(report_.latencies_nanos.capacity());

  const uint64_t run_start = monotonic_nanos();
  run_start_ = run_start;
  connect_deadline_ = run_start + seconds_to_nanos(options_.connect_timeout_seconds);
  if (mode_ == Mode::kHold) {
    measure_start_ = run_start;
    measure_end_ = UINT64_MAX;  // set when holding starts
    const double bound = options_.max_seconds > 0 ? options_.max_seconds
                                                  : options_.connect_timeout_seconds + options_.duration_seconds + 5;
    hard_deadline_ = run_start + seconds_to_nanos(bound);
  } else if (mode_ == Mode::kOpen) {
    measure_start_ = measure_end_ = drain_end_ = UINT64_MAX;  // set when arrivals start
    const double bound = options_.max_seconds > 0 ? options_.max_seconds
                                                  : options_.connect_timeout_seconds + options_.warmup_seconds +
                                                        options_.duration_seconds + options_.drain_seconds + 5;
    hard_deadline_ = run_start + seconds_to_nanos(bound);
  } else {
    measure_start_ = run_start + seconds_to_nanos(options_.warmup_seconds);
    measure_end_ = measure_start_ + seconds_to_nanos(options_.duration_seconds);
    drain_end_ = measure_end_ + seconds_to_nanos(options_.drain_seconds);
    const double bound = options_.max_seconds > 0
                             ? options_.max_seconds
                             : options_.warmup_seconds + options_.duration_seconds + options_.drain_seconds + 5;
    hard_deadline_ = run_start + seconds_to_nanos(bound);
  }

  std::vector<epoll_event> events(1024);
  const uint64_t spin_nanos = seconds_to_nanos(options_.spin_micros / 1e6);
  for (;;) {
    uint64_t now = monotonic_nanos();
    if (finished(now)) break;

    // Open new connections, at most kMaxConnectsInFlight connecting at once.
    while (next_to_open_ < connections_.size() && connecting_ < kMaxConnectsInFlight && now < connect_deadline_) {
      open_connection(connections_[next_to_open_++]);
    }
    uint64_t wake = std::min<uint64_t>(hard_deadline_, now + kNanosPerSecond);
    if (closed_waiting_ > 0 && (mode_ != Mode::kHold)) {
      for (auto& connection : connections_) {
        if (connection.state != Connection::State::kClosed || connection.fd >= 0 || connection.reconnect_at_nanos == 0) {
          continue;
        }
        if (connection.reconnect_at_nanos <= now && now < measure_end_) {
          --closed_waiting_;
          connection.reconnect_at_nanos = 0;
          open_connection(connection);
        } else if (now < measure_end_) {
          wake = std::min<uint64_t>(wake, connection.reconnect_at_nanos);
        }
      }
    }
    if (mode_ == Mode::kHold && !holding_) {
      const bool all_resolved = next_to_open_ == connections_.size() && connecting_ == 0 && busy_ == 0;
      if (all_resolved || now >= connect_deadline_) {
        // Connections still connecting at the deadline are given up.
        for (auto& connection : connections_) {
          if (connection.state == Connection::State::kConnecting) fail_connection(connection, report_.connect_errors);
        }
        holding_ = true;
        report_.seconds_to_establish = static_cast<double>(now - run_start) / 1e9;
        measure_end_ = now + seconds_to_nanos(options_.duration_seconds);
        size_t open = 0;
        for (const auto& connection : connections_) open += connection.fd >= 0;
        std::fprintf(stderr, "event=holding connections=%zu seconds=%.3f\n", open, options_.duration_seconds);
        std::fflush(stderr);
        continue;
      }
      wake = std::min<uint64_t>(wake, connect_deadline_);
    }
    if (mode_ == Mode::kOpen && !arriving_) {
      // Connections still connecting at the deadline keep trying; arrivals no longer wait for them.
      if ((next_to_open_ == connections_.size() && connecting_ == 0) || now >= connect_deadline_) {
        arriving_ = true;
        report_.seconds_to_first_arrival = static_cast<double>(now - run_start) / 1e9;
        next_arrival_ = now;
        measure_start_ = now + seconds_to_nanos(options_.warmup_seconds);
        measure_end_ = measure_start_ + seconds_to_nanos(options_.duration_seconds);
        drain_end_ = measure_end_ + seconds_to_nanos(options_.drain_seconds);
      } else {
        wake = std::min<uint64_t>(wake, connect_deadline_);
      }
    }
    if (mode_ == Mode::kOpen && arriving_) {
      generate_arrivals(now);
      if (next_arrival_ < measure_end_) wake = std::min<uint64_t>(wake, next_arrival_);
    }
    if (mode_ == Mode::kHold) {
      if (holding_) wake = std::min<uint64_t>(wake, measure_end_);
    } else {
      wake = std::min<uint64_t>(wake, now < measure_end_ ? measure_end_ : drain_end_);
    }
    if (wake <= now) continue;
    // Sleeping costs a wake-up delay (tens of us on a VM); --spin-us trades a core for it.
    const bool spin = options_.busy_poll || wake - now <= spin_nanos;
    const int count = wait_for_events(events, spin ? 0 : wake);
    if (count < 0) {
      if (errno == EINTR) continue;
      std::perror("clipper-loadgen: epoll_pwait2");
      break;
    }
    for (int i = 0; i < count; ++i) {
      Connection& connection = connections_[events[i].data.u64];
      if (connection.fd < 0) continue;  // closed earlier in this batch
      const uint32_t flags = events[i].events;
      if (connection.state == Connection::State::kConnecting) {
        if (flags & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(connection);
        continue;
      }
      if (flags & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) on_readable(connection);
      if (connection.fd >= 0 && connection.want_write && (flags & EPOLLOUT)) on_writable(connection);
    }
  }

  const uint64_t end = monotonic_nanos();
  for (const uint64_t intended : queued_) report_.unfinished += intended >= measure_start_;
  for (const auto& connection : connections_) {
    if (connection.state == Connection::State::kBusy && connection.measured) ++report_.unfinished;
    if (connection.fd >= 0) ++report_.held_at_end;
  }
  print_report(run_start, end);
  for (auto& connection : connections_) {
    if (connection.fd >= 0) close(connection.fd);
  }
  if (timer_fd_ >= 0) close(timer_fd_);
  close(epoll_fd_);
  return 0;
}

double percentile_micros(const std::vector<uint64_t>& sorted, double quantile) {
  if (sorted.empty()) return 0.0;
  // Nearest rank: the smallest sample with at least `quantile` of all samples at or below it.
  const double rank = std::ceil(quantile * static_cast<double>(sorted.size()));
  const size_t index = static_cast<size_t>(std::clamp(rank, 1.0, static_cast<double>(sorted.size()))) - 1;
  return static_cast<double>(sorted[index]) / 1e3;
}

std::string json_escape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof(buffer), "\\u%04x", c);
          out += buffer;
        } else {
          out += c;
        }
    }
  }
  return out;
}

void LoadGenerator::print_report(uint64_t run_start, uint64_t now) {
  auto& samples = report_.latencies_nanos;
  std::sort(samples.begin(), samples.end());
  double mean = 0;
  for (const uint64_t sample : samples) mean += static_cast<double>(sample);
  mean = samples.empty() ? 0.0 : mean / static_cast<double>(samples.size()) / 1e3;
  const uint64_t requests = samples.size();
  const double window = options_.duration_seconds;
  uint64_t non_2xx = 0;
  for (const auto& [status, count] : report_.status_counts) {
    if (status < 200 || status >= 300) non_2xx += count;
  }

  std::string json = "{";
  auto field = [&](const char* name, const std::string& value) {
    if (json.size() > 1) json += ",";
    json += "\"";
    json += name;
    json += "\":";
    json += value;
  };
  auto number = [](double value) {
    char buffer[64];
    std::snprintf(buffer, sizeof(buffer), "%.3f", value);
    return std::string(buffer);
  };
  auto integer = [](uint64_t value) { return std::to_string(value); };
  auto text = [](const std::string& value) { return "\"" + json_escape(value) + "\""; };

  field("tool", text("clipper-loadgen"));
  field("mode", text(mode_name(mode_)));
  field("url", text(options_.url));
  field("method", text(options_.method));
  field("workload", text(workload_name(options_.workload)));
  field("body_format", text(options_.body_format == BodyFormat::kClipper     ? "clipper"
                            : options_.body_format == BodyFormat::kOipJson ? "oip-json"
                                                                           : "oip-binary"));
  field("rate", mode_ == Mode::kOpen ? number(options_.rate_per_second) : "null");
  field("arrivals", mode_ == Mode::kOpen ? text(options_.arrivals == Arrivals::kPoisson ? "poisson" : "uniform")
                                         : "null");
  field("connections", integer(connection_count_));
  field("duration_s", number(window));
  field("warmup_s", number(mode_ == Mode::kHold ? 0.0 : options_.warmup_seconds));
  field("elapsed_s", number(static_cast<double>(now - run_start) / 1e9));
  field("requests", integer(requests));
  // Hold mode sends one request per connection: a rate would mean nothing.
  field("throughput_rps", mode_ == Mode::kHold ? "null" : number(static_cast<double>(requests) / window));
  if (mode_ == Mode::kOpen) {
    field("offered_rps", number(static_cast<double>(report_.measured_arrivals) / window));
    field("max_queue_depth", integer(report_.max_queue_depth));
    // Measured requests that found every connection busy: the population was too small for the rate
    // (Little's law), and their latency includes the wait for a connection.
    field("waited_for_connection", integer(report_.waited_for_connection));
    field("seconds_to_first_arrival", number(report_.seconds_to_first_arrival));
    // How late requests left the generator: queueing for a free connection, or the generator itself lagging.
    auto& lags = report_.send_lags_nanos;
    std::sort(lags.begin(), lags.end());
    field("send_lag_us", "{\"p50\":" + number(percentile_micros(lags, 0.50)) + ",\"p99\":" +
                             number(percentile_micros(lags, 0.99)) + ",\"max\":" +
                             number(lags.empty() ? 0.0 : static_cast<double>(lags.back()) / 1e3) + "}");
  }
  std::string latency = "{";
  latency += "\"p50\":" + number(percentile_micros(samples, 0.50));
  latency += ",\"p90\":" + number(percentile_micros(samples, 0.90));
  latency += ",\"p99\":" + number(percentile_micros(samples, 0.99));
  latency += ",\"p999\":" + number(percentile_micros(samples, 0.999));
  latency += ",\"max\":" + number(samples.empty() ? 0.0 : static_cast<double>(samples.back()) / 1e3);
  latency += ",\"mean\":" + number(mean);
  latency += "}";
  field("latency_us", latency);
  std::string status = "{";
  for (const auto& [code, count] : report_.status_counts) {
    if (status.size() > 1) status += ",";
    status += "\"" + std::to_string(code) + "\":" + std::to_string(count);
  }
  status += "}";
  field("status", status);
  field("non_2xx", integer(non_2xx));
  field("default_answers", integer(report_.default_answers));
  std::string outcomes = "{";
  for (auto& [outcome, samples_of] : report_.latencies_by_outcome) {
    std::sort(samples_of.begin(), samples_of.end());
    if (outcomes.size() > 1) outcomes += ",";
    outcomes += "\"" + outcome + "\":{\"count\":" + integer(samples_of.size()) +
                ",\"p50\":" + number(percentile_micros(samples_of, 0.50)) +
                ",\"p99\":" + number(percentile_micros(samples_of, 0.99)) +
                ",\"max\":" + number(samples_of.empty() ? 0.0 : static_cast<double>(samples_of.back()) / 1e3) + "}";
  }
  field("latency_by_outcome_us", outcomes + "}");
  if (options_.slo_micros > 0) {
    field("slo_us", number(options_.slo_micros));
    field("answers_within_slo", integer(report_.answers_within_slo));
  }
  const uint64_t total_errors = report_.connect_errors + report_.io_errors + report_.parse_errors;
  field("errors", "{\"connect\":" + integer(report_.connect_errors) + ",\"io\":" + integer(report_.io_errors) +
                      ",\"parse\":" + integer(report_.parse_errors) + ",\"total\":" + integer(total_errors) + "}");
  field("lost", integer(report_.measured_lost));
  field("unfinished", integer(report_.unfinished));
  field("sent", integer(report_.sent));
  field("warmup_requests", integer(report_.warmup_requests));
  field("reconnects", integer(report_.reconnects));
  field("server_closes", integer(report_.server_closes));
  if (mode_ == Mode::kHold) {
    field("hold", "{\"requested\":" + integer(connection_count_) + ",\"established\":" +
                      integer(report_.established) + ",\"held_at_end\":" + integer(report_.held_at_end) +
                      ",\"seconds_to_establish\":" + number(report_.seconds_to_establish) +
                      ",\"nofile_limit\":" + integer(report_.nofile_limit) + "}");
  }
  if (mode_ != Mode::kHold) {
    field("established", integer(report_.established));
    field("seconds_to_connect_all",
          report_.seconds_to_connect_all < 0 ? "null" : number(report_.seconds_to_connect_all));
    field("nofile_limit", integer(report_.nofile_limit));
  }
  field("source_addresses", integer(sources_.size()));
  field("spin_us", number(options_.spin_micros));
  field("busy_poll", options_.busy_poll ? "true" : "false");
  field("seed", integer(options_.seed));
  field("timed_out", report_.timed_out ? "true" : "false");
  field("interrupted", report_.interrupted ? "true" : "false");
  json += "}\n";
  std::fputs(json.c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options options = parse_options(argc, argv);
  Target target = resolve_target(options.url);
  LoadGenerator generator(std::move(options), std::move(target));
  return generator.run();
}
