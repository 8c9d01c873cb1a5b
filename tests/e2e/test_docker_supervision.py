"""Restarts of replica containers on the frontend's /metrics, end to end on the real Docker Engine: the
cluster's supervision reporter container (the only one with the Docker socket) reads Docker's restart
count and exit, and pushes them to the frontend container, which has no Docker access. A replica
container killed with SIGKILL shows as restarts 0 -> 1 with the reason within seconds."""

import os
import signal
import time

import pytest
from docker_support import docker_client
from docker_support import docker_cluster as start_docker_cluster
from e2e_support import model_answer, wait_for
from test_supervision import supervision_samples

from clipper.deployers.python import deploy_python_closure
from clipper.managers.docker import REPORTER_ROLE, ROLE_LABEL

_CLIENT = docker_client()


@pytest.fixture
def docker_cluster(tmp_path):
    with start_docker_cluster(_CLIENT, tmp_path) as conn:
        yield conn


def _sum_closure():
    def total(inputs):
        return [str(sum(float(x) for x in row)) for row in inputs]

    return total


def _mounts(container):
    return [mount.get("Source", "") for mount in container.attrs.get("Mounts", [])]


def test_a_killed_replica_containers_restart_reaches_metrics_with_its_reason(docker_cluster):
    conn = docker_cluster
    cluster = conn.cm.cluster_name
    conn.register_application("sum", "doubles", "-1.0", 5_000_000)
    deploy_python_closure(conn, "summer", "1", "doubles", _sum_closure())
    conn.link_model_to_app("sum", "summer")
    assert model_answer(conn, "sum", {"input": [1.0, 2.0]})["output"] == 3.0

    # Privilege separation: the reporter has the socket, runs unprivileged; the frontend has neither.
    (reporter,) = _CLIENT.containers.list(
        filters={
            "label": [f"ai.clipper.container.label={cluster}", f"{ROLE_LABEL}={REPORTER_ROLE}"]
        }
    )
    assert reporter.status == "running"
    assert any(source.endswith("docker.sock") for source in _mounts(reporter))
    assert reporter.attrs["Config"]["User"] == "10001:10001"
    frontend = _CLIENT.containers.get(conn.cm._container_name("frontend"))
    assert not any(source.endswith("docker.sock") for source in _mounts(frontend))
    # Its health check passes once it has read Docker (the image's HEALTHCHECK runs the same).
    wait_for(
        lambda: (
            reporter.exec_run(
                ["python3", "-m", "clipper.managers.supervision_reporter", "healthcheck"]
            ).exit_code
            == 0
        ),
        timeout_s=15,
        what="the reporter's health check passing",
    )

    labels = {"model": "summer", "version": "1", "replica": "0"}
    before = wait_for(
        lambda: supervision_samples(conn, "summer")["clipper_replica_restarts"],
        timeout_s=15,
        what="the replica container's restarts on /metrics",
    )
    assert before == [(labels, 0)]

    (victim,) = _CLIENT.containers.list(
        filters={"label": "ai.clipper.model_container.label=summer_1"}
    )
    # A crash, as Docker sees one (docker kill would be a manual stop, never restarted).
    os.kill(victim.attrs["State"]["Pid"], signal.SIGKILL)

    def restarted():
        samples = supervision_samples(conn, "summer")
        return samples if samples["clipper_replica_restarts"] == [(labels, 1)] else None

    samples = wait_for(restarted, timeout_s=20, what="restarts 0 -> 1 on /metrics")
    assert samples["clipper_replica_last_exit_info"] == [
        ({**labels, "reason": "killed by signal 9 (SIGKILL)"}, 1)
    ]
    victim.reload()
    assert victim.attrs["RestartCount"] == 1  # what Docker says, reported as it is
    # The restarted container serves again, and its slot reads running.
    assert model_answer(conn, "sum", {"input": [2.0, 5.0]}, timeout_s=30)["output"] == 7.0
    wait_for(
        lambda: (
            ({**labels, "state": "running"}, 1)
            in supervision_samples(conn, "summer")["clipper_replica_supervision_state"]
        ),
        timeout_s=15,
        what="the slot running again on /metrics",
    )


def test_a_cluster_started_without_the_reporter_has_no_socket_anywhere(tmp_path, monkeypatch):
    from docker_support import cluster_containers
    from e2e_support import free_ports

    from clipper import ClipperConnection, DockerContainerManager

    query, management, rpc, metrics = free_ports(4)
    manager = DockerContainerManager(
        cluster_name=f"e2e-norep-{os.getpid()}",
        clipper_query_port=query,
        clipper_management_port=management,
        clipper_rpc_port=rpc,
        prometheus_port=metrics,
        state_dir=tmp_path / "state",
        supervision_reporter=False,
    )
    conn = ClipperConnection(manager)
    conn.start_clipper()
    try:
        containers = cluster_containers(_CLIENT, manager.cluster_name)
        assert [c.labels[ROLE_LABEL] for c in containers] == ["frontend"]
        assert not any(source.endswith("docker.sock") for source in _mounts(containers[0]))
    finally:
        conn.stop_all(graceful=False, clear_state=True)
    assert cluster_containers(_CLIENT, manager.cluster_name) == []


def test_the_reporter_stops_within_a_second_on_sigterm(docker_cluster):
    (reporter,) = _CLIENT.containers.list(
        filters={
            "label": [
                f"ai.clipper.container.label={docker_cluster.cm.cluster_name}",
                f"{ROLE_LABEL}={REPORTER_ROLE}",
            ]
        }
    )
    # Running its loop (a SIGTERM during its imports ends it by the default action, code 143).
    wait_for(
        lambda: b"event=supervision_reporter_started" in reporter.logs(),
        timeout_s=30,
        what="the reporter's loop running",
    )
    started = time.monotonic()
    reporter.stop(timeout=10)  # SIGTERM, SIGKILL only after 10 s
    elapsed = time.monotonic() - started
    reporter.reload()
    assert reporter.attrs["State"]["ExitCode"] == 0  # its own clean exit, not the SIGKILL
    assert elapsed < 3.0, elapsed  # generous: docker stop's own round trips on a loaded machine
