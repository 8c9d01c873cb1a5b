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

// Shortest text that reads back as the same double (Prometheus parses Go float syntax).
std::string format_double(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.15g", value);
  return text;
}

void line(std::string& out, const std::string& name, const std::string& labels, const std::string& value) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  out += ' ';
  out += value;
  out += '\n';
}

void line(std::string& out, const std::string& name, const std::string& labels, uint64_t value) {
  line(out, name, labels, std::to_string(value));
}

void line(std::string& out, const std::string& name, const std::string& labels, int64_t value) {
  line(out, name, labels, std::to_string(value));
}

}  // namespace

template <std::size_t N>
void Histogram<N>::render(std::string& out, const std::string& name, const std::string& labels) const {
  uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= N; ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    const std::string le = i < N ? format_double(bounds_[i] * render_scale_) : "+Inf";
    line(out, name + "_bucket", labels + ",le=\"" + le + "\"", cumulative);
  }
  line(out, name + "_sum", labels,
       format_double(static_cast<double>(sum_.load(std::memory_order_relaxed)) * render_scale_));
  line(out, name + "_count", labels, cumulative);
}

template class Histogram<kLatencyBoundsMicros.size()>;
template class Histogram<kBatchSizeBounds.size()>;
template class Histogram<kConfidenceBoundsMillionths.size()>;

SelectionMetrics* AppMetrics::model(const std::string& model_name) {
  std::lock_guard lock(models_mutex);
  auto& slot = models[model_name];
  if (!slot) slot = std::make_unique<SelectionMetrics>();
  return slot.get();
}

ReplicaMetrics* ModelMetrics::attach_replica(int32_t replica_id) {
  std::lock_guard lock(replicas_mutex);
  AttachedReplica& slot = replicas[replica_id];
  if (!slot.series) slot.series = std::make_unique<ReplicaMetrics>();
  ++slot.connections;
  return slot.series.get();
}

void ModelMetrics::detach_replica(int32_t replica_id) {
  std::lock_guard lock(replicas_mutex);
  auto found = replicas.find(replica_id);
  if (found != replicas.end() && --found->second.connections <= 0) replicas.erase(found);
}

AppMetrics* MetricsRegistry::app(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto& slot = apps_[name];
  if (!slot) slot = std::make_unique<AppMetrics>();
  return slot.get();
}

AppMetrics* MetricsRegistry::find_app(const std::string& name) const {
  std::lock_guard lock(mutex_);
  auto found = apps_.find(name);
  return found == apps_.end() ? nullptr : found->second.get();
}

ModelMetrics* MetricsRegistry::model(const std::string& name, const std::string& version) {
  std::lock_guard lock(mutex_);
  auto& slot = models_[{name, version}];
  if (!slot) slot = std::make_unique<ModelMetrics>();
  return slot.get();
}

// Per-replica families; the caller holds mutex_, each model's replicas_mutex is taken inside it.
void MetricsRegistry::render_replicas(std::string& out) const {
  auto header = [&out](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto each_replica = [this](auto&& visit) {
    for (const auto& [key, model] : models_) {
      std::lock_guard lock(model->replicas_mutex);
      for (const auto& [id, replica] : model->replicas) {
        visit("model=\"" + escape_label(key.first) + "\",version=\"" + escape_label(key.second) +
                  "\",replica=\"" + std::to_string(id) + "\"",
              *replica.series);
      }
    }
  };
  auto counter = [&](const char* name, const char* help, const Counter ReplicaMetrics::*field) {
    header(name, "counter", help);
    each_replica([&](const std::string& labels, const ReplicaMetrics& r) { line(out, name, labels, (r.*field).value()); });
  };
  auto gauge = [&](const char* name, const char* help, const Gauge ReplicaMetrics::*field) {
    header(name, "gauge", help);
    each_replica([&](const std::string& labels, const ReplicaMetrics& r) { line(out, name, labels, (r.*field).value()); });
  };
  counter("clipper_replica_batches_total", "Batches the replica answered.", &ReplicaMetrics::batches);
  counter("clipper_replica_failed_batches_total", "Batches the replica answered with an error or a bad output.",
          &ReplicaMetrics::failed_batches);
  gauge("clipper_replica_inflight_batches", "Batches sent to the replica and not answered yet.",
        &ReplicaMetrics::inflight_batches);
  gauge("clipper_replica_connected", "1 while the replica is registered and alive (a departed replica's series are removed).",
        &ReplicaMetrics::connected);
  gauge("clipper_replica_slow", "1 while the replica is marked slow or stalled (it gets only probe batches).",
        &ReplicaMetrics::slow);
  header("clipper_replica_batch_latency_seconds", "histogram", "Time the replica spent on a batch, in seconds.");
  each_replica([&](const std::string& labels, const ReplicaMetrics& r) {
    r.batch_latency_micros.render(out, "clipper_replica_batch_latency_seconds", labels);
  });
}

// The selection layer's families; the caller holds mutex_, each app's models_mutex is taken inside it.
void MetricsRegistry::render_selection(std::string& out) const {
  auto header = [&out](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto app_labels = [](const std::string& name) { return "app=\"" + escape_label(name) + "\""; };
  auto each_model = [this, &app_labels](auto&& visit) {
    for (const auto& [app_name, app] : apps_) {
      std::lock_guard lock(app->models_mutex);
      for (const auto& [model_name, model] : app->models) {
        visit(app_labels(app_name) + ",model=\"" + escape_label(model_name) + "\"", *model);
      }
    }
  };
  auto model_counter = [&](const char* name, const char* help, const Counter SelectionMetrics::*field) {
    header(name, "counter", help);
    each_model([&](const std::string& labels, const SelectionMetrics& m) { line(out, name, labels, (m.*field).value()); });
  };
  model_counter("clipper_app_selections_total",
                "Inputs the app's selection policy asked the model to answer (a draw, an ensemble member, a "
                "cascade stage).",
                &SelectionMetrics::selections);
  model_counter("clipper_app_cascade_escalations_total",
                "Inputs a cascade handed on from the model to the next one (unsure, failed or unavailable).",
                &SelectionMetrics::cascade_escalations);
  model_counter("clipper_app_model_failures_total",
                "Inputs the model failed (raised or answered badly) when the app's policy asked it: a draw, an "
                "ensemble member, a cascade stage.",
                &SelectionMetrics::failures);
  header("clipper_app_model_loss_total", "counter",
         "Summed loss of the model's outputs in applied feedback rounds (0 right, 1 wrong).");
  each_model([&](const std::string& labels, const SelectionMetrics& m) {
    line(out, "clipper_app_model_loss_total", labels, format_double(m.feedback_loss.value()));
  });
  model_counter("clipper_app_model_loss_rounds_total",
                "Applied feedback rounds in which the model's output was known.",
                &SelectionMetrics::feedback_observations);

  auto app_counter = [&](const char* name, const char* help, const Counter AppMetrics::*field) {
    header(name, "counter", help);
    for (const auto& [app_name, app] : apps_) line(out, name, app_labels(app_name), ((*app).*field).value());
  };
  app_counter("clipper_app_partial_answers_total",
              "Ensemble or cascade answers for which a model asked did not answer in time.",
              &AppMetrics::partial_answers);
  header("clipper_app_feedback_rounds_total", "counter",
         "Feedback rounds by outcome: applied by the policy, refused (400), or not confirmed in time (503).");
  for (const auto& [app_name, app] : apps_) {
    line(out, "clipper_app_feedback_rounds_total", app_labels(app_name) + ",outcome=\"applied\"",
         app->feedback_applied.value());
    line(out, "clipper_app_feedback_rounds_total", app_labels(app_name) + ",outcome=\"refused\"",
         app->feedback_refused.value());
    line(out, "clipper_app_feedback_rounds_total", app_labels(app_name) + ",outcome=\"unconfirmed\"",
         app->feedback_unconfirmed.value());
  }
  header("clipper_app_online_loss_total", "counter",
         "Summed loss of the answers the app's policy gave (before learning) in applied feedback rounds.");
  for (const auto& [app_name, app] : apps_) {
    line(out, "clipper_app_online_loss_total", app_labels(app_name), format_double(app->online_loss.value()));
  }
  app_counter("clipper_app_online_loss_rounds_total",
              "Applied feedback rounds in which the app's policy had an answer to score.",
              &AppMetrics::online_loss_rounds);
  header("clipper_app_answer_confidence", "histogram",
         "Confidence of ensemble and cascade answers (0 to 1).");
  for (const auto& [app_name, app] : apps_) {
    app->answer_confidence.render(out, "clipper_app_answer_confidence", app_labels(app_name));
  }
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
  header("clipper_app_rejected_total", "counter",
         "Queries and /update requests refused at arrival by admission control, by reason (answered 429 or 503, "
         "or, for a query, the app's default when its overload option is default).");
  for (const auto& [app_name, app] : apps_) {
    for (std::size_t i = 0; i < kRejectReasonNames.size(); ++i) {
      line(out, "clipper_app_rejected_total", app_labels(app_name) + ",reason=\"" + kRejectReasonNames[i] + "\"",
           app->rejected[i].value());
    }
  }
  header("clipper_app_latency_seconds", "histogram",
         "Time from a request's arrival (its last bytes reaching the I/O loop) to answering it, in seconds.");
  for (const auto& [name, app] : apps_) app->latency_micros.render(out, "clipper_app_latency_seconds", app_labels(name));

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
  model_counter("clipper_model_prefetched_batches_total",
                "Full batches sent to a replica at its pipeline depth, to wait behind the ones it holds.",
                &ModelMetrics::prefetched_batches);
  header("clipper_model_batch_cuts_total", "counter", "Why each batch was cut.");
  static const char* kReasons[] = {"full", "deadline", "wait_expired", "queue_empty"};
  for (const auto& [key, model] : models_) {
    for (std::size_t i = 0; i < 4; ++i) {
      line(out, "clipper_model_batch_cuts_total", model_labels(key) + ",reason=\"" + kReasons[i] + "\"",
           model->batch_cut_reasons[i].value());
    }
  }
  header("clipper_model_batch_latency_seconds", "histogram",
         "Time a replica spent on a batch (from sending it, or from the previous answer), in seconds.");
  for (const auto& [key, model] : models_) {
    model->batch_latency_micros.render(out, "clipper_model_batch_latency_seconds", model_labels(key));
  }
  header("clipper_model_batch_size", "histogram", "Inputs per batch sent to a replica.");
  for (const auto& [key, model] : models_) model->batch_size.render(out, "clipper_model_batch_size", model_labels(key));
  render_selection(out);
  render_replicas(out);
  return out;
}

}  // namespace clipper::metrics
