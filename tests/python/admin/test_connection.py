"""ClipperConnection's workflow: Clipper's method names and meanings, the order between configuration
and processes, and errors that say what to do."""

import threading
import time

import numpy as np
import pytest

from clipper import ClipperConnection, ClipperException, UnconnectedException
from clipper.exceptions import ConfigurationError, DeploymentError, ManagementAPIError
from clipper.management.auth import TOKEN_FILE_NAME, read_token


def test_methods_need_a_connection_first(manager):
    conn = ClipperConnection(manager)
    for call in (
        lambda: conn.get_all_apps(),
        lambda: conn.register_application("a", "doubles", "-1", 1000),
        lambda: conn.deploy_model("m", "1", "doubles", "img"),
        lambda: conn.get_query_addr(),
    ):
        with pytest.raises(UnconnectedException, match=r"start_clipper\(\).*connect\(\)"):
            call()


def test_start_clipper_passes_the_cache_size_and_connects(manager):
    conn = ClipperConnection(manager)
    conn.start_clipper(cache_size=1024, qf_http_thread_pool_size=2)
    assert ("start_clipper", 1024, 2) in manager.calls
    assert conn.connected and conn.get_all_apps() == []
    with pytest.raises(ClipperException, match="one frontend per cluster"):
        conn.start_clipper(num_frontend_replicas=2)
    with pytest.raises(ClipperException, match="cache_size"):
        conn.start_clipper(cache_size=-1)


def test_the_token_is_found_in_the_state_directory_or_given_explicitly(manager):
    token = read_token(manager.state_dir)
    found = ClipperConnection(manager)
    found.connect()
    assert found.get_all_apps() == []
    explicit = ClipperConnection(manager, management_token=token)
    explicit.connect()
    assert explicit.get_all_apps() == []
    wrong = ClipperConnection(manager, management_token="not-the-token")
    with pytest.raises(ManagementAPIError, match="does not accept") as refused:
        wrong.connect()
    assert refused.value.status_code == 401 and not wrong.connected


def test_a_missing_or_exposed_token_file_is_reported(conn, manager):
    assert conn.get_all_apps() == []
    (manager.state_dir / TOKEN_FILE_NAME).unlink()
    with pytest.raises(ManagementAPIError, match="sent no token"):
        ClipperConnection(manager).connect()
    (manager.state_dir / TOKEN_FILE_NAME).write_text("old")
    (manager.state_dir / TOKEN_FILE_NAME).chmod(0o644)
    with pytest.raises(ClipperException, match="readable or writable by other users"):
        conn.get_all_apps()


def test_applications(conn):
    conn.register_application("app", "doubles", "-1.0", 100000)
    conn.register_application("numbers", "integers", 0, 5000)  # a non-string default is converted
    assert conn.get_all_apps() == ["app", "numbers"]
    info = conn.get_app_info("numbers")
    assert info == {
        "name": "numbers",
        "input_type": "ints",
        "default_output": "0",
        "latency_slo_micros": 5000,
        "linked_models": [],
        "overload": "reject",
    }
    assert conn.get_app_info("missing") is None
    assert [app["name"] for app in conn.get_all_apps(verbose=True)] == ["app", "numbers"]
    conn.register_application("lenient", "doubles", "-1.0", 100000, overload="default")
    assert conn.get_app_info("lenient")["overload"] == "default"
    with pytest.raises(ClipperException, match="overload 'drop' is not valid"):
        conn.register_application("bad", "doubles", "-1.0", 100000, overload="drop")
    conn.unregister_application("lenient")
    conn.unregister_application("numbers")
    with pytest.warns(DeprecationWarning):
        conn.delete_application("app")
    assert conn.get_all_apps() == []


def test_errors_carry_the_servers_explanation(conn):
    conn.register_application("app", "doubles", "-1.0", 100000)
    with pytest.raises(ManagementAPIError, match="application 'app' already exists") as raised:
        conn.register_application("app", "doubles", "-1.0", 100000)
    assert raised.value.status_code == 400
    assert isinstance(raised.value, ClipperException)
    with pytest.raises(ClipperException, match="model 'ghost' does not exist; deploy it"):
        conn.link_model_to_app("app", "ghost")


def test_deploy_link_and_query_the_configuration(conn, manager, engine):
    conn.register_application("app", "doubles", "-1.0", 100000)
    conn.deploy_model("m", 1, "d", "/img/m", labels=["x"], num_replicas=2, batch_size=8)
    conn.link_model_to_app("app", "m")
    assert ("deploy_model", "m", "1", "doubles", "/img/m", 2) in manager.calls
    assert conn.get_linked_models("app") == ["m"]
    assert conn.get_all_models() == ["m:1"]
    info = conn.get_model_info("m", "1")
    assert (info["container_name"], info["batch_size"], info["labels"]) == ("/img/m", 8, ["x"])
    assert conn.get_current_model_version("m") == "1"
    assert conn.get_all_model_replicas() == ["m:1:0", "m:1:1"]
    assert conn.get_model_replica_info("m", "1", 1)["model_replica_id"] == 1
    assert conn.get_model_replica_info("m", "1", 7) is None
    assert conn.get_num_replicas("m") == 2
    assert engine.config["apps"][0]["linked_models"] == ["m"]


def test_a_new_version_becomes_current_only_after_its_replicas_connect(conn, manager, engine):
    conn.deploy_model("m", "1", "doubles", "/img/1")
    conn.deploy_model("m", "2", "doubles", "/img/2")
    assert manager.current_during_deploy[("m", "2")] == ["1"]
    assert engine.current_version("m") == "2"
    conn.set_model_version("m", "1")  # roll back
    assert conn.get_current_model_version("m") == "1"


def test_deploying_an_existing_version_is_refused_before_starting_anything(conn, manager):
    conn.deploy_model("m", "1", "doubles", "/img/1")
    starts = len([c for c in manager.calls if c[0] == "deploy_model"])
    with pytest.raises(ConfigurationError, match="version '1' already exists"):
        conn.deploy_model("m", "1", "doubles", "/img/1")
    assert len([c for c in manager.calls if c[0] == "deploy_model"]) == starts


def test_bad_arguments_are_refused_before_starting_anything(conn, manager):
    with pytest.raises(ConfigurationError, match="input_type"):
        conn.deploy_model("m", "1", "tensors", "/img")
    with pytest.raises(ConfigurationError, match="num_replicas"):
        conn.deploy_model("m", "1", "doubles", "/img", num_replicas=0)
    with pytest.raises(ConfigurationError, match="model name"):
        conn.deploy_model("bad/name", "1", "doubles", "/img")
    assert not [c for c in manager.calls if c[0] == "deploy_model"]


def test_a_replica_that_dies_fails_the_deployment_with_its_reason_and_leaves_nothing(conn, manager):
    manager.failing = "ImportError: no module named torch"
    with pytest.raises(DeploymentError, match="no module named torch"):
        conn.deploy_model("m", "1", "doubles", "/img")
    assert ("stop_models", {"m": ["1"]}) in manager.calls
    assert conn.get_all_models() == []
    manager.failing = None
    conn.deploy_model("m", "1", "doubles", "/img")  # the same version can be deployed again
    assert conn.get_all_models() == ["m:1"]


def test_replicas_that_never_connect_time_out_with_advice(conn, manager):
    manager.silent = True
    with pytest.raises(DeploymentError, match=r"0 of 1 replicas connected.*get_clipper_logs"):
        conn.deploy_model("m", "1", "doubles", "/img")
    assert conn.get_all_models() == []


def test_a_failed_new_version_keeps_the_old_one_current(conn, manager, engine):
    conn.deploy_model("m", "1", "doubles", "/img/1")
    manager.failing = "boom"
    with pytest.raises(DeploymentError):
        conn.deploy_model("m", "2", "doubles", "/img/2")
    assert conn.get_all_models() == ["m:1"]
    assert engine.current_version("m") == "1"


def test_register_model_without_a_container_cannot_be_scaled(conn):
    conn.register_model("external", "1", "strings")
    assert conn.get_model_info("external", "1")["container_name"] == "NO_CONTAINER"
    assert conn.get_current_model_version("external") == "1"
    with pytest.raises(ClipperException, match="registered without a container"):
        conn.set_num_replicas("external", 2)


def test_scaling_and_set_model_version_with_replicas(conn, manager):
    conn.deploy_model("m", "1", "doubles", "/img/1")
    conn.deploy_model("m", "2", "doubles", "/img/2")
    conn.set_num_replicas("m", 3)
    assert conn.get_num_replicas("m", "2") == 3
    conn.set_model_version("m", "1", num_replicas=2)
    assert conn.get_num_replicas("m", "1") == 2
    assert conn.get_current_model_version("m") == "1"
    with pytest.raises(ClipperException, match="no version '7'"):
        conn.set_num_replicas("m", 1, version="7")
    with pytest.raises(ClipperException, match="no registered version"):
        conn.get_current_model_version("ghost")


def test_build_and_deploy_model_builds_then_deploys_the_built_image(conn, manager):
    conn.build_and_deploy_model("m", "1", "doubles", "/saved", pkgs_to_install=["six"])
    assert ("build_model", "m", "1", "/saved", ["six"]) in manager.calls
    assert conn.get_model_info("m", "1")["container_name"] == "/built/m/1"


def test_stop_calls(conn, manager):
    conn.register_application("app", "doubles", "-1.0", 100000)
    for version in ("1", "2", "3"):
        conn.deploy_model("m", version, "doubles", f"/img/{version}")
    conn.deploy_model("other", "1", "doubles", "/img/o")
    conn.link_model_to_app("app", "m")

    conn.stop_inactive_model_versions("m")
    assert conn.get_all_models() == ["m:3", "other:1"]
    assert ("stop_models", {"m": ["1"]}) in manager.calls

    conn.stop_versioned_models({"other": ["1"]})
    assert conn.get_all_models() == ["m:3"]

    conn.deploy_model("m", "4", "doubles", "/img/4")
    conn.stop_models(["m"])
    assert conn.get_all_models() == []
    assert conn.get_all_model_replicas() == []
    assert conn.get_linked_models("app") == ["m"]  # links stay, as in Clipper

    conn.deploy_model("x", "1", "doubles", "/img/x")
    conn.stop_all_model_containers()
    assert conn.get_all_model_replicas() == []
    assert conn.get_all_models() == ["x:1"]  # configuration stays

    conn.stop_all()
    assert ("stop_all", True, False) in manager.calls
    with pytest.raises(UnconnectedException):
        conn.get_all_apps()


def test_addresses(conn):
    assert conn.get_query_addr() == "127.0.0.1:1337"
    assert conn.get_metric_addr() == "127.0.0.1:1390"


def test_test_predict_function_runs_the_function_as_a_replica_would(conn):
    def total(inputs):
        return [str(float(np.sum(x))) for x in inputs]

    assert conn.test_predict_function({"input": [1.0, 2.0]}, total, "doubles") == ["3.0"]
    assert conn.test_predict_function({"input_batch": [[1, 2], [3]]}, total, "ints") == [
        "3.0",
        "3.0",
    ]
    with pytest.raises(ClipperException, match="input"):
        conn.test_predict_function({"x": 1}, total, "doubles")


def test_parse_prometheus_text():
    from clipper.admin.connection import parse_prometheus_text

    text = '# HELP a b\n# TYPE a counter\na_total 3\nb{app="x y"} 1.5\nbad line here\n'
    assert parse_prometheus_text(text) == {"a_total": 3.0, 'b{app="x y"}': 1.5}


def test_refusals_arrive_as_the_class_the_service_raised(conn):
    from clipper import (
        ContainerlessModelError,
        DuplicateObjectError,
        InputTypeMismatchError,
        UnknownObjectError,
    )

    conn.register_application("app", "ints", "0", 1000)
    with pytest.raises(DuplicateObjectError) as duplicate:
        conn.register_application("app", "ints", "0", 1000)
    assert isinstance(duplicate.value, ManagementAPIError)  # and still the wire error
    with pytest.raises(UnknownObjectError, match="model 'ghost' does not exist"):
        conn.link_model_to_app("app", "ghost")
    conn.register_model("doubles", "1", "doubles")
    with pytest.raises(InputTypeMismatchError, match="takes doubles but application 'app'"):
        conn.link_model_to_app("app", "doubles")
    with pytest.raises(ContainerlessModelError, match="cannot scale it"):
        conn.set_num_replicas("doubles", 1)
    with pytest.raises(UnknownObjectError, match="no version '3'"):
        conn.set_num_replicas("doubles", 1, version="3")


def test_batching_settings_through_the_admin_api(conn, engine):
    conn.deploy_model(
        "m", "1", "doubles", "/img", batch_size=4, max_batch_size=8, batch_wait_timeout_micros=20
    )
    configured = {"batch_size": 4, "max_batch_size": 8, "batch_wait_timeout_micros": 20}
    assert conn.get_model_batching("m") == {
        "model_name": "m",
        "model_version": "1",
        "configured": configured,
        "engine": None,
    }
    model = engine.config["models"][0]
    assert (model["max_batch_size"], model["batch_wait_timeout_micros"]) == (8, 20)

    conn.set_model_batching("m", batch_size=2)  # others unchanged
    assert conn.get_model_batching("m", "1")["configured"] == {**configured, "batch_size": 2}
    conn.set_model_batching("m", "1", max_batch_size=None)  # None removes the cap
    assert "max_batch_size" not in engine.config["models"][0]
    with pytest.raises(ConfigurationError, match="larger than max_batch_size"):
        conn.deploy_model("m", "2", "doubles", "/img", batch_size=9, max_batch_size=3)
    with pytest.raises(ConfigurationError, match="batch_wait_timeout_micros"):
        conn.register_model("m", "2", "doubles", batch_wait_timeout_micros=-1)
    conn.register_model("m", "3", "doubles", max_batch_size=5)
    assert conn.get_model_info("m", "3")["max_batch_size"] == 5


def test_stopping_a_version_waits_for_its_replicas_to_drain(conn, engine):
    conn.deploy_model("m", "1", "doubles", "/img/1")
    conn.deploy_model("m", "2", "doubles", "/img/2")
    busy = next(r for r in engine.connected_replicas if r["model_version"] == "1")
    busy["inflight_batches"] = 1
    threading.Timer(0.3, lambda: busy.update(inflight_batches=0)).start()
    started = time.monotonic()
    conn.stop_versioned_models({"m": ["1"]})
    assert time.monotonic() - started >= 0.3  # waited for the batch in flight
    assert conn.get_all_models() == ["m:2"]

    conn.drain_timeout_s = 0.2
    stuck = next(r for r in engine.connected_replicas if r["model_version"] == "2")
    stuck["inflight_batches"] = 1
    started = time.monotonic()
    conn.stop_models("m")  # gives up draining after drain_timeout_s
    assert time.monotonic() - started < 2


def test_inspect_instance_summarises_the_cache(conn, monkeypatch):
    from clipper.admin import connection as connection_module

    text = (
        "clipper_cache_hits_total 3\nclipper_cache_misses_total 1\nclipper_cache_entries 1\n"
        'clipper_app_requests_total{app="a"} 4\n'
    )

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            return False

        def read(self):
            return text.encode()

    monkeypatch.setattr(connection_module, "urlopen_direct", lambda url, timeout: Response())
    metrics = conn.inspect_instance()
    assert metrics['clipper_app_requests_total{app="a"}'] == 4.0
    assert metrics["cache"] == {"hits": 3.0, "misses": 1.0, "entries": 1.0, "hit_ratio": 0.75}


def test_replica_counts_are_recorded_and_restored_by_start_clipper(conn, manager, engine):
    conn.deploy_model("m", "1", "doubles", "/img/1", num_replicas=2)
    conn.register_model("external", "1", "doubles")
    assert conn.get_model_info("m", "1")["num_replicas"] == 2
    conn.set_num_replicas("m", 3)
    assert conn.get_model_info("m", "1")["num_replicas"] == 3

    engine.connected_replicas = []  # the replicas are gone (stop_all), the configuration is not
    conn.start_clipper()
    assert conn.get_num_replicas("m", "1") == 3
    assert ("set_num_replicas", "m", "1", "/img/1", 3) in manager.calls
    assert not [c for c in manager.calls if c[0] == "set_num_replicas" and c[1] == "external"]

    conn.stop_all_model_containers()  # no replicas wanted any more
    assert conn.get_model_info("m", "1")["num_replicas"] == 0
    conn.start_clipper()
    assert conn.get_num_replicas("m", "1") == 0


def test_a_version_that_cannot_be_restored_does_not_stop_the_cluster(conn, manager, engine):
    conn.deploy_model("m", "1", "doubles", "/img/1")
    engine.connected_replicas = []
    manager.failing = "model directory deleted"
    conn.start_clipper()  # logs the failure, keeps going
    assert conn.get_all_models() == ["m:1"]
