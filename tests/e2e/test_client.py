"""The query client (clipper.client) against a real cluster: answers, numpy and bytes inputs, feedback,
typed errors for each failing answer, timeouts, and one kept-alive connection reused across calls."""

import asyncio
import os
import re

import e2e_models
import numpy as np
import pytest
from e2e_support import free_ports, model_answer, start_cluster

from clipper.client import (
    AsyncClipperClient,
    BadInputError,
    ClientConnectionError,
    ClientTimeoutError,
    ClipperClient,
    PayloadTooLargeError,
    UnknownApplicationError,
)
from clipper.deployers.python import deploy_python_closure

BIG_SLO_MICROS = 20_000_000
MAX_BODY_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    conn = start_cluster(
        tmp_path_factory.mktemp("clusters"), "client", max_body_bytes=MAX_BODY_BYTES
    )
    try:
        conn.register_application("sum", "doubles", "-1.0", BIG_SLO_MICROS)
        deploy_python_closure(conn, "sum-model", "1", "doubles", e2e_models.sum_of_each)
        conn.link_model_to_app("sum", "sum-model")
        conn.register_application("shout", "bytes", "none", BIG_SLO_MICROS)
        deploy_python_closure(conn, "shout-bytes", "1", "bytes", e2e_models.shout)
        conn.link_model_to_app("shout", "shout-bytes")
        conn.register_application("slow", "doubles", "-1.0", BIG_SLO_MICROS)
        deploy_python_closure(conn, "slow-model", "1", "doubles", e2e_models.sleep_one_second)
        conn.link_model_to_app("slow", "slow-model")
        for app, body in (("sum", {"input": [0.0]}), ("shout", {"input": "YQ=="})):
            model_answer(conn, app, body, timeout_s=60)
        yield conn
    finally:
        conn.stop_all()


def connections_to(port):
    """Local ports of this process's established TCP connections to 127.0.0.1:`port` (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
        if match:
            inodes.add(match.group(1))
    local_ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port and inode in inodes:
                    local_ports.append(int(local.rsplit(":", 1)[1], 16))
    return sorted(local_ports)


def query_port(conn):
    return int(conn.get_query_addr().rsplit(":", 1)[1])


def test_predict_answers_lists_and_numpy_arrays(conn):
    with ClipperClient(conn.get_query_addr()) as client:
        answer = client.predict("sum", [1.0, 2.0, 3.5])
        assert (answer.output, answer.default, answer.default_explanation) == (6.5, False, None)
        assert isinstance(answer.query_id, int)
        assert client.predict("sum", np.array([1, 2], dtype=np.int64)).output == 3.0
        assert client.predict("sum", np.array([0.5, 0.25], dtype=np.float32)).output == 0.75
        assert client.predict("sum", [2.0], version="1").output == 2.0
        assert client.predict("sum", [2.0], version=1, uid=7).output == 2.0


def test_predict_batch_answers_each_input_in_order(conn):
    with ClipperClient(conn.get_query_addr()) as client:
        answers = client.predict_batch("sum", [[1.0], [2.0, 2.0], np.array([0.5, 0.5])])
        assert [a.output for a in answers] == [1.0, 4.0, 1.0]
        assert len({a.query_id for a in answers}) == 3
        rows = np.arange(6, dtype=np.float64).reshape(3, 2)
        assert [a.output for a in client.predict_batch("sum", rows)] == [1.0, 5.0, 9.0]


def test_bytes_inputs_are_base64_encoded_for_the_caller(conn):
    with ClipperClient(conn.get_query_addr()) as client:
        assert client.predict("shout", b"hello").output == "HELLO"
        assert [a.output for a in client.predict_batch("shout", [b"a", bytearray(b"bc")])] == [
            "A",
            "BC",
        ]


def test_update_is_acknowledged(conn):
    with ClipperClient(conn.get_query_addr()) as client:
        ack = client.update("sum", uid=3, input=[1.0, 2.0], label=1.0)
        assert ack["feedback_applied"] is True
        with pytest.raises(BadInputError, match="input"):
            client.update("sum", uid=3, input="not numbers", label=1.0)


def test_one_connection_is_reused_across_calls(conn):
    port = query_port(conn)
    assert connections_to(port) == []
    with ClipperClient(conn.get_query_addr()) as client:
        client.predict("sum", [1.0])
        first = connections_to(port)
        assert len(first) == 1
        for value in range(20):
            assert client.predict("sum", [float(value)]).output == float(value)
        client.predict_batch("sum", [[1.0], [2.0]])
        client.update("sum", 1, [1.0], 0.0)
        assert connections_to(port) == first
    assert connections_to(port) == []


def test_errors_are_typed_and_the_connection_survives_them(conn):
    port = query_port(conn)
    with ClipperClient(conn.get_query_addr()) as client:
        with pytest.raises(BadInputError) as bad_input:
            client.predict("sum", "not numbers")
        assert bad_input.value.status_code == 400
        assert "Expected JSON schema" in bad_input.value.cause
        with pytest.raises(BadInputError, match="9.*sum-model"):
            client.predict("sum", [1.0], version="9")
        with pytest.raises(UnknownApplicationError) as unknown:
            client.predict("no-such-app", [1.0])
        assert unknown.value.status_code == 404 and "no-such-app" in str(unknown.value)
        assert len(connections_to(port)) == 1
        assert client.predict("sum", [1.0]).output == 1.0
        with pytest.raises(PayloadTooLargeError) as too_large:
            client.predict_batch("sum", np.zeros((300, 100)))
        assert too_large.value.status_code == 413
        # The server closes a connection after a 413; the client opens a new one by itself.
        assert client.predict("sum", [4.0]).output == 4.0


def test_a_call_past_the_timeout_raises_client_timeout_error(conn):
    with ClipperClient(conn.get_query_addr(), timeout_s=0.3) as client:
        with pytest.raises(ClientTimeoutError, match="0.3 s"):
            client.predict("slow", [1.0])
        assert client.predict("sum", [1.5]).output == 1.5


def test_a_cluster_that_is_not_running_raises_client_connection_error():
    (port,) = free_ports(1)
    with (
        ClipperClient(f"127.0.0.1:{port}", timeout_s=5) as client,
        pytest.raises(ClientConnectionError, match="clipper status"),
    ):
        client.predict("sum", [1.0])


def test_the_async_client_answers_concurrent_calls(conn):
    async def scenario():
        async with AsyncClipperClient(conn.get_query_addr(), max_connections=4) as client:
            answers = await asyncio.gather(*(client.predict("sum", [float(i)]) for i in range(12)))
            batch = await client.predict_batch("sum", np.ones((2, 3)))
            ack = await client.update("sum", 2, [1.0], 1.0)
            with pytest.raises(UnknownApplicationError):
                await client.predict("no-such-app", [1.0])
            with pytest.raises(BadInputError):
                await client.predict("sum", "text")
            # An input no other test asks for: the sync timeout test's [1.0] is answered a second
            # later and cached, and a cached answer would beat the 0.3 s timeout.
            async with AsyncClipperClient(conn.get_query_addr(), timeout_s=0.3) as hurried:
                with pytest.raises(ClientTimeoutError):
                    await hurried.predict("slow", [2.0])
            return answers, batch, ack

    answers, batch, ack = asyncio.run(scenario())
    assert [a.output for a in answers] == [float(i) for i in range(12)]
    assert [a.output for a in batch] == [3.0, 3.0]
    assert ack["feedback_applied"] is True


def test_the_async_client_reuses_one_connection_for_sequential_calls(conn):
    port = query_port(conn)

    async def scenario():
        async with AsyncClipperClient(conn.get_query_addr()) as client:
            await client.predict("sum", [1.0])
            first = connections_to(port)
            for value in range(10):
                assert (await client.predict("sum", [float(value)])).output == float(value)
            return first, connections_to(port)

    first, last = asyncio.run(scenario())
    assert len(first) == 1 and last == first
    assert connections_to(port) == []
