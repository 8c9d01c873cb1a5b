#include "engine/engine.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "http/http_server.h"
#include "metrics/process_metrics.h"
#include "query/query_processor.h"
#include "rpc/batching_report.h"
#include "rpc/replica_service.h"
#include "rpc/shm_transport.h"
#include "rpc/zmq_transport.h"

namespace clipper {

Engine::Engine(EngineOptions options)
    : options_((options.validate(), std::move(options))), models_(metrics_), cache_(options_.cache_size_bytes) {
  routing_ = std::make_shared<RoutingTable>();
}

Engine::~Engine() { stop(); }

void Engine::start() {
  std::lock_guard lifecycle(lifecycle_mutex_);
  if (running_.load()) return;
  std::vector<int> sockets;
  auto close_all = [&sockets] {
    for (int fd : sockets) ::close(fd);
  };
  // Every I/O thread gets its own socket on the same port (SO_REUSEPORT); the kernel spreads
  // connections across them.
  int port = options_.query_port;
  for (int thread = 0; thread < options_.io_threads; ++thread) {
    const int fd = http::open_listening_socket(options_.bind_address, port, 4096);
    if (fd < 0) {
      close_all();
      throw std::runtime_error("cannot listen on " + options_.bind_address + ":" + std::to_string(port) +
                               " for queries: " + std::strerror(-fd));
    }
    sockets.push_back(fd);
    port = http::bound_port(fd);
  }
  query_port_ = port;
  int metrics_fd = -1;
  if (options_.metrics_port != 0) {
    metrics_fd = http::open_listening_socket(options_.bind_address, options_.metrics_port, 512);
    if (metrics_fd < 0) {
      close_all();
      throw std::runtime_error("cannot listen on " + options_.bind_address + ":" +
                               std::to_string(options_.metrics_port) + " for metrics: " +
                               std::strerror(-metrics_fd));
    }
    metrics_port_ = http::bound_port(metrics_fd);
  } else {
    metrics_port_ = query_port_;
  }

  ZmqCurveKeys replica_keys{options_.rpc_curve_secret_key, options_.rpc_curve_client_keys};
  std::unique_ptr<ReplicaTransport> transport = std::make_unique<ZmqTransport>(replica_keys);
  if (options_.replica_transport == "auto") {
    ShmTransportOptions shm;
    shm.request_ring_bytes = options_.shm_request_ring_bytes;
    shm.response_ring_bytes = options_.shm_response_ring_bytes;
    shm.response_spin_micros = static_cast<uint32_t>(options_.shm_response_spin_micros);
    shm.response_spin_cost_micros = static_cast<uint32_t>(options_.shm_response_spin_cost_micros);
    shm.copies = shm_copies_;
    shm.spins = shm_spins_;
    transport = std::make_unique<ShmTransport>(std::move(transport), shm);
  }
  replica_service_ = std::make_unique<ReplicaService>(options_, models_, cache_, std::move(transport));
  try {
    rpc_port_ = replica_service_->bind(options_.bind_address, options_.rpc_port);
  } catch (...) {
    close_all();
    if (metrics_fd >= 0) ::close(metrics_fd);
    replica_service_.reset();
    throw;
  }

  // The two seams: each I/O thread submits to the replica service and is its completion sink.
  processors_.clear();
  std::vector<CompletionSink*> sinks;
  for (int thread = 0; thread < options_.io_threads; ++thread) {
    processors_.push_back(std::make_unique<QueryProcessor>(*this, *replica_service_, static_cast<uint32_t>(thread)));
    processors_.back()->serve_queries(sockets[static_cast<std::size_t>(thread)]);
    sinks.push_back(processors_.back().get());
  }
  if (metrics_fd >= 0) processors_.front()->serve_metrics(metrics_fd);

  // With one I/O thread the replica side shares its loop: no hand-off between threads on the request path.
  const bool rpc_on_io_loop = options_.io_threads == 1 && !options_.dedicated_rpc_thread;
  replica_service_->connect_sinks(std::move(sinks), rpc_on_io_loop);
  if (rpc_on_io_loop) {
    replica_service_->attach_to_loop(processors_.front()->loop());
    processors_.front()->on_stopping([service = replica_service_.get()] { service->detach_from_loop(); });
  }
  running_.store(true);
  for (auto& processor : processors_) {
    io_threads_.emplace_back([raw = processor.get()] { raw->run(); });
  }
  if (!rpc_on_io_loop) rpc_thread_ = std::thread([this] { replica_service_->run(); });
}

void Engine::stop() {
  std::lock_guard lifecycle(lifecycle_mutex_);
  if (!running_.exchange(false)) return;
  for (auto& processor : processors_) processor->request_stop();
  for (auto& thread : io_threads_) thread.join();
  io_threads_.clear();
  replica_service_->request_stop();
  if (rpc_thread_.joinable()) rpc_thread_.join();
  processors_.clear();
  replica_service_.reset();
  running_.notify_all();
}

void Engine::wait() {
  while (running_.load()) running_.wait(true);
}

void Engine::apply_config(std::string_view config_json) {
  std::lock_guard lock(routing_mutex_);
  auto table = build_routing_table(config_json, models_, metrics_, routing_generation_.load() + 1,
                                   &selection_weights_);
  routing_ = std::move(table);
  routing_generation_.store(routing_->generation, std::memory_order_release);
}

void Engine::set_selection_weights(std::string_view app, int64_t uid,
                                   const std::vector<std::pair<std::string, double>>& weights) {
  const std::shared_ptr<const RoutingTable> table = routing_table();
  const AppRoute* route = table->find(app);
  if (route == nullptr) throw std::invalid_argument("no application named '" + std::string(app) + "'");
  std::vector<double> by_link(route->linked_models.size(), 0.0);
  for (const auto& [model, weight] : weights) {
    bool linked = false;
    for (std::size_t i = 0; i < by_link.size(); ++i) {
      if (route->linked_models[i].name == model) {
        by_link[i] = weight;
        linked = true;
      }
    }
    if (!linked) {
      throw std::invalid_argument("model '" + model + "' is not linked to application '" + std::string(app) + "'");
    }
  }
  selection_weights_.set(route->selection_id, uid, by_link);
}

void Engine::record_feedback_losses(std::string_view app, std::optional<double> answer_loss,
                                    const std::vector<std::pair<std::string, double>>& model_losses) {
  const std::shared_ptr<const RoutingTable> table = routing_table();
  const AppRoute* route = table->find(app);
  if (route == nullptr) return;
  if (answer_loss && std::isfinite(*answer_loss)) {
    route->metrics->online_loss.add(*answer_loss);
    route->metrics->online_loss_rounds.add();
  }
  for (const auto& [model, loss] : model_losses) {
    if (!std::isfinite(loss)) continue;
    for (const LinkedModel& linked : route->linked_models) {
      if (linked.name != model) continue;
      linked.metrics->feedback_loss.add(loss);
      linked.metrics->feedback_observations.add();
    }
  }
}

void Engine::clear_selection_weights(std::string_view app, std::optional<int64_t> uid) {
  const std::shared_ptr<const RoutingTable> table = routing_table();
  const AppRoute* route = table->find(app);
  if (route == nullptr) return;  // nothing was published for an app that does not exist
  if (uid) {
    selection_weights_.erase(route->selection_id, *uid);
  } else {
    selection_weights_.erase_app(route->selection_id);
  }
}

std::vector<FeedbackRound> Engine::next_feedback(std::size_t max_rounds, std::chrono::microseconds timeout) {
  feedback_queue_.mark_consumer_attached();
  return feedback_queue_.take(max_rounds, timeout);
}

void Engine::finish_feedback(uint64_t ticket, bool applied, const std::string& message) {
  std::lock_guard lifecycle(lifecycle_mutex_);
  const std::size_t thread = static_cast<std::size_t>(ticket >> 56);
  if (!running_.load() || thread >= processors_.size()) return;  // its request went with its connection
  std::vector<Completion> answer(1);
  answer[0].query_key = ticket & ((uint64_t{1} << 56) - 1);
  answer[0].kind = applied ? CompletionKind::FeedbackApplied : CompletionKind::FeedbackRefused;
  answer[0].text = message;
  processors_[thread]->deliver(answer);
}

std::shared_ptr<const RoutingTable> Engine::routing_table() const {
  std::lock_guard lock(routing_mutex_);
  return routing_;
}

std::vector<ReplicaInfo> Engine::replicas() const {
  std::lock_guard lifecycle(lifecycle_mutex_);
  if (!replica_service_) return {};
  return replica_service_->replicas();
}

std::string Engine::batching_state() const {
  std::lock_guard lifecycle(lifecycle_mutex_);
  if (!replica_service_) return "[]";
  return replica_service_->batching_state_json();
}

std::string Engine::metrics_text() const {
  std::string text = metrics_.render_prometheus();
  replica_supervision_.render(text);
  const CacheStatistics cache = cache_.statistics();
  auto counter = [&text](const char* name, const char* help, const char* type, uint64_t value) {
    text += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
            std::to_string(value) + "\n";
  };
  counter("clipper_cache_hits_total", "Inputs answered from the prediction cache.", "counter", cache.hits);
  counter("clipper_cache_misses_total", "Inputs the cache did not hold (evaluated by a model).", "counter",
          cache.misses);
  counter("clipper_cache_coalesced_total", "Inputs that waited on an identical evaluation in flight.",
          "counter", cache.coalesced);
  counter("clipper_cache_evictions_total", "Entries evicted to stay within the byte budget.", "counter",
          cache.evictions);
  counter("clipper_cache_entries", "Entries held.", "gauge", cache.entries);
  counter("clipper_cache_bytes", "Bytes held (outputs plus per-entry overhead).", "gauge", cache.bytes);
  const ShmCopyCounts copies = shm_copies_->snapshot();
  counter("clipper_shm_request_batches_total", "Batches whose inputs were written straight into a replica's request ring.",
          "counter", copies.framed_messages);
  counter("clipper_shm_request_input_bytes_total",
          "Input bytes written into request rings (each copied once, from its query).", "counter",
          copies.payload_bytes);
  counter("clipper_shm_request_frame_bytes_total",
          "Bytes of those batches' messages around the inputs, copied in from the encoder.", "counter",
          copies.frame_bytes);
  counter("clipper_shm_request_copied_bytes_total", "Bytes of whole messages copied into request rings.",
          "counter", copies.copied_bytes);
  const auto relaxed = [](const std::atomic<uint64_t>& value) { return value.load(std::memory_order_relaxed); };
  counter("clipper_shm_response_spins_total",
          "Spins of the I/O loop for a shared-memory replica's answer (shm_response_spin_micros).", "counter",
          relaxed(shm_spins_->spins));
  counter("clipper_shm_response_spins_caught_total", "Spins that found an answer before their window ended.",
          "counter", relaxed(shm_spins_->caught));
  text += "# HELP clipper_shm_response_spin_seconds_total Time the I/O loop spent spinning for answers.\n"
          "# TYPE clipper_shm_response_spin_seconds_total counter\nclipper_shm_response_spin_seconds_total " +
          std::to_string(static_cast<double>(relaxed(shm_spins_->spun_nanos)) / 1e9) + "\n";
  counter("clipper_shm_response_spins_gated_total",
          "Sleeps without a spin because spins cost more than shm_response_spin_cost_micros per answer caught.",
          "counter", relaxed(shm_spins_->gated));
#ifndef CLIPPER_VERSION
#define CLIPPER_VERSION "unknown"
#define CLIPPER_COMMIT "unknown"
#endif
  metrics::render_build_info(text, CLIPPER_VERSION, CLIPPER_COMMIT);
  metrics::render_process_metrics(text, metrics::read_process_statistics());
  return text;
}

}  // namespace clipper
