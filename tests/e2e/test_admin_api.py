"""ClipperConnection against a real cluster, one scenario per test: each admin call is checked by what
a client of the query API then sees, and each refusal by the exception class and its advice.
The tests share one cluster; each uses its own app and model names."""

import subprocess
import sys

import e2e_models
import pytest
from e2e_support import model_answer, predict, start_cluster, wait_for

from clipper import ClipperConnection, LocalContainerManager
from clipper.container.closure import save_closure
from clipper.deployers.python import deploy_python_closure
from clipper.exceptions import (
    ClipperException,
    ContainerlessModelError,
    DuplicateObjectError,
    InputTypeMismatchError,
    ManagementAPIError,
    UnknownObjectError,
)
from clipper.management.endpoints import process_is_alive

SLO_MICROS = 20_000_000  # a default answer in these tests is a failure, not a timeout


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    conn = start_cluster(tmp_path_factory.mktemp("clusters"), "admin")
    try:
        yield conn
    finally:
        conn.stop_all()


def replica_pids(conn, name, version=None):
    return [
        replica.pid
        for replica in conn.cm.list_replicas()
        if replica.model_name == name and (version is None or replica.model_version == version)
    ]


def test_connect_attaches_a_second_connection_to_the_running_cluster(conn):
    conn.register_application("connect-app", "doubles", "-1.0", SLO_MICROS)
    manager = conn.cm
    other = ClipperConnection(
        LocalContainerManager(
            cluster_name=manager.cluster_name,
            clipper_query_port=manager.clipper_query_port,
            clipper_management_port=manager.clipper_management_port,
            clipper_rpc_port=manager.clipper_rpc_port,
            prometheus_port=manager.prometheus_port,
            state_dir=manager.state_dir,
        )
    )
    other.connect()
    assert other.get_query_addr() == conn.get_query_addr()
    assert other.get_metric_addr() == conn.get_metric_addr()
    assert "connect-app" in other.get_all_apps()
    assert other.get_app_info("connect-app")["latency_slo_micros"] == SLO_MICROS


def test_unregister_application_removes_its_route(conn):
    conn.register_application("doomed", "doubles", "-1.0", 100000)
    status, answer, _ = predict(conn, "doomed", {"input": [1.0]})
    assert (status, answer["default"]) == (200, True)
    conn.unregister_application("doomed")
    assert predict(conn, "doomed", {"input": [1.0]})[0] == 404
    assert conn.get_app_info("doomed") is None
    conn.register_application("doomed", "strings", "none", 100000)  # the name is free again
    with pytest.warns(DeprecationWarning):
        conn.delete_application("doomed")
    assert "doomed" not in conn.get_all_apps()


def test_link_and_unlink_switch_an_app_between_model_and_default(conn):
    conn.register_application("linkable", "doubles", "-1.0", SLO_MICROS)
    deploy_python_closure(conn, "linkable-model", "1", "doubles", e2e_models.sum_of_each)
    conn.link_model_to_app("linkable", "linkable-model")
    assert conn.get_linked_models("linkable") == ["linkable-model"]
    assert model_answer(conn, "linkable", {"input": [1.0, 2.0]})["output"] == 3.0

    conn.unlink_model_from_app("linkable", "linkable-model")
    assert conn.get_linked_models("linkable") == []
    status, answer, _ = predict(conn, "linkable", {"input": [1.0, 2.0]})
    assert status == 200 and answer["default"] is True
    assert "no model" in answer["default_explanation"].lower()
    with pytest.raises(UnknownObjectError, match="'linkable-model' is not linked"):
        conn.unlink_model_from_app("linkable", "linkable-model")


def test_refusals_raise_classes_whose_message_says_what_to_do(conn):
    conn.register_application("picky", "ints", "0", SLO_MICROS)
    with pytest.raises(
        UnknownObjectError, match="model 'ghost' does not exist; deploy it"
    ) as error:
        conn.link_model_to_app("picky", "ghost")
    assert isinstance(error.value, ManagementAPIError) and error.value.status_code == 400
    with pytest.raises(UnknownObjectError, match="application 'nowhere' does not exist; register"):
        conn.link_model_to_app("nowhere", "ghost")
    with pytest.raises(DuplicateObjectError, match="'picky' already exists; unregister it first"):
        conn.register_application("picky", "ints", "0", SLO_MICROS)

    conn.register_model("picky-doubles", "1", "doubles")
    with pytest.raises(
        InputTypeMismatchError,
        match="takes doubles but application 'picky' takes ints; use a model version with "
        "input_type 'ints'",
    ):
        conn.link_model_to_app("picky", "picky-doubles")
    with pytest.raises(
        DuplicateObjectError, match="version '1' already exists; deploy under a new"
    ):
        conn.register_model("picky-doubles", "1", "doubles")
    with pytest.raises(DuplicateObjectError, match="version '1' already exists"):
        conn.deploy_model("picky-doubles", "1", "doubles", "/nowhere")
    with pytest.raises(ContainerlessModelError, match="registered without a container"):
        conn.set_num_replicas("picky-doubles", 2)
    with pytest.raises(UnknownObjectError, match="has no version '9'"):
        conn.set_model_version("picky-doubles", "9")
    with pytest.raises(UnknownObjectError, match="'ghost' has no registered version"):
        conn.get_current_model_version("ghost")
    for error_class in (UnknownObjectError, DuplicateObjectError, ContainerlessModelError):
        assert issubclass(error_class, ClipperException)


def test_register_model_without_a_container_serves_a_replica_started_elsewhere(conn, tmp_path):
    conn.register_application("external", "doubles", "-1.0", SLO_MICROS)
    conn.register_model("external-model", "1", "doubles", labels=["outside"])
    conn.link_model_to_app("external", "external-model")
    info = conn.get_model_info("external-model", "1")
    assert (info["container_name"], info["labels"]) == ("NO_CONTAINER", ["outside"])
    assert conn.get_current_model_version("external-model") == "1"

    save_closure(e2e_models.sum_of_each, tmp_path / "external")
    replica = subprocess.Popen(
        [
            sys.executable, "-m", "clipper.container.closure_runner",
            "--func-path", str(tmp_path / "external"),
            "--name", "external-model", "--version", "1", "--input-type", "doubles",
            "--frontend", f"tcp://{conn.cm.get_rpc_addr()}",
            "--rpc-credentials-file", str(conn.cm.state_dir / "replica_credentials.json"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert model_answer(conn, "external", {"input": [2.0, 2.0]})["output"] == 4.0
        [listed] = [
            r for r in conn.get_all_model_replicas(verbose=True)
            if r["model_name"] == "external-model"
        ]  # fmt: skip
        assert listed["model_id"] == "external-model:1"
        assert conn.get_num_replicas("external-model") == 0  # not one of the cluster's processes
    finally:
        replica.terminate()
        replica.wait(timeout=15)


def test_build_model_then_register_with_the_image_then_scale(conn, tmp_path):
    save_closure(e2e_models.sum_of_each, tmp_path / "saved")
    image = conn.build_model("scaled", "1", str(tmp_path / "saved"))
    assert image.startswith(str(conn.cm.state_dir))
    conn.register_model("scaled", "1", "doubles", image=image)
    assert conn.get_num_replicas("scaled") == 0

    conn.set_num_replicas("scaled", 2)
    assert conn.get_num_replicas("scaled", "1") == 2
    replicas = sorted(
        r["model_replica_id"]
        for r in conn.get_all_model_replicas(verbose=True)
        if r["model_name"] == "scaled"
    )
    assert replicas == [0, 1]
    info = conn.get_model_replica_info("scaled", "1", 1)
    assert info["model_id"] == "scaled:1" and info["input_type"] == "doubles"
    assert conn.get_model_replica_info("scaled", "1", 5) is None

    conn.register_application("scaled", "doubles", "-1.0", SLO_MICROS)
    conn.link_model_to_app("scaled", "scaled")
    assert model_answer(conn, "scaled", {"input": [1.5]})["output"] == 1.5

    survivors = replica_pids(conn, "scaled")
    conn.set_num_replicas("scaled", 1)
    assert conn.get_num_replicas("scaled") == 1
    wait_for(
        lambda: len([r for r in conn.get_all_model_replicas() if r.startswith("scaled:")]) == 1,
        what="the stopped replica to disconnect",
    )
    assert sum(process_is_alive(pid) for pid in survivors) == 1
    assert model_answer(conn, "scaled", {"input": [2.5]})["output"] == 2.5


def test_build_and_deploy_model_serves_a_saved_model_directory(conn, tmp_path):
    save_closure(e2e_models.shout, tmp_path / "saved")
    conn.register_application("built", "strings", "none", SLO_MICROS)
    conn.build_and_deploy_model("built", "7", "strings", str(tmp_path / "saved"), labels=["b"])
    conn.link_model_to_app("built", "built")
    assert model_answer(conn, "built", {"input": "quiet"})["output"] == "QUIET"
    assert conn.get_model_info("built", "7")["labels"] == ["b"]
    assert conn.get_current_model_version("built") == "7"


def test_stop_calls_stop_processes_and_unregister_versions(conn):
    conn.register_application("stoppable", "doubles", "-1.0", SLO_MICROS)
    for version in ("1", "2", "3"):
        deploy_python_closure(conn, "stoppable", version, "doubles", e2e_models.sum_of_each)
    deploy_python_closure(conn, "stoppable-other", "1", "doubles", e2e_models.sum_of_each)
    conn.link_model_to_app("stoppable", "stoppable")
    old = replica_pids(conn, "stoppable", "1") + replica_pids(conn, "stoppable", "2")

    conn.stop_inactive_model_versions(["stoppable"])
    assert [m for m in conn.get_all_models() if m.startswith("stoppable:")] == ["stoppable:3"]
    assert not any(process_is_alive(pid) for pid in old)
    assert model_answer(conn, "stoppable", {"input": [1.0]})["output"] == 1.0

    other = replica_pids(conn, "stoppable-other")
    conn.stop_versioned_models({"stoppable-other": ["1"]})
    assert "stoppable-other:1" not in conn.get_all_models()
    assert not any(process_is_alive(pid) for pid in other)

    current = replica_pids(conn, "stoppable")
    conn.stop_models("stoppable")
    assert not [m for m in conn.get_all_models() if m.startswith("stoppable")]
    assert not any(process_is_alive(pid) for pid in current)
    assert conn.get_linked_models("stoppable") == ["stoppable"]  # links stay, as in Clipper
    answer = predict(conn, "stoppable", {"input": [1.0]})[1]
    assert answer["default"] is True

    # Redeployed, the model is served through the link that stayed.
    deploy_python_closure(conn, "stoppable", "4", "doubles", e2e_models.sum_of_each)
    assert model_answer(conn, "stoppable", {"input": [4.0]})["output"] == 4.0


def test_stop_all_model_containers_keeps_the_configuration(tmp_path):
    conn = start_cluster(tmp_path, "containers")
    try:
        deploy_python_closure(conn, "a", "1", "doubles", e2e_models.sum_of_each)
        deploy_python_closure(conn, "b", "1", "strings", e2e_models.shout)
        pids = [replica.pid for replica in conn.cm.list_replicas()]
        assert len(pids) == 2
        conn.stop_all_model_containers()
        assert not any(process_is_alive(pid) for pid in pids)
        assert conn.cm.list_replicas() == []
        assert conn.get_all_models() == ["a:1", "b:1"]
        wait_for(lambda: conn.get_all_model_replicas() == [], what="replicas to disconnect")
    finally:
        conn.stop_all()
    with pytest.raises(ClipperException, match="not connected"):
        conn.get_all_models()


def test_logs_and_metrics(conn, tmp_path):
    conn.register_application("observed", "doubles", "-1.0", SLO_MICROS)
    deploy_python_closure(conn, "observed", "1", "doubles", e2e_models.sum_of_each)
    conn.link_model_to_app("observed", "observed")
    for _ in range(3):  # the same query: evaluated once, then answered from the cache
        assert model_answer(conn, "observed", {"input": [3.0]})["output"] == 3.0

    logs = conn.get_clipper_logs(str(tmp_path / "logs"))
    assert any(path.endswith("frontend.log") for path in logs)
    assert any("observed" in path and path.endswith("0.log") for path in logs)

    metrics = conn.inspect_instance()
    assert metrics['clipper_app_requests_total{app="observed"}'] >= 3
    assert isinstance(metrics["cache"], dict)
    if metrics["cache"]:  # an engine that reports its cache statistics
        assert metrics["cache"]["hits"] >= 2
        assert 0 < metrics["cache"]["hit_ratio"] <= 1
