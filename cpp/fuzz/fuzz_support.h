// What every libFuzzer target in cpp/fuzz checks its parser's output with: a check that aborts (so
// libFuzzer keeps the input), and strict JSON and UTF-8 validators independent of the code under test.
#pragma once

#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

// A broken promise: say which, then abort so that libFuzzer saves the input that got here.
#define FUZZ_CHECK(condition) \
  ((condition) ? void(0) : (std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition), std::abort()))

namespace clipper::fuzz {

// One JSON value, UTF-8 validated, any depth (the iterative reader does not recurse).
inline bool is_strict_json(std::string_view text) {
  rapidjson::BaseReaderHandler<> sink;
  rapidjson::Reader reader;
  rapidjson::MemoryStream stream(text.data(), text.size());
  return !reader.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(stream, sink)
              .IsError();
}

inline bool is_utf8(std::string_view text) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>, rapidjson::CrtAllocator,
                    rapidjson::kWriteValidateEncodingFlag>
      writer(buffer);
  return writer.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
}

}  // namespace clipper::fuzz
