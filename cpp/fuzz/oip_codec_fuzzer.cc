// libFuzzer target: the Open Inference Protocol codec (query/oip_codec.*): infer requests (JSON
// tensors and the binary-data extension) for every input type, /v2 paths, and the answers rendered
// around arbitrary model outputs. Input layout: byte 0 picks the input type, bytes 1-2 the
// Inference-Header-Content-Length (0xffff: absent, 0xfffe: not a number), the rest is the body.
// Beyond the sanitizers it checks that:
// - a decoded request is what it promises: at most max_rows rows, each the right size for its type
//   (valid UTF-8 for strings), and outputs to answer with;
// - a refusal is a 400 or a 413 with a reason, rendered as valid JSON;
// - the body taken as a path parses or not without harm, and metadata and infer answers rendered
//   around it (as a model name, as model outputs) have a valid JSON header.
// Seeds: cpp/fuzz/corpus/oip_codec/ (made by cpp/fuzz/make_seeds.py); dictionary: json.dict.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/input_type.h"
#include "fuzz/fuzz_support.h"
#include "query/oip_codec.h"

namespace {

using clipper::InputType;
using clipper::fuzz::is_strict_json;
using clipper::fuzz::is_utf8;

constexpr std::size_t kMaxRows = 64;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const auto type = static_cast<InputType>(data[0] % 5);
  const unsigned declared = static_cast<unsigned>(data[1]) << 8 | data[2];
  const std::string header = declared == 0xffff ? "" : declared == 0xfffe ? "12x" : std::to_string(declared);
  const std::string_view body(reinterpret_cast<const char*>(data + 3), size - 3);

  const auto decoded = clipper::oip::decode_infer_request(body, header, type, kMaxRows);
  if (decoded.ok()) {
    const auto& request = *decoded.request;
    FUZZ_CHECK(request.rows.size() <= kMaxRows);
    FUZZ_CHECK(!request.outputs.empty());
    for (const auto& row : request.rows) {
      if (clipper::is_numeric(type)) {
        FUZZ_CHECK(row.payload.size() == row.element_count * clipper::element_size(type));
      } else {
        FUZZ_CHECK(row.payload.size() == row.element_count);
        FUZZ_CHECK(row.payload.size() <= body.size());
        if (type == InputType::Strings) FUZZ_CHECK(is_utf8(row.payload));
      }
    }
    // The answer to this request, each row's output being the body (replicas send arbitrary bytes).
    std::vector<clipper::oip::RowAnswer> rows(request.rows.size(), {body, false});
    if (!rows.empty()) rows.back().is_default = true;
    std::string out;
    const clipper::oip::InferAnswer answer{"m", "1", &request.id, "m:1", body};
    const std::size_t json_length = clipper::oip::render_infer_response(answer, rows, request.outputs, out);
    FUZZ_CHECK(json_length <= out.size());
    FUZZ_CHECK(is_strict_json(std::string_view(out).substr(0, json_length)));
  } else {
    FUZZ_CHECK(decoded.status == 400 || decoded.status == 413);
    FUZZ_CHECK(!decoded.error.empty());
    FUZZ_CHECK(is_strict_json(clipper::oip::render_error(decoded.error)));
  }
  // The body as a request target, and as a model name in the metadata.
  if (clipper::oip::is_protocol_path(body)) {
    if (const auto target = clipper::oip::parse_target(body)) {
      FUZZ_CHECK(target->model.size() <= body.size() && target->version.size() <= body.size());
      FUZZ_CHECK(is_strict_json(clipper::oip::render_model_metadata(target->model, {target->version}, type)));
    }
  }
  FUZZ_CHECK(is_strict_json(clipper::oip::render_model_metadata(body, {std::string(body)}, type)));
  return 0;
}
