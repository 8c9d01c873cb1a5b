// HTTP/1.1 keep-alive serving on one libuv loop: accepts connections, parses requests, and writes
// answers in request order (pipelining-safe) whenever the handler completes them, now or later.
// Owns the connections of its loop and their limits (timeouts, connection caps, descriptor
// exhaustion); every method runs on that loop's thread.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "clipper_defaults.h"
#include "http/arrival_clock.h"
#include "http/request_parser.h"

namespace clipper::http {

// Identifies one answer still owed on one connection. Stale slots (connection gone) are ignored.
struct ResponseSlot {
  uint64_t connection_id = 0;
  uint64_t sequence = 0;
};

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string_view content_type = "application/json";
  std::string extra_headers;  // complete header lines, each ending in "\r\n"
};

class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // Called on the loop thread. The handler answers through HttpServer::respond, at once or later.
  virtual void on_request(HttpRequest&& request, ResponseSlot slot) = 0;
};

// Limits of one server (one I/O loop). Timeouts of 0 disable them; defaults come from
// src/clipper_native/defaults.json.
struct HttpServerOptions {
  std::size_t max_body_bytes = defaults::max_body_bytes;
  // A connection with this many answers owed stops being read until they are written.
  std::size_t max_pipelined_requests = 256;
  std::size_t max_header_bytes = defaults::max_header_bytes;  // over it: 431 and close
  std::size_t max_header_count = defaults::max_header_count;  // over it: 431 and close
  // From the first byte of a request to the end of its headers: over it, 408 and close.
  int64_t header_timeout_millis = defaults::header_timeout_millis;
  // From the end of the headers to the end of the body: over it, 408 and close.
  int64_t body_timeout_millis = defaults::body_timeout_millis;
  // A keep-alive connection with nothing owed and no request begun closes after this long; so
  // does a closing connection whose client does not read its last answer.
  int64_t idle_timeout_millis = defaults::idle_timeout_millis;
  // Beyond these, a new connection gets 503 with Retry-After and is closed.
  std::size_t max_connections = defaults::max_connections_per_io_thread;
  std::size_t max_connections_per_address = defaults::max_connections_per_client_address;
};

class HttpServer {
 public:
  HttpServer(uv_loop_t* loop, RequestHandler& handler, HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Starts accepting on an already bound and listening socket (SO_REUSEPORT lets every I/O thread
  // accept on the same port). Returns a libuv error code (0 = ok).
  int serve_socket(int listening_fd);

  void respond(ResponseSlot slot, HttpResponse response);
  // An empty string that may hold the buffer of an answer already written: a handler that builds
  // its bodies in it spares an allocation per answer (respond() keeps the last body's buffer).
  std::string take_body_buffer() {
    std::string buffer = std::move(spare_body_);
    buffer.clear();
    return buffer;
  }

  // Stops accepting and closes every connection; pending slots become stale.
  void close_all();

  std::size_t open_connections() const { return connections_.size(); }

 private:
  struct Connection;
  struct Listener;

  static void on_listener_readable(uv_poll_t* poll, int status, int events);
  static void on_sweep(uv_timer_t* timer);
  static void on_resume_accepting(uv_timer_t* timer);
  static void on_before_poll(uv_prepare_t* prepare);
  static void on_shutdown_done(uv_shutdown_t* request, int status);
  static void on_alloc(uv_handle_t* handle, std::size_t suggested, uv_buf_t* buffer);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buffer);
  static void on_write_done(uv_write_t* request, int status);
  static void on_closed(uv_handle_t* handle);

  void accept_from(Listener& listener);
  void adopt(int fd, uint32_t address);
  void pause_accepting();
  void resume_accepting();
  void sweep();
  void time_out(Connection& connection);
  void mark_progress(Connection& connection);
  void handle_request(Connection& connection, HttpRequest&& request);
  void fail_connection(Connection& connection, const ParseFailure& failure);
  void flush(Connection& connection);
  static void write_head(std::string& head, const HttpResponse& response, bool keep_alive);
  bool write_out(Connection& connection, const uv_buf_t* parts, unsigned int count);  // false: closed
  void close_connection(Connection& connection);   // at once, dropping unwritten bytes
  void finish_connection(Connection& connection);  // after what is queued has been written
  void forget(Connection& connection);             // out of the books; resumes accepting

  uv_loop_t* loop_;
  RequestHandler& handler_;
  HttpServerOptions options_;
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::deque<std::unique_ptr<Listener>> listeners_;
  uint64_t next_connection_id_ = 1;
  std::string read_buffer_;
  std::string head_scratch_;  // status line and headers of the answer being written
  std::string spare_body_;    // the buffer of a body already written, for take_body_buffer()
  std::unordered_map<uint32_t, std::size_t> connections_per_address_;
  uv_timer_t sweep_timer_;        // one timer for every connection's timeouts
  uv_timer_t resume_timer_;       // restarts accepting after descriptor exhaustion
  uv_prepare_t before_poll_;      // feeds arrival_clock_ each loop iteration
  ArrivalClock arrival_clock_;    // stamps requests with when their bytes arrived
  bool timers_started_ = false;
  bool accept_paused_ = false;
  bool closed_ = false;
};

// Creates a TCP socket bound to address:port with SO_REUSEADDR and SO_REUSEPORT, listening.
// Returns the fd, or -errno. `port` 0 binds a free port; bound_port() reads it back.
int open_listening_socket(const std::string& address, int port, int backlog);
int bound_port(int fd);

std::string_view status_text(int status);

}  // namespace clipper::http
