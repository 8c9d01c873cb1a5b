"""Hostile clients against the query port of the real clipper-frontend binary over loopback: slow
headers and bodies (408), idle keep-alive connections, oversized headers (431), Expect: 100-continue,
connection caps (503 with Retry-After) and descriptor exhaustion (recovers, does not spin)."""

import json
import os
import resource
import socket
import subprocess
import time

import pytest

from clipper_native import frontend_binary
from e2e_support import free_ports

CLK_TCK = os.sysconf("SC_CLK_TCK")


def start_frontend(*flags, nofile=None):
    query, rpc = free_ports(2)

    def lower_limit():
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    process = subprocess.Popen(
        [str(frontend_binary()), "--query-port", str(query), "--rpc-port", str(rpc), "--metrics-port", "0",
         *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=lower_limit)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", query), timeout=1) as probe:
                probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if probe.recv(64).startswith(b"HTTP/1.1 200"):
                    return process, query
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("clipper-frontend did not answer /healthz within 10 s: "
                         + process.stderr.read().decode(errors="replace"))


@pytest.fixture
def frontend(request):
    flags = getattr(request, "param", ())
    process, port = start_frontend(*flags)
    yield port
    process.terminate()
    process.wait(timeout=10)


def read_all(sock, limit_seconds):
    """Everything the server sends until it closes (or the time runs out)."""
    sock.settimeout(limit_seconds)
    chunks = []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except socket.timeout:
        pass
    return b"".join(chunks)


def healthz(port, timeout=2.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_all(sock, timeout)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


TIMEOUTS = ("--header-timeout-millis", "400", "--body-timeout-millis", "600", "--idle-timeout-millis", "800")


@pytest.mark.parametrize("frontend", [TIMEOUTS], indirect=True)
def test_half_a_header_gets_408_then_close(frontend):
    with socket.create_connection(("127.0.0.1", frontend)) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /app/predict HTTP/1.1\r\nHost: x\r\n")
        answer = read_all(sock, 5)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"headers not received in time" in answer
    assert 0.35 < elapsed < 2.0


@pytest.mark.parametrize("frontend", [TIMEOUTS], indirect=True)
def test_half_a_body_gets_408_then_close(frontend):
    with socket.create_connection(("127.0.0.1", frontend)) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /app/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"input\":")
        answer = read_all(sock, 5)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"body not received in time" in answer
    assert 0.55 < elapsed < 2.5


@pytest.mark.parametrize("frontend", [TIMEOUTS], indirect=True)
def test_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not(frontend):
    with socket.create_connection(("127.0.0.1", frontend)) as idle, \
            socket.create_connection(("127.0.0.1", frontend)) as busy:
        started = time.monotonic()
        busy.settimeout(2)
        for _ in range(6):  # 1.2 s of requests every 0.2 s: never idle for 0.8 s
            busy.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert busy.recv(4096).startswith(b"HTTP/1.1 200")
            time.sleep(0.2)
        assert read_all(idle, 3) == b""  # closed, with nothing to say
        assert time.monotonic() - started < 3
        busy.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert busy.recv(4096).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("frontend", [("--max-header-count", "20", "--max-header-bytes", "2048")], indirect=True)
def test_too_many_or_too_large_headers_get_431(frontend):
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(21))
    large = b"X-Large: " + b"a" * 3000 + b"\r\n"
    for extra in (many, large):
        with socket.create_connection(("127.0.0.1", frontend)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
            answer = read_all(sock, 5)
        assert answer.startswith(b"HTTP/1.1 431 "), answer
    assert healthz(frontend).startswith(b"HTTP/1.1 200")


def test_expect_100_continue(frontend, tmp_path):
    # Within the limit: 100 Continue before the body is sent.
    with socket.create_connection(("127.0.0.1", frontend)) as sock:
        sock.settimeout(2)
        sock.sendall(b"POST /app/predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: 13\r\n\r\n")
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"{\"input\":[1]}")
        assert sock.recv(4096).startswith(b"HTTP/1.1 404 ")  # no such app: the request was read
    # Over the limit: 413 at once, no body read.
    with socket.create_connection(("127.0.0.1", frontend)) as sock:
        sock.sendall(b"POST /app/predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: 100000000\r\n\r\n")
        assert read_all(sock, 2).startswith(b"HTTP/1.1 413 ")
    # curl waits up to 1 s for 100 Continue: a 2 MB body must go through far sooner.
    body = tmp_path / "body.json"
    body.write_bytes(b"{\"input\":[" + b"1," * 1_000_000 + b"1]}")
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "-H", "Expect: 100-continue",
         "-H", "Content-Type: application/json", "--data-binary", f"@{body}",
         f"http://127.0.0.1:{frontend}/app/predict"], capture_output=True, text=True, timeout=10)
    status, seconds = result.stdout.split()
    assert status == "404" and float(seconds) < 0.1, result.stdout


@pytest.mark.parametrize("frontend", [("--max-connections-per-client-address", "5")], indirect=True)
def test_connections_beyond_the_cap_get_503_with_retry_after(frontend):
    held = [socket.create_connection(("127.0.0.1", frontend)) for _ in range(5)]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", frontend)) as extra:
            answer = read_all(extra, 3)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"Retry-After: 1\r\n" in answer
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        held[0].settimeout(2)
        assert held[0].recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert healthz(frontend).startswith(b"HTTP/1.1 200")


def test_descriptor_exhaustion_keeps_serving_and_recovers_without_spinning():
    process, port = start_frontend(nofile=96)
    flood = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as veteran:
            for _ in range(400):  # far over the limit; the backlog holds the rest
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                flood.append(sock)
            time.sleep(0.5)
            before = cpu_seconds(process.pid)
            time.sleep(1.0)
            during = cpu_seconds(process.pid) - before
            veteran.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert veteran.recv(4096).startswith(b"HTTP/1.1 200")  # its connections are still served
            assert during < 0.2, f"{during:.2f} s of CPU in 1 s at the descriptor limit: spinning"
            for sock in flood:
                sock.close()
            flood.clear()
            closed_at = time.monotonic()
            recovered = None
            while time.monotonic() - closed_at < 10:
                try:
                    if healthz(port, timeout=1).startswith(b"HTTP/1.1 200"):
                        recovered = time.monotonic() - closed_at
                        break
                except OSError:
                    pass
                time.sleep(0.02)
            assert recovered is not None, "no new connection served within 10 s after the flood closed"
            print(f"descriptor flood: recovered {recovered * 1000:.0f} ms after the clients closed")
            before = cpu_seconds(process.pid)
            time.sleep(1.0)
            assert cpu_seconds(process.pid) - before < 0.2
    finally:
        for sock in flood:
            sock.close()
        process.terminate()
        process.wait(timeout=10)


def test_an_app_name_with_invalid_utf8_is_not_echoed_raw(frontend):
    with socket.create_connection(("127.0.0.1", frontend)) as sock:
        sock.sendall(b"POST /bad\xff\xfename/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n"
                     b"Connection: close\r\n\r\n{\"input\":[1]}")
        answer = read_all(sock, 5)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 "), answer
    decoded = json.loads(body.decode("utf-8"))  # strict: raw 0xff would fail here
    assert "bad\ufffd\ufffdname" in decoded["cause"]
