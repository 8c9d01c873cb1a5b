#include "rpc/batching_report.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <tuple>

#include "common/cut_reason.h"
#include "rpc/dispatcher.h"

namespace clipper {

std::vector<ReplicaInfo> BatchingReport::replicas() const {
  std::lock_guard lock(mutex_);
  return replicas_;
}

std::string BatchingReport::batching_state_json() const {
  std::lock_guard lock(mutex_);
  return batching_state_;
}

void BatchingReport::publish(const ReplicaSet& replicas, const std::vector<ModelVersion*>& models,
                             const Dispatcher& dispatcher, const EngineOptions& options) {
  std::vector<ReplicaInfo> snapshot;
  snapshot.reserve(replicas.size());
  for (const auto& [address, replica] : replicas.all()) {
    snapshot.push_back(ReplicaInfo{replica.model->name, replica.model->version, replica.replica_id,
                                   std::string(input_type_name(replica.model->input_type)),
                                   static_cast<int>(replica.inflight.size()), replica.transport});
  }
  std::sort(snapshot.begin(), snapshot.end(), [](const ReplicaInfo& a, const ReplicaInfo& b) {
    return std::tie(a.model_name, a.model_version, a.replica_id) <
           std::tie(b.model_name, b.model_version, b.replica_id);
  });

  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartArray();
  for (ModelVersion* model : models) {
    writer.StartObject();
    writer.Key("model_name");
    writer.String(model->name.c_str());
    writer.Key("model_version");
    writer.String(model->version.c_str());
    writer.Key("batch_size");
    writer.Int(model->batch_size_limit.load());
    writer.Key("max_batch_size");
    writer.Int(dispatcher.batch_cap(*model));
    writer.Key("batch_wait_timeout_micros");
    writer.Int64(model->batch_wait_timeout_micros.load());
    writer.Key("slo_micros");
    writer.Int64(model->slo_micros.load());
    writer.Key("latency_objective_micros");
    writer.Int64(static_cast<int64_t>(model->slo_micros.load() * options.batch_latency_slo_fraction));
    writer.Key("learned_batch_size");
    writer.Int(model->learned_batch_size.load());
    writer.Key("queued");
    writer.Uint64(model->queue.approximate_size());
    // What admission control estimates with (batching/admission.h): a batch of one, a batch of
    // `batch_size`, the latest batch sent (what a busy replica is charged) and the correction learned
    // from late admitted tasks.
    if (const auto service = model->admission.snapshot()) {
      writer.Key("admission");
      writer.StartObject();
      writer.Key("one_input_micros");
      writer.Double(service->one_input_micros);
      writer.Key("full_batch_micros");
      writer.Double(service->full_batch_micros);
      writer.Key("batch_size");
      writer.Int(service->batch_size);
      writer.Key("serving_replicas");
      writer.Int(service->serving_replicas);
      writer.Key("correction");
      writer.Double(service->correction);
      writer.Key("busy_batch_micros");
      writer.Double(service->busy_batch_micros);
      writer.EndObject();
    }
    writer.Key("batch_cuts");
    writer.StartObject();
    for (std::size_t i = 0; i < kCutReasons; ++i) {
      const auto name = cut_reason_name(static_cast<CutReason>(i));
      writer.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
      writer.Uint64(model->metrics->batch_cut_reasons[i].value());
    }
    writer.EndObject();
    writer.Key("replicas");
    writer.StartArray();
    for (const auto& [address, replica] : replicas.all()) {
      if (replica.model != model) continue;
      writer.StartObject();
      writer.Key("replica_id");
      writer.Int(replica.replica_id);
      writer.Key("batch_size");
      writer.Int(replica.controller->batch_size());
      writer.Key("adaptive");
      writer.Bool(replica.controller->adaptive());
      writer.Key("backoffs");
      writer.Uint64(replica.controller->backoffs());
      writer.Key("slow");
      writer.Bool(replica.slow);
      writer.Key("recent_batch_latencies_micros");
      writer.StartArray();
      std::size_t count = 0;
      const auto recent = replica.controller->recent_latencies(count);
      for (std::size_t i = 0; i < count; ++i) writer.Int64(recent[i]);
      writer.EndArray();
      writer.EndObject();
    }
    writer.EndArray();
    writer.EndObject();
  }
  writer.EndArray();

  std::lock_guard lock(mutex_);
  replicas_ = std::move(snapshot);
  batching_state_.assign(buffer.GetString(), buffer.GetSize());
}

}  // namespace clipper
