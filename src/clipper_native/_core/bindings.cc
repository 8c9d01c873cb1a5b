// Binds the native engine to Python as clipper_native._core. Only binding lives here: every call
// that can wait releases the GIL, and C++ exceptions become Python exceptions in this one place.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <stdexcept>

#include "engine/engine.h"
#include "rpc/batching_report.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, module) {
  module.doc() = "The native Clipper serving engine (HTTP query frontend, model RPC, batching).";

  static py::exception<std::runtime_error> engine_error(module, "EngineError", PyExc_RuntimeError);
  // Local: applies to this module's functions only (a global translator would also turn other
  // extensions' pybind11 errors, which derive from std::runtime_error, into EngineError).
  py::register_local_exception_translator([](std::exception_ptr pointer) {
    try {
      if (pointer) std::rethrow_exception(pointer);
    } catch (const std::invalid_argument& error) {
      PyErr_SetString(PyExc_ValueError, error.what());
    } catch (const std::runtime_error& error) {
      py::set_error(engine_error, error.what());
    }
  });

  py::class_<clipper::EngineOptions>(module, "EngineOptions")
      .def(py::init<>())
      .def_readwrite("bind_address", &clipper::EngineOptions::bind_address)
      .def_readwrite("query_port", &clipper::EngineOptions::query_port)
      .def_readwrite("rpc_port", &clipper::EngineOptions::rpc_port)
      .def_readwrite("rpc_curve_secret_key", &clipper::EngineOptions::rpc_curve_secret_key)
      .def_readwrite("rpc_curve_client_keys", &clipper::EngineOptions::rpc_curve_client_keys)
      .def_readwrite("metrics_port", &clipper::EngineOptions::metrics_port)
      .def_readwrite("io_threads", &clipper::EngineOptions::io_threads)
      .def_readwrite("dedicated_rpc_thread", &clipper::EngineOptions::dedicated_rpc_thread)
      .def_readwrite("max_body_bytes", &clipper::EngineOptions::max_body_bytes)
      .def_readwrite("cache_size_bytes", &clipper::EngineOptions::cache_size_bytes)
      .def_readwrite("max_header_bytes", &clipper::EngineOptions::max_header_bytes)
      .def_readwrite("max_header_count", &clipper::EngineOptions::max_header_count)
      .def_readwrite("header_timeout_millis", &clipper::EngineOptions::header_timeout_millis)
      .def_readwrite("body_timeout_millis", &clipper::EngineOptions::body_timeout_millis)
      .def_readwrite("idle_timeout_millis", &clipper::EngineOptions::idle_timeout_millis)
      .def_readwrite("max_connections_per_io_thread", &clipper::EngineOptions::max_connections_per_io_thread)
      .def_readwrite("max_connections_per_client_address",
                     &clipper::EngineOptions::max_connections_per_client_address)
      .def_readwrite("max_batch_size", &clipper::EngineOptions::max_batch_size)
      .def_readwrite("replica_pipeline_depth", &clipper::EngineOptions::replica_pipeline_depth)
      .def_readwrite("replica_prefetch_full_batches", &clipper::EngineOptions::replica_prefetch_full_batches)
      .def_readwrite("replica_transport", &clipper::EngineOptions::replica_transport)
      .def_readwrite("shm_request_ring_bytes", &clipper::EngineOptions::shm_request_ring_bytes)
      .def_readwrite("shm_response_ring_bytes", &clipper::EngineOptions::shm_response_ring_bytes)
      .def_readwrite("shm_response_spin_micros", &clipper::EngineOptions::shm_response_spin_micros)
      .def_readwrite("shm_response_spin_cost_micros", &clipper::EngineOptions::shm_response_spin_cost_micros)
      .def_readwrite("max_queued_tasks_per_model", &clipper::EngineOptions::max_queued_tasks_per_model)
      .def_readwrite("max_queued_bytes_per_model", &clipper::EngineOptions::max_queued_bytes_per_model)
      .def_readwrite("max_pending_queries_per_io_thread",
                     &clipper::EngineOptions::max_pending_queries_per_io_thread)
      .def_readwrite("heartbeat_timeout_millis", &clipper::EngineOptions::heartbeat_timeout_millis)
      .def_readwrite("batch_latency_slo_fraction", &clipper::EngineOptions::batch_latency_slo_fraction)
      .def_readwrite("aimd_additive_step", &clipper::EngineOptions::aimd_additive_step)
      .def_readwrite("aimd_backoff_factor", &clipper::EngineOptions::aimd_backoff_factor)
      .def("validate", &clipper::EngineOptions::validate);

  py::class_<clipper::Engine>(module, "Engine")
      .def(py::init<clipper::EngineOptions>(), py::arg("options"))
      .def("start", &clipper::Engine::start, py::call_guard<py::gil_scoped_release>())
      .def("stop", &clipper::Engine::stop, py::call_guard<py::gil_scoped_release>())
      .def("wait", &clipper::Engine::wait, py::call_guard<py::gil_scoped_release>())
      .def("apply_config",
           [](clipper::Engine& engine, const std::string& config) {
             py::gil_scoped_release release;
             engine.apply_config(config);
           },
           py::arg("config_json"))
      .def("replicas",
           [](const clipper::Engine& engine) {
             std::vector<clipper::ReplicaInfo> replicas;
             {
               py::gil_scoped_release release;
               replicas = engine.replicas();
             }
             py::list result;
             for (const auto& replica : replicas) {
               py::dict entry;
               entry["model_name"] = replica.model_name;
               entry["model_version"] = replica.model_version;
               entry["replica_id"] = replica.replica_id;
               entry["input_type"] = replica.input_type;
               entry["inflight_batches"] = replica.inflight_batches;
               entry["transport"] = replica.transport;
               result.append(entry);
             }
             return result;
           })
      .def("batching_state", &clipper::Engine::batching_state, py::call_guard<py::gil_scoped_release>())
      .def("cache_statistics",
           [](const clipper::Engine& engine) {
             clipper::CacheStatistics statistics;
             {
               py::gil_scoped_release release;
               statistics = engine.cache_statistics();
             }
             py::dict result;
             result["hits"] = statistics.hits;
             result["misses"] = statistics.misses;
             result["coalesced"] = statistics.coalesced;
             result["evictions"] = statistics.evictions;
             result["entries"] = statistics.entries;
             result["bytes"] = statistics.bytes;
             return result;
           })
      .def("metrics_text", &clipper::Engine::metrics_text, py::call_guard<py::gil_scoped_release>())
      .def("set_replica_supervision",
           [](clipper::Engine& engine, const py::list& slots) {
             // The entries of a manager's supervision_report(): unknown keys are ignored.
             std::vector<clipper::metrics::ReplicaSupervision> parsed;
             parsed.reserve(slots.size());
             for (const auto& item : slots) {
               if (!py::isinstance<py::dict>(item)) {
                 throw std::invalid_argument("replica supervision: each slot is a dict");
               }
               const auto entry = py::reinterpret_borrow<py::dict>(item);
               for (const char* key : {"model_name", "model_version", "replica_id", "restarts", "state"}) {
                 if (!entry.contains(key)) {
                   throw std::invalid_argument(std::string("replica supervision: an entry lacks '") + key + "'");
                 }
               }
               clipper::metrics::ReplicaSupervision slot;
               slot.model = py::str(entry["model_name"]);
               slot.version = py::str(entry["model_version"]);
               slot.replica_id = entry["replica_id"].cast<int64_t>();
               const auto restarts = entry["restarts"].cast<int64_t>();
               if (restarts < 0) throw std::invalid_argument("replica supervision: restarts must be >= 0");
               slot.restarts = static_cast<uint64_t>(restarts);
               if (entry.contains("last_exit_reason")) slot.last_exit_reason = py::str(entry["last_exit_reason"]);
               slot.state = py::str(entry["state"]);
               parsed.push_back(std::move(slot));
             }
             py::gil_scoped_release release;
             engine.set_replica_supervision(std::move(parsed));
           },
           py::arg("slots"))
      .def("set_selection_weights",
           [](clipper::Engine& engine, const std::string& app, int64_t uid,
              const std::map<std::string, double>& weights) {
             std::vector<std::pair<std::string, double>> pairs(weights.begin(), weights.end());
             py::gil_scoped_release release;
             engine.set_selection_weights(app, uid, pairs);
           },
           py::arg("app"), py::arg("uid"), py::arg("weights"))
      .def("clear_selection_weights",
           [](clipper::Engine& engine, const std::string& app, std::optional<int64_t> uid) {
             py::gil_scoped_release release;
             engine.clear_selection_weights(app, uid);
           },
           py::arg("app"), py::arg("uid") = py::none())
      .def("next_feedback",
           [](clipper::Engine& engine, int64_t timeout_ms) {
             std::vector<clipper::FeedbackRound> rounds;
             {
               py::gil_scoped_release release;
               rounds = engine.next_feedback(256, std::chrono::milliseconds(std::max<int64_t>(0, timeout_ms)));
             }
             py::list result;
             for (const auto& round : rounds) {
               py::dict record;
               record["ticket"] = round.ticket;
               record["app"] = round.app;
               record["uid"] = round.uid;
               record["label"] = round.label;
               py::dict outputs;
               for (const auto& outcome : round.outcomes) {
                 if (!outcome.answered) continue;  // no output, so no loss is known for that model
                 py::dict answer;
                 answer["output"] = outcome.output;
                 answer["confidence"] =
                     outcome.confidence ? py::cast(clipper::confidence_value(outcome.confidence)) : py::none();
                 outputs[py::str(outcome.model_name)] = answer;
               }
               record["outputs"] = outputs;
               result.append(record);
             }
             return result;
           },
           py::arg("timeout_ms"))
      .def("record_feedback_losses",
           [](clipper::Engine& engine, const std::string& app, std::optional<double> answer_loss,
              const std::map<std::string, double>& model_losses) {
             std::vector<std::pair<std::string, double>> pairs(model_losses.begin(), model_losses.end());
             py::gil_scoped_release release;
             engine.record_feedback_losses(app, answer_loss, pairs);
           },
           py::arg("app"), py::arg("answer_loss"), py::arg("model_losses"))
      .def("finish_feedback", &clipper::Engine::finish_feedback, py::arg("ticket"), py::arg("applied"),
           py::arg("message") = "", py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("query_port", &clipper::Engine::query_port)
      .def_property_readonly("rpc_port", &clipper::Engine::rpc_port)
      .def_property_readonly("metrics_port", &clipper::Engine::metrics_port)
      .def_property_readonly("running", &clipper::Engine::running)
      .def_property_readonly("configured", &clipper::Engine::configured);
}
