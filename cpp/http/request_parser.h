// Incremental HTTP/1.1 request parsing for one connection, on top of Node's http_parser.
// Owns the per-connection parser state and the request being assembled; runs on its I/O thread.
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace clipper::http {

struct HttpRequest {
  http_method method = HTTP_GET;
  std::string target;  // path and query as sent
  std::string body;
  bool keep_alive = true;
};

// Why parsing stopped; the connection answers with `status` and then closes.
struct ParseFailure {
  int status = 400;
  std::string reason;
};

class RequestParser {
 public:
  using RequestCallback = std::function<void(HttpRequest&&)>;

  RequestParser(std::size_t max_body_bytes, RequestCallback on_request);
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Feeds received bytes; complete requests are delivered through the callback, in order. The
  // request handed over is the parser's own, reset for the next one: move out what must outlive the call.
  // Returns false once the stream is unusable; failure() then says how to answer.
  bool feed(const char* data, std::size_t length);

  const ParseFailure& failure() const { return failure_; }

 private:
  static int on_message_begin(http_parser* parser);
  static int on_url(http_parser* parser, const char* at, std::size_t length);
  static int on_headers_complete(http_parser* parser);
  static int on_body(http_parser* parser, const char* at, std::size_t length);
  static int on_message_complete(http_parser* parser);

  static constexpr std::size_t kRetainedBodyBytes = 64 * 1024;  // body buffer kept between requests

  http_parser parser_;
  http_parser_settings settings_;
  std::size_t max_body_bytes_;
  RequestCallback on_request_;
  HttpRequest current_;
  ParseFailure failure_;
  bool failed_ = false;
};

}  // namespace clipper::http
