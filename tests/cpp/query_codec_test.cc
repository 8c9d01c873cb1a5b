#include "query/query_codec.h"

#include <gtest/gtest.h>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

namespace clipper {
namespace {

std::vector<double> as_doubles(const DecodedInput& input) {
  std::vector<double> values(input.element_count);
  std::memcpy(values.data(), input.payload.data(), input.payload.size());
  return values;
}

TEST(QueryCodec, DecodesASingleDoublesInputIncludingIntegersWrittenWithoutAPoint) {
  auto result = decode_predict_body(R"({"input": [1, 2.5, -3e2]})", InputType::Doubles);
  ASSERT_TRUE(result.ok()) << result.failure.cause;
  ASSERT_EQ(result.value->inputs.size(), 1u);
  EXPECT_FALSE(result.value->is_batch);
  EXPECT_EQ(as_doubles(result.value->inputs[0]), (std::vector<double>{1.0, 2.5, -300.0}));
}

TEST(QueryCodec, DecodesABatchAndTheVersion) {
  auto result = decode_predict_body(R"({"input_batch": [[1,2],[3]], "version": "2"})", InputType::Ints);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result.value->inputs.size(), 2u);
  EXPECT_TRUE(result.value->is_batch);
  EXPECT_EQ(result.value->inputs[0].element_count, 2u);
  EXPECT_EQ(result.value->inputs[1].payload.size(), 4u);
  EXPECT_EQ(result.value->version, "2");
}

TEST(QueryCodec, RejectsWrongTypesWithTheSchema) {
  auto strings_for_doubles = decode_predict_body(R"({"input": "abc"})", InputType::Doubles);
  ASSERT_FALSE(strings_for_doubles.ok());
  EXPECT_EQ(strings_for_doubles.failure.error, "Json error");
  EXPECT_NE(strings_for_doubles.failure.cause.find("Expected JSON schema"), std::string::npos);

  EXPECT_FALSE(decode_predict_body(R"({"input": [1.5]})", InputType::Ints).ok());
  EXPECT_FALSE(decode_predict_body(R"({"input": [3000000000]})", InputType::Ints).ok());
  EXPECT_FALSE(decode_predict_body(R"({"input": [1, "x"]})", InputType::Floats).ok());
  EXPECT_FALSE(decode_predict_body(R"({"input_batch": [[1], "x"]})", InputType::Doubles).ok());
}

TEST(QueryCodec, RejectsMalformedJsonAndMissingInput) {
  auto malformed = decode_predict_body(R"({"input": [1, 2)", InputType::Doubles);
  ASSERT_FALSE(malformed.ok());
  EXPECT_NE(malformed.failure.cause.find("Error parsing JSON"), std::string::npos);
  EXPECT_FALSE(decode_predict_body(R"({"inputs": [1]})", InputType::Doubles).ok());
  EXPECT_FALSE(decode_predict_body(R"([1, 2])", InputType::Doubles).ok());
  EXPECT_FALSE(decode_predict_body(R"({"input": [1], "input_batch": [[1]]})", InputType::Doubles).ok());
}

TEST(QueryCodec, DecodesBase64BytesAndRejectsInvalidBase64) {
  auto ok = decode_predict_body(R"({"input": "aGVsbG8="})", InputType::Bytes);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.value->inputs[0].payload, "hello");
  EXPECT_FALSE(decode_predict_body(R"({"input": "not base64!"})", InputType::Bytes).ok());
  EXPECT_FALSE(decode_predict_body(R"({"input": "aGV=sbG8"})", InputType::Bytes).ok());
}

TEST(QueryCodec, DecodesStrings) {
  auto ok = decode_predict_body(R"({"input": "héllo"})", InputType::Strings);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.value->inputs[0].payload, "héllo");
}

TEST(QueryCodec, RejectsStringsThatAreNotUtf8AndNeverEchoesInvalidBytes) {
  auto bad = decode_predict_body("{\"input\": \"ab\xff\xfe\"}", InputType::Strings);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.failure.cause.find("valid UTF-8"), std::string::npos);
  EXPECT_EQ(render_error("Unknown application", "no application named 'x\xffy'"),
            "{\"error\":\"Unknown application\",\"cause\":\"no application named 'x\xEF\xBF\xBDy'\"}");
}

TEST(QueryCodec, DecodesUpdates) {
  auto ok = decode_update_body(R"({"uid": 4, "input": [1.0], "label": 1})", InputType::Doubles);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.value->uid, 4);
  EXPECT_EQ(ok.value->label, 1.0);
  EXPECT_FALSE(decode_update_body(R"({"uid": "x", "input": [1.0], "label": 1})", InputType::Doubles).ok());
  EXPECT_FALSE(decode_update_body(R"({"uid": 1, "input": [1.0]})", InputType::Doubles).ok());
}

TEST(QueryCodec, RendersOutputsAsJsonWhenTheyAreJson) {
  std::string out;
  render_prediction(out, 7, "[1, 2]", false, "");
  EXPECT_EQ(out, R"({"query_id":7,"output":[1, 2],"default":false})");
  out.clear();
  render_prediction(out, 8, "cat", true, "because");
  EXPECT_EQ(out, R"({"query_id":8,"output":"cat","default":true,"default_explanation":"because"})");
  out.clear();
  render_prediction(out, 9, "1.5 trailing", false, "");
  EXPECT_EQ(out, R"({"query_id":9,"output":"1.5 trailing","default":false})");
}

TEST(QueryCodec, RendersOutputsThatAreNotUtf8AsValidJson) {
  // A broken or hostile replica's bytes: the answer stays valid JSON, bad bytes become U+FFFD,
  // valid multi-byte text passes unchanged, whether the output is a plain string or JSON.
  std::string out;
  render_prediction(out, 1, std::string_view("\xff\xfe" "ok caf\xc3\xa9", 10), false, "");
  EXPECT_EQ(out, "{\"query_id\":1,\"output\":\"\xEF\xBF\xBD\xEF\xBF\xBDok caf\xc3\xa9\",\"default\":false}");
  out.clear();
  render_prediction(out, 2, "[\"a\xff\"]", false, "");
  EXPECT_EQ(out, "{\"query_id\":2,\"output\":[\"a\xEF\xBF\xBD\"],\"default\":false}");
  out.clear();
  render_prediction(out, 3, "\"caf\xc3\xa9 \xe2\x82\xac\"", false, "");
  EXPECT_EQ(out, "{\"query_id\":3,\"output\":\"caf\xc3\xa9 \xe2\x82\xac\",\"default\":false}");
}

TEST(QueryCodec, DefaultExplanationsStayValidUtf8) {
  // The explanation can quote a replica's error text, arbitrary bytes (cpp/fuzz/query_codec_fuzzer
  // found answers that were not UTF-8, hence not JSON): invalid bytes become U+FFFD.
  std::string out;
  render_prediction(out, 3, "0", true, "model failed: \xed\xa0\x80");  // a lone surrogate
  EXPECT_EQ(out, "{\"query_id\":3,\"output\":0,\"default\":true,\"default_explanation\":"
                 "\"model failed: \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"}");
}

TEST(QueryCodec, NumbersArriveAsTheNearestDoubleToWhatTheClientWrote) {
  // What Python's json.dumps writes for these doubles; rapidjson's fast path was off in the last places.
  const double expected[] = {123456789012345.67, -2147483648483647.0, 0.5488135039273248, 5e-324};
  const auto body = decode_predict_body(
      R"({"input": [123456789012345.67, -2147483648483647.0, 0.5488135039273248, 5e-324]})", InputType::Doubles);
  ASSERT_TRUE(body.ok());
  ASSERT_EQ(body.value->inputs[0].payload.size(), sizeof(expected));
  EXPECT_EQ(std::memcmp(body.value->inputs[0].payload.data(), expected, sizeof(expected)), 0);
  // Zero, whatever its exponent (rapidjson's full-precision path read 0e-45 as -3e-170), numbers
  // below the smallest double, and integers beyond 64 bits.
  const auto edges = decode_predict_body(
      R"({"input": [0e-45, -0.0e-45, 1e-400, -2.5e-400, 18446744073709551616, -9223372036854775809, 1E+2]})",
      InputType::Doubles);
  ASSERT_TRUE(edges.ok());
  const auto values = as_doubles(edges.value->inputs[0]);
  EXPECT_EQ(values, (std::vector<double>{0.0, -0.0, 0.0, -0.0, 18446744073709551616.0, -9223372036854775809.0, 100.0}));
  EXPECT_TRUE(std::signbit(values[1]) && std::signbit(values[3]) && !std::signbit(values[0]));
  const auto huge = decode_predict_body(R"({"input": [1.8e308]})", InputType::Doubles);
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.failure.cause.find("Number too big to be stored in double"), std::string::npos) << huge.failure.cause;
  EXPECT_FALSE(decode_predict_body(R"({"input": [0.001e312]})", InputType::Doubles).ok());
  EXPECT_FALSE(decode_predict_body(R"({"input": [-1e99999999999999999999]})", InputType::Doubles).ok());
  EXPECT_TRUE(decode_predict_body(R"({"input": [0.001e311, 1e-99999999999999999999]})", InputType::Doubles).ok());
  // Integers keep their type: int32 inputs are still checked as such.
  EXPECT_TRUE(decode_predict_body(R"({"input": [-2147483648, 2147483647]})", InputType::Ints).ok());
  EXPECT_FALSE(decode_predict_body(R"({"input": [2147483648]})", InputType::Ints).ok());
  EXPECT_FALSE(decode_predict_body(R"({"input": [1.0]})", InputType::Ints).ok());
}

// decode_predict_body reads {"input": [numbers]} in one pass and leaves every other body to the
// general decoder: the two must agree on every body, accepted (same bytes) or refused (same words).
void expect_same_as_general(const std::string& body) {
  for (const InputType type :
       {InputType::Ints, InputType::Floats, InputType::Doubles, InputType::Strings, InputType::Bytes}) {
    const auto fast = decode_predict_body(body, type);
    const auto general = decode_predict_body_general(body, type);
    ASSERT_EQ(fast.ok(), general.ok()) << body << " as type " << static_cast<int>(type);
    if (!fast.ok()) {
      EXPECT_EQ(fast.failure.error, general.failure.error) << body;
      EXPECT_EQ(fast.failure.cause, general.failure.cause) << body;
      continue;
    }
    ASSERT_EQ(fast.value->inputs.size(), general.value->inputs.size()) << body;
    EXPECT_EQ(fast.value->is_batch, general.value->is_batch) << body;
    EXPECT_EQ(fast.value->uid, general.value->uid) << body;
    EXPECT_EQ(fast.value->version, general.value->version) << body;
    for (std::size_t i = 0; i < fast.value->inputs.size(); ++i) {
      EXPECT_EQ(fast.value->inputs[i].payload, general.value->inputs[i].payload) << body;
      EXPECT_EQ(fast.value->inputs[i].element_count, general.value->inputs[i].element_count) << body;
    }
  }
}

TEST(QueryCodec, TheOnePassReaderAgreesWithTheGeneralDecoder) {
  using namespace std::string_literals;
  const std::vector<std::string> numbers = {
      "0", "-0", "1", "-1", "2.5", "-3e2", "1E+2", "1e-2", "0.5488135039273248", "5e-324", "1e-400",
      "-2.5e-400", "0e-45", "2147483647", "2147483648", "-2147483648", "-2147483649", "4294967296",
      "9223372036854775807", "9223372036854775808", "-9223372036854775809", "18446744073709551616",
      "3.4028234663852886e38", "3.4028235677973366e38", "3.5e38", "-3.5e38", "1.8e308", "1e309",
      "0.001e311", "0.001e312", "0e400", "0e290", "0.0e309", "1e290", "1e291", "1e0000000000000000001",
      "-1e99999999999999999999", "1e-99999999999999999999", std::string(300, '9'), std::string(301, '9'),
      std::string(310, '1'), "1" + std::string(308, '0'), "179769313486231570" + std::string(291, '0'),
      // Not JSON numbers: refused by both, in the general decoder's words.
      "01", "-", "+1", ".5", "1.", "1.e3", "1e", "1e+", "--1", "0x10", "NaN", "Infinity", "-Infinity",
      "1 2", "\"1\"", "true", "null", "[1]", "{}"};
  for (const auto& number : numbers) {
    expect_same_as_general(R"({"input": [)" + number + "]}");
    expect_same_as_general(R"({"input":[1,)" + number + ",2]}");
  }
  const std::vector<std::string> bodies = {
      R"({"input": []})", R"({"input":[]})", " \t\r\n{ \"input\" : [ 1 , 2 ] } \n", R"({"input": [1,2,]})",
      R"({"input": [,1]})", R"({"input": [1 2]})", R"({"input": [1], })", R"({"input": [1]}})",
      R"({"input": [1]} x)", R"({"input": [1])", R"({"input": [1)", R"({"input": [1,)", R"({"input": )",
      R"({"input" [1]})", R"({input: [1]})", R"({"input": [1], "uid": 7})", R"({"uid": 7, "input": [1]})",
      R"({"input": [1], "version": "2"})", R"({"input": [1], "input": [2]})", R"({"input_batch": [[1]]})",
      R"({"input": [1], "input_batch": [[1]]})", R"({"inpu\u0074": [1]})", R"({"input": 1})",
      R"({"input": "1"})", R"({"input": [[1]]})", R"({"input": [true]})", R"([1])", "", " ", "{",
      "{\"input\": [1]}\0"s, "{\"input\": [1\0]}"s, "{\"input\": [1]}\0garbage"s, "\xEF\xBB\xBF{\"input\": [1]}",
      "{\"input\": [1]\v}", "{\"input\": [1]\f}", "{\"input\":\xC2\xA0[1]}", R"({"input": [1.5, -0.0, 3]})"};
  for (const auto& body : bodies) expect_same_as_general(body);
  std::string long_body = R"({"input": [)";
  for (int i = 0; i < 5000; ++i) long_body += (i ? "," : "") + std::to_string(i * 7919 % 100003) + ".25";
  expect_same_as_general(long_body + "]}");
}

// Every member the one-pass reader takes, in every value shape next to the ones it reads (and some
// it leaves to the general decoder), in both orders, with and without space.
TEST(QueryCodec, TheOnePassReaderAgreesWithTheGeneralDecoderOnEveryMember) {
  using namespace std::string_literals;
  const std::vector<std::string> inputs = {
      "[1, 2.5]", "[]", "[ ]", "[[1]]", "\"hello\"", "\"\"", "\"h\\u00e9\"", "\"h\xC3\xA9llo\"", "\"\xC3\"",
      "\"\xFF\xFE\"", "\"a\x7F\"", "\"a\tb\"", "\"a\\\"b\"", "\"aGVsbG8=\"", "\"aGVsbG8\"", "\"YQ==\"", "\"====\"",
      "\"aGk\xC3\xA9\"", "1", "null", "{}", "\"unterminated"};
  const std::vector<std::string> batches = {"[[1],[2,3]]", "[]", "[ ]", "[[]]", "[[1],]", "[[1]", "[,[1]]",
                                            "[\"a\",\"b\"]", "[\"aGk=\", \"YQ==\"]", "[\"a\", 1]", "[1]",
                                            "[[[1]]]", "[\"h\xC3\xA9\", \"\xC3\"]", "{}", "\"x\""};
  const std::vector<std::string> uids = {"7", "-7", "0", "-0", "9223372036854775807", "9223372036854775808",
                                         "-9223372036854775808", "-9223372036854775809", "1.0", "1e2",
                                         "\"7\"", "null", "true", "[7]", "07"};
  const std::vector<std::string> versions = {"\"2\"", "\"\"", "\"v\\u0032\"", "\"a\\\"b\"", "\"\xC3\xA9\"",
                                             "\"\xFF\"", "\"\x01\"", "3", "-3", "3.5", "9223372036854775808",
                                             "null", "[1]", "\"\""};
  for (const auto& input : inputs) {
    expect_same_as_general(R"({"input": )" + input + "}");
    expect_same_as_general(R"({"input":)" + input + R"(,"uid":3})");
    expect_same_as_general(R"({"input_batch": [)" + input + "]}");
    expect_same_as_general(R"({"input_batch": [)" + input + "," + input + R"(], "version": "1"})");
  }
  for (const auto& batch : batches) {
    expect_same_as_general(R"({"input_batch": )" + batch + "}");
    expect_same_as_general(R"({ "uid" : 2 , "input_batch" : )" + batch + " }");
  }
  for (const auto& uid : uids) {
    for (const auto& version : versions) {
      expect_same_as_general(R"({"input": [1], "uid": )" + uid + R"(, "version": )" + version + "}");
      expect_same_as_general(R"({"version":)" + version + R"(,"uid":)" + uid + R"(,"input_batch":[[1],[2]]})");
    }
  }
  const std::vector<std::string> bodies = {
      R"({"uid": 1, "uid": 2, "input": [1]})", R"({"version": "1", "version": "2", "input": [1]})",
      R"({"input_batch": [[1]], "input_batch": [[2]]})", R"({"input_batch": [[1]], "input": [2]})",
      R"({"input": [1], "foo": 1})", R"({"Input": [1]})", R"({"uid": 1})", R"({"version": "1"})", R"({})",
      R"({"input": [1],})", R"({,"input": [1]})", R"({"input": [1] "uid": 1})", R"({"input": [1], "uid"})",
      R"({"input": [1], "uid": })", R"({"input": [1], "uid": 1}})", "{\"input\": [1], \"uid\": 1\0}"s,
      "{\"input\": [1], \"ver\0sion\": \"1\"}"s, "{\"input\": \"a\0b\"}"s, R"({"input": [1], "uid": 1} [])"};
  for (const auto& body : bodies) expect_same_as_general(body);
}

// A body cut short at every byte, laid out so that its last byte is the last one before an unmapped
// page: a one-pass reader that reads past the body's end crashes here (without a sanitizer), and each
// cut must still get the general decoder's answer.
class GuardedBody {
 public:
  explicit GuardedBody(std::size_t capacity) {
    page_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const std::size_t pages = (capacity + page_ - 1) / page_ + 1;
    size_ = pages * page_;
    void* mapped = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED) throw std::runtime_error("mmap failed");
    base_ = static_cast<char*>(mapped);
    if (mprotect(base_ + size_ - page_, page_, PROT_NONE) != 0) throw std::runtime_error("mprotect failed");
  }
  ~GuardedBody() { munmap(base_, size_); }
  GuardedBody(const GuardedBody&) = delete;
  GuardedBody& operator=(const GuardedBody&) = delete;
  // `body` copied to end where the guard page begins.
  std::string_view place(std::string_view body) {
    char* at = base_ + size_ - page_ - body.size();
    std::memcpy(at, body.data(), body.size());
    return {at, body.size()};
  }

 private:
  std::size_t page_ = 0;
  std::size_t size_ = 0;
  char* base_ = nullptr;
};

TEST(QueryCodec, TheOnePassReadersStopAtTheBodysEndWhereverItIsCut) {
  const std::vector<std::string> predict_bodies = {
      R"({"input": [12345678901, -0.5e-3, 1E+2, 0, 123456789012345678901234567890]})",
      R"({"uid":-42,"version":"v1","input_batch":[[1,2],[3.25e1],[]]})",
      "{\"input\": \"h\xC3\xA9llo w\xE2\x82\xACrld\", \"version\": 7}", R"({"input": "h\u00e9llo"})", R"({"input":"aGVsbG8gd29ybGQ="})",
      R"({"input_batch":["YQ==","aGk="],"uid":9223372036854775807})"};
  const std::vector<std::string> update_bodies = {
      R"({"uid": 3, "input": [1.5, 22222222, -3], "label": -0.125e2})",
      R"({"label":1,"input":"aGVsbG8=","uid":4})"};
  GuardedBody guarded(4096);
  for (const InputType type :
       {InputType::Ints, InputType::Floats, InputType::Doubles, InputType::Strings, InputType::Bytes}) {
    for (const auto& body : predict_bodies) {
      for (std::size_t cut = 0; cut <= body.size(); ++cut) {
        const std::string_view view = guarded.place(std::string_view(body).substr(0, cut));
        const auto fast = decode_predict_body(view, type);
        const auto general = decode_predict_body_general(view, type);
        ASSERT_EQ(fast.ok(), general.ok()) << view;
        if (!fast.ok()) {
          EXPECT_EQ(fast.failure.cause, general.failure.cause) << view;
          continue;
        }
        ASSERT_EQ(fast.value->inputs.size(), general.value->inputs.size()) << view;
        for (std::size_t i = 0; i < fast.value->inputs.size(); ++i) {
          EXPECT_EQ(fast.value->inputs[i].payload, general.value->inputs[i].payload) << view;
        }
      }
    }
    for (const auto& body : update_bodies) {
      for (std::size_t cut = 0; cut <= body.size(); ++cut) {
        const std::string_view view = guarded.place(std::string_view(body).substr(0, cut));
        const auto fast = decode_update_body(view, type);
        const auto general = decode_update_body_general(view, type);
        ASSERT_EQ(fast.ok(), general.ok()) << view;
        if (!fast.ok()) {
          EXPECT_EQ(fast.failure.cause, general.failure.cause) << view;
          continue;
        }
        EXPECT_EQ(fast.value->input.payload, general.value->input.payload) << view;
        EXPECT_EQ(std::bit_cast<uint64_t>(fast.value->label), std::bit_cast<uint64_t>(general.value->label)) << view;
      }
    }
  }
}

// The agreement tests above hold whichever decoder reads a body; this one checks that the common
// bodies (what the Python client and the benchmarks send) are the one-pass reader's, not left to the
// general decoder.
TEST(QueryCodec, TheOnePassReadersTakeTheCommonBodies) {
  const auto single = decode_common_predict_body(R"({"input": [1.5, 2], "uid": 9, "version": "3"})",
                                                 InputType::Doubles);
  ASSERT_TRUE(single.has_value());
  EXPECT_EQ(single->uid, 9);
  EXPECT_EQ(single->version, "3");
  ASSERT_EQ(single->inputs.size(), 1u);
  EXPECT_EQ(single->inputs[0].element_count, 2u);
  const auto batch = decode_common_predict_body(R"({"uid": -1, "version": 4, "input_batch": [[1], [2, 3], []]})",
                                                InputType::Ints);
  ASSERT_TRUE(batch.has_value());
  EXPECT_TRUE(batch->is_batch);
  EXPECT_EQ(batch->version, "4");
  ASSERT_EQ(batch->inputs.size(), 3u);
  EXPECT_EQ(batch->inputs[1].payload.size(), 2 * sizeof(int32_t));
  EXPECT_TRUE(decode_common_predict_body(R"({"input": "h\u00e9"})", InputType::Strings) == std::nullopt);
  const auto text = decode_common_predict_body("{\"input_batch\": [\"h\xC3\xA9\", \"\"]}", InputType::Strings);
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(text->inputs[0].payload, "h\xC3\xA9");
  const auto bytes = decode_common_predict_body(R"({"input": "aGk="})", InputType::Bytes);
  ASSERT_TRUE(bytes.has_value());
  EXPECT_EQ(bytes->inputs[0].payload, "hi");
  const auto update = decode_common_update_body(R"({"uid": 4, "input": [1.0, 2.0], "label": 0.25})",
                                                InputType::Floats);
  ASSERT_TRUE(update.has_value());
  EXPECT_EQ(update->uid, 4);
  EXPECT_EQ(update->label, 0.25);
  EXPECT_EQ(update->input.element_count, 2u);
  // Left to the general decoder: members it does not know, and every error.
  EXPECT_FALSE(decode_common_predict_body(R"({"input": [1], "extra": 0})", InputType::Doubles).has_value());
  EXPECT_FALSE(decode_common_predict_body(R"({"input": [1], "uid": 1.5})", InputType::Doubles).has_value());
  EXPECT_FALSE(decode_common_update_body(R"({"uid": 4, "input": [1.0]})", InputType::Doubles).has_value());
}

// A batch of many short inputs holds about what its numbers need: each input makes room for as many
// elements as the one before it (not the first input's guess of up to 64 each, 512 bytes for "[0]").
TEST(QueryCodec, ABatchOfShortInputsHoldsNoMoreThanItsNumbersNeed) {
  std::string body = R"({"input_batch": [[1, 2, 3])";
  for (int i = 0; i < 1000; ++i) body += ", [0]";
  const auto batch = decode_common_predict_body(body + "]}", InputType::Doubles);
  ASSERT_TRUE(batch.has_value());
  ASSERT_EQ(batch->inputs.size(), 1001u);
  std::size_t held = 0;
  for (std::size_t i = 1; i < batch->inputs.size(); ++i) {
    ASSERT_EQ(batch->inputs[i].payload.size(), sizeof(double));
    held += batch->inputs[i].payload.capacity();
  }
  EXPECT_LE(held, 1000 * 4 * sizeof(double));  // the 64-element guess each would hold 512,000 bytes
}

// The same for /update bodies: the one-pass reader of {"uid", "input", "label"} against the general one.
void expect_update_same_as_general(const std::string& body) {
  for (const InputType type :
       {InputType::Ints, InputType::Floats, InputType::Doubles, InputType::Strings, InputType::Bytes}) {
    const auto fast = decode_update_body(body, type);
    const auto general = decode_update_body_general(body, type);
    ASSERT_EQ(fast.ok(), general.ok()) << body << " as type " << static_cast<int>(type);
    if (!fast.ok()) {
      EXPECT_EQ(fast.failure.error, general.failure.error) << body;
      EXPECT_EQ(fast.failure.cause, general.failure.cause) << body;
      continue;
    }
    EXPECT_EQ(fast.value->uid, general.value->uid) << body;
    EXPECT_EQ(std::bit_cast<uint64_t>(fast.value->label), std::bit_cast<uint64_t>(general.value->label)) << body;
    EXPECT_EQ(fast.value->input.payload, general.value->input.payload) << body;
    EXPECT_EQ(fast.value->input.element_count, general.value->input.element_count) << body;
  }
}

TEST(QueryCodec, TheOnePassUpdateReaderAgreesWithTheGeneralDecoder) {
  using namespace std::string_literals;
  const std::vector<std::string> labels = {"1", "-1", "0", "-0", "1.5", "-2.5e-3", "0.1", "1e400", "0e400",
                                           "18446744073709551616", "9223372036854775808", "-9223372036854775809",
                                           "5e-324", "1e-400", "\"1\"", "true", "null", "[1]", "01", "1."};
  const std::vector<std::string> inputs = {"[1, 2.5]", "[]", "[2147483648]", "\"hello\"", "\"\xC3\"",
                                           "\"aGVsbG8=\"", "\"a\\nb\"", "[[1]]", "1"};
  const std::vector<std::string> uids = {"4", "-4", "9223372036854775807", "9223372036854775808", "1.0", "\"4\""};
  for (const auto& label : labels) {
    for (const auto& input : inputs) {
      for (const auto& uid : uids) {
        expect_update_same_as_general(R"({"uid": )" + uid + R"(, "input": )" + input + R"(, "label": )" + label + "}");
        expect_update_same_as_general(R"({"label":)" + label + R"(,"input":)" + input + R"(,"uid":)" + uid + "}");
      }
    }
  }
  const std::vector<std::string> bodies = {
      R"({"uid": 1, "input": [1]})", R"({"uid": 1, "label": 1})", R"({"input": [1], "label": 1})",
      R"({"uid": 1, "input": [1], "label": 1, "label": 2})", R"({"uid": 1, "uid": 2, "input": [1], "label": 1})",
      R"({"uid": 1, "input": [1], "input": [2], "label": 1})", R"({"uid": 1, "input": [1], "label": 1, "x": 0})",
      R"({"uid": 1, "input": [1], "label": 1} x)", " {\"uid\":1,\"input\":[1],\"label\":1} \n",
      "{\"uid\":1,\"input\":[1],\"label\":1}\0"s, R"({})", R"([])", ""};
  for (const auto& body : bodies) expect_update_same_as_general(body);
}

// The one-pass reader converts a number of up to 19 significant digits from the digits it gathered as
// it scanned (fast_float's Clinger and Eisel-Lemire steps), the rest from the text: every double, in
// the forms clients write (shortest, 17 and 19 significant digits, fixed with leading zeros), must
// come out as the general decoder's, bit for bit, with either sign and in every element type.
TEST(QueryCodec, TheOnePassReaderConvertsEveryDoubleAsTheGeneralDecoderDoes) {
  std::mt19937_64 random(13);
  std::vector<std::string> numbers = {
      "0.0", "-0.0", "0.000", "1.5", "9007199254740993.0", "9007199254740992.5", "2.2250738585072011e-308",
      "2.2250738585072014e-308", "4.9406564584124654e-324", "2.4703282292062327e-324", "2.4703282292062328e-324",
      "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308", "1e22", "1.0e23", "1e-22",
      "1.0e-23", "9999999999999999999.5", "0.9999999999999999999", "0.99999999999999999999", "1.0000000000000000000",
      "0.00000000000000000000000000000000000000000000000000000000000000001", "123456789012345.67", "0.1e-400",
      "72057594037927933.0", "7.2057594037927933e16", "3.4028235677973366e38", "1.401298464324817e-45"};
  char text[64];
  for (int i = 0; i < 20000; ++i) {
    double value;
    const uint64_t bits = random();
    std::memcpy(&value, &bits, sizeof(value));
    if (!std::isfinite(value)) continue;
    if (i % 2) value = std::ldexp(static_cast<double>(bits >> 11), -53) * std::pow(10.0, i % 9);  // everyday sizes
    const auto shortest = std::to_chars(text, text + sizeof(text), value);
    std::string written(text, shortest.ptr);
    if (written.find_first_of(".e") == std::string::npos) written += ".0";
    numbers.push_back(written);
    std::snprintf(text, sizeof(text), "%.17g", value);
    numbers.emplace_back(text);
    std::snprintf(text, sizeof(text), "%.18e", value);
    numbers.emplace_back(text);
    if (i % 10 == 1) {
      std::snprintf(text, sizeof(text), "%.30f", value / 1e6);
      numbers.emplace_back(text);
    }
  }
  std::size_t taken = 0;  // by the one-pass reader (numbers beyond its range go to the general one)
  for (const std::string& number : numbers) {
    const std::string body = R"({"input": [)" + number + "]}";
    const auto one_pass = decode_predict_body(body, InputType::Doubles);
    const auto general = decode_predict_body_general(body, InputType::Doubles);
    ASSERT_EQ(one_pass.ok(), general.ok()) << number;
    if (!one_pass.ok()) continue;
    ASSERT_EQ(one_pass.value->inputs[0].payload, general.value->inputs[0].payload) << number;
    taken += decode_common_predict_body(body, InputType::Doubles).has_value();
  }
  EXPECT_GT(taken, numbers.size() * 9 / 10);
  for (std::size_t i = 0; i < 400; ++i) {  // each alone too, negated, in every type
    expect_same_as_general(R"({"input": [)" + numbers[i] + "]}");
    expect_same_as_general(R"({"input": [-)" + numbers[i] + "]}");
  }
}

// The one-pass reader skips digit runs eight bytes at a time: runs of every length up to a few words,
// at every offset in a word, ended by each byte next to the digits' range and by bytes from 0x80 up.
TEST(QueryCodec, TheOnePassReaderFindsTheEndOfDigitRunsOfAnyLengthAndAnyEnd) {
  using namespace std::string_literals;
  const std::vector<std::string> ends = {"", ",", "]", "/", ":", " ", "e1", "E-2", ".", ".5", "\x80"s,
                                         "\xB0"s, "\xBA"s, "\xFF"s, "\x7F"s, "\0"s, "x"};
  for (std::size_t offset = 0; offset < 8; ++offset) {
    for (std::size_t length = 1; length <= 26; ++length) {
      std::string digits;
      for (std::size_t i = 0; i < length; ++i) digits += static_cast<char>('1' + (i * 7 + offset) % 9);
      for (const std::string& end : ends) {
        const std::string pad(offset, ' ');
        expect_same_as_general(R"({"input": [)" + pad + digits + end + "]}");
        expect_same_as_general(R"({"input": [)" + pad + "0." + digits + end + "]}");
        expect_same_as_general(R"({"input": [)" + pad + "-" + digits + "." + digits + end + ", 1]}");
      }
    }
  }
}

TEST(QueryCodec, RendersANumberOutputAsTheGeneralWriterDoes) {
  // The common answer is written without rapidjson's writer; what it writes must not change.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"0", R"({"query_id":18446744073709551615,"output":0,"default":false})"},
      {"-1.5e-3", R"({"query_id":18446744073709551615,"output":-1.5e-3,"default":false})"},
      {"1e400", R"({"query_id":18446744073709551615,"output":"1e400","default":false})"},
      {"0e400", R"({"query_id":18446744073709551615,"output":"0e400","default":false})"},
      {"01", R"({"query_id":18446744073709551615,"output":"01","default":false})"},
      {" 1", R"({"query_id":18446744073709551615,"output": 1,"default":false})"},
      {"", R"({"query_id":18446744073709551615,"output":"","default":false})"},
      {"-", R"({"query_id":18446744073709551615,"output":"-","default":false})"}};
  for (const auto& [output, expected] : cases) {
    std::string out = "prefix";
    render_prediction(out, UINT64_MAX, output, false, "");
    EXPECT_EQ(out, "prefix" + expected) << output;
  }
  std::string defaulted;
  render_prediction(defaulted, 3, "0", true, "");
  EXPECT_EQ(defaulted, R"({"query_id":3,"output":0,"default":true})");
}

TEST(QueryCodec, ANulByteDoesNotEndTheJson) {
  // rapidjson stops reading at a NUL: "valid JSON, then a NUL, then anything" once passed for JSON,
  // so a body's tail was ignored and a model's output was embedded raw (cpp/fuzz/query_codec_fuzzer).
  using namespace std::string_literals;
  EXPECT_FALSE(is_valid_json("\"x\"\0{"s));
  EXPECT_FALSE(is_valid_json("1\0"s));
  std::string out;
  render_prediction(out, 5, "[1]\0]"s, false, "");
  EXPECT_EQ(out, "{\"query_id\":5,\"output\":\"[1]\\u0000]\",\"default\":false}");
  const auto body = decode_predict_body("{\"input\": [1]}\0garbage"s, InputType::Doubles);
  ASSERT_FALSE(body.ok());
  EXPECT_NE(body.failure.cause.find("at offset 14"), std::string::npos) << body.failure.cause;
}

TEST(QueryCodec, RefusesDeeplyNestedBodiesWithoutRecursingIntoThem) {
  // 120,000 levels would overflow the I/O thread's stack if the parser recursed into them.
  const std::string deep_input = R"({"input": )" + std::string(120000, '[') + std::string(120000, ']') + "}";
  auto predict = decode_predict_body(deep_input, InputType::Doubles);
  ASSERT_FALSE(predict.ok());
  EXPECT_NE(predict.failure.cause.find("nest deeper than 128 levels"), std::string::npos);
  const std::string deep_update = R"({"uid": 1, "label": 1, "input": )" + std::string(120000, '{');
  EXPECT_FALSE(decode_update_body(deep_update, InputType::Doubles).ok());
  // Nesting within the limit still parses (and is then judged by the input schema).
  const std::string shallow = R"({"input": [1], "extra": )" + std::string(100, '[') + std::string(100, ']') + "}";
  EXPECT_TRUE(decode_predict_body(shallow, InputType::Doubles).ok());
}

TEST(QueryCodec, EmbedsAnOutputNestedTooDeeplyAsAString) {
  const std::string deep = std::string(5000, '[') + std::string(5000, ']');
  std::string out;
  render_prediction(out, 1, deep, false, "");
  EXPECT_EQ(out.rfind(R"({"query_id":1,"output":")", 0), 0u);
}

TEST(QueryCodec, RendersErrors) {
  EXPECT_EQ(render_error("Json error", "bad \"x\""), R"({"error":"Json error","cause":"bad \"x\""})");
  // Plain text (a refusal's message) is written as it is; anything else is escaped as JSON wants.
  EXPECT_EQ(render_error("Overloaded", "model m:1 would answer in about 120 us"),
            R"({"error":"Overloaded","cause":"model m:1 would answer in about 120 us"})");
  EXPECT_EQ(render_error("Bad", "back\\slash"), R"({"error":"Bad","cause":"back\\slash"})");
  EXPECT_EQ(render_error("Bad", "line\nbreak\x01"), R"({"error":"Bad","cause":"line\nbreak\u0001"})");
  EXPECT_EQ(render_error("Bad", "caf\xC3\xA9"), "{\"error\":\"Bad\",\"cause\":\"caf\xC3\xA9\"}");
  EXPECT_EQ(render_error("", ""), R"({"error":"","cause":""})");
}

// Random numbers in JSON's grammar (up to 22 integer digits, 25 fraction digits with many zeros, exponents
// to 339 either way): the one-pass readers' own conversion (digits gathered a word at a time, Clinger's
// and Eisel-Lemire's steps) gives the general decoder's bits or leaves the number to it, as an input of
// each numeric type and as /update's label. Seeded: the same numbers every run.
TEST(QueryCodec, TheOnePassReadersAgreeWithTheGeneralDecoderOnRandomNumbers) {
  std::mt19937_64 rng(12345);
  const auto digit = [&rng](bool nonzero) { return static_cast<char>('0' + (nonzero ? 1 + rng() % 9 : rng() % 10)); };
  std::size_t one_pass = 0;
  for (int round = 0; round < 100000; ++round) {
    std::string number = rng() % 3 == 0 ? "-" : "";
    if (rng() % 4 == 0) {
      number += '0';
    } else {
      number += digit(true);
      for (int i = 1 + static_cast<int>(rng() % 22); i > 1; --i) number += digit(false);
    }
    if (rng() % 2) {
      number += '.';
      for (int i = 1 + static_cast<int>(rng() % 25); i > 0; --i) number += rng() % 3 == 0 ? '0' : digit(false);
    }
    if (rng() % 2) {
      number += rng() % 2 ? 'e' : 'E';
      const auto sign = rng() % 3;
      if (sign != 2) number += sign == 0 ? '-' : '+';
      number += std::to_string(rng() % 340);
    }
    const std::string body = "{\"input\":[" + number + "]}";
    for (const InputType type : {InputType::Doubles, InputType::Floats, InputType::Ints}) {
      const auto fast = decode_predict_body(body, type);
      const auto general = decode_predict_body_general(body, type);
      ASSERT_EQ(fast.ok(), general.ok()) << body;
      if (fast.ok()) ASSERT_EQ(fast.value->inputs[0].payload, general.value->inputs[0].payload) << body;
      one_pass += decode_common_predict_body(body, type).has_value();
    }
    const std::string update = "{\"uid\":1,\"input\":[1],\"label\":" + number + "}";
    const auto fast = decode_update_body(update, InputType::Doubles);
    const auto general = decode_update_body_general(update, InputType::Doubles);
    ASSERT_EQ(fast.ok(), general.ok()) << update;
    if (fast.ok()) {
      ASSERT_EQ(std::bit_cast<uint64_t>(fast.value->label), std::bit_cast<uint64_t>(general.value->label)) << update;
    }
  }
  EXPECT_GT(one_pass, 100000u);  // most were read by the one-pass readers, not left to the general one
}
}  // namespace
}  // namespace clipper
