// libFuzzer target: the query codec (query/query_codec.*), which decodes every /predict and /update
// body. Each input is one body, decoded as a predict and as an update body for every input type (the
// types share the parser but not the checks). Beyond the sanitizers it checks that:
// - a decoded input is what its type promises: packed numbers of the right size, valid UTF-8 strings,
//   and numbers that survive being written back as JSON and decoded again, bit for bit;
// - a refusal names an error and a cause, and its rendered answer is valid JSON (UTF-8 included);
// - the answer rendered around the body taken as a model's output is valid JSON too (render_prediction
//   embeds valid JSON as is and quotes anything else);
// - decode_predict_body and decode_update_body (one-pass readers for the common bodies, the general
//   decoders otherwise) give exactly what the general decoders alone give: the same bytes, or the
//   same refusal.
// Seeds: cpp/fuzz/corpus/query_codec/ (made by cpp/fuzz/make_seeds.py); dictionary: json.dict.

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "common/input_type.h"
#include "fuzz/fuzz_support.h"
#include "query/query_codec.h"

namespace {

using clipper::DecodedInput;
using clipper::InputType;
using clipper::fuzz::is_strict_json;
using clipper::fuzz::is_utf8;

template <typename Element>
Element element_at(const DecodedInput& input, std::size_t index) {
  Element element;
  std::memcpy(&element, input.payload.data() + index * sizeof(Element), sizeof(Element));
  return element;
}

// `input` written back as the JSON a client would send, e.g. {"input": [1.5, 2]}.
std::string as_predict_body(const DecodedInput& input, InputType type) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartObject();
  writer.Key("input");
  writer.StartArray();
  for (std::size_t i = 0; i < input.element_count; ++i) {
    if (type == InputType::Ints) writer.Int(element_at<int32_t>(input, i));
    if (type == InputType::Floats) writer.Double(element_at<float>(input, i));
    if (type == InputType::Doubles) writer.Double(element_at<double>(input, i));
  }
  writer.EndArray();
  writer.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

void check_input(const DecodedInput& input, InputType type, std::size_t body_size) {
  if (clipper::is_numeric(type)) {
    FUZZ_CHECK(input.payload.size() == input.element_count * clipper::element_size(type));
    const auto again = clipper::decode_predict_body(as_predict_body(input, type), type);
    FUZZ_CHECK(again.ok() && again.value->inputs.size() == 1);
    FUZZ_CHECK(again.value->inputs[0].payload == input.payload);
  } else {
    FUZZ_CHECK(input.element_count == input.payload.size());
    FUZZ_CHECK(input.payload.size() <= body_size);
    if (type == InputType::Strings) FUZZ_CHECK(is_utf8(input.payload));
  }
}

void check_same_as_general(const clipper::DecodeResult<clipper::PredictBody>& decoded, std::string_view body,
                           InputType type) {
  const auto general = clipper::decode_predict_body_general(body, type);
  FUZZ_CHECK(decoded.ok() == general.ok());
  if (!decoded.ok()) {
    FUZZ_CHECK(decoded.failure.error == general.failure.error && decoded.failure.cause == general.failure.cause);
    return;
  }
  FUZZ_CHECK(decoded.value->inputs.size() == general.value->inputs.size());
  FUZZ_CHECK(decoded.value->is_batch == general.value->is_batch && decoded.value->uid == general.value->uid &&
             decoded.value->version == general.value->version);
  for (std::size_t i = 0; i < decoded.value->inputs.size(); ++i) {
    FUZZ_CHECK(decoded.value->inputs[i].payload == general.value->inputs[i].payload);
    FUZZ_CHECK(decoded.value->inputs[i].element_count == general.value->inputs[i].element_count);
  }
}

void check_update_same_as_general(const clipper::DecodeResult<clipper::UpdateBody>& decoded,
                                  std::string_view body, InputType type) {
  const auto general = clipper::decode_update_body_general(body, type);
  FUZZ_CHECK(decoded.ok() == general.ok());
  if (!decoded.ok()) {
    FUZZ_CHECK(decoded.failure.error == general.failure.error && decoded.failure.cause == general.failure.cause);
    return;
  }
  FUZZ_CHECK(decoded.value->uid == general.value->uid &&
             std::memcmp(&decoded.value->label, &general.value->label, sizeof(double)) == 0);
  FUZZ_CHECK(decoded.value->input.payload == general.value->input.payload &&
             decoded.value->input.element_count == general.value->input.element_count);
}

void check_refusal(const clipper::DecodeError& failure) {
  FUZZ_CHECK(!failure.error.empty() && !failure.cause.empty());
  FUZZ_CHECK(is_strict_json(clipper::render_error(failure.error, failure.cause)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (const InputType type :
       {InputType::Bytes, InputType::Ints, InputType::Floats, InputType::Doubles, InputType::Strings}) {
    const auto predict = clipper::decode_predict_body(body, type);
    check_same_as_general(predict, body, type);
    if (predict.ok()) {
      FUZZ_CHECK(predict.value->is_batch || predict.value->inputs.size() == 1);
      for (const auto& input : predict.value->inputs) check_input(input, type, size);
    } else {
      check_refusal(predict.failure);
    }
    const auto update = clipper::decode_update_body(body, type);
    check_update_same_as_general(update, body, type);
    if (update.ok()) {
      check_input(update.value->input, type, size);
    } else {
      check_refusal(update.failure);
    }
  }
  // The body as a model's output (replicas send arbitrary bytes), and as a default's explanation.
  std::string answer;
  clipper::render_prediction(answer, 7, body, false, {});
  FUZZ_CHECK(is_strict_json(answer));
  answer.clear();
  clipper::render_prediction(answer, 7, "0", true, body);
  FUZZ_CHECK(is_strict_json(answer));
  return 0;
}
