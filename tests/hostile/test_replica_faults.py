"""Replica faults an operator meets: a replica killed outright, then the cluster scaled."""

import os
import signal

import e2e_models
import pytest
from clipper.deployers.python import deploy_python_closure
from clipper.management.endpoints import process_is_alive
from e2e_support import model_answer, start_cluster, wait_for

pytest.importorskip("clipper_native._core")


@pytest.fixture
def conn(tmp_path):
    conn = start_cluster(tmp_path, "faults")
    try:
        yield conn
    finally:
        conn.stop_all()


def test_scaling_after_a_replica_was_killed_starts_the_replacement_without_raising(conn):
    conn.register_application("sum", "doubles", "-1.0", 20_000_000)
    deploy_python_closure(conn, "sum-model", "1", "doubles", e2e_models.sum_of_each)
    conn.link_model_to_app("sum", "sum-model")
    [victim] = [r.pid for r in conn.cm.list_replicas() if r.model_name == "sum-model"]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not process_is_alive(victim), what="the replica's death")
    conn.set_num_replicas("sum-model", 2)  # must not raise: the replacements start and connect
    connected = [r for r in conn.get_all_model_replicas() if r.startswith("sum-model:1:")]
    assert len(connected) == 2  # set_num_replicas returned once both had connected
    assert victim not in [r.pid for r in conn.cm.list_replicas()]
    assert model_answer(conn, "sum", {"input": [1.0, 2.0]})["output"] == 3.0
