// HttpServer over a real loopback socket: a large last answer on a closing connection arrives whole;
// requests are stamped with when their bytes arrived, so time spent unread while the loop was busy shows.
#include "http/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace clipper::http {
namespace {

constexpr std::size_t kAnswerBytes = 12 * 1024 * 1024;

// A server on a loopback port, its loop on a thread of its own; stop() closes everything.
struct LoopbackServer {
  uv_loop_t loop;
  std::unique_ptr<HttpServer> server;
  uv_async_t stop_signal;
  std::thread loop_thread;
  int port = -1;

  // `handler` answers through `handler.server`, set before the loop runs.
  template <class Handler>
  void start(Handler& handler) {
    ASSERT_EQ(uv_loop_init(&loop), 0);
    server = std::make_unique<HttpServer>(&loop, handler, HttpServerOptions{});
    handler.server = server.get();
    const int listening = open_listening_socket("127.0.0.1", 0, 16);
    ASSERT_GE(listening, 0);
    port = bound_port(listening);
    ASSERT_EQ(server->serve_socket(listening), 0);
    stop_signal.data = server.get();
    uv_async_init(&loop, &stop_signal, [](uv_async_t* async) {
      static_cast<HttpServer*>(async->data)->close_all();
      uv_close(reinterpret_cast<uv_handle_t*>(async), nullptr);
    });
    loop_thread = std::thread([this] { uv_run(&loop, UV_RUN_DEFAULT); });
  }

  void stop() {
    uv_async_send(&stop_signal);
    loop_thread.join();
    uv_loop_close(&loop);
  }
  ~LoopbackServer() {
    if (loop_thread.joinable()) stop();  // a test that failed before its stop()
  }
};

int connect_to(int port) {
  const int client = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return -1;
  return client;
}

class LargeAnswer : public RequestHandler {
 public:
  HttpServer* server = nullptr;
  void on_request(HttpRequest&&, ResponseSlot slot) override {
    HttpResponse response;
    response.body.assign(kAnswerBytes, 'z');
    server->respond(slot, std::move(response));
  }
};

TEST(HttpServer, WritesALargeLastAnswerCompletelyBeforeClosing) {
  LargeAnswer handler;
  LoopbackServer served;
  ASSERT_NO_FATAL_FAILURE(served.start(handler));
  const int client = connect_to(served.port);
  ASSERT_GE(client, 0);
  const std::string request = "GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(::send(client, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  // Read nothing for a while: the socket buffers fill, the rest of the answer is queued in the server
  // while the connection is already closing.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  timeval timeout{5, 0};
  ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  std::string received;
  char buffer[65536];
  for (int reads = 0; reads < 100000; ++reads) {
    const ssize_t n = ::recv(client, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    received.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(client);
  served.stop();

  const auto body_start = received.find("\r\n\r\n");
  ASSERT_NE(body_start, std::string::npos);
  EXPECT_NE(received.find("Content-Length: " + std::to_string(kAnswerBytes)), std::string::npos);
  EXPECT_NE(received.find("Connection: close"), std::string::npos);
  EXPECT_EQ(received.size() - body_start - 4, kAnswerBytes);
}


// Holds the loop for kBusy on the first request (as a long decode would); notes each request's age.
class BusyFirst : public RequestHandler {
 public:
  static constexpr auto kBusy = std::chrono::milliseconds(80);
  HttpServer* server = nullptr;
  std::vector<Clock::duration> ages;  // loop thread only until the loop stops
  void on_request(HttpRequest&& request, ResponseSlot slot) override {
    ages.push_back(Clock::now() - request.arrived);
    if (ages.size() == 1) {
      const Clock::time_point until = Clock::now() + kBusy;
      while (Clock::now() < until) {
      }
    }
    HttpResponse response;
    response.body = "{}";
    server->respond(slot, std::move(response));
  }
};

TEST(HttpServer, StampsRequestsWithTheirArrivalNotTheirParse) {
  BusyFirst handler;
  LoopbackServer served;
  ASSERT_NO_FATAL_FAILURE(served.start(handler));
  const std::string request = "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  const int first = connect_to(served.port);
  const int second = connect_to(served.port);
  ASSERT_GE(first, 0);
  ASSERT_GE(second, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // both accepted; the loop sleeps
  ASSERT_EQ(::send(first, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  // The second request arrives while the loop is busy with the first: read only afterwards.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(::send(second, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  char buffer[4096];
  timeval timeout{5, 0};
  for (int client : {first, second}) {
    ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    while (::recv(client, buffer, sizeof(buffer), 0) > 0) {
    }
    ::close(client);
  }
  served.stop();

  ASSERT_EQ(handler.ages.size(), 2u);
  // The first was read as it arrived (the loop slept); the second waited out most of the busy spell
  // unread, and its stamp says so (it is stamped with the start of the busy iteration at the latest).
  EXPECT_LT(handler.ages[0], std::chrono::milliseconds(20));
  EXPECT_GE(handler.ages[1], BusyFirst::kBusy - std::chrono::milliseconds(20));
}

// Answers each request with a body built in the server's spare buffer: the 1st kept alive with an
// extra header (the head's general path), the 2nd out of order (later), the 3rd with another status
// and headers. Notes the buffer's capacity when taken.
class SpareBufferAnswers : public RequestHandler {
 public:
  HttpServer* server = nullptr;
  std::vector<std::size_t> capacities;  // loop thread only until the loop stops
  std::vector<ResponseSlot> slots;
  void on_request(HttpRequest&& request, ResponseSlot slot) override {
    slots.push_back(slot);
    if (slots.size() == 2) return;  // answered after the third
    answer(slots.size(), slot);
    if (slots.size() == 3) answer(2, slots[1]);
  }
  void answer(std::size_t number, ResponseSlot slot) {
    HttpResponse response;
    response.body = server->take_body_buffer();
    capacities.push_back(response.body.capacity());
    response.body.append(200, static_cast<char>('a' + number));
    if (number == 1) response.extra_headers = "X-First: 1\r\n";
    if (number == 3) {
      response.status = 404;
      response.content_type = "text/plain";
      response.extra_headers = "X-Test: 1\r\n";
    }
    server->respond(slot, std::move(response));
  }
};

TEST(HttpServer, WritesEachAnswersHeadInOrderAndReusesTheBodyBuffer) {
  SpareBufferAnswers handler;
  LoopbackServer served;
  ASSERT_NO_FATAL_FAILURE(served.start(handler));
  const int client = connect_to(served.port);
  ASSERT_GE(client, 0);
  const std::string request =
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(::send(client, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  timeval timeout{5, 0};
  ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  std::string received;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(client, buffer, sizeof(buffer), 0)) > 0;) {
    received.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(client);
  served.stop();

  const std::string expected =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\nX-First: 1\r\n\r\n" +
      std::string(200, 'b') +
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n" +
      std::string(200, 'c') +
      "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 200\r\nX-Test: 1\r\n"
      "Connection: close\r\n\r\n" +
      std::string(200, 'd');
  EXPECT_EQ(received, expected);
  ASSERT_EQ(handler.capacities.size(), 3u);
  EXPECT_LT(handler.capacities[0], 200u);  // nothing answered yet: no buffer to reuse
  EXPECT_GE(handler.capacities[1], 200u);  // the first answer's
  EXPECT_GE(handler.capacities[2], 200u);
}

}  // namespace
}  // namespace clipper::http
