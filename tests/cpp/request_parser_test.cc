#include "http/request_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace clipper::http {
namespace {

struct Collected {
  std::vector<HttpRequest> requests;
  RequestParser parser;
  explicit Collected(std::size_t max_body)
      : parser(max_body, [this](HttpRequest&& request) { requests.push_back(std::move(request)); }) {}
};

TEST(RequestParser, ParsesAPostWithBody) {
  Collected c(1024);
  const std::string raw =
      "POST /app/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n{\"input\":[1]}";
  ASSERT_TRUE(c.parser.feed(raw.data(), raw.size()));
  ASSERT_EQ(c.requests.size(), 1u);
  EXPECT_EQ(c.requests[0].method, HTTP_POST);
  EXPECT_EQ(c.requests[0].target, "/app/predict");
  EXPECT_EQ(c.requests[0].body, "{\"input\":[1]}");
  EXPECT_TRUE(c.requests[0].keep_alive);
}

TEST(RequestParser, HandlesPipelinedRequestsSplitAcrossReads) {
  Collected c(1024);
  const std::string raw =
      "GET /healthz HTTP/1.1\r\n\r\nPOST /a/update HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
      "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n";
  for (char byte : raw) ASSERT_TRUE(c.parser.feed(&byte, 1));
  ASSERT_EQ(c.requests.size(), 3u);
  EXPECT_EQ(c.requests[0].target, "/healthz");
  EXPECT_EQ(c.requests[1].body, "{}");
  EXPECT_EQ(c.requests[2].target, "/metrics");
  EXPECT_FALSE(c.requests[2].keep_alive);
}

TEST(RequestParser, ReusesItsRequestWithoutMixingBodiesOrTargets) {
  // A handler that copies instead of moving sees the parser's reused request each time.
  std::vector<HttpRequest> seen;
  RequestParser parser(1 << 20, [&seen](HttpRequest&& request) { seen.push_back(request); });
  const std::string large(100 * 1024, 'L');
  const std::string raw =
      "POST /long/target/path HTTP/1.1\r\nContent-Length: 6\r\n\r\nabcdef"
      "POST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nxy"
      "POST /c HTTP/1.1\r\nContent-Length: " + std::to_string(large.size()) + "\r\n\r\n" + large +
      "GET /d HTTP/1.1\r\n\r\n";
  ASSERT_TRUE(parser.feed(raw.data(), raw.size()));
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0].body, "abcdef");
  EXPECT_EQ(seen[1].target, "/b");
  EXPECT_EQ(seen[1].body, "xy");
  EXPECT_EQ(seen[2].body, large);
  EXPECT_EQ(seen[3].method, HTTP_GET);
  EXPECT_EQ(seen[3].target, "/d");
  EXPECT_TRUE(seen[3].body.empty());
}

TEST(RequestParser, RejectsBodiesOverTheLimitFromContentLength) {
  Collected c(100);
  const std::string raw = "POST /a/predict HTTP/1.1\r\nContent-Length: 101\r\n\r\n";
  EXPECT_FALSE(c.parser.feed(raw.data(), raw.size()));
  EXPECT_EQ(c.parser.failure().status, 413);
  EXPECT_TRUE(c.requests.empty());
}

TEST(RequestParser, RejectsChunkedBodiesOverTheLimit) {
  Collected c(10);
  const std::string raw =
      "POST /a/predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n";
  EXPECT_FALSE(c.parser.feed(raw.data(), raw.size()));
  EXPECT_EQ(c.parser.failure().status, 413);
}

TEST(RequestParser, RejectsGarbage) {
  Collected c(100);
  const std::string raw = "NOT HTTP AT ALL\r\n\r\n";
  EXPECT_FALSE(c.parser.feed(raw.data(), raw.size()));
  EXPECT_EQ(c.parser.failure().status, 400);
  // A failed parser stays failed.
  EXPECT_FALSE(c.parser.feed("GET / HTTP/1.1\r\n\r\n", 18));
}

TEST(RequestParser, Http10WithoutKeepAliveCloses) {
  Collected c(100);
  const std::string raw = "GET /healthz HTTP/1.0\r\n\r\n";
  ASSERT_TRUE(c.parser.feed(raw.data(), raw.size()));
  ASSERT_EQ(c.requests.size(), 1u);
  EXPECT_FALSE(c.requests[0].keep_alive);
}

}  // namespace
}  // namespace clipper::http
