"""Replica supervision end to end with real processes: a replica killed with SIGKILL is replaced by the
frontend within seconds and queries get model answers again; a restarted frontend adopts the replicas
that kept running instead of starting duplicates. Restarts, exit reasons and states also show on the
query port's /metrics, parsed as Prometheus parses it."""

import os
import signal
import subprocess
import sys
import urllib.request

import e2e_models
from e2e_support import model_answer, predict, wait_for
from prometheus_client.parser import text_string_to_metric_families

from clipper import ClipperConnection, LocalContainerManager
from clipper.deployers.python import deploy_python_closure
from clipper.management.endpoints import process_is_alive


def supervision_samples(conn, model):
    """The supervision series of `model` on /metrics: {family: [(labels, value)]}."""
    url = f"http://{conn.get_query_addr()}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    wanted = {
        "clipper_replica_restarts",
        "clipper_replica_last_exit_info",
        "clipper_replica_supervision_state",
    }
    return {
        family.name: [
            (sample.labels, sample.value)
            for sample in family.samples
            if sample.labels.get("model") == model and not sample.name.endswith("_created")
        ]
        for family in text_string_to_metric_families(text)
        if family.name in wanted
    }


def _deploy_sum(conn, num_replicas=1):
    conn.register_application("sums", "doubles", "-1.0", 5_000_000)
    deploy_python_closure(
        conn, "sum-model", "1", "doubles", e2e_models.sum_of_each, num_replicas=num_replicas
    )
    conn.link_model_to_app("sums", "sum-model")
    assert model_answer(conn, "sums", {"input": [1.0, 2.0]})["output"] == 3.0


def test_a_killed_replica_is_replaced_and_answers_again(clusters):
    conn = clusters.start("supervised", heartbeat_timeout_millis=500)
    _deploy_sum(conn)
    (victim,) = conn.cm.list_replicas()
    before = wait_for(
        lambda: supervision_samples(conn, "sum-model")["clipper_replica_restarts"],
        timeout_s=5,
        what="the replica's restarts on /metrics",
    )
    assert before == [
        ({"model": "sum-model", "version": "1", "replica": str(victim.replica_id)}, 0)
    ]

    os.kill(victim.pid, signal.SIGKILL)

    def replaced():
        replicas = conn.cm.list_replicas()
        return replicas if replicas and replicas[0].pid != victim.pid else None

    (replacement,) = wait_for(replaced, timeout_s=10, what="a replacement replica process")
    assert replacement.replica_id > victim.replica_id  # ids are never reused
    assert not process_is_alive(victim.pid, victim.process_start_ticks)
    assert model_answer(conn, "sums", {"input": [2.0, 5.0]}, timeout_s=15)["output"] == 7.0

    def connected_replacement():
        replicas = conn.get_all_model_replicas(verbose=True)
        ids = [r["model_replica_id"] for r in replicas]
        return replicas if ids == [replacement.replica_id] else None

    (info,) = wait_for(connected_replacement, timeout_s=10, what="only the replacement connected")
    assert info["state"] == "running"
    assert info["restarts"] == 1
    assert info["last_exit_reason"] == "killed by signal 9 (SIGKILL)"
    assert conn.get_num_replicas("sum-model", "1") == 1

    # /metrics shows the same: the counter rose, on the series of the replica serving now.
    labels = {"model": "sum-model", "version": "1", "replica": str(replacement.replica_id)}
    samples = supervision_samples(conn, "sum-model")
    assert samples["clipper_replica_restarts"] == [(labels, 1)]
    assert samples["clipper_replica_last_exit_info"] == [
        ({**labels, "reason": "killed by signal 9 (SIGKILL)"}, 1)
    ]
    assert ({**labels, "state": "running"}, 1) in samples["clipper_replica_supervision_state"]

    # The CLI shows the same, as a user runs it.
    manager = conn.cm
    result = subprocess.run(
        [sys.executable, "-m", "clipper.cli", "replicas", "--cluster-name", manager.cluster_name,
         "--state-dir", str(manager.state_dir),
         "--management-port", manager.get_admin_addr().rsplit(":", 1)[1]],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split()[-3:] == ["STATE", "RESTARTS", "LAST_EXIT_REASON"]
    assert row.split()[-7:] == ["running", "1", "killed", "by", "signal", "9", "(SIGKILL)"]


def test_a_restarted_frontend_adopts_running_replicas(clusters):
    conn = clusters.start("adopting", heartbeat_timeout_millis=500)
    _deploy_sum(conn, num_replicas=2)
    before = sorted((r.replica_id, r.pid) for r in conn.cm.list_replicas())
    frontend_pid = conn.cm.frontend_pid()

    os.kill(frontend_pid, signal.SIGKILL)
    wait_for(lambda: not process_is_alive(frontend_pid), timeout_s=10, what="the frontend's exit")

    # A new manager object, as after the user's process restarted too.
    restarted = ClipperConnection(
        LocalContainerManager(
            cluster_name=conn.cm.cluster_name,
            clipper_query_port=conn.cm.clipper_query_port,
            clipper_management_port=conn.cm.clipper_management_port,
            clipper_rpc_port=conn.cm.clipper_rpc_port,
            prometheus_port=conn.cm.prometheus_port,
            state_dir=conn.cm.state_dir,
            heartbeat_timeout_millis=500,
        ),
        replica_start_timeout_s=60,
    )
    restarted.start_clipper()
    clusters.started.append(restarted)
    assert sorted((r.replica_id, r.pid) for r in restarted.cm.list_replicas()) == before
    assert model_answer(restarted, "sums", {"input": [4.0, 4.0]}, timeout_s=15)["output"] == 8.0
    wait_for(
        lambda: len(restarted.get_all_model_replicas()) == 2,
        timeout_s=15,
        what="both adopted replicas connected",
    )
    assert restarted.get_num_replicas("sum-model", "1") == 2


def test_a_replica_that_keeps_crashing_backs_off_and_is_reported(clusters):
    conn = clusters.start("crashing", heartbeat_timeout_millis=500)
    conn.register_application("fragile", "doubles", "-1.0", 200_000)

    def sum_or_crash(inputs):
        import os as os_in_replica

        if any(x[0] < 0 for x in inputs):
            os_in_replica._exit(3)
        return [str(sum(x)) for x in inputs]

    deploy_python_closure(conn, "fragile-model", "1", "doubles", sum_or_crash)
    conn.link_model_to_app("fragile", "fragile-model")
    assert model_answer(conn, "fragile", {"input": [1.0, 2.0]})["output"] == 3.0

    states = []
    for crash in range(1, 4):
        (replica,) = conn.cm.list_replicas()
        status, answer, _ = predict(conn, "fragile", {"input": [-float(crash)]})
        assert status == 200 and answer["default"] is True

        def noticed(pid=replica.pid):
            slots = [s for s in conn.cm.supervision_report() if s["pid"] == pid]
            return slots if slots and slots[0]["state"] not in ("running", "exited") else None

        (slot,) = wait_for(noticed, timeout_s=10, what=f"crash {crash} noticed")
        states.append((slot["state"], slot["last_exit_reason"]))
        if crash < 3:
            wait_for(lambda: conn.cm.list_replicas(), timeout_s=15, what="the replacement")
            model_answer(conn, "fragile", {"input": [float(crash), 1.0]}, timeout_s=15)
    assert states == [
        ("backing-off", "exited with code 3"),
        ("backing-off", "exited with code 3"),
        ("crash-looping", "exited with code 3"),
    ]
    # Reported, and not restarted at once: the third failure waits 4 s.
    listed = [r for r in conn.get_all_model_replicas(verbose=True) if r["state"] != "running"]
    assert [(r["state"], r["restarts"]) for r in listed] == [("crash-looping", 2)]
    assert 2.0 < listed[0]["next_restart_in_s"] <= 4.0
    assert conn.cm.list_replicas() == []
    states_on_metrics = {
        labels["state"]: value
        for labels, value in supervision_samples(conn, "fragile-model")[
            "clipper_replica_supervision_state"
        ]
    }
    assert states_on_metrics == {"running": 0, "backing-off": 0, "crash-looping": 1}
