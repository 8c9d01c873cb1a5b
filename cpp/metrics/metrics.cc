#include "metrics/metrics.h"

#include <cstdio>

namespace clipper::metrics {

std::string escape_label(const std::string& value) {
  std::string escaped;
  escaped.reserve(value.size());
  for (char c : value) {
    if (c == '\\' || c == '"') escaped += '\\';
    if (c == '\n') {
      escaped += "\\n";
      continue;
    }
    escaped += c;
  }
  return escaped;
}

namespace {

std::string format_bound(double bound) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", bound);
  return text;
}

void line(std::string& out, const std::string& name, const std::string& labels, uint64_t value) {
  out += name;
  out += '{';
  out += labels;
  out += "} ";
  out += std::to_string(value);
  out += '\n';
}

void line(std::string& out, const std::string& name, const std::string& labels, int64_t value) {
  out += name;
  out += '{';
  out += labels;
  out += "} ";
  out += std::to_string(value);
  out += '\n';
}

}  // namespace

template <std::size_t N>
void Histogram<N>::render(std::string& out, const std::string& name, const std::string& labels) const {
  uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= N; ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    const std::string le = i < N ? format_bound(bounds_[i]) : "+Inf";
    line(out, name + "_bucket", labels + ",le=\"" + le + "\"", cumulative);
  }
  line(out, name + "_sum", labels, sum_.load(std::memory_order_relaxed));
  line(out, name + "_count", labels, cumulative);
}

template class Histogram<kLatencyBoundsMicros.size()>;
template class Histogram<kBatchSizeBounds.size()>;

AppMetrics* MetricsRegistry::app(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto& slot = apps_[name];
  if (!slot) slot = std::make_unique<AppMetrics>();
  return slot.get();
}

ModelMetrics* MetricsRegistry::model(const std::string& name, const std::string& version) {
  std::lock_guard lock(mutex_);
  auto& slot = models_[{name, version}];
  if (!slot) slot = std::make_unique<ModelMetrics>();
  return slot.get();
}

std::string MetricsRegistry::render_prometheus() const {
  std::lock_guard lock(mutex_);
  std::string out;
  out.reserve(4096);
  auto header = [&out](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto app_labels = [](const std::string& name) { return "app=\"" + escape_label(name) + "\""; };
  auto model_labels = [](const std::pair<std::string, std::string>& key) {
    return "model=\"" + escape_label(key.first) + "\",version=\"" + escape_label(key.second) + "\"";
  };
  // One family per app counter: `field` picks the counter out of AppMetrics.
  auto app_family = [&](const char* name, const char* help, const Counter AppMetrics::*field) {
    header(name, "counter", help);
    for (const auto& [app_name, app] : apps_) line(out, name, app_labels(app_name), ((*app).*field).value());
  };
  auto model_counter = [&](const char* name, const char* help, const Counter ModelMetrics::*field) {
    header(name, "counter", help);
    for (const auto& [key, model] : models_) line(out, name, model_labels(key), ((*model).*field).value());
  };
  auto model_gauge = [&](const char* name, const char* help, const Gauge ModelMetrics::*field) {
    header(name, "gauge", help);
    for (const auto& [key, model] : models_) line(out, name, model_labels(key), ((*model).*field).value());
  };

  app_family("clipper_app_requests_total", "Prediction requests accepted per app.", &AppMetrics::requests);
  app_family("clipper_app_predictions_total", "Inputs answered per app.", &AppMetrics::predictions);
  app_family("clipper_app_default_answers_total", "Inputs answered with the app's default output.",
             &AppMetrics::default_answers);
  app_family("clipper_app_client_errors_total", "Requests answered with a 4xx status.",
             &AppMetrics::client_errors);
  app_family("clipper_app_feedback_total", "Feedback (/update) requests accepted.", &AppMetrics::feedback);
  app_family("clipper_app_slo_attained_total", "Inputs answered by a model within the app's SLO.",
             &AppMetrics::slo_attained);
  header("clipper_app_latency_micros", "histogram", "Time from receiving a request to answering it.");
  for (const auto& [name, app] : apps_) app->latency_micros.render(out, "clipper_app_latency_micros", app_labels(name));

  model_counter("clipper_model_batches_total", "Batches sent to replicas and answered.", &ModelMetrics::batches);
  model_counter("clipper_model_predictions_total", "Inputs evaluated by the model.", &ModelMetrics::predictions);
  model_counter("clipper_model_failed_batches_total", "Batches the model failed (raised or bad output).",
                &ModelMetrics::failed_batches);
  model_gauge("clipper_model_connected_replicas", "Replicas registered and alive.",
              &ModelMetrics::connected_replicas);
  model_gauge("clipper_model_learned_batch_size", "The adaptive controllers' current batch size.",
              &ModelMetrics::learned_batch_size);
  model_counter("clipper_model_expired_tasks_total", "Inputs dropped from the queue after their deadline.",
                &ModelMetrics::expired_tasks);
  model_counter("clipper_model_shed_tasks_total",
                "Inputs answered with the default before evaluation: their deadline could no longer be met.",
                &ModelMetrics::shed_tasks);
  model_counter("clipper_model_hedged_batches_total", "Batches re-sent because their replica stalled.",
                &ModelMetrics::hedged_batches);
  header("clipper_model_batch_cuts_total", "counter", "Why each batch was cut.");
  static const char* kReasons[] = {"full", "deadline", "wait_expired", "queue_empty"};
  for (const auto& [key, model] : models_) {
    for (std::size_t i = 0; i < 4; ++i) {
      line(out, "clipper_model_batch_cuts_total", model_labels(key) + ",reason=\"" + kReasons[i] + "\"",
           model->batch_cut_reasons[i].value());
    }
  }
  header("clipper_model_batch_latency_micros", "histogram", "Time from sending a batch to its answer.");
  for (const auto& [key, model] : models_) {
    model->batch_latency_micros.render(out, "clipper_model_batch_latency_micros", model_labels(key));
  }
  header("clipper_model_batch_size", "histogram", "Inputs per batch sent to a replica.");
  for (const auto& [key, model] : models_) model->batch_size.render(out, "clipper_model_batch_size", model_labels(key));
  return out;
}

}  // namespace clipper::metrics
