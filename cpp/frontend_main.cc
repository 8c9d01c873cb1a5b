// clipper-frontend: the serving engine as a standalone program, with no Python in the process.
// Configured by flags and a JSON configuration file (docs/interfaces.md); SIGHUP re-reads the file,
// SIGINT/SIGTERM stop it cleanly.
#include <getopt.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "clipper_defaults.h"
#include "engine/engine.h"

namespace {

// Defaults in the help come from clipper_defaults.h, the same source as the engine's own.
std::string usage() {
  using namespace clipper::defaults;
  auto number = [](auto value) { return std::to_string(value); };
  return std::string(R"(usage: clipper-frontend [options]

Serves Clipper's query REST API from the native engine. Model replicas connect to the RPC port.

options:
  --bind-address ADDR            address of every port (default )") + std::string(bind_address) + R"()
  --query-port PORT              REST query port: POST /<app>/predict, /<app>/update (default )" + number(query_port) + R"()
  --rpc-port PORT                model replica RPC port, ZeroMQ (default )" + number(rpc_port) + R"()
  --metrics-port PORT            Prometheus GET /metrics; 0 serves it on the query port only (default )" + number(metrics_port) + R"()
  --io-threads N                 HTTP event-loop threads (default )" + number(io_threads) + R"()
  --dedicated-rpc-thread         give the model RPC a thread of its own even with one I/O thread
  --max-body-bytes N             larger request bodies answer 413 (default )" + number(max_body_bytes) + R"()
  --max-header-bytes N           request header bytes; beyond them 431 (default )" + number(max_header_bytes) + R"()
  --max-header-count N           request header lines; beyond them 431 (default )" + number(max_header_count) + R"()
  --header-timeout-millis N      first byte to end of headers, else 408 and close; 0 disables (default )" + number(header_timeout_millis) + R"()
  --body-timeout-millis N        end of headers to end of body, else 408 and close; 0 disables (default )" + number(body_timeout_millis) + R"()
  --idle-timeout-millis N        close a keep-alive connection idle this long; 0 disables (default )" + number(idle_timeout_millis) + R"()
  --max-connections-per-io-thread N       beyond it a new connection gets 503 (default )" + number(max_connections_per_io_thread) + R"()
  --max-connections-per-client-address N  per I/O thread; beyond it 503 (default )" + number(max_connections_per_client_address) + R"()
  --cache-size-bytes N           prediction cache budget in bytes, 0 disables it (default )" + number(cache_size_bytes) + R"()
  --max-batch-size N             largest batch sent to a replica (default )" + number(max_batch_size) + R"()
  --max-queued-tasks-per-model N queue bound per model version; beyond it /predict answers 503 (default )" +
         number(max_queued_tasks_per_model) + R"()
  --max-queued-bytes-per-model N input bytes queued per model version; beyond them 503 (default )" +
         number(max_queued_bytes_per_model) + R"()
  --max-pending-queries-per-io-thread N  queries waiting for answers; beyond them 503 (default )" +
         number(max_pending_queries_per_io_thread) + R"()
  --heartbeat-timeout-millis N   drop a replica silent this long (default )" + number(heartbeat_timeout_millis) + R"()
  --replica-pipeline-depth N     batches in flight per replica (default )" + number(replica_pipeline_depth) + R"()
  --replica-prefetch-full-batches, --no-replica-prefetch-full-batches
                                 send a replica at its pipeline depth one more batch when it is full,
                                 to wait in the replica behind the ones it holds (default )" +
         std::string(replica_prefetch_full_batches ? "on" : "off") + R"()
  --rpc-keys-file FILE           replica authentication (ZeroMQ CURVE): a JSON file, owner-only, with
                                 "server_secret_key" and "client_public_keys" (Z85); without it any
                                 process that reaches the RPC port may register (loopback only)
  --replica-transport auto|zmq   auto: shared-memory rings for replicas on this host that ask, ZeroMQ for
                                 the rest; zmq: ZeroMQ for all (default )" + std::string(replica_transport) + R"()
  --shm-request-ring-bytes N     per replica, frontend to replica (default )" + number(shm_request_ring_bytes) + R"()
  --shm-response-ring-bytes N    per replica, replica to frontend (default )" + number(shm_response_ring_bytes) + R"()
  --shm-response-spin-micros N   poll the response rings up to N us after sending a batch before the
                                 loop sleeps; 0 never, at most 10000 (default )" + number(shm_response_spin_micros) + R"()
  --shm-response-spin-cost-micros N
                                 stop that spin while it costs more than N us spun per answer caught
                                 (recent average; probes every 16-256 sleeps); 0 no bound, at most 10000
                                 (default )" + number(shm_response_spin_cost_micros) + R"()
  --config FILE                  JSON configuration: apps, models, links (see docs/interfaces.md);
                                 re-read on SIGHUP
  --help                         show this help and exit
)";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read configuration file " + path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

long parse_number(const char* flag, const char* text) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (end == text || *end != '\0') {
    throw std::invalid_argument(std::string("--") + flag + " expects a number, got '" + text + "'");
  }
  return value;
}

// Reads the CURVE keys of the RPC port (the format the Python managers write as
// <state_dir>/rpc_server_keys.json). A secret readable by others is refused, as ssh does.
void load_rpc_keys(const std::string& path, clipper::EngineOptions& options) {
  struct stat status {};
  if (::stat(path.c_str(), &status) != 0) throw std::runtime_error("cannot read RPC keys file " + path);
  if ((status.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    throw std::invalid_argument("RPC keys file " + path +
                                " is readable or writable by other users: chmod 600 it (it holds a secret key)");
  }
  rapidjson::Document document;
  document.Parse(read_file(path).c_str());
  const char* problem = nullptr;
  if (document.HasParseError() || !document.IsObject()) {
    problem = "it is not a JSON object";
  } else if (!document.HasMember("server_secret_key") || !document["server_secret_key"].IsString()) {
    problem = "\"server_secret_key\" (a string) is missing";
  } else if (!document.HasMember("client_public_keys") || !document["client_public_keys"].IsArray()) {
    problem = "\"client_public_keys\" (an array of strings) is missing";
  }
  if (problem != nullptr) throw std::invalid_argument("RPC keys file " + path + ": " + problem);
  options.rpc_curve_secret_key = document["server_secret_key"].GetString();
  options.rpc_curve_client_keys.clear();
  for (const auto& key : document["client_public_keys"].GetArray()) {
    if (!key.IsString()) throw std::invalid_argument("RPC keys file " + path + ": a client key is not a string");
    options.rpc_curve_client_keys.emplace_back(key.GetString());
  }
}

}  // namespace

int main(int argc, char** argv) {
  clipper::EngineOptions options;
  std::string config_path;
  static const option kOptions[] = {
      {"bind-address", required_argument, nullptr, 'a'},
      {"query-port", required_argument, nullptr, 'q'},
      {"rpc-port", required_argument, nullptr, 'r'},
      {"metrics-port", required_argument, nullptr, 'm'},
      {"io-threads", required_argument, nullptr, 't'},
      {"dedicated-rpc-thread", no_argument, nullptr, 'D'},
      {"max-body-bytes", required_argument, nullptr, 'b'},
      {"cache-size-bytes", required_argument, nullptr, 'c'},
      {"max-header-bytes", required_argument, nullptr, 'X'},
      {"max-header-count", required_argument, nullptr, 'N'},
      {"header-timeout-millis", required_argument, nullptr, 'T'},
      {"body-timeout-millis", required_argument, nullptr, 'B'},
      {"idle-timeout-millis", required_argument, nullptr, 'I'},
      {"max-connections-per-io-thread", required_argument, nullptr, 'C'},
      {"max-connections-per-client-address", required_argument, nullptr, 'A'},
      {"max-batch-size", required_argument, nullptr, 's'},
      {"max-queued-tasks-per-model", required_argument, nullptr, 'Q'},
      {"max-queued-bytes-per-model", required_argument, nullptr, 'Y'},
      {"max-pending-queries-per-io-thread", required_argument, nullptr, 'W'},
      {"heartbeat-timeout-millis", required_argument, nullptr, 'H'},
      {"replica-pipeline-depth", required_argument, nullptr, 'P'},
      {"replica-prefetch-full-batches", no_argument, nullptr, 'F'},
      {"no-replica-prefetch-full-batches", no_argument, nullptr, 'O'},
      {"rpc-keys-file", required_argument, nullptr, 'K'},
      {"replica-transport", required_argument, nullptr, 'R'},
      {"shm-request-ring-bytes", required_argument, nullptr, 'U'},
      {"shm-response-ring-bytes", required_argument, nullptr, 'V'},
      {"shm-response-spin-micros", required_argument, nullptr, 'S'},
      {"shm-response-spin-cost-micros", required_argument, nullptr, 'G'},
      {"config", required_argument, nullptr, 'f'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  try {
    int choice;
    while ((choice = getopt_long(argc, argv, "h", kOptions, nullptr)) != -1) {
      const char* name = kOptions[0].name;
      for (const auto& entry : kOptions) {
        if (entry.val == choice) name = entry.name;
      }
      switch (choice) {
        case 'a': options.bind_address = optarg; break;
        case 'q': options.query_port = static_cast<int>(parse_number(name, optarg)); break;
        case 'r': options.rpc_port = static_cast<int>(parse_number(name, optarg)); break;
        case 'm': options.metrics_port = static_cast<int>(parse_number(name, optarg)); break;
        case 't': options.io_threads = static_cast<int>(parse_number(name, optarg)); break;
        case 'b': options.max_body_bytes = static_cast<std::size_t>(parse_number(name, optarg)); break;
        case 'X': options.max_header_bytes = static_cast<std::size_t>(parse_number(name, optarg)); break;
        case 'N': options.max_header_count = static_cast<std::size_t>(parse_number(name, optarg)); break;
        case 'T': options.header_timeout_millis = parse_number(name, optarg); break;
        case 'B': options.body_timeout_millis = parse_number(name, optarg); break;
        case 'I': options.idle_timeout_millis = parse_number(name, optarg); break;
        case 'C': options.max_connections_per_io_thread = static_cast<std::size_t>(parse_number(name, optarg)); break;
        case 'A': options.max_connections_per_client_address = static_cast<std::size_t>(parse_number(name, optarg)); break;
        case 'c': options.cache_size_bytes = static_cast<std::size_t>(parse_number(name, optarg)); break;
        case 's': options.max_batch_size = static_cast<int>(parse_number(name, optarg)); break;
        case 'Q': options.max_queued_tasks_per_model = static_cast<std::size_t>(parse_number(name, optarg)); break;
        case 'Y': options.max_queued_bytes_per_model = static_cast<std::size_t>(parse_number(name, optarg)); break;
        case 'W': options.max_pending_queries_per_io_thread = static_cast<std::size_t>(parse_number(name, optarg)); break;
        case 'H': options.heartbeat_timeout_millis = parse_number(name, optarg); break;
        case 'P': options.replica_pipeline_depth = static_cast<int>(parse_number(name, optarg)); break;
        case 'F': options.replica_prefetch_full_batches = true; break;
        case 'O': options.replica_prefetch_full_batches = false; break;
        case 'D': options.dedicated_rpc_thread = true; break;
        case 'K': load_rpc_keys(optarg, options); break;
        case 'R': options.replica_transport = optarg; break;
        case 'U': options.shm_request_ring_bytes = static_cast<std::size_t>(parse_number(name, optarg)); break;
        case 'V': options.shm_response_ring_bytes = static_cast<std::size_t>(parse_number(name, optarg)); break;
        case 'S': options.shm_response_spin_micros = parse_number(name, optarg); break;
        case 'G': options.shm_response_spin_cost_micros = parse_number(name, optarg); break;
        case 'f': config_path = optarg; break;
        case 'h': std::fputs(usage().c_str(), stdout); return 0;
        default: std::fputs(usage().c_str(), stderr); return 2;
      }
    }
    if (optind < argc) throw std::invalid_argument(std::string("unexpected argument '") + argv[optind] + "'");

    // Block the signals before any thread starts, so only sigwait below receives them.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    clipper::Engine engine(options);
    if (!config_path.empty()) engine.apply_config(read_file(config_path));
    engine.start();
    if (options.rpc_curve_secret_key.empty()) {
      std::fprintf(stderr,
                   "clipper-frontend event=replica_auth_disabled warning=\"any process that reaches the RPC "
                   "port may register as a replica; pass --rpc-keys-file\"\n");
    }
    std::fprintf(stderr,
                 "clipper-frontend event=started query_port=%d rpc_port=%d metrics_port=%d io_threads=%d\n",
                 engine.query_port(), engine.rpc_port(), engine.metrics_port(), options.io_threads);
    while (true) {
      int received = 0;
      sigwait(&signals, &received);
      if (received == SIGHUP && !config_path.empty()) {
        try {
          engine.apply_config(read_file(config_path));
          std::fprintf(stderr, "clipper-frontend event=config_reloaded path=%s\n", config_path.c_str());
        } catch (const std::exception& error) {
          std::fprintf(stderr, "clipper-frontend event=config_rejected error=\"%s\"\n", error.what());
        }
        continue;
      }
      if (received == SIGINT || received == SIGTERM) break;
    }
    engine.stop();
    std::fprintf(stderr, "clipper-frontend event=stopped\n");
    return 0;
  } catch (const std::invalid_argument& error) {
    std::fprintf(stderr, "clipper-frontend: %s\n", error.what());
    return 2;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "clipper-frontend: %s\n", error.what());
    return 1;
  }
}
