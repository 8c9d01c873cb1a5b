#include "common/input_type.h"

#include <algorithm>
#include <cctype>
#include <string>

#include "clipper_defaults.h"

namespace clipper {

namespace {

// The table comes from defaults.json; the enum mirrors the wire schema. They must agree.
static_assert(defaults::input_types.size() == static_cast<std::size_t>(InputType::Strings) + 1);
static_assert(defaults::input_types[static_cast<int>(InputType::Bytes)].name == "bytes");
static_assert(defaults::input_types[static_cast<int>(InputType::Ints)].name == "ints");
static_assert(defaults::input_types[static_cast<int>(InputType::Floats)].name == "floats");
static_assert(defaults::input_types[static_cast<int>(InputType::Doubles)].name == "doubles");
static_assert(defaults::input_types[static_cast<int>(InputType::Strings)].name == "strings");

}  // namespace

std::optional<InputType> parse_input_type(std::string_view name) {
  std::string lowered(name);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const auto& alias : defaults::input_type_aliases) {
    if (alias.alias == lowered) return static_cast<InputType>(alias.code);
  }
  return std::nullopt;
}

std::string_view input_type_name(InputType type) {
  const auto code = static_cast<std::size_t>(type);
  return code < defaults::input_types.size() ? defaults::input_types[code].name : "unknown";
}

std::size_t element_size(InputType type) {
  const auto code = static_cast<std::size_t>(type);
  return code < defaults::input_types.size() ? static_cast<std::size_t>(defaults::input_types[code].element_bytes) : 1;
}

bool is_numeric(InputType type) {
  return type == InputType::Ints || type == InputType::Floats || type == InputType::Doubles;
}

std::string_view input_schema_text(InputType type) {
  switch (type) {
    case InputType::Bytes: return R"({"input": "<base64 string>"} or {"input_batch": ["<base64>", ...]})";
    case InputType::Ints: return R"({"input": [int32, ...]} or {"input_batch": [[int32, ...], ...]})";
    case InputType::Floats: return R"({"input": [number, ...]} or {"input_batch": [[number, ...], ...]})";
    case InputType::Doubles: return R"({"input": [number, ...]} or {"input_batch": [[number, ...], ...]})";
    case InputType::Strings: return R"({"input": "<string>"} or {"input_batch": ["<string>", ...]})";
  }
  return "";
}

}  // namespace clipper
