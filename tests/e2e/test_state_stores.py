"""The configuration outlives the frontend, with either state store: a killed frontend, restarted,
restores every app, model, version, link and batching setting, and the running replicas reconnect.
With Redis, a second frontend of the cluster follows the first one's changes as they are made."""

import os
import signal

import e2e_models
import pytest
from e2e_support import free_ports, model_answer, predict, wait_for

from clipper import ClipperConnection, LocalContainerManager
from clipper.deployers.python import deploy_python_closure
from clipper.management.endpoints import process_is_alive

SLO_MICROS = 20_000_000


def manager_options(tmp_path, name, store, redis_address, state_dir_name=None):
    query, management, rpc, metrics = free_ports(4)
    options = {
        "cluster_name": name,
        "clipper_query_port": query,
        "clipper_management_port": management,
        "clipper_rpc_port": rpc,
        "prometheus_port": metrics,
        "state_dir": tmp_path / (state_dir_name or name),
        "heartbeat_timeout_millis": 1000,
    }
    if store == "redis":
        host, port = redis_address.split(":")
        options.update(redis_ip=host, redis_port=int(port))
    return options


@pytest.fixture(params=["embedded", "redis"])
def store(request):
    return request.param


@pytest.fixture
def redis_address_if_needed(request, store):
    return request.getfixturevalue("redis_address") if store == "redis" else None


def test_a_killed_frontend_restarts_with_its_configuration_and_replicas_reconnect(
    tmp_path, store, redis_address_if_needed
):
    options = manager_options(tmp_path, "restart", store, redis_address_if_needed)
    conn = ClipperConnection(LocalContainerManager(**options), replica_start_timeout_s=60)
    conn.start_clipper()
    try:
        conn.register_application("sum", "doubles", "-1.0", SLO_MICROS)
        conn.register_application("spare", "strings", "none", 50000)
        deploy_python_closure(conn, "sum-model", "1", "doubles", e2e_models.tagged_sum("v1"))
        deploy_python_closure(
            conn, "sum-model", "2", "doubles", e2e_models.tagged_sum("v2"),
            batch_size=4, max_batch_size=8, batch_wait_timeout_micros=100,
        )  # fmt: skip
        conn.set_model_version("sum-model", "1")  # rolled back: "1" current, "2" kept
        conn.link_model_to_app("sum", "sum-model")
        assert model_answer(conn, "sum", {"input": [1.0]})["output"]["version"] == "v1"
        before = {
            "apps": conn.get_all_apps(verbose=True),
            "models": conn.get_all_models(verbose=True),
        }

        frontend = conn.cm.frontend_pid()
        os.kill(frontend, signal.SIGKILL)  # no clean shutdown: what was stored is all there is
        wait_for(lambda: not process_is_alive(frontend), what="the frontend to die")

        conn.start_clipper()  # same ports and store; the replica processes kept running
        assert conn.get_all_apps(verbose=True) == before["apps"]
        assert conn.get_all_models(verbose=True) == before["models"]
        assert conn.get_current_model_version("sum-model") == "1"
        assert conn.get_linked_models("sum") == ["sum-model"]
        assert conn.get_model_batching("sum-model", "2")["configured"] == {
            "batch_size": 4,
            "max_batch_size": 8,
            "batch_wait_timeout_micros": 100,
        }
        answer = model_answer(conn, "sum", {"input": [1.0, 2.0]})
        assert answer["output"] == {"version": "v1", "sum": 3.0}
        wait_for(
            lambda: sorted(conn.get_all_model_replicas()) == ["sum-model:1:0", "sum-model:2:0"],
            what="both replicas to reconnect",
        )
        status, answer, _ = predict(conn, "sum", {"input": [2.0], "version": "2"})
        assert status == 200 and answer["output"] == {"version": "v2", "sum": 2.0}
    finally:
        conn.stop_all(clear_state=True)
    conn.start_clipper()  # clear_state forgot everything, in either store
    try:
        assert conn.get_all_apps() == [] and conn.get_all_models() == []
    finally:
        conn.stop_all()


def test_frontends_sharing_redis_follow_each_others_changes(tmp_path, redis_address):
    first = ClipperConnection(
        LocalContainerManager(**manager_options(tmp_path, "shared", "redis", redis_address, "a"))
    )
    second = ClipperConnection(
        LocalContainerManager(**manager_options(tmp_path, "shared", "redis", redis_address, "b"))
    )
    first.start_clipper()
    try:
        second.start_clipper()
        first.register_application("made-on-first", "doubles", "-1.0", 100000)
        # The second frontend's engine serves the app as soon as its follower applies the change.
        status = wait_for(
            lambda: predict(second, "made-on-first", {"input": [1.0]})[0] == 200,
            timeout_s=5,
            what="the second frontend to serve an app made on the first",
        )
        assert status
        second.register_model("made-on-second", "1", "doubles")
        wait_for(
            lambda: "made-on-second:1" in first.get_all_models(),
            timeout_s=5,
            what="the first frontend to see a model registered on the second",
        )
        first.link_model_to_app("made-on-first", "made-on-second")
        assert wait_for(
            lambda: second.get_linked_models("made-on-first") == ["made-on-second"], timeout_s=5
        )
        # A different cluster on the same Redis sees none of it.
        other = ClipperConnection(
            LocalContainerManager(**manager_options(tmp_path, "other", "redis", redis_address))
        )
        other.start_clipper()
        try:
            assert other.get_all_apps() == []
        finally:
            other.stop_all()
    finally:
        second.stop_all()
        first.stop_all()


def test_a_stopped_cluster_starts_again_with_its_replicas(tmp_path):
    options = manager_options(tmp_path, "again", "embedded", None)
    conn = ClipperConnection(LocalContainerManager(**options), replica_start_timeout_s=60)
    conn.start_clipper()
    try:
        conn.register_application("sum", "doubles", "-1.0", SLO_MICROS)
        deploy_python_closure(
            conn, "sum-model", "1", "doubles", e2e_models.tagged_sum("v1"), num_replicas=2
        )
        conn.link_model_to_app("sum", "sum-model")
        conn.stop_all()
        assert conn.cm.list_replicas() == []

        conn.start_clipper()
        assert conn.get_num_replicas("sum-model") == 2
        assert model_answer(conn, "sum", {"input": [1.0]})["output"]["version"] == "v1"
    finally:
        conn.stop_all()
