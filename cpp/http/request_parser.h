// Incremental HTTP/1.1 request parsing for one connection, on top of llhttp (Node's parser, built from
// Debian's node-llhttp sources; strict: none of its lenient flags is set).
// Owns the per-connection parser state, the request being assembled and the header limits;
// runs on its I/O thread.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "common/clock.h"

namespace clipper::http {

struct HttpRequest {
  llhttp_method_t method = HTTP_GET;
  std::string target;  // path and query as sent
  std::string body;
  bool keep_alive = true;
  // The Open Inference Protocol's Inference-Header-Content-Length, as sent (empty when absent): where
  // the JSON ends and binary tensor data begins in `body`.
  std::string inference_header_length;
  // When its last bytes reached the frontend (the server's ArrivalClock; empty if not stamped): from
  // then on it waited for the server, not for its client.
  Clock::time_point arrived{};
};

// Why parsing stopped; the connection answers with `status` and then closes.
struct ParseFailure {
  int status = 400;
  std::string reason;
};

struct ParserLimits {
  std::size_t max_body_bytes = 8 * 1024 * 1024;   // larger bodies: 413
  std::size_t max_header_bytes = 16 * 1024;       // names and values of all header lines: over it 431
  std::size_t max_header_count = 100;             // header lines: over it 431
  // The whole head may be longer than its target (8192) and header bytes by this much, plus 8 bytes
  // per allowed header line, for what no limit counts (method, version, separators, white space):
  // over it 431. A tunable only so that the fuzzer reaches it with short inputs.
  std::size_t head_layout_bytes = 8192;
};

class RequestParser {
 public:
  using RequestCallback = std::function<void(HttpRequest&&)>;
  // Where the request being read stands: the server's timeouts depend on it.
  enum class Phase { kIdle, kHeaders, kBody };

  RequestParser(std::size_t max_body_bytes, RequestCallback on_request);
  RequestParser(const ParserLimits& limits, RequestCallback on_request);
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Feeds received bytes; complete requests are delivered through the callback, in order. The
  // request handed over is the parser's own, reset for the next one: move out what must outlive the call.
  // Returns false once the stream is unusable; failure() then says how to answer.
  bool feed(const char* data, std::size_t length);

  const ParseFailure& failure() const { return failure_; }
  Phase phase() const { return phase_; }
  // True once per request that sent `Expect: 100-continue` and whose body is still to come: the
  // server answers `100 Continue` so the client sends it.
  bool take_continue() {
    const bool owed = continue_owed_;
    continue_owed_ = false;
    return owed;
  }
  std::size_t buffered_bytes() const { return current_.body.capacity(); }
  // Drops the request being assembled and its buffers (the connection is gone).
  void release();

 private:
  static int on_message_begin(llhttp_t* parser);
  static int on_method(llhttp_t* parser, const char* at, std::size_t length);
  static int on_url(llhttp_t* parser, const char* at, std::size_t length);
  static int on_header_field(llhttp_t* parser, const char* at, std::size_t length);
  static int on_header_value(llhttp_t* parser, const char* at, std::size_t length);
  static int on_headers_complete(llhttp_t* parser);
  static int on_chunk_header(llhttp_t* parser);
  static int on_body(llhttp_t* parser, const char* at, std::size_t length);
  static int on_message_complete(llhttp_t* parser);
  static const llhttp_settings_t& settings();
  bool count_header_bytes(std::size_t length) {
    header_bytes_ += length;
    return header_bytes_ <= limits_.max_header_bytes || fail_header_bytes();
  }
  bool fail_header_bytes();
  // The head's bytes from its first (the method's) up to `end`, a position in the read being parsed.
  std::int64_t head_bytes_at(const char* end) const { return head_carried_ + (end - read_begin_); }
  // False (and the parser failed with 431) once the head up to `end` is longer than max_head_bytes_.
  bool check_head_bytes(const char* end) {
    return !head_started_ || head_bytes_at(end) <= max_head_bytes_ || fail_head_bytes();
  }
  bool fail_head_bytes();
  // What on_headers_complete decides (limits, upgrade, Expect); 0 or -1 as llhttp's callbacks return.
  int finish_headers();
  int fail(int status, std::string reason);

  static constexpr std::size_t kRetainedBodyBytes = 64 * 1024;  // body buffer kept between requests
  static constexpr std::size_t kMaxReserveBytes = 1024 * 1024;  // declared lengths reserve at most this
  static constexpr std::size_t kMaxTargetBytes = 8192;           // longer request targets: 414

  llhttp_t parser_;
  ParserLimits limits_;
  // The whole head (request line, header lines, separators, white space) may be this long: the counted
  // parts' limits plus room for their layout. llhttp keeps no such limit of its own, and white space it
  // skips reaches no callback, so the head is measured by position.
  std::int64_t max_head_bytes_;
  const char* read_begin_ = nullptr;  // the read being parsed
  const char* read_end_ = nullptr;
  bool head_started_ = false;         // the head's first byte (the method's) has been seen
  std::int64_t head_carried_ = 0;     // the head's bytes before read_begin_ (negative: it began after it)
  bool head_check_owed_ = false;      // headers complete, paused to measure the head before finishing
  RequestCallback on_request_;
  HttpRequest current_;
  ParseFailure failure_;
  bool failed_ = false;
  Phase phase_ = Phase::kIdle;
  // Header bookkeeping for the request being read.
  std::size_t header_bytes_ = 0;
  std::size_t header_count_ = 0;
  bool in_field_ = false;           // the last header callback was a name
  // The name being read, which may arrive in pieces: its length so far, and whether it can still be
  // Expect or Inference-Header-Content-Length (compared as it arrives: no copy of any name is kept).
  std::size_t field_length_ = 0;
  bool field_may_be_expect_ = false;
  bool field_may_be_inference_length_ = false;
  std::string expect_;              // value of Expect, if sent
  bool reading_expect_ = false;
  bool field_may_be_transfer_encoding_ = false;
  // Transfer-Encoding's values, lower case, joined by commas (at most kMaxCodingsBytes kept).
  std::string transfer_codings_;
  bool reading_transfer_encoding_ = false;
  bool reading_inference_length_ = false;  // the value of Inference-Header-Content-Length
  bool continue_owed_ = false;
};

}  // namespace clipper::http
