"""The StateStore contract (clipper/state/store.py), checked against every implementation."""

import pytest
from clipper.exceptions import StaleStateError
from clipper.state import Application, ClusterState, Model, ModelVersion


def sample_state() -> ClusterState:
    version = ModelVersion("m", "1", "doubles", batch_size=8, labels=["a"], image="/models/m/1")
    return ClusterState(
        applications={"app": Application("app", "doubles", "-1.0", 100000, ["m"])},
        models={"m": Model("m", "1", {"1": version})},
    )


def test_an_empty_store_loads_revision_zero(open_store):
    state = open_store().load()
    assert state.revision == 0
    assert state.applications == {} and state.models == {}


def test_save_bumps_the_revision_and_load_returns_what_was_saved(open_store):
    store = open_store()
    saved = store.save(sample_state(), expected_revision=0)
    assert saved.revision == 1
    loaded = store.load()
    assert loaded == saved
    assert loaded.applications["app"].linked_models == ["m"]
    assert loaded.models["m"].versions["1"].batch_size == 8


def test_a_save_from_an_old_revision_is_refused_and_changes_nothing(open_store):
    store = open_store()
    store.save(sample_state(), expected_revision=0)
    with pytest.raises(StaleStateError, match="revision 1"):
        store.save(ClusterState(), expected_revision=0)
    assert "app" in store.load().applications


def test_the_state_survives_reopening(open_store):
    store = open_store()
    store.save(sample_state(), expected_revision=0)
    store.close()
    reopened = open_store().load()
    assert reopened.revision == 1
    assert reopened.models["m"].current_version == "1"


def test_loaded_states_are_independent_copies(open_store):
    store = open_store()
    store.save(sample_state(), expected_revision=0)
    first = store.load()
    first.applications.clear()
    assert "app" in store.load().applications


def test_close_is_idempotent(open_store):
    store = open_store()
    store.close()
    store.close()
