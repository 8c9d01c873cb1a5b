"""What is specific to the Redis store: its keys, one cluster's state beside another's, change
notifications across connections, and errors that say where Redis was expected."""

import json
import shutil
import socket
import subprocess
import threading
import time

import pytest

from clipper.exceptions import StaleStateError, StateStoreError
from clipper.state import Application, ClusterState, RedisStateStore, open_state_store
from clipper.state.redis_store import parse_redis_address


def host_port(address):
    host, port = address.split(":")
    return host, int(port)


def test_the_state_lives_under_the_clusters_keys(redis_address, redis_server):
    with RedisStateStore(*host_port(redis_address), cluster_name="blue") as store:
        store.save(
            ClusterState(applications={"a": Application("a", "ints", "0", 1000)}),
            expected_revision=0,
        )
        assert store.shared
        assert store.description == f"redis://{redis_address}/0 key clipper:blue:state"
    stored = redis_server.client.hgetall("clipper:blue:state")
    assert int(stored[b"revision"]) == 1
    assert json.loads(stored[b"state"])["applications"][0]["name"] == "a"


def test_clusters_sharing_a_server_do_not_see_each_other(redis_address):
    blue = RedisStateStore(*host_port(redis_address), cluster_name="blue")
    green = RedisStateStore(*host_port(redis_address), cluster_name="green")
    try:
        blue.save(
            ClusterState(applications={"a": Application("a", "ints", "0", 1000)}),
            expected_revision=0,
        )
        assert green.load() == ClusterState()
        green.clear()
        assert "a" in blue.load().applications
    finally:
        blue.close()
        green.close()


def test_two_writers_never_lose_an_update(redis_address):
    first = RedisStateStore(*host_port(redis_address), cluster_name="race")
    second = RedisStateStore(*host_port(redis_address), cluster_name="race")
    try:
        first.save(ClusterState(), expected_revision=0)
        second.save(ClusterState(), expected_revision=1)
        with pytest.raises(StaleStateError, match="at revision 2, not 1"):
            first.save(ClusterState(), expected_revision=1)
        # The change notification reaches a waiter on another connection.
        waiter_result = []
        waiter = threading.Thread(
            target=lambda: waiter_result.append(first.wait_for_change(2, timeout_s=10))
        )
        waiter.start()
        second.save(ClusterState(), expected_revision=2)
        waiter.join(timeout=10)
        assert waiter_result == [3]
    finally:
        first.close()
        second.close()


def test_open_state_store_picks_redis_for_an_address(redis_address, tmp_path):
    with open_state_store(tmp_path, redis_address, cluster_name="c") as store:
        assert isinstance(store, RedisStateStore)
        assert store.cluster_name == "c"
    assert not (tmp_path / "state.json").exists()


def test_an_unreachable_server_says_where_redis_was_expected():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(
        StateStoreError, match=f"cannot reach Redis at 127.0.0.1:{port}.*redis_port"
    ):
        RedisStateStore("127.0.0.1", port, connect_timeout_s=0.2)


def test_a_corrupt_value_is_reported(redis_address, redis_server):
    redis_server.client.hset("clipper:bad:state", mapping={"revision": 1, "state": "{oops"})
    with (
        RedisStateStore(*host_port(redis_address), cluster_name="bad") as store,
        pytest.raises(StateStoreError, match="DEL clipper:bad:state"),
    ):
        store.load()


def test_redis_addresses_are_parsed():
    assert parse_redis_address("10.0.0.1:7000") == ("10.0.0.1", 7000)
    assert parse_redis_address("redis-host") == ("redis-host", 6379)
    for bad in ("host:0", "host:x", ":6379"):
        with pytest.raises(StateStoreError, match="host:port"):
            parse_redis_address(bad)


def start_redis(port, directory):
    """A redis-server of this test's own on `port` (the session's server must not be restarted)."""
    process = subprocess.Popen(
        [shutil.which("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(directory), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    pytest.fail(f"redis-server did not start on port {port}")


def stop_redis(process):
    process.kill()
    process.wait(timeout=10)


def test_the_store_works_again_after_redis_restarts(redis_server, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_redis(port, tmp_path)
    try:
        with RedisStateStore("127.0.0.1", port, cluster_name="restart") as store:
            saved = store.save(ClusterState(), expected_revision=0)
            assert store.wait_for_change(saved.revision, 0.05) == saved.revision  # subscribed
            stop_redis(server)
            with pytest.raises(StateStoreError, match=f"check that Redis at 127.0.0.1:{port}"):
                store.load()
            with pytest.raises(StateStoreError):
                store.wait_for_change(saved.revision, 0.2)
            server = start_redis(port, tmp_path)  # empty: persistence is off
            assert store.load().revision == 0
            assert store.save(ClusterState(), expected_revision=0).revision == 1
            # The change channel works again too: another client's save wakes a waiter.
            with RedisStateStore("127.0.0.1", port, cluster_name="restart") as other:
                timer = threading.Timer(
                    0.2, lambda: other.save(ClusterState(), expected_revision=1)
                )
                timer.start()
                started = time.monotonic()
                assert store.wait_for_change(1, 5.0) == 2
                assert time.monotonic() - started < 4.0
                timer.join()
    finally:
        stop_redis(server)
