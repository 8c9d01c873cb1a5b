"""The StateStore contract (clipper/state/store.py), checked against every implementation."""

import threading
import time

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


def test_revision_is_the_stored_revision(open_store):
    store = open_store()
    assert store.revision() == 0
    store.save(sample_state(), expected_revision=0)
    assert store.revision() == 1


def test_wait_for_change_returns_when_another_writer_saves(open_store):
    store = open_store()
    store.save(sample_state(), expected_revision=0)
    started = time.monotonic()
    assert store.wait_for_change(1, timeout_s=0.2) == 1  # nothing changed: returns at the timeout
    assert time.monotonic() - started >= 0.15
    assert store.wait_for_change(0, timeout_s=5) == 1  # already different: returns at once

    writer = threading.Timer(0.2, lambda: store.save(ClusterState(), expected_revision=1))
    writer.start()
    try:
        started = time.monotonic()
        assert store.wait_for_change(1, timeout_s=10) == 2
        assert time.monotonic() - started < 5
    finally:
        writer.join()


def test_clear_forgets_everything(open_store):
    store = open_store()
    store.save(sample_state(), expected_revision=0)
    store.clear()
    assert store.load() == ClusterState()
    assert store.save(sample_state(), expected_revision=0).revision == 1


def test_batching_settings_are_stored(open_store):
    state = sample_state()
    version = state.models["m"].versions["1"]
    version.max_batch_size, version.batch_wait_timeout_micros = 32, 500
    store = open_store()
    store.save(state, expected_revision=0)
    loaded = store.load().models["m"].versions["1"]
    assert loaded.batching() == {
        "batch_size": 8,
        "max_batch_size": 32,
        "batch_wait_timeout_micros": 500,
    }
