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

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace clipper {

// Deeper than any input, output or configuration the engine reads; far below what the stack holds.
inline constexpr unsigned kMaxJsonDepth = 128;

// Decimal exponent of the first non-zero digit of a valid JSON number ("0.05e3" -> 1, "120" -> 2):
// tells a number too big for a double from one too small for it.
inline long long leading_decimal_exponent(std::string_view number) {
  if (!number.empty() && number.front() == '-') number.remove_prefix(1);
  const std::size_t mark = number.find_first_of("eE");
  const std::string_view digits = number.substr(0, mark);
  long long exponent = 0;
  if (mark != std::string_view::npos) {
    std::string_view text = number.substr(mark + 1);
    const bool negative = !text.empty() && text.front() == '-';
    if (!text.empty() && (text.front() == '-' || text.front() == '+')) text.remove_prefix(1);
    if (std::from_chars(text.data(), text.data() + text.size(), exponent).ec != std::errc()) {
      exponent = 1LL << 40;  // more digits than any long long: far out of range either way
    }
    if (negative) exponent = -exponent;
  }
  const std::size_t point = std::min(digits.find('.'), digits.size());
  const std::size_t first = digits.find_first_of("123456789");
  if (first == std::string_view::npos) return 0;
  const auto place = static_cast<long long>(point) - static_cast<long long>(first);
  return exponent + (first < point ? place - 1 : place);
}

// Forwards every SAX event to `Inner`, refusing arrays and objects nested deeper than the limit.
// Numbers arrive as text (kParseNumbersAsStringsFlag) and are converted here with std::from_chars,
// which gives the double nearest to the text: rapidjson 1.1.0's fast path is off by a few units in
// the last place for long numbers, and its full-precision path returns garbage for a zero with a
// large negative exponent ("0e-45" read as -3e-170). Both found by cpp/fuzz/query_codec_fuzzer.
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
    const char* end = text + length;
    if (std::find_if(text, end, [](char c) { return c == '.' || c == 'e' || c == 'E'; }) == end) {
      if (text[0] == '-') {
        int64_t value = 0;
        if (std::from_chars(text, end, value).ec == std::errc()) return inner_.Int64(value);
      } else {
        uint64_t value = 0;
        if (std::from_chars(text, end, value).ec == std::errc()) return inner_.Uint64(value);
      }
      // Beyond 64 bits: a double, as rapidjson reads it.
    }
    double value = 0.0;
    const std::errc result = std::from_chars(text, end, value).ec;
    if (result == std::errc::result_out_of_range) {
      if (leading_decimal_exponent(std::string_view(text, length)) >= 0) {
        number_too_big_ = true;
        return false;
      }
      value = text[0] == '-' ? -0.0 : 0.0;  // below the smallest double: zero, as rapidjson reads it
    } else if (result != std::errc()) {
      return false;  // not reached: the reader checked the grammar
    }
    return inner_.Double(value);
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
