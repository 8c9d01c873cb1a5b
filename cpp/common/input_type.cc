#include "common/input_type.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace clipper {

std::optional<InputType> parse_input_type(std::string_view name) {
  std::string lowered(name);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  struct Alias {
    std::string_view name;
    InputType type;
  };
  static constexpr std::array<Alias, 17> kAliases{{
      {"bytes", InputType::Bytes},     {"byte", InputType::Bytes},      {"b", InputType::Bytes},
      {"ints", InputType::Ints},       {"int", InputType::Ints},        {"integers", InputType::Ints},
      {"integer", InputType::Ints},    {"i", InputType::Ints},          {"floats", InputType::Floats},
      {"float", InputType::Floats},    {"f", InputType::Floats},        {"doubles", InputType::Doubles},
      {"double", InputType::Doubles},  {"d", InputType::Doubles},       {"strings", InputType::Strings},
      {"string", InputType::Strings},  {"str", InputType::Strings},
  }};
  for (const auto& alias : kAliases) {
    if (alias.name == lowered) return alias.type;
  }
  if (lowered == "strs" || lowered == "s") return InputType::Strings;
  return std::nullopt;
}

std::string_view input_type_name(InputType type) {
  switch (type) {
    case InputType::Bytes: return "bytes";
    case InputType::Ints: return "ints";
    case InputType::Floats: return "floats";
    case InputType::Doubles: return "doubles";
    case InputType::Strings: return "strings";
  }
  return "unknown";
}

std::size_t element_size(InputType type) {
  switch (type) {
    case InputType::Ints: return 4;
    case InputType::Floats: return 4;
    case InputType::Doubles: return 8;
    default: return 1;
  }
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
