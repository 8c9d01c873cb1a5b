// One I/O thread: its libuv loop, its HTTP server, and the queries it is waiting on. It routes each
// request, submits the inputs the cache cannot answer to the TaskScheduler, and answers when every
// input has an output or the app's deadline passes, whichever is first (a query is never answered
// twice). It is its thread's CompletionSink: answers come back through deliver() / deliver_here().
// Everything here runs on that one thread, except deliver() and request_stop(), which any thread calls.
// The class's parts live in units of their own: admission control (admission_gate.cc), the cascade
// path (cascade_query.cc) and the Open Inference Protocol (oip_handler.cc).
// Invariant: a query key is in `pending_` exactly until its query was answered; a completion or a
// deadline for a key no longer there is ignored.
#pragma once

#include <absl/container/flat_hash_map.h>
#include <absl/container/inlined_vector.h>
#include <concurrentqueue/concurrentqueue.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/completion_sink.h"
#include "common/task.h"
#include "common/task_scheduler.h"
#include "query/deadline_queue.h"
#include "query/oip_codec.h"
#include "query/query_codec.h"
#include "engine/routing.h"
#include "http/http_server.h"
#include "selection/weighted_draw.h"

namespace clipper {

class Engine;

class QueryProcessor final : public http::RequestHandler, public CompletionSink {
 public:
  QueryProcessor(Engine& engine, TaskScheduler& scheduler, uint32_t io_thread);
  ~QueryProcessor() override;

  // Takes listening sockets before run(); the metrics-only listener answers just /metrics and health.
  int serve_queries(int listening_fd) { return http_.serve_socket(listening_fd); }
  int serve_metrics(int listening_fd);

  void run();                 // the thread's body; returns after request_stop()
  void request_stop();        // any thread
  void deliver(std::vector<Completion>& completions) override;       // replica side: answers arrive
  void deliver_here(std::vector<Completion>& completions) override;  // the same, on this loop's thread
  uv_loop_t* loop() { return &loop_; }
  // Runs on this thread when it stops, before its loop ends (e.g. to detach a guest from the loop).
  void on_stopping(std::function<void()> callback) { on_stopping_ = std::move(callback); }

  void on_request(http::HttpRequest&& request, http::ResponseSlot slot) override;

 private:
  struct InputResult {
    bool done = false;
    bool is_default = false;
    std::string output;
    std::string explanation;
    ModelConfidence reported;  // what the model reported with `output` (one model's slot)
    double confidence = 1.0;   // an ensemble's answer: the weight share behind it; a cascade's: the
                               // answering model's confidence
    bool partial = false;      // some model asked did not answer (ensemble); the cascade stopped
                               // unsure because a model did not answer (cascade)
    int32_t answered_by = -1;  // a cascade's answer: the stage (index into model_labels) that gave it
    bool model_failed = false;  // the default answers because the model reported an error (an
                                // ensemble's or cascade's: because a member did, none answering)
    uint32_t failed_members = 0;  // an ensemble's or cascade's answer: bit m set when model m (index
                                  // into model_labels; the first 32) reported an error
  };
  // An Open Inference Protocol infer request: what its response carries besides the outputs.
  struct OipCall {
    std::string model_name;     // as the path named it
    std::string model_version;  // as the path named it, or the version a model route serves
    std::optional<std::string> id;
    std::vector<oip::RequestedOutput> outputs;
  };
  // The models one query asks, chosen by the app's selection plan (null: linked but unable to answer).
  struct ModelChoice {
    absl::InlinedVector<ModelVersion*, 2> models;
    absl::InlinedVector<uint32_t, 2> linked;  // each model's index in the app's linked_models
    std::vector<double> weights;  // ensemble: one per model asked
    bool cascade = false;         // `models` are stages, asked in order while the answers are unsure
    std::string no_model_reason;  // why nothing can be asked, when `models` is empty
  };
  struct PendingQuery {
    http::ResponseSlot slot;
    std::shared_ptr<const AppRoute> app;
    std::string model_label;
    bool is_batch = false;
    uint64_t first_query_id = 0;
    // One slot per (input, model asked): slot = input * models_per_input + model. One input and one
    // model, the common case, needs no allocation.
    absl::InlinedVector<InputResult, 1> results;
    uint32_t remaining = 0;
    uint32_t models_per_input = 1;
    std::vector<std::string> model_labels;  // several models asked: "name:version" of each
    std::vector<double> weights;             // ensemble: one per model asked
    bool ensemble = false;
    // Cascade: slot = input * stages + stage; `remaining` counts inputs not settled yet. Each input
    // asks one stage at a time (`stage`), so the inputs are kept for the stages still to ask.
    bool cascade = false;
    absl::InlinedVector<ModelVersion*, 2> stages;   // null: linked but unable to answer
    absl::InlinedVector<uint32_t, 2> linked;        // each model asked: its index in linked_models
    absl::InlinedVector<uint32_t, 1> stage;         // per input: the stage asked now
    std::vector<DecodedInput> inputs;
    Clock::time_point received;
    Clock::time_point deadline;
    // /update: the outputs become a feedback round for the app's policy instead of an answer.
    bool is_feedback = false;
    int64_t uid = 0;
    double label = 0.0;
    std::unique_ptr<OipCall> oip;  // set: answer in the Open Inference Protocol's format
  };
  // An /update whose round the control plane is applying; answered when it reports, or at `expires`.
  struct AwaitingFeedback {
    http::ResponseSlot slot;
    std::shared_ptr<const AppRoute> app;
    uint64_t query_id = 0;
    Clock::time_point expires;
  };

  class MetricsOnlyHandler final : public http::RequestHandler {
   public:
    explicit MetricsOnlyHandler(QueryProcessor& owner) : owner_(owner) {}
    void on_request(http::HttpRequest&& request, http::ResponseSlot slot) override;
   private:
    QueryProcessor& owner_;
  };

  static void on_completions(uv_async_t* handle);
  static void on_deadline_timer(uv_timer_t* handle);
  static void on_stop(uv_async_t* handle);
  static void on_pass_done(uv_check_t* handle);

  const RoutingTable& current_routing();
  void handle_predict(const std::shared_ptr<const AppRoute>& app, http::HttpRequest& request,
                      http::ResponseSlot slot, Clock::time_point received);
  // A decoded query of /predict or OIP infer (`oip` set): picks the model(s) and submits the inputs.
  // `now` (else read here): the time admission judges it at.
  void start_predict(const std::shared_ptr<const AppRoute>& app, PredictBody& body, http::ResponseSlot slot,
                     Clock::time_point received, std::unique_ptr<OipCall> oip) {
    start_predict(app, body, slot, received, Clock::now(), std::move(oip));
  }
  void start_predict(const std::shared_ptr<const AppRoute>& app, PredictBody& body, http::ResponseSlot slot,
                     Clock::time_point received, Clock::time_point now, std::unique_ptr<OipCall> oip);
  // The Open Inference Protocol under /v2 (oip_handler.cc).
  void handle_oip(http::HttpRequest& request, http::ResponseSlot slot, Clock::time_point received);
  void handle_oip_model(const oip::Target& target, http::HttpRequest& request, http::ResponseSlot slot,
                        Clock::time_point received);
  void finish_oip(PendingQuery& query);
  void reply_oip_error(http::ResponseSlot slot, int status, std::string_view message, const AppRoute* app);
  void handle_update(const std::shared_ptr<const AppRoute>& app, http::HttpRequest& request,
                     http::ResponseSlot slot, Clock::time_point received);
  bool answer_health(const http::HttpRequest& request, http::ResponseSlot slot, http::HttpServer& server);
  void drain_completions();
  // `now`: when the completions being delivered reached this thread (one clock read per delivery).
  void complete(Completion& completion, Clock::time_point now);
  void answer_overdue(uint64_t query_key, PendingQuery& query);
  void expire_deadlines();
  void arm_deadline_timer(Clock::time_point deadline);
  ModelChoice choose_models(const AppRoute& app, int64_t uid);
  ModelChoice every_linked_model(const AppRoute& app);
  // Admission control (admission_gate.cc): why a query must be refused at arrival (a memory bound, or
  // a model that could not answer within `budget_micros` of `received` given its queue and measured
  // service rate, counting only the inputs the cache cannot answer), or nothing to admit it.
  struct Refusal {
    metrics::RejectReason reason;
    int64_t retry_after_seconds = 1;
    std::string cause;
  };
  // With the cache on, `keys` gets the inputs' cache keys (model-major, as submit_inputs asks) when
  // the look-up computed them; empty otherwise.
  std::optional<Refusal> admission_refusal(const AppRoute& app, const ModelChoice& choice,
                                           const std::vector<DecodedInput>& inputs, Clock::time_point received,
                                           Clock::time_point now, int64_t budget_micros,
                                           std::vector<CacheKey>& keys);
  // Per model judged (a cascade: its first): the inputs the cache does not hold, and their bytes.
  struct UncachedCount {
    std::size_t count = 0;
    std::size_t bytes = 0;
  };
  using UncachedInputs = absl::InlinedVector<UncachedCount, 2>;
  // The checks themselves; `uncached` null: every input counts as needing its model. `now`: the time
  // they judge at (the caller's one clock read for the request).
  std::optional<Refusal> judge_admission(const AppRoute& app, const ModelChoice& choice,
                                         const std::vector<DecodedInput>& inputs, const UncachedInputs* uncached,
                                         Clock::time_point received, Clock::time_point now,
                                         int64_t budget_micros) const;
  // `model`'s bounds and deadline for `count` more inputs of `bytes` with `left_micros` of the query's
  // time limit (`budget_micros`: the SLO, or an /update's evaluation time) left.
  std::optional<Refusal> model_refusal(const ModelVersion& model, std::size_t count, std::size_t bytes,
                                       double left_micros, int64_t budget_micros) const;
  // The same judgement from the route alone, before the body is decoded (decoding is most of what a
  // refusal costs), where the client gets the refusal (/predict of an app answering overload with 429,
  // OIP infer, /update): the lag gate (the request waited out its time limit before it was read:
  // refused whatever the cache holds), then, with the cache off, a refusal when even one input could
  // not be answered in time; nothing when the body is needed to decide. `named_version`: the version
  // an OIP path names (else null).
  enum class Arrival { Predict, Infer, Update };
  std::optional<Refusal> refusal_before_decoding(const AppRoute& app, Arrival arrival, std::string_view body,
                                                 const ModelVersion* named_version, Clock::time_point received,
                                                 Clock::time_point now, int64_t budget_micros) const;
  std::optional<Refusal> refusal_before_decoding(const AppRoute& app, Arrival arrival, std::string_view body,
                                                 const ModelVersion* named_version, Clock::time_point received,
                                                 int64_t budget_micros) const {
    return refusal_before_decoding(app, arrival, body, named_version, received, Clock::now(), budget_micros);
  }
  // The time admission judges a request at after decoding its body: `before` (the clock read that
  // judged it before decoding) unless the body is large enough for its decoding to take a while.
  static Clock::time_point judged_after_decoding(std::string_view body, Clock::time_point before) {
    return body.size() > kDecodedWithoutClockBytes ? Clock::now() : before;
  }
  // Up to this size a body decodes in a few microseconds (W1's 200 bytes: ~1 us), well within the
  // lag and deadline judgements' precision: one clock read serves before and after decoding.
  static constexpr std::size_t kDecodedWithoutClockBytes = 4096;
  // The lag gate's refusal: the request waited out its whole time limit before it was read.
  static Refusal lag_refusal(int64_t waited_micros, int64_t budget_micros);
  // 429 or 503 with Retry-After, in Clipper's error format or the Open Inference Protocol's.
  void reply_overloaded(const AppRoute& app, const Refusal& refusal, http::ResponseSlot slot, bool oip_format);
  using ModelsToNotify = absl::InlinedVector<ModelVersion*, 2>;
  // Looks each input up in the cache and submits the rest; returns false when the query is complete.
  // `keys`: the inputs' cache keys from admission (model-major), or empty to compute them.
  bool submit_inputs(uint64_t query_key, PendingQuery& query, const ModelChoice& choice,
                     std::vector<DecodedInput>& inputs, const std::vector<CacheKey>& keys);
  // Asks `model` for the input of result `slot`: from the cache (the slot is done), joined to the
  // identical evaluation in flight, or queued as a task (the caller notifies the model). `take_payload`:
  // the input is not needed after this (moved into the task instead of copied).
  enum class Asked { FromCache, Joined, Queued };
  // `key`: the input's cache key when already computed (else null).
  Asked ask_model(uint64_t query_key, PendingQuery& query, uint32_t slot, ModelVersion& model, DecodedInput& input,
                  bool take_payload, Clock::time_point enqueued, const CacheKey* key = nullptr);
  // Keeps a query that waits for answers until they come or its deadline passes, and wakes the models.
  void await_answers(uint64_t query_key, PendingQuery&& query, const ModelsToNotify& notify);
  // The cascade path (cascade_query.cc): the app's models in its cascade order.
  ModelChoice cascade_stages(const AppRoute& app);
  // Cascade: asks each input's first stage; false when every input settled at once (from the cache).
  bool submit_cascade(uint64_t query_key, PendingQuery& query, const ModelChoice& choice,
                      std::vector<DecodedInput>& inputs);
  // Cascade: moves input `index` on from its current stage: asks it, or takes its cached answer,
  // escalates past an unsure or failed answer, or settles the input (--remaining).
  void advance_cascade(uint64_t query_key, PendingQuery& query, uint32_t index, ModelsToNotify& notify);
  // Cascade: an answer (or a failure) of the stage input `index` was waiting on arrived.
  void cascade_stage_answered(uint64_t query_key, PendingQuery& query, uint32_t index, CompletionKind kind);
  // Cascade: the deadline passed; the stage each unsettled input waits on answers with the default.
  void cascade_overdue(PendingQuery& query);
  void combine_cascade(PendingQuery& query);
  void combine_ensemble(PendingQuery& query);
  // An ensemble's or cascade's members for one input: which reported an error (bits by member), and
  // why none answered (every member's reason).
  static uint32_t failed_members(std::span<const InputResult> members);
  static std::string why_none_answered(std::span<const InputResult> members);
  void count_selections(const AppRoute& app, const ModelChoice& choice, uint32_t inputs);
  void send_feedback_round(uint64_t query_key, PendingQuery& query);
  void answer_feedback(Completion& completion);
  void fill_defaults(PendingQuery& query, const std::string& explanation);
  // `now`: the caller's reading of the clock, when it has one (one reading per answered query).
  void finish(uint64_t query_key, PendingQuery& query) { finish(query_key, query, Clock::now()); }
  void finish(uint64_t query_key, PendingQuery& query, Clock::time_point now);
  void record_answered(const PendingQuery& query, Clock::time_point now);
  void reply_error(http::HttpServer& server, http::ResponseSlot slot, int status, std::string_view error,
                   std::string_view cause, const AppRoute* app);

  Engine& engine_;
  TaskScheduler& scheduler_;
  const uint32_t io_thread_;
  std::function<void()> on_stopping_;
  uv_loop_t loop_;
  http::HttpServer http_;
  MetricsOnlyHandler metrics_handler_;
  std::unique_ptr<http::HttpServer> metrics_http_;
  uv_async_t completions_async_;
  uv_async_t stop_async_;
  uv_timer_t deadline_timer_;
  uv_check_t pass_done_;  // after each pass's I/O: a new number for the draws (draw_uniform_)
  PassUniform draw_uniform_;
  Clock::time_point armed_deadline_ = Clock::time_point::max();

  moodycamel::ConcurrentQueue<Completion> completions_;
  std::vector<Completion> drained_;
  DeadlineQueue deadlines_;
  absl::flat_hash_map<uint64_t, PendingQuery> pending_;  // open addressing: no node per query
  // The query start_predict builds in pending_ itself while it submits it (await_answers then leaves
  // it there); null otherwise.
  const PendingQuery* building_in_place_ = nullptr;
  absl::flat_hash_map<uint64_t, AwaitingFeedback> awaiting_feedback_;
  std::vector<double> weights_scratch_;
  std::vector<CacheKey> admission_keys_;  // admission's cache keys, reused by submit_inputs

  std::shared_ptr<const RoutingTable> routing_;
  uint64_t routing_generation_ = 0;
};

}  // namespace clipper
