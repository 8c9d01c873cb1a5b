// Decodes the JSON bodies of /predict and /update into typed inputs, and renders JSON answers.
// Pure functions with no shared state: the I/O threads call them per request.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/input_type.h"

namespace clipper {

// One decoded input: numeric types as packed little-endian elements, bytes decoded from base64,
// strings as raw UTF-8. `element_count` is the number of numeric elements (bytes for the others).
struct DecodedInput {
  std::string payload;
  uint32_t element_count = 0;
};

struct PredictBody {
  std::vector<DecodedInput> inputs;
  bool is_batch = false;                 // the body used "input_batch"
  std::optional<std::string> version;    // "version": query this version of the linked model
  int64_t uid = 0;                       // "uid": whose selection state picks the model(s)
};

struct UpdateBody {
  int64_t uid = 0;
  DecodedInput input;
  double label = 0.0;
};

// A client error: `error` is the short kind ("Json error"), `cause` says what was wrong and the
// schema that was expected.
struct DecodeError {
  std::string error;
  std::string cause;
};

template <typename T>
struct DecodeResult {
  std::optional<T> value;
  DecodeError failure;
  bool ok() const { return value.has_value(); }
};

// The common bodies are read in one pass, each number scanned once and packed straight into the
// payload: a /predict object of "input" or "input_batch" with "uid" and "version" (any order, each
// once), an /update object of "uid", "input" and "label", with strings (keys, string and bytes inputs,
// the version) that have no escapes. Any other body goes through the general decoder (a rapidjson
// document), which also words every error. Same results either way.
DecodeResult<PredictBody> decode_predict_body(std::string_view body, InputType type);
DecodeResult<UpdateBody> decode_update_body(std::string_view body, InputType type);
// The one-pass readers alone: nothing when a body is not one of the common ones above.
std::optional<PredictBody> decode_common_predict_body(std::string_view body, InputType type);
std::optional<UpdateBody> decode_common_update_body(std::string_view body, InputType type);
// The general decoders alone: tests and the fuzzer hold the one-pass readers to them.
DecodeResult<PredictBody> decode_predict_body_general(std::string_view body, InputType type);
DecodeResult<UpdateBody> decode_update_body_general(std::string_view body, InputType type);

// Appends one prediction object ({"query_id", "output", "default", "default_explanation"?}) to `out`.
// `output` is embedded as JSON when it is valid JSON, else as a JSON string.
// An ensemble's answer also carries "confidence" (the weight share behind it) and "partial": true when
// some model asked did not answer in time; a cascade's carries "confidence" (the answering model's),
// "model" ("name:version" of the model that answered) and "partial" (it stopped unsure because a model
// did not answer). Both carry "failed_models" (the members, "name:version", that reported an error for
// this input) when any did. Pass them through `ensemble`.
struct EnsembleFields {
  double confidence = 0.0;
  bool partial = false;
  std::string_view model;  // empty: not rendered
  std::span<const std::string_view> failed_models;  // members that reported an error; empty: not rendered
};
void render_prediction(std::string& out, uint64_t query_id, std::string_view output, bool is_default,
                       std::string_view default_explanation, const EnsembleFields* ensemble = nullptr);

// {"error": ..., "cause": ...}
std::string render_error(std::string_view error, std::string_view cause);

// True when `text` is one complete, valid JSON value.
bool is_valid_json(std::string_view text);

}  // namespace clipper
