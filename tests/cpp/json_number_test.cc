#include "common/json_number.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cfloat>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace clipper {
namespace {

uint64_t bits(double value) {
  uint64_t out = 0;
  std::memcpy(&out, &value, sizeof(out));
  return out;
}

// What glibc's strtod (exact, round half to even) makes of `text`, as parse_json_number should.
void expect_as_strtod(const std::string& text) {
  const JsonNumber number = parse_json_number(text);
  const bool integral = text.find_first_of(".eE") == std::string::npos;
  if (integral) {
    errno = 0;
    if (text[0] == '-') {
      const long long value = std::strtoll(text.c_str(), nullptr, 10);
      if (errno == 0) {
        ASSERT_EQ(number.kind, JsonNumber::Kind::Int64) << text;
        ASSERT_EQ(number.int64, value) << text;
        return;
      }
    } else {
      const unsigned long long value = std::strtoull(text.c_str(), nullptr, 10);
      if (errno == 0) {
        ASSERT_EQ(number.kind, JsonNumber::Kind::Uint64) << text;
        ASSERT_EQ(number.uint64, value) << text;
        return;
      }
    }
  }
  const double expected = std::strtod(text.c_str(), nullptr);
  if (std::isinf(expected)) {
    ASSERT_EQ(number.kind, JsonNumber::Kind::TooBig) << text;
    return;
  }
  ASSERT_EQ(number.kind, JsonNumber::Kind::Double) << text;
  ASSERT_EQ(bits(number.real), bits(expected)) << text << ": " << number.real << " vs " << expected;
}

// A random number in JSON's grammar: sign, 1-40 integer digits (no leading zero), an optional
// fraction of 1-40 digits, an optional exponent; digits skewed to runs of 0 and 9 (carries, ties).
std::string random_json_number(std::mt19937_64& random) {
  auto pick = [&](int low, int high) { return std::uniform_int_distribution<int>(low, high)(random); };
  auto digit = [&] {
    const int kind = pick(0, 9);
    return static_cast<char>(kind < 2 ? '0' : kind < 4 ? '9' : '0' + pick(0, 9));
  };
  std::string text = pick(0, 1) ? "-" : "";
  if (pick(0, 4) == 0) {
    text += '0';
  } else {
    text += static_cast<char>('1' + pick(0, 8));
    for (int i = pick(0, 39); i > 0; --i) text += digit();
  }
  if (pick(0, 1)) {
    text += '.';
    for (int i = pick(1, 40); i > 0; --i) text += digit();
  }
  if (pick(0, 1)) {
    text += pick(0, 1) ? 'e' : 'E';
    const int sign = pick(0, 2);
    if (sign == 1) text += '-';
    if (sign == 2) text += '+';
    text += std::to_string(pick(0, 1) ? pick(0, 30) : pick(0, 400));
  }
  return text;
}

TEST(JsonNumber, EdgesMatchStrtod) {
  const char* edges[] = {
      "0", "-0", "0.0", "-0.0", "0e0", "0e-45", "-0.0e-45", "0E+400", "1", "-1", "1.0", "1e0", "1E+2",
      "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
      "18446744073709551615", "18446744073709551616", "123456789012345678901234567890",
      "123456789012345.67", "-2147483648483647.0", "0.5488135039273248", "0.1", "0.2", "0.3",
      "2.2250738585072014e-308",  // smallest normal
      "2.2250738585072011e-308",  // largest subnormal (rounded)
      "4.9406564584124654e-324", "5e-324", "2.4703282292062327e-324", "2.4703282292062328e-324",
      "1e-400", "-2.5e-400", "1e-99999999999999999999",
      "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308", "1.8e308", "1e309",
      "0.001e311", "0.001e312", "-1e99999999999999999999",
      "9007199254740993",  // 2^53 + 1: a tie, rounds to even
      "9007199254740993.0", "9007199254740992.9999999999999999999999", "9007199254740993.0000000000000000001",
      "1.00000000000000011102230246251565404236316680908203125",  // 1 + 2^-53 exactly: a tie
      "1.00000000000000011102230246251565404236316680908203124",
      "1.00000000000000011102230246251565404236316680908203126",
      "7.2057594037927933e16", "3.0e-44", "1.1754943508222875e-38", "0.000000000000000000000000000001",
      "100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
  };
  for (const char* edge : edges) expect_as_strtod(edge);
}

TEST(JsonNumber, RandomNumbersMatchStrtod) {
  std::mt19937_64 random(12);
  for (int i = 0; i < 200'000; ++i) {
    expect_as_strtod(random_json_number(random));
    if (testing::Test::HasFatalFailure()) return;
  }
}

// Doubles as Python's json.dumps writes them (shortest round trip, here %.17g), and the exact
// midpoints between neighbours (x86's long double holds them), where a sloppy parser rounds wrong.
TEST(JsonNumber, RandomDoublesAndTheMidpointsBetweenThemMatchStrtod) {
  static_assert(LDBL_MANT_DIG >= 64, "the midpoints need a long double wider than a double");
  std::mt19937_64 random(34);
  char text[1024];
  for (int i = 0; i < 50'000; ++i) {
    double value = 0.0;
    do {
      const uint64_t word = random();
      std::memcpy(&value, &word, sizeof(value));
    } while (!std::isfinite(value));
    std::snprintf(text, sizeof(text), "%.17g", value);
    expect_as_strtod(text);
    const double next = std::nextafter(value, HUGE_VAL);
    if (!std::isfinite(next) || std::fpclassify(value) != FP_NORMAL) continue;
    const long double midpoint = (static_cast<long double>(value) + static_cast<long double>(next)) / 2;
    std::snprintf(text, sizeof(text), "%.800Le", midpoint);  // glibc prints it exactly
    std::string exact = text;
    const auto mark = exact.find('e');
    std::string mantissa = exact.substr(0, mark);
    mantissa.erase(mantissa.find_last_not_of('0') + 1);
    if (mantissa.back() == '.') mantissa += '0';
    exact = mantissa + exact.substr(mark);
    expect_as_strtod(exact);
    expect_as_strtod(mantissa + "000001" + exact.substr(exact.find('e')));  // just above the tie
    if (testing::Test::HasFatalFailure()) return;
  }
}

// json_double_from_digits is the conversion from the digits a reader gathered: it must give what the
// text gives, or say it cannot (then the reader converts the text).
TEST(JsonNumber, FromDigitsGivesWhatTheTextGives) {
  struct Case {
    uint64_t digits;
    int64_t exponent;
    const char* text;
  };
  const Case cases[] = {{15, -1, "1.5"},  // Clinger's fast path
                        {5488135039273248, -16, "0.5488135039273248"},
                        {17976931348623157, 292, "17976931348623157e292"},  // the largest double
                        {49406564584124654, -340, "49406564584124654e-340"},  // the smallest subnormal
                        {9007199254740993, 0, "9007199254740993.0"},  // above 2^53: Eisel-Lemire
                        {1, -400, "1e-400"},                           // below the smallest: zero
                        {0, 5, "0e5"},
                        {9999999999999999999ULL, -19, "0.9999999999999999999"}};
  for (const Case& c : cases) {
    for (const bool negative : {false, true}) {
      JsonNumber number;
      ASSERT_TRUE(json_double_from_digits(c.digits, c.exponent, negative, number)) << c.text;
      const JsonNumber expected = parse_json_number(std::string(negative ? "-" : "") + c.text);
      EXPECT_EQ(number.kind, JsonNumber::Kind::Double) << c.text;
      uint64_t got, want;
      std::memcpy(&got, &number.real, sizeof(got));
      std::memcpy(&want, &expected.real, sizeof(want));
      EXPECT_EQ(got, want) << c.text << (negative ? " negated" : "");
    }
  }
  JsonNumber beyond;
  ASSERT_TRUE(json_double_from_digits(17976931348623159, 292, false, beyond));
  EXPECT_EQ(beyond.kind, JsonNumber::Kind::TooBig);
}

TEST(JsonNumber, ATextThatIsNoNumberIsInvalid) {
  EXPECT_EQ(parse_json_number("1.5x").kind, JsonNumber::Kind::Invalid);
  EXPECT_EQ(parse_json_number("").kind, JsonNumber::Kind::Invalid);
}

}  // namespace
}  // namespace clipper
