#include "query/oip_codec.h"

#include <absl/container/inlined_vector.h>
#include <rapidjson/document.h>

#include <array>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/bounded_json.h"
#include "common/utf8.h"

namespace clipper::oip {
namespace {

// Tensors travel as little-endian bytes (the binary-data extension) and payloads are packed
// little-endian: on this host both are memcpy.
static_assert(std::endian::native == std::endian::little, "the OIP codec assumes a little-endian host");

using PoolAllocator = rapidjson::MemoryPoolAllocator<rapidjson::CrtAllocator>;
using PooledDocument = rapidjson::GenericDocument<rapidjson::UTF8<>, PoolAllocator, PoolAllocator>;

// Parse scratch per I/O thread, so a small request allocates nothing for its JSON (as in query_codec).
struct ParseScratch {
  alignas(16) char values[16 * 1024];
  alignas(16) char stack[4 * 1024];
};
thread_local ParseScratch parse_scratch;

// ---------------------------------------------------------------------------------------------
// Paths

std::string percent_decode(std::string_view text) {
  if (text.find('%') == std::string_view::npos) return std::string(text);
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      const int high = hex(text[i + 1]);
      const int low = hex(text[i + 2]);
      if (high >= 0 && low >= 0) {
        out.push_back(static_cast<char>(high * 16 + low));
        i += 2;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

std::string_view without_query(std::string_view target) {
  const auto query = target.find('?');
  return query == std::string_view::npos ? target : target.substr(0, query);
}

// The segments of a path: no endpoint has more than six ("models/m/versions/v/infer").
struct Segments {
  std::array<std::string_view, 6> items;
  std::size_t size = 0;
  std::string_view operator[](std::size_t i) const { return items[i]; }
};

// Splits "a/b/c" into segments; false when a segment is empty ("a//b") or there are too many.
bool split_segments(std::string_view path, Segments& segments) {
  while (!path.empty()) {
    const auto slash = path.find('/');
    const std::string_view segment = path.substr(0, slash);
    if (segment.empty() || segments.size == segments.items.size()) return false;
    segments.items[segments.size++] = segment;
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Tensors

// The tensors a Clipper input type accepts. Numbers: [batch, n] of the one datatype that matches;
// bytes: BYTES [batch] (one input per element) or UINT8 [batch, n]; strings: BYTES [batch].
enum class Datatype : uint8_t { Fp64, Fp32, Int32, Uint8, Bytes, Other };

Datatype parse_datatype(std::string_view name) {
  if (name == "FP64") return Datatype::Fp64;
  if (name == "FP32") return Datatype::Fp32;
  if (name == "INT32") return Datatype::Int32;
  if (name == "UINT8") return Datatype::Uint8;
  if (name == "BYTES") return Datatype::Bytes;
  return Datatype::Other;
}

std::size_t datatype_bytes(Datatype datatype) {
  switch (datatype) {
    case Datatype::Fp64: return 8;
    case Datatype::Fp32: return 4;
    case Datatype::Int32: return 4;
    case Datatype::Uint8: return 1;
    default: return 0;  // BYTES: variable
  }
}

bool accepts(InputType type, Datatype datatype) {
  switch (type) {
    case InputType::Doubles: return datatype == Datatype::Fp64;
    case InputType::Floats: return datatype == Datatype::Fp32;
    case InputType::Ints: return datatype == Datatype::Int32;
    case InputType::Bytes: return datatype == Datatype::Bytes || datatype == Datatype::Uint8;
    case InputType::Strings: return datatype == Datatype::Bytes;
  }
  return false;
}

std::string_view expected_tensor_text(InputType type) {
  switch (type) {
    case InputType::Doubles: return "FP64 tensors of shape [batch, n]";
    case InputType::Floats: return "FP32 tensors of shape [batch, n]";
    case InputType::Ints: return "INT32 tensors of shape [batch, n]";
    case InputType::Bytes:
      return "BYTES tensors of shape [batch] (one input per element) or UINT8 tensors of shape [batch, n]";
    case InputType::Strings: return "BYTES tensors of shape [batch] holding UTF-8 text";
  }
  return "";
}

using Shape = absl::InlinedVector<int64_t, 4>;

std::string shape_text(const Shape& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

// The input tensor being decoded: its name (for errors) and where its rows go.
struct TensorLayout {
  std::string_view name;
  Datatype datatype = Datatype::Other;
  uint64_t rows = 0;   // the batch dimension
  uint64_t width = 1;  // elements per row (1 for BYTES: an element is one input)
  uint64_t elements() const { return rows * width; }
};

// Error texts are built only when a request fails.
std::string where(const TensorLayout& tensor) { return "input tensor '" + replace_invalid_utf8(tensor.name) + "'"; }

// Checks datatype and shape against the input type; on success fills rows and width.
std::optional<std::string> check_shape(InputType type, const Shape& shape, TensorLayout& tensor,
                                       std::size_t body_bytes) {
  auto expected = [type] {
    return std::string(expected_tensor_text(type)) + " (its Clipper input type is " +
           std::string(input_type_name(type)) + ")";
  };
  if (!accepts(type, tensor.datatype)) {
    return where(tensor) + " has a datatype this model does not take; it takes " + expected();
  }
  const bool one_input_per_element = tensor.datatype == Datatype::Bytes;
  const bool shape_fits = one_input_per_element ? (shape.size() == 1 || (shape.size() == 2 && shape[1] == 1))
                                                : shape.size() == 2;
  if (!shape_fits) return where(tensor) + " has shape " + shape_text(shape) + "; this model takes " + expected();
  for (const int64_t dimension : shape) {
    if (dimension <= 0) {
      return where(tensor) + " has shape " + shape_text(shape) +
             ": every dimension must be at least 1 (a batch of rows with at least one element each)";
    }
  }
  tensor.rows = static_cast<uint64_t>(shape[0]);
  tensor.width = one_input_per_element ? 1 : static_cast<uint64_t>(shape[1]);
  // Every element takes at least one byte of the request, in JSON or in binary: a shape that promises
  // more is refused before anything is sized by it (this also keeps rows * width from overflowing).
  if (tensor.rows > body_bytes || tensor.width > body_bytes / tensor.rows) {
    return where(tensor) + " has shape " + shape_text(shape) + ", more elements than the request's " +
           std::to_string(body_bytes) + " bytes can hold";
  }
  if (tensor.width > std::numeric_limits<uint32_t>::max()) return where(tensor) + " has rows that are too long";
  return std::nullopt;
}

// Counts the leaves of "data" (flat or nested arrays, row-major); the parse already bounded the nesting.
uint64_t count_leaves(const rapidjson::Value& value) {
  if (!value.IsArray()) return 1;
  uint64_t count = 0;
  for (const auto& item : value.GetArray()) count += count_leaves(item);
  return count;
}

// Writes the leaves of JSON "data" into the rows, converting each to the datatype.
class JsonFiller {
 public:
  JsonFiller(const TensorLayout& tensor, InputType type, std::vector<DecodedInput>& rows)
      : tensor_(tensor), type_(type), rows_(rows) {}

  std::optional<std::string> fill(const rapidjson::Value& value) {
    if (value.IsArray()) {
      for (const auto& item : value.GetArray()) {
        if (auto failure = fill(item)) return failure;
      }
      return std::nullopt;
    }
    const uint64_t row = index_ / tensor_.width;
    DecodedInput& input = rows_[row];
    std::optional<std::string> failure = convert(value, input);
    if (failure) return where(tensor_) + " element " + std::to_string(index_) + ": " + *failure;
    ++index_;
    return std::nullopt;
  }

 private:
  template <typename Element>
  void append(DecodedInput& input, Element element) {
    const std::size_t at = (index_ % tensor_.width) * sizeof(Element);
    std::memcpy(input.payload.data() + at, &element, sizeof(Element));
  }

  std::optional<std::string> convert(const rapidjson::Value& value, DecodedInput& input) {
    switch (tensor_.datatype) {
      case Datatype::Fp64:
        if (!value.IsNumber()) return std::string("FP64 data must be numbers");
        append<double>(input, value.GetDouble());
        return std::nullopt;
      case Datatype::Fp32: {
        if (!value.IsNumber()) return std::string("FP32 data must be numbers");
        const double number = value.GetDouble();
        if (std::fabs(number) > std::numeric_limits<float>::max()) return std::string("outside the FP32 range");
        append<float>(input, static_cast<float>(number));
        return std::nullopt;
      }
      case Datatype::Int32:
        if (!value.IsInt()) return std::string("INT32 data must be integers in the int32 range");
        append<int32_t>(input, static_cast<int32_t>(value.GetInt()));
        return std::nullopt;
      case Datatype::Uint8:
        if (!value.IsUint() || value.GetUint() > 255) return std::string("UINT8 data must be integers from 0 to 255");
        append<uint8_t>(input, static_cast<uint8_t>(value.GetUint()));
        return std::nullopt;
      case Datatype::Bytes: {
        if (!value.IsString()) return std::string("BYTES data must be strings");
        std::string_view text(value.GetString(), value.GetStringLength());
        if (type_ == InputType::Strings && !is_valid_utf8(text)) return std::string("not valid UTF-8");
        input.payload.assign(text.data(), text.size());
        input.element_count = static_cast<uint32_t>(text.size());
        return std::nullopt;
      }
      case Datatype::Other: break;
    }
    return std::string("unsupported datatype");
  }

  const TensorLayout& tensor_;
  InputType type_;
  std::vector<DecodedInput>& rows_;
  uint64_t index_ = 0;
};

// Sizes every row for fixed-width datatypes (BYTES rows are sized as they are filled).
void size_rows(const TensorLayout& tensor, std::vector<DecodedInput>& rows) {
  rows.resize(tensor.rows);
  const std::size_t bytes = datatype_bytes(tensor.datatype);
  if (bytes == 0) return;
  for (DecodedInput& row : rows) {
    row.payload.resize(tensor.width * bytes);
    row.element_count = static_cast<uint32_t>(tensor.width);
  }
}

std::optional<std::string> decode_json_data(const rapidjson::Value& data, const TensorLayout& tensor, InputType type,
                                            std::vector<DecodedInput>& rows) {
  if (!data.IsArray()) return where(tensor) + ": \"data\" must be a JSON array";
  const uint64_t count = count_leaves(data);
  if (count != tensor.elements()) {
    return where(tensor) + " has " + std::to_string(count) + " elements in \"data\" but its shape holds " +
           std::to_string(tensor.elements());
  }
  size_rows(tensor, rows);
  return JsonFiller(tensor, type, rows).fill(data);
}

std::optional<std::string> decode_binary_data(std::string_view binary, const TensorLayout& tensor, InputType type,
                                              std::vector<DecodedInput>& rows) {
  if (tensor.datatype != Datatype::Bytes) {
    const std::size_t bytes = datatype_bytes(tensor.datatype);
    if (binary.size() != tensor.elements() * bytes) {
      return where(tensor) + " has binary_data_size " + std::to_string(binary.size()) + " but its shape needs " +
             std::to_string(tensor.elements() * bytes) + " bytes";
    }
    size_rows(tensor, rows);
    const std::size_t row_bytes = tensor.width * bytes;
    for (uint64_t row = 0; row < tensor.rows; ++row) {
      std::memcpy(rows[row].payload.data(), binary.data() + row * row_bytes, row_bytes);
    }
    // Numbers arrive as the client's bits: a float that is not finite is the model's business, as in
    // Clipper's own API (JSON cannot carry one there either way).
    return std::nullopt;
  }
  // BYTES: each element is a 4-byte little-endian length followed by that many bytes.
  if (tensor.rows > binary.size() / 4) {
    return where(tensor) + " has " + std::to_string(tensor.rows) + " BYTES elements but binary_data_size " +
           std::to_string(binary.size()) + " cannot hold their 4-byte lengths";
  }
  rows.resize(tensor.rows);
  std::size_t at = 0;
  for (uint64_t element = 0; element < tensor.rows; ++element) {
    if (binary.size() - at < 4) {
      return where(tensor) + ": binary BYTES data ends inside the length of element " + std::to_string(element);
    }
    uint32_t length = 0;
    std::memcpy(&length, binary.data() + at, 4);
    at += 4;
    if (binary.size() - at < length) {
      return where(tensor) + ": binary BYTES element " + std::to_string(element) + " declares " +
             std::to_string(length) + " bytes but only " + std::to_string(binary.size() - at) + " follow";
    }
    const std::string_view text = binary.substr(at, length);
    if (type == InputType::Strings && !is_valid_utf8(text)) {
      return where(tensor) + " element " + std::to_string(element) + ": not valid UTF-8";
    }
    rows[element].payload.assign(text.data(), text.size());
    rows[element].element_count = length;
    at += length;
  }
  if (at != binary.size()) {
    return where(tensor) + ": binary_data_size " + std::to_string(binary.size()) + " is " +
           std::to_string(binary.size() - at) + " bytes more than its " + std::to_string(tensor.rows) +
           " BYTES elements";
  }
  return std::nullopt;
}

// Reads "parameters" of a request, an input or an output: an object, or absent.
// `what` names the owner in an error: a callable returning its text, called only on failure.
template <typename Describe>
std::optional<std::string> parameters_of(const rapidjson::Value& owner, const Describe& what,
                                         const rapidjson::Value*& parameters) {
  parameters = nullptr;
  const auto member = owner.FindMember("parameters");
  if (member == owner.MemberEnd() || member->value.IsNull()) return std::nullopt;
  if (!member->value.IsObject()) return what() + ": \"parameters\" must be a JSON object";
  parameters = &member->value;
  return std::nullopt;
}

template <typename Describe>
std::optional<std::string> bool_parameter(const rapidjson::Value* parameters, const char* name,
                                          const Describe& what, bool& out) {
  if (parameters == nullptr) return std::nullopt;
  const auto member = parameters->FindMember(name);
  if (member == parameters->MemberEnd()) return std::nullopt;
  if (!member->value.IsBool()) return what() + ": parameter \"" + name + "\" must be true or false";
  out = member->value.GetBool();
  return std::nullopt;
}

std::optional<std::string> decode_outputs(const rapidjson::Value& doc, bool binary_by_default,
                                          std::vector<RequestedOutput>& outputs) {
  const auto member = doc.FindMember("outputs");
  if (member == doc.MemberEnd() || member->value.IsNull() ||
      (member->value.IsArray() && member->value.Empty())) {
    outputs = {{OutputTensor::Output, binary_by_default}, {OutputTensor::Default, binary_by_default}};
    return std::nullopt;
  }
  if (!member->value.IsArray()) return std::string("\"outputs\" must be a JSON array");
  for (const auto& output : member->value.GetArray()) {
    if (!output.IsObject()) return std::string("each of \"outputs\" must be a JSON object");
    const auto name = output.FindMember("name");
    if (name == output.MemberEnd() || !name->value.IsString()) {
      return std::string("each of \"outputs\" needs a \"name\" string");
    }
    const std::string_view text(name->value.GetString(), name->value.GetStringLength());
    RequestedOutput requested;
    if (text == kOutputName) {
      requested.tensor = OutputTensor::Output;
    } else if (text == kDefaultName) {
      requested.tensor = OutputTensor::Default;
    } else {
      return "unknown output '" + replace_invalid_utf8(text) + "': the outputs are 'output' and 'default'";
    }
    auto what = [text] { return "output '" + replace_invalid_utf8(text) + "'"; };
    const rapidjson::Value* parameters = nullptr;
    if (auto failure = parameters_of(output, what, parameters)) return failure;
    requested.binary = binary_by_default;
    if (auto failure = bool_parameter(parameters, "binary_data", what, requested.binary)) return failure;
    if (parameters != nullptr) {
      const auto classification = parameters->FindMember("classification");
      if (classification != parameters->MemberEnd() &&
          !(classification->value.IsInt64() && classification->value.GetInt64() == 0)) {
        return what() + ": the classification extension is not supported";
      }
    }
    for (const RequestedOutput& earlier : outputs) {
      if (earlier.tensor == requested.tensor) return what() + " is requested twice";
    }
    outputs.push_back(requested);
  }
  return std::nullopt;
}

}  // namespace

bool is_protocol_path(std::string_view target) {
  const std::string_view path = without_query(target);
  return path == "/v2" || path.substr(0, 4) == "/v2/";
}

std::optional<Target> parse_target(std::string_view target) {
  std::string_view path = without_query(target);
  if (!is_protocol_path(path)) return std::nullopt;
  path.remove_prefix(3);  // "/v2"
  if (!path.empty()) path.remove_prefix(1);
  if (!path.empty() && path.back() == '/') path.remove_suffix(1);
  Segments segments;
  if (!split_segments(path, segments)) return std::nullopt;
  Target parsed;
  if (segments.size == 0) {
    parsed.endpoint = Endpoint::ServerMetadata;
    return parsed;
  }
  if (segments.size == 2 && segments[0] == "health") {
    if (segments[1] == "live") parsed.endpoint = Endpoint::ServerLive;
    else if (segments[1] == "ready") parsed.endpoint = Endpoint::ServerReady;
    else return std::nullopt;
    return parsed;
  }
  if (segments[0] != "models" || segments.size < 2) return std::nullopt;
  parsed.model = percent_decode(segments[1]);
  std::size_t next = 2;
  if (segments.size >= 4 && segments[2] == "versions") {
    parsed.version = percent_decode(segments[3]);
    next = 4;
  }
  if (segments.size == next) {
    parsed.endpoint = Endpoint::ModelMetadata;
  } else if (segments.size == next + 1 && segments[next] == "ready") {
    parsed.endpoint = Endpoint::ModelReady;
  } else if (segments.size == next + 1 && segments[next] == "infer") {
    parsed.endpoint = Endpoint::ModelInfer;
  } else {
    return std::nullopt;
  }
  return parsed;
}

InferDecode decode_infer_request(std::string_view body, std::string_view json_header_length, InputType type,
                                 std::size_t max_rows) {
  InferDecode result;
  auto fail = [&result](std::string error) {
    result.error = std::move(error);
    return std::move(result);
  };
  std::string_view json = body;
  std::string_view binary;
  if (!json_header_length.empty()) {
    std::size_t length = 0;
    const char* end = json_header_length.data() + json_header_length.size();
    const auto parsed = std::from_chars(json_header_length.data(), end, length);
    if (parsed.ec != std::errc() || parsed.ptr != end) {
      return fail("the Inference-Header-Content-Length header must be a byte count");
    }
    if (length > body.size()) {
      return fail("Inference-Header-Content-Length " + std::to_string(length) + " is more than the body's " +
                  std::to_string(body.size()) + " bytes");
    }
    json = body.substr(0, length);
    binary = body.substr(length);
  }

  PoolAllocator values(parse_scratch.values, sizeof(parse_scratch.values));
  PoolAllocator stack(parse_scratch.stack, sizeof(parse_scratch.stack));
  PooledDocument doc(&values, sizeof(parse_scratch.stack), &stack);
  const JsonParseFailure parse = parse_bounded_json(doc, json, &stack);
  if (parse.failed()) {
    return fail("the request's JSON is invalid: " + parse.message + " at offset " + std::to_string(parse.offset));
  }
  if (!doc.IsObject()) return fail("the request must be a JSON object with \"inputs\"");

  InferRequest request;
  const auto id = doc.FindMember("id");
  if (id != doc.MemberEnd()) {
    if (!id->value.IsString()) return fail("\"id\" must be a string");
    const std::string_view text(id->value.GetString(), id->value.GetStringLength());
    request.id = is_valid_utf8(text) ? std::string(text) : replace_invalid_utf8(text);
  }
  auto the_request = [] { return std::string("the request"); };
  const rapidjson::Value* parameters = nullptr;
  if (auto failure = parameters_of(doc, the_request, parameters)) return fail(*failure);
  bool binary_outputs = false;
  if (auto failure = bool_parameter(parameters, "binary_data_output", the_request, binary_outputs)) {
    return fail(*failure);
  }
  if (parameters != nullptr) {
    const auto uid = parameters->FindMember("uid");
    if (uid != parameters->MemberEnd()) {
      if (!uid->value.IsInt64()) return fail("the request: parameter \"uid\" must be an integer");
      request.uid = uid->value.GetInt64();
    }
  }
  if (auto failure = decode_outputs(doc, binary_outputs, request.outputs)) return fail(*failure);

  const auto inputs = doc.FindMember("inputs");
  if (inputs == doc.MemberEnd() || !inputs->value.IsArray()) return fail("\"inputs\" must be a JSON array");
  if (inputs->value.Size() != 1) {
    return fail("this model takes exactly one input tensor (its rows are the batch); the request has " +
                std::to_string(inputs->value.Size()));
  }
  const rapidjson::Value& input = inputs->value[0];
  if (!input.IsObject()) return fail("each of \"inputs\" must be a JSON object");
  TensorLayout tensor;
  const auto name = input.FindMember("name");
  if (name == input.MemberEnd() || !name->value.IsString()) return fail("each input needs a \"name\" string");
  tensor.name = std::string_view(name->value.GetString(), name->value.GetStringLength());
  const auto datatype = input.FindMember("datatype");
  if (datatype == input.MemberEnd() || !datatype->value.IsString()) {
    return fail(where(tensor) + " needs a \"datatype\" string");
  }
  tensor.datatype = parse_datatype(std::string_view(datatype->value.GetString(), datatype->value.GetStringLength()));
  const auto shape_member = input.FindMember("shape");
  if (shape_member == input.MemberEnd() || !shape_member->value.IsArray()) {
    return fail(where(tensor) + " needs a \"shape\" array");
  }
  Shape shape;
  for (const auto& dimension : shape_member->value.GetArray()) {
    if (!dimension.IsInt64()) return fail(where(tensor) + ": \"shape\" must hold integers");
    if (shape.size() == 8) return fail(where(tensor) + " has more dimensions than any model here takes");
    shape.push_back(dimension.GetInt64());
  }
  if (auto failure = check_shape(type, shape, tensor, body.size())) return fail(*failure);
  if (tensor.rows > max_rows) {
    result.status = 413;
    return fail(where(tensor) + " has a batch of " + std::to_string(tensor.rows) +
                " rows; this frontend queues at most " + std::to_string(max_rows) + " per model");
  }

  auto what = [&tensor] { return where(tensor); };
  const rapidjson::Value* input_parameters = nullptr;
  if (auto failure = parameters_of(input, what, input_parameters)) return fail(*failure);
  std::optional<uint64_t> binary_size;
  if (input_parameters != nullptr) {
    const auto size = input_parameters->FindMember("binary_data_size");
    if (size != input_parameters->MemberEnd()) {
      if (!size->value.IsUint64()) return fail(what() + ": binary_data_size must be a byte count");
      binary_size = size->value.GetUint64();
    }
  }
  const auto data = input.FindMember("data");
  const bool has_data = data != input.MemberEnd();
  if (binary_size) {
    if (has_data) return fail(what() + " has both \"data\" and binary_data_size; send one");
    if (*binary_size > binary.size()) {
      return fail(what() + " declares binary_data_size " + std::to_string(*binary_size) + " but only " +
                  std::to_string(binary.size()) + " bytes follow the JSON header");
    }
    if (*binary_size != binary.size()) {
      return fail(std::to_string(binary.size() - *binary_size) +
                  " bytes follow the JSON header beyond the inputs' binary_data_size");
    }
    if (auto failure = decode_binary_data(binary.substr(0, *binary_size), tensor, type, request.rows)) {
      return fail(*failure);
    }
  } else {
    if (!has_data) return fail(what() + " has neither \"data\" nor a binary_data_size parameter");
    if (!binary.empty()) {
      return fail(std::to_string(binary.size()) +
                  " bytes follow the JSON header but no input declares binary_data_size");
    }
    if (auto failure = decode_json_data(data->value, tensor, type, request.rows)) return fail(*failure);
  }
  result.request = std::move(request);
  return result;
}

}  // namespace clipper::oip
