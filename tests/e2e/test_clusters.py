"""Cluster-level behaviour: two clusters side by side, and a frontend restart that restores the
configuration while the replicas reconnect."""

import os
import signal
import time

import e2e_models
from e2e_support import predict

from clipper import ClipperConnection, LocalContainerManager
from clipper.deployers.python import create_endpoint, deploy_python_closure
from clipper.management.endpoints import process_is_alive


def test_two_clusters_side_by_side(clusters):
    first = clusters.start("cluster-a")
    second = clusters.start("cluster-b")
    create_endpoint(first, "app", "doubles", e2e_models.sum_of_each, default_output="-1.0")
    create_endpoint(second, "app", "doubles", e2e_models.cluster_b, default_output="-1.0")

    assert first.get_query_addr() != second.get_query_addr()
    assert predict(first, "app", {"input": [1.0, 1.0]})[1]["output"] == 2.0
    assert predict(second, "app", {"input": [1.0, 1.0]})[1]["output"] == "cluster-b"
    assert first.get_all_model_replicas() == ["app:1:0"]
    assert second.get_all_model_replicas() == ["app:1:0"]

    second.stop_all()
    assert predict(first, "app", {"input": [2.0]})[1]["output"] == 2.0


def test_a_restarted_frontend_restores_its_configuration_and_replicas_reconnect(clusters, tmp_path):
    conn = clusters.start("restart")
    conn.register_application("sum", "doubles", "-1.0", 5_000_000)
    deploy_python_closure(conn, "sum-model", "1", "doubles", e2e_models.sum_of_each)
    conn.link_model_to_app("sum", "sum-model")
    assert predict(conn, "sum", {"input": [1.0, 2.0]})[1]["output"] == 3.0

    frontend = conn.cm.frontend_pid()
    os.kill(frontend, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while process_is_alive(frontend) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_is_alive(frontend)

    conn.start_clipper()  # same ports, same state directory; the replica process kept running
    assert conn.get_all_apps() == ["sum"]
    assert conn.get_linked_models("sum") == ["sum-model"]
    assert conn.get_all_models() == ["sum-model:1"]
    deadline = time.monotonic() + 15
    answer = None
    while time.monotonic() < deadline:
        answer = predict(conn, "sum", {"input": [1.0, 2.0]})[1]
        if not answer["default"]:
            break
        time.sleep(0.1)
    assert answer["default"] is False and answer["output"] == 3.0

    logs = conn.get_clipper_logs(str(tmp_path / "collected"))
    assert any(path.endswith("frontend.log") for path in logs)
    assert any(path.endswith("0.log") and "sum-model" in path for path in logs)

    # A manager in another process (here: a fresh object) can connect and stop everything.
    other = ClipperConnection(
        LocalContainerManager(cluster_name="restart", state_dir=conn.cm.state_dir)
    )
    other.connect()
    replica_pids = [replica.pid for replica in other.cm.list_replicas()]
    other.stop_all()
    assert replica_pids and not any(process_is_alive(pid) for pid in replica_pids)
