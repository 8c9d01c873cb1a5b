#include "query/oip_codec.h"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cstring>
#include <string>
#include <vector>

namespace clipper::oip {
namespace {

constexpr std::size_t kMaxRows = 100000;

template <typename Element>
std::vector<Element> elements_of(const DecodedInput& input) {
  std::vector<Element> values(input.payload.size() / sizeof(Element));
  std::memcpy(values.data(), input.payload.data(), input.payload.size());
  return values;
}

template <typename Element>
std::string raw_bytes(const std::vector<Element>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(Element));
}

std::string length_prefixed(const std::vector<std::string>& elements) {
  std::string out;
  for (const std::string& element : elements) {
    const auto length = static_cast<uint32_t>(element.size());
    out.append(reinterpret_cast<const char*>(&length), 4);
    out += element;
  }
  return out;
}

InferDecode decode(const std::string& body, InputType type, const std::string& header_length = "") {
  return decode_infer_request(body, header_length, type, kMaxRows);
}

// A request whose JSON header is followed by `binary` (the binary-data extension).
InferDecode decode_binary(const std::string& json, const std::string& binary, InputType type) {
  return decode(json + binary, type, std::to_string(json.size()));
}

rapidjson::Document parse(const std::string& json) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  EXPECT_FALSE(doc.HasParseError()) << json;
  return doc;
}

// --- paths -----------------------------------------------------------------------------------

TEST(OipCodec, ParsesEveryEndpointWithAndWithoutVersions) {
  EXPECT_EQ(parse_target("/v2")->endpoint, Endpoint::ServerMetadata);
  EXPECT_EQ(parse_target("/v2/")->endpoint, Endpoint::ServerMetadata);
  EXPECT_EQ(parse_target("/v2/health/live")->endpoint, Endpoint::ServerLive);
  EXPECT_EQ(parse_target("/v2/health/ready?x=1")->endpoint, Endpoint::ServerReady);
  auto metadata = parse_target("/v2/models/sum");
  ASSERT_TRUE(metadata);
  EXPECT_EQ(metadata->endpoint, Endpoint::ModelMetadata);
  EXPECT_EQ(metadata->model, "sum");
  EXPECT_EQ(metadata->version, "");
  auto ready = parse_target("/v2/models/sum/versions/3/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->endpoint, Endpoint::ModelReady);
  EXPECT_EQ(ready->version, "3");
  auto infer = parse_target("/v2/models/my%20app/infer");
  ASSERT_TRUE(infer);
  EXPECT_EQ(infer->endpoint, Endpoint::ModelInfer);
  EXPECT_EQ(infer->model, "my app");
  EXPECT_EQ(parse_target("/v2/models/sum/versions/2/infer")->version, "2");
}

TEST(OipCodec, RefusesPathsTheProtocolDoesNotHave) {
  EXPECT_FALSE(is_protocol_path("/v2x"));
  EXPECT_FALSE(is_protocol_path("/app/predict"));
  EXPECT_TRUE(is_protocol_path("/v2?a"));
  for (const char* path : {"/v2/models", "/v2/models/", "/v2/models/a/config", "/v2/models/a/versions",
                           "/v2/models/a/versions/1/stats", "/v2/health", "/v2/health/dead",
                           "/v2/models//infer", "/v2/repository/index", "/v2/models/a/infer/more"}) {
    EXPECT_FALSE(parse_target(path)) << path;
  }
}

// --- decoding: JSON tensors --------------------------------------------------------------------

TEST(OipCodec, DecodesAnFp64BatchRowByRowWithIdParametersAndOutputs) {
  auto result = decode(R"({"id": "q1", "parameters": {"uid": 7, "binary_data_output": true},
      "inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3.5, 4, 5, 6]}],
      "outputs": [{"name": "default", "parameters": {"binary_data": false}}, {"name": "output"}]})",
                       InputType::Doubles);
  ASSERT_TRUE(result.ok()) << result.error;
  const InferRequest& request = *result.request;
  EXPECT_EQ(request.id, "q1");
  EXPECT_EQ(request.uid, 7);
  ASSERT_EQ(request.rows.size(), 2u);
  EXPECT_EQ(elements_of<double>(request.rows[0]), (std::vector<double>{1, 2, 3.5}));
  EXPECT_EQ(elements_of<double>(request.rows[1]), (std::vector<double>{4, 5, 6}));
  EXPECT_EQ(request.rows[1].element_count, 3u);
  ASSERT_EQ(request.outputs.size(), 2u);
  EXPECT_EQ(request.outputs[0].tensor, OutputTensor::Default);
  EXPECT_FALSE(request.outputs[0].binary);
  EXPECT_EQ(request.outputs[1].tensor, OutputTensor::Output);
  EXPECT_TRUE(request.outputs[1].binary);  // binary_data_output is the default for outputs not saying
}

TEST(OipCodec, AcceptsNestedDataInRowMajorOrder) {
  auto result = decode(R"({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT32",
      "data": [[1, 2], [3, 4]]}]})", InputType::Ints);
  ASSERT_TRUE(result.ok()) << result.error;
  EXPECT_EQ(elements_of<int32_t>(result.request->rows[1]), (std::vector<int32_t>{3, 4}));
  // Without outputs named, both come, as JSON unless binary_data_output says otherwise.
  ASSERT_EQ(result.request->outputs.size(), 2u);
  EXPECT_FALSE(result.request->outputs[0].binary);
}

TEST(OipCodec, DecodesEachInputTypeFromItsDatatype) {
  auto floats = decode(R"({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [0.5, -2]}]})",
                       InputType::Floats);
  ASSERT_TRUE(floats.ok()) << floats.error;
  EXPECT_EQ(elements_of<float>(floats.request->rows[0]), (std::vector<float>{0.5f, -2.0f}));

  auto strings = decode(R"({"inputs": [{"name": "x", "shape": [2], "datatype": "BYTES", "data": ["héllo", ""]}]})",
                        InputType::Strings);
  ASSERT_TRUE(strings.ok()) << strings.error;
  EXPECT_EQ(strings.request->rows[0].payload, "héllo");
  EXPECT_EQ(strings.request->rows[1].payload, "");

  auto bytes_column = decode(
      R"({"inputs": [{"name": "x", "shape": [2, 1], "datatype": "BYTES", "data": ["ab", "c"]}]})", InputType::Bytes);
  ASSERT_TRUE(bytes_column.ok()) << bytes_column.error;
  EXPECT_EQ(bytes_column.request->rows[1].payload, "c");

  auto uint8 = decode(R"({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "UINT8", "data": [104, 105, 0]}]})",
                      InputType::Bytes);
  ASSERT_TRUE(uint8.ok()) << uint8.error;
  EXPECT_EQ(uint8.request->rows[0].payload, std::string("hi\0", 3));
}

TEST(OipCodec, RefusesAWrongDatatypeNamingWhatTheModelTakes) {
  auto result = decode(R"({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1]}]})",
                       InputType::Doubles);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status, 400);
  EXPECT_NE(result.error.find("input tensor 'x'"), std::string::npos) << result.error;
  EXPECT_NE(result.error.find("FP64 tensors of shape [batch, n]"), std::string::npos) << result.error;
  EXPECT_FALSE(decode(R"({"inputs": [{"name": "x", "shape": [1], "datatype": "UINT8", "data": [1]}]})",
                      InputType::Strings).ok());
  EXPECT_FALSE(decode(R"({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "BOOL", "data": [true]}]})",
                      InputType::Ints).ok());
}

TEST(OipCodec, RefusesShapesThatAreNotABatchOfRows) {
  for (const char* shape : {"[3]", "[1, 1, 3]", "[]", "[0, 3]", "[1, 0]", "[-1, 3]"}) {
    auto result = decode(std::string(R"({"inputs": [{"name": "x", "datatype": "FP64", "data": [1, 2, 3], "shape": )") +
                             shape + "}]}",
                         InputType::Doubles);
    ASSERT_FALSE(result.ok()) << shape;
    EXPECT_NE(result.error.find("shape"), std::string::npos) << result.error;
  }
  EXPECT_FALSE(decode(R"({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "BYTES", "data": ["a","b","c","d"]}]})",
                      InputType::Strings).ok());
}

TEST(OipCodec, RefusesDataThatDoesNotMatchTheShape) {
  auto short_data = decode(R"({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3]}]})",
                           InputType::Doubles);
  ASSERT_FALSE(short_data.ok());
  EXPECT_NE(short_data.error.find("3 elements"), std::string::npos) << short_data.error;
  EXPECT_NE(short_data.error.find("holds 4"), std::string::npos) << short_data.error;
  EXPECT_FALSE(decode(R"({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2, 3]}]})",
                      InputType::Doubles).ok());
  auto wrong_element = decode(R"({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT32", "data": [1, 2.5]}]})",
                              InputType::Ints);
  ASSERT_FALSE(wrong_element.ok());
  EXPECT_NE(wrong_element.error.find("element 1"), std::string::npos) << wrong_element.error;
  EXPECT_FALSE(decode(R"({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "INT32", "data": [3000000000]}]})",
                      InputType::Ints).ok());
  EXPECT_FALSE(decode(R"({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1e300]}]})",
                      InputType::Floats).ok());
  EXPECT_FALSE(decode(R"({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "UINT8", "data": [256]}]})",
                      InputType::Bytes).ok());
  EXPECT_FALSE(decode(R"({"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": [1]}]})",
                      InputType::Strings).ok());
  EXPECT_FALSE(decode(R"({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": 1}]})",
                      InputType::Doubles).ok());
}

TEST(OipCodec, RefusesMalformedRequestsNamingTheField) {
  struct Case {
    const char* body;
    const char* mentions;
  };
  const Case cases[] = {
      {R"([1])", "JSON object"},
      {R"({"inputs": [1, 2)", "invalid"},
      {R"({})", "\"inputs\""},
      {R"({"inputs": []})", "exactly one input"},
      {R"({"inputs": [{"name": "a", "shape": [1, 1], "datatype": "FP64", "data": [1]},
                      {"name": "b", "shape": [1, 1], "datatype": "FP64", "data": [1]}]})", "exactly one input"},
      {R"({"inputs": [{"shape": [1, 1], "datatype": "FP64", "data": [1]}]})", "\"name\""},
      {R"({"inputs": [{"name": "x", "shape": [1, 1], "data": [1]}]})", "\"datatype\""},
      {R"({"inputs": [{"name": "x", "datatype": "FP64", "data": [1]}]})", "\"shape\""},
      {R"({"inputs": [{"name": "x", "shape": [1, "a"], "datatype": "FP64", "data": [1]}]})", "integers"},
      {R"({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64"}]})", "neither"},
      {R"({"id": 5, "inputs": []})", "\"id\""},
      {R"({"parameters": [], "inputs": []})", "\"parameters\""},
      {R"({"parameters": {"uid": "u"}, "inputs": []})", "uid"},
      {R"({"parameters": {"binary_data_output": 1}, "inputs": []})", "binary_data_output"},
      {R"({"outputs": [{"name": "probabilities"}], "inputs": []})", "unknown output 'probabilities'"},
      {R"({"outputs": [{"name": "output"}, {"name": "output"}], "inputs": []})", "twice"},
      {R"({"outputs": [{"name": "output", "parameters": {"classification": 3}}], "inputs": []})", "classification"},
      {R"({"outputs": {}, "inputs": []})", "\"outputs\""},
  };
  for (const Case& c : cases) {
    auto result = decode(c.body, InputType::Doubles);
    ASSERT_FALSE(result.ok()) << c.body;
    EXPECT_EQ(result.status, 400);
    EXPECT_NE(result.error.find(c.mentions), std::string::npos) << c.body << " -> " << result.error;
  }
}

TEST(OipCodec, RefusesInvalidUtf8ForStringsAndKeepsItForBytes) {
  const std::string invalid =
      "{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"BYTES\", \"data\": [\"\xff\"]}]}";
  auto strings = decode(invalid, InputType::Strings);
  ASSERT_FALSE(strings.ok());
  EXPECT_NE(strings.error.find("UTF-8"), std::string::npos);
  auto bytes = decode(invalid, InputType::Bytes);
  ASSERT_TRUE(bytes.ok()) << bytes.error;
  EXPECT_EQ(bytes.request->rows[0].payload, "\xff");
}

// --- decoding: the binary-data extension ------------------------------------------------------

TEST(OipCodec, DecodesBinaryNumericTensors) {
  const std::string json = R"({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64",
      "parameters": {"binary_data_size": 32}}]})";
  auto result = decode_binary(json, raw_bytes<double>({1.5, 2, 3, -4}), InputType::Doubles);
  ASSERT_TRUE(result.ok()) << result.error;
  EXPECT_EQ(elements_of<double>(result.request->rows[0]), (std::vector<double>{1.5, 2}));
  EXPECT_EQ(elements_of<double>(result.request->rows[1]), (std::vector<double>{3, -4}));
  EXPECT_EQ(result.request->rows[1].element_count, 2u);
}

TEST(OipCodec, DecodesBinaryBytesTensorsElementByElement) {
  const std::string binary = length_prefixed({"one", "", "three"});
  const std::string json = R"({"inputs": [{"name": "x", "shape": [3], "datatype": "BYTES",
      "parameters": {"binary_data_size": )" + std::to_string(binary.size()) + "}}]}";
  auto result = decode_binary(json, binary, InputType::Strings);
  ASSERT_TRUE(result.ok()) << result.error;
  ASSERT_EQ(result.request->rows.size(), 3u);
  EXPECT_EQ(result.request->rows[0].payload, "one");
  EXPECT_EQ(result.request->rows[1].payload, "");
  EXPECT_EQ(result.request->rows[2].payload, "three");
}

TEST(OipCodec, RefusesBinarySizesThatOverrunOrMismatch) {
  const std::string header = R"({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64",
      "parameters": {"binary_data_size": SIZE}}]})";
  auto with_size = [&header](const std::string& size) {
    std::string json = header;
    json.replace(json.find("SIZE"), 4, size);
    return json;
  };
  // binary_data_size larger than what follows the JSON header.
  auto overrun = decode_binary(with_size("1000"), raw_bytes<double>({1, 2}), InputType::Doubles);
  ASSERT_FALSE(overrun.ok());
  EXPECT_NE(overrun.error.find("only 16 bytes follow"), std::string::npos) << overrun.error;
  // A size the shape does not need.
  auto mismatch = decode_binary(with_size("8"), raw_bytes<double>({1}), InputType::Doubles);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.error.find("needs 16 bytes"), std::string::npos) << mismatch.error;
  // Bytes beyond every input's binary_data_size.
  EXPECT_FALSE(decode_binary(with_size("16"), raw_bytes<double>({1, 2, 3}), InputType::Doubles).ok());
  // A size that does not fit in 64 bits, or is negative.
  EXPECT_FALSE(decode_binary(with_size("18446744073709551616"), raw_bytes<double>({1, 2}), InputType::Doubles).ok());
  EXPECT_FALSE(decode_binary(with_size("-16"), raw_bytes<double>({1, 2}), InputType::Doubles).ok());
  // Both data and binary_data_size.
  EXPECT_FALSE(decode_binary(R"({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2],
      "parameters": {"binary_data_size": 16}}]})", raw_bytes<double>({1, 2}), InputType::Doubles).ok());
  // Binary bytes with no input declaring them.
  EXPECT_FALSE(decode_binary(R"({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]})",
                             raw_bytes<double>({1, 2}), InputType::Doubles).ok());
}

TEST(OipCodec, RefusesBytesElementsWhoseLengthsOverrunTheirData) {
  std::string binary = length_prefixed({"abc"});
  const uint32_t huge = 0xFFFFFFF0u;  // claims almost 4 GiB
  binary.append(reinterpret_cast<const char*>(&huge), 4);
  binary += "xy";
  const std::string json = R"({"inputs": [{"name": "x", "shape": [2], "datatype": "BYTES",
      "parameters": {"binary_data_size": )" + std::to_string(binary.size()) + "}}]}";
  auto result = decode_binary(json, binary, InputType::Bytes);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.error.find("element 1 declares 4294967280 bytes but only 2 follow"), std::string::npos)
      << result.error;

  // A length cut short inside its 4 bytes.
  const std::string cut = length_prefixed({"abc"}) + std::string("\x01\x00", 2);
  const std::string cut_json = R"({"inputs": [{"name": "x", "shape": [2], "datatype": "BYTES",
      "parameters": {"binary_data_size": )" + std::to_string(cut.size()) + "}}]}";
  EXPECT_FALSE(decode_binary(cut_json, cut, InputType::Bytes).ok());
}

TEST(OipCodec, RefusesAnInferenceHeaderLengthBeyondTheBodyOrNotANumber) {
  const std::string json = R"({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1]}]})";
  auto beyond = decode(json, InputType::Doubles, std::to_string(json.size() + 1));
  ASSERT_FALSE(beyond.ok());
  EXPECT_NE(beyond.error.find("Inference-Header-Content-Length"), std::string::npos);
  EXPECT_FALSE(decode(json, InputType::Doubles, "12abc").ok());
  EXPECT_FALSE(decode(json, InputType::Doubles, "-1").ok());
  EXPECT_FALSE(decode(json, InputType::Doubles, "999999999999999999999999").ok());
  EXPECT_TRUE(decode(json, InputType::Doubles, std::to_string(json.size())).ok());
}

// --- hostile sizes and nesting -----------------------------------------------------------------

TEST(OipCodec, RefusesHugeShapesBeforeSizingAnythingByThem) {
  for (const char* shape : {"[1000000000000, 1000000000000]", "[9223372036854775807, 9223372036854775807]",
                            "[4611686018427387904, 4]", "[1, 100000000]"}) {
    const std::string json = std::string(R"({"inputs": [{"name": "x", "datatype": "FP64", "data": [1], "shape": )") +
                             shape + "}]}";
    auto result = decode(json, InputType::Doubles);
    ASSERT_FALSE(result.ok()) << shape;
    EXPECT_NE(result.error.find("more elements than the request's"), std::string::npos) << result.error;
  }
  // BYTES: a count of elements the binary data cannot hold even as empty strings.
  const std::string json = R"({"inputs": [{"name": "x", "shape": [50], "datatype": "BYTES",
      "parameters": {"binary_data_size": 8}}]})";
  EXPECT_FALSE(decode_binary(json + std::string(200, ' '), std::string(8, '\0'), InputType::Bytes).ok());
}

TEST(OipCodec, RefusesABatchOverTheRowLimitWith413) {
  auto result = decode_infer_request(
      R"({"inputs": [{"name": "x", "shape": [3, 1], "datatype": "FP64", "data": [1, 2, 3]}]})", "",
      InputType::Doubles, 2);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status, 413);
  EXPECT_NE(result.error.find("batch of 3 rows"), std::string::npos) << result.error;
}

TEST(OipCodec, RefusesDeepNestingAsAnOrdinaryError) {
  const std::string deep = R"({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": )" +
                           std::string(200000, '[') + "1" + std::string(200000, ']') + "}]}";
  auto result = decode(deep, InputType::Doubles);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.error.find("nest deeper than"), std::string::npos) << result.error;
  // Nesting within the limit is data like any other.
  const std::string nested = R"({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": )" +
                             std::string(50, '[') + "1" + std::string(50, ']') + "}]}";
  EXPECT_TRUE(decode(nested, InputType::Doubles).ok());
}

// --- rendering ---------------------------------------------------------------------------------

TEST(OipCodec, RendersNumericOutputsAsFp64AndDefaultsAsBool) {
  const std::optional<std::string> id = "q1";
  InferAnswer answer{"sum", "1", &id, "sum-model:1", ""};
  std::string out;
  const std::size_t json_length = render_infer_response(
      answer, {{"6.0", false}, {"-1", true}}, {{OutputTensor::Output, false}, {OutputTensor::Default, false}}, out);
  EXPECT_EQ(json_length, out.size());
  auto doc = parse(out);
  EXPECT_STREQ(doc["model_name"].GetString(), "sum");
  EXPECT_STREQ(doc["model_version"].GetString(), "1");
  EXPECT_STREQ(doc["id"].GetString(), "q1");
  EXPECT_STREQ(doc["parameters"]["clipper_model"].GetString(), "sum-model:1");
  const auto& output = doc["outputs"][0];
  EXPECT_STREQ(output["name"].GetString(), "output");
  EXPECT_STREQ(output["datatype"].GetString(), "FP64");
  EXPECT_EQ(output["shape"].Size(), 1u);
  EXPECT_EQ(output["shape"][0].GetInt(), 2);
  EXPECT_EQ(output["data"][0].GetDouble(), 6.0);
  EXPECT_EQ(output["data"][1].GetDouble(), -1.0);
  const auto& defaults = doc["outputs"][1];
  EXPECT_STREQ(defaults["datatype"].GetString(), "BOOL");
  EXPECT_FALSE(defaults["data"][0].GetBool());
  EXPECT_TRUE(defaults["data"][1].GetBool());
}

TEST(OipCodec, RendersArraysOfOneLengthAsARowPerAnswer) {
  InferAnswer answer{"m", "", nullptr, "", ""};
  std::string out;
  render_infer_response(answer, {{"[1, 2]", false}, {" [3,4] ", false}}, {{OutputTensor::Output, false}}, out);
  auto doc = parse(out);
  EXPECT_FALSE(doc.HasMember("model_version"));
  EXPECT_FALSE(doc.HasMember("id"));
  const auto& output = doc["outputs"][0];
  EXPECT_STREQ(output["datatype"].GetString(), "FP64");
  EXPECT_EQ(output["shape"][1].GetInt(), 2);
  EXPECT_EQ(output["data"][3].GetDouble(), 4.0);
  EXPECT_EQ(doc["outputs"].Size(), 1u);
}

TEST(OipCodec, RendersAnythingElseAsTheModelsText) {
  for (const std::vector<RowAnswer>& rows :
       std::vector<std::vector<RowAnswer>>{{{"cat", false}, {"1", false}},
                                           {{"[1, 2]", false}, {"[3]", false}},
                                           {{"[1, [2]]", false}},
                                           {{"1 2", false}},
                                           {{"[]", false}},
                                           {{"{\"a\": 1}", false}}}) {
    InferAnswer answer{"m", "", nullptr, "", ""};
    std::string out;
    render_infer_response(answer, rows, {{OutputTensor::Output, false}}, out);
    auto doc = parse(out);
    const auto& output = doc["outputs"][0];
    EXPECT_STREQ(output["datatype"].GetString(), "BYTES") << rows[0].output;
    EXPECT_EQ(std::string(output["data"][0].GetString()), rows[0].output);
  }
}

TEST(OipCodec, RendersBinaryOutputsAfterTheJsonHeader) {
  InferAnswer answer{"m", "", nullptr, "", "the model was late"};
  std::string out;
  const std::size_t json_length = render_infer_response(
      answer, {{"1.5", false}, {"2", true}}, {{OutputTensor::Output, true}, {OutputTensor::Default, true}}, out);
  ASSERT_LT(json_length, out.size());
  auto doc = parse(out.substr(0, json_length));
  EXPECT_STREQ(doc["parameters"]["default_explanation"].GetString(), "the model was late");
  const auto& output = doc["outputs"][0];
  EXPECT_FALSE(output.HasMember("data"));
  EXPECT_EQ(output["parameters"]["binary_data_size"].GetInt(), 16);
  EXPECT_EQ(doc["outputs"][1]["parameters"]["binary_data_size"].GetInt(), 2);
  const std::string binary = out.substr(json_length);
  ASSERT_EQ(binary.size(), 18u);
  double numbers[2];
  std::memcpy(numbers, binary.data(), 16);
  EXPECT_EQ(numbers[0], 1.5);
  EXPECT_EQ(numbers[1], 2.0);
  EXPECT_EQ(binary[16], 0);
  EXPECT_EQ(binary[17], 1);

  std::string text;
  const std::size_t text_json = render_infer_response(answer, {{"cat", false}}, {{OutputTensor::Output, true}}, text);
  EXPECT_EQ(text.substr(text_json), length_prefixed({"cat"}));
}

TEST(OipCodec, KeepsTheJsonValidWhateverTheModelReturned) {
  InferAnswer answer{"m\xff", "", nullptr, "", ""};
  std::string out;
  render_infer_response(answer, {{"\xff\xfe", false}}, {{OutputTensor::Output, false}}, out);
  parse(out);
  parse(render_error("bad name \xc3"));
}

TEST(OipCodec, AnAnswersTextIsTheWritersJsonWhetherItIsPlainOrNeedsEscaping) {
  // Plain ASCII (names, ids, a text model's answers) is appended as it is; anything else goes
  // through the writer's escaping. Every string of the response takes the same path.
  const std::optional<std::string> id = "req-7/a b~";
  InferAnswer plain{"sum", "1", &id, "sum-model:1", "the model was late"};
  std::string out;
  render_infer_response(plain, {{"cat", false}, {"", false}, {"x\x7f", false}}, {{OutputTensor::Output, false}},
                        out);
  EXPECT_EQ(out,
            R"({"model_name":"sum","model_version":"1","id":"req-7/a b~","parameters":{"clipper_model":)"
            R"("sum-model:1","default_explanation":"the model was late"},"outputs":[{"name":"output",)"
            R"("datatype":"BYTES","shape":[3],"data":["cat","","x)" "\x7f" R"("]}]})");

  const std::optional<std::string> quoted = "say \"hi\"";
  InferAnswer escaped{"m\\n", "caf\xC3\xA9", &quoted, "m:\x01", "tab\there"};
  out.clear();
  render_infer_response(escaped,
                        {{"line\nbreak", false}, {"x\xffy", false}, {std::string("nul\0byte", 8), false}},
                        {{OutputTensor::Output, false}}, out);
  EXPECT_EQ(out,
            "{\"model_name\":\"m\\\\n\",\"model_version\":\"caf\xC3\xA9\",\"id\":\"say \\\"hi\\\"\","
            "\"parameters\":{\"clipper_model\":\"m:\\u0001\",\"default_explanation\":\"tab\\there\"},"
            "\"outputs\":[{\"name\":\"output\",\"datatype\":\"BYTES\",\"shape\":[3],"
            "\"data\":[\"line\\nbreak\",\"x\xEF\xBF\xBDy\",\"nul\\u0000byte\"]}]}")
      << "an invalid byte becomes U+FFFD";
  parse(out);
}

TEST(OipCodec, AnErrorIsTheWritersJsonWhetherItsMessageIsPlainOrNeedsEscaping) {
  // Plain ASCII is appended as it is; anything else goes through the writer's escaping.
  EXPECT_EQ(render_error("model m:1 would answer in about 120 us"),
            R"({"error":"model m:1 would answer in about 120 us"})");
  EXPECT_EQ(render_error(""), R"({"error":""})");
  EXPECT_EQ(render_error("bad \"x\""), R"({"error":"bad \"x\""})");
  EXPECT_EQ(render_error("back\\slash"), R"({"error":"back\\slash"})");
  EXPECT_EQ(render_error("line\nbreak\x01 tab\t"), R"({"error":"line\nbreak\u0001 tab\t"})");
  EXPECT_EQ(render_error("caf\xC3\xA9"), "{\"error\":\"caf\xC3\xA9\"}");
  EXPECT_EQ(render_error("x\xffy"), "{\"error\":\"x\xEF\xBF\xBDy\"}") << "an invalid byte becomes U+FFFD";
  EXPECT_EQ(render_error(std::string_view("nul\0byte", 8)), R"({"error":"nul\u0000byte"})");
}

TEST(OipCodec, RendersMetadataFromTheInputType) {
  auto server = parse(render_server_metadata("0.1.0"));
  EXPECT_STREQ(server["name"].GetString(), "clipper");
  EXPECT_STREQ(server["extensions"][0].GetString(), "binary_tensor_data");
  auto model = parse(render_model_metadata("sum", {"1", "2"}, InputType::Floats));
  EXPECT_STREQ(model["name"].GetString(), "sum");
  EXPECT_EQ(model["versions"].Size(), 2u);
  EXPECT_STREQ(model["inputs"][0]["datatype"].GetString(), "FP32");
  EXPECT_EQ(model["inputs"][0]["shape"].Size(), 2u);
  EXPECT_EQ(model["inputs"][0]["shape"][0].GetInt(), -1);
  EXPECT_STREQ(model["outputs"][1]["name"].GetString(), "default");
  auto strings = parse(render_model_metadata("s", {}, InputType::Strings));
  EXPECT_STREQ(strings["inputs"][0]["datatype"].GetString(), "BYTES");
  EXPECT_EQ(strings["inputs"][0]["shape"].Size(), 1u);
}

}  // namespace
}  // namespace clipper::oip
