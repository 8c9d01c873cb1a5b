#include "http/request_parser.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <tuple>
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

TEST(RequestParser, KeepsTheInferenceHeaderLengthPerRequestEvenWhenSplit) {
  Collected c(1024);
  const std::string raw =
      "POST /v2/models/m/infer HTTP/1.1\r\ninference-HEADER-content-length: 2\r\nContent-Length: 4\r\n\r\n{}ab"
      "POST /v2/models/m/infer HTTP/1.1\r\nInference-Header-Content-Length-X: 3\r\nContent-Length: 2\r\n\r\n{}"
      "POST /v2/models/m/infer HTTP/1.1\r\nInference-Header-Content-Length: 123456789012345678901234567890\r\n"
      "Content-Length: 2\r\n\r\n{}";
  for (char byte : raw) ASSERT_TRUE(c.parser.feed(&byte, 1));
  ASSERT_EQ(c.requests.size(), 3u);
  EXPECT_EQ(c.requests[0].inference_header_length, "2");
  EXPECT_EQ(c.requests[0].body, "{}ab");
  EXPECT_EQ(c.requests[1].inference_header_length, "");  // another header's name, and not carried over
  EXPECT_EQ(c.requests[2].inference_header_length, "123456789012345678901234");  // cut: no count fits it
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

// A chunk whose declared size takes the body over the limit is refused at its size line, before any
// of its bytes (as a Content-Length over the limit is at the headers), wherever the reads split it.
TEST(RequestParser, AChunkDeclaredOverTheLimitIsRefusedBeforeItsBytes) {
  const std::string raw = "POST /a/predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n1234\r\n7\r\n";
  for (std::size_t split = 1; split <= raw.size(); ++split) {
    Collected c(10);
    const bool fed = c.parser.feed(raw.data(), split) && c.parser.feed(raw.data() + split, raw.size() - split);
    EXPECT_FALSE(fed) << split;
    EXPECT_EQ(c.parser.failure().status, 413) << split;
  }
  Collected fits(10);  // 4 + 6: exactly the limit
  const std::string exact = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n1234\r\n6\r\n123456\r\n0\r\n\r\n";
  ASSERT_TRUE(fits.parser.feed(exact.data(), exact.size())) << fits.parser.failure().reason;
  ASSERT_EQ(fits.requests.size(), 1u);
  EXPECT_EQ(fits.requests[0].body, "1234123456");
}

// A transfer coding other than chunked before it ("gzip, chunked": llhttp refuses only a list that does
// not end with chunked) is 501: the body would otherwise reach the handler still encoded.
TEST(RequestParser, TransferCodingsOtherThanChunkedAnswer501) {
  const std::string body = "\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
  for (const std::string codings : {"Transfer-Encoding: gzip, chunked", "Transfer-Encoding: GZIP,chunked",
                                    "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
                                    "Transfer-Encoding: identity , chunked"}) {
    const std::string raw = "POST / HTTP/1.1\r\n" + codings + body;
    for (std::size_t split = 1; split <= raw.size(); ++split) {
      Collected c(1024);
      const bool fed = c.parser.feed(raw.data(), split) && c.parser.feed(raw.data() + split, raw.size() - split);
      EXPECT_FALSE(fed) << codings << " split at " << split;
      EXPECT_EQ(c.parser.failure().status, 501) << codings << " split at " << split;
      EXPECT_TRUE(c.requests.empty()) << codings;
    }
  }
  for (const std::string codings : {"Transfer-Encoding: chunked", "transfer-encoding:CHUNKED",
                                    "Transfer-Encoding: ,chunked", "Transfer-Encoding:\tchunked"}) {
    const std::string raw = "POST / HTTP/1.1\r\n" + codings + body;
    Collected c(1024);
    ASSERT_TRUE(c.parser.feed(raw.data(), raw.size())) << codings << ": " << c.parser.failure().reason;
    ASSERT_EQ(c.requests.size(), 1u) << codings;
    EXPECT_EQ(c.requests[0].body, "{}");
  }
}

TEST(RequestParser, RejectsGarbage) {
  Collected c(100);
  const std::string raw = "NOT HTTP AT ALL\r\n\r\n";
  EXPECT_FALSE(c.parser.feed(raw.data(), raw.size()));
  EXPECT_EQ(c.parser.failure().status, 400);
  // A failed parser stays failed.
  EXPECT_FALSE(c.parser.feed("GET / HTTP/1.1\r\n\r\n", 18));
}

TEST(RequestParser, AnUpgradeIsRefusedAtItsHeadersHoweverTheBytesArrive) {
  // With a body, the request once ran when it arrived in one read and was refused when it arrived in
  // several (cpp/fuzz/request_parser_fuzzer found it); now it never runs.
  const std::string raw =
      "POST /a/predict HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\n{}";
  Collected whole(100);
  EXPECT_FALSE(whole.parser.feed(raw.data(), raw.size()));
  EXPECT_EQ(whole.parser.failure().status, 400);
  EXPECT_TRUE(whole.requests.empty());
  Collected bytewise(100);
  bool ok = true;
  for (std::size_t i = 0; i < raw.size() && ok; ++i) ok = bytewise.parser.feed(&raw[i], 1);
  EXPECT_FALSE(ok);
  EXPECT_EQ(bytewise.parser.failure().status, 400);
  EXPECT_TRUE(bytewise.requests.empty());
  Collected connect(100);
  const std::string tunnel = "CONNECT example.com:443 HTTP/1.1\r\n\r\n";
  EXPECT_FALSE(connect.parser.feed(tunnel.data(), tunnel.size()));
  EXPECT_TRUE(connect.requests.empty());
}

TEST(RequestParser, Http10WithoutKeepAliveCloses) {
  Collected c(100);
  const std::string raw = "GET /healthz HTTP/1.0\r\n\r\n";
  ASSERT_TRUE(c.parser.feed(raw.data(), raw.size()));
  ASSERT_EQ(c.requests.size(), 1u);
  EXPECT_FALSE(c.requests[0].keep_alive);
}

TEST(RequestParser, TooManyHeadersAnswer431) {
  std::vector<HttpRequest> seen;
  RequestParser parser(ParserLimits{1024, 4096, 3}, [&seen](HttpRequest&& r) { seen.push_back(r); });
  const std::string raw = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
  EXPECT_FALSE(parser.feed(raw.data(), raw.size()));
  EXPECT_EQ(parser.failure().status, 431);
  EXPECT_TRUE(seen.empty());
}

TEST(RequestParser, HeadersOverTheByteLimitAnswer431EvenWhenSplit) {
  RequestParser parser(ParserLimits{1024, 300, 100}, [](HttpRequest&&) {});
  const std::string raw = "GET / HTTP/1.1\r\nX-Long: " + std::string(400, 'a') + "\r\n\r\n";
  bool ok = true;
  for (char byte : raw) {
    ok = parser.feed(&byte, 1);
    if (!ok) break;
  }
  EXPECT_FALSE(ok);
  EXPECT_EQ(parser.failure().status, 431);
}

TEST(RequestParser, ReportsItsPhaseForTheServersTimeouts) {
  RequestParser parser(1024, [](HttpRequest&&) {});
  EXPECT_EQ(parser.phase(), RequestParser::Phase::kIdle);
  const std::string head = "POST /a/predict HTTP/1.1\r\nContent-";
  ASSERT_TRUE(parser.feed(head.data(), head.size()));
  EXPECT_EQ(parser.phase(), RequestParser::Phase::kHeaders);
  const std::string rest = "Length: 4\r\n\r\nab";
  ASSERT_TRUE(parser.feed(rest.data(), rest.size()));
  EXPECT_EQ(parser.phase(), RequestParser::Phase::kBody);
  ASSERT_TRUE(parser.feed("cd", 2));
  EXPECT_EQ(parser.phase(), RequestParser::Phase::kIdle);
}

TEST(RequestParser, Expect100ContinueIsOwedOnlyWhileTheBodyIsToCome) {
  std::vector<HttpRequest> seen;
  RequestParser parser(1024, [&seen](HttpRequest&& r) { seen.push_back(r); });
  const std::string head = "POST /a/predict HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n";
  ASSERT_TRUE(parser.feed(head.data(), head.size()));
  EXPECT_TRUE(parser.take_continue());
  EXPECT_FALSE(parser.take_continue());  // once
  ASSERT_TRUE(parser.feed("{}", 2));
  ASSERT_EQ(seen.size(), 1u);
  // Headers and body in one read: the client did not wait, nothing is owed.
  const std::string whole = head + "{}";
  ASSERT_TRUE(parser.feed(whole.data(), whole.size()));
  EXPECT_FALSE(parser.take_continue());
  EXPECT_EQ(seen.size(), 2u);
}

// An HTTP/1.0 client would take an interim "100 Continue" for the answer: its expectation is ignored
// (RFC 9110, 10.1.1), and its body still read.
TEST(RequestParser, AnHttp10ClientIsOwedNo100Continue) {
  std::vector<HttpRequest> seen;
  RequestParser parser(1024, [&seen](HttpRequest&& r) { seen.push_back(r); });
  const std::string head = "POST /a/predict HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
  ASSERT_TRUE(parser.feed(head.data(), head.size()));
  EXPECT_FALSE(parser.take_continue());
  ASSERT_TRUE(parser.feed("{}", 2));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body, "{}");
}

TEST(RequestParser, UnknownExpectationAnswers417AndOversizedDeclaredBody413) {
  RequestParser odd(1024, [](HttpRequest&&) {});
  const std::string raw = "POST / HTTP/1.1\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n";
  EXPECT_FALSE(odd.feed(raw.data(), raw.size()));
  EXPECT_EQ(odd.failure().status, 417);
  RequestParser large(1024, [](HttpRequest&&) {});
  const std::string big = "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n";
  EXPECT_FALSE(large.feed(big.data(), big.size()));
  EXPECT_EQ(large.failure().status, 413);
  EXPECT_FALSE(large.take_continue());
}

TEST(RequestParser, ExpectIsKnownByItsWholeNameInAnyCaseWhereverTheReadsSplitIt) {
  // Names are compared as their pieces arrive: each head split once at every byte.
  const std::vector<std::pair<std::string, int>> cases = {
      {"eXpEcT: teapot", 417}, {"Expect: teapot", 417}, {"Expec: teapot", 0}, {"Expects: teapot", 0},
      {"XExpect: teapot", 0}, {"Host: x\r\nEXPECT: teapot", 417}, {"Expect-: teapot", 0}};
  for (const auto& [header, status] : cases) {
    const std::string head = "POST / HTTP/1.1\r\n" + header + "\r\nContent-Length: 2\r\n\r\n{}";
    for (std::size_t split = 1; split < head.size(); ++split) {
      std::vector<HttpRequest> seen;
      RequestParser parser(1024, [&seen](HttpRequest&& r) { seen.push_back(r); });
      const bool ok = parser.feed(head.data(), split) && parser.feed(head.data() + split, head.size() - split);
      if (status == 0) {
        EXPECT_TRUE(ok) << header << " split at " << split;
        EXPECT_EQ(seen.size(), 1u) << header << " split at " << split;
      } else {
        EXPECT_FALSE(ok) << header << " split at " << split;
        EXPECT_EQ(parser.failure().status, status) << header << " split at " << split;
      }
    }
  }
}

TEST(RequestParser, AStalledLargeBodyReservesAtMostOneMebibyte) {
  RequestParser parser(64 * 1024 * 1024, [](HttpRequest&&) {});
  const std::string head = "POST / HTTP/1.1\r\nContent-Length: 60000000\r\n\r\nab";
  ASSERT_TRUE(parser.feed(head.data(), head.size()));
  EXPECT_LE(parser.buffered_bytes(), 1024u * 1024u);
  parser.release();
  EXPECT_EQ(parser.buffered_bytes(), std::string().capacity());
}

TEST(RequestParser, WhiteSpaceThatNoLimitCountsStillEndsAtTheHeadLimit) {
  // llhttp skips white space before a value without a callback; the head is measured by position.
  // Limits 1024/300/3: the head may be 8192 + 300 + 8192 + 3 * 8 = 16,708 bytes.
  const std::string head =
      "GET / HTTP/1.1\r\nX:" + std::string(20000, ' ') + "v\r\n\r\n";
  for (const std::size_t read : {head.size(), std::size_t{1000}, std::size_t{1}}) {
    RequestParser parser(ParserLimits{1024, 300, 3}, [](HttpRequest&&) { FAIL() << "delivered"; });
    bool ok = true;
    for (std::size_t at = 0; at < head.size() && ok; at += read) {
      ok = parser.feed(head.data() + at, std::min(read, head.size() - at));
    }
    EXPECT_FALSE(ok) << "reads of " << read;
    EXPECT_EQ(parser.failure().status, 431) << "reads of " << read;
    EXPECT_EQ(parser.failure().reason, "request head longer than 16708 bytes");
  }
  // The same white space after the last value (no callback follows it): measured where the head ends.
  const std::string trailing = "GET / HTTP/1.1\r\nX: v" + std::string(20000, ' ') + "\r\n\r\n";
  RequestParser whole(ParserLimits{1024, 300, 3}, [](HttpRequest&&) { FAIL() << "delivered"; });
  EXPECT_FALSE(whole.feed(trailing.data(), trailing.size()));
  EXPECT_EQ(whole.failure().status, 431);
}

TEST(RequestParser, ALongTargetIsRefusedByTheLimitItCrossesFirstWhereverTheReadsEnd) {
  // "POST " and a target of 9000 bytes. Limits 1024/16/1 without layout room: the head may be 8192 + 16
  // + 8 = 8216 bytes, so the target's 8193rd byte (head byte 8198) crosses its own limit first: 414.
  // Limits 1024/0/0: the head may be 8192 bytes, crossed at head byte 8193 (target byte 8188): 431.
  const std::string request = "POST /" + std::string(8999, 'p') + " HTTP/1.1\r\n\r\n";
  for (const auto& [header_bytes, header_count, status] : {std::tuple{16, 1, 414}, std::tuple{0, 0, 431}}) {
    ParserLimits limits{1024, static_cast<std::size_t>(header_bytes), static_cast<std::size_t>(header_count)};
    limits.head_layout_bytes = 0;
    for (const std::size_t read : {request.size(), std::size_t{64}, std::size_t{7}, std::size_t{1}}) {
      RequestParser parser(limits, [](HttpRequest&&) { FAIL() << "delivered"; });
      bool ok = true;
      for (std::size_t at = 0; at < request.size() && ok; at += read) {
        ok = parser.feed(request.data() + at, std::min(read, request.size() - at));
      }
      EXPECT_FALSE(ok);
      EXPECT_EQ(parser.failure().status, status) << "reads of " << read;
    }
  }
}

TEST(RequestParser, AHeadWithinTheLimitInALongReadIsMeasuredAndDelivered) {
  // A read longer than the head limit ends each head before the limit could tell: on_headers_complete
  // pauses, the head is measured where it ends, and parsing resumes there.
  std::vector<HttpRequest> seen;
  RequestParser parser(ParserLimits{1 << 20, 300, 3}, [&seen](HttpRequest&& r) { seen.push_back(r); });
  const std::string body(40000, 'b');
  std::string stream;
  for (int i = 0; i < 3; ++i) {
    stream += "POST /r" + std::to_string(i) + " HTTP/1.1\r\nContent-Length: " + std::to_string(body.size()) +
              "\r\n\r\n" + body;
  }
  stream += "GET /last HTTP/1.1\r\n\r\n";
  ASSERT_TRUE(parser.feed(stream.data(), stream.size())) << parser.failure().reason;
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[1].target, "/r1");
  EXPECT_EQ(seen[2].body, body);
  EXPECT_EQ(seen[3].target, "/last");
  EXPECT_EQ(parser.phase(), RequestParser::Phase::kIdle);
}

TEST(RequestParser, AmbiguousLengthsAreRefusedWith400) {
  // Request smuggling's raw material: llhttp's strict defaults refuse each (no lenient flag is set).
  const std::vector<std::string> heads = {
      "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
      "POST / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: -2\r\n\r\n{}",
      "POST / HTTP/1.1\r\nContent-Length: 2x\r\n\r\n{}",
      "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n{}",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
      // llhttp's strict mode (RFC 9112): white space in or after a name, raw bytes in a target, bytes
      // after a request that closes the connection.
      "GET / HTTP/1.1\r\nContent-Length : 0\r\n\r\n",
      "GET / HTTP/1.1\r\nX : y\r\n\r\n",
      "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n",
  };
  for (const auto& head : heads) {
    std::vector<HttpRequest> seen;
    RequestParser parser(1024, [&seen](HttpRequest&& r) { seen.push_back(r); });
    EXPECT_FALSE(parser.feed(head.data(), head.size())) << head;
    EXPECT_EQ(parser.failure().status, 400) << head;
    EXPECT_EQ(parser.failure().reason.rfind("malformed HTTP request: ", 0), 0u) << parser.failure().reason;
    EXPECT_TRUE(seen.empty()) << head;
  }
}

TEST(RequestParser, BytesAfterARequestThatClosesTheConnectionAreRefused) {
  Collected c(1024);
  const std::string raw = "GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
  EXPECT_FALSE(c.parser.feed(raw.data(), raw.size()));
  EXPECT_EQ(c.parser.failure().status, 400);
  ASSERT_EQ(c.requests.size(), 1u);  // the first is delivered, and answered before the 400
  EXPECT_FALSE(c.requests[0].keep_alive);
}

TEST(RequestParser, ChunkedBodiesAreJoinedWhereverTheReadsSplitThem) {
  const std::string raw =
      "POST /a/predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"in\r\n"
      "6;ext=1\r\nput\":1\r\n1\r\n}\r\n0\r\nTrailer: x\r\n\r\nGET /next HTTP/1.0\r\n\r\n";
  for (std::size_t split = 1; split < raw.size(); ++split) {
    Collected c(1024);
    ASSERT_TRUE(c.parser.feed(raw.data(), split)) << split;
    ASSERT_TRUE(c.parser.feed(raw.data() + split, raw.size() - split)) << split;
    ASSERT_EQ(c.requests.size(), 2u) << split;
    EXPECT_EQ(c.requests[0].body, "{\"input\":1}");
    EXPECT_TRUE(c.requests[0].keep_alive);
    EXPECT_FALSE(c.requests[1].keep_alive);
  }
}

// A chunked body's trailer lines reach the header callbacks after the head: they used to be measured as
// part of the head (a trailer after a long body in the same read was refused with 431, or not, as the
// reads fell) and a trailing Inference-Header-Content-Length was appended to the head's ("2" then "9": "29").
TEST(RequestParser, TrailersNeitherCountAsTheHeadNorChangeWhatItSaid) {
  const std::string chunk(40000, 'a');
  const std::string raw =
      "POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
      "Inference-Header-Content-Length: 2\r\n\r\n9c40\r\n" + chunk +
      "\r\n0\r\nInference-Header-Content-Length: 9\r\nX-Checksum: 1\r\n\r\n";
  for (const std::size_t split : {raw.size(), std::size_t{100}, raw.size() - 30}) {
    std::vector<HttpRequest> requests;
    RequestParser parser(ParserLimits{1 << 20},
                         [&](HttpRequest&& request) { requests.push_back(std::move(request)); });
    ASSERT_TRUE(parser.feed(raw.data(), split)) << split << " " << parser.failure().reason;
    ASSERT_TRUE(parser.feed(raw.data() + split, raw.size() - split)) << split << " " << parser.failure().reason;
    ASSERT_EQ(requests.size(), 1u) << split;
    EXPECT_EQ(requests[0].body, chunk);
    EXPECT_EQ(requests[0].inference_header_length, "2") << split;
  }
}

// Trailers still count against the header limits.
TEST(RequestParser, TrailersOverTheHeaderCountAnswer431) {
  std::string raw = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n";
  for (int i = 0; i < 20; ++i) raw += "X-T: y\r\n";
  raw += "\r\n";
  std::vector<HttpRequest> requests;
  RequestParser parser(ParserLimits{1024, 16 * 1024, 10},
                       [&](HttpRequest&& request) { requests.push_back(std::move(request)); });
  EXPECT_FALSE(parser.feed(raw.data(), raw.size()));
  EXPECT_EQ(parser.failure().status, 431);
  EXPECT_TRUE(requests.empty());
}

// A header line without a name (": v") is malformed, wherever the reads split it, in the head or in a
// chunked body's trailer.
TEST(RequestParser, AHeaderWithoutANameIsRefusedWith400) {
  for (const std::string raw : {"GET / HTTP/1.1\r\n: v\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\n:\r\n\r\n",
                                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n: t\r\n\r\n"}) {
    for (std::size_t split = 1; split <= raw.size(); ++split) {
      std::vector<HttpRequest> requests;
      RequestParser parser(ParserLimits{1024},
                           [&](HttpRequest&& request) { requests.push_back(std::move(request)); });
      const bool fed = parser.feed(raw.data(), split) && parser.feed(raw.data() + split, raw.size() - split);
      EXPECT_FALSE(fed) << raw << " split at " << split;
      EXPECT_EQ(parser.failure().status, 400) << raw;
      EXPECT_TRUE(requests.empty()) << raw;
    }
  }
}

}  // namespace
}  // namespace clipper::http
