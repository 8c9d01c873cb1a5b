// Converts the text of one JSON number (already checked against JSON's grammar by the reader) to the
// value it denotes: an integer that fits 64 bits keeps its type, anything else becomes the double
// nearest to the text. Exact, as std::strtod is: doubles go through fast_float (Debian
// libfast-float-dev), which beats libstdc++ 12's std::from_chars on short numbers such as "1.0" and
// matches it on 17-digit ones (bench/micro/json_number_bench.cc compares the two in one run).
// rapidjson's own conversion is not used: its fast path is off by a few units in the last place for
// long numbers, and its full-precision path read "0e-45" as -3e-170 (found by cpp/fuzz).
// Header-only, no state: any thread.
#pragma once

#include <fast_float/fast_float.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <system_error>

namespace clipper {

struct JsonNumber {
  enum class Kind { Int64, Uint64, Double, TooBig, Invalid };
  Kind kind = Kind::Invalid;
  int64_t int64 = 0;
  uint64_t uint64 = 0;
  double real = 0.0;  // a number below the smallest double reads as zero (with its sign), as rapidjson does
};

// `text` should be a JSON number. TooBig: beyond the largest double (a number that rounds to it fits).
// Invalid: not a number at all (the reader's grammar check makes it unreachable from a parse).
// The same for a caller that already knows whether `text` has a fraction or an exponent (`integral`:
// neither), which spares a scan of it.
inline JsonNumber parse_json_number(std::string_view text, bool integral) {
  JsonNumber number;
  const char* first = text.data();
  const char* last = first + text.size();
  if (integral) {
    if (!text.empty() && text.front() == '-') {
      if (std::from_chars(first, last, number.int64).ec == std::errc()) {
        number.kind = JsonNumber::Kind::Int64;
        return number;
      }
    } else if (std::from_chars(first, last, number.uint64).ec == std::errc()) {
      number.kind = JsonNumber::Kind::Uint64;
      return number;
    }
    // Beyond 64 bits: a double, as rapidjson reads it.
  }
  const fast_float::from_chars_result result = fast_float::from_chars(first, last, number.real);
  if (result.ec != std::errc() || result.ptr != last) return number;  // Invalid: not a number
  // fast_float rounds an overflow to infinity (it reports no range error) and an underflow to zero.
  number.kind = std::isinf(number.real) ? JsonNumber::Kind::TooBig : JsonNumber::Kind::Double;
  return number;
}

// The double a decimal number denotes, given as its significant digits `digits` (at most 19 of them,
// as an integer) times ten to `exponent`: what fast_float's from_chars computes once it has read the
// text into those two, for a reader that has read them itself (query/query_codec's one-pass reader,
// which checks JSON's grammar and gathers the digits in the same scan). False in the rare cases that
// need the text itself (a halfway case Eisel-Lemire cannot round, or a rounding mode other than to
// nearest): then convert the text with parse_json_number. TooBig beyond the largest double.
inline bool json_double_from_digits(uint64_t digits, int64_t exponent, bool negative, JsonNumber& number) {
  using Format = fast_float::binary_format<double>;
  double value = 0.0;
  if (Format::min_exponent_fast_path() <= exponent && exponent <= Format::max_exponent_fast_path() &&
      digits <= Format::max_mantissa_fast_path()) {
    if (!fast_float::detail::rounds_to_nearest()) return false;
    // Clinger's fast path: both exact, so one correctly rounded operation.
    value = static_cast<double>(digits);
    value = exponent < 0 ? value / Format::exact_power_of_ten(-exponent) : value * Format::exact_power_of_ten(exponent);
    if (negative) value = -value;
  } else {
    const fast_float::adjusted_mantissa rounded = fast_float::compute_float<Format>(exponent, digits);
    if (rounded.power2 < 0) return false;  // undecided: needs the digits beyond what a double holds
    fast_float::to_float(negative, rounded, value);
  }
  number.real = value;
  number.kind = std::isinf(value) ? JsonNumber::Kind::TooBig : JsonNumber::Kind::Double;
  return true;
}

inline JsonNumber parse_json_number(std::string_view text) {
  return parse_json_number(text, std::none_of(text.begin(), text.end(),
                                               [](char c) { return c == '.' || c == 'e' || c == 'E'; }));
}

}  // namespace clipper
