// The Open Inference Protocol's answers: infer responses (JSON and binary outputs), metadata and
// errors (declared in oip_codec.h; requests are decoded in oip_codec.cc). Pure functions: any thread.
#include <absl/container/inlined_vector.h>
#include <rapidjson/reader.h>
#include <rapidjson/writer.h>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>

#include "common/utf8.h"
#include "query/oip_codec.h"

namespace clipper::oip {
namespace {

static_assert(std::endian::native == std::endian::little, "binary outputs are written as this host's bytes");

constexpr std::string_view kServerName = "clipper";

using PoolAllocator = rapidjson::MemoryPoolAllocator<rapidjson::CrtAllocator>;

struct StringAppender {
  using Ch = char;
  std::string& out;
  void Put(char c) { out.push_back(c); }
  void Flush() {}
};
// The writer's level stack comes from a buffer on the caller's stack (rapidjson mallocs it otherwise).
using Writer = rapidjson::Writer<StringAppender, rapidjson::UTF8<>, rapidjson::UTF8<>, PoolAllocator>;
constexpr std::size_t kWriterLevels = 16;
struct WriterScratch {
  alignas(16) char buffer[512];
  PoolAllocator allocator{buffer, sizeof(buffer)};
};

// ---------------------------------------------------------------------------------------------
// Answers

using Numbers = absl::InlinedVector<double, 8>;

// Reads one output text as a JSON number or a flat JSON array of numbers (SAX, nothing allocated).
class NumericOutput : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, NumericOutput> {
 public:
  explicit NumericOutput(Numbers& values) : values_(values) {}
  bool Default() { return false; }  // anything but numbers and one level of array
  bool Int(int i) { return number(i); }
  bool Uint(unsigned u) { return number(u); }
  bool Int64(int64_t i) { return number(static_cast<double>(i)); }
  bool Uint64(uint64_t u) { return number(static_cast<double>(u)); }
  bool Double(double d) { return number(d); }
  bool StartArray() {
    if (depth_ > 0 || seen_ > 0) return false;
    ++depth_;
    is_array_ = true;
    return true;
  }
  bool EndArray(rapidjson::SizeType) { return true; }
  bool is_array() const { return is_array_; }
  std::size_t count() const { return seen_; }

 private:
  bool number(double value) {
    if (!is_array_ && seen_ > 0) return false;
    values_.push_back(value);
    ++seen_;
    return true;
  }
  Numbers& values_;
  int depth_ = 0;
  bool is_array_ = false;
  std::size_t seen_ = 0;
};

// The "output" tensor of an answer: numbers when every row is numeric in one shape, else text.
struct OutputValues {
  bool numeric = true;
  bool arrays = false;     // rows are arrays of `width` numbers
  std::size_t width = 0;
  Numbers numbers;  // row-major
};

OutputValues classify_outputs(const std::vector<RowAnswer>& rows) {
  OutputValues values;
  values.numbers.reserve(rows.size());
  alignas(16) char stack_buffer[256];
  PoolAllocator stack(stack_buffer, sizeof(stack_buffer));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::string_view text = rows[i].output;
    NumericOutput handler(values.numbers);
    rapidjson::GenericReader<rapidjson::UTF8<>, rapidjson::UTF8<>, PoolAllocator> reader(&stack);
    rapidjson::MemoryStream stream(text.data(), text.size());
    const bool parsed = !text.empty() && !reader.Parse(stream, handler).IsError();
    const bool arrays = handler.is_array();
    if (!parsed || (i > 0 && arrays != values.arrays) ||
        (arrays && i > 0 && handler.count() != values.width) || (arrays && handler.count() == 0)) {
      values.numeric = false;
      values.numbers.clear();
      return values;
    }
    values.arrays = arrays;
    values.width = arrays ? handler.count() : 1;
  }
  return values;
}

void write_string(Writer& writer, std::string_view text) {
  if (is_valid_utf8(text)) {
    writer.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  } else {
    const std::string safe = replace_invalid_utf8(text);
    writer.String(safe.data(), static_cast<rapidjson::SizeType>(safe.size()));
  }
}

// The infer response is written with plain appends (it runs once per request): only text that came
// from a client or a model goes through rapidjson's escaping, and only when it needs any.
void append_string(std::string& out, std::string_view text) {
  if (is_plain_json_text(text)) {
    // The usual case (names, versions, ids, a text model's answers): the writer's bytes, without its
    // per-character pass.
    const std::size_t at = out.size();
    out.resize(at + text.size() + 2);  // one growth, one copy
    char* quoted = out.data() + at;
    quoted[0] = '"';
    text.copy(quoted + 1, text.size());
    quoted[text.size() + 1] = '"';
    return;
  }
  StringAppender stream{out};
  rapidjson::Writer<StringAppender> escaper(stream);  // one value: its level stack is never used
  if (is_valid_utf8(text)) {
    escaper.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  } else {
    const std::string safe = replace_invalid_utf8(text);
    escaper.String(safe.data(), static_cast<rapidjson::SizeType>(safe.size()));
  }
}

void append_number(std::string& out, uint64_t value) {
  char text[24];
  const auto end = std::to_chars(text, text + sizeof(text), value).ptr;
  out.append(text, end);
}

void append_number(std::string& out, double value) {
  if (!std::isfinite(value)) {  // JSON has no infinity; parsed numbers are finite unless they overflowed
    out += "null";
    return;
  }
  char text[32];
  const auto end = std::to_chars(text, text + sizeof(text), value).ptr;  // shortest round-trip form
  out.append(text, end);
}

void append_shape(std::string& out, std::size_t rows, std::optional<std::size_t> width) {
  out += ",\"shape\":[";
  append_number(out, static_cast<uint64_t>(rows));
  if (width) {
    out += ',';
    append_number(out, static_cast<uint64_t>(*width));
  }
  out += ']';
}

// Appends one output tensor to the JSON, and its bytes to `binary` when asked in binary.
void append_output(std::string& out, const RequestedOutput& requested, const std::vector<RowAnswer>& rows,
                   const OutputValues& values, std::string& binary) {
  const std::size_t binary_start = binary.size();
  if (requested.tensor == OutputTensor::Default) {
    out += "{\"name\":\"default\",\"datatype\":\"BOOL\"";
    append_shape(out, rows.size(), std::nullopt);
    if (requested.binary) {
      for (const RowAnswer& row : rows) binary.push_back(row.is_default ? 1 : 0);
    } else {
      out += ",\"data\":[";
      for (std::size_t i = 0; i < rows.size(); ++i) {
        if (i > 0) out += ',';
        out += rows[i].is_default ? "true" : "false";
      }
      out += ']';
    }
  } else if (values.numeric) {
    out += "{\"name\":\"output\",\"datatype\":\"FP64\"";
    append_shape(out, rows.size(), values.arrays ? std::optional<std::size_t>(values.width) : std::nullopt);
    if (requested.binary) {
      const std::size_t bytes = values.numbers.size() * sizeof(double);
      binary.resize(binary_start + bytes);
      std::memcpy(binary.data() + binary_start, values.numbers.data(), bytes);
    } else {
      out += ",\"data\":[";
      for (std::size_t i = 0; i < values.numbers.size(); ++i) {
        if (i > 0) out += ',';
        append_number(out, values.numbers[i]);
      }
      out += ']';
    }
  } else {
    out += "{\"name\":\"output\",\"datatype\":\"BYTES\"";
    append_shape(out, rows.size(), std::nullopt);
    if (requested.binary) {
      for (const RowAnswer& row : rows) {
        const auto length = static_cast<uint32_t>(row.output.size());
        char prefix[4];
        std::memcpy(prefix, &length, 4);
        binary.append(prefix, 4);
        binary.append(row.output.data(), row.output.size());
      }
    } else {
      out += ",\"data\":[";
      for (std::size_t i = 0; i < rows.size(); ++i) {
        if (i > 0) out += ',';
        append_string(out, rows[i].output);
      }
      out += ']';
    }
  }
  if (requested.binary) {
    out += ",\"parameters\":{\"binary_data_size\":";
    append_number(out, static_cast<uint64_t>(binary.size() - binary_start));
    out += '}';
  }
  out += '}';
}

void write_tensor_metadata(Writer& writer, std::string_view name, std::string_view datatype,
                           const std::vector<int64_t>& shape) {
  writer.StartObject();
  writer.Key("name");
  writer.String(name.data(), static_cast<rapidjson::SizeType>(name.size()));
  writer.Key("datatype");
  writer.String(datatype.data(), static_cast<rapidjson::SizeType>(datatype.size()));
  writer.Key("shape");
  writer.StartArray();
  for (const int64_t dimension : shape) writer.Int64(dimension);
  writer.EndArray();
  writer.EndObject();
}

}  // namespace

TensorSignature input_signature(InputType type) {
  switch (type) {
    case InputType::Doubles: return {"FP64", {-1, -1}};
    case InputType::Floats: return {"FP32", {-1, -1}};
    case InputType::Ints: return {"INT32", {-1, -1}};
    case InputType::Bytes: return {"BYTES", {-1}};
    case InputType::Strings: return {"BYTES", {-1}};
  }
  return {"BYTES", {-1}};
}

std::size_t render_infer_response(const InferAnswer& answer, const std::vector<RowAnswer>& rows,
                                  const std::vector<RequestedOutput>& outputs, std::string& out) {
  const OutputValues values = classify_outputs(rows);
  std::string binary;
  out += "{\"model_name\":";
  append_string(out, answer.model_name);
  if (!answer.model_version.empty()) {
    out += ",\"model_version\":";
    append_string(out, answer.model_version);
  }
  if (answer.id != nullptr && answer.id->has_value()) {
    out += ",\"id\":";
    append_string(out, **answer.id);
  }
  if (!answer.model_label.empty() || !answer.default_explanation.empty()) {
    out += ",\"parameters\":{";
    if (!answer.model_label.empty()) {
      out += "\"clipper_model\":";
      append_string(out, answer.model_label);
    }
    if (!answer.default_explanation.empty()) {
      if (!answer.model_label.empty()) out += ',';
      out += "\"default_explanation\":";
      append_string(out, answer.default_explanation);
    }
    out += '}';
  }
  out += ",\"outputs\":[";
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    if (i > 0) out += ',';
    append_output(out, outputs[i], rows, values, binary);
  }
  out += "]}";
  const std::size_t json_length = out.size();
  out += binary;
  return json_length;
}

std::string render_server_metadata(std::string_view server_version) {
  std::string out;
  StringAppender stream{out};
  WriterScratch scratch;
  Writer writer(stream, &scratch.allocator, kWriterLevels);
  writer.StartObject();
  writer.Key("name");
  writer.String(kServerName.data(), static_cast<rapidjson::SizeType>(kServerName.size()));
  writer.Key("version");
  write_string(writer, server_version);
  writer.Key("extensions");
  writer.StartArray();
  writer.String("binary_tensor_data");
  writer.EndArray();
  writer.EndObject();
  return out;
}

std::string render_model_metadata(std::string_view name, const std::vector<std::string>& versions,
                                  InputType type) {
  std::string out;
  StringAppender stream{out};
  WriterScratch scratch;
  Writer writer(stream, &scratch.allocator, kWriterLevels);
  writer.StartObject();
  writer.Key("name");
  write_string(writer, name);
  writer.Key("versions");
  writer.StartArray();
  for (const std::string& version : versions) write_string(writer, version);
  writer.EndArray();
  writer.Key("platform");
  writer.String("clipper");
  writer.Key("inputs");
  writer.StartArray();
  const TensorSignature input = input_signature(type);
  write_tensor_metadata(writer, "input", input.datatype, input.shape);
  writer.EndArray();
  writer.Key("outputs");
  writer.StartArray();
  // A Clipper model answers text per input; numbers come back as FP64 (render_infer_response).
  write_tensor_metadata(writer, kOutputName, "BYTES", {-1});
  write_tensor_metadata(writer, kDefaultName, "BOOL", {-1});
  writer.EndArray();
  writer.EndObject();
  return out;
}

std::string render_error(std::string_view message) {
  std::string out;
  if (is_plain_json_text(message)) {
    // The usual case (every refusal under overload): the writer's bytes, without its per-character pass.
    constexpr std::string_view kOpen = "{\"error\":\"", kClose = "\"}";
    out.reserve(kOpen.size() + message.size() + kClose.size());
    out.append(kOpen).append(message).append(kClose);
    return out;
  }
  StringAppender stream{out};
  WriterScratch scratch;
  Writer writer(stream, &scratch.allocator, kWriterLevels);
  writer.StartObject();
  writer.Key("error");
  write_string(writer, message);
  writer.EndObject();
  return out;
}

}  // namespace clipper::oip
