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
  out += "# HELP clipper_app_requests_total Prediction requests accepted per app.\n";
  out += "# TYPE clipper_app_requests_total counter\n";
  for (const auto& [name, app] : apps_) {
    line(out, "clipper_app_requests_total", "app=\"" + escape_label(name) + "\"", app->requests.value());
  }
  out += "# HELP clipper_app_predictions_total Inputs answered per app.\n";
  out += "# TYPE clipper_app_predictions_total counter\n";
  for (const auto& [name, app] : apps_) {
    line(out, "clipper_app_predictions_total", "app=\"" + escape_label(name) + "\"",
         app->predictions.value());
  }
  out += "# HELP clipper_app_default_answers_total Inputs answered with the app's default output.\n";
  out += "# TYPE clipper_app_default_answers_total counter\n";
  for (const auto& [name, app] : apps_) {
    line(out, "clipper_app_default_answers_total", "app=\"" + escape_label(name) + "\"",
         app->default_answers.value());
  }
  out += "# HELP clipper_app_client_errors_total Requests answered with a 4xx status.\n";
  out += "# TYPE clipper_app_client_errors_total counter\n";
  for (const auto& [name, app] : apps_) {
    line(out, "clipper_app_client_errors_total", "app=\"" + escape_label(name) + "\"",
         app->client_errors.value());
  }
  out += "# HELP clipper_app_feedback_total Feedback (/update) requests accepted.\n";
  out += "# TYPE clipper_app_feedback_total counter\n";
  for (const auto& [name, app] : apps_) {
    line(out, "clipper_app_feedback_total", "app=\"" + escape_label(name) + "\"", app->feedback.value());
  }
  out += "# HELP clipper_app_slo_attained_total Inputs answered by a model within the app's SLO.\n";
  out += "# TYPE clipper_app_slo_attained_total counter\n";
  for (const auto& [name, app] : apps_) {
    line(out, "clipper_app_slo_attained_total", "app=\"" + escape_label(name) + "\"", app->slo_attained.value());
  }
  out += "# HELP clipper_app_latency_micros Time from receiving a request to answering it.\n";
  out += "# TYPE clipper_app_latency_micros histogram\n";
  for (const auto& [name, app] : apps_) {
    app->latency_micros.render(out, "clipper_app_latency_micros", "app=\"" + escape_label(name) + "\"");
  }
  auto model_labels = [](const std::pair<std::string, std::string>& key) {
    return "model=\"" + escape_label(key.first) + "\",version=\"" + escape_label(key.second) + "\"";
  };
  out += "# HELP clipper_model_batches_total Batches sent to replicas and answered.\n";
  out += "# TYPE clipper_model_batches_total counter\n";
  for (const auto& [key, model] : models_) {
    line(out, "clipper_model_batches_total", model_labels(key), model->batches.value());
  }
  out += "# HELP clipper_model_predictions_total Inputs evaluated by the model.\n";
  out += "# TYPE clipper_model_predictions_total counter\n";
  for (const auto& [key, model] : models_) {
    line(out, "clipper_model_predictions_total", model_labels(key), model->predictions.value());
  }
  out += "# HELP clipper_model_failed_batches_total Batches the model failed (raised or bad output).\n";
  out += "# TYPE clipper_model_failed_batches_total counter\n";
  for (const auto& [key, model] : models_) {
    line(out, "clipper_model_failed_batches_total", model_labels(key), model->failed_batches.value());
  }
  out += "# HELP clipper_model_connected_replicas Replicas registered and alive.\n";
  out += "# TYPE clipper_model_connected_replicas gauge\n";
  for (const auto& [key, model] : models_) {
    line(out, "clipper_model_connected_replicas", model_labels(key), model->connected_replicas.value());
  }
  out += "# HELP clipper_model_learned_batch_size The adaptive controllers' current batch size.\n";
  out += "# TYPE clipper_model_learned_batch_size gauge\n";
  for (const auto& [key, model] : models_) {
    line(out, "clipper_model_learned_batch_size", model_labels(key), model->learned_batch_size.value());
  }
  out += "# HELP clipper_model_expired_tasks_total Inputs dropped from the queue after their deadline.\n";
  out += "# TYPE clipper_model_expired_tasks_total counter\n";
  for (const auto& [key, model] : models_) {
    line(out, "clipper_model_expired_tasks_total", model_labels(key), model->expired_tasks.value());
  }
  out += "# HELP clipper_model_shed_tasks_total Inputs answered with the default before evaluation: "
         "their deadline could no longer be met.\n";
  out += "# TYPE clipper_model_shed_tasks_total counter\n";
  for (const auto& [key, model] : models_) {
    line(out, "clipper_model_shed_tasks_total", model_labels(key), model->shed_tasks.value());
  }
  out += "# HELP clipper_model_hedged_batches_total Batches re-sent because their replica stalled.\n";
  out += "# TYPE clipper_model_hedged_batches_total counter\n";
  for (const auto& [key, model] : models_) {
    line(out, "clipper_model_hedged_batches_total", model_labels(key), model->hedged_batches.value());
  }
  out += "# HELP clipper_model_batch_cuts_total Why each batch was cut.\n";
  out += "# TYPE clipper_model_batch_cuts_total counter\n";
  static const char* kReasons[] = {"full", "deadline", "wait_expired", "queue_empty"};
  for (const auto& [key, model] : models_) {
    for (std::size_t i = 0; i < 4; ++i) {
      line(out, "clipper_model_batch_cuts_total", model_labels(key) + ",reason=\"" + kReasons[i] + "\"",
           model->batch_cut_reasons[i].value());
    }
  }
  out += "# HELP clipper_model_batch_latency_micros Time from sending a batch to its answer.\n";
  out += "# TYPE clipper_model_batch_latency_micros histogram\n";
  for (const auto& [key, model] : models_) {
    model->batch_latency_micros.render(out, "clipper_model_batch_latency_micros", model_labels(key));
  }
  out += "# HELP clipper_model_batch_size Inputs per batch sent to a replica.\n";
  out += "# TYPE clipper_model_batch_size histogram\n";
  for (const auto& [key, model] : models_) {
    model->batch_size.render(out, "clipper_model_batch_size", model_labels(key));
  }
  return out;
}

}  // namespace clipper::metrics
