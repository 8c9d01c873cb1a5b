"""The management service's rules: each change is validated, stored and pushed to the engine, or
refused with a message naming the object and what to do."""

import json

import pytest

from clipper.exceptions import (
    ConfigurationError,
    DuplicateObjectError,
    InputTypeMismatchError,
    StateStoreError,
    UnknownObjectError,
)
from clipper.management import ManagementService
from clipper.state import EmbeddedStateStore


def add_app(service, name="app", input_type="doubles", slo=100000, default="-1.0"):
    return service.add_app(
        {
            "name": name,
            "input_type": input_type,
            "default_output": default,
            "latency_slo_micros": slo,
        }
    )


def add_model(service, name="m", version="1", input_type="doubles", **extra):
    body = {"model_name": name, "model_version": version, "input_type": input_type, **extra}
    return service.add_model(body)


def link(service, app="app", model="m"):
    return service.add_model_links({"app_name": app, "model_names": [model]})


def test_every_change_is_stored_and_pushed_as_a_full_snapshot(service, engine, store):
    add_app(service)
    add_model(service, batch_size=8)
    result = link(service)
    assert result["revision"] == 3
    assert engine.config == {
        "apps": [
            {
                "name": "app",
                "input_type": "doubles",
                "default_output": "-1.0",
                "slo_micros": 100000,
                "linked_models": ["m"],
                "overload": "reject",
            }
        ],
        "models": [
            {
                "name": "m",
                "version": "1",
                "input_type": "doubles",
                "batch_size": 8,
                "batch_wait_timeout_micros": 0,
                "current": True,
            }
        ],
    }
    assert store.load().applications["app"].linked_models == ["m"]


def test_restore_pushes_the_stored_configuration(tmp_path, engine):
    with EmbeddedStateStore(tmp_path) as store:
        first = ManagementService(store, engine)
        first.restore()
        add_app(first)
        add_model(first)
        link(first)
    restarted_engine = type(engine)()
    with EmbeddedStateStore(tmp_path) as store:
        ManagementService(store, restarted_engine).restore()
    assert restarted_engine.applied == [engine.config]


def test_input_type_aliases_are_stored_canonically(service):
    add_app(service, input_type="integers")
    assert service.get_application({"name": "app"})["input_type"] == "ints"


def test_duplicate_app_is_refused(service):
    add_app(service)
    with pytest.raises(ConfigurationError, match="application 'app' already exists"):
        add_app(service)


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"input_type": "doubles", "default_output": "x", "latency_slo_micros": 1}, "'name'"),
        ({"name": "a", "input_type": "tensor", "default_output": "x", "latency_slo_micros": 1}, "tensor"),
        ({"name": "a", "input_type": "doubles", "default_output": 1, "latency_slo_micros": 1}, "default_output"),
        ({"name": "a", "input_type": "doubles", "default_output": "x"}, "latency_slo_micros"),
        ({"name": "a/b", "input_type": "doubles", "default_output": "x", "latency_slo_micros": 1}, "a/b"),
    ],
)  # fmt: skip
def test_add_app_names_the_bad_field(service, body, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        service.add_app(body)


def test_slo_micros_is_accepted_as_a_synonym(service):
    service.add_app({"name": "a", "input_type": "d", "default_output": "0", "slo_micros": 20000})
    assert service.get_application({"name": "a"})["latency_slo_micros"] == 20000


def test_overload_answer_is_reject_unless_the_app_asks_for_its_default(service, engine, store):
    add_app(service, name="strict")
    service.add_app(
        {"name": "lenient", "input_type": "doubles", "default_output": "0", "latency_slo_micros": 1000,
         "overload": "default"}
    )  # fmt: skip
    assert service.get_application({"name": "strict"})["overload"] == "reject"
    assert service.get_application({"name": "lenient"})["overload"] == "default"
    assert {app["name"]: app["overload"] for app in engine.config["apps"]} == {
        "strict": "reject",
        "lenient": "default",
    }
    with pytest.raises(ConfigurationError, match="overload 'drop' is not valid: use 'reject'"):
        service.add_app(
            {"name": "bad", "input_type": "doubles", "default_output": "0", "latency_slo_micros": 1,
             "overload": "drop"}
        )  # fmt: skip


def test_linking_needs_an_existing_app_and_model(service):
    with pytest.raises(ConfigurationError, match="application 'app' does not exist; register it"):
        link(service)
    add_app(service)
    with pytest.raises(ConfigurationError, match="model 'm' does not exist; deploy it"):
        link(service)


def test_linking_refuses_an_input_type_mismatch(service):
    add_app(service, input_type="ints")
    add_model(service, input_type="doubles")
    with pytest.raises(ConfigurationError, match="takes doubles but application 'app' takes ints"):
        link(service)


def test_an_app_links_one_model(service):
    add_app(service)
    add_model(service, "m")
    add_model(service, "other")
    link(service)
    with pytest.raises(ConfigurationError, match="already linked to application"):
        link(service)
    with pytest.raises(ConfigurationError, match=r"unlink_model_from_app\('app', 'm'\)"):
        link(service, model="other")
    with pytest.raises(ConfigurationError, match="exactly one model"):
        service.add_model_links({"app_name": "app", "model_names": ["m", "other"]})


def test_unlinking(service, engine):
    add_app(service)
    add_model(service)
    link(service)
    with pytest.raises(ConfigurationError, match="'x' is not linked"):
        service.delete_model_links({"app_name": "app", "model_names": ["x"]})
    service.delete_model_links({"app_name": "app", "model_names": ["m"]})
    assert service.get_linked_models({"app_name": "app"}) == []
    assert engine.config["apps"][0]["linked_models"] == []


def test_deleting_an_app_removes_it_from_the_engine(service, engine):
    add_app(service)
    service.delete_app({"name": "app"})
    assert engine.config["apps"] == []
    with pytest.raises(ConfigurationError, match="does not exist"):
        service.delete_app({"name": "app"})


def test_a_new_version_becomes_current_unless_asked_not_to(service):
    add_model(service, version="1")
    add_model(service, version="2")
    assert service.get_model({"model_name": "m", "model_version": "2"})["is_current_version"]
    add_model(service, version="3", make_current=False)
    assert not service.get_model({"model_name": "m", "model_version": "3"})["is_current_version"]
    assert service.get_all_models({}) == ["m:1", "m:2", "m:3"]


def test_the_first_version_is_current_even_when_not_asked(service):
    add_model(service, make_current=False)
    assert service.get_model({"model_name": "m", "model_version": "1"})["is_current_version"]


def test_duplicate_versions_and_bad_fields_are_refused(service):
    add_model(service)
    with pytest.raises(ConfigurationError, match="version '1' already exists"):
        add_model(service)
    with pytest.raises(ConfigurationError, match="batch_size"):
        add_model(service, version="2", batch_size=0)
    with pytest.raises(ConfigurationError, match="label"):
        add_model(service, version="2", labels=["a,b"])
    with pytest.raises(ConfigurationError, match="model name"):
        add_model(service, name="a:b", version="2")


def test_a_version_of_another_type_is_refused_for_a_linked_model(service):
    add_app(service)
    add_model(service)
    link(service)
    with pytest.raises(ConfigurationError, match="takes ints but application 'app' takes doubles"):
        add_model(service, version="2", input_type="ints")


def test_set_model_version_rolls_forward_and_back(service, engine):
    add_model(service, version="1")
    add_model(service, version="2")
    service.set_model_version({"model_name": "m", "model_version": "1"})
    current = [m["version"] for m in engine.config["models"] if m["current"]]
    assert current == ["1"]
    with pytest.raises(ConfigurationError, match="no version '9'"):
        service.set_model_version({"model_name": "m", "model_version": "9"})
    with pytest.raises(ConfigurationError, match="model 'x' does not exist"):
        service.set_model_version({"model_name": "x", "model_version": "1"})


def test_deleting_versions(service, engine):
    add_app(service)
    add_model(service, version="1")
    add_model(service, version="2")
    link(service)
    with pytest.raises(ConfigurationError, match="is the current version"):
        service.delete_versioned_model({"model_name": "m", "model_version": "2"})
    service.delete_versioned_model({"model_name": "m", "model_version": "1"})
    service.delete_versioned_model({"model_name": "m", "model_version": "2"})
    assert service.get_all_models({}) == []
    # The link stays (as in Clipper) but the engine only sees links to models that exist.
    assert service.get_linked_models({"app_name": "app"}) == ["m"]
    assert engine.config["apps"][0]["linked_models"] == []
    add_model(service, version="3")
    assert engine.config["apps"][0]["linked_models"] == ["m"]


def test_a_configuration_the_engine_refuses_is_not_stored(service, engine, store):
    engine.refuse_with = "links model ghost"
    with pytest.raises(
        ConfigurationError, match="engine refused the configuration: links model ghost"
    ):
        add_app(service)
    assert store.load().revision == 0
    assert service.get_all_applications({}) == []


def test_a_store_failure_restores_the_engine_and_changes_nothing(
    service, engine, store, monkeypatch
):
    add_app(service, name="kept")

    def failing_save(state, expected_revision):
        raise StateStoreError("disk full")

    monkeypatch.setattr(store, "save", failing_save)
    with pytest.raises(StateStoreError, match="disk full"):
        add_app(service, name="lost")
    assert [app["name"] for app in engine.config["apps"]] == ["kept"]
    assert service.get_all_applications({}) == ["kept"]


def test_reads(service, engine):
    add_app(service)
    add_model(service, labels=["x"], container_name="/models/m/1", batch_size=4)
    link(service)
    assert service.get_all_applications({"verbose": True}) == [
        {
            "name": "app",
            "input_type": "doubles",
            "default_output": "-1.0",
            "latency_slo_micros": 100000,
            "linked_models": ["m"],
            "overload": "reject",
        }
    ]
    assert service.get_application({"name": "nope"}) == {}
    assert service.get_model({"model_name": "m", "model_version": "1"}) == {
        "model_name": "m",
        "model_version": "1",
        "input_type": "doubles",
        "labels": ["x"],
        "container_name": "/models/m/1",
        "model_data_path": "",
        "batch_size": 4,
        "max_batch_size": None,
        "batch_wait_timeout_micros": 0,
        "num_replicas": 0,
        "is_current_version": True,
    }
    assert service.get_model({"model_name": "m", "model_version": "2"}) == {}
    with pytest.raises(ConfigurationError, match="does not exist"):
        service.get_linked_models({"app_name": "nope"})
    assert service.get_state({"app_name": "app", "uid": 0})["state"] == {"y_hat": "-1.0"}


def test_containers_come_from_the_engine(service, engine):
    engine.connected_replicas = [
        {"model_name": "m", "model_version": "1", "replica_id": 0, "input_type": "doubles",
         "inflight_batches": 1},
        {"model_name": "m", "model_version": "1", "replica_id": 3, "input_type": "doubles",
         "inflight_batches": 0, "transport": "shm"},
    ]  # fmt: skip
    assert service.get_all_containers({}) == ["m:1:0", "m:1:3"]
    verbose = service.get_all_containers({"verbose": True})
    assert verbose[1] == {
        "model_id": "m:1",
        "model_name": "m",
        "model_version": "1",
        "model_replica_id": 3,
        "input_type": "doubles",
        "inflight_batches": 0,
        "transport": "shm",
    }
    found = service.get_container({"model_name": "m", "model_version": "1", "replica_id": 3})
    assert found["model_replica_id"] == 3
    assert service.get_container({"model_name": "m", "model_version": "1", "replica_id": 9}) == {}


def engine_model(engine, name="m", version="1"):
    return next(m for m in engine.config["models"] if (m["name"], m["version"]) == (name, version))


def test_batching_settings_reach_the_engine(service, engine):
    add_model(service, batch_size=8, max_batch_size=16, batch_wait_timeout_micros=250)
    assert engine_model(engine) == {
        "name": "m",
        "version": "1",
        "input_type": "doubles",
        "batch_size": 8,
        "max_batch_size": 16,
        "batch_wait_timeout_micros": 250,
        "current": True,
    }
    info = service.get_model({"model_name": "m", "model_version": "1"})
    assert (info["max_batch_size"], info["batch_wait_timeout_micros"]) == (16, 250)


@pytest.mark.parametrize(
    "settings, fragment",
    [
        ({"max_batch_size": 0}, "max_batch_size 0 is not valid"),
        ({"max_batch_size": 2.5}, "max_batch_size"),
        ({"batch_wait_timeout_micros": -1}, "batch_wait_timeout_micros -1 is not valid"),
        ({"batch_size": 8, "max_batch_size": 4}, "batch_size 8 is larger than max_batch_size 4"),
    ],
)
def test_bad_batching_settings_name_the_field(service, settings, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        add_model(service, **settings)


def test_set_model_batching_changes_only_the_given_fields(service, engine):
    add_model(service, version="1", max_batch_size=16)
    add_model(service, version="2")
    service.set_model_batching({"model_name": "m", "batch_wait_timeout_micros": 100})
    assert engine_model(engine, version="2")["batch_wait_timeout_micros"] == 100  # current version
    service.set_model_batching({"model_name": "m", "model_version": "1", "batch_size": 4})
    assert engine_model(engine, version="1")["batch_size"] == 4
    assert engine_model(engine, version="1")["max_batch_size"] == 16
    service.set_model_batching({"model_name": "m", "model_version": 1, "max_batch_size": None})
    assert "max_batch_size" not in engine_model(engine, version="1")
    with pytest.raises(ConfigurationError, match="at least one of"):
        service.set_model_batching({"model_name": "m"})
    with pytest.raises(ConfigurationError, match="larger than max_batch_size 2"):
        service.set_model_batching({"model_name": "m", "batch_size": 4, "max_batch_size": 2})
    with pytest.raises(UnknownObjectError, match="model 'm' has no version '7'"):
        service.set_model_batching({"model_name": "m", "model_version": "7", "batch_size": 1})


def test_get_batching_state_reports_the_settings_and_the_engines_view(service, engine):
    add_model(service, version="1", batch_size=8)
    add_model(service, name="other", version="1")
    answer = service.get_batching_state({"model_name": "m"})
    assert answer == {
        "model_name": "m",
        "model_version": "1",
        "configured": {"batch_size": 8, "max_batch_size": None, "batch_wait_timeout_micros": 0},
        "engine": None,  # this engine double reports no batching state
    }
    engine.batching_state = lambda: json.dumps(
        [
            {"model_name": "m", "model_version": "1", "learned_batch_size": 5},
            {"model_name": "other", "model_version": "1", "learned_batch_size": 9},
        ]
    )
    answer = service.get_batching_state({"model_name": "m", "model_version": "1"})
    assert answer["engine"] == {"model_name": "m", "model_version": "1", "learned_batch_size": 5}
    engine.batching_state = lambda: json.dumps({"m:1": {"learned_batch_size": 5}})
    assert service.get_batching_state({"model_name": "m"})["engine"] == {"learned_batch_size": 5}


def test_errors_have_classes_that_say_what_went_wrong(service):
    add_app(service)
    with pytest.raises(DuplicateObjectError):
        add_app(service)
    with pytest.raises(UnknownObjectError):
        link(service, model="ghost")
    add_model(service, input_type="ints")
    with pytest.raises(InputTypeMismatchError):
        link(service)


def test_refresh_adopts_what_another_writer_saved(service, engine, store):
    add_app(service)
    other = store.load()
    other.applications.pop("app")
    store.save(other, expected_revision=other.revision)
    assert service.refresh() is True
    assert engine.config["apps"] == []
    assert service.get_all_applications({}) == []
    assert service.refresh() is False


def test_the_number_of_replicas_is_recorded_per_version(service):
    add_model(service, version="1", num_replicas=2)
    add_model(service, version="2")
    assert service.get_model({"model_name": "m", "model_version": "1"})["num_replicas"] == 2
    service.set_model_replicas({"model_name": "m", "num_replicas": 3})  # the current version
    assert service.get_model({"model_name": "m", "model_version": "2"})["num_replicas"] == 3
    with pytest.raises(ConfigurationError, match="num_replicas must be a whole number >= 0"):
        service.set_model_replicas({"model_name": "m", "num_replicas": -1})
    with pytest.raises(UnknownObjectError, match="model 'x' does not exist"):
        service.set_model_replicas({"model_name": "x", "num_replicas": 1})
