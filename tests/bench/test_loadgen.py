"""clipper-loadgen (bench/loadgen/loadgen.cc) against a real HTTP server on loopback.

The server is a small asyncio HTTP/1.1 keep-alive server in this process that records each
connection's peer address and answers every request after a set delay: enough to check what the load
generator's options promise (source addresses as the server sees them, the open loop's wait for a
free connection), with no Clipper cluster involved.
"""

import asyncio
import collections
import json
import os
import subprocess
import threading

import pytest

clipper_native = pytest.importorskip(
    "clipper_native", reason="the native engine (pip install . builds it with clipper-loadgen)"
)

ANSWER = b'{"output":1,"default":false}'


class DelayedHttpServer:
    """Answers every request with 200 and `body` after `delay_s`; counts connections per peer and
    request lines. `framing` delimits the body: "length" (Content-Length), "chunked" (two chunks, split
    mid-body) or "close" (no length: the body ends when the server closes the connection); "twice"
    answers each request twice, in one write, as a broken server would."""

    def __init__(self, delay_s=0.0, framing="length", body=ANSWER):
        self.delay_s = delay_s
        self.framing = framing
        self.body = body
        self.peers = collections.Counter()
        self.request_heads = collections.Counter()
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        )
        self.port = self.server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/predict"

    async def _serve(self, reader, writer):
        self.peers[writer.get_extra_info("peername")[0]] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.request_heads[head.split(b"\r\n\r\n")[0].decode()] += 1
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(self._answer())
                await writer.drain()
                if self.framing == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _answer(self):
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        if self.framing == "chunked":
            half = len(self.body) // 2
            chunks = b"".join(
                b"%x\r\n%s\r\n" % (len(part), part) for part in (self.body[:half], self.body[half:])
            )
            return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        if self.framing == "close":
            return head + b"Connection: close\r\n\r\n" + self.body
        answer = head + b"Content-Length: %d\r\n\r\n" % len(self.body) + self.body
        return answer * 2 if self.framing == "twice" else answer

    def stop(self):
        async def close():
            # Connections still being served end first, while the loop can still close them.
            self.server.close()
            serving = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in serving:
                task.cancel()
            await asyncio.gather(*serving, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def server(request):
    started = DelayedHttpServer(getattr(request, "param", 0.0))
    yield started
    started.stop()


def loadgen_binary():
    for base in clipper_native.__path__:
        candidate = os.path.join(base, "bin", "clipper-loadgen")
        if os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError("clipper-loadgen is not installed with clipper_native")


def run_loadgen(*args, check=True):
    completed = subprocess.run(
        [loadgen_binary(), *args], capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout)
    return completed


def test_source_addresses_are_the_clients_the_server_sees(server):
    report = run_loadgen(
        "--url", server.url, "--w1", "--connections", "6", "--source-addresses", "3",
        "--warmup", "0.2", "--duration", "0.5",
    )  # fmt: skip
    assert report["source_addresses"] == 3
    assert report["established"] == 6
    assert report["errors"]["total"] == 0
    assert report["status"].get("200", 0) > 0
    # Round robin over 127.0.0.2 .. 127.0.0.4, two connections each.
    assert dict(server.peers) == {"127.0.0.2": 2, "127.0.0.3": 2, "127.0.0.4": 2}


def test_without_source_addresses_every_connection_comes_from_127_0_0_1(server):
    report = run_loadgen(
        "--url", server.url, "--w1", "--connections", "4", "--warmup", "0.1", "--duration", "0.3"
    )  # fmt: skip
    assert report["source_addresses"] == 0
    assert dict(server.peers) == {"127.0.0.1": 4}


@pytest.mark.parametrize("server", [0.05], indirect=True)
def test_open_loop_reports_requests_that_waited_for_a_connection(server):
    # 200/s answered after 50 ms holds ~10 connections busy (Little's law): 2 cannot carry it, so
    # requests wait in the generator's FIFO, and their latency still counts from the intended send.
    starved = run_loadgen(
        "--url", server.url, "--w1", "--rate", "200", "--connections", "2",
        "--warmup", "0.2", "--duration", "1", "--drain", "0.5",
    )  # fmt: skip
    assert starved["waited_for_connection"] > starved["requests"] // 2
    assert starved["max_queue_depth"] > 10
    assert starved["send_lag_us"]["p50"] > 50_000
    assert starved["latency_us"]["p50"] > starved["send_lag_us"]["p50"]

    server.peers.clear()
    sized = run_loadgen(
        "--url", server.url, "--w1", "--rate", "200", "--connections", "64",
        "--source-addresses", "2", "--warmup", "0.5", "--duration", "1",
    )  # fmt: skip
    assert sized["waited_for_connection"] == 0
    assert sized["max_queue_depth"] < 64
    # The arrivals start once the population is connected, not while it connects.
    assert 0 < sized["seconds_to_connect_all"] <= sized["seconds_to_first_arrival"]
    assert sized["errors"]["total"] == 0
    assert sized["requests"] > 100
    assert sorted(server.peers) == ["127.0.0.2", "127.0.0.3"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source-addresses", "0"], "--source-addresses wants 1 to 253"),
        (["--source-addresses", "254"], "--source-addresses wants 1 to 253"),
        (["--source-addresses", "x"], "--source-addresses wants an integer"),
    ],
)
def test_bad_source_addresses_are_refused(server, args, message):
    completed = run_loadgen("--url", server.url, *args, check=False)
    assert completed.returncode == 2
    assert message in completed.stderr


def test_source_addresses_need_a_loopback_target():
    completed = run_loadgen(
        "--url", "http://192.0.2.1:1/x", "--source-addresses", "2", check=False
    )  # fmt: skip
    assert completed.returncode == 2
    assert "--source-addresses needs an IPv4 loopback --url" in completed.stderr


DEFAULT_ANSWER = b'{"output":0, "default" : true}'  # split mid-key by the chunked framing


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@pytest.mark.parametrize("body", [ANSWER, DEFAULT_ANSWER], ids=["model", "default"])
def test_answers_are_counted_however_their_body_is_delimited(framing, body):
    """The response parser finds each answer's end (length, chunks, the close) and its body."""
    http = DelayedHttpServer(framing=framing, body=body)
    try:
        report = run_loadgen(
            "--url", http.url, "--w1", "--connections", "2", "--warmup", "0.1", "--duration", "0.4"
        )  # fmt: skip
    finally:
        http.stop()
    assert report["errors"]["total"] == 0
    assert report["requests"] > 0
    assert report["status"] == {"200": report["requests"]}
    assert report["default_answers"] == (report["requests"] if body == DEFAULT_ANSWER else 0)
    # A close-delimited answer ends its connection: the generator reconnects for the next request.
    if framing == "close":
        assert report["reconnects"] >= report["requests"]
    else:
        assert report["reconnects"] == 0


def test_an_answer_nobody_asked_for_is_a_parse_error_not_the_next_answer():
    """Bytes that came with an answer were sent before the next request: they cannot answer it (the
    closed loop sends that request the moment the answer is read, so they once did, and counted)."""
    http = DelayedHttpServer(framing="twice")
    try:
        report = run_loadgen("--url", http.url, "--connections", "1", "--warmup", "0", "--duration", "0.3")
    finally:
        http.stop()
    assert report["errors"]["parse"] > 0
    # Every answer counted is one a request was sent for: never more than the server was asked.
    assert report["requests"] <= sum(http.request_heads.values())


def test_the_url_s_path_and_query_are_the_request_target(server):
    url = f"http://127.0.0.1:{server.port}/w1/predict?trace=1#fragment"
    report = run_loadgen("--url", url, "--connections", "1", "--warmup", "0", "--duration", "0.2")
    assert report["requests"] > 0
    heads = {head.split("\r\n")[0]: head for head in server.request_heads}
    assert set(heads) == {"POST /w1/predict?trace=1 HTTP/1.1"}
    assert f"Host: 127.0.0.1:{server.port}" in next(iter(heads.values())).split("\r\n")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://127.0.0.1:1/x", "must start with http://"),
        ("http://", "cannot parse --url"),
        ("http://[::1/x", "cannot parse --url"),
        ("http://user@127.0.0.1:1/x", "cannot parse --url"),
        ("http://127.0.0.1:0/x", "cannot parse the port"),
        ("http://127.0.0.1:65536/x", "cannot parse the port"),
        ("http://127.0.0.1:8o/x", "cannot parse the port"),
    ],
)
def test_bad_urls_are_refused(url, message):
    completed = run_loadgen("--url", url, "--duration", "0.1", check=False)
    assert completed.returncode == 2
    assert message in completed.stderr
