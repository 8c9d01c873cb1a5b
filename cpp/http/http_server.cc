#include "http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace clipper::http {

struct HttpServer::Listener {
  uv_tcp_t handle;
  HttpServer* server;
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
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

HttpServer::HttpServer(uv_loop_t* loop, RequestHandler& handler, HttpServerOptions options)
    : loop_(loop), handler_(handler), options_(options) {
  read_buffer_.resize(64 * 1024);
}

HttpServer::~HttpServer() = default;

int HttpServer::serve_socket(int listening_fd) {
  auto listener = std::make_unique<Listener>();
  listener->server = this;
  int rc = uv_tcp_init(loop_, &listener->handle);
  if (rc != 0) return rc;
  listener->handle.data = listener.get();
  rc = uv_tcp_open(&listener->handle, listening_fd);
  if (rc != 0) return rc;
  rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener->handle), 4096,
                 &HttpServer::on_new_connection);
  if (rc != 0) return rc;
  listeners_.push_back(std::move(listener));
  return 0;
}

void HttpServer::on_new_connection(uv_stream_t* server, int status) {
  if (status < 0) return;
  static_cast<Listener*>(server->data)->server->accept_from(server);
}

void HttpServer::accept_from(uv_stream_t* server) {
  auto connection = std::make_unique<Connection>();
  connection->server = this;
  connection->id = next_connection_id_++;
  uv_tcp_init(loop_, &connection->handle);
  connection->handle.data = connection.get();
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&connection->handle)) != 0) {
    // The handle lives inside the connection: the close callback frees both.
    uv_close(reinterpret_cast<uv_handle_t*>(&connection->handle), &HttpServer::on_closed);
    connection.release();
    return;
  }
  uv_tcp_nodelay(&connection->handle, 1);
  Connection* raw = connection.get();
  raw->parser = std::make_unique<RequestParser>(
      options_.max_body_bytes,
      [this, raw](HttpRequest&& request) { handle_request(*raw, std::move(request)); });
  connections_.emplace(raw->id, std::move(connection));
  uv_read_start(reinterpret_cast<uv_stream_t*>(&raw->handle), &HttpServer::on_alloc,
                &HttpServer::on_read);
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
  if (!connection->parser->feed(buffer->base, static_cast<std::size_t>(nread))) {
    self->fail_connection(*connection, connection->parser->failure());
    return;
  }
  if (connection->owed.size() >= self->options_.max_pipelined_requests && connection->reading) {
    uv_read_stop(stream);
    connection->reading = false;
  }
}

void HttpServer::handle_request(Connection& connection, HttpRequest&& request) {
  const uint64_t sequence = connection.next_sequence++;
  connection.owed.push_back(Connection::Owed{false, request.keep_alive, {}});
  handler_.on_request(std::move(request), ResponseSlot{connection.id, sequence});
}

void HttpServer::fail_connection(Connection& connection, const ParseFailure& failure) {
  // The answer to the broken request goes after every answer still owed; then the connection closes.
  const uint64_t sequence = connection.next_sequence++;
  connection.owed.push_back(Connection::Owed{false, false, {}});
  HttpResponse response;
  response.status = failure.status;
  response.body = std::string("{\"error\":\"") +
                  (failure.status == 413 ? "Payload too large" : "Bad request") +
                  "\",\"cause\":\"" + failure.reason + "\"}";
  if (connection.reading) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&connection.handle));
    connection.reading = false;
  }
  respond(ResponseSlot{connection.id, sequence}, std::move(response));
}

void HttpServer::respond(ResponseSlot slot, HttpResponse response) {
  auto found = connections_.find(slot.connection_id);
  if (found == connections_.end()) return;
  Connection& connection = *found->second;
  if (slot.sequence < connection.first_sequence) return;
  const std::size_t index = slot.sequence - connection.first_sequence;
  if (index >= connection.owed.size()) return;
  auto& owed = connection.owed[index];
  if (owed.ready) return;
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
  head.clear();
  head += "HTTP/1.1 ";
  head += std::to_string(response.status);
  head += ' ';
  head += status_text(response.status);
  head += "\r\nContent-Type: ";
  head += response.content_type;
  head += "\r\nContent-Length: ";
  head += std::to_string(response.body.size());
  head += "\r\n";
  head += response.extra_headers;
  if (!keep_alive) head += "Connection: close\r\n";
  head += "\r\n";
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
  }
  if (connection.closing) {
    close_connection(connection);
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

void HttpServer::close_connection(Connection& connection) {
  auto found = connections_.find(connection.id);
  if (found == connections_.end()) return;
  Connection* raw = found->second.release();
  connections_.erase(found);
  // Queued writes complete (or fail) before the close callback frees the connection.
  uv_close(reinterpret_cast<uv_handle_t*>(&raw->handle), &HttpServer::on_closed);
}

void HttpServer::on_closed(uv_handle_t* handle) {
  delete static_cast<Connection*>(handle->data);
}

void HttpServer::close_all() {
  for (auto& listener : listeners_) {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&listener->handle))) {
      uv_close(reinterpret_cast<uv_handle_t*>(&listener->handle), nullptr);
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
