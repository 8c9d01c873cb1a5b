// JSON parsing that a hostile document cannot crash. rapidjson's reader recurses once per nesting
// level, so a 120 KB body of '[' overflows an I/O thread's stack; here every parse goes through a
// handler that stops the reader past kMaxJsonDepth levels, which bounds the recursion (and the
// memory a deep document costs) and turns it into an ordinary parse error. Header-only, no state:
// any thread.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/json_number.h"

namespace clipper {

// Deeper than any input, output or configuration the engine reads; far below what the stack holds.
inline constexpr unsigned kMaxJsonDepth = 128;

// Forwards every SAX event to `Inner`, refusing arrays and objects nested deeper than the limit.
// Numbers arrive as text (kParseNumbersAsStringsFlag) and are converted exactly by
// parse_json_number (common/json_number.h), not by rapidjson, whose conversion is off by ULPs.
template <typename Inner>
class DepthLimitedHandler {
 public:
  using Ch = char;
  explicit DepthLimitedHandler(Inner& inner) : inner_(inner) {}

  bool too_deep() const { return too_deep_; }
  bool number_too_big() const { return number_too_big_; }

  bool Null() { return inner_.Null(); }
  bool Bool(bool b) { return inner_.Bool(b); }
  bool Int(int i) { return inner_.Int(i); }
  bool Uint(unsigned u) { return inner_.Uint(u); }
  bool Int64(int64_t i) { return inner_.Int64(i); }
  bool Uint64(uint64_t u) { return inner_.Uint64(u); }
  bool Double(double d) { return inner_.Double(d); }
  bool RawNumber(const Ch* text, rapidjson::SizeType length, bool) {
    const JsonNumber number = parse_json_number(std::string_view(text, length));
    switch (number.kind) {
      case JsonNumber::Kind::Int64: return inner_.Int64(number.int64);
      case JsonNumber::Kind::Uint64: return inner_.Uint64(number.uint64);
      case JsonNumber::Kind::Double: return inner_.Double(number.real);
      case JsonNumber::Kind::TooBig: number_too_big_ = true; return false;
      case JsonNumber::Kind::Invalid: break;
    }
    return false;
  }
  bool String(const Ch* text, rapidjson::SizeType length, bool copy) { return inner_.String(text, length, copy); }
  bool Key(const Ch* text, rapidjson::SizeType length, bool copy) { return inner_.Key(text, length, copy); }
  bool StartObject() { return enter() && inner_.StartObject(); }
  bool EndObject(rapidjson::SizeType members) {
    --depth_;
    return inner_.EndObject(members);
  }
  bool StartArray() { return enter() && inner_.StartArray(); }
  bool EndArray(rapidjson::SizeType elements) {
    --depth_;
    return inner_.EndArray(elements);
  }

 private:
  bool enter() {
    if (++depth_ <= kMaxJsonDepth) return true;
    too_deep_ = true;
    return false;
  }

  Inner& inner_;
  unsigned depth_ = 0;
  bool too_deep_ = false;
  bool number_too_big_ = false;
};

// Why a parse failed and where; empty `message` means it succeeded.
struct JsonParseFailure {
  std::string message;
  std::size_t offset = 0;
  bool failed() const { return !message.empty(); }
};

// rapidjson's reader takes a NUL byte for the end of its input, so a parse that succeeds short of the
// end stopped at one: what follows would be ignored (or, for a model's output embedded in an answer,
// copied into it raw). Found by cpp/fuzz/query_codec_fuzzer.
inline bool ended_at_nul(std::size_t offset, JsonParseFailure& failure) {
  failure.offset = offset;
  failure.message = rapidjson::GetParseError_En(rapidjson::kParseErrorDocumentRootNotSingular);
  return false;
}

// Parses `text` into `document` (any rapidjson GenericDocument) with bounded nesting. The reader's
// scratch comes from `stack_allocator` (null: the heap), so a pooled caller allocates nothing.
template <typename Document, typename StackAllocator = rapidjson::CrtAllocator>
JsonParseFailure parse_bounded_json(Document& document, std::string_view text,
                                    StackAllocator* stack_allocator = nullptr) {
  JsonParseFailure failure;
  auto generate = [&](Document& handler) {
    DepthLimitedHandler<Document> limited(handler);
    rapidjson::GenericReader<rapidjson::UTF8<>, rapidjson::UTF8<>, StackAllocator> reader(stack_allocator);
    rapidjson::MemoryStream stream(text.data(), text.size());
    // Numbers as text, converted by the handler (above): each becomes the double nearest to it.
    const rapidjson::ParseResult result =
        reader.template Parse<rapidjson::kParseNumbersAsStringsFlag>(stream, limited);
    if (result.IsError()) {
      failure.offset = result.Offset();
      failure.message =
          limited.too_deep()
              ? "arrays and objects nest deeper than " + std::to_string(kMaxJsonDepth) + " levels"
          : limited.number_too_big()
              ? std::string(rapidjson::GetParseError_En(rapidjson::kParseErrorNumberTooBig))
              : std::string(rapidjson::GetParseError_En(result.Code()));
      return false;
    }
    if (stream.Tell() != text.size()) return ended_at_nul(stream.Tell(), failure);
    return true;
  };
  document.Populate(generate);
  return failure;
}

// True when `text` is one well-formed JSON value nested at most kMaxJsonDepth deep.
template <typename StackAllocator = rapidjson::CrtAllocator>
bool is_bounded_json(std::string_view text, StackAllocator* stack_allocator = nullptr) {
  if (text.empty()) return false;
  rapidjson::BaseReaderHandler<> sink;
  DepthLimitedHandler<rapidjson::BaseReaderHandler<>> limited(sink);
  rapidjson::GenericReader<rapidjson::UTF8<>, rapidjson::UTF8<>, StackAllocator> reader(stack_allocator);
  rapidjson::MemoryStream stream(text.data(), text.size());
  return !reader.template Parse<rapidjson::kParseDefaultFlags>(stream, limited).IsError() &&
         stream.Tell() == text.size();
}

}  // namespace clipper
