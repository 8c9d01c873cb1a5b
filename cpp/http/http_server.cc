#include "http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcntl.h>
#include <malloc.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>
#include <vector>

namespace clipper::http {

// The listening socket is polled, not a uv_tcp_t: accepting stays in our hands, so descriptor
// exhaustion pauses it instead of spinning in accept4().
struct HttpServer::Listener {
  uv_poll_t poll;
  int fd = -1;
  HttpServer* server = nullptr;
  bool polling = false;
};

struct HttpServer::Connection {
  struct Owed {
    bool ready = false;
    bool keep_alive = true;
    std::string bytes;
  };

  uv_tcp_t handle;
  HttpServer* server = nullptr;
  uint64_t id = 0;
  std::unique_ptr<RequestParser> parser;
  std::deque<Owed> owed;        // answers in request order; front has sequence `first_sequence`
  uint64_t first_sequence = 0;
  uint64_t next_sequence = 0;
  bool reading = true;
  bool closing = false;         // close once everything owed has been written
  bool draining = false;        // shutdown requested: the last bytes are being written
  uint32_t address = 0;         // client IPv4 address, network order
  RequestParser::Phase phase = RequestParser::Phase::kIdle;
  uint64_t phase_since_millis = 0;  // loop time the current phase (or idleness) began
  ArrivalClock::Stamp accepted;       // the connection's arrival
  Clock::time_point read_arrived{};   // arrival of the bytes being parsed now
  uv_shutdown_t shutdown;
};

namespace {

struct WriteRequest {
  uv_write_t request;
  std::string bytes;
};

}  // namespace

std::string_view status_text(int status) {
  switch (status) {
    case 200: return "OK";
    case 100: return "Continue";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 408: return "Request Timeout";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

HttpServer::HttpServer(uv_loop_t* loop, RequestHandler& handler, HttpServerOptions options)
    : loop_(loop), handler_(handler), options_(options) {
  read_buffer_.resize(64 * 1024);
}

HttpServer::~HttpServer() = default;

namespace {

constexpr uint64_t kPauseAfterExhaustionMillis = 100;  // at most; a closed connection resumes sooner
constexpr int kAcceptsPerWakeup = 128;                 // the loop serves others between bursts
constexpr std::size_t kTrimAboveBytes = 1024 * 1024;   // a closed connection held this much: trim

constexpr std::string_view kOverCapacity =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    "Connection: close\r\nContent-Length: 73\r\n\r\n"
    "{\"error\":\"Service unavailable\",\"cause\":\"too many connections, retry later\"}";

uint64_t sweep_interval_millis(const HttpServerOptions& options) {
  uint64_t shortest = 1000;
  for (int64_t timeout : {options.header_timeout_millis, options.body_timeout_millis,
                          options.idle_timeout_millis}) {
    if (timeout > 0) shortest = std::min<uint64_t>(shortest, static_cast<uint64_t>(timeout) / 4);
  }
  return std::max<uint64_t>(shortest, 10);
}

}  // namespace

int HttpServer::serve_socket(int listening_fd) {
  if (!timers_started_) {
    uv_timer_init(loop_, &sweep_timer_);
    sweep_timer_.data = this;
    uv_timer_init(loop_, &resume_timer_);
    resume_timer_.data = this;
    const uint64_t interval = sweep_interval_millis(options_);
    uv_timer_start(&sweep_timer_, &HttpServer::on_sweep, interval, interval);
    uv_unref(reinterpret_cast<uv_handle_t*>(&sweep_timer_));  // keeps no loop alive on its own
    uv_prepare_init(loop_, &before_poll_);
    before_poll_.data = this;
    uv_prepare_start(&before_poll_, &HttpServer::on_before_poll);
    uv_unref(reinterpret_cast<uv_handle_t*>(&before_poll_));
    timers_started_ = true;
  }
  const int flags = ::fcntl(listening_fd, F_GETFL);
  if (flags < 0 || ::fcntl(listening_fd, F_SETFL, flags | O_NONBLOCK) != 0) return uv_translate_sys_error(errno);
  auto listener = std::make_unique<Listener>();
  listener->server = this;
  listener->fd = listening_fd;
  int rc = uv_poll_init_socket(loop_, &listener->poll, listening_fd);
  if (rc != 0) return rc;
  listener->poll.data = listener.get();
  Listener* raw = listener.get();
  listeners_.push_back(std::move(listener));
  if (!accept_paused_) {
    rc = uv_poll_start(&raw->poll, UV_READABLE, &HttpServer::on_listener_readable);
    if (rc != 0) return rc;
    raw->polling = true;
  }
  return 0;
}

void HttpServer::on_listener_readable(uv_poll_t* poll, int status, int) {
  auto* listener = static_cast<Listener*>(poll->data);
  if (status < 0) return;
  listener->server->accept_from(*listener);
}

void HttpServer::accept_from(Listener& listener) {
  for (int i = 0; i < kAcceptsPerWakeup && !accept_paused_ && !closed_; ++i) {
    sockaddr_in peer{};
    socklen_t peer_length = sizeof(peer);
    const int fd = ::accept4(listener.fd, reinterpret_cast<sockaddr*>(&peer), &peer_length,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: keep serving the connections we have and accept again when one
        // closes (or shortly), instead of retrying accept4() in a loop.
        pause_accepting();
      }
      return;  // EAGAIN: nothing more pending
    }
    const uint32_t address = peer.sin_addr.s_addr;
    const auto& counted = connections_per_address_.find(address);
    const std::size_t from_address = counted == connections_per_address_.end() ? 0 : counted->second;
    if (connections_.size() >= options_.max_connections ||
        from_address >= options_.max_connections_per_address) {
      // Over a cap: say so (the socket buffer of a fresh connection takes these few bytes) and close.
      (void)!::send(fd, kOverCapacity.data(), kOverCapacity.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      ::shutdown(fd, SHUT_WR);
      ::close(fd);
      continue;
    }
    adopt(fd, address);
  }
}

void HttpServer::adopt(int fd, uint32_t address) {
  auto connection = std::make_unique<Connection>();
  connection->server = this;
  connection->id = next_connection_id_++;
  connection->address = address;
  uv_tcp_init(loop_, &connection->handle);
  connection->handle.data = connection.get();
  if (uv_tcp_open(&connection->handle, fd) != 0) {
    ::close(fd);
    // The handle lives inside the connection: the close callback frees both.
    uv_close(reinterpret_cast<uv_handle_t*>(&connection->handle), &HttpServer::on_closed);
    connection.release();
    return;
  }
  uv_tcp_nodelay(&connection->handle, 1);
  Connection* raw = connection.get();
  raw->phase_since_millis = uv_now(loop_);
  raw->accepted = arrival_clock_.at_read();
  raw->parser = std::make_unique<RequestParser>(
      ParserLimits{options_.max_body_bytes, options_.max_header_bytes, options_.max_header_count},
      [this, raw](HttpRequest&& request) { handle_request(*raw, std::move(request)); });
  connections_.emplace(raw->id, std::move(connection));
  ++connections_per_address_[address];
  uv_read_start(reinterpret_cast<uv_stream_t*>(&raw->handle), &HttpServer::on_alloc,
                &HttpServer::on_read);
}

void HttpServer::pause_accepting() {
  if (accept_paused_ || closed_) return;
  accept_paused_ = true;
  for (auto& listener : listeners_) {
    if (listener->polling) uv_poll_stop(&listener->poll);
    listener->polling = false;
  }
  uv_timer_start(&resume_timer_, &HttpServer::on_resume_accepting, kPauseAfterExhaustionMillis, 0);
}

void HttpServer::resume_accepting() {
  if (!accept_paused_ || closed_) return;
  accept_paused_ = false;
  uv_timer_stop(&resume_timer_);
  for (auto& listener : listeners_) {
    if (uv_poll_start(&listener->poll, UV_READABLE, &HttpServer::on_listener_readable) == 0) {
      listener->polling = true;
    }
  }
}

void HttpServer::on_resume_accepting(uv_timer_t* timer) {
  static_cast<HttpServer*>(timer->data)->resume_accepting();
}

void HttpServer::on_before_poll(uv_prepare_t* prepare) {
  static_cast<HttpServer*>(prepare->data)->arrival_clock_.before_poll();
}

void HttpServer::on_sweep(uv_timer_t* timer) { static_cast<HttpServer*>(timer->data)->sweep(); }

void HttpServer::sweep() {
  // One pass per interval over this loop's connections: nothing per request but a timestamp.
  const uint64_t now = uv_now(loop_);
  std::vector<Connection*> expired;
  for (auto& [id, connection] : connections_) {
    Connection& c = *connection;
    if (!c.draining && !c.owed.empty()) continue;  // the handler answers by its deadline
    int64_t limit = options_.idle_timeout_millis;
    if (!c.draining && c.phase == RequestParser::Phase::kHeaders) limit = options_.header_timeout_millis;
    if (!c.draining && c.phase == RequestParser::Phase::kBody) limit = options_.body_timeout_millis;
    if (limit > 0 && now - c.phase_since_millis >= static_cast<uint64_t>(limit)) expired.push_back(&c);
  }
  for (Connection* connection : expired) time_out(*connection);
}

void HttpServer::time_out(Connection& connection) {
  if (connection.draining || connection.closing ||
      connection.phase == RequestParser::Phase::kIdle) {
    close_connection(connection);  // idle, or its client does not read: nothing to say
    return;
  }
  // Half a request: 408, then close.
  const uint64_t sequence = connection.next_sequence++;
  connection.owed.push_back(Connection::Owed{false, false, {}});
  if (connection.reading) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&connection.handle));
    connection.reading = false;
  }
  connection.parser->release();
  HttpResponse response;
  response.status = 408;
  response.body = connection.phase == RequestParser::Phase::kHeaders
                      ? "{\"error\":\"Request timeout\",\"cause\":\"request headers not received in time\"}"
                      : "{\"error\":\"Request timeout\",\"cause\":\"request body not received in time\"}";
  respond(ResponseSlot{connection.id, sequence}, std::move(response));
}

void HttpServer::mark_progress(Connection& connection) {
  connection.phase_since_millis = uv_now(loop_);
}

void HttpServer::on_alloc(uv_handle_t* handle, std::size_t, uv_buf_t* buffer) {
  auto* connection = static_cast<Connection*>(handle->data);
  auto& storage = connection->server->read_buffer_;
  *buffer = uv_buf_init(storage.data(), static_cast<unsigned int>(storage.size()));
}

void HttpServer::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buffer) {
  auto* connection = static_cast<Connection*>(stream->data);
  HttpServer* self = connection->server;
  if (nread < 0) {
    self->close_connection(*connection);
    return;
  }
  if (nread == 0 || connection->closing) return;
  // A request completed by this read arrived when these bytes did (hA: the lag gate of issue 12).
  const bool first_read = connection->next_sequence == 0 && connection->phase == RequestParser::Phase::kIdle;
  connection->read_arrived = first_read ? self->arrival_clock_.at_first_read(connection->accepted)
                                        : self->arrival_clock_.at_read().time;
  if (!connection->parser->feed(buffer->base, static_cast<std::size_t>(nread))) {
    self->fail_connection(*connection, connection->parser->failure());
    return;
  }
  const RequestParser::Phase phase = connection->parser->phase();
  if (phase != connection->phase) {
    connection->phase = phase;
    self->mark_progress(*connection);
  }
  if (connection->parser->take_continue() && connection->owed.empty()) {
    // Interim answer: only when no earlier answer is owed, so answers stay in order.
    static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t part = uv_buf_init(const_cast<char*>(kContinue), sizeof(kContinue) - 1);
    if (!self->write_out(*connection, &part, 1)) return;
  }
  if (connection->owed.size() >= self->options_.max_pipelined_requests && connection->reading) {
    uv_read_stop(stream);
    connection->reading = false;
  }
}

void HttpServer::handle_request(Connection& connection, HttpRequest&& request) {
  const uint64_t sequence = connection.next_sequence++;
  connection.owed.push_back(Connection::Owed{false, request.keep_alive, {}});
  request.arrived = connection.read_arrived;
  handler_.on_request(std::move(request), ResponseSlot{connection.id, sequence});
}

void HttpServer::fail_connection(Connection& connection, const ParseFailure& failure) {
  // The answer to the broken request goes after every answer still owed; then the connection closes.
  const uint64_t sequence = connection.next_sequence++;
  connection.owed.push_back(Connection::Owed{false, false, {}});
  HttpResponse response;
  response.status = failure.status;
  const char* error = failure.status == 413   ? "Payload too large"
                      : failure.status == 431 ? "Request header fields too large"
                      : failure.status == 417 ? "Expectation failed"
                      : failure.status == 414 ? "URI too long"
                      : failure.status == 501 ? "Not implemented"
                                              : "Bad request";
  connection.parser->release();
  response.body = std::string("{\"error\":\"") + error +
                  "\",\"cause\":\"" + failure.reason + "\"}";
  if (connection.reading) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&connection.handle));
    connection.reading = false;
  }
  respond(ResponseSlot{connection.id, sequence}, std::move(response));
}

namespace {

constexpr std::size_t kSpareBodyBytes = 16 * 1024;  // larger buffers are not kept for the next answer

}  // namespace

void HttpServer::respond(ResponseSlot slot, HttpResponse response) {
  auto found = connections_.find(slot.connection_id);
  if (found == connections_.end()) return;
  Connection& connection = *found->second;
  if (connection.closing || slot.sequence < connection.first_sequence) return;
  const std::size_t index = slot.sequence - connection.first_sequence;
  if (index >= connection.owed.size()) return;
  auto& owed = connection.owed[index];
  if (owed.ready) return;
  // Written or copied by the time this returns: its buffer can serve the next answer.
  struct KeepBuffer {
    std::string& spare;
    std::string& body;
    ~KeepBuffer() {
      if (body.capacity() > spare.capacity() && body.capacity() <= kSpareBodyBytes) spare = std::move(body);
    }
  } keep{spare_body_, response.body};
  if (index == 0) {
    // The answer the connection is waiting for: write the head (built in a reused buffer) and the
    // body straight from the response, without joining them into an owed copy first.
    write_head(head_scratch_, response, owed.keep_alive);
    const bool keep_alive = owed.keep_alive;
    connection.owed.pop_front();
    ++connection.first_sequence;
    if (!keep_alive) connection.closing = true;
    uv_buf_t parts[2] = {
        uv_buf_init(head_scratch_.data(), static_cast<unsigned int>(head_scratch_.size())),
        uv_buf_init(response.body.data(), static_cast<unsigned int>(response.body.size()))};
    if (!write_out(connection, parts, 2)) return;
    if (connection.owed.empty()) mark_progress(connection);  // idleness starts now
    flush(connection);  // answers that were ready behind this one
    return;
  }
  std::string& bytes = owed.bytes;
  write_head(bytes, response, owed.keep_alive);
  bytes += response.body;
  owed.ready = true;
  flush(connection);
}

void HttpServer::write_head(std::string& head, const HttpResponse& response, bool keep_alive) {
  // Once per answer. Most are a kept-alive 200 with a JSON body: one constant copied whole, then the
  // length. Others are copied piece by piece into a head sized once (appending each piece checked
  // the capacity every time, and std::to_string built two strings).
  constexpr std::string_view kOkJson =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ";
  if (response.status == 200 && keep_alive && response.extra_headers.empty() &&
      response.content_type == "application/json") {
    constexpr std::size_t kRoom = kOkJson.size() + 20 + 4;  // 20 digits hold any size_t
    head.resize(kRoom);
    char* at = head.data();
    std::memcpy(at, kOkJson.data(), kOkJson.size());
    at = std::to_chars(at + kOkJson.size(), head.data() + kRoom, response.body.size()).ptr;
    std::memcpy(at, "\r\n\r\n", 4);
    head.resize(static_cast<std::size_t>(at + 4 - head.data()));
    return;
  }
  constexpr std::string_view kVersion = "HTTP/1.1 ";
  constexpr std::string_view kContentType = "\r\nContent-Type: ";
  constexpr std::string_view kContentLength = "\r\nContent-Length: ";
  constexpr std::string_view kClose = "Connection: close\r\n";
  char status[16];
  const char* status_end = std::to_chars(status, status + sizeof(status), response.status).ptr;
  char length[24];
  const char* length_end = std::to_chars(length, length + sizeof(length), response.body.size()).ptr;
  const std::string_view text = status_text(response.status);
  const std::string_view pieces[] = {
      kVersion, {status, static_cast<std::size_t>(status_end - status)}, " ", text, kContentType,
      response.content_type, kContentLength, {length, static_cast<std::size_t>(length_end - length)},
      "\r\n", response.extra_headers, keep_alive ? std::string_view() : kClose, "\r\n"};
  std::size_t size = 0;
  for (std::string_view piece : pieces) size += piece.size();
  head.resize(size);
  char* at = head.data();
  for (std::string_view piece : pieces) {
    if (piece.empty()) continue;  // an empty view may hold no pointer, which memcpy must not get
    std::memcpy(at, piece.data(), piece.size());
    at += piece.size();
  }
}

bool HttpServer::write_out(Connection& connection, const uv_buf_t* parts, unsigned int count) {
  // Try the socket now; whatever it does not take is copied and queued behind earlier writes
  // (uv_try_write refuses while any are queued, so order holds).
  auto* stream = reinterpret_cast<uv_stream_t*>(&connection.handle);
  int written = uv_try_write(stream, parts, count);
  if (written < 0 && written != UV_EAGAIN) {
    close_connection(connection);
    return false;
  }
  std::size_t skip = written < 0 ? 0 : static_cast<std::size_t>(written);
  std::string rest;
  for (unsigned int i = 0; i < count; ++i) {
    const std::size_t length = parts[i].len;
    if (skip >= length) {
      skip -= length;
      continue;
    }
    rest.append(parts[i].base + skip, length - skip);
    skip = 0;
  }
  if (!rest.empty()) {
    auto* request = new WriteRequest;
    request->bytes = std::move(rest);
    uv_buf_t buffer = uv_buf_init(request->bytes.data(), static_cast<unsigned int>(request->bytes.size()));
    request->request.data = request;
    if (uv_write(&request->request, stream, &buffer, 1, &HttpServer::on_write_done) != 0) {
      delete request;
      close_connection(connection);
      return false;
    }
  }
  return true;
}

void HttpServer::flush(Connection& connection) {
  std::string pending;
  while (!connection.closing && !connection.owed.empty() && connection.owed.front().ready) {
    auto& front = connection.owed.front();
    if (pending.empty()) {
      pending = std::move(front.bytes);
    } else {
      pending += front.bytes;
    }
    if (!front.keep_alive) connection.closing = true;
    connection.owed.pop_front();
    ++connection.first_sequence;
  }
  if (!pending.empty()) {
    uv_buf_t part = uv_buf_init(pending.data(), static_cast<unsigned int>(pending.size()));
    if (!write_out(connection, &part, 1)) return;
    if (connection.owed.empty()) mark_progress(connection);
  }
  if (connection.closing) {
    finish_connection(connection);  // answers owed after a closing one are never written
    return;
  }
  if (!connection.reading && connection.owed.size() < options_.max_pipelined_requests) {
    connection.reading = true;
    uv_read_start(reinterpret_cast<uv_stream_t*>(&connection.handle), &HttpServer::on_alloc,
                  &HttpServer::on_read);
  }
}

void HttpServer::on_write_done(uv_write_t* request, int) {
  delete static_cast<WriteRequest*>(request->data);
}

void HttpServer::finish_connection(Connection& connection) {
  // uv_close would cancel queued writes (a large last answer would be cut short): shut the
  // writing side down first, which completes once they are written; the sweep closes it if the
  // client stops reading.
  if (connection.draining) return;
  auto* stream = reinterpret_cast<uv_stream_t*>(&connection.handle);
  if (connection.reading) {
    uv_read_stop(stream);
    connection.reading = false;
  }
  connection.parser->release();
  connection.draining = true;
  mark_progress(connection);
  connection.shutdown.data = &connection;
  if (uv_shutdown(&connection.shutdown, stream, &HttpServer::on_shutdown_done) != 0) {
    close_connection(connection);
  }
}

void HttpServer::on_shutdown_done(uv_shutdown_t* request, int) {
  auto* connection = static_cast<Connection*>(request->data);
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&connection->handle))) return;
  connection->server->close_connection(*connection);
}

void HttpServer::forget(Connection& connection) {
  auto counted = connections_per_address_.find(connection.address);
  if (counted != connections_per_address_.end() && --counted->second == 0) {
    connections_per_address_.erase(counted);
  }
  resume_accepting();  // a descriptor is free again
}

void HttpServer::close_connection(Connection& connection) {
  auto found = connections_.find(connection.id);
  if (found == connections_.end()) return;
  Connection* raw = found->second.release();
  connections_.erase(found);
  forget(*raw);
  const bool large = raw->parser && raw->parser->buffered_bytes() > kTrimAboveBytes;
  if (raw->parser) raw->parser->release();
  // A large body's pages go back to the system now, not when the heap happens to shrink.
  if (large) malloc_trim(0);
  // Queued writes are cancelled; the close callback frees the connection.
  uv_close(reinterpret_cast<uv_handle_t*>(&raw->handle), &HttpServer::on_closed);
}

void HttpServer::on_closed(uv_handle_t* handle) {
  delete static_cast<Connection*>(handle->data);
}

void HttpServer::close_all() {
  closed_ = true;
  for (auto& listener : listeners_) {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&listener->poll))) {
      uv_close(reinterpret_cast<uv_handle_t*>(&listener->poll), nullptr);
      ::close(listener->fd);
    }
  }
  if (timers_started_) {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&sweep_timer_))) {
      uv_close(reinterpret_cast<uv_handle_t*>(&sweep_timer_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&resume_timer_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&before_poll_), nullptr);
    }
  }
  std::vector<Connection*> open;
  for (auto& [id, connection] : connections_) open.push_back(connection.get());
  for (Connection* connection : open) close_connection(*connection);
}

int open_listening_socket(const std::string& address, int port, int backlog) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    ::close(fd);
    return -EINVAL;
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, backlog) != 0) {
    const int error = errno;
    ::close(fd);
    return -error;
  }
  return fd;
}

int bound_port(int fd) {
  sockaddr_in addr{};
  socklen_t length = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) return -1;
  return ntohs(addr.sin_port);
}

}  // namespace clipper::http
