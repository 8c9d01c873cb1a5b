"""LocalContainerManager with real processes on loopback: the frontend's lifecycle, finding a running
cluster from another manager, and failures that say why instead of hanging."""

import os
import pickle
import socket

import pytest

from clipper import ClipperConnection, ClipperException, LocalContainerManager
from clipper.exceptions import ClusterStartError, DeploymentError
from clipper.management.endpoints import process_is_alive
from clipper.managers import local as local_manager
from clipper.managers import local_replicas
from clipper.state import default_state_dir


def test_the_state_directory_defaults_under_home_or_clipper_state_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("CLIPPER_STATE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir("c1") == tmp_path / "home" / ".clipper" / "c1"
    monkeypatch.setenv("CLIPPER_STATE_DIR", str(tmp_path / "states"))
    assert default_state_dir("c1") == tmp_path / "states" / "c1"
    assert LocalContainerManager(cluster_name="c2").state_dir == tmp_path / "states" / "c2"
    assert LocalContainerManager(state_dir=tmp_path / "x").state_dir == tmp_path / "x"


@pytest.mark.parametrize("name", ["", "a/b", "../up", "has space"])
def test_cluster_names_must_be_directory_safe(name):
    with pytest.raises(ClipperException, match="cluster_name"):
        LocalContainerManager(cluster_name=name)


@pytest.mark.parametrize("micros", [-1, 10_001, 2.5, True])
def test_the_replicas_shm_spin_is_bounded(micros, tmp_path):
    with pytest.raises(ClipperException, match="replica_shm_spin_micros must be an int from 0"):
        LocalContainerManager(state_dir=tmp_path, replica_shm_spin_micros=micros)


@pytest.mark.parametrize("micros", [-1, 10_001, 2.5, True])
def test_the_frontends_shm_response_spin_is_bounded(micros, tmp_path):
    with pytest.raises(ClipperException, match="shm_response_spin_micros must be an int from 0"):
        LocalContainerManager(state_dir=tmp_path, shm_response_spin_micros=micros)


@pytest.mark.parametrize("micros", [-1, 10_001, 2.5, True])
def test_the_frontends_shm_response_spin_cost_bound_is_bounded(micros, tmp_path):
    with pytest.raises(ClipperException, match="shm_response_spin_cost_micros must be an int from 0"):
        LocalContainerManager(state_dir=tmp_path, shm_response_spin_cost_micros=micros)


def test_addresses_before_start_are_the_configured_ports():
    manager = LocalContainerManager(
        clipper_query_port=1400, clipper_management_port=1401, prometheus_port=0
    )
    assert manager.get_query_addr() == "127.0.0.1:1400"
    assert manager.get_admin_addr() == "127.0.0.1:1401"
    assert manager.get_metric_addr() == "127.0.0.1:1400"


def test_connect_without_a_running_cluster_says_how_to_start_one(tmp_path):
    manager = LocalContainerManager(
        cluster_name="absent", clipper_management_port=_free_port(), state_dir=tmp_path
    )
    with pytest.raises(
        ClipperException, match=r"no Clipper cluster 'absent' answers.*start_clipper"
    ):
        ClipperConnection(manager).connect()


def test_the_closure_file_name_matches_the_sdks():
    closure = pytest.importorskip("clipper.container.closure", reason="the container SDK's clipper.container.closure (installed with this package)")
    assert local_manager.CLOSURE_FILE_NAME == closure.CLOSURE_FILE_NAME


def test_a_model_directory_without_a_closure_is_refused(tmp_path):
    manager = LocalContainerManager(state_dir=tmp_path)
    with pytest.raises(DeploymentError, match="holds no func.pkl"):
        manager.deploy_model("m", "1", "doubles", str(tmp_path))


def test_build_model_copies_the_saved_model_into_the_state_directory(tmp_path):
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "func.pkl").write_bytes(b"pickle")
    manager = LocalContainerManager(state_dir=tmp_path / "state")
    image = manager.build_model(
        "m", "1", str(saved), pkgs_to_install=["pytest"]
    )  # already installed
    assert image == str(tmp_path / "state" / "models" / "m" / "1")
    assert (tmp_path / "state" / "models" / "m" / "1" / "func.pkl").read_bytes() == b"pickle"
    assert not (tmp_path / "state" / "models" / "m" / "1" / "site-packages").exists()
    with pytest.raises(DeploymentError, match="not a directory"):
        manager.build_model("m", "2", str(tmp_path / "missing"))


# ---- with the native engine ---------------------------------------------------------------------


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def engine_available():
    pytest.importorskip("clipper_native._core", reason="the native engine clipper_native._core (built by pip install .)")


@pytest.fixture
def make_manager(tmp_path, engine_available):
    managers = []

    def make(name="local-test", **overrides):
        options = {
            "cluster_name": name,
            "clipper_query_port": 0,
            "clipper_management_port": 0,
            "clipper_rpc_port": 0,
            "prometheus_port": 0,
            "state_dir": tmp_path / name,
            "startup_timeout_s": 30,
            **overrides,
        }
        manager = LocalContainerManager(**options)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.stop_all(graceful=False)


def test_start_connect_and_stop(make_manager):
    manager = make_manager()
    conn = ClipperConnection(manager)
    conn.start_clipper()
    pid = manager.frontend_pid()
    assert pid is not None and process_is_alive(pid)
    assert not conn.get_query_addr().endswith(":0")  # the actual ports are read back
    assert (manager.state_dir / "logs" / "frontend.log").is_file()

    # Another manager (as in another Python process) finds the running cluster through its state dir.
    other = ClipperConnection(make_manager())
    other.connect()
    assert other.get_query_addr() == conn.get_query_addr()
    other.register_application("app", "doubles", "-1.0", 100000)
    assert conn.get_all_apps() == ["app"]

    with pytest.raises(ClusterStartError, match="already running"):
        ClipperConnection(make_manager()).start_clipper()

    conn.stop_all()
    assert not process_is_alive(pid)
    assert manager.frontend_pid() is None

    # The configuration survives: the next start restores it, unless told to forget it.
    conn.start_clipper()
    assert conn.get_all_apps() == ["app"]
    conn.stop_all(clear_state=True)
    conn.start_clipper()
    assert conn.get_all_apps() == []


def test_a_frontend_that_cannot_start_reports_its_log(make_manager):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        manager = make_manager(clipper_query_port=blocker.getsockname()[1])
        with pytest.raises(ClusterStartError, match=r"exited with code 1(.|\n)*cannot listen"):
            manager.start_clipper()
    finally:
        blocker.close()
    assert manager.frontend_pid() is None


def test_the_configured_ports_are_used(make_manager):
    ports = [_free_port() for _ in range(4)]
    manager = make_manager(
        clipper_query_port=ports[0],
        clipper_management_port=ports[1],
        clipper_rpc_port=ports[2],
        prometheus_port=ports[3],
    )
    manager.start_clipper()
    assert manager.get_query_addr() == f"127.0.0.1:{ports[0]}"
    assert manager.get_admin_addr() == f"127.0.0.1:{ports[1]}"
    assert manager.get_rpc_addr() == f"127.0.0.1:{ports[2]}"
    assert manager.get_metric_addr() == f"127.0.0.1:{ports[3]}"


def test_a_replica_that_crashes_at_start_fails_the_deployment_with_its_log(make_manager, tmp_path):
    manager = make_manager()
    conn = ClipperConnection(manager, replica_start_timeout_s=60)
    conn.start_clipper()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "func.pkl").write_bytes(b"this is not a pickle")
    with pytest.raises(DeploymentError, match=r"replica 0 \(pid \d+\) exited with exit code [1-9]"):
        conn.deploy_model("m", "1", "doubles", manager.build_model("m", "1", str(broken)))
    assert conn.get_all_models() == []
    assert manager.list_replicas() == []


def test_a_replica_process_is_recorded_and_stopped(make_manager, tmp_path, monkeypatch):
    """A stand-in replica (a sleeping process started exactly like one) is tracked by its pid record
    and stopped by stop_models and stop_all, from another manager instance too."""
    (tmp_path / "sleeping_replica.py").write_text("import time\ntime.sleep(120)\n")
    monkeypatch.setattr(local_replicas, "CLOSURE_RUNNER_MODULE", "sleeping_replica")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    )
    manager = make_manager()
    manager.start_clipper()
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "func.pkl").write_bytes(pickle.dumps(None))
    image_1 = manager.build_model("m", "1", str(model_dir))  # into the state directory
    image_2 = manager.build_model("m", "2", str(model_dir))
    manager.deploy_model("m", "1", "doubles", image_1, num_replicas=2)
    manager.deploy_model("m", "2", "doubles", image_2, num_replicas=1)
    replicas = manager.list_replicas()
    assert sorted((r.model_version, r.replica_id) for r in replicas) == [
        ("1", 0),
        ("1", 1),
        ("2", 0),
    ]
    assert manager.get_num_replicas("m", "1") == 2

    manager.stop_models({"m": ["1"]})
    assert [r.model_version for r in manager.list_replicas()] == ["2"]
    survivor = manager.list_replicas()[0]

    other = make_manager()
    other.connect()
    other.stop_all()
    assert not process_is_alive(survivor.pid, survivor.process_start_ticks)
    assert manager.frontend_pid() is None
    # Replica ids are never reused for a model version.
    with manager._records.locked():
        assert manager._records.next_replica_id("m", "1") == 2
