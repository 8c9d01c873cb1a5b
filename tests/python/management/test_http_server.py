"""The control plane's HTTP server under slow and abusive clients, over real loopback sockets: every
limit answers (or closes) as documented, and the server keeps serving everyone else."""

import http.client
import json
import socket
import threading
import time

import pytest

from clipper.management.http_server import (
    HTTPApplication,
    HTTPServer,
    HTTPServerLimits,
    json_response,
)


class Echo(HTTPApplication):
    """Answers every request with what it received."""

    def handle(self, head, body):
        return json_response(200, {"method": head.method, "path": head.path, "bytes": len(body)})


def serve(**limits):
    server = HTTPServer(("127.0.0.1", 0), Echo(), HTTPServerLimits(**limits))
    server.start()
    return server


@pytest.fixture
def server():
    running = serve(
        header_timeout_millis=300,
        body_timeout_millis=300,
        idle_timeout_millis=500,
        max_connections=40,
        max_connections_per_client=8,
        max_header_bytes=2048,
        max_headers=10,
        max_body_bytes=1000,
    )
    yield running
    running.stop()


def raw_exchange(port, data, source="127.0.0.1", timeout=5.0):
    """Send `data` on a new connection and read until the server closes it; returns (status, json,
    seconds until closed)."""
    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        started = time.monotonic()
        if data:
            sock.sendall(data)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        elapsed = time.monotonic() - started
    return parse(received) + (elapsed,)


def parse(received):
    if not received:
        return None, None
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


def get(port, path="/x", source="127.0.0.1"):
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=5, source_address=(source, 0)
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_request_is_answered_and_the_connection_kept_alive(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for size in (0, 10, 1000):
            connection.request("POST", "/p", body=b"x" * size)
            response = connection.getresponse()
            assert response.status == 200
            assert json.loads(response.read()) == {"method": "POST", "path": "/p", "bytes": size}
    finally:
        connection.close()


def test_headers_slower_than_the_header_timeout_get_408(server):
    status, answer, elapsed = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert status == 408 and "headers did not arrive within 300 ms" in answer["cause"]
    assert elapsed < 3


def test_a_body_slower_than_the_body_timeout_gets_408(server):
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
    status, answer, _ = raw_exchange(server.port, request)
    assert status == 408 and "body did not arrive" in answer["cause"]


def test_an_idle_connection_is_closed_after_the_idle_timeout(server):
    status, _, elapsed = raw_exchange(server.port, b"")
    assert status is None and 0.3 < elapsed < 3


@pytest.mark.parametrize(
    "request_bytes, status, fragment",
    [
        (
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"0\r\n\r\n"
            ),
            400,
            "both Content-Length and Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            400,
            "Content-Length is given more than once",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
            "conflicting Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
            "chunked",
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 4096 + b"\r\n\r\n", 431, "2048 bytes"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(20))
            + b"\r\n",
            431,
            "at most 10",
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 413, "at most 1000"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"3e8\r\n"
            + b"x" * 1000
            + b"\r\n"
            + b"5\r\nxxxxx\r\n0\r\n\r\n",
            413,
            "exceeds 1000 bytes",
        ),
        (b"GARBAGE\r\n\r\n", 400, ""),
    ],
    ids=[
        "cl-and-te",
        "duplicate-cl",
        "conflicting-cl",
        "unknown-te",
        "header-too-large",
        "too-many-headers",
        "declared-body-too-large",
        "chunked-body-too-large",
        "not-http",
    ],
)
def test_malformed_and_smuggling_shapes_are_refused_and_the_connection_closed(
    server, request_bytes, status, fragment
):
    answered, answer, _ = raw_exchange(server.port, request_bytes)
    assert answered == status
    assert fragment in answer["cause"]
    assert get(server.port)[0] == 200


def test_a_chunked_body_within_the_limit_is_read(server):
    request = (
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    request += b"5\r\nhello\r\n0\r\n\r\n"
    status, answer, _ = raw_exchange(server.port, request)
    assert (status, answer["bytes"]) == (200, 5)


def test_expect_100_continue_is_honoured(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 ")
        sock.sendall(b"data")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 ")


def test_at_the_per_client_cap_that_clients_oldest_waiting_connection_makes_room(server):
    held = []
    try:
        for _ in range(8):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET / HTTP/1.1\r\n")  # a request started, never finished
            held.append(sock)
            time.sleep(0.01)
        deadline = time.monotonic() + 5
        while server.open_connections < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert get(server.port, source="127.0.0.2")[0] == 200  # the same address still gets in
        held[0].settimeout(5)
        assert held[0].recv(1024).startswith(b"HTTP/1.1 503 ")  # its oldest slow connection left
        assert server.evicted_connections == 1
    finally:
        for sock in held:
            sock.close()


def test_beyond_the_per_client_cap_with_every_connection_mid_request_a_new_one_gets_503(server):
    held = []
    try:
        for _ in range(8):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
            held.append(sock)
        deadline = time.monotonic() + 5
        while (server.open_connections < 8 or server._waiting) and time.monotonic() < deadline:
            time.sleep(0.01)
        status, answer, _ = raw_exchange(server.port, b"", source="127.0.0.2")
        assert status == 503 and "too many open connections" in answer["cause"]
        assert get(server.port, source="127.0.0.1")[0] == 200  # another address is not affected
    finally:
        for sock in held:
            sock.close()


def wait_until(predicate, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_at_the_overall_cap_the_oldest_waiting_connection_makes_room():
    server = serve(max_connections=5, max_connections_per_client=5, idle_timeout_millis=60_000)
    held = []
    try:
        for index in range(5):
            sock = socket.socket()
            sock.bind((f"127.0.0.{index + 2}", 0))
            sock.connect(("127.0.0.1", server.port))
            held.append(sock)
            wait_until(lambda index=index: server.open_connections == index + 1)
        # A sixth client is served: the connection idle the longest is closed with a 503.
        assert get(server.port, source="127.0.0.1")[0] == 200
        held[0].settimeout(5)
        assert held[0].recv(1024).startswith(b"HTTP/1.1 503 ")
        assert server.evicted_connections == 1 and server.refused_connections == 0
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_at_the_overall_cap_with_every_connection_mid_request_a_new_one_gets_503():
    server = serve(max_connections=5, max_connections_per_client=5, body_timeout_millis=60_000)
    held = []
    try:
        for index in range(5):
            sock = socket.socket()
            sock.bind((f"127.0.0.{index + 2}", 0))
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
            held.append(sock)
        assert wait_until(lambda: server.open_connections == 5 and not server._waiting)
        status, answer, _ = raw_exchange(server.port, b"", source="127.0.0.9")
        assert status == 503 and "too many open connections" in answer["cause"]
        assert server.refused_connections == 1 and server.evicted_connections == 0
        for sock in held:  # the requests in progress still complete
            sock.sendall(b"0123456789")
            sock.settimeout(5)
            assert sock.recv(1024).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in held:
            sock.close()
        server.stop()


@pytest.mark.parametrize("max_connections", [1000, 256], ids=["all-held", "at-the-cap"])
def test_600_slow_clients_take_no_thread_each_and_do_not_stop_a_normal_client(max_connections):
    server = serve(
        max_connections=max_connections,
        max_connections_per_client=1000,
        header_timeout_millis=20_000,
    )
    threads_before = threading.active_count()
    attackers = []
    try:
        for _ in range(600):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # then nothing: slowloris
            attackers.append(sock)
        held = min(600, max_connections)
        assert wait_until(
            lambda: server.open_connections == held and server.evicted_connections == 600 - held,
            timeout_s=10,
        )
        # One event-loop thread and the worker pool serve them all: no thread per connection.
        assert threading.active_count() - threads_before <= server.limits.worker_threads
        for _ in range(20):
            assert get(server.port)[0] == 200
    finally:
        for sock in attackers:
            sock.close()
        server.stop()


def test_a_port_in_use_raises_at_start(server):
    other = HTTPServer(("127.0.0.1", server.port), Echo())
    with pytest.raises(OSError):
        other.start()


@pytest.mark.parametrize("field", ["max_connections", "header_timeout_millis"])
def test_limits_are_validated_with_the_field_name(field):
    from clipper.exceptions import ClipperException

    with pytest.raises(ClipperException, match=field):
        HTTPServerLimits(**{field: 0}).validate()


def test_a_head_request_gets_the_headers_alone_and_the_connection_stays_usable(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        deadline = time.monotonic() + 5
        while received.count(b"HTTP/1.1 200") < 2 and time.monotonic() < deadline:
            received += sock.recv(65536)
    head_answer, _, rest = received.partition(b"\r\n\r\n")
    assert head_answer.startswith(b"HTTP/1.1 200 ") and b"content-length: " in head_answer.lower()
    assert rest.startswith(b"HTTP/1.1 200 ")  # no body came between the two answers
    assert rest.endswith(b'"path": "/g", "bytes": 0}')
