#include "http/request_parser.h"

#include <climits>
#include <utility>

namespace clipper::http {

RequestParser::RequestParser(std::size_t max_body_bytes, RequestCallback on_request)
    : max_body_bytes_(max_body_bytes), on_request_(std::move(on_request)) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  http_parser_settings_init(&settings_);
  settings_.on_message_begin = &RequestParser::on_message_begin;
  settings_.on_url = &RequestParser::on_url;
  settings_.on_headers_complete = &RequestParser::on_headers_complete;
  settings_.on_body = &RequestParser::on_body;
  settings_.on_message_complete = &RequestParser::on_message_complete;
}

bool RequestParser::feed(const char* data, std::size_t length) {
  if (failed_) return false;
  const std::size_t consumed = http_parser_execute(&parser_, &settings_, data, length);
  if (failed_) return false;
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

int RequestParser::on_message_begin(http_parser* parser) {
  auto* self = static_cast<RequestParser*>(parser->data);
  // Reset in place: a keep-alive connection reuses its body buffer instead of allocating one per
  // request, unless the last body was large (idle connections must not pin megabytes).
  HttpRequest& request = self->current_;
  request.method = HTTP_GET;
  request.keep_alive = true;
  request.target.clear();
  if (request.body.capacity() > kRetainedBodyBytes) {
    std::string().swap(request.body);
  } else {
    request.body.clear();
  }
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

int RequestParser::on_headers_complete(http_parser* parser) {
  auto* self = static_cast<RequestParser*>(parser->data);
  // content_length is ULLONG_MAX when absent (chunked bodies are checked as they arrive).
  if (parser->content_length != ULLONG_MAX && parser->content_length > self->max_body_bytes_) {
    self->failed_ = true;
    self->failure_ = {413, "request body of " + std::to_string(parser->content_length) +
                               " bytes exceeds the limit of " +
                               std::to_string(self->max_body_bytes_) + " bytes"};
    return -1;  // 1 and 2 mean "no body" to http_parser; anything else aborts
  }
  if (parser->content_length != ULLONG_MAX) self->current_.body.reserve(parser->content_length);
  self->current_.method = static_cast<http_method>(parser->method);
  return 0;
}

int RequestParser::on_body(http_parser* parser, const char* at, std::size_t length) {
  auto* self = static_cast<RequestParser*>(parser->data);
  if (self->current_.body.size() + length > self->max_body_bytes_) {
    self->failed_ = true;
    self->failure_ = {413, "request body exceeds the limit of " +
                               std::to_string(self->max_body_bytes_) + " bytes"};
    return 1;
  }
  self->current_.body.append(at, length);
  return 0;
}

int RequestParser::on_message_complete(http_parser* parser) {
  auto* self = static_cast<RequestParser*>(parser->data);
  self->current_.keep_alive = http_should_keep_alive(parser) != 0;
  self->on_request_(std::move(self->current_));
  return 0;
}

}  // namespace clipper::http
