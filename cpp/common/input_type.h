// The input types an application or model declares, and their names on the wire and in JSON.
// Owns only the enum and its conversions; names, aliases and sizes come from the generated
// clipper_defaults.h (source: src/clipper_native/defaults.json). No thread affinity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace clipper {

enum class InputType : uint8_t { Bytes = 0, Ints = 1, Floats = 2, Doubles = 3, Strings = 4 };

// Accepts Clipper's names and aliases ("doubles", "double", "d", "integers", "ints", ...).
std::optional<InputType> parse_input_type(std::string_view name);

// The canonical readable name ("bytes", "ints", "floats", "doubles", "strings").
std::string_view input_type_name(InputType type);

// Size of one element for numeric types; 1 for bytes and strings (their payload is raw bytes).
std::size_t element_size(InputType type);

bool is_numeric(InputType type);

// A short description of the JSON an input of this type must be, used in 400 error causes.
std::string_view input_schema_text(InputType type);

}  // namespace clipper
