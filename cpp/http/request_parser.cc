#include "http/request_parser.h"

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <utility>

namespace clipper::http {

namespace {

// Room in a head for what no limit counts (method, version, separators, white space), per allowed header
// line beyond ParserLimits::head_layout_bytes: llhttp skips white space around values without a
// callback, so without a limit a client could send it unbounded.
constexpr std::int64_t kLayoutBytesPerHeader = 8;

}  // namespace

RequestParser::RequestParser(std::size_t max_body_bytes, RequestCallback on_request)
    : RequestParser(ParserLimits{max_body_bytes}, std::move(on_request)) {}

RequestParser::RequestParser(const ParserLimits& limits, RequestCallback on_request)
    : limits_(limits),
      max_head_bytes_(static_cast<std::int64_t>(kMaxTargetBytes + limits.max_header_bytes +
                                                limits.head_layout_bytes) +
                      kLayoutBytesPerHeader * static_cast<std::int64_t>(limits.max_header_count)),
      on_request_(std::move(on_request)) {
  llhttp_init(&parser_, HTTP_REQUEST, &settings());
  parser_.data = this;
}

const llhttp_settings_t& RequestParser::settings() {
  // llhttp keeps a pointer to its settings: one set, for every parser, for the life of the process.
  static const llhttp_settings_t shared = [] {
    llhttp_settings_t settings;
    llhttp_settings_init(&settings);
    settings.on_message_begin = &RequestParser::on_message_begin;
    settings.on_method = &RequestParser::on_method;
    settings.on_url = &RequestParser::on_url;
    settings.on_header_field = &RequestParser::on_header_field;
    settings.on_header_value = &RequestParser::on_header_value;
    settings.on_headers_complete = &RequestParser::on_headers_complete;
    settings.on_chunk_header = &RequestParser::on_chunk_header;
    settings.on_body = &RequestParser::on_body;
    settings.on_message_complete = &RequestParser::on_message_complete;
    return settings;
  }();
  return shared;
}

bool RequestParser::feed(const char* data, std::size_t length) {
  if (failed_) return false;
  if (phase_ == Phase::kIdle && length > 0) phase_ = Phase::kHeaders;
  read_begin_ = data;
  read_end_ = data + length;
  llhttp_errno_t error = llhttp_execute(&parser_, data, length);
  // on_headers_complete paused to have the head measured where it ends (llhttp's error position):
  // measured and finished here, then parsing resumes there.
  while (error == HPE_PAUSED && head_check_owed_ && !failed_) {
    head_check_owed_ = false;
    const char* at = llhttp_get_error_pos(&parser_);
    if (!check_head_bytes(at) || finish_headers() != 0) break;
    llhttp_resume(&parser_);
    error = llhttp_execute(&parser_, at, static_cast<std::size_t>(read_end_ - at));
  }
  if (failed_) return false;
  if (error == HPE_PAUSED_UPGRADE) {  // refused at the headers already; here in case llhttp gets there
    fail(400, "protocol upgrades are not supported");
    return false;
  }
  if (error != HPE_OK) {
    const char* reason = llhttp_get_error_reason(&parser_);
    fail(400, std::string("malformed HTTP request: ") +
                  (reason != nullptr ? reason : llhttp_errno_name(error)));
    return false;
  }
  // A head still incomplete is measured to the end of the read, and carried over to the next.
  if (phase_ == Phase::kHeaders && head_started_) {
    head_carried_ = head_bytes_at(read_end_);
    if (head_carried_ > max_head_bytes_) return fail_head_bytes();
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
  return HPE_USER;  // any callback: stop with an error
}

int RequestParser::on_message_begin(llhttp_t* parser) {
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
  self->transfer_codings_.clear();
  self->reading_transfer_encoding_ = false;
  self->reading_inference_length_ = false;
  self->continue_owed_ = false;
  self->head_started_ = false;
  self->head_check_owed_ = false;
  return 0;
}

int RequestParser::on_method(llhttp_t* parser, const char* at, std::size_t length) {
  auto* self = static_cast<RequestParser*>(parser->data);
  if (!self->head_started_) {  // the head's first byte
    self->head_started_ = true;
    self->head_carried_ = -(at - self->read_begin_);
  }
  return 0;
}

int RequestParser::on_url(llhttp_t* parser, const char* at, std::size_t length) {
  auto* self = static_cast<RequestParser*>(parser->data);
  // Two limits can be crossed within a target: its own (414) and the head's (431). The one crossed at
  // the earlier byte answers, so that where the reads cut the target does not change the answer (found
  // by cpp/fuzz/request_parser_fuzzer: a long target was 431 in one read and 414 in many).
  const std::size_t target = self->current_.target.size();
  const std::int64_t head_end = self->head_bytes_at(at + length);
  const bool target_over = target + length > kMaxTargetBytes;
  const bool head_over = self->head_started_ && head_end > self->max_head_bytes_;
  if (target_over || head_over) {
    // Offsets in this piece of the first byte beyond each limit.
    const std::int64_t target_at =
        target_over ? static_cast<std::int64_t>(kMaxTargetBytes - target) : INT64_MAX;
    const std::int64_t head_at =
        head_over ? self->max_head_bytes_ - (head_end - static_cast<std::int64_t>(length)) : INT64_MAX;
    if (target_at <= head_at) {
      return self->fail(414, "request target longer than " + std::to_string(kMaxTargetBytes) + " bytes");
    }
    self->fail_head_bytes();
    return HPE_USER;
  }
  self->current_.target.append(at, length);
  return 0;
}

bool RequestParser::fail_head_bytes() {
  fail(431, "request head longer than " + std::to_string(max_head_bytes_) + " bytes");
  return false;
}

bool RequestParser::fail_header_bytes() {
  fail(431, "request headers exceed the limit of " + std::to_string(limits_.max_header_bytes) +
                " bytes");
  return false;
}

namespace {

constexpr std::string_view kExpect = "expect";
constexpr std::string_view kInferenceHeaderLength = "inference-header-content-length";
constexpr std::string_view kTransferEncoding = "transfer-encoding";
constexpr std::size_t kMaxCodingsBytes = 64;  // longer Transfer-Encoding values are refused

// Whether every coding in `codings` (a comma-separated list, lower case) is "chunked": llhttp already
// refuses a list whose last coding is not chunked, but not one with others before it ("gzip, chunked"),
// whose body would reach the handler still encoded.
bool only_chunked(std::string_view codings) {
  while (!codings.empty()) {
    const std::size_t comma = codings.find(',');
    std::string_view coding = codings.substr(0, comma);
    while (!coding.empty() && (coding.front() == ' ' || coding.front() == '\t')) coding.remove_prefix(1);
    while (!coding.empty() && (coding.back() == ' ' || coding.back() == '\t')) coding.remove_suffix(1);
    if (!coding.empty() && coding != "chunked") return false;
    if (comma == std::string_view::npos) break;
    codings.remove_prefix(comma + 1);
  }
  return true;
}

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

int RequestParser::on_header_field(llhttp_t* parser, const char* at, std::size_t length) {
  auto* self = static_cast<RequestParser*>(parser->data);
  // A chunked body's trailer lines come through here too, after the head: they count against the
  // header limits, but the head's measure (by position) no longer applies to them.
  if (self->phase_ != Phase::kBody && !self->check_head_bytes(at + length)) return HPE_USER;
  if (!self->in_field_) {
    self->in_field_ = true;
    self->field_length_ = 0;
    self->field_may_be_expect_ = true;
    self->field_may_be_transfer_encoding_ = true;
    self->field_may_be_inference_length_ = true;
    if (++self->header_count_ > self->limits_.max_header_count) {
      return self->fail(431, "more than " + std::to_string(self->limits_.max_header_count) +
                                 " request headers");
    }
  }
  if (!self->count_header_bytes(length)) return HPE_USER;
  // Only the names Expect and Inference-Header-Content-Length matter: most names differ from both in
  // their length or first byte.
  self->field_may_be_expect_ =
      self->field_may_be_expect_ && continues(kExpect, self->field_length_, at, length);
  self->field_may_be_transfer_encoding_ =
      self->field_may_be_transfer_encoding_ && continues(kTransferEncoding, self->field_length_, at, length);
  self->field_may_be_inference_length_ =
      self->field_may_be_inference_length_ &&
      continues(kInferenceHeaderLength, self->field_length_, at, length);
  self->field_length_ += length;
  return 0;
}

int RequestParser::on_header_value(llhttp_t* parser, const char* at, std::size_t length) {
  auto* self = static_cast<RequestParser*>(parser->data);
  const bool trailer = self->phase_ == Phase::kBody;
  if (!trailer && !self->check_head_bytes(at + length)) return HPE_USER;
  if (self->in_field_) {
    self->in_field_ = false;
    // llhttp (8.1, strict) takes a line that starts with its colon as a header with an empty name; a
    // name is a token of one byte or more (RFC 9110, 5.1), and http_parser refused it.
    if (self->field_length_ == 0) return self->fail(400, "malformed HTTP request: empty header name");
    // A trailer never changes what the head said (the body is already framed and read by it).
    self->reading_expect_ = !trailer && self->field_may_be_expect_ && self->field_length_ == kExpect.size();
    self->reading_inference_length_ = !trailer && self->field_may_be_inference_length_ &&
                                      self->field_length_ == kInferenceHeaderLength.size();
    self->reading_transfer_encoding_ = !trailer && self->field_may_be_transfer_encoding_ &&
                                       self->field_length_ == kTransferEncoding.size();
    // Each Transfer-Encoding line adds to the list.
    if (self->reading_transfer_encoding_ && !self->transfer_codings_.empty()) self->transfer_codings_ += ',';
  }
  if (!self->count_header_bytes(length)) return HPE_USER;
  if (self->reading_transfer_encoding_) {
    for (std::size_t i = 0; i < length && self->transfer_codings_.size() <= kMaxCodingsBytes; ++i) {
      self->transfer_codings_ += ascii_lower(at[i]);
    }
  }
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

int RequestParser::on_headers_complete(llhttp_t* parser) {
  auto* self = static_cast<RequestParser*>(parser->data);
  // The head ends within this read. Only when the read's end is past the limit can the head be, and
  // then its end is needed: llhttp tells it when paused (feed() measures, finishes and resumes).
  if (self->head_started_ && self->head_bytes_at(self->read_end_) > self->max_head_bytes_) {
    self->head_check_owed_ = true;
    return HPE_PAUSED;
  }
  return self->finish_headers();
}

int RequestParser::finish_headers() {
  // Refused here, before any body: an upgrade request with a body must never run, however its bytes
  // arrive (cpp/fuzz/request_parser_fuzzer found that it once did when it arrived in one read).
  if (parser_.upgrade) return fail(400, "protocol upgrades are not supported");
  // (Codings that do not end with chunked: llhttp refuses them with 400 after this callback.)
  if ((parser_.flags & F_CHUNKED) != 0 &&
      (transfer_codings_.size() > kMaxCodingsBytes || !only_chunked(transfer_codings_))) {
    return fail(501, "unsupported Transfer-Encoding (only chunked is understood)");
  }
  // Chunked bodies are checked as they arrive.
  const bool has_length = (parser_.flags & F_CONTENT_LENGTH) != 0;
  if (has_length && parser_.content_length > limits_.max_body_bytes) {
    return fail(413, "request body of " + std::to_string(parser_.content_length) +
                         " bytes exceeds the limit of " + std::to_string(limits_.max_body_bytes) + " bytes");
  }
  if (!expect_.empty()) {
    if (expect_ != "100-continue") {
      return fail(417, "unsupported Expect header (only 100-continue is understood)");
    }
    // An HTTP/1.0 client knows no interim answers (it would take "100 Continue" for the answer): its
    // expectation is ignored (RFC 9110, 10.1.1).
    const bool interim_answers = parser_.http_major > 1 || (parser_.http_major == 1 && parser_.http_minor >= 1);
    continue_owed_ = interim_answers &&
                     ((parser_.flags & F_CHUNKED) != 0 || (has_length && parser_.content_length > 0));
  }
  // Reserve what was declared, but not more than kMaxReserveBytes ahead of the bytes themselves:
  // a client that declares megabytes and stalls must not pin them.
  if (has_length) {
    current_.body.reserve(std::min<std::size_t>(parser_.content_length, kMaxReserveBytes));
  }
  current_.method = static_cast<llhttp_method_t>(parser_.method);
  phase_ = Phase::kBody;
  return 0;
}

int RequestParser::on_chunk_header(llhttp_t* parser) {
  auto* self = static_cast<RequestParser*>(parser->data);
  // A chunk's declared size (llhttp's content_length here) that would take the body over the limit
  // is refused before its bytes come, as a declared Content-Length is at the headers.
  const std::size_t limit = self->limits_.max_body_bytes;
  if (parser->content_length > limit - std::min(limit, self->current_.body.size())) {
    return self->fail(413, "request body exceeds the limit of " + std::to_string(limit) + " bytes");
  }
  return 0;
}

int RequestParser::on_body(llhttp_t* parser, const char* at, std::size_t length) {
  auto* self = static_cast<RequestParser*>(parser->data);
  if (self->current_.body.size() + length > self->limits_.max_body_bytes) {
    return self->fail(413, "request body exceeds the limit of " +
                               std::to_string(self->limits_.max_body_bytes) + " bytes");
  }
  self->current_.body.append(at, length);
  return 0;
}

int RequestParser::on_message_complete(llhttp_t* parser) {
  auto* self = static_cast<RequestParser*>(parser->data);
  self->current_.keep_alive = llhttp_should_keep_alive(parser) != 0;
  self->phase_ = Phase::kIdle;
  self->head_started_ = false;
  self->continue_owed_ = false;
  self->on_request_(std::move(self->current_));
  return 0;
}

}  // namespace clipper::http
