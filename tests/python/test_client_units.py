"""Units of clipper.client: input encoding, argument checks, and the mapping of overload answers
(503/429 with Retry-After). The frontend's refusals under overload are brought about with real
replicas in tests/e2e/test_overload.py; here a small stdlib HTTP server on loopback gives every variant
of those answers (with and without Retry-After); every other answer is checked against a real cluster
in tests/e2e/test_client.py."""

import asyncio
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from clipper.client import (
    AsyncClipperClient,
    ClipperClient,
    OverloadedError,
    ServerError,
    _json_value,
    _predict_batch_body,
    _predict_body,
    _update_body,
)


def test_inputs_become_json_values():
    assert _json_value(np.array([1, 2], dtype=np.int32)) == [1, 2]
    assert _json_value(np.float32(0.5)) == 0.5
    assert _json_value((1.0, np.float64(2.0))) == [1.0, 2.0]
    assert _json_value(b"\x00\xff") == base64.b64encode(b"\x00\xff").decode()
    assert _json_value(memoryview(b"ab")) == "YWI="
    assert _json_value("text") == "text"


def test_bodies_carry_version_and_uid_only_when_given():
    assert json.loads(_predict_body([1.0], None, None)) == {"input": [1.0]}
    assert json.loads(_predict_body([1.0], 2, 5)) == {"input": [1.0], "version": "2", "uid": 5}
    assert json.loads(_predict_batch_body(np.eye(2), None, None)) == {
        "input_batch": [[1.0, 0.0], [0.0, 1.0]]
    }
    assert json.loads(_update_body(4, [1.0], 1)) == {"uid": 4, "input": [1.0], "label": 1}


@pytest.mark.parametrize(
    "bad_input, error",
    [(float("nan"), ValueError), ([1.0, float("inf")], ValueError), (object(), TypeError)],
)
def test_inputs_json_cannot_carry_are_refused_before_sending(bad_input, error):
    with pytest.raises(error):
        _predict_body(bad_input, None, None)


def test_predict_batch_refuses_a_single_input():
    for single in ("text", b"bytes", np.array([1.0, 2.0])):
        with pytest.raises(TypeError, match="predict"):
            _predict_batch_body(single, None, None)


def test_update_checks_uid_and_label():
    with pytest.raises(TypeError, match="uid"):
        _update_body("3", [1.0], 1.0)
    with pytest.raises(TypeError, match="label"):
        _update_body(3, [1.0], "yes")


def test_bad_client_options_are_refused():
    with pytest.raises(ValueError, match="timeout_s"):
        ClipperClient("127.0.0.1:1", timeout_s=0)
    with pytest.raises(ValueError, match="max_connections"):
        ClipperClient("127.0.0.1:1", max_connections=0)
    with pytest.raises(ValueError, match="host:port"):
        ClipperClient("ftp://example")


@pytest.fixture
def shedding_server():
    """Answers POST /busy/predict with 503 + Retry-After: 2, /limited/predict with 429 and no
    Retry-After, anything else with 500."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            status, headers = {
                "/busy/predict": (503, {"Retry-After": "2"}),
                "/limited/predict": (429, {}),
            }.get(self.path, (500, {}))
            body = json.dumps({"error": "Overloaded", "cause": "queue full"}).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_overload_answers_raise_overloaded_error_with_retry_after(shedding_server):
    with ClipperClient(shedding_server, timeout_s=5) as client:
        with pytest.raises(OverloadedError, match="retry after 2 s") as busy:
            client.predict("busy", [1.0])
        assert (busy.value.status_code, busy.value.retry_after_s) == (503, 2.0)
        assert busy.value.cause == "queue full"
        with pytest.raises(OverloadedError) as limited:
            client.predict("limited", [1.0])
        assert (limited.value.status_code, limited.value.retry_after_s) == (429, None)
        with pytest.raises(ServerError) as failed:
            client.update("other", 1, [1.0], 1.0)
        assert failed.value.status_code == 500


def test_the_async_client_maps_overload_the_same_way(shedding_server):
    async def scenario():
        async with AsyncClipperClient(shedding_server, timeout_s=5) as client:
            with pytest.raises(OverloadedError) as busy:
                await client.predict_batch("busy", [[1.0]])
            return busy.value.retry_after_s

    assert asyncio.run(scenario()) == 2.0
