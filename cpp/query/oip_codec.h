// The Open Inference Protocol (KServe v2, REST) on the wire: parses /v2 paths, decodes an infer request
// (JSON tensors and the binary-data extension) into the inputs of one Clipper input type, and renders
// metadata, infer responses and errors (requests in oip_codec.cc, answers in oip_render.cc). It knows
// input types and tensors, not apps, routes or queries (the query processor resolves names and runs
// the query). Pure functions with no shared state: the I/O threads call them per request.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/input_type.h"
#include "query/query_codec.h"

namespace clipper::oip {

enum class Endpoint : uint8_t {
  ServerMetadata,  // GET /v2
  ServerLive,      // GET /v2/health/live
  ServerReady,     // GET /v2/health/ready
  ModelMetadata,   // GET /v2/models/<name>[/versions/<v>]
  ModelReady,      // GET /v2/models/<name>[/versions/<v>]/ready
  ModelInfer,      // POST /v2/models/<name>[/versions/<v>]/infer
};

struct Target {
  Endpoint endpoint = Endpoint::ServerMetadata;
  std::string model;    // percent-decoded; empty for the server endpoints
  std::string version;  // percent-decoded; empty when the path names no version
};

// True for "/v2" and every path below it (the query string aside).
bool is_protocol_path(std::string_view target);

// The endpoint a /v2 path names; nullopt when the protocol has no such endpoint here (404).
std::optional<Target> parse_target(std::string_view target);

// The two output tensors every model answers with: the model's outputs, one per row, and whether each
// row was answered by the application's default output.
enum class OutputTensor : uint8_t { Output, Default };
inline constexpr std::string_view kOutputName = "output";
inline constexpr std::string_view kDefaultName = "default";

struct RequestedOutput {
  OutputTensor tensor = OutputTensor::Output;
  bool binary = false;  // sent after the JSON header (binary-data extension) instead of in "data"
};

struct InferRequest {
  std::optional<std::string> id;   // echoed in the response
  std::vector<DecodedInput> rows;  // the batch dimension: one Clipper input per row
  int64_t uid = 0;                 // parameters.uid: whose selection state picks the model(s)
  // The outputs to answer with, in order: those the request named, else both (binary when the request
  // set parameters.binary_data_output).
  std::vector<RequestedOutput> outputs;
};

struct InferDecode {
  std::optional<InferRequest> request;
  int status = 400;   // 400, or 413 for a batch over `max_rows`
  std::string error;  // why the request is refused, naming the field
  bool ok() const { return request.has_value(); }
};

// Decodes an infer request for a model of input type `type`. `json_header_length` is the
// Inference-Header-Content-Length header as sent (empty when absent): the JSON is that many bytes at
// the start of `body` and the inputs' binary data follows it, in input order. Every size, shape and
// count is checked against the bytes actually sent before anything is allocated for it, and a batch
// of more than `max_rows` rows is refused before its rows are.
InferDecode decode_infer_request(std::string_view body, std::string_view json_header_length, InputType type,
                                 std::size_t max_rows);

// The input tensor a model of this type takes: datatype and shape in the metadata's notation
// ("FP64" [-1, -1] for doubles, "BYTES" [-1] for bytes and strings, ...).
struct TensorSignature {
  std::string_view datatype;
  std::vector<int64_t> shape;
};
TensorSignature input_signature(InputType type);

// One row of an answer: the model's (or the default) output text, and whether it is the default.
struct RowAnswer {
  std::string_view output;
  bool is_default = false;
};

struct InferAnswer {
  std::string_view model_name;
  std::string_view model_version;        // omitted when empty
  const std::optional<std::string>* id = nullptr;
  std::string_view model_label;          // parameters.clipper_model: "name:version" of the model asked
  std::string_view default_explanation;  // parameters.default_explanation: why a row got the default
};

// Renders an infer response into `out`: the JSON header, followed by the outputs asked in binary, in
// order. Returns the JSON header's length (the Inference-Header-Content-Length to send when it is
// shorter than `out`). The "output" tensor is FP64 when every row's output is a JSON number ([batch])
// or every row's output is a JSON array of numbers of one length k ([batch, k]); otherwise BYTES
// [batch] holding each output's text as the model returned it. "default" is BOOL [batch].
std::size_t render_infer_response(const InferAnswer& answer, const std::vector<RowAnswer>& rows,
                                  const std::vector<RequestedOutput>& outputs, std::string& out);

// {"name": "clipper", "version": ..., "extensions": [...]}
std::string render_server_metadata(std::string_view server_version);

// {"name", "versions", "platform", "inputs", "outputs"} of a model (or app) of input type `type`.
std::string render_model_metadata(std::string_view name, const std::vector<std::string>& versions,
                                  InputType type);

// {"error": message}: the protocol's error body (invalid UTF-8 in `message` is replaced).
std::string render_error(std::string_view message);

}  // namespace clipper::oip
