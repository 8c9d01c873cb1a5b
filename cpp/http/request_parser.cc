#include "http/request_parser.h"

#include <algorithm>
#include <climits>
#include <string_view>
#include <utility>

namespace clipper::http {

RequestParser::RequestParser(std::size_t max_body_bytes, RequestCallback on_request)
    : RequestParser(ParserLimits{max_body_bytes}, std::move(on_request)) {}

RequestParser::RequestParser(const ParserLimits& limits, RequestCallback on_request)
    : limits_(limits), on_request_(std::move(on_request)) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  http_parser_settings_init(&settings_);
  settings_.on_message_begin = &RequestParser::on_message_begin;
  settings_.on_url = &RequestParser::on_url;
  settings_.on_header_field = &RequestParser::on_header_field;
  settings_.on_header_value = &RequestParser::on_header_value;
  settings_.on_headers_complete = &RequestParser::on_headers_complete;
  settings_.on_body = &RequestParser::on_body;
  settings_.on_message_complete = &RequestParser::on_message_complete;
}

bool RequestParser::feed(const char* data, std::size_t length) {
  if (failed_) return false;
  if (phase_ == Phase::kIdle && length > 0) phase_ = Phase::kHeaders;
  const std::size_t consumed = http_parser_execute(&parser_, &settings_, data, length);
  if (failed_) return false;
  if (parser_.http_errno == HPE_HEADER_OVERFLOW) {
    fail(431, "request headers larger than the parser accepts");
    return false;
  }
  if (parser_.http_errno != HPE_OK || (consumed != length && !parser_.upgrade)) {
    failed_ = true;
    failure_ = {400, std::string("malformed HTTP request: ") +
                         http_errno_description(static_cast<http_errno>(parser_.http_errno))};
    return false;
  }
  if (parser_.upgrade) {
    failed_ = true;
    failure_ = {400, "protocol upgrades are not supported"};
    return false;
  }
  return true;
}

void RequestParser::release() {
  std::string().swap(current_.body);
  std::string().swap(current_.target);
  phase_ = Phase::kIdle;
}

int RequestParser::fail(int status, std::string reason) {
  failed_ = true;
  failure_ = {status, std::move(reason)};
  return -1;
}

int RequestParser::on_message_begin(http_parser* parser) {
  auto* self = static_cast<RequestParser*>(parser->data);
  // Reset in place: a keep-alive connection reuses its body buffer instead of allocating one per
  // request, unless the last body was large (idle connections must not pin megabytes).
  HttpRequest& request = self->current_;
  request.method = HTTP_GET;
  request.keep_alive = true;
  request.target.clear();
  request.inference_header_length.clear();
  if (request.body.capacity() > kRetainedBodyBytes) {
    std::string().swap(request.body);
  } else {
    request.body.clear();
  }
  self->phase_ = Phase::kHeaders;
  self->header_bytes_ = 0;
  self->header_count_ = 0;
  self->in_field_ = false;
  self->expect_.clear();
  self->reading_expect_ = false;
  self->reading_inference_length_ = false;
  self->continue_owed_ = false;
  return 0;
}

int RequestParser::on_url(http_parser* parser, const char* at, std::size_t length) {
  auto* self = static_cast<RequestParser*>(parser->data);
  if (self->current_.target.size() + length > 8192) {
    self->failed_ = true;
    self->failure_ = {414, "request target longer than 8192 bytes"};
    return 1;
  }
  self->current_.target.append(at, length);
  return 0;
}

bool RequestParser::fail_header_bytes() {
  fail(431, "request headers exceed the limit of " + std::to_string(limits_.max_header_bytes) +
                " bytes");
  return false;
}

namespace {

constexpr std::string_view kExpect = "expect";
constexpr std::string_view kInferenceHeaderLength = "inference-header-content-length";

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// Whether `piece`, read at `offset` into a header name, continues `lower` (lower case ASCII) there,
// without regard to case.
bool continues(std::string_view lower, std::size_t offset, const char* piece, std::size_t length) {
  if (offset > lower.size() || length > lower.size() - offset) return false;
  for (std::size_t i = 0; i < length; ++i) {
    if (ascii_lower(piece[i]) != lower[offset + i]) return false;
  }
  return true;
}

}  // namespace

int RequestParser::on_header_field(http_parser* parser, const char* at, std::size_t length) {
  auto* self = static_cast<RequestParser*>(parser->data);
  if (!self->in_field_) {
    self->in_field_ = true;
    self->field_length_ = 0;
    self->field_may_be_expect_ = true;
    self->field_may_be_inference_length_ = true;
    if (++self->header_count_ > self->limits_.max_header_count) {
      return self->fail(431, "more than " + std::to_string(self->limits_.max_header_count) +
                                 " request headers");
    }
  }
  if (!self->count_header_bytes(length)) return -1;
  // Only the names Expect and Inference-Header-Content-Length matter: most names differ from both in
  // their length or first byte.
  self->field_may_be_expect_ =
      self->field_may_be_expect_ && continues(kExpect, self->field_length_, at, length);
  self->field_may_be_inference_length_ =
      self->field_may_be_inference_length_ &&
      continues(kInferenceHeaderLength, self->field_length_, at, length);
  self->field_length_ += length;
  return 0;
}

int RequestParser::on_header_value(http_parser* parser, const char* at, std::size_t length) {
  auto* self = static_cast<RequestParser*>(parser->data);
  if (self->in_field_) {
    self->in_field_ = false;
    self->reading_expect_ = self->field_may_be_expect_ && self->field_length_ == kExpect.size();
    self->reading_inference_length_ =
        self->field_may_be_inference_length_ && self->field_length_ == kInferenceHeaderLength.size();
  }
  if (!self->count_header_bytes(length)) return -1;
  if (self->reading_expect_) {
    for (std::size_t i = 0; i < length && self->expect_.size() < 64; ++i) {
      self->expect_ += ascii_lower(at[i]);
    }
  }
  if (self->reading_inference_length_) {
    // A byte count: 24 characters hold any; a longer value is kept cut, and refused as a count.
    std::string& value = self->current_.inference_header_length;
    value.append(at, std::min<std::size_t>(length, 24 - std::min<std::size_t>(value.size(), 24)));
  }
  return 0;
}

int RequestParser::on_headers_complete(http_parser* parser) {
  auto* self = static_cast<RequestParser*>(parser->data);
  // Refused here, before any body: http_parser reports an upgrade once the message is complete, so
  // checking only after a read let an upgrade request with a body run when it arrived in one read
  // (found by cpp/fuzz/request_parser_fuzzer).
  if (parser->upgrade) return self->fail(400, "protocol upgrades are not supported");
  // content_length is ULLONG_MAX when absent (chunked bodies are checked as they arrive).
  if (parser->content_length != ULLONG_MAX && parser->content_length > self->limits_.max_body_bytes) {
    self->failed_ = true;
    self->failure_ = {413, "request body of " + std::to_string(parser->content_length) +
                               " bytes exceeds the limit of " +
                               std::to_string(self->limits_.max_body_bytes) + " bytes"};
    return -1;  // 1 and 2 mean "no body" to http_parser; anything else aborts
  }
  if (!self->expect_.empty()) {
    if (self->expect_ != "100-continue") {
      return self->fail(417, "unsupported Expect header (only 100-continue is understood)");
    }
    const bool body_follows = (parser->flags & F_CHUNKED) != 0 ||
                              (parser->content_length != ULLONG_MAX && parser->content_length > 0);
    self->continue_owed_ = body_follows;
  }
  // Reserve what was declared, but not more than kMaxReserveBytes ahead of the bytes themselves:
  // a client that declares megabytes and stalls must not pin them.
  if (parser->content_length != ULLONG_MAX) {
    self->current_.body.reserve(std::min<std::size_t>(parser->content_length, kMaxReserveBytes));
  }
  self->current_.method = static_cast<http_method>(parser->method);
  self->phase_ = Phase::kBody;
  return 0;
}

int RequestParser::on_body(http_parser* parser, const char* at, std::size_t length) {
  auto* self = static_cast<RequestParser*>(parser->data);
  if (self->current_.body.size() + length > self->limits_.max_body_bytes) {
    self->failed_ = true;
    self->failure_ = {413, "request body exceeds the limit of " +
                               std::to_string(self->limits_.max_body_bytes) + " bytes"};
    return 1;
  }
  self->current_.body.append(at, length);
  return 0;
}

int RequestParser::on_message_complete(http_parser* parser) {
  auto* self = static_cast<RequestParser*>(parser->data);
  self->current_.keep_alive = http_should_keep_alive(parser) != 0;
  self->phase_ = Phase::kIdle;
  self->continue_owed_ = false;
  self->on_request_(std::move(self->current_));
  return 0;
}

}  // namespace clipper::http
