// UTF-8 checks shared by the codecs: whether client text is valid UTF-8, and a copy of it that is,
// for quoting client input (an app name, a path) in JSON error messages; and whether text goes into a
// JSON string as it is, with no escaping at all. Header-only, no state: any thread.
#pragma once

#include <rapidjson/encodings.h>
#include <rapidjson/memorystream.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace clipper {

namespace utf8_detail {
struct DiscardingSink {
  void Put(char) {}
};
}  // namespace utf8_detail

// Length of the valid UTF-8 sequence at the start of `text` (0 when it is invalid).
inline std::size_t valid_utf8_prefix(std::string_view text) {
  rapidjson::MemoryStream stream(text.data(), text.size());
  utf8_detail::DiscardingSink sink;
  return rapidjson::UTF8<>::Validate(stream, sink) && stream.Tell() <= text.size() ? stream.Tell() : 0;
}

// Text that a JSON string carries as it is: printable ASCII without '"' or '\\' (what a writer would
// escape). The error renderers append such text directly, without the writer's per-character pass.
inline bool is_plain_json_text(std::string_view text) {
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x80 || c == '"' || c == '\\') return false;
  }
  return true;
}

inline bool is_valid_utf8(std::string_view text) {
  // ASCII, the usual case (every answer's output and every error message goes through here), needs
  // no decoder: skip it a byte at a time, then one pass over one stream for the rest; a sequence cut
  // by the end reads '\0' there and fails.
  std::size_t ascii = 0;
  while (ascii < text.size() && static_cast<unsigned char>(text[ascii]) < 0x80) ++ascii;
  if (ascii == text.size()) return true;
  const std::string_view rest = text.substr(ascii);
  rapidjson::MemoryStream stream(rest.data(), rest.size());
  utf8_detail::DiscardingSink sink;
  while (stream.Tell() < rest.size()) {
    if (!rapidjson::UTF8<>::Validate(stream, sink)) return false;
  }
  return true;
}

// `text` with every invalid byte replaced by U+FFFD.
inline std::string replace_invalid_utf8(std::string_view text) {
  // Valid text (every refusal's message, on the overload path) is copied as it is.
  if (is_valid_utf8(text)) return std::string(text);
  std::string out;
  out.reserve(text.size());
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t length = valid_utf8_prefix(text.substr(at));
    if (length == 0) {
      out += "\xEF\xBF\xBD";
      ++at;
    } else {
      out.append(text.data() + at, length);
      at += length;
    }
  }
  return out;
}

}  // namespace clipper
