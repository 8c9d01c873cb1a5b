"""The query port's hostile cases, against the cluster's own frontend: parser bombs, slow and abusive
clients, connection and descriptor floods, stalled bodies, large answers, smuggling, 100-continue and
invalid UTF-8. The cluster runs with short timeouts and a low per-address cap (hostile_cluster's
QUERY_PORT_LIMITS), so each case takes seconds."""

from __future__ import annotations

import json
import resource
import socket
import statistics
import time

import hostile_models
from hostile_cluster import (
    BYSTANDER_APP,
    QUERY_PORT_LIMITS,
    SLO_MICROS,
    Case,
    HostileCluster,
    Outcome,
    attacker_address,
    percentile,
    raw_exchange,
    raw_read_all,
)

from clipper.deployers.python import deploy_python_closure

PREDICT = f"/{BYSTANDER_APP}/predict"


def post_request(
    path: str | bytes, body: bytes, extra_headers: bytes = b"", close: bool = True
) -> bytes:
    target = path if isinstance(path, bytes) else path.encode()
    return (
        b"POST "
        + target
        + f" HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
        + extra_headers
        + (b"Connection: close\r\n" if close else b"")
        + b"\r\n"
        + body
    )


def _cause(body: bytes | None) -> str:
    try:
        return str(json.loads(body or b"").get("cause", ""))
    except ValueError:
        return "(not JSON)"


# ---- parsers ----------------------------------------------------------------------------------------


def nesting_bombs(cluster: HostileCluster) -> Outcome:
    bomb = b'{"input": ' + b"[" * 120_000 + b"]" * 120_000 + b"}"
    seen = {}
    for path in (PREDICT, f"/{BYSTANDER_APP}/update"):
        status, body, _ = raw_exchange(cluster.query_port, post_request(path, bomb))
        seen[path] = f"{status} ({_cause(body)[:70]})"
    return Outcome(
        "; ".join(f"{path}: {seen[path]}" for path in seen),
        all(text.startswith("400 (") and "nest deeper" in text for text in seen.values()),
    )


def malformed_bodies(cluster: HostileCluster) -> Outcome:
    bodies = {
        "malformed": b'{"input": [1, 2',
        "wrong type": b'{"input": "abc"}',
        "NaN": b'{"input": [NaN]}',
        "1e400": b'{"input": [1e400]}',
    }
    statuses: dict[str, object] = {}
    for name, body in bodies.items():
        status, answer, _ = raw_exchange(cluster.query_port, post_request(PREDICT, body))
        schema_named = "doubles" in _cause(answer) or "input" in _cause(answer)
        statuses[name] = status if schema_named else f"{status} naming no schema"
    # Over the body limit: 413 as soon as the headers say so, or once a chunked body passes it.
    head = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n".encode()
    statuses["10 MB"], _, _ = raw_exchange(cluster.query_port, head, timeout_s=5)
    statuses["100 MB chunked"] = chunked_flood(cluster.query_port, 100 * 1024 * 1024)
    expected = {"malformed": 400, "wrong type": 400, "NaN": 400, "1e400": 400}
    expected |= {"10 MB": 413, "100 MB chunked": 413}
    return Outcome(f"{statuses}", statuses == expected)


def chunked_flood(port: int, total: int) -> int | None:
    """Sends up to `total` bytes of chunked body, 1 MiB a chunk, until the server answers."""
    chunk = b"%x\r\n" % (1 << 20) + b"1" * (1 << 20) + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), 10, ("127.0.0.2", 0)) as sock:
        sock.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            for _ in range(total >> 20):
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed: read what it said
        try:
            answer = sock.recv(4096)
        except OSError:
            return None
    return int(answer.split(b" ", 2)[1]) if answer else None


def invalid_utf8(cluster: HostileCluster) -> Outcome:
    if "strings-app" not in cluster.conn.get_all_apps():
        cluster.conn.register_application("strings-app", "strings", "none", SLO_MICROS)
    return invalid_utf8_answers(cluster.query_port, "strings-app")


def invalid_utf8_answers(port: int, strings_app: str) -> Outcome:
    """An app name and a `strings` input that are not UTF-8, sent to the query port at `port`.

    Raw bytes over 0x7f are not allowed in a request target (RFC 9112, RFC 3986: clients percent-encode
    them); the request parser (llhttp, strict) refuses the request with 400 before any app is looked up,
    and the refusal is JSON naming the parser's reason."""
    status_name, body_name, _ = raw_exchange(
        port, post_request(b"/bad\xff\xfename/predict", b'{"input":[1]}')
    )
    try:
        cause = json.loads(body_name.decode("utf-8"))["cause"]
        valid_json = cause.startswith("malformed HTTP request: ")
    except (ValueError, KeyError, AttributeError):
        valid_json = False
    status_input, body_input, _ = raw_exchange(
        port, post_request(f"/{strings_app}/predict", b'{"input": "caf\xe9 \xff"}')
    )
    return Outcome(
        f"app name: {status_name}, valid JSON naming the parser's reason: {valid_json}; "
        f"strings input: {status_input} ({_cause(body_input)[:50]})",
        status_name == 400 and valid_json and status_input == 400,
    )


# ---- slow and abusive clients ------------------------------------------------------------------------


def _timed_close(cluster: HostileCluster, data: bytes, wait_s: float) -> tuple[bytes, float]:
    return raw_read_all(cluster.query_port, data, timeout_s=wait_s)


def headers_never_finished(cluster: HostileCluster) -> Outcome:
    limit_s = QUERY_PORT_LIMITS["header_timeout_millis"] / 1000
    answer, elapsed = _timed_close(cluster, f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n".encode(), 30)
    status = answer.split(b" ", 2)[1].decode() if answer else "nothing"
    return Outcome(
        f"{status} after {elapsed:.1f} s (timeout {limit_s:.0f} s)",
        answer.startswith(b"HTTP/1.1 408 ") and limit_s - 0.1 < elapsed < limit_s + 2,
    )


def body_never_finished(cluster: HostileCluster) -> Outcome:
    limit_s = QUERY_PORT_LIMITS["body_timeout_millis"] / 1000
    request = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n".encode()
    answer, elapsed = _timed_close(cluster, request + b'{"input":', 30)
    status = answer.split(b" ", 2)[1].decode() if answer else "nothing"
    return Outcome(
        f"{status} after {elapsed:.1f} s (timeout {limit_s:.0f} s)",
        answer.startswith(b"HTTP/1.1 408 ") and limit_s - 0.1 < elapsed < limit_s + 2,
    )


def idle_connection(cluster: HostileCluster) -> Outcome:
    limit_s = QUERY_PORT_LIMITS["idle_timeout_millis"] / 1000
    answer, elapsed = _timed_close(cluster, b"", 30)
    return Outcome(
        f"closed after {elapsed:.1f} s, {len(answer)} bytes sent (timeout {limit_s:.0f} s)",
        answer == b"" and limit_s - 0.1 < elapsed < limit_s + 2,
    )


def huge_headers(cluster: HostileCluster) -> Outcome:
    big = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 100_000}\r\n\r\n".encode()
    many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n"
    status_big, _, _ = raw_exchange(cluster.query_port, big)
    status_many, _, _ = raw_exchange(cluster.query_port, many)
    return Outcome(
        f"100 KB header: {status_big}; 200 headers: {status_many}",
        status_big == status_many == 431,
    )


def _slow_connections(count: int, port: int) -> list[socket.socket]:
    opened = []
    for index in range(count):
        sock = socket.socket()
        sock.bind((attacker_address(index), 0))
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        opened.append(sock)
    return opened


def _query_latencies_ms(cluster: HostileCluster, count: int) -> tuple[list[float], int]:
    latencies, failed = [], 0
    for _ in range(count):
        try:
            status, answer, seconds = cluster.query(BYSTANDER_APP, {"input": [1.0, 2.0]})
            if status == 200 and answer["default"] is False:
                latencies.append(seconds * 1000)
            else:
                failed += 1
        except OSError:
            failed += 1
    return latencies, failed


def slowloris_2000(cluster: HostileCluster) -> Outcome:
    before, _ = _query_latencies_ms(cluster, 100)
    attackers = _slow_connections(2000, cluster.query_port)
    try:
        time.sleep(0.5)
        for sock in attackers:
            try:
                sock.send(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n".encode())  # and never more
            except OSError:
                pass
        time.sleep(0.2)
        threads = cluster.threads()
        during, failed = _query_latencies_ms(cluster, 100)
    finally:
        for sock in attackers:
            sock.close()
    median_before, median_during = statistics.median(before), statistics.median(during or [0])
    return Outcome(
        f"2000 slow connections, frontend threads {threads}: a fresh connection's query median "
        f"{median_before:.1f} -> {median_during:.1f} ms, p99 {percentile(before, 0.99):.1f} -> "
        f"{percentile(during, 0.99):.1f} ms, {failed} of 100 failed",
        failed == 0 and median_during < median_before * 3 + 5,
    )


def connection_cap_per_address(cluster: HostileCluster) -> Outcome:
    cap = QUERY_PORT_LIMITS["max_connections_per_client_address"]
    held = []
    try:
        for _ in range(cap):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", cluster.query_port))
            held.append(sock)
        time.sleep(0.3)
        extra_status, extra_body, _ = raw_exchange(cluster.query_port, b"", timeout_s=5)
        retry_after = b"Retry-After" in (extra_body or b"") or extra_status == 503
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        held[0].settimeout(5)
        veteran = held[0].recv(4096).startswith(b"HTTP/1.1 200")
        other_address, _, _ = raw_exchange(
            cluster.query_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            source="127.0.0.3",
        )  # fmt: skip
    finally:
        for sock in held:
            sock.close()
    return Outcome(
        f"{cap} held from 127.0.0.2; one more: {extra_status}; a held one served: {veteran}; "
        f"127.0.0.3 served: {other_address}",
        extra_status == 503 and retry_after and veteran and other_address == 200,
    )


def _wait_for_new_connections(cluster: HostileCluster, limit_s: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        try:
            status, _, _ = raw_exchange(
                cluster.query_port,
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                source="127.0.0.1",
                timeout_s=1,
            )
            if status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.02)
    return None


def descriptor_exhaustion(cluster: HostileCluster) -> Outcome:
    """The frontend's descriptor limit lowered to what it has open plus 200, then 2,000 connections."""
    pid = cluster.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (cluster.open_descriptors() + 200, hard))
    flood = []
    try:
        flood = _slow_connections(2000, cluster.query_port)
        time.sleep(1.0)
        at_limit = cluster.open_descriptors()
        cpu_before = cluster.cpu_seconds()
        time.sleep(1.0)
        cpu_per_s = cluster.cpu_seconds() - cpu_before
        for sock in flood:
            sock.close()
        flood = []
        recovered_s = _wait_for_new_connections(cluster, 10)
        started = time.monotonic()
        admin_status = cluster.admin("GET", "/healthz")[0]
        admin_s = time.monotonic() - started
    finally:
        for sock in flood:
            sock.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    recovered = f"{recovered_s * 1000:.0f} ms" if recovered_s is not None else "not in 10 s"
    return Outcome(
        f"{at_limit} descriptors open at the limit, {cpu_per_s:.2f} s CPU/s there; after the flood "
        f"closed: query port serving in {recovered}, management API {admin_status} in "
        f"{admin_s * 1000:.0f} ms",
        cpu_per_s < 0.3 and recovered_s is not None and recovered_s < 2 and admin_status == 200,
    )


def stalled_bodies(cluster: HostileCluster) -> Outcome:
    """250 bodies announced near the 8 MiB limit, 64 KiB of each sent, then nothing."""
    rss_before = cluster.rss_kib()
    stalled = []
    try:
        for index in range(250):
            sock = socket.create_connection(("127.0.0.1", cluster.query_port), 5,
                                            (attacker_address(index), 0))  # fmt: skip
            sock.sendall(
                f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 8000000\r\n\r\n".encode()
                + b'{"input": ['
                + b"1," * 32_000
            )
            stalled.append(sock)
        time.sleep(0.5)
        grown_mib = (cluster.rss_kib() - rss_before) / 1024
    finally:
        for sock in stalled:
            sock.close()
    time.sleep(0.5)
    after_mib = (cluster.rss_kib() - rss_before) / 1024
    return Outcome(
        f"RSS +{grown_mib:.0f} MiB while 250 bodies stalled (16 MiB received), "
        f"+{after_mib:.0f} MiB after they closed",
        grown_mib < 100 and after_mib < 100,
    )


# ---- answers and framing -----------------------------------------------------------------------------


def large_answer_on_closing_connection(cluster: HostileCluster) -> Outcome:
    if "big-answer" not in cluster.conn.get_all_apps():
        cluster.conn.register_application("big-answer", "doubles", "-1.0", SLO_MICROS)
        deploy_python_closure(
            cluster.conn, "big-model", "1", "doubles", hostile_models.twelve_megabytes
        )
        cluster.conn.link_model_to_app("big-answer", "big-model")
        cluster.wait_until_answering("big-answer")
    received, _ = raw_read_all(
        cluster.query_port, post_request("/big-answer/predict", b'{"input": [3.0]}'), timeout_s=30
    )
    head, _, body = received.partition(b"\r\n\r\n")
    declared = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")))  # fmt: skip
    try:
        whole = len(json.loads(body)["output"]) == 12_000_000
    except (ValueError, KeyError, TypeError):
        whole = False
    return Outcome(
        f"Content-Length {declared}, {len(body)} bytes received before the close, output whole: "
        f"{whole}",
        declared == len(body) and whole,
    )


def smuggling(cluster: HostileCluster) -> Outcome:
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b'{"input":[1.0]}'
    shapes = {
        "CL+TE": f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n",
        "CL twice": f"Content-Length: {len(body)}\r\nContent-Length: {len(body)}\r\n",
        "CL conflicting": f"Content-Length: {len(body)}\r\nContent-Length: 2\r\n",
        "CL with sign": f"Content-Length: +{len(body)}\r\n",
    }
    seen = {}
    for name, lengths in shapes.items():
        request = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n{lengths}\r\n".encode() + body + smuggled
        received, _ = raw_read_all(cluster.query_port, request, timeout_s=5)
        answers = received.count(b"HTTP/1.1 ")
        status = received.split(b" ", 2)[1].decode() if received else "nothing"
        seen[name] = status if answers <= 1 else f"{status} and {answers - 1} more answered"
    return Outcome(f"{seen}", all(status == "400" for status in seen.values()))


def transfer_codings(cluster: HostileCluster) -> Outcome:
    """A coding before chunked ("gzip, chunked"): 501, and the request behind it never answered."""
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    chunked = b"f\r\n" + b'{"input":[1.0]}' + b"\r\n0\r\n\r\n"
    seen = {}
    for codings in ("gzip, chunked", "identity,chunked"):
        request = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {codings}\r\n\r\n".encode()
        received, _ = raw_read_all(cluster.query_port, request + chunked + smuggled, timeout_s=5)
        answers = received.count(b"HTTP/1.1 ")
        status = received.split(b" ", 2)[1].decode() if received else "nothing"
        seen[codings] = status if answers <= 1 else f"{status} and {answers - 1} more answered"
    return Outcome(f"{seen}", all(status == "501" for status in seen.values()))


def expect_continue(cluster: HostileCluster) -> Outcome:
    body = b'{"input": [1.0, 2.0]}'
    with socket.create_connection(("127.0.0.1", cluster.query_port), 5, ("127.0.0.2", 0)) as sock:
        sock.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        interim = sock.recv(4096)
        sock.sendall(body)
        final = sock.recv(65536)
    over, _, elapsed = raw_exchange(
        cluster.query_port,
        f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        "Content-Length: 100000000\r\n\r\n".encode(),
        timeout_s=5,
    )
    return Outcome(
        f"within the limit: {interim.strip().decode()!r} then "
        f"{final.split(b' ', 2)[1].decode()}; over it: {over} after {elapsed * 1000:.0f} ms",
        interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        and final.startswith(b"HTTP/1.1 200 ")
        and over == 413,
    )


CASES = [
    Case("query port: JSON nested 120,000 deep on /predict and /update", "400, no crash",
         nesting_bombs),
    Case("query port: malformed JSON, wrong type, NaN, 1e400; 10 MB and 100 MB chunked bodies",
         "400 naming the schema; 413 at the headers", malformed_bodies),
    Case("query port: invalid UTF-8 in an app name and a strings input",
         "400 (raw bytes in a target) as valid JSON; 400", invalid_utf8),
    Case("query port: headers never finished", "408 at the header timeout",
         headers_never_finished),
    Case("query port: body never finished", "408 at the body timeout", body_never_finished),
    Case("query port: connection that sends nothing", "closed at the idle timeout",
         idle_connection),
    Case("query port: 100 KB header, 200 headers", "431", huge_headers),
    Case("query port: 2000 slowloris connections (partial headers)",
         "a normal client not delayed, nothing failed", slowloris_2000),
    Case("query port: connections beyond the per-address cap",
         "503 + Retry-After beyond it; held and other addresses served",
         connection_cap_per_address),
    Case("query port: 2000 connections at the descriptor limit",
         "no spin; both ports serve within 2 s after", descriptor_exhaustion),
    Case("query port: 250 bodies stalled near the 8 MiB limit",
         "memory not reserved for announced bytes; released", stalled_bodies),
    Case("query port: 12 MB answer on a closing connection", "arrives whole",
         large_answer_on_closing_connection),
    Case("query port: request smuggling shapes", "400, smuggled request never answered",
         smuggling),
    Case("query port: transfer codings before chunked", "501, the request behind never answered",
         transfer_codings),
    Case("query port: Expect: 100-continue", "100 then 200; 413 at once over the limit",
         expect_continue),
]  # fmt: skip
