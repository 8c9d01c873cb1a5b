"""One conformance suite for the ContainerManager interface, run against every implementation that can
run here: LocalContainerManager (local processes) and DockerContainerManager (the local Docker Engine,
when it answers). Each test drives a real cluster over loopback through the interface's methods."""

import socket
import uuid
from pathlib import Path

import pytest

from clipper import (
    ClipperConnection,
    ClipperException,
    DockerContainerManager,
    LocalContainerManager,
)
from clipper.container.closure import save_closure
from clipper.exceptions import ClusterStartError


def free_ports(count):
    """`count` distinct loopback ports that were free a moment ago (held open together)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def _docker_available():
    try:
        import docker

        docker.from_env().ping()
    except Exception as error:  # noqa: BLE001 - any failure means no engine to test against
        return f"the Docker Engine does not answer ({error}); install docker.io and start dockerd"
    return None


_DOCKER_MISSING = _docker_available()


@pytest.fixture(
    params=[
        "local",
        pytest.param(
            "docker",
            marks=pytest.mark.skipif(_DOCKER_MISSING is not None, reason=str(_DOCKER_MISSING)),
        ),
    ]
)
def manager_factory(request, tmp_path):
    """Makes managers of one implementation for one cluster (same name, ports and state directory),
    as two processes of a user would; every cluster is stopped and its state cleared afterwards."""
    query, management, rpc, metrics = free_ports(4)
    options = {
        "cluster_name": f"conf-{request.param}-{uuid.uuid4().hex[:6]}",
        "clipper_query_port": query,
        "clipper_management_port": management,
        "clipper_rpc_port": rpc,
        "prometheus_port": metrics,
        "state_dir": tmp_path / "state",
    }
    kind = LocalContainerManager if request.param == "local" else DockerContainerManager
    made = []

    def make():
        made.append(kind(**options))
        return made[-1]

    yield make
    made[0].stop_all(graceful=False, clear_state=True)


def test_start_connect_and_stop(manager_factory, tmp_path):
    manager = manager_factory()
    conn = ClipperConnection(manager, replica_start_timeout_s=90)
    conn.start_clipper()
    with pytest.raises(ClusterStartError, match="already running"):
        manager.start_clipper()
    other = manager_factory()
    other.connect()  # a second manager finds the running cluster
    assert other.get_query_addr() == manager.get_query_addr()
    assert other.get_admin_addr() == manager.get_admin_addr()
    assert manager.get_metric_addr().startswith("127.0.0.1:")
    logs = manager.get_logs(str(tmp_path / "logs"))
    assert logs and all(Path(path).is_file() for path in logs)
    manager.stop_all()
    with pytest.raises(ClipperException):
        manager_factory().connect()


def test_replicas_deploy_scale_and_stop(manager_factory, tmp_path):
    manager = manager_factory()
    conn = ClipperConnection(manager, replica_start_timeout_s=90)
    conn.start_clipper()
    def echo(inputs):  # nested: pickled by value, so replicas need not import this module
        return [str(len(x)) for x in inputs]

    save_closure(echo, tmp_path / "model")
    image = manager.build_model("echo", "1", str(tmp_path / "model"))
    conn.deploy_model("echo", "1", "doubles", image, num_replicas=2)
    assert manager.get_num_replicas("echo", "1") == 2
    assert manager.find_failed_replicas("echo", "1") == []
    manager.set_num_replicas("echo", "1", "doubles", image, 1)
    assert manager.get_num_replicas("echo", "1") == 1
    for entry in manager.supervision_report():
        assert {"model_name", "model_version", "replica_id", "state", "restarts"} <= set(entry)
        assert entry["model_name"] == "echo" and entry["state"] == "running"
    manager.stop_models({"echo": ["1"]})
    assert manager.get_num_replicas("echo", "1") == 0
    manager.deploy_model("echo", "1", "doubles", image, num_replicas=1)
    manager.stop_all_model_containers()
    assert manager.get_num_replicas("echo", "1") == 0
