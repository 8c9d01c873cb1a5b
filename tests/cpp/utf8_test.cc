#include "common/utf8.h"

#include <gtest/gtest.h>

#include <string>

namespace clipper {
namespace {

TEST(Utf8, AsciiAndWellFormedSequencesAreValid) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("Overloaded: model m:1 would answer in about 120 us"));
  EXPECT_TRUE(is_valid_utf8("caf\xC3\xA9"));                // é
  EXPECT_TRUE(is_valid_utf8("\xE2\x82\xAC and \xF0\x9F\x98\x80"));  // € and an emoji
  EXPECT_TRUE(is_valid_utf8("\xC3\xA9 first"));             // no ASCII before the first sequence
}

TEST(Utf8, InvalidBytesAfterAnAsciiPrefixAreFound) {
  EXPECT_FALSE(is_valid_utf8("abc\xFF"));
  EXPECT_FALSE(is_valid_utf8("abc\x80"));              // a lone continuation byte
  EXPECT_FALSE(is_valid_utf8("abc\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("abc\xED\xA0\x80"));      // a UTF-16 surrogate
  EXPECT_FALSE(is_valid_utf8("abc\xE2\x82"));          // a sequence cut by the end
  EXPECT_FALSE(is_valid_utf8(std::string("abc\xC3\0", 5)));  // ...or by a NUL
  EXPECT_FALSE(is_valid_utf8("\xC3\xA9 then \xFF"));   // after a valid sequence
}

TEST(Utf8, ReplaceKeepsValidTextAndMarksEachInvalidByte) {
  EXPECT_EQ(replace_invalid_utf8("plain ascii"), "plain ascii");
  EXPECT_EQ(replace_invalid_utf8("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_EQ(replace_invalid_utf8("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(replace_invalid_utf8("\xE2\x82"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(replace_invalid_utf8("x\xC3\xA9\x80y"), "x\xC3\xA9\xEF\xBF\xBDy");
}

TEST(Utf8, PlainJsonTextIsPrintableAsciiWithoutQuotesOrBackslashes) {
  EXPECT_TRUE(is_plain_json_text(""));
  EXPECT_TRUE(is_plain_json_text("Overloaded: model m:1 would answer in about 120 us ('x' / ~)"));
  EXPECT_FALSE(is_plain_json_text("a \"quote\""));
  EXPECT_FALSE(is_plain_json_text("back\\slash"));
  EXPECT_FALSE(is_plain_json_text("line\nbreak"));
  EXPECT_FALSE(is_plain_json_text(std::string_view("\0", 1)));
  EXPECT_FALSE(is_plain_json_text("\x1f"));
  EXPECT_FALSE(is_plain_json_text("caf\xC3\xA9"));
  EXPECT_FALSE(is_plain_json_text("\xff"));
}

}  // namespace
}  // namespace clipper
