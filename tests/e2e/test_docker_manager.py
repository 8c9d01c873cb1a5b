"""End to end on the real Docker Engine: a cluster whose frontend and replicas run in containers
(DockerContainerManager), queried over HTTP on loopback as a user would: closures and a scikit-learn
model served from containers, a replica container killed under load, scaling, a replaced frontend
container, and stop_all leaving no container behind."""

import os
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from docker_support import cluster_containers, docker_client
from docker_support import docker_cluster as start_docker_cluster
from e2e_support import free_ports, model_answer, predict, wait_for

from clipper import ClipperConnection, DockerContainerManager
from clipper.deployers.python import deploy_python_closure
from clipper.exceptions import DeploymentError
from clipper.managers.docker import CLIPPER_LABEL

_CLIENT = docker_client()


@pytest.fixture
def docker_cluster(tmp_path):
    """A started cluster in containers (free loopback ports); removed with its state afterwards."""
    with start_docker_cluster(_CLIENT, tmp_path) as conn:
        yield conn


def _cluster_containers(cluster_name):
    return cluster_containers(_CLIENT, cluster_name)


def _sum_closure():
    def total(inputs):
        return [str(float(np.sum(x))) for x in inputs]

    return total


def test_a_closure_is_served_from_its_own_container(docker_cluster):
    conn = docker_cluster
    conn.register_application("sum", "doubles", "-1.0", 2_000_000)
    deploy_python_closure(conn, "summer", "1", "doubles", _sum_closure())
    conn.link_model_to_app("sum", "summer")
    assert model_answer(conn, "sum", {"input": [1.0, 2.5]})["output"] == 3.5
    replicas = _CLIENT.containers.list(
        filters={"label": "ai.clipper.model_container.label=summer_1"}
    )
    assert len(replicas) == 1
    assert replicas[0].labels[CLIPPER_LABEL] == conn.cm.cluster_name
    assert replicas[0].image.tags == [f"clipper-model/{conn.cm.cluster_name}-summer:1"]
    # The images' health checks pass: the replica holds its connection, the frontend answers.
    frontend = _CLIENT.containers.get(conn.cm._container_name("frontend"))
    for container, role in ((replicas[0], "replica"), (frontend, "frontend")):
        health = container.exec_run(["python3", "/opt/clipper/healthcheck.py", role])
        assert health.exit_code == 0, (role, health.output)
    # The logs of every container of the cluster come back as files.
    logs = conn.get_clipper_logs(str(conn.cm.state_dir.parent / "logs"))
    texts = [Path(path).read_text() for path in logs]
    # Frontend, replica and supervision reporter.
    assert len(logs) == 3 and any("event=registering" in text for text in texts)
    assert any("event=supervision_reporter_started" in text for text in texts)


def test_a_scikit_learn_model_answers_as_scikit_learn_does(docker_cluster):
    sklearn = pytest.importorskip("sklearn", reason="scikit-learn (the frameworks extra)")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from clipper.deployers import sklearn as sklearn_deployer

    del sklearn
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    conn = docker_cluster
    conn.register_application("iris", "doubles", "-1", 2_000_000)
    sklearn_deployer.deploy_sklearn_model(conn, "iris-lr", "1", "doubles", sklearn_model=model)
    conn.link_model_to_app("iris", "iris-lr")
    replica = _CLIENT.containers.list(
        filters={"label": "ai.clipper.model_container.label=iris-lr_1"}
    )[0]
    # The framework's own image: scikit-learn inside, no engine.
    script = "import sklearn, importlib.util as u; print(u.find_spec('clipper_native'))"
    probe = replica.exec_run(["python3", "-c", script])
    assert probe.exit_code == 0 and probe.output.decode().strip() == "None", probe.output
    expected = model.predict(features[:10])
    for row, want in zip(features[:10], expected):
        assert float(model_answer(conn, "iris", {"input": row.tolist()})["output"]) == want


def test_an_xgboost_model_answers_as_xgboost_does(docker_cluster):
    xgboost = pytest.importorskip("xgboost", reason="xgboost (the frameworks extra)")
    from sklearn.datasets import load_iris

    from clipper.deployers import xgboost as xgboost_deployer

    features, labels = load_iris(return_X_y=True)
    model = xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(features, labels)
    conn = docker_cluster
    conn.register_application("iris", "doubles", "-1", 2_000_000)
    xgboost_deployer.deploy_xgboost_model(conn, "iris-xgb", "1", "doubles", xgboost_model=model)
    conn.link_model_to_app("iris", "iris-xgb")
    replica = _CLIENT.containers.list(
        filters={"label": "ai.clipper.model_container.label=iris-xgb_1"}
    )[0]
    assert replica.exec_run(["python3", "-c", "import xgboost"]).exit_code == 0
    rows = features[::15]
    for row, want in zip(rows, model.predict(rows)):
        assert float(model_answer(conn, "iris", {"input": row.tolist()})["output"]) == want


def test_a_killed_replica_container_is_replaced_under_load(docker_cluster):
    conn = docker_cluster
    conn.register_application("sum", "doubles", "-1.0", 5_000_000)
    deploy_python_closure(conn, "summer", "1", "doubles", _sum_closure(), num_replicas=2)
    conn.link_model_to_app("sum", "summer")
    model_answer(conn, "sum", {"input": [1.0]})
    victim = _CLIENT.containers.list(
        filters={"label": "ai.clipper.model_container.label=summer_1"}
    )[0]
    statuses, stop = [], threading.Event()

    def load():
        deadline = time.monotonic() + 20  # bounded in time and count
        for i in range(2000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            status, _body, _seconds = predict(conn, "sum", {"input": [float(i)]}, timeout_s=10)
            statuses.append(status)

    workers = [threading.Thread(target=load) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        # A crash, as Docker sees one (docker kill would be a manual stop, never restarted).
        os.kill(victim.attrs["State"]["Pid"], signal.SIGKILL)
        killed_at = time.monotonic()

        def replaced():
            victim.reload()
            connected = conn.get_all_model_replicas()
            return (
                victim.status == "running"
                and victim.attrs["RestartCount"] >= 1
                and (len(connected) == 2)
            )

        wait_for(replaced, timeout_s=20, what="the killed replica container serving again")
        recovery_s = time.monotonic() - killed_at
        time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert statuses and set(statuses) == {200}, f"{len(statuses)} answers: {set(statuses)}"
    assert recovery_s < 15
    entry = next(e for e in conn.cm.supervision_report() if e["container"] == victim.name)
    assert entry["restarts"] >= 1 and entry["state"] == "running"
    assert "SIGKILL" in entry["last_exit_reason"]
    # The connection's replica info carries the same supervision.
    replica_id = int(victim.name.rsplit("-", 1)[1])
    verbose = conn.get_all_model_replicas(verbose=True)
    info = next(r for r in verbose if r["model_replica_id"] == replica_id)
    assert info["restarts"] >= 1 and "SIGKILL" in info["last_exit_reason"]


def test_versions_roll_forward_and_back_under_load_without_a_failed_query(docker_cluster):
    conn = docker_cluster
    conn.register_application("sum", "doubles", "-1.0", 5_000_000)
    deploy_python_closure(conn, "summer", "1", "doubles", _sum_closure())
    conn.link_model_to_app("sum", "summer")

    def doubled(inputs):
        return [str(2 * float(np.sum(x))) for x in inputs]

    deploy_python_closure(conn, "summer", "2", "doubles", doubled)
    assert model_answer(conn, "sum", {"input": [1.0]})["output"] == 2.0
    answers, stop = [], threading.Event()

    def load():
        # Bounded in time and count, and paced so the count cannot run out before the last switch
        # (fast answers from the cache used up 3,000 queries before the rollback).
        deadline = time.monotonic() + 20
        for _ in range(20_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            status, body, _seconds = predict(conn, "sum", {"input": [1.0]}, timeout_s=10)
            answers.append((status, body.get("default"), body.get("output")))
            time.sleep(0.002)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        for version in ("1", "2", "1"):
            time.sleep(0.5)
            conn.set_model_version("summer", version)
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert answers and {status for status, _, _ in answers} == {200}
    assert not [a for a in answers if a[1]], "some queries got the default output"
    assert {output for _, _, output in answers} == {1.0, 2.0}
    assert answers[-1][2] == 1.0  # rolled back to version 1


def test_a_model_the_image_cannot_load_fails_fast_with_the_reason(docker_cluster):
    from clipper.admin.management_client import ManagementClient

    def needs_the_control_plane(inputs, _unavailable=ManagementClient):
        return [str(x) for x in inputs]

    conn = docker_cluster
    started = time.monotonic()
    # The closure references clipper.admin, which model images do not hold: every start crashes.
    with pytest.raises(DeploymentError, match="No module named 'clipper.admin'"):
        deploy_python_closure(conn, "broken", "1", "doubles", needs_the_control_plane)
    assert time.monotonic() - started < 60  # reported once it crash-loops, not at the timeout
    assert (
        _CLIENT.containers.list(
            all=True, filters={"label": "ai.clipper.model_container.label=broken_1"}
        )
        == []
    )


def test_scaling_a_model_up_and_down(docker_cluster):
    conn = docker_cluster
    conn.register_application("sum", "doubles", "-1.0", 2_000_000)
    deploy_python_closure(conn, "summer", "1", "doubles", _sum_closure())
    conn.link_model_to_app("sum", "summer")
    conn.set_num_replicas("summer", 3, version="1")
    assert conn.get_num_replicas("summer", "1") == 3
    assert len(conn.get_all_model_replicas()) == 3
    conn.set_num_replicas("summer", 1, version="1")
    assert conn.get_num_replicas("summer", "1") == 1
    assert model_answer(conn, "sum", {"input": [2.0, 2.0]})["output"] == 4.0


def test_a_replaced_frontend_container_keeps_the_configuration(docker_cluster):
    conn = docker_cluster
    conn.register_application("sum", "doubles", "-1.0", 2_000_000)
    deploy_python_closure(conn, "summer", "1", "doubles", _sum_closure())
    conn.link_model_to_app("sum", "summer")
    frontend = _CLIENT.containers.list(
        filters={"label": [f"{CLIPPER_LABEL}={conn.cm.cluster_name}", "ai.clipper.role=frontend"]}
    )[0]
    frontend.remove(force=True)  # the container is gone; its state directory is not
    conn.start_clipper()
    replaced = _CLIENT.containers.list(
        filters={"label": [f"{CLIPPER_LABEL}={conn.cm.cluster_name}", "ai.clipper.role=frontend"]}
    )[0]
    assert replaced.id != frontend.id
    assert conn.get_all_apps() == ["sum"]
    assert conn.get_linked_models("sum") == ["summer"]
    # The replica container reconnects to the new frontend and answers again.
    assert model_answer(conn, "sum", {"input": [1.0, 1.0]}, timeout_s=30)["output"] == 2.0
    # A second manager finds the running cluster by its labels.
    other = DockerContainerManager(cluster_name=conn.cm.cluster_name)
    ClipperConnection(other).connect()
    assert other.get_query_addr() == conn.cm.get_query_addr()
    assert other.state_dir == conn.cm.state_dir  # the token is found through the mount


def test_with_redis_the_configuration_outlives_the_frontend_and_its_state_directory(
    tmp_path, redis_address
):
    host, port = redis_address.rsplit(":", 1)
    query, management, rpc, metrics = free_ports(4)
    manager = DockerContainerManager(
        cluster_name=f"e2e-redis-{uuid.uuid4().hex[:8]}",
        clipper_query_port=query,
        clipper_management_port=management,
        clipper_rpc_port=rpc,
        prometheus_port=metrics,
        redis_ip=host,
        redis_port=int(port),
        state_dir=tmp_path / "state",
    )
    conn = ClipperConnection(manager)
    try:
        conn.start_clipper()
        conn.register_application("kept", "doubles", "-1.0", 100_000)
        conn.stop_all()  # every container goes, and the state directory with the token too:
        shutil.rmtree(manager.state_dir)
        assert _cluster_containers(manager.cluster_name) == []
        conn.start_clipper()
        assert conn.get_all_apps() == ["kept"]
    finally:
        conn.stop_all(graceful=False, clear_state=True)


def test_the_frontend_container_stops_on_sigterm_with_its_own_clean_exit(docker_cluster):
    conn = docker_cluster
    conn.register_application("sum", "doubles", "-1.0", 2_000_000)
    deploy_python_closure(conn, "summer", "1", "doubles", _sum_closure())
    conn.link_model_to_app("sum", "summer")
    assert model_answer(conn, "sum", {"input": [1.0, 2.0]})["output"] == 3.0
    frontend = _CLIENT.containers.get(conn.cm._container_name("frontend"))
    started = time.monotonic()
    frontend.stop(timeout=10)  # SIGTERM; SIGKILL only after 10 s
    elapsed = time.monotonic() - started
    frontend.reload()
    assert frontend.attrs["State"]["ExitCode"] == 0, log_tail_of(frontend)
    assert elapsed < 2.0, elapsed  # docker stop's own round trips included, on a shared machine


def log_tail_of(container):
    return container.logs(tail=20).decode("utf-8", "replace")


def test_the_frontend_and_a_models_replicas_run_on_the_cpus_given(tmp_path):
    # CPU isolation (docs/operations.md): Docker's --cpuset-cpus for the frontend container and for a
    # model's replica containers, read back from Docker and from the kernel (/proc of each container's
    # main process).
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("CPU isolation needs two CPUs")
    frontend_cpu, model_cpu = str(allowed[0]), str(allowed[-1])
    with start_docker_cluster(_CLIENT, tmp_path, frontend_cpuset=frontend_cpu) as conn:
        conn.cm.set_model_resources("placed", cpuset=model_cpu)
        conn.register_application("placed", "doubles", "-1", 1_000_000)
        deploy_python_closure(conn, "placed", "1", "doubles", _sum_closure())
        conn.link_model_to_app("placed", "placed")
        assert model_answer(conn, "placed", {"input": [1.0, 2.0]})["output"] == 3.0
        roles = {"frontend": frontend_cpu, "replica": model_cpu}
        for container in _cluster_containers(conn.cm.cluster_name):
            role = container.labels.get("ai.clipper.role")
            if role not in roles:
                continue
            attrs = _CLIENT.api.inspect_container(container.id)
            assert attrs["HostConfig"]["CpusetCpus"] == roles[role], role
            status = Path(f"/proc/{attrs['State']['Pid']}/status").read_text()
            assert f"Cpus_allowed_list:\t{roles[role]}\n" in status, role
            roles.pop(role)
        assert roles == {}, f"no container found for {sorted(roles)}"
