"""Queries against a real cluster: right answers for single, batch and concurrent queries, defaults
when no model is linked, and 4xx JSON errors after which the server keeps serving."""

import asyncio
import json

import e2e_models
import pytest
from e2e_support import free_ports, post, predict, start_cluster

from clipper.deployers.python import deploy_python_closure

BIG_SLO_MICROS = 20_000_000  # correctness tests: a default answer here would be a failure


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    conn = start_cluster(tmp_path_factory.mktemp("clusters"), "queries")
    try:
        conn.register_application("sum", "doubles", "-1.0", BIG_SLO_MICROS)
        deploy_python_closure(conn, "sum-model", "1", "doubles", e2e_models.sum_of_each)
        conn.link_model_to_app("sum", "sum-model")
        conn.register_application("words", "strings", "none", BIG_SLO_MICROS)
        deploy_python_closure(conn, "shout", "1", "strings", e2e_models.shout)
        conn.link_model_to_app("words", "shout")
        conn.register_application("unlinked", "doubles", "-1.0", 100000)
        yield conn
    finally:
        conn.stop_all()


def assert_model_answer(answer, expected):
    assert answer["default"] is False, answer
    assert "default_explanation" not in answer
    assert answer["output"] == expected
    assert isinstance(answer["query_id"], int)


def test_a_single_query_gets_the_models_answer(conn):
    status, answer, _ = predict(conn, "sum", {"input": [1.0, 2.0, 3.5]})
    assert status == 200
    assert_model_answer(answer, 6.5)


def test_integers_in_a_doubles_input_are_accepted(conn):
    status, answer, _ = predict(conn, "sum", {"input": [1, 2]})
    assert status == 200
    assert_model_answer(answer, 3.0)


def test_a_batch_query_answers_each_input_in_order(conn):
    status, answer, _ = predict(
        conn, "sum", {"input_batch": [[1.0], [2.0, 2.0], [0.5, 0.25, 0.25]]}
    )
    assert status == 200
    predictions = answer["batch_predictions"]
    assert [p["output"] for p in predictions] == [1.0, 4.0, 1.0]
    assert all(p["default"] is False for p in predictions)
    assert len({p["query_id"] for p in predictions}) == 3


def test_a_string_output_that_is_not_json_is_answered_as_a_string(conn):
    status, answer, _ = predict(conn, "words", {"input": "hello clipper"})
    assert status == 200
    assert_model_answer(answer, "HELLO CLIPPER")


def test_a_query_may_name_the_model_version(conn):
    status, answer, _ = predict(conn, "sum", {"input": [2.0], "version": "1"})
    assert status == 200
    assert_model_answer(answer, 2.0)
    status, error, _ = predict(conn, "sum", {"input": [2.0], "version": "9"})
    assert status == 400
    assert "9" in error["cause"] and "sum-model" in error["cause"]


def test_no_linked_model_answers_the_default_at_once(conn):
    status, answer, elapsed = predict(conn, "unlinked", {"input": [1.0]})
    assert status == 200
    assert answer["default"] is True
    assert answer["output"] == -1.0
    assert "no model" in answer["default_explanation"].lower()
    assert elapsed < 1.0


async def _raw_predict(host, port, app, body):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            (
                f"POST /{app}/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return status, json.loads(await reader.readexactly(length))
    finally:
        writer.close()


def test_2000_concurrent_distinct_queries_each_get_their_own_answer(conn):
    host, port = conn.get_query_addr().rsplit(":", 1)
    count = 2000

    async def run_all():
        tasks = [
            _raw_predict(
                host, int(port), "sum", json.dumps({"input": [float(i), 0.5, 0.25]}).encode()
            )
            for i in range(count)
        ]
        return await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)

    results = asyncio.run(run_all())
    assert [status for status, _ in results] == [200] * count
    defaults = [answer for _, answer in results if answer["default"]]
    assert defaults == []
    assert [answer["output"] for _, answer in results] == [i + 0.75 for i in range(count)]
    assert len({answer["query_id"] for _, answer in results}) == count


def _ten_megabytes():
    return b'{"input": [' + b"1.0," * (10 * 1024 * 1024 // 4) + b"1.0]}"


@pytest.mark.parametrize(
    "path, body, status, fragment",
    [
        ("/sum/predict", b'{"input": [1.0, 2.0', 400, "Error parsing JSON"),
        ("/sum/predict", b'{"input": "text"}', 400, "Expected JSON schema"),
        ("/sum/predict", b'{"input": [1.0, "x"]}', 400, "Expected JSON schema"),
        ("/sum/predict", b'{"inputs": [1.0]}', 400, "input"),
        ("/words/predict", b'{"input": [1.0]}', 400, "Expected JSON schema"),
        ("/nope/predict", b'{"input": [1.0]}', 404, "nope"),
        ("/sum/predict", None, 413, ""),
        ("/sum/predict", b'{"input": ' + b"[" * 120_000 + b"]" * 120_000 + b"}", 400, "nest deeper"),
        ("/sum/update", b'{"uid": 1, "label": 1, "input": ' + b"[" * 120_000 + b"}", 400, "nest deeper"),
    ],
    ids=[
        "malformed",
        "wrong-type",
        "wrong-element",
        "missing-input",
        "wrong-app-type",
        "unknown-app",
        "10MB",
        "nested-120k-predict",
        "nested-120k-update",
    ],
)
def test_bad_requests_get_4xx_json_errors_and_the_server_keeps_serving(
    conn, path, body, status, fragment
):
    body = _ten_megabytes() if body is None else body
    try:
        answered, error, _ = post(conn.get_query_addr(), path, body)
    except (BrokenPipeError, ConnectionResetError):
        # Only for the oversized body: the server may answer 413 and close while we are still sending.
        assert status == 413
    else:
        assert answered == status
        assert set(error) >= {"error", "cause"}
        assert fragment in error["cause"]
    ok, answer, _ = predict(conn, "sum", {"input": [4.0]})
    assert ok == 200
    assert_model_answer(answer, 4.0)


def test_metrics_and_health(conn):
    import urllib.request

    with urllib.request.urlopen(f"http://{conn.get_query_addr()}/healthz", timeout=10) as response:
        assert response.status == 200
    metrics = conn.inspect_instance()
    assert any(name.startswith("clipper_app_requests_total") for name in metrics)
    replicas = conn.get_all_model_replicas(verbose=True)
    assert {(r["model_name"], r["model_version"]) for r in replicas} == {
        ("sum-model", "1"),
        ("shout", "1"),
    }


def read_http_responses(sock, count):
    """Reads `count` HTTP/1.1 responses (Content-Length framed) from a socket, in arrival order."""
    buffer = b""
    responses = []
    while len(responses) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end].decode()
            length = int(
                next(
                    line.split(":")[1]
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-length")
                )
            )
            if len(buffer) >= head_end + 4 + length:
                responses.append((head, buffer[head_end + 4 : head_end + 4 + length]))
                buffer = buffer[head_end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(responses)} of {count} responses"
        buffer += chunk
    return responses, buffer


def test_pipelined_requests_are_answered_in_order_even_when_later_ones_finish_first(conn):
    # The model answers the first request after a replica round trip; /healthz and the malformed
    # body are answered at once, so their answers must wait for it. The last asks to close.
    import socket

    host, port = conn.get_query_addr().rsplit(":", 1)
    requests = [
        ("POST", "/sum/predict", json.dumps({"input": [1.0, 2.0, 3.5]}), ""),
        ("GET", "/healthz", "", ""),
        ("POST", "/sum/predict", "{not json", ""),
        ("POST", "/sum/predict", json.dumps({"input": [10.0]}), "Connection: close\r\n"),
    ]
    raw = b"".join(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n{body}".encode()
        for method, path, body, extra in requests
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        responses, rest = read_http_responses(sock, len(requests))
        assert sock.recv(1) == b"", "the server must close after the Connection: close answer"
    assert rest == b""
    statuses = [int(head.split(" ")[1]) for head, _ in responses]
    assert statuses == [200, 200, 400, 200]
    assert_model_answer(json.loads(responses[0][1]), 6.5)
    assert json.loads(responses[2][1])["error"]
    assert_model_answer(json.loads(responses[3][1]), 10.0)
    assert "Connection: close" in responses[3][0]


def test_ports_are_free_helper_gives_distinct_ports():
    ports = free_ports(8)
    assert len(set(ports)) == 8
