#include "query/query_codec.h"

extern "C" {
#include <b64/cdecode.h>
}
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>

#include "common/bounded_json.h"
#include "common/utf8.h"

namespace clipper {
namespace {

// Word at a time: most outputs are ASCII, and then need no further check.
bool is_ascii(std::string_view text) {
  std::size_t at = 0;
  for (; at + 8 <= text.size(); at += 8) {
    uint64_t word;
    std::memcpy(&word, text.data() + at, 8);
    if ((word & 0x8080808080808080ULL) != 0) return false;
  }
  for (; at < text.size(); ++at) {
    if (static_cast<unsigned char>(text[at]) & 0x80) return false;
  }
  return true;
}

// Parsing and rendering run once per request: their scratch memory lives in per-thread buffers so
// the common case allocates nothing (rapidjson's defaults malloc a 64 KiB chunk per document).
using PoolAllocator = rapidjson::MemoryPoolAllocator<rapidjson::CrtAllocator>;
using PooledDocument = rapidjson::GenericDocument<rapidjson::UTF8<>, PoolAllocator, PoolAllocator>;

struct ParseScratch {
  alignas(16) char values[16 * 1024];
  alignas(16) char stack[4 * 1024];
};
thread_local ParseScratch parse_scratch;

// A rapidjson output stream that appends to a std::string.
struct StringAppender {
  using Ch = char;
  std::string& out;
  void Put(char c) { out.push_back(c); }
  void Flush() {}
};

// Writes `text` as a JSON string, with U+FFFD in place of any invalid UTF-8 so the answer stays JSON.
template <typename Writer>
void write_utf8_string(Writer& writer, std::string_view text) {
  if (is_valid_utf8(text)) {
    writer.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  } else {
    const std::string safe = replace_invalid_utf8(text);
    writer.String(safe.data(), static_cast<rapidjson::SizeType>(safe.size()));
  }
}

std::string schema_cause(std::string_view detail, InputType type) {
  std::string cause(detail);
  cause += ". Expected JSON schema: ";
  cause += input_schema_text(type);
  return cause;
}

bool is_base64(std::string_view text) {
  if (text.size() % 4 != 0) return false;
  std::size_t padding = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '=') {
      if (i + 2 < text.size()) return false;  // '=' only in the last two places
      ++padding;
      continue;
    }
    if (padding > 0) return false;
    const bool valid = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                       c == '+' || c == '/';
    if (!valid) return false;
  }
  return true;
}

// False when `encoded` is not base64.
bool decode_base64(std::string_view encoded, DecodedInput& out) {
  if (!is_base64(encoded)) return false;
  out.payload.resize(encoded.size() / 4 * 3);
  base64_decodestate state;
  base64_init_decodestate(&state);
  const int written =
      base64_decode_block(encoded.data(), static_cast<int>(encoded.size()), out.payload.data(), &state);
  out.payload.resize(static_cast<std::size_t>(written));
  out.element_count = static_cast<uint32_t>(written);
  return true;
}

template <typename Element, typename Convert>
bool pack_numbers(const rapidjson::Value& array, DecodedInput& out, Convert convert) {
  out.payload.resize(array.Size() * sizeof(Element));
  auto* cursor = out.payload.data();
  for (const auto& item : array.GetArray()) {
    Element element;
    if (!convert(item, element)) return false;
    std::memcpy(cursor, &element, sizeof(Element));
    cursor += sizeof(Element);
  }
  out.element_count = array.Size();
  return true;
}

// Decodes one input value; on failure returns the reason (without the schema).
std::optional<std::string> decode_input(const rapidjson::Value& value, InputType type,
                                        DecodedInput& out) {
  switch (type) {
    case InputType::Strings:
      if (!value.IsString()) return std::string("input must be a JSON string");
      if (!is_valid_utf8(std::string_view(value.GetString(), value.GetStringLength()))) {
        return std::string("input must be valid UTF-8");
      }
      out.payload.assign(value.GetString(), value.GetStringLength());
      out.element_count = value.GetStringLength();
      return std::nullopt;
    case InputType::Bytes: {
      if (!value.IsString()) return std::string("input must be a base64-encoded JSON string");
      if (!decode_base64(std::string_view(value.GetString(), value.GetStringLength()), out)) {
        return std::string("input is not valid base64");
      }
      return std::nullopt;
    }
    case InputType::Ints:
      if (!value.IsArray()) return std::string("input must be a JSON array of integers");
      if (!pack_numbers<int32_t>(value, out, [](const rapidjson::Value& v, int32_t& e) {
            if (!v.IsInt()) return false;
            e = v.GetInt();
            return true;
          })) {
        return std::string("every element must be an integer in the int32 range");
      }
      return std::nullopt;
    case InputType::Floats:
      if (!value.IsArray()) return std::string("input must be a JSON array of numbers");
      if (!pack_numbers<float>(value, out, [](const rapidjson::Value& v, float& e) {
            if (!v.IsNumber()) return false;
            const double d = v.GetDouble();
            if (std::isfinite(d) && std::fabs(d) > std::numeric_limits<float>::max()) return false;
            e = static_cast<float>(d);
            return true;
          })) {
        return std::string("every element must be a number in the float32 range");
      }
      return std::nullopt;
    case InputType::Doubles:
      if (!value.IsArray()) return std::string("input must be a JSON array of numbers");
      if (!pack_numbers<double>(value, out, [](const rapidjson::Value& v, double& e) {
            if (!v.IsNumber()) return false;
            e = v.GetDouble();
            return true;
          })) {
        return std::string("every element must be a number");
      }
      return std::nullopt;
  }
  return std::string("unknown input type");
}

bool parse_object(std::string_view body, PooledDocument& doc, PoolAllocator& stack, DecodeError& failure,
                  InputType type) {
  const JsonParseFailure parse = parse_bounded_json(doc, body, &stack);
  if (parse.failed()) {
    failure = {"Json error",
               schema_cause("Error parsing JSON: " + parse.message + " at offset " + std::to_string(parse.offset),
                            type)};
    return false;
  }
  if (!doc.IsObject()) {
    failure = {"Json error", schema_cause("the body must be a JSON object", type)};
    return false;
  }
  return true;
}

// JSON's whitespace, as rapidjson's reader skips it.
bool is_json_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// The first byte at or after `at` that is not an ASCII digit (or `end`), eight bytes at a time: a
// number's digits are most of a numeric body, and a byte at a time cost ~9 instructions each.
// A byte below '0' sets its high bit in `word - '0'`, one above '9' in `word + (0x80 - ':')`
// (bytes from 0x80 up set it in one or the other); a digit sets neither and lends or carries
// nothing to the byte above it, so the lowest flagged byte (little-endian) is the first non-digit.
const char* skip_digits(const char* at, const char* end) {
  static_assert(std::endian::native == std::endian::little);
  constexpr uint64_t kZeros = 0x3030303030303030;   // '0' in every byte
  constexpr uint64_t kAbove = 0x4646464646464646;   // 0x80 - ':' in every byte
  constexpr uint64_t kHighBits = 0x8080808080808080;
  while (end - at >= 8) {
    uint64_t word;
    std::memcpy(&word, at, sizeof(word));
    const uint64_t non_digits = ((word - kZeros) | (word + kAbove)) & kHighBits;
    if (non_digits != 0) return at + (std::countr_zero(non_digits) >> 3);
    at += 8;
  }
  while (at != end && is_digit(*at)) ++at;
  return at;
}

// Past a number's exponent, `at` on its 'e' or 'E': its value in `exponent` (capped at 100,000, only its
// size matters), or nullptr when no digit follows or when a positive exponent is one rapidjson's reader
// might refuse (see json_number_end).
const char* read_json_exponent(const char* at, const char* end, int& exponent) {
  constexpr int kMaxPositiveExponent = 290;
  bool negative = false;
  if (++at != end && (*at == '+' || *at == '-')) negative = *at++ == '-';
  if (at == end || !is_digit(*at)) return nullptr;
  int written = 0;
  for (; at != end && is_digit(*at); ++at) written = std::min(written * 10 + (*at - '0'), 100000);
  if (!negative && written > kMaxPositiveExponent) return nullptr;
  exponent = negative ? -written : written;
  return at;
}

// The end of the JSON number that starts at `at` (grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?),
// or nullptr when no number starts there, or when rapidjson's reader might refuse it as too big (it
// does for some finite numbers: more integer digits than a double's range, or a positive exponent
// over 308 less the fraction's digits, as in 0e400): such numbers are left to the general path.
// `integral` says whether it has neither a fraction nor an exponent.
const char* json_number_end(const char* at, const char* end, bool& integral) {
  constexpr std::ptrdiff_t kMaxIntegerDigits = 300;
  if (at != end && *at == '-') ++at;
  if (at == end) return nullptr;
  const char* digits = at;
  if (*at == '0') {
    ++at;
  } else if (*at >= '1' && *at <= '9') {
    at = skip_digits(at + 1, end);
  } else {
    return nullptr;
  }
  if (at - digits > kMaxIntegerDigits) return nullptr;
  integral = at == end || (*at != '.' && *at != 'e' && *at != 'E');
  if (at != end && *at == '.') {
    if (++at == end || !is_digit(*at)) return nullptr;
    at = skip_digits(at + 1, end);
  }
  if (at != end && (*at == 'e' || *at == 'E')) {
    int exponent;
    at = read_json_exponent(at, end, exponent);
  }
  return at;
}

// A number's parts as scan_json_number gathers them.
struct ScannedNumber {
  uint64_t digits = 0;     // the significant digits, as an integer (when `few_digits`)
  int64_t exponent = 0;    // the power of ten they are multiplied by
  bool negative = false;
  bool integral = false;   // neither a fraction nor an exponent
  bool few_digits = true;  // at most 19 significant digits: `digits` holds them all
};

// Adds the digits from `at` to `digits`: the end of the run. `digits` wraps past 19 digits; the caller
// counts them and then does not use it. A word at a time, where eight bytes remain: skip_digits' test
// finds how many of its bytes are digits, and fast_float's eight-digit parser reads them all at once,
// the run's last few shifted to the word's top, below them '0's (leading zeros).
const char* gather_digits(const char* at, const char* end, uint64_t& digits) {
  static constexpr uint64_t kPowersOfTen[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
  constexpr uint64_t kZeros = 0x3030303030303030, kAbove = 0x4646464646464646, kHighBits = 0x8080808080808080;
  while (end - at >= 8) {
    uint64_t word;
    std::memcpy(&word, at, sizeof(word));
    const uint64_t non_digits = ((word - kZeros) | (word + kAbove)) & kHighBits;
    if (non_digits == 0) {
      digits = digits * kPowersOfTen[8] + fast_float::parse_eight_digits_unrolled(word);
      at += 8;
      continue;
    }
    const int count = std::countr_zero(non_digits) >> 3;  // digits before the first other byte
    if (count <= 1) {  // none, or one (as in "1.0"): no need to parse the word
      digits = count == 0 ? digits : digits * 10 + static_cast<uint64_t>(*at - '0');
      return at + count;
    }
    const int shift = 8 * (8 - count);
    digits = digits * kPowersOfTen[count] +
             fast_float::parse_eight_digits_unrolled((word << shift) | (kZeros >> (64 - shift)));
    return at + count;
  }
  for (; at != end && is_digit(*at); ++at) digits = digits * 10 + static_cast<uint64_t>(*at - '0');
  return at;
}

// json_number_end (the same grammar, the same numbers left to the general path) that also gathers
// the number's significant digits and exponent as it goes, so that the text is read once, not again
// by the conversion.
const char* scan_json_number(const char* at, const char* end, ScannedNumber& number) {
  constexpr std::ptrdiff_t kMaxIntegerDigits = 300;
  constexpr std::ptrdiff_t kMaxDigits = 19;  // what a uint64_t holds, as fast_float counts them
  if (at != end && *at == '-') {
    number.negative = true;
    ++at;
  }
  if (at == end) return nullptr;
  const char* const integer = at;
  std::ptrdiff_t significant = 0;
  if (*at == '0') {
    ++at;
  } else if (*at >= '1' && *at <= '9') {
    at = gather_digits(at, end, number.digits);
    significant = at - integer;
  } else {
    return nullptr;
  }
  if (significant > kMaxIntegerDigits) return nullptr;
  number.integral = at == end || (*at != '.' && *at != 'e' && *at != 'E');
  int64_t exponent = 0;
  if (at != end && *at == '.') {
    if (++at == end || !is_digit(*at)) return nullptr;
    const char* const fraction = at;
    if (significant == 0) {
      while (at != end && *at == '0') ++at;  // leading zeros of 0.000...: not significant
    }
    const char* const first_significant = at;
    at = gather_digits(at, end, number.digits);
    significant += at - first_significant;
    exponent = -(at - fraction);
  }
  if (at != end && (*at == 'e' || *at == 'E')) {
    int written;
    at = read_json_exponent(at, end, written);
    if (at == nullptr) return nullptr;
    exponent += written;
  }
  number.exponent = exponent;
  number.few_digits = significant <= kMaxDigits;
  return at;
}

// The element a numeric type packs (common/input_type.h's table gives the same sizes).
template <InputType type>
using PackedElement = std::conditional_t<type == InputType::Ints, int32_t,
                                         std::conditional_t<type == InputType::Floats, float, double>>;

// One number as the element of `type`, with the general decoder's rules (rapidjson's IsInt, IsNumber
// and GetDouble on the value parse_json_number gives). False: that decoder refuses it (or words the
// error), so the caller falls back to it.
template <InputType type>
bool pack_number(const JsonNumber& number, char* out) {
  double real = number.real;
  if (number.kind == JsonNumber::Kind::Int64) {
    real = static_cast<double>(number.int64);
  } else if (number.kind == JsonNumber::Kind::Uint64) {
    real = static_cast<double>(number.uint64);
  } else if (number.kind != JsonNumber::Kind::Double) {
    return false;
  }
  switch (type) {  // known when compiled: each type's reader packs without a branch on it
    case InputType::Ints: {
      int64_t integer;
      if (number.kind == JsonNumber::Kind::Int64) {
        integer = number.int64;
      } else if (number.kind == JsonNumber::Kind::Uint64 && number.uint64 <= INT32_MAX) {
        integer = static_cast<int64_t>(number.uint64);
      } else {
        return false;
      }
      if (integer < INT32_MIN || integer > INT32_MAX) return false;
      const auto element = static_cast<int32_t>(integer);
      std::memcpy(out, &element, sizeof(element));
      return true;
    }
    case InputType::Floats: {
      if (std::isfinite(real) && std::fabs(real) > std::numeric_limits<float>::max()) return false;
      const auto element = static_cast<float>(real);
      std::memcpy(out, &element, sizeof(element));
      return true;
    }
    case InputType::Doubles:
      std::memcpy(out, &real, sizeof(real));
      return true;
    default:
      return false;
  }
}

// A cursor over a body for the one-pass readers below. Each step reads one token of the common
// bodies or says false, and the caller then leaves the whole body to the general decoder (which also
// words every error): so a body the cursor cannot read costs one partial scan more, never a different
// answer.
class OnePassCursor {
 public:
  explicit OnePassCursor(std::string_view body) : at_(body.data()), end_(body.data() + body.size()) {}

  // Inlined (GCC otherwise calls them, ~10 instructions a call, twice per number for skip_space):
  // most bodies have no space.
  __attribute__((always_inline)) void skip_space() {
    while (at_ != end_ && is_json_space(*at_)) ++at_;
  }
  __attribute__((always_inline)) bool take(char c) {
    skip_space();
    if (at_ == end_ || *at_ != c) return false;
    ++at_;
    return true;
  }
  // Only JSON whitespace is left.
  bool at_end() {
    skip_space();
    return at_ == end_;
  }

  // A string without escapes or control characters, its bytes as they are (as rapidjson's reader
  // copies them: it does not check UTF-8 here either).
  bool plain_string(std::string_view& text) {
    if (!take('"')) return false;
    const char* const start = at_;
    for (; at_ != end_ && *at_ != '"'; ++at_) {
      if (static_cast<unsigned char>(*at_) < 0x20 || *at_ == '\\') return false;
    }
    if (at_ == end_) return false;
    text = std::string_view(start, static_cast<std::size_t>(at_ - start));
    ++at_;
    return true;
  }

  // Flattened: the conversion inlined here (an out-of-line call cost ~5 instructions a number of "1.0").
  __attribute__((flatten)) bool number(JsonNumber& number) {
    skip_space();
    ScannedNumber scanned;
    const char* const number_end = scan_json_number(at_, end_, scanned);
    if (number_end == nullptr) return false;
    // A double of at most 19 significant digits (every double a client writes in the shortest
    // form) from the digits gathered; integers and the rest from the text, as the general path does.
    if (scanned.integral || !scanned.few_digits ||
        !json_double_from_digits(scanned.digits, scanned.exponent, scanned.negative, number)) {
      number = parse_json_number(std::string_view(at_, static_cast<std::size_t>(number_end - at_)),
                                 scanned.integral);
    }
    at_ = number_end;
    return true;
  }

  // An integer rapidjson's IsInt64 accepts.
  bool int64(int64_t& value) {
    JsonNumber parsed;
    if (!number(parsed)) return false;
    if (parsed.kind == JsonNumber::Kind::Int64) {
      value = parsed.int64;
      return true;
    }
    if (parsed.kind != JsonNumber::Kind::Uint64 || parsed.uint64 > INT64_MAX) return false;
    value = static_cast<int64_t>(parsed.uint64);
    return true;
  }

  // Elements to make room for in the first input read: all the rest of the body could hold (each
  // takes a digit and a comma), up to 64.
  std::size_t first_guess() const { return std::min<std::size_t>(static_cast<std::size_t>(end_ - at_) / 2 + 1, 64); }

  // [numbers] as `type`'s packed elements, each number scanned once and written straight into the
  // payload, which has room for `guess` elements first and doubles only when they are more.
  template <InputType type>
  bool numeric_array(DecodedInput& input, std::size_t guess) {
    if (!take('[')) return false;
    constexpr std::size_t element_size = sizeof(PackedElement<type>);
    input.payload.resize(std::max<std::size_t>(guess, 1) * element_size);
    std::size_t count = 0;
    skip_space();
    if (at_ != end_ && *at_ == ']') {
      ++at_;
    } else {
      while (true) {
        JsonNumber parsed;
        if (!number(parsed)) return false;
        if ((count + 1) * element_size > input.payload.size()) input.payload.resize(input.payload.size() * 2);
        if (!pack_number<type>(parsed, input.payload.data() + count * element_size)) return false;
        ++count;
        skip_space();
        if (at_ == end_) return false;
        if (*at_ == ']') {
          ++at_;
          break;
        }
        if (*at_ != ',') return false;
        ++at_;
      }
    }
    input.payload.resize(count * element_size);
    input.element_count = static_cast<uint32_t>(count);
    return true;
  }

  // One input of `type`: numbers (room for `guess` first), a string without escapes (valid UTF-8), or
  // base64 without escapes.
  bool input(InputType type, DecodedInput& input, std::size_t guess) {
    switch (type) {
      case InputType::Ints: return numeric_array<InputType::Ints>(input, guess);
      case InputType::Floats: return numeric_array<InputType::Floats>(input, guess);
      case InputType::Doubles: return numeric_array<InputType::Doubles>(input, guess);
      default: break;
    }
    std::string_view text;
    if (!plain_string(text)) return false;
    if (type == InputType::Strings) {
      if (!is_valid_utf8(text)) return false;
      input.payload.assign(text);
      input.element_count = static_cast<uint32_t>(text.size());
      return true;
    }
    return type == InputType::Bytes && decode_base64(text, input);
  }

  // {"key": value, ...}: `member(key)` reads each value from the cursor (false: not a common body).
  template <typename ReadMember>
  bool object(ReadMember member) {
    if (!take('{')) return false;
    do {
      std::string_view key;
      if (!plain_string(key) || !take(':') || !member(key)) return false;
    } while (take(','));
    return take('}');
  }

 private:
  const char* at_;
  const char* const end_;
};

// The common bodies in one pass: an object of "input" or "input_batch", "uid" and "version" in any
// order, each once, with inputs as above, into `parsed` (empty). False for any other body (other
// members, escapes in a string, any error), which the general decoder then reads.
bool read_common_predict_body(std::string_view body, InputType type, PredictBody& parsed) {
  OnePassCursor cursor(body);
  bool has_input = false, has_uid = false;
  const bool read = cursor.object([&](std::string_view key) {
    if (key == "input" || key == "input_batch") {
      if (has_input) return false;  // both, or one twice
      has_input = true;
      if (key == "input") return cursor.input(type, parsed.inputs.emplace_back(), cursor.first_guess());
      parsed.is_batch = true;
      if (!cursor.take('[')) return false;
      if (cursor.take(']')) return true;
      // A batch's inputs are mostly of one size: each makes room for as many elements as the one
      // before it held, which also keeps a batch of many short inputs from holding the first guess
      // each (64 elements for "[0]").
      std::size_t guess = cursor.first_guess();
      do {
        DecodedInput& input = parsed.inputs.emplace_back();
        if (!cursor.input(type, input, guess)) return false;
        guess = input.element_count;
      } while (cursor.take(','));
      return cursor.take(']');
    }
    if (key == "uid") {
      if (has_uid) return false;
      has_uid = true;
      return cursor.int64(parsed.uid);
    }
    if (key == "version") {
      if (parsed.version) return false;
      std::string_view text;
      if (cursor.plain_string(text)) {
        parsed.version.emplace(text);
        return true;
      }
      int64_t number = 0;
      if (!cursor.int64(number)) return false;
      parsed.version = std::to_string(number);
      return true;
    }
    return false;
  });
  return read && has_input && cursor.at_end();
}

// {"uid", "input", "label"} in any order, each once, in one pass; false for any other body.
bool read_common_update_body(std::string_view body, InputType type, UpdateBody& parsed) {
  OnePassCursor cursor(body);
  bool has_uid = false, has_input = false, has_label = false;
  const bool read = cursor.object([&](std::string_view key) {
    if (key == "uid") {
      if (has_uid) return false;
      has_uid = true;
      return cursor.int64(parsed.uid);
    }
    if (key == "input") {
      if (has_input) return false;
      has_input = true;
      return cursor.input(type, parsed.input, cursor.first_guess());
    }
    if (key == "label") {
      if (has_label) return false;
      has_label = true;
      JsonNumber label;
      if (!cursor.number(label)) return false;
      // rapidjson's GetDouble of the value parse_json_number gives.
      switch (label.kind) {
        case JsonNumber::Kind::Int64: parsed.label = static_cast<double>(label.int64); return true;
        case JsonNumber::Kind::Uint64: parsed.label = static_cast<double>(label.uint64); return true;
        case JsonNumber::Kind::Double: parsed.label = label.real; return true;
        default: return false;
      }
    }
    return false;
  });
  return read && has_uid && has_input && has_label && cursor.at_end();
}

}  // namespace

std::optional<PredictBody> decode_common_predict_body(std::string_view body, InputType type) {
  PredictBody parsed;
  if (!read_common_predict_body(body, type, parsed)) return std::nullopt;
  return parsed;
}

std::optional<UpdateBody> decode_common_update_body(std::string_view body, InputType type) {
  UpdateBody parsed;
  if (!read_common_update_body(body, type, parsed)) return std::nullopt;
  return parsed;
}

DecodeResult<PredictBody> decode_predict_body(std::string_view body, InputType type) {
  // One object returned on both paths, so it is built in the caller's place (not moved out).
  DecodeResult<PredictBody> result;
  if (!read_common_predict_body(body, type, result.value.emplace())) result = decode_predict_body_general(body, type);
  return result;
}

DecodeResult<PredictBody> decode_predict_body_general(std::string_view body, InputType type) {
  DecodeResult<PredictBody> result;
  PoolAllocator values(parse_scratch.values, sizeof(parse_scratch.values));
  PoolAllocator stack(parse_scratch.stack, sizeof(parse_scratch.stack));
  PooledDocument doc(&values, sizeof(parse_scratch.stack), &stack);
  if (!parse_object(body, doc, stack, result.failure, type)) return result;

  PredictBody parsed;
  const auto input = doc.FindMember("input");
  const auto batch = doc.FindMember("input_batch");
  const bool has_input = input != doc.MemberEnd();
  const bool has_batch = batch != doc.MemberEnd();
  if (has_input == has_batch) {
    result.failure = {"Json error",
                      schema_cause(has_input ? "give either \"input\" or \"input_batch\", not both"
                                             : "missing \"input\" or \"input_batch\"",
                                   type)};
    return result;
  }
  if (has_input) {
    DecodedInput decoded;
    if (auto reason = decode_input(input->value, type, decoded)) {
      result.failure = {"Json error", schema_cause("\"input\": " + *reason, type)};
      return result;
    }
    parsed.inputs.push_back(std::move(decoded));
  } else {
    if (!batch->value.IsArray()) {
      result.failure = {"Json error", schema_cause("\"input_batch\" must be a JSON array", type)};
      return result;
    }
    parsed.is_batch = true;
    parsed.inputs.reserve(batch->value.Size());
    std::size_t index = 0;
    for (const auto& item : batch->value.GetArray()) {
      DecodedInput decoded;
      if (auto reason = decode_input(item, type, decoded)) {
        result.failure = {"Json error", schema_cause("\"input_batch\"[" + std::to_string(index) +
                                                         "]: " + *reason,
                                                     type)};
        return result;
      }
      parsed.inputs.push_back(std::move(decoded));
      ++index;
    }
  }
  const auto version = doc.FindMember("version");
  if (version != doc.MemberEnd()) {
    if (version->value.IsString()) {
      parsed.version.emplace(version->value.GetString(), version->value.GetStringLength());
    } else if (version->value.IsInt64()) {
      parsed.version = std::to_string(version->value.GetInt64());
    } else {
      result.failure = {"Json error", schema_cause("\"version\" must be a string", type)};
      return result;
    }
  }
  const auto uid = doc.FindMember("uid");
  if (uid != doc.MemberEnd()) {
    if (!uid->value.IsInt64()) {
      result.failure = {"Json error", schema_cause("\"uid\" must be an integer", type)};
      return result;
    }
    parsed.uid = uid->value.GetInt64();
  }
  result.value = std::move(parsed);
  return result;
}

DecodeResult<UpdateBody> decode_update_body(std::string_view body, InputType type) {
  // One object returned on both paths, so it is built in the caller's place (not moved out).
  DecodeResult<UpdateBody> result;
  if (!read_common_update_body(body, type, result.value.emplace())) result = decode_update_body_general(body, type);
  return result;
}

DecodeResult<UpdateBody> decode_update_body_general(std::string_view body, InputType type) {
  DecodeResult<UpdateBody> result;
  PoolAllocator values(parse_scratch.values, sizeof(parse_scratch.values));
  PoolAllocator stack(parse_scratch.stack, sizeof(parse_scratch.stack));
  PooledDocument doc(&values, sizeof(parse_scratch.stack), &stack);
  if (!parse_object(body, doc, stack, result.failure, type)) return result;
  UpdateBody parsed;
  const auto uid = doc.FindMember("uid");
  if (uid == doc.MemberEnd() || !uid->value.IsInt64()) {
    result.failure = {"Json error", "\"uid\" must be an integer. Expected JSON schema: "
                                    "{\"uid\": int, \"input\": <input>, \"label\": number}"};
    return result;
  }
  parsed.uid = uid->value.GetInt64();
  const auto label = doc.FindMember("label");
  if (label == doc.MemberEnd() || !label->value.IsNumber()) {
    result.failure = {"Json error", "\"label\" must be a number. Expected JSON schema: "
                                    "{\"uid\": int, \"input\": <input>, \"label\": number}"};
    return result;
  }
  parsed.label = label->value.GetDouble();
  const auto input = doc.FindMember("input");
  if (input == doc.MemberEnd()) {
    result.failure = {"Json error", schema_cause("missing \"input\"", type)};
    return result;
  }
  if (auto reason = decode_input(input->value, type, parsed.input)) {
    result.failure = {"Json error", schema_cause("\"input\": " + *reason, type)};
    return result;
  }
  result.value = std::move(parsed);
  return result;
}

bool is_valid_json(std::string_view text) {
  if (text.empty()) return false;
  alignas(16) char stack_buffer[1024];
  PoolAllocator stack(stack_buffer, sizeof(stack_buffer));
  return is_bounded_json(text, &stack);
}

namespace {

// The common answer, one model's output that is a JSON number and no default, written without
// rapidjson's writer: the same bytes render_prediction's general path writes for it.
bool render_number_prediction(std::string& out, uint64_t query_id, std::string_view output) {
  bool integral = false;
  const char* end = json_number_end(output.data(), output.data() + output.size(), integral);
  if (end == nullptr || end != output.data() + output.size()) return false;
  const JsonNumber::Kind kind = parse_json_number(output, integral).kind;
  if (kind == JsonNumber::Kind::TooBig || kind == JsonNumber::Kind::Invalid) return false;  // quoted
  static constexpr std::string_view kOpen = "{\"query_id\":", kOutput = ",\"output\":",
                                    kClose = ",\"default\":false}";
  char id[24];
  const auto written = std::to_chars(id, id + sizeof(id), query_id);
  const auto id_length = static_cast<std::size_t>(written.ptr - id);
  // Sized once and copied into (an out-of-line append per piece cost ~45 instructions each).
  const std::size_t at = out.size();
  out.resize(at + kOpen.size() + id_length + kOutput.size() + output.size() + kClose.size());
  char* cursor = out.data() + at;
  for (const std::string_view piece : {kOpen, std::string_view(id, id_length), kOutput, output, kClose}) {
    std::memcpy(cursor, piece.data(), piece.size());
    cursor += piece.size();
  }
  return true;
}

}  // namespace

void render_prediction(std::string& out, uint64_t query_id, std::string_view output, bool is_default,
                       std::string_view default_explanation, const EnsembleFields* ensemble) {
  if (!is_default && ensemble == nullptr && render_number_prediction(out, query_id, output)) return;
  StringAppender stream{out};
  rapidjson::Writer<StringAppender> writer(stream);
  writer.StartObject();
  writer.Key("query_id");
  writer.Uint64(query_id);
  writer.Key("output");
  // A model's output is text; invalid UTF-8 from a broken or hostile replica would make the whole
  // answer invalid JSON, so its bad bytes become U+FFFD.
  std::string repaired;
  if (!is_ascii(output) && !is_valid_utf8(output)) {
    repaired = replace_invalid_utf8(output);
    output = repaired;
  }
  if (is_valid_json(output)) {
    writer.RawValue(output.data(), output.size(), rapidjson::kObjectType);
  } else {
    writer.String(output.data(), static_cast<rapidjson::SizeType>(output.size()));
  }
  writer.Key("default");
  writer.Bool(is_default);
  if (ensemble != nullptr) {
    writer.Key("confidence");
    writer.Double(ensemble->confidence);
    if (!ensemble->model.empty()) {
      writer.Key("model");
      writer.String(ensemble->model.data(), static_cast<rapidjson::SizeType>(ensemble->model.size()));
    }
    if (ensemble->partial) {
      writer.Key("partial");
      writer.Bool(true);
    }
    if (!ensemble->failed_models.empty()) {
      writer.Key("failed_models");
      writer.StartArray();
      for (std::string_view label : ensemble->failed_models) write_utf8_string(writer, label);
      writer.EndArray();
    }
  }
  if (is_default && !default_explanation.empty()) {
    writer.Key("default_explanation");
    write_utf8_string(writer, default_explanation);
  }
  writer.EndObject();
}

std::string render_error(std::string_view error, std::string_view cause) {
  if (is_plain_json_text(error) && is_plain_json_text(cause)) {
    // The usual case (every refusal under overload: the frontend's own words and numbers): the same
    // bytes the writer gives, without its per-character escaping and the UTF-8 repair's copies.
    constexpr std::string_view kOpen = "{\"error\":\"", kMiddle = "\",\"cause\":\"", kClose = "\"}";
    std::string out;
    out.reserve(kOpen.size() + error.size() + kMiddle.size() + cause.size() + kClose.size());
    out.append(kOpen).append(error).append(kMiddle).append(cause).append(kClose);
    return out;
  }
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartObject();
  writer.Key("error");
  const std::string safe_error = replace_invalid_utf8(error);
  const std::string safe_cause = replace_invalid_utf8(cause);
  writer.String(safe_error.data(), static_cast<rapidjson::SizeType>(safe_error.size()));
  writer.Key("cause");
  writer.String(safe_cause.data(), static_cast<rapidjson::SizeType>(safe_cause.size()));
  writer.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

}  // namespace clipper
